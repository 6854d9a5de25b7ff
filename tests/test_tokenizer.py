"""Tokenizers: the shared id layout, the words and spm tokenizers (round trip, the leading space, their lists
built deterministically, saved and checked with a checkpoint). CPU, no network, milliseconds."""
import random

import pytest

from data.tokenizer import WORD_PIECES, Tokenizer, build_vocab, get_tokenizer, train_spm

TEXTS = ["The girl sees an apple.", "La fille voit une pomme a Oslo.",
         "def get_value(xs):\n    return [x + 4 for x in xs]", "question: What pet does Ann have? A: cat."]


@pytest.fixture(scope="module")
def words():
    return Tokenizer("words", build_vocab(TEXTS * 2))


def test_words_round_trip_any_text(words):
    rng = random.Random(0)
    alphabet = "ab_Z9 .,:()[]\n\t\u00e9\u20ac\U0001f600'"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert "".join(WORD_PIECES.findall(text)) == text, repr(text)  # the pieces cover every character
        ids = words.encode(text)
        assert all(0 <= i < words.n_ordinary for i in ids)  # never a special id
        assert words.decode(ids) == text, repr(text)


def test_words_are_one_token_wherever_they_stand(words):
    # the space read in front of every text: an answer's first word is the context's token
    assert words.encode("cat") == words.encode("A: cat.")[2:3]
    ids = words.encode("def get_value(xs):")  # an identifier is one word
    assert [words.vocab[i - 256] if i >= 256 else chr(i) for i in ids] == [" def", " get_value", "(", "xs", "):"]
    assert words.decode(ids[1:2]) == "get_value"  # decode drops the one leading space
    assert len(words.encode(TEXTS[1])) == 8  # 7 words + "." (vs 31 bytes)
    unknown = words.encode("zebra")  # outside the list: its bytes, with the leading space
    assert unknown == list(b" zebra") and words.decode(unknown) == "zebra"
    assert words.decode(words.encode(" two spaces")) == " two spaces"


def test_build_vocab_is_frequency_ordered_and_deterministic():
    texts = ["a cat and a dog", "a cat", "a bird"]
    assert build_vocab(texts) == [" a", " cat"]  # min_count 2; most frequent first; single bytes left out
    assert build_vocab(texts, min_count=1) == [" a", " cat", " and", " bird", " dog"]  # ties by the piece
    assert build_vocab(texts, max_words=1) == [" a"]
    assert build_vocab(list(reversed(texts)), min_count=1) == build_vocab(texts, min_count=1)


def test_id_layout_is_shared(words):
    for tok in (get_tokenizer("byte"), words):
        assert tok.eos_id == tok.n_ordinary and tok.mask_id == tok.n_ordinary + 1
        assert tok.vocab_size % 64 == 0 and tok.vocab_size > tok.mask_id
        assert tok.decode([tok.eos_id, tok.mask_id, tok.vocab_size - 1]) == ""  # specials and spares dropped
    assert words.n_ordinary == 256 + len(words.vocab)


def test_words_state_round_trip_and_mismatch(words):
    again = get_tokenizer(words.state())  # how a checkpoint or a corpus meta.json rebuilds it
    assert again.vocab == words.vocab and again.encode(TEXTS[2]) == words.encode(TEXTS[2])
    other = Tokenizer("words", [w for w in words.vocab if w != " cat"] + [" cow"])
    with pytest.raises(ValueError, match=r"first difference at word \d+") as e:
        words.check(other.state())
    assert " girl" not in str(e.value)  # names the difference, does not print the lists
    with pytest.raises(ValueError, match="byte"):
        words.check(get_tokenizer("byte").state())
    with pytest.raises(ValueError, match="needs its word list"):
        get_tokenizer("words")


@pytest.fixture(scope="module")
def spm():
    pytest.importorskip("sentencepiece")  # in requirements.txt; the spm tokenizer imports it lazily
    texts = [f"{a} {b} sees {c} apples in Oslo." for a in ("The", "A", "One") for b in ("girl", "boy", "dog")
             for c in range(1, 12)] + TEXTS * 3
    return train_spm(texts, vocab_size=400)


def test_spm_round_trip_any_text_and_subwords(spm):
    rng = random.Random(0)
    alphabet = "ab_Z9 .,:()[]\n\t\u00e9\u20ac\U0001f600'"  # characters it never saw: byte fallback
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        ids = spm.encode(text)
        assert all(1 <= i < spm.n_ordinary for i in ids)  # never unk (0), never a special id
        assert spm.decode(ids) == text, repr(text)
    assert spm.n_ordinary <= 400 and spm.eos_id == spm.n_ordinary and spm.vocab_size % 64 == 0
    assert len(spm.encode("The girl sees 3 apples in Oslo.")) < len("The girl sees 3 apples in Oslo.") / 2
    assert spm.encode("girl") == spm.encode("The girl")[-len(spm.encode("girl")):]  # the leading space, as words
    assert spm.decode([spm.eos_id, spm.mask_id]) == ""


def test_spm_is_deterministic_and_state_round_trips(spm):
    again = get_tokenizer(spm.state())  # how a checkpoint or a corpus meta.json rebuilds it
    assert again.encode(TEXTS[1]) == spm.encode(TEXTS[1]) and again.state() == spm.state()
    assert train_spm(["x y z w"] * 5 + TEXTS * 3, 380).state() == train_spm(["x y z w"] * 5 + TEXTS * 3, 380).state()
    other = train_spm(TEXTS * 3, 380)
    with pytest.raises(ValueError, match="two different SentencePiece models") as e:
        spm.check(other.state())
    assert spm.model[:50] not in str(e.value)  # names the difference, does not print the model
    with pytest.raises(ValueError, match="needs its model"):
        get_tokenizer("spm")

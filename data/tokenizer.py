"""
Tokenizers. The id layout is the same for every tokenizer, so nothing else needs a literal id:

    [0, n_ordinary)   ordinary tokens (bytes, or GPT-2 BPE merges)
    eos_id            end of text; also the padding of a diffusion target (the model learns length)
    mask_id           the absorbing [MASK] of the `mask` noise process; never produced by a sampler
    (.., vocab_size)  spare ids: vocab_size is padded to a multiple of 64 for fast matmuls

    byte:  256 bytes, eos 256, mask 257, vocab 320 (works offline anywhere)
    words: 256 bytes, then a list of whole words (with their leading space) built from a corpus by
           `build_vocab`; a word outside the list falls back to its bytes, so any text round-trips.
           As SentencePiece does (T5, the paper's tokenizer), every text is read with one space in
           front, dropped again by decode, so a word is the same token at the start of a target as
           inside a context. For a closed world like the embedded default's: ~4x fewer tokens than
           bytes and one token per answer word, which a masked diffusion model learns in minutes
    spm:   a SentencePiece BPE model (the library the paper's T5 tokenizer comes from) trained on a
           corpus by `train_spm`, with byte fallback, so any text round-trips and a rare word is
           a few subword pieces instead of its bytes. Its serialized model travels with it.
    gpt2:  tiktoken's GPT-2 BPE, 50256 merges, eos 50256 (<|endoftext|>), mask 50257, vocab 50304

A checkpoint stores `tok.state()`; `Tokenizer.check(state)` refuses a mismatch with a clear message.
"""
import base64
import os
import re
from collections import Counter
from pathlib import Path

# tiktoken's own offline cache of the GPT-2 BPE files, used when TIKTOKEN_CACHE_DIR is not set and the
# local data folder ($AR2DIFF_SHARED_DATA, default ../shared/data beside the checkout) holds one
SHARED_DATA = Path(os.environ.get("AR2DIFF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# GPT-2's pre-tokenizer with identifiers as words: a word (letters, digits, underscores; not starting
# with a digit), a number, a run of punctuation (each with one leading space), then whitespace.
# Every character matches one branch, so the pieces concatenate back to the text.
WORD_PIECES = re.compile(r" ?[^\W\d]\w*| ?\d+| ?[^\w\s]+|\s+(?!\S)|\s+")


def _round_up(n, multiple=64):
    return (n + multiple - 1) // multiple * multiple


class Tokenizer:
    def __init__(self, name, vocab=None, model=None):
        self._enc, self._sp, self.vocab, self.model = None, None, None, None
        if name == "byte":
            self.n_ordinary = 256
        elif name == "words":
            if not vocab:
                raise ValueError("the words tokenizer needs its word list: it comes from the corpus that built it "
                                 "(meta.json) or from a checkpoint, e.g. "
                                 "python data/embedded/prepare.py --tokenizer words")
            self.vocab = list(vocab)
            self._ids = {w: 256 + i for i, w in enumerate(self.vocab)}
            self._pieces = [bytes([b]) for b in range(256)] + [w.encode("utf-8") for w in self.vocab]
            self.n_ordinary = len(self._pieces)
        elif name == "spm":
            if not model:
                raise ValueError("the spm tokenizer needs its model: it comes from the corpus that trained it "
                                 "(meta.json) or from a checkpoint, e.g. python data/multi30k/prepare.py")
            self.model, self._sp = model, _sentencepiece().SentencePieceProcessor(model_proto=base64.b64decode(model))
            self.n_ordinary = self._sp.get_piece_size()  # unk (id 0, never produced: byte fallback) + pieces
        elif name == "gpt2":
            try:
                import tiktoken
            except ImportError as e:
                raise ImportError("the gpt2 tokenizer needs tiktoken: pip install tiktoken") from e
            if "TIKTOKEN_CACHE_DIR" not in os.environ and (SHARED_DATA / "tiktoken_cache").is_dir():
                os.environ["TIKTOKEN_CACHE_DIR"] = str(SHARED_DATA / "tiktoken_cache")
            self._enc = tiktoken.get_encoding("gpt2")
            self.n_ordinary = self._enc.eot_token  # 50256: <|endoftext|> is the first special id
        else:
            raise ValueError(f"unknown tokenizer {name!r}; expected one of {TOKENIZERS}")
        self.name = name
        self.eos_id = self.n_ordinary
        self.mask_id = self.n_ordinary + 1
        self.vocab_size = _round_up(self.mask_id + 1)

    def encode(self, text):
        """Text -> list of ordinary ids (never a special id, whatever the text contains)."""
        if self.vocab is not None:
            ids = []
            for piece in WORD_PIECES.findall(" " + text):
                i = self._ids.get(piece)
                ids.extend([i] if i is not None else piece.encode("utf-8"))
            return ids
        if self._sp is not None:
            return self._sp.encode(text)
        if self._enc is None:
            return list(text.encode("utf-8"))
        return self._enc.encode_ordinary(text)

    def decode(self, ids):
        """Ids -> text; special and spare ids are dropped."""
        ids = [int(i) for i in ids if 0 <= int(i) < self.n_ordinary]
        if self.vocab is not None:
            text = b"".join(self._pieces[i] for i in ids).decode("utf-8", errors="replace")
            return text[1:] if text.startswith(" ") else text  # the space encode put in front
        if self._sp is not None:
            return self._sp.decode(ids)
        if self._enc is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return self._enc.decode(ids)

    def state(self):
        words = {} if self.vocab is None else dict(vocab=self.vocab)
        words.update({} if self.model is None else dict(model=self.model))
        return dict(name=self.name, n_ordinary=self.n_ordinary, eos_id=self.eos_id,
                    mask_id=self.mask_id, vocab_size=self.vocab_size, **words)

    def check(self, state, what="checkpoint"):
        """Raise ValueError if `state` (from a checkpoint or a corpus meta.json) does not match."""
        mine = self.state()
        diff = {k: (state.get(k), v) for k, v in mine.items() if k in state and state[k] != v}
        if "vocab" in diff:  # name the first word that differs, not two lists of thousands
            a, b = diff["vocab"]
            i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            diff["vocab"] = f"{len(a)} vs {len(b)} words, first difference at word {i}"
        if "model" in diff:
            diff["model"] = "two different SentencePiece models"
        if state.get("name", state.get("tokenizer")) not in (None, self.name) or diff:
            raise ValueError(f"{what} was made with tokenizer {brief(state)} but this run uses {self}; "
                             f"differences (theirs, ours): {diff}")

    def __repr__(self):
        return f"Tokenizer({brief(self.state())})"


TOKENIZERS = ("byte", "gpt2")  # by name alone; "words" and "spm" come with their word list or model


def brief(state):
    """A tokenizer state without its word list or SentencePiece model: for messages and sidecars."""
    return {k: v for k, v in state.items() if k not in ("vocab", "model")}


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError as e:
        raise ImportError("the spm tokenizer needs sentencepiece: pip install sentencepiece") from e
    return sentencepiece


def build_vocab(texts, max_words=4000, min_count=2):
    """The words tokenizer's list: pieces of `texts` longer than one byte seen >= min_count times,
    most frequent first (ties by the piece), at most max_words of them. Deterministic."""
    counts = Counter(p for t in texts for p in WORD_PIECES.findall(" " + t) if len(p.encode("utf-8")) > 1)
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ranked[:max_words]


def train_spm(texts, vocab_size=8000):
    """An spm Tokenizer: SentencePiece BPE of `vocab_size` pieces (fewer if `texts`, one sentence
    each, cannot fill them) trained on `texts`, deterministic (one thread). Byte fallback, no
    normalization and every space kept, so decode(encode(text)) == text; ids 0 (unk) ..
    vocab_size-1, no bos/eos/pad of its own (ours follow)."""
    import io
    buf = io.BytesIO()
    _sentencepiece().SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, hard_vocab_limit=False, unk_id=0, bos_id=-1,
        eos_id=-1, pad_id=-1, num_threads=1, minloglevel=2)
    return Tokenizer("spm", model=base64.b64encode(buf.getvalue()).decode("ascii"))


def get_tokenizer(name_or_state):
    """A tokenizer by name ('byte', 'gpt2') or from a checkpoint's saved state (checked)."""
    if isinstance(name_or_state, dict):
        tok = Tokenizer(name_or_state.get("name"), vocab=name_or_state.get("vocab"), model=name_or_state.get("model"))
        tok.check(name_or_state)
        return tok
    return Tokenizer(name_or_state)

"""
Multi30k English->French (task 1, raw captions), scored by BLEU (sacrebleu), and a small pretraining
corpus of real monolingual English and French text for it: a real translation benchmark a CPU learns.

    python data/multi30k/prepare.py --src ../shared/data/multi30k_enfr      # local copy, no network
    python data/multi30k/prepare.py                                           # download (sha256-checked)
    python data/multi30k/prepare.py --src ../shared/data/multi30k_enfr --extra_splits test_2017_flickr
    python data/multi30k/prepare.py --src ../shared/data/multi30k_enfr --out_dir out/m30k/data/multi30k \\
        --pretrain_src ../shared/data --pretrain_dir out/m30k/data/pretrain    # + the pretraining corpus

Task (--out_dir, default this folder): train (29,000 pairs), validation (val, 1,014) and test
(test_2016_flickr, 1,000) .jsonl, one example per line: id, input "translate English to French:
<en>", target <fr> (the raw reference), and meta.json (metric bleu, trivial baselines). Any other
file pair laid out like these (<name>.en.gz / <name>.fr.gz, e.g. test_2017_flickr, test_2017_mscoco)
becomes one more split of that name with --extra_splits, scored by the same evaluate.py command.

Tokenizer (--tokenizer): `spm` (default), SentencePiece BPE with byte fallback trained on the
Multi30k train examples, inputs (prompt + English) and targets (French): --vocab_pieces pieces
(default 4,000: vocabulary 4,032 with our specials). A French caption is 18.4 tokens on average
(97% at most 33) and an input 20.4, the prompt 5 of them; a word outside the vocabulary is a few
subword pieces. `words` (--max_words most frequent whole words of the train captions, any other
word spelled in UTF-8 bytes) is kept for comparison: with 4,000 words the prompt alone is 26 byte
tokens, an input 45 and a caption 21.7, and a model has to write every unknown word byte by byte.
The head and the diffusion sampler (a draw over the whole vocabulary per position, candidate and
step) cost in proportion to the vocabulary, which on a CPU keeps it small.

Pretraining corpus (--pretrain_src, a folder holding pretrain/english_nltk.jsonl.gz and
wmt14_enfr/europarl-v7.fr-en.subset20k.{en,fr}; written to --pretrain_dir): monolingual documents,
no translation pair in any of them:
    multi30k_en / multi30k_fr   the train captions of each side, each side shuffled on its own and
                                cut into documents of 32 captions (so a caption and its translation
                                are never side by side)
    europarl_en / europarl_fr   the first half of the Europarl subset's English lines, the second
                                half of its French lines (no aligned pair), documents of 16 lines
    nltk_en                     English prose (books, news, reviews), in ~2,000-character pieces,
                                at most --nltk_tokens tokens
Every line equal to a validation or test sentence (either language) is dropped. val.bin holds
--val_frac of each source; the counts are printed and kept in meta.json.
"""
import argparse
import gzip
import os
import random
import sys

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from data.common import download, encode_docs, take_tokens, write_corpus, write_jsonl, write_meta  # noqa: E402
from data.tokenizer import Tokenizer, build_vocab, train_spm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPT = "translate English to French: "  # as data/wmt14_enfr: one prompt for every En->Fr task
URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{}.gz"
SHA256 = {  # of the official files (computed from verified local copies)
    "train.en": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.en": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "test_2016_flickr.en": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
}
SPLITS = {"train": "train", "validation": "val", "test": "test_2016_flickr"}  # split -> file stem
EUROPARL = "wmt14_enfr/europarl-v7.fr-en.subset20k"
NLTK = "pretrain/english_nltk.jsonl.gz"


class InputError(ValueError):
    """Bad input: the message names the flag and the file expected."""


def read_lines(path, flag):
    """The lines of a gzipped (or plain) UTF-8 text file, newline stripped."""
    if not os.path.exists(path):
        raise InputError(f"{flag}: {path} is missing (expected gzipped UTF-8 text, one sentence per line)")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="\n") as f:
            return [line.rstrip("\n").strip() for line in f]
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"{flag}: {path} is malformed ({type(e).__name__}: {e}); expected gzipped UTF-8 "
                         "text, one sentence per line") from None


def read_pair(stem, args):
    """(en lines, fr lines) of one file pair: from --src, or downloaded into --out_dir/raw."""
    paths = {}
    for lang in ("en", "fr"):
        name = f"{stem}.{lang}.gz"
        if args.src:
            paths[lang] = os.path.join(args.src, name)
            if not os.path.exists(paths[lang]):
                have = sorted(f for f in os.listdir(args.src) if f.endswith((".en.gz", ".fr.gz"))) \
                    if os.path.isdir(args.src) else []
                raise InputError(f"--src {args.src}: {name} is missing (expected <name>.en.gz and <name>.fr.gz "
                                 f"for {stem}; found {have or 'no such files'})")
        else:
            sha = SHA256.get(f"{stem}.{lang}")
            if sha is None:
                print(f"warning: {name} has no pinned sha256 here; it is downloaded unverified")
            try:
                paths[lang] = download(URL.format(f"{stem}.{lang}"), os.path.join(args.out_dir, "raw", name), sha)
            except RuntimeError as e:
                raise InputError(str(e)) from None
    flag = "--src" if args.src else "download"
    en, fr = read_lines(paths["en"], flag), read_lines(paths["fr"], flag)
    if len(en) != len(fr):
        raise InputError(f"{flag}: {paths['en']} has {len(en)} lines but {paths['fr']} has {len(fr)}; "
                         "the two sides must be line-aligned")
    return en, fr


def rows_of(en, fr):
    """Task rows, ids 0.. in file order (BLEU hypothesis files follow it); every line kept."""
    return [{"id": i, "input": PROMPT + e, "target": f} for i, (e, f) in enumerate(zip(en, fr))]


def baselines(en, fr):
    """Trivial BLEU baselines: the English source copied, the empty output."""
    from data.tasks import bleu
    return {"copy the source": round(bleu(en, fr)["bleu"], 2),
            "empty output": round(bleu([""] * len(fr), fr)["bleu"], 2)}


# ---------------------------------------------------------------------------------------------
# the pretraining corpus

def chunks(lines, size, source, rng):
    lines = list(lines)
    rng.shuffle(lines)
    return [(source, "\n".join(lines[i: i + size])) for i in range(0, len(lines), size)]


def nltk_pieces(path, max_chars=2000):
    """english_nltk.jsonl.gz documents cut at paragraph breaks into pieces of <= ~max_chars, so that
    one long book cannot fill the budget on its own."""
    from data.pretrain.prepare import read_jsonl_texts
    for source, text in read_jsonl_texts(path, "nltk_en"):
        piece = ""
        for para in text.split("\n\n"):
            piece = f"{piece}\n\n{para}" if piece else para
            if len(piece) >= max_chars:
                yield source, piece.strip()
                piece = ""
        if piece.strip():
            yield source, piece.strip()


def pretrain_corpus(args, tok, train_en, train_fr, held_out):
    rng = random.Random(args.seed)
    src = args.pretrain_src
    keep = lambda lines: [x for x in lines if x and x not in held_out]  # noqa: E731
    dropped = {}
    eu_en = read_lines(os.path.join(src, EUROPARL + ".en"), "--pretrain_src")
    eu_fr = read_lines(os.path.join(src, EUROPARL + ".fr"), "--pretrain_src")
    half = len(eu_en) // 2
    groups = {"multi30k_en": (train_en, 32), "multi30k_fr": (train_fr, 32),
              "europarl_en": (eu_en[:half], 16), "europarl_fr": (eu_fr[half:], 16)}
    docs = []
    for name, (lines, size) in groups.items():
        kept = keep(lines)
        dropped[name] = sum(1 for x in lines if x) - len(kept)
        docs += chunks(kept, size, name, rng)
    nltk_path = os.path.join(src, NLTK)
    if not os.path.exists(nltk_path):
        raise InputError(f"--pretrain_src {src}: {NLTK} is missing (expected also {EUROPARL}.en and .fr)")
    try:
        pieces = list(nltk_pieces(nltk_path))
    except ValueError as e:
        raise InputError(f"--pretrain_src: {e}") from None
    rng.shuffle(pieces)
    nltk = take_tokens(encode_docs(pieces, tok), args.nltk_tokens or None)
    encoded = list(encode_docs(docs, tok)) + nltk
    rng.shuffle(encoded)
    return encoded, dropped


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default=None, help="local folder with train/val/test_2016_flickr.{en,fr}.gz "
                   "(default: download from the Multi30k GitHub repository)")
    p.add_argument("--out_dir", default=HERE, help="where the task's .jsonl splits and meta.json go")
    p.add_argument("--extra_splits", default="", help="comma-separated more test files <name>.{en,fr}.gz, "
                   "each written as the split <name> (e.g. test_2017_flickr,test_2017_mscoco)")
    p.add_argument("--pretrain_src", default=None, help="folder holding pretrain/english_nltk.jsonl.gz and "
                   "wmt14_enfr/europarl-v7.fr-en.subset20k.{en,fr}: also build the pretraining corpus")
    p.add_argument("--pretrain_dir", default=None, help="where the corpus goes (default: <out_dir>/pretrain)")
    p.add_argument("--tokenizer", default="spm", choices=("spm", "words"), help="SentencePiece BPE trained on the "
                   "train examples, or whole words with byte fallback (see above)")
    p.add_argument("--vocab_pieces", type=int, default=4000, help="pieces of the spm tokenizer (bytes included)")
    p.add_argument("--max_words", type=int, default=4000, help="words of the words tokenizer (plus 256 bytes)")
    p.add_argument("--nltk_tokens", type=int, default=500_000, help="English prose tokens in the corpus "
                   "(0: all)")
    p.add_argument("--val_frac", type=float, default=0.01, help="share of each corpus source held out in val.bin")
    p.add_argument("--limit_train", type=int, default=0, help="keep only the first N train pairs (0: all; tests)")
    p.add_argument("--seed", type=int, default=1337, help="seed of the corpus shuffles")
    args = p.parse_args(argv)
    try:
        meta = prepare(args, argv)
    except InputError as e:
        p.error(str(e))
    return meta


def prepare(args, argv):
    extra = [s.strip() for s in args.extra_splits.split(",") if s.strip()]
    clash = [s for s in extra if s in SPLITS]
    if clash:
        raise InputError(f"--extra_splits: {clash} are already splits ({', '.join(SPLITS)})")
    pairs = {split: read_pair(stem, args) for split, stem in SPLITS.items()}
    pairs.update({name: read_pair(name, args) for name in extra})
    if args.limit_train:
        pairs["train"] = tuple(side[: args.limit_train] for side in pairs["train"])
    train_en, train_fr = pairs["train"]
    rows = {split: rows_of(en, fr) for split, (en, fr) in pairs.items()}
    if args.tokenizer == "spm":
        tok = train_spm([r[k] for r in rows["train"] for k in ("input", "target")], args.vocab_pieces)
    else:
        tok = Tokenizer("words", build_vocab(train_en + train_fr, max_words=args.max_words))
    for split, split_rows in rows.items():
        write_jsonl(os.path.join(args.out_dir, f"{split}.jsonl"), split_rows)
    lengths = sorted(len(tok.encode(f)) for f in train_fr)
    meta = {
        "task": "multi30k_enfr", "metric": "bleu", "direction": "en-fr",
        "splits": {split: len(en) for split, (en, _) in pairs.items()},
        "files": {split: SPLITS.get(split, split) + ".{en,fr}.gz" for split in pairs},
        "sources": [os.path.abspath(args.src) if args.src else URL.format("")],
        "baselines": {s: baselines(*pairs[s]) for s in pairs if s != "train"},
        "tokenizer": tok.state(),
        "train_target_tokens": {"median": lengths[len(lengths) // 2], "p97": lengths[int(0.97 * len(lengths))],
                                "p99": lengths[int(0.99 * len(lengths))], "max": lengths[-1]},
        "license": "Multi30k: non-commercial research and education (Flickr30k terms)",
        "notes": "test = test_2016_flickr, validation = val (Multi30k task 1, raw captions). Report BLEU with "
                 "sacrebleu's signature against the raw references (the target field).",
    }
    write_meta(args.out_dir, meta, __file__, argv)
    kind = f"{len(tok.vocab)} words + 256 bytes" if tok.vocab else f"SentencePiece BPE, {tok.n_ordinary} pieces"
    print(f"multi30k_enfr: {meta['splits']} -> {args.out_dir}; tokenizer {tok.name}: {kind} (vocab {tok.vocab_size}); "
          f"French train target tokens median {meta['train_target_tokens']['median']}, 97% "
          f"{meta['train_target_tokens']['p97']}, 99% {meta['train_target_tokens']['p99']}, max "
          f"{meta['train_target_tokens']['max']}")
    print(f"baselines (test): {meta['baselines']['test']}")
    if args.pretrain_src:
        held_out = {x for s, (en, fr) in pairs.items() if s != "train" for x in en + fr}
        docs, dropped = pretrain_corpus(args, tok, train_en, train_fr, held_out)
        out = args.pretrain_dir or os.path.join(args.out_dir, "pretrain")
        cmeta = write_corpus(out, docs, tok, args.val_frac, {
            "seed": args.seed, "command": meta["command"], "dropped_held_out_lines": dropped,
            "notes": "monolingual English and French: Multi30k train captions (each side shuffled on its own), "
                     "Europarl En (first half of the subset) and Fr (second half), NLTK English prose; "
                     "no Multi30k validation or test sentence in it"})
        for s in cmeta["sources"]:
            print(f"  {s['name']:12s} {s['docs']:6,} docs {s['tokens']:10,} tokens {s['fraction']:6.1%}")
        print(f"pretrain: {cmeta['train_tokens']:,} train + {cmeta['val_tokens']:,} val tokens -> {out} "
              f"(held-out lines dropped: {dropped})")
        meta["pretrain"] = {"dir": out, "train_tokens": cmeta["train_tokens"], "val_tokens": cmeta["val_tokens"]}
    return meta


if __name__ == "__main__":
    main()

"""
A real pretraining corpus from local files: English prose mixed with Python code by tokens, the
paper's recipe (80% multilingual web text, 20% Python) on data that needs no download.

    export TIKTOKEN_CACHE_DIR=../shared/data/tiktoken_cache   # offline GPT-2 BPE, if not cached
    python data/pretrain/prepare.py --src ../shared/data/pretrain                  # ~16M tokens
    python -m data.pretrain.prepare --src ../shared/data/pretrain --max_tokens 2000000 --code_frac 0.2

--src is a folder holding (one JSON object per line: source, id, text):
    english_nltk.jsonl.gz      edited English (books, news, reviews)      -> "text"
    python_docs_rst.jsonl.gz   the Python documentation (reStructuredText) -> "text"
    code_python.jsonl.gz       Python source files                         -> "code"
We count the Python docs as text: they are prose about code, the kind of page a web crawl holds,
while the paper's 20% is source code (The Stack). With internet, use data/fineweb_edu/prepare.py for
web text at scale instead.

Documents are shuffled (by --seed) within each group and taken until the group has its share of
--max_tokens (the last one cut to fit). If a group runs out first, the other is cut back so the
mixture holds: with the local files the English side is the limit, ~12.6M text + 3.2M code tokens at
--code_frac 0.2. val.bin holds --val_frac of each source, split by document. Writes
<out_dir>/{train.bin,val.bin,meta.json} (uint16 ids, tok.eos_id after every document).
"""
import argparse
import gzip
import json
import os
import random
import sys

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tqdm import tqdm  # noqa: E402

from data.common import command_line, count_tokens, encode_docs, take_tokens, write_corpus  # noqa: E402
from data.tokenizer import TOKENIZERS, get_tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GROUPS = {"text": ["english_nltk", "python_docs_rst"], "code": ["code_python"]}


def read_jsonl_texts(path, source):
    """(source, text) for every non-empty `text` of a .jsonl or .jsonl.gz file, read lazily."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{lineno}: expected a JSON object with a 'text' field") from None
            if isinstance(text, str) and text.strip():
                yield source, text


def mix(groups, fracs, tok, max_tokens, rng):
    """Shuffle each group's (source, text) docs, tokenize them until the group has fracs[g] of
    max_tokens (all of them if max_tokens is None), then cut every group back to the largest total
    the fractions allow. Returns (source, ids) pairs, shuffled across groups."""
    picked = {}
    for g, docs in groups.items():
        if fracs[g] == 0:
            continue
        docs = list(docs)
        rng.shuffle(docs)
        budget = None if max_tokens is None else round(fracs[g] * max_tokens)
        stream = encode_docs(tqdm(docs, desc=f"tokenizing {g}", unit="doc", leave=False), tok)
        picked[g] = take_tokens(stream, budget)  # stops tokenizing once the budget is met
    total = min(count_tokens(d) / fracs[g] for g, d in picked.items())
    out = []
    for g, docs in picked.items():
        out += take_tokens(docs, round(fracs[g] * total))
    rng.shuffle(out)
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="folder with english_nltk / python_docs_rst / code_python .jsonl.gz")
    p.add_argument("--out_dir", default=HERE, help="where train.bin, val.bin, meta.json go")
    p.add_argument("--tokenizer", default="gpt2", choices=TOKENIZERS, help="tokenizer of the .bin files")
    p.add_argument("--code_frac", type=float, default=0.2, help="share of code tokens (paper: 20%% Python)")
    p.add_argument("--max_tokens", type=int, default=0, help="cap on train + val tokens (0: all the mixture allows)")
    p.add_argument("--val_frac", type=float, default=0.005, help="share of each source held out in val.bin")
    p.add_argument("--seed", type=int, default=1337, help="seed of the document shuffle")
    args = p.parse_args(argv)
    if not 0 <= args.code_frac <= 1:
        p.error("--code_frac must be in [0, 1]")
    if not 0 < args.val_frac < 1:
        p.error("--val_frac must be in (0, 1)")
    tok = get_tokenizer(args.tokenizer)
    fracs = {"text": 1 - args.code_frac, "code": args.code_frac}
    groups = {}
    for g, names in GROUPS.items():
        groups[g] = []
        if fracs[g] == 0:
            continue
        for name in names:
            path = os.path.join(args.src, name + ".jsonl.gz")
            if not os.path.exists(path):
                expected = ", ".join(n + ".jsonl.gz" for n in sum(GROUPS.values(), []))
                p.error(f"--src {args.src}: {name}.jsonl.gz is missing (expected {expected})")
            try:
                groups[g] += read_jsonl_texts(path, name)
            except ValueError as e:  # a malformed line: name the file and line, no traceback
                raise SystemExit(f"error: {e}") from None
            print(f"read {path}: {sum(1 for d in groups[g] if d[0] == name):,} documents")
    docs = mix(groups, fracs, tok, args.max_tokens or None, random.Random(args.seed))
    meta = write_corpus(args.out_dir, docs, tok, args.val_frac, {
        "seed": args.seed, "code_frac": args.code_frac, "groups": GROUPS,
        "command": command_line(__file__, argv),
        "notes": "English prose (english_nltk, python_docs_rst) mixed with Python source (code_python) by "
                 "tokens, as the paper mixes web text with The Stack; the Python docs count as text."})
    for s in meta["sources"]:
        print(f"{s['name']:16s} {s['docs']:7,} docs {s['tokens']:12,} tokens  {s['fraction']:6.1%}")
    print(f"wrote {args.out_dir}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens ({tok.name})")


if __name__ == "__main__":
    main()

"""
FineWeb-Edu (sample-10BT) as the pretraining corpus, for machines with internet: English web text
filtered for educational value, the stand-in here for the paper's mC4 (the paper also mixes in 20%
Python; for a local English + code mixture see data/pretrain/prepare.py).

    pip install pyarrow                                        # to read the parquet shards
    python data/fineweb_edu/prepare.py --num_shards 1           # download 1 shard (~2 GB), tokenize
    python -m data.fineweb_edu.prepare --num_shards 2 --max_tokens 500000000
    python data/fineweb_edu/prepare.py --src path/to/shards     # local .parquet / .jsonl / .jsonl.gz

Shards come from their canonical Hugging Face URLs (HuggingFaceFW/fineweb-edu, sample/10BT, 14
shards of ~2 GB, ~0.7B GPT-2 tokens each; ODC-BY licence) into --download_dir; the Hub publishes
no fixed checksum we could pin, so a shard is only checked to be readable. Documents are taken in
file order (the sample is already a random draw from the crawl) until --max_tokens, and written
as <out_dir>/{train.bin,val.bin,meta.json} with the same layout as every pretraining corpus here
(uint16 ids, tok.eos_id after every document, val.bin split by document).
"""
import argparse
import glob
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tqdm import tqdm  # noqa: E402

from data.common import INT0, cli, command_line, download, encode_docs, take_tokens, write_corpus  # noqa: E402
from data.pretrain.prepare import read_jsonl_texts  # noqa: E402
from data.tokenizer import TOKENIZERS, get_tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
URL = "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/{:03d}_00000.parquet"
NUM_SHARDS = 14
SOURCE = "fineweb_edu"


def read_parquet_texts(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit(f"{path}: reading parquet needs pyarrow (pip install pyarrow), "
                         f"or pass .jsonl/.jsonl.gz files with a 'text' field to --src") from None
    try:
        for batch in pq.ParquetFile(path).iter_batches(columns=["text"], batch_size=4096):
            for text in batch.column(0).to_pylist():
                if text and text.strip():
                    yield SOURCE, text
    except Exception as e:  # a truncated download or a file without a 'text' column
        raise SystemExit(f"{path}: not a readable parquet file with a 'text' column ({e})") from None


def documents(paths):
    """(source, text) for every document of the files, in order, read lazily."""
    for path in paths:
        if path.endswith(".parquet"):
            yield from read_parquet_texts(path)
        else:
            yield from read_jsonl_texts(path, SOURCE)


def local_files(src):
    if os.path.isdir(src):
        paths = sorted(p for ext in (".parquet", ".jsonl", ".jsonl.gz")
                       for p in glob.glob(os.path.join(src, "*" + ext)))
    else:
        paths = [src] if os.path.exists(src) else []
    if not paths:
        raise SystemExit(f"--src {src}: no .parquet, .jsonl or .jsonl.gz file there")
    return paths


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default="", help="local .parquet/.jsonl(.gz) file or folder instead of downloading")
    p.add_argument("--num_shards", type=int, default=1, help=f"shards to download (1..{NUM_SHARDS})")
    p.add_argument("--download_dir", default=os.path.join(HERE, "raw"), help="where downloaded shards go")
    p.add_argument("--out_dir", default=HERE, help="where train.bin, val.bin, meta.json go")
    p.add_argument("--tokenizer", default="gpt2", choices=TOKENIZERS, help="tokenizer of the .bin files")
    p.add_argument("--max_tokens", type=INT0, default=0, help="cap on train + val tokens (0: every document)")
    p.add_argument("--val_frac", type=float, default=0.0005, help="share of tokens held out in val.bin")
    args = p.parse_args(argv)
    if not 0 < args.val_frac < 1:
        p.error("--val_frac must be in (0, 1)")
    if args.src:
        paths, origin = local_files(args.src), args.src
    else:
        if not 1 <= args.num_shards <= NUM_SHARDS:
            p.error(f"--num_shards must be in 1..{NUM_SHARDS}")
        urls = [URL.format(i) for i in range(args.num_shards)]
        paths = [download(u, os.path.join(args.download_dir, os.path.basename(u))) for u in urls]
        origin = urls
    tok = get_tokenizer(args.tokenizer)
    stream = encode_docs(tqdm(documents(paths), desc="tokenizing", unit="doc"), tok)
    try:
        docs = take_tokens(stream, args.max_tokens or None)
    except ValueError as e:  # a malformed line: name the file and line, no traceback
        raise SystemExit(f"error: {e}") from None
    meta = write_corpus(args.out_dir, docs, tok, args.val_frac, {
        "origin": origin, "files": [os.path.basename(x) for x in paths], "license": "ODC-BY 1.0 (FineWeb-Edu)",
        "command": command_line(__file__, argv),
        "notes": "HuggingFaceFW/fineweb-edu sample-10BT, documents in file order; English only."})
    print(f"wrote {args.out_dir}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens ({tok.name})")


if __name__ == "__main__":
    cli(main)

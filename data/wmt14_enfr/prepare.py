"""
WMT14 English->French translation, scored by BLEU (sacrebleu). test = newstest2014 (3,003 pairs,
the standard test set), validation = newstest2013 (3,000), train = parallel corpora of your choice.

    # local copies, no network: the Europarl subset plus Multi30k (short captions, a fast real task)
    python data/wmt14_enfr/prepare.py --src ../shared/data/wmt14_enfr \\
        --multi30k_src ../shared/data/multi30k_enfr --train_sources europarl,multi30k
    # with internet: newstest via sacrebleu (md5-checked), training tarballs from statmt.org
    python data/wmt14_enfr/prepare.py --train_sources europarl,commoncrawl,news-commentary
    python data/wmt14_enfr/prepare.py --train_sources europarl,commoncrawl,news-commentary,un,giga \\
        --max_pairs_per_source 1000000       # all of WMT14 En-Fr is ~36M pairs, mostly un + giga
    python -m data.wmt14_enfr.prepare --src ../shared/data/wmt14_enfr --out_dir /tmp/wmt

Writes test/validation/train.jsonl (+ multi30k_validation/multi30k_test.jsonl when multi30k is a
source) and meta.json into --out_dir (default: this folder). Row: id, input "translate English to
French: <en>", target <fr>. Training pairs with an empty side are dropped, and are kept in source
order (the training loader samples at random).
"""
import argparse
import glob
import gzip
import itertools
import os
import shutil
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tqdm import tqdm  # noqa: E402

from data.common import INT0, cli, download, write_jsonl, write_meta  # noqa: E402

PROMPT = "translate English to French: "
# WMT14 En-Fr training corpora: url, sha256 (None: no published or pinned hash), file stem inside
CORPORA = {
    "europarl": ("http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz",
                 "0224c7c710c8a063dfd893b0cc0830202d61f4c75c17eb8e31836103d27d96e7",
                 "europarl-v7.fr-en"),
    "commoncrawl": ("http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz",
                    "c7a74e2ea01ac6c920123108627e35278d4ccb5701e15428ffa34de86fa3a9e5",
                    "commoncrawl.fr-en"),
    "news-commentary": ("http://www.statmt.org/wmt14/training-parallel-nc-v9.tgz",
                        "cb8953f292298e6877ae433c98912b927cb0766b303f4540512ddd286c748485",
                        "news-commentary-v9.fr-en"),
    "un": ("http://www.statmt.org/wmt13/training-parallel-un.tgz", None, "undoc.2000.fr-en"),
    "giga": ("http://www.statmt.org/wmt10/training-giga-fren.tar", None, "giga-fren.release2.fixed"),
}
MULTI30K = "https://github.com/multi30k/dataset (data/task1/raw)"  # not fetched: give --multi30k_src


def open_text(path, errors="strict"):
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors=errors, newline="\n")


def read_pairs(en_path, fr_path, errors="strict"):
    """Yield (line number, en, fr), stripped; the two files must have the same number of lines."""
    with open_text(en_path, errors) as en, open_text(fr_path, errors) as fr:
        for i, (e, f) in enumerate(itertools.zip_longest(en, fr), 1):
            if e is None or f is None:
                raise ValueError(f"{en_path} and {fr_path} differ in length (from line {i})")
            yield i, e.strip(), f.strip()


def local_file(folder, *patterns, flag="--src"):
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(folder, pattern)))
        if found:
            return found[0]
    raise FileNotFoundError(f"{flag} {folder}: no file matching {' or '.join(patterns)}")


def extract_corpus(archive, stem, raw_dir):
    """Copy the .en and .fr files of `stem` out of a WMT tarball (one streaming pass)."""
    wanted = {f"{stem}.{lang}{gz}": lang for lang in ("en", "fr") for gz in ("", ".gz")}
    found = {}
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            name = os.path.basename(member.name)
            if member.isfile() and name in wanted:
                found[wanted[name]] = dest = os.path.join(raw_dir, name)
                with tar.extractfile(member) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)  # flat name: no path from the archive is trusted
    if set(found) != {"en", "fr"}:
        raise ValueError(f"{archive}: expected {stem}.en and {stem}.fr inside, found {sorted(found)}")
    return found["en"], found["fr"]


def training_pairs(source, args, raw_dir):
    """(line number, en, fr) of one training corpus: a local copy, or a downloaded WMT tarball."""
    if source == "multi30k":
        d, flag = args.multi30k_src, "--multi30k_src"
        return read_pairs(local_file(d, "train.en*", flag=flag), local_file(d, "train.fr*", flag=flag))
    if args.src:
        d = args.src
        return read_pairs(local_file(d, "europarl-v7.fr-en*.en"), local_file(d, "europarl-v7.fr-en*.fr"))
    url, sha256, stem = CORPORA[source]
    if sha256 is None:
        print(f"warning: {url} has no pinned sha256 here; it is downloaded unverified")
    archive = download(url, os.path.join(raw_dir, os.path.basename(url)), sha256)
    en, fr = extract_corpus(archive, stem, raw_dir)
    return read_pairs(en, fr, errors="replace")  # web-crawled corpora hold a few invalid bytes


def eval_rows(pairs):
    """Evaluation rows keep every line (ids 0.., in file order: BLEU hypothesis files follow it)."""
    return [{"id": i - 1, "input": PROMPT + en, "target": fr} for i, en, fr in pairs]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--src", default=None,
                        help="local folder with newstest2014.{en,fr}, newstest2013[.detok].{en,fr} "
                             "and europarl-v7.fr-en*.{en,fr} (default: download)")
    parser.add_argument("--multi30k_src", default=None,
                        help="local Multi30k folder with train/val/test_2016_flickr.{en,fr}[.gz]")
    parser.add_argument("--train_sources", default="europarl",
                        help=f"comma-separated training corpora: {','.join(CORPORA)},multi30k")
    parser.add_argument("--max_pairs_per_source", type=INT0, default=0,
                        help="keep at most this many training pairs of each source (0 = all)")
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="where to write the splits and meta.json (default: data/wmt14_enfr)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.train_sources.split(",") if s.strip()]
    for s in sources:
        if s not in CORPORA and s != "multi30k":
            raise ValueError(f"--train_sources: unknown corpus {s!r}; "
                             f"choose from {', '.join(CORPORA)}, multi30k")
        if s == "multi30k" and not args.multi30k_src:
            raise ValueError(f"--train_sources multi30k needs --multi30k_src, a local copy of "
                             f"{MULTI30K}")
        if s not in ("europarl", "multi30k") and args.src:
            raise ValueError(f"--src holds only the Europarl subset; {s!r} needs a download "
                             "(run without --src)")
    raw_dir = os.path.join(args.out_dir, "raw")  # downloads and files extracted from them

    # test and validation: the standard newstest sets
    if args.src:
        src = args.src
        test = read_pairs(local_file(src, "newstest2014.en"), local_file(src, "newstest2014.fr"))
        val_en = local_file(src, "newstest2013.en", "newstest2013*.en")
        val = read_pairs(val_en, local_file(src, "newstest2013.fr", "newstest2013*.fr"))
        used = [os.path.abspath(src)]
    else:  # sacrebleu downloads the official SGML releases, checks their md5, extracts the text
        from sacrebleu.utils import get_reference_files, get_source_file
        test, val = [read_pairs(get_source_file(name, "en-fr"),
                                get_reference_files(name, "en-fr")[0])
                     for name in ("wmt14/full", "wmt13")]
        val_en, used = "", ["sacrebleu wmt14/full en-fr", "sacrebleu wmt13 en-fr"]
    splits = {"test": eval_rows(test), "validation": eval_rows(val)}
    if "multi30k" in sources:  # its own small in-domain evaluation sets, for quick experiments
        d, flag = args.multi30k_src, "--multi30k_src"
        splits["multi30k_validation"] = eval_rows(read_pairs(local_file(d, "val.en*", flag=flag),
                                                             local_file(d, "val.fr*", flag=flag)))
        splits["multi30k_test"] = eval_rows(read_pairs(local_file(d, "test_2016_flickr.en*", flag=flag),
                                                       local_file(d, "test_2016_flickr.fr*", flag=flag)))
    for name, rows in splits.items():
        write_jsonl(os.path.join(args.out_dir, f"{name}.jsonl"), rows)

    kept = {source: 0 for source in sources}

    def train_rows():  # a generator: the full WMT14 corpora do not fit in memory as rows
        for source in sources:
            pairs = (p for p in training_pairs(source, args, raw_dir) if p[1] and p[2])
            if args.max_pairs_per_source > 0:
                pairs = itertools.islice(pairs, args.max_pairs_per_source)
            for i, en, fr in pairs:
                kept[source] += 1
                yield {"id": f"{source}-{i}", "input": PROMPT + en, "target": fr}

    write_jsonl(os.path.join(args.out_dir, "train.jsonl"),
                tqdm(train_rows(), desc="train", unit=" pairs"))
    for source in sources:
        used.append(os.path.abspath(args.multi30k_src) if source == "multi30k" else
                    os.path.abspath(args.src) if args.src else CORPORA[source][0])
    counts = {"train": sum(kept.values()), **{name: len(rows) for name, rows in splits.items()}}
    cap = args.max_pairs_per_source
    meta = {
        "task": "wmt14_enfr", "metric": "bleu", "direction": "en-fr", "splits": counts,
        "sources": list(dict.fromkeys(used)), "train_pairs_per_source": kept,
        "license": "WMT: research use; Europarl: cite Koehn 2005; Multi30k: non-commercial "
                   "research and education",
        "notes": "test = newstest2014 (the WMT14 En-Fr test set): report BLEU on it with "
                 "sacrebleu's signature. validation = newstest2013"
                 + (" (a detokenized copy: close to, not identical with, the raw text)"
                    if "detok" in val_en else "")
                 + ". train = " + ", ".join(f"{s} ({n} pairs)" for s, n in kept.items())
                 + ", in source order; pairs with an empty side dropped"
                 + (f"; at most {cap} pairs per source" if cap > 0 else "") + ".",
    }
    write_meta(args.out_dir, meta, __file__, argv)
    print(f"wmt14_enfr: {counts} -> {args.out_dir}")
    return meta


if __name__ == "__main__":
    cli(main)

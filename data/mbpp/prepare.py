"""
MBPP (Austin et al. 2021, CC BY 4.0): 974 short Python problems, each with a description, reference
code and three assert tests. Official splits by task_id: prompt 1-10, test 11-510, validation
511-600, train 601-974 (the paper's Pass@80 numbers look like the 90-problem validation split).

    python data/mbpp/prepare.py --src ../shared/data/mbpp      # a local copy: no network
    python data/mbpp/prepare.py                                 # download, checked by sha256
    python -m data.mbpp.prepare --src ../shared/data/mbpp --out_dir /tmp/mbpp

Writes prompt/test/validation/train.jsonl and meta.json into --out_dir (default: this folder).
Row: id (task_id, int), input (description, tests, then a cue for the code), target (reference
code), test_list (asserts), test_setup_code. A completion is checked by running
completion + setup code + asserts in data/sandbox.py (data.tasks.build_program).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.common import cli, download, local_file, read_jsonl, write_jsonl, write_meta  # noqa: E402

URL = "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl"
SHA256 = "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f"
SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
FIELDS = ("task_id", "text", "code", "test_list", "test_setup_code")


def lf(s):
    return s.replace("\r\n", "\n")  # the original code uses Windows line ends; they only add noise


def make_input(text, test_list, test_setup_code):
    """The prefix the model sees: the task, the tests it must pass, then a cue for the code."""
    lines = lf(test_setup_code).strip().split("\n") + [t.strip() for t in test_list]
    tests = "\n".join(line.rstrip() for line in lines if line.strip())
    return f"{text.strip()}\nYour code should pass these tests:\n{tests}\nCode:\n"


def make_row(problem):
    return {
        "id": problem["task_id"],
        "input": make_input(problem["text"], problem["test_list"], problem["test_setup_code"]),
        "target": lf(problem["code"]).strip() + "\n",
        "test_list": [lf(t) for t in problem["test_list"]],
        "test_setup_code": lf(problem["test_setup_code"]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--src", default=None,
                        help="local mbpp.jsonl or a folder holding it (default: download)")
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="where to write the splits and meta.json (default: data/mbpp)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    if args.src:
        path = local_file("--src", args.src, "mbpp.jsonl")
        source = os.path.abspath(path)
    else:
        path = download(URL, os.path.join(args.out_dir, "raw", "mbpp.jsonl"), SHA256)
        source = URL
    problems = read_jsonl(path, required=FIELDS)

    counts = {}
    for split, (lo, hi) in SPLITS.items():
        rows = [make_row(p) for p in problems if lo <= p["task_id"] <= hi]
        if len(rows) != hi - lo + 1:
            raise ValueError(f"{path}: split {split} (task_id {lo}-{hi}) has {len(rows)} problems, "
                             f"expected {hi - lo + 1}: not the original 974-problem file?")
        write_jsonl(os.path.join(args.out_dir, f"{split}.jsonl"), rows)
        counts[split] = len(rows)
    meta = {
        "task": "mbpp", "metric": "pass@k", "splits": counts, "sources": [source],
        "license": "CC BY 4.0 (google-research/mbpp)",
        "notes": "Official task_id splits (prompt 1-10, test 11-510, validation 511-600, train "
                 "601-974); challenge_test_list is not used; line ends normalised to \\n. A "
                 "completion passes if completion + test_setup_code + test_list runs without error.",
    }
    write_meta(args.out_dir, meta, __file__, argv)
    print(f"mbpp: {counts} -> {args.out_dir}")
    return meta


if __name__ == "__main__":
    cli(main)

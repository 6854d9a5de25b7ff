"""Bad input on the command line: one clear line that names the file, line or flag, no traceback.

Each script runs as `python <script> <args>` would run it (runpy, as __main__, in this process: the
imports are already paid for), and the test reads what reaches the terminal: the SystemExit message
or argparse's usage error on stderr.
"""
import json
import re
import runpy
import sys

import pytest

from data.common import write_json, write_jsonl


def run_cli(root, script, *args):
    """Run a script's command line; returns what it prints before exiting (one message)."""
    argv = [str(root / script), *map(str, args)]
    old = sys.argv
    sys.argv = argv
    try:
        with pytest.raises(SystemExit) as exit_info:  # anything else would be a traceback
            runpy.run_path(argv[0], run_name="__main__")
    finally:
        sys.argv = old
    return exit_info.value.code


def message(code, capsys):
    """The text the user sees: a SystemExit message, or argparse's error on stderr (exit code 2)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    text = code if isinstance(code, str) else err.strip().splitlines()[-1]
    assert code != 0 and "\n" not in text.strip()
    return text


def toy_task(folder, metric="squad"):
    write_json(folder / "meta.json", {"task": "toy", "metric": metric, "splits": {}})
    row = {"id": 1, "input": "question: q context: c", "target": "a", "answers": ["a"]}
    write_jsonl(folder / "validation.jsonl", [row])
    return row


def test_empty_split_names_the_file(root, tmp_path, capsys):
    row = toy_task(tmp_path)
    (tmp_path / "train.jsonl").write_text("")
    code = run_cli(root, "train.py", "--data", tmp_path, "--out_dir", tmp_path / "out", "--max_steps", 1)
    assert f"{tmp_path / 'train.jsonl'}: empty, no rows" in message(code, capsys)
    (tmp_path / "dev.jsonl").write_text("\n")
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({str(row["id"]): "a"}))
    code = run_cli(root, "evaluate.py", "--task_dir", tmp_path, "--split", "dev", "--predictions", preds)
    assert f"{tmp_path / 'dev.jsonl'}: empty, no rows" in message(code, capsys)


def test_non_utf8_line_names_file_and_line(root, tmp_path, capsys):
    row = toy_task(tmp_path)
    (tmp_path / "dev.jsonl").write_bytes(json.dumps(row).encode() + b'\n{"id": 2, "input": "caf\xe9"}\n')
    preds = tmp_path / "preds.json"
    preds.write_text("{}")
    code = run_cli(root, "evaluate.py", "--task_dir", tmp_path, "--split", "dev", "--predictions", preds)
    assert f"{tmp_path / 'dev.jsonl'}:2: not UTF-8 (byte 0xe9 at column 24)" in message(code, capsys)


@pytest.mark.parametrize("script, expected", [
    ("data/mbpp/prepare.py", "no mbpp.jsonl there"),
    ("data/humaneval/prepare.py", "no HumanEval.jsonl.gz or HumanEval.jsonl there"),
    ("data/squad/prepare.py", "no dev-v1.1.json or dev-v1.1.reconstructed.json there"),
    ("data/wmt14_enfr/prepare.py", "no file matching newstest2014.en"),
    ("data/fineweb_edu/prepare.py", "no .parquet, .jsonl or .jsonl.gz file there"),
    ("data/pretrain/prepare.py", "english_nltk.jsonl.gz is missing"),
])
def test_prepare_without_its_source_file_names_flag_and_file(root, tmp_path, capsys, script, expected):
    code = run_cli(root, script, "--src", tmp_path, "--out_dir", tmp_path / "out")
    assert f"--src {tmp_path}: {expected}" in message(code, capsys)


@pytest.mark.parametrize("flag, value, expected", [
    ("--lr", "-1", "must be a number >= 0"), ("--lr", "nan", "must be a number >= 0"),
    ("--warmup_steps", "-5", "must be an integer >= 0"), ("--weight_decay", "-0.1", "must be a number >= 0"),
    ("--grad_clip", "-1", "must be a number >= 0"), ("--dropout", "1.5", "must be in [0, 1)"),
    ("--beta2", "1", "must be in [0, 1)"), ("--batch_size", "0", "must be an integer >= 1"),
    ("--max_steps", "x", "must be an integer >= 0"), ("--eval_interval", "0", "must be an integer >= 1"),
])
def test_numeric_flag_out_of_range_names_the_flag(root, capsys, flag, value, expected):
    code = run_cli(root, "train.py", flag, value)
    assert message(code, capsys).endswith(f"error: argument {flag}: {expected}, got '{value}'")


def test_not_a_checkpoint_names_the_file(root, tmp_path, capsys):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint\n")
    code = run_cli(root, "evaluate.py", "--ckpt", bad)
    assert re.fullmatch(rf"error: {re.escape(str(bad))}: not a readable PyTorch checkpoint \(\w+\)",
                        message(code, capsys))

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


# ------------------------------------------------------------------------------------------------
# Flags that used to give a traceback or be taken silently: each is refused in one line, status 2

def tiny_ckpt(path, objective="ar", **config):
    """A small byte-level checkpoint; `config` entries override what the weights were made with."""
    import torch
    from dataclasses import asdict
    from data.common import save_checkpoint
    from data.tokenizer import get_tokenizer
    from model import GPT, GPTConfig
    tok = get_tokenizer("byte")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(path, dict(model=model.state_dict(), config={**asdict(model.config), **config},
                               tokenizer=tok.state(), objective=objective, noise=None, target_len=4, step=3))
    return path


def tiny_train_flags(data, out_dir, *extra):
    return ["--data", data, "--out_dir", out_dir, "--block_size", 32, "--batch_size", 4, "--max_steps", 0,
            "--eval_examples", 4, "--eval_batch_size", 4, *extra]


@pytest.fixture
def qa(tmp_path):
    toy_task(tmp_path)
    write_jsonl(tmp_path / "test.jsonl", [{"id": 1, "input": "q", "target": "a", "answers": ["a"]}])
    return tmp_path


def test_predictions_a_folder(root, qa, capsys):
    code = run_cli(root, "evaluate.py", "--task_dir", qa, "--split", "test", "--predictions", qa)
    assert code == 2 and message(code, capsys) == f"error: --predictions {qa} is a folder, not a predictions file"


@pytest.mark.parametrize("flag, value, expected", [
    ("--limit", "-1", "must be an integer >= 0"),  # scored one row fewer
    ("--timeout", "0", "must be a number > 0"), ("--timeout", "-1", "must be a number > 0"),  # references: 0%
    ("--batch_size", "0", "must be an integer >= 1"), ("--num_outputs", "0", "must be an integer >= 1"),
])
def test_evaluate_flag_out_of_range(root, qa, capsys, flag, value, expected):
    preds = qa / "preds.json"
    preds.write_text(json.dumps({"1": "a"}))
    code = run_cli(root, "evaluate.py", "--task_dir", qa, "--split", "test", "--predictions", preds, flag, value)
    assert code == 2 and message(code, capsys).endswith(f"error: argument {flag}: {expected}, got '{value}'")


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_device_cuda_without_cuda(root, tmp_path, capsys, monkeypatch, script):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ckpt = tiny_ckpt(tmp_path / "m.pt")  # evaluate.py blamed the checkpoint
    args = ["--ckpt", ckpt, "--task_dir", tmp_path] if script == "evaluate.py" else ["--out_dir", tmp_path / "o"]
    code = run_cli(root, script, *args, "--device", "cuda")
    assert code == 2 and message(code, capsys).endswith(
        "error: argument --device: CUDA is not available on this machine; use --device cpu, got 'cuda'")
    assert not (tmp_path / "o").exists()


def test_checkpoint_whose_config_does_not_fit_its_weights(root, tmp_path, capsys):
    from tests.tiny_data import write_tiny_corpus
    corpus = write_tiny_corpus(tmp_path / "corpus", docs=60)
    bad = tiny_ckpt(tmp_path / "bad.pt", n_embd=32)
    code = run_cli(root, "train.py", *tiny_train_flags(corpus, tmp_path / "o", "--init_from", bad))
    assert code == 2 and message(code, capsys).startswith(
        f"train.py: error: {bad}: its weights do not fit its config (size mismatch for ")
    toy_task(tmp_path)
    code = run_cli(root, "evaluate.py", "--ckpt", bad, "--task_dir", tmp_path, "--split", "validation",
                   "--out_dir", tmp_path / "e")
    assert code == 2 and message(code, capsys).startswith(f"error: {bad}: its weights do not fit its config")
    code = run_cli(root, "adapt.py", "--init_from", bad, "--data", corpus, "--out_dir", tmp_path / "a",
                   "--block_size", 32, "--eval_examples", 4, "--eval_batch_size", 4)
    assert code == 2 and message(code, capsys).startswith(f"adapt.py: error: {tmp_path / 'a' / 'converted.pt'} "
                                                          f"(converted from {bad}): its weights do not fit its config")
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()


@pytest.mark.parametrize("script", ["train.py", "adapt.py", "evaluate.py"])
def test_out_dir_an_existing_file(root, tmp_path, capsys, script):
    from tests.tiny_data import write_tiny_corpus
    corpus = write_tiny_corpus(tmp_path / "corpus", docs=60)
    ckpt = tiny_ckpt(tmp_path / "m.pt")
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    args = {"train.py": tiny_train_flags(corpus, afile),
            "adapt.py": ["--init_from", ckpt, "--data", corpus, "--out_dir", afile],
            "evaluate.py": ["--ckpt", ckpt, "--task_dir", toy_task(tmp_path) and tmp_path, "--split", "validation",
                            "--out_dir", afile]}[script]
    code = run_cli(root, script, *args)
    assert code == 2 and message(code, capsys).endswith(f"error: --out_dir {afile} is a file, not a folder")
    assert afile.read_text() == "mine\n"


def test_model_beside_init_from_is_said_to_be_ignored(tmp_path, capsys):
    """--model beside a checkpoint of another shape: the checkpoint's shape is kept, and the log says so."""
    import train
    from tests.tiny_data import write_tiny_corpus
    corpus = write_tiny_corpus(tmp_path / "corpus", docs=60)
    ckpt = tiny_ckpt(tmp_path / "m.pt")
    for model, said in (("gpt2", True), (None, False)):
        train.main([str(a) for a in tiny_train_flags(corpus, tmp_path / "o", "--init_from", ckpt)]
                   + (["--model", model] if model else []))
        out = capsys.readouterr().out
        assert (f"note: --model gpt2 (12 layers, 12 heads, 768 dims) is ignored: the model of --init_from {ckpt} "
                f"keeps its own shape (1 layers, 2 heads, 16 dims)\n" in out) == said
        assert "| 1 layers, 2 heads, 16 dims" in out


def test_block_len_larger_than_the_target(root, tmp_path, capsys):
    from tests.tiny_data import write_tiny_corpus, write_tiny_task
    task = write_tiny_task(tmp_path / "reverse")  # targets: 6 bytes + EOS = 7 tokens
    code = run_cli(root, "train.py", *tiny_train_flags(task, tmp_path / "o", "--objective", "diffusion",
                                                        "--block_len", 8))
    assert code == 2 and message(code, capsys) == (
        "train.py: error: --block_len 8 is larger than the target (--target_len 7 tokens): one block would hold it "
        "whole, which is full diffusion; give a smaller --block_len or none")
    corpus = write_tiny_corpus(tmp_path / "corpus", docs=60)
    code = run_cli(root, "adapt.py", "--init_from", tiny_ckpt(tmp_path / "m.pt"), "--data", corpus, "--block_len", 32,
                   "--out_dir", tmp_path / "a", "--block_size", 32, "--eval_examples", 4, "--eval_batch_size", 4)
    assert code == 2 and "--block_len 32 is larger than the target (a corpus window's, at most --block_size 32 - 1 " \
        "tokens)" in message(code, capsys)
    assert not (tmp_path / "a" / "ckpt.pt").exists()


def test_complementary_masks_need_mask_noise(root, tmp_path, capsys):
    """--complementary is a mask-noise option: refused for AR and uniform noise, naming the flag; it trains a
    block model on a task (the loss of the doubled batch, validation unchanged)."""
    from tests.tiny_data import write_tiny_task
    task = write_tiny_task(tmp_path / "reverse")
    for objective in (["--objective", "ar"], ["--objective", "diffusion", "--noise", "uniform"]):
        code = run_cli(root, "train.py", *tiny_train_flags(task, tmp_path / "o", *objective, "--complementary"))
        assert code == 2 and message(code, capsys).startswith("train.py: error: --complementary needs mask noise")
    assert not (tmp_path / "o").exists()
    import train
    flags = tiny_train_flags(task, tmp_path / "o", "--objective", "diffusion", "--block_len", 2, "--max_steps", 3,
                             "--eval_interval", 3, "--lr", "1e-2")
    plain = train.main([str(a) for a in flags])
    both = train.main([str(a) for a in flags] + ["--complementary", "--overwrite"])
    assert "complementary masks" in capsys.readouterr().out
    assert both["best_val"] != plain["best_val"]  # it trained on other inputs, validated the same way


def test_block_training_options_need_a_block_model(root, tmp_path, capsys):
    """--position_masking and --block_warmup are block-diffusion options (named when refused), and a ramped
    mask is not combined with its complement."""
    from tests.tiny_data import write_tiny_task
    task = write_tiny_task(tmp_path / "reverse")
    for flags, says in (([], "--position_masking needs a block-diffusion model"),
                        (["--block_len", 2, "--complementary"], "--position_masking with --complementary")):
        code = run_cli(root, "train.py", *tiny_train_flags(task, tmp_path / "o", "--objective", "diffusion",
                                                           "--position_masking", *flags))
        assert code == 2 and message(code, capsys).startswith("train.py: error: " + says)
    code = run_cli(root, "train.py", *tiny_train_flags(task, tmp_path / "o", "--objective", "ar", "--block_warmup", 4))
    assert code == 2 and message(code, capsys).startswith("train.py: error: --block_warmup needs a block-diffusion")
    assert not (tmp_path / "o").exists()


def test_distilled_task_of_another_tokenizer(root, tmp_path, capsys):
    """A distilled folder (a task's copy whose targets an AR teacher wrote) fine-tunes only a model
    with the teacher's tokenizer: its targets are the teacher's tokens."""
    from data.tokenizer import get_tokenizer
    from tests.tiny_data import write_tiny_task
    task = write_tiny_task(tmp_path / "distilled")
    meta = json.loads((tmp_path / "distilled" / "meta.json").read_text())
    teacher_tok = {**get_tokenizer("byte").state(), "name": "words", "vocab": ["the", "cat"], "vocab_size": 320}
    write_json(tmp_path / "distilled" / "meta.json", {**meta, "distilled": {
        "teacher": "out/teacher/best.pt", "teacher_tokenizer": teacher_tok, "source": "data/embedded/reverse"}})
    student = tiny_ckpt(tmp_path / "student.pt")
    code = run_cli(root, "train.py", *tiny_train_flags(task, tmp_path / "o", "--init_from", student))
    text = message(code, capsys)
    assert code == 2 and text.startswith(f"train.py: error: --data {task} was distilled from the teacher "
                                         f"out/teacher/best.pt, whose tokenizer ")
    assert "whose tokenizer {'name': 'words'," in text and "is not the tokenizer {'name': 'byte'," in text
    assert text.endswith(f"of --init_from {student}: fine-tune a model with the teacher's tokenizer")
    assert not (tmp_path / "o").exists()
    meta["distilled"] = {"teacher": "out/teacher/best.pt", "teacher_tokenizer": get_tokenizer("byte").state(),
                         "source": "data/embedded/reverse"}
    write_json(tmp_path / "distilled" / "meta.json", meta)  # the teacher's own tokenizer: it trains
    import train
    train.main([str(a) for a in tiny_train_flags(task, tmp_path / "o", "--init_from", student)])
    assert (tmp_path / "o" / "ckpt.pt").exists()

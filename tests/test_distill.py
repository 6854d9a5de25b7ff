"""runs/distill.py: a distilled copy of a task folder (the teacher's greedy outputs as train targets), that
train.py and evaluate.py take; resumable; bad input refused naming the flag."""
import json
import os
import sys
from dataclasses import asdict

import pytest
import torch

import evaluate
import train
from data.common import read_json, read_jsonl, save_checkpoint, write_json, write_jsonl
from data.tasks import load_split
from data.tokenizer import get_tokenizer
from model import GPT, GPTConfig
from tests.tiny_data import tiny_flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runs"))
import distill  # noqa: E402

TOK = get_tokenizer("byte")
SPLITS = {"train": 10, "validation": 4, "test": 3}


def make_task(folder, tokenizer=None):
    """A translation-like BLEU task: integer train ids, string ids elsewhere, the tokenizer in meta.json."""
    for split, n in SPLITS.items():
        write_jsonl(folder / f"{split}.jsonl", [
            {"id": i if split == "train" else f"{split}-{i}", "input": f"say {i} twice:", "target": f"{i} {i}"}
            for i in range(n)])
    write_json(folder / "meta.json", {"task": "toy_mt", "metric": "bleu", "splits": SPLITS, "note": "kept",
                                      "tokenizer": tokenizer or TOK.state()})
    return folder


def make_ckpt(path, objective="ar", seed=0, target_len=6):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(path, dict(model=model.state_dict(), config=asdict(model.config), tokenizer=TOK.state(),
                               objective=objective, noise="mask" if objective == "diffusion" else None,
                               target_len=target_len, step=5))
    return path


@pytest.fixture
def setup(tmp_path):
    return make_task(tmp_path / "task"), make_ckpt(tmp_path / "ar.pt"), tmp_path / "kd"


def run(teacher, data, out, *extra):
    return distill.main(["--teacher", str(teacher), "--data", str(data), "--out_dir", str(out),
                         "--batch_size", "4", *extra])


def test_distilled_folder_has_the_task_schema_and_the_teachers_outputs(setup):
    task, teacher, out = setup
    d = run(teacher, task, out)
    src, got = read_jsonl(task / "train.jsonl"), read_jsonl(out / "train.jsonl")
    assert [(r["id"], r["input"]) for r in got] == [(r["id"], r["input"]) for r in src]  # train ids only, in order
    assert all(set(r) == set(s) and isinstance(r["target"], str) for r, s in zip(got, src))
    # the targets are the teacher's greedy outputs, as evaluate.py decodes them (whitespace-normalised)
    greedy = evaluate.main(["--ckpt", str(teacher), "--task_dir", str(task), "--split", "train", "--temperature",
                            "0", "--out_dir", str(out.parent / "ev")])
    assert greedy["count"] == SPLITS["train"]
    preds = {r["id"]: r["text"] for r in read_jsonl(out.parent / "ev" / "predictions.jsonl")}
    assert {str(r["id"]): r["target"] for r in got} == {k: " ".join(v.split()) for k, v in preds.items()}
    assert [r["target"] for r in got] != [r["target"] for r in src]  # an untrained teacher: not the references
    for split in ("validation", "test"):  # the real references, byte for byte
        assert (out / f"{split}.jsonl").read_bytes() == (task / f"{split}.jsonl").read_bytes()
    meta, src_meta = read_json(out / "meta.json"), read_json(task / "meta.json")
    assert {k: v for k, v in meta.items() if k != "distilled"} == src_meta
    kd = meta["distilled"]
    assert kd == d and kd["teacher_tokenizer"] == TOK.state() and kd["source"] == os.path.abspath(task)
    assert kd["teacher_step"] == 5 and len(kd["teacher_sha256"]) == 64 and kd["rows"] == SPLITS["train"]
    assert kd["decoding"] == {"method": "greedy", "target_len": 6, "kv_cache": True} and kd["seconds"] >= 0
    assert sorted(os.listdir(out)) == ["meta.json", "test.jsonl", "train.jsonl", "validation.jsonl"]
    assert len(load_split(out, "train")) == SPLITS["train"]  # the counts of meta.json still hold


def test_training_and_evaluation_take_the_distilled_folder(setup, tmp_path):
    task, teacher, out = setup
    run(teacher, task, out)
    train.main(tiny_flags(str(out), str(tmp_path / "ft"), init_from=str(teacher), objective="ar", max_steps=2,
                          eval_interval=2, eval_examples=4, target_len=6))
    ckpt = torch.load(tmp_path / "ft" / "ckpt.pt", weights_only=True)  # the last step's (best.pt: best validation)
    assert ckpt["step"] == 2 and ckpt["data"] == str(out) and ckpt["task"]["folder"] == str(out)
    m = evaluate.main(["--ckpt", str(tmp_path / "ft" / "best.pt"), "--task_dir", str(out), "--split", "test",
                       "--out_dir", str(tmp_path / "ev")])
    assert m["count"] == SPLITS["test"] and m["metric"] == "bleu"


def test_a_killed_run_resumes_from_the_rows_written(setup, monkeypatch):
    task, teacher, out = setup
    whole = run(teacher, task, out.parent / "whole")
    calls, real = [], evaluate.predict

    def dies_after_two_batches(model, ckpt, tok, rows, args, *a, **kw):
        if len(calls) == 2:
            raise RuntimeError("killed")
        calls.append(len(rows))
        return real(model, ckpt, tok, rows, args, *a, **kw)
    monkeypatch.setattr(evaluate, "predict", dies_after_two_batches)
    with pytest.raises(RuntimeError, match="killed"):
        run(teacher, task, out)
    assert not (out / "meta.json").exists() and not (out / "train.jsonl").exists()  # not mistaken for finished
    with open(out / distill.PARTIAL, "a", encoding="utf-8") as f:
        f.write('{"id": "8", "tar')  # a line cut short by the kill
    calls.clear()
    monkeypatch.setattr(evaluate, "predict", lambda *a, **kw: calls.append(len(a[3])) or real(*a, **kw))
    run(teacher, task, out)
    assert calls == [2]  # only the 10 - 2 x 4 rows not written yet are decoded
    assert (out / "train.jsonl").read_bytes() == (out.parent / "whole" / "train.jsonl").read_bytes()
    assert not (out / distill.PARTIAL).exists() and read_json(out / "meta.json")["distilled"]["rows"] == 10
    assert whole["teacher_sha256"] == read_json(out / "meta.json")["distilled"]["teacher_sha256"]
    # a finished folder is reused as it is: nothing decoded again
    calls.clear()
    assert run(teacher, task, out)["seconds"] == read_json(out / "meta.json")["distilled"]["seconds"]
    assert calls == []


def bad(capsys, *args):
    with pytest.raises(SystemExit) as e:
        run(*args)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_input_is_refused_naming_the_flag(setup, tmp_path, capsys):
    task, teacher, out = setup
    diffusion = make_ckpt(tmp_path / "diff.pt", "diffusion")
    err = bad(capsys, diffusion, task, out)
    assert f"--teacher {diffusion}" in err and "diffusion checkpoint" in err
    for inside in (task, task / "kd"):  # the task's own folder, or a folder inside it
        err = bad(capsys, teacher, task, inside)
        assert f"--out_dir {inside}" in err and "--data" in err
    assert not (task / "kd").exists() and len(read_jsonl(task / "train.jsonl")) == SPLITS["train"]
    other = make_task(tmp_path / "gpt2_task", tokenizer={"name": "gpt2"})
    err = bad(capsys, teacher, other, out)
    assert f"--teacher {teacher}" in err and f"--data {other}" in err and "gpt2" in err and "byte" in err
    # a folder distilled by another teacher (or from another source) is refused, and left as it was
    run(teacher, task, out)
    before = (out / "train.jsonl").read_bytes()
    err = bad(capsys, make_ckpt(tmp_path / "ar2.pt", seed=1), task, out)
    assert f"--out_dir {out}" in err and "another teacher" in err
    assert (out / "train.jsonl").read_bytes() == before
    err = bad(capsys, teacher, out, tmp_path / "kd2")  # a distilled folder is not distilled again
    assert f"--data {out}" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert "--out_dir" in bad(capsys, teacher, task, tmp_path / "full")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    with pytest.raises(SystemExit) as e:
        distill.main(["--teacher", str(teacher), "--data", str(task), "--out_dir", str(out), "--batch_size", "0"])
    assert e.value.code == 2 and "--batch_size" in capsys.readouterr().err
    assert "--threads" in bad(capsys, teacher, task, out, "--threads", "-1")


def test_the_command_line_exits_2_with_one_line(setup, root):
    import subprocess
    task, _, out = setup
    diffusion = make_ckpt(out.parent / "diff.pt", "diffusion")
    p = subprocess.run([sys.executable, "runs/distill.py", "--teacher", str(diffusion), "--data", str(task),
                        "--out_dir", str(out)], cwd=root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--teacher" in p.stderr.splitlines()[-1]
    p = subprocess.run([sys.executable, "runs/distill.py", "--teacher", str(out.parent / "none.pt"), "--data",
                        str(task), "--out_dir", str(out)], cwd=root, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Traceback" not in p.stderr and "none.pt does not exist" in p.stderr

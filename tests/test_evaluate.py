"""evaluate.py: running checkpoints on tasks (resumable, batch-invariant), scoring files, the table."""
import json
from dataclasses import asdict

import pytest
import torch

import evaluate
from data.common import save_checkpoint, write_json, write_jsonl
from data.tokenizer import get_tokenizer
from model import GPT, GPTConfig

TOK = get_tokenizer("byte")


def make_task(root, metric="squad", n=5):
    rows = []
    for i in range(n):
        row = {"id": f"q{i}", "input": f"question: what is {i}? context: it is {i * 7}.", "target": str(i * 7)}
        if metric == "squad":
            row["answers"] = [str(i * 7), f"it is {i * 7}"]
        if metric == "pass@k":
            row.update(target=f"def f(x):\n    return x + {i}", test_setup_code="",
                       test_list=[f"assert f(1) == {i + 1}"])
        rows.append(row)
    task = root / metric.replace("@", "")
    write_jsonl(task / "test.jsonl", rows)
    write_json(task / "meta.json", {"task": f"toy_{metric}", "metric": metric, "splits": {"test": n}})
    return task, rows


def make_ckpt(path, objective, noise=None, target_len=12):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32))
    save_checkpoint(path, dict(model=model.state_dict(), config=asdict(model.config), tokenizer=TOK.state(),
                               objective=objective, noise=noise, target_len=target_len, step=7))
    return path


def read_preds(out_dir):
    return [json.loads(l) for l in (out_dir / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective,noise", [("ar", None), ("diffusion", "mask"), ("diffusion", "uniform")])
def test_run_model_writes_predictions_and_metrics(tmp_path, objective, noise):
    task, rows = make_task(tmp_path)
    ckpt = make_ckpt(tmp_path / "m.pt", objective, noise)
    out = tmp_path / "eval"
    sampler = ["--num_steps", "3", "--num_samples", "2"] if objective == "diffusion" else []
    metrics = evaluate.main(["--ckpt", str(ckpt), "--task_dir", str(task), "--out_dir", str(out), *sampler,
                             "--temperature", "0.5"])
    assert metrics["count"] == 5 and metrics["objective"] == objective and metrics["step"] == 7
    assert 0 <= metrics["f1"] <= 100
    preds = read_preds(out)
    assert sorted(p["id"] for p in preds) == [r["id"] for r in rows]
    assert all(len(p["text"]) <= 12 for p in preds)  # at most target_len byte tokens
    assert json.loads((out / "metrics.json").read_text())["f1"] == metrics["f1"]
    # model calls: AR one per output token (EOS included); diffusion the prefix pass and 3 steps per output
    assert all(1 <= p["tokens"] <= 12 for p in preds)
    calls = [p["calls"] for p in preds]
    assert calls == ([p["tokens"] for p in preds] if objective == "ar" else [4] * 5)
    assert metrics["calls_per_output"] == sum(calls) / 5
    assert metrics["calls_per_token"] == pytest.approx(sum(calls) / sum(p["tokens"] for p in preds))
    assert objective != "ar" or metrics["calls_per_token"] == 1.0


def test_outputs_do_not_depend_on_batching(tmp_path):
    task, _ = make_task(tmp_path)
    ckpt = make_ckpt(tmp_path / "m.pt", "diffusion", "mask")
    texts = []
    for bs in ("1", "4"):
        out = tmp_path / f"eval{bs}"
        evaluate.main(["--ckpt", str(ckpt), "--task_dir", str(task), "--out_dir", str(out), "--num_steps", "3",
                       "--num_samples", "2", "--temperature", "1.0", "--batch_size", bs])
        texts.append({p["id"]: p["text"] for p in read_preds(out)})
    assert texts[0] == texts[1]


def test_interrupted_run_continues(tmp_path, monkeypatch):
    task, _ = make_task(tmp_path)
    ckpt = make_ckpt(tmp_path / "m.pt", "ar")
    args = ["--ckpt", str(ckpt), "--task_dir", str(task), "--temperature", "1.0", "--batch_size", "2"]
    full = evaluate.main(args + ["--out_dir", str(tmp_path / "a")])
    reference = read_preds(tmp_path / "a")
    out = tmp_path / "b"
    evaluate.main(args + ["--out_dir", str(out)])
    lines = (out / "predictions.jsonl").read_text().splitlines()
    (out / "predictions.jsonl").write_text(lines[0] + "\n" + lines[1][:9])  # killed mid-write
    decoded = []
    real = evaluate.predict
    monkeypatch.setattr(evaluate, "predict", lambda m, c, t, rows, a, cb, metric=None, **kw:
                        decoded.extend(rows) or real(m, c, t, rows, a, cb, metric, **kw))
    again = evaluate.main(args + ["--out_dir", str(out)])
    assert len(decoded) == 4  # only the examples without a complete line
    assert sorted(read_preds(out), key=lambda p: p["id"]) == sorted(reference, key=lambda p: p["id"])
    assert again["f1"] == full["f1"]
    with pytest.raises(ValueError, match="other settings"):  # refuse to mix settings in one file
        evaluate.main(args + ["--out_dir", str(out), "--temperature", "0.3"])


def test_code_task_pass_at_k(tmp_path):
    task, rows = make_task(tmp_path, "pass@k", n=3)
    preds = tmp_path / "preds.jsonl"
    lines = [{"task_id": r["id"], "completion": r["target"]} for r in rows]  # correct
    lines += [{"task_id": r["id"], "completion": "def f(x):\n    return 0"} for r in rows]  # wrong
    write_jsonl(preds, lines)
    m = evaluate.main(["--task_dir", str(task), "--predictions", str(preds), "--k", "1,2"])
    assert m["pass@1"] == pytest.approx(50.0) and m["pass@2"] == pytest.approx(100.0)
    ckpt = make_ckpt(tmp_path / "m.pt", "ar", target_len=24)
    m = evaluate.main(["--ckpt", str(ckpt), "--task_dir", str(task), "--out_dir", str(tmp_path / "e"),
                       "--num_outputs", "2", "--k", "1,2"])
    assert m["samples"] == 6 and m["pass@2"] == 0.0  # random weights write no working code


def test_score_file_reports_unknown_ids(tmp_path):
    task, rows = make_task(tmp_path)
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"q0": "0", "q1": "it is 7", "nope": "x"}))
    m = evaluate.main(["--task_dir", str(task), "--predictions", str(preds)])
    assert m["unknown"] == 1 and m["missing"] == 3
    assert m["made_by"]["predictions"] == str(preds) and len(m["made_by"]["sha256"]) == 64
    assert m["exact_match"] == pytest.approx(40.0)


def test_table():
    results = {"diffusion": {"qa": {"metric": "squad", "f1": 50.0}},
               "AR": {"qa": {"metric": "squad", "f1": 60.25}, "mt": {"metric": "bleu", "bleu": 12.0}}}
    table = evaluate.markdown_table(results).splitlines()
    assert table[0] == "| model | mt (bleu) | qa (f1) |"
    assert table[2] == "| AR | 12.0 | 60.2 |" and table[3] == "| diffusion | – | 50.0 |"


def test_bad_flags(tmp_path, capsys):
    task, _ = make_task(tmp_path)
    with pytest.raises(SystemExit, match="either"):
        evaluate.main(["--task_dir", str(task)])
    ckpt = make_ckpt(tmp_path / "m.pt", "diffusion", "mask")
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--ckpt", str(ckpt), "--task_dir", str(task), "--num_steps", "0"])
    assert e.value.code == 2 and "argument --num_steps: must be an integer >= 1, got '0'" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="prepare"):
        evaluate.main(["--ckpt", str(ckpt), "--task_dir", str(tmp_path / "none")])


def test_predictions_of_a_changed_checkpoint_are_remade(tmp_path, capsys):
    """The same --ckpt path, retrained since (here: other weights, step 9): its old predictions are
    not resumed as the new model's; they are remade, and metrics.json names the new file."""
    task, _ = make_task(tmp_path)
    ckpt, out = make_ckpt(tmp_path / "m.pt", "ar"), tmp_path / "eval"
    args = ["--ckpt", str(ckpt), "--task_dir", str(task), "--out_dir", str(out), "--limit", "4",
            "--temperature", "1.0"]
    first = evaluate.main(args)
    before = read_preds(out)
    torch.manual_seed(1)  # a retrained model at the same path
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32))
    save_checkpoint(ckpt, dict(model=model.state_dict(), config=asdict(model.config), tokenizer=TOK.state(),
                               objective="ar", target_len=12, step=9, run_id="r2"))
    capsys.readouterr()
    again = evaluate.main(args)
    said = capsys.readouterr().out
    assert f"{out}: remaking the predictions: {ckpt} has changed since they were made (step 7 -> 9" in said
    assert "0 of 4 examples already done" in said
    assert read_preds(out) != before and len(read_preds(out)) == 4
    made_by = json.loads((out / "metrics.json").read_text())["made_by"]
    assert made_by["step"] == again["step"] == 9 and made_by["run_id"] == "r2"
    assert made_by["sha256"] != first["made_by"]["sha256"] and made_by["ckpt"] == str(ckpt)
    assert json.loads((out / "settings.json").read_text())["made_by"] == made_by
    assert json.loads((out / "settings.json").read_text())["settings"]["temperature"] == 1.0


def test_predictions_of_another_checkpoint_are_refused(tmp_path):
    """--ckpt B --out_dir <A's eval folder>: refused, A's predictions left as they are."""
    task, _ = make_task(tmp_path)
    a, b = make_ckpt(tmp_path / "a.pt", "ar"), make_ckpt(tmp_path / "b.pt", "ar")
    out = tmp_path / "eval"
    evaluate.main(["--ckpt", str(a), "--task_dir", str(task), "--out_dir", str(out), "--limit", "4"])
    kept = {f: (out / f).read_bytes() for f in ("predictions.jsonl", "settings.json", "metrics.json")}
    with pytest.raises(ValueError, match=rf"--out_dir {out} holds the predictions of {a} \(step 7\), not of "
                                         rf"--ckpt {b}; pass another --out_dir"):
        evaluate.main(["--ckpt", str(b), "--task_dir", str(task), "--out_dir", str(out), "--limit", "4"])
    assert {f: (out / f).read_bytes() for f in kept} == kept
    other_task, _ = make_task(tmp_path / "other")
    with pytest.raises(ValueError, match=rf"holds predictions for the task {task}, not --task_dir {other_task}"):
        evaluate.main(["--ckpt", str(a), "--task_dir", str(other_task), "--out_dir", str(out), "--limit", "4"])
    assert {f: (out / f).read_bytes() for f in kept} == kept
    write_json(out / "settings.json", {"split": "test", "limit": 4})  # a folder of an older evaluate.py
    with pytest.raises(ValueError, match="do not record the checkpoint that made them"):
        evaluate.main(["--ckpt", str(a), "--task_dir", str(task), "--out_dir", str(out), "--limit", "4"])
    assert (out / "predictions.jsonl").read_bytes() == kept["predictions.jsonl"]


def test_rerank_ckpt_is_checked_and_recorded(tmp_path, capsys):
    """--rerank_ckpt: an AR checkpoint of the same tokenizer, for a diffusion --ckpt; its file is part of what made
    the predictions (another version of it remakes them)."""
    task, _ = make_task(tmp_path, metric="bleu")
    diff, ar = make_ckpt(tmp_path / "d.pt", "diffusion", "mask"), make_ckpt(tmp_path / "ar.pt", "ar")
    out = tmp_path / "eval"
    base = ["--task_dir", str(task), "--limit", "3", "--num_samples", "2"]
    for ckpt, rr, says in ((ar, ar, "but --ckpt"), (diff, diff, "must be an AR checkpoint")):
        with pytest.raises(ValueError, match=says) as e:
            evaluate.main(["--ckpt", str(ckpt), "--rerank_ckpt", str(rr), *base])
        assert "--rerank_ckpt" in str(e.value)
    other = tmp_path / "ar_words.pt"
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32))
    save_checkpoint(other, dict(model=model.state_dict(), config=asdict(model.config),
                                tokenizer=dict(TOK.state(), name="other"), objective="ar", target_len=12, step=1))
    with pytest.raises(ValueError, match="they must be the same"):
        evaluate.main(["--ckpt", str(diff), "--rerank_ckpt", str(other), *base])
    first = evaluate.main(["--ckpt", str(diff), "--rerank_ckpt", str(ar), "--out_dir", str(out), *base])
    assert first["settings"]["rerank_ckpt"] == str(ar) and first["made_by"]["rerank_step"] == 7
    assert first["calls_per_output"] == 1 + 10 + 1  # the prefix pass, the paper's 10 steps, the reranking call
    torch.manual_seed(5)  # another AR model at the same path: the predictions are remade
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32))
    save_checkpoint(ar, dict(model=model.state_dict(), config=asdict(model.config), tokenizer=TOK.state(),
                             objective="ar", target_len=12, step=8))
    capsys.readouterr()
    again = evaluate.main(["--ckpt", str(diff), "--rerank_ckpt", str(ar), "--out_dir", str(out), *base])
    assert f"the --rerank_ckpt {ar} has changed since they were made" in capsys.readouterr().out
    assert again["made_by"]["rerank_step"] == 8 and again["made_by"]["rerank_sha256"] != first["made_by"]["rerank_sha256"]

"""runs/quality.py: a task's metric against latency over decoding settings, scored as evaluate.py scores."""
import json

import pytest

import evaluate
from data.common import write_json, write_jsonl
from runs import quality
from tests.test_sample import FAST, TOK, make_ckpt


@pytest.fixture
def ckpts(tmp_path):
    return {name: make_ckpt(tmp_path / f"{name}.pt", *spec)[0] for name, spec in
            dict(ar=("ar",), mask=("diffusion", "mask"), uniform=("diffusion", "uniform")).items()}


# A model that writes "x", "y" and spaces, whatever the prompt: p(x) = 0.54 (so a 0.5 threshold commits every
# sampled x early, a 0.9 one nothing), p(y) = p(" ") = 0.2; at temperature 1 its outputs vary with the seed
# and the sampler, and they share words with these answers: every F1 below is an informative number.
XY = {TOK.encode(c)[0]: v for c, v in (("x", 8.0), ("y", 7.0), (" ", 7.0))}


def make_task(root, n=4):
    rows = [{"id": f"q{i}", "input": f"what is {i}?", "target": "x y", "answers": ["x y", "y x x", "x" * 16]}
            for i in range(n)]
    write_jsonl(root / "test.jsonl", rows)
    write_json(root / "meta.json", {"task": "toy_qa", "metric": "squad", "splits": {"test": n}})
    return root


def test_sweep_scores_like_evaluate(tmp_path, capsys):
    task = make_task(tmp_path / "qa")
    diff, _ = make_ckpt(tmp_path / "diff.pt", "diffusion", "mask", logits=XY, task=dict(name="toy_qa"))
    ar, _ = make_ckpt(tmp_path / "ar.pt", "ar", logits=XY)
    out, png = tmp_path / "quality.json", tmp_path / "quality.png"
    sampler = ["--num_samples", "2", "--temperature", "1"]
    result = quality.main(["--ckpt", diff, "--ar_ckpt", ar, "--task_dir", str(task), "--num_steps", "1,4",
                          "--threshold", "0.5,0.9", *sampler, "--batch_size", "3", "--json", str(out),
                          "--plot", str(png), *FAST])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    s, points = data["settings"], data["points"]
    assert s["task"] == "toy_qa" and s["metric"] == "f1" and s["examples"] == 4 and s["num_samples"] == 2
    assert [(q["decoder"], q["num_steps"], q["threshold"]) for q in points] == [
        ("diffusion", 1, None), ("diffusion", 4, None), ("threshold", 4, 0.5), ("threshold", 4, 0.9),
        ("AR", None, None)]
    for q in points:
        assert q["metric"] == "f1" and q["latency_s"] > 0
        assert q["latency_s"] == pytest.approx(q["total_s"] / 4, rel=1e-12)
        # the same settings through evaluate.py give the same number
        flags = sampler + ["--num_steps", str(q["num_steps"])] + (["--threshold", str(q["threshold"])] if q["threshold"]
                                                                  else [])
        metrics = evaluate.main(["--ckpt", ar if q["decoder"] == "AR" else diff, "--task_dir", str(task), "--out_dir",
                                 str(tmp_path / f"eval_{q['label']}")] + ([] if q["decoder"] == "AR" else flags))
        assert q["value"] == metrics["f1"], q
    values = [q["value"] for q in points]
    assert len(set(values)) > 2 and all(0 < v <= 100 for v in values)  # the settings really differ
    assert values[-1] == 100.0  # AR is greedy: sixteen x, one of the answers
    # calls: forward passes per output as evaluate.predict reports them, the prefix pass included
    assert [q["calls"] for q in points[:2]] == [2, 5]  # plain: the prefix pass, then one call per step
    assert 2 <= points[2]["calls"] < 5 and points[3]["calls"] == 5  # threshold: early exit, capped at 4 steps
    assert points[4]["calls"] == 16  # AR: one call per token (the x never stop), the first from the prefix pass
    # per output token (EOS included): AR makes exactly one; the plain sweep's outputs are 16 tokens, no EOS
    assert points[4]["calls_per_token"] == 1.0 and [q["calls_per_token"] for q in points[:2]] == [2 / 16, 5 / 16]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "threshold 0.5, <=4 steps" in table and "AR, greedy" in table and "ms/example" in table
    assert "calls/tok" in table


def test_counts_calls_of_an_early_stopping_ar_model(tmp_path):
    task = make_task(tmp_path / "qa")
    diff, _ = make_ckpt(tmp_path / "diff.pt", "diffusion", "mask")
    ar, _ = make_ckpt(tmp_path / "ar.pt", "ar", logits={TOK.eos_id: 10.0})
    points = quality.main(["--ckpt", diff, "--ar_ckpt", ar, "--task_dir", str(task), "--num_steps", "2",
                          "--num_samples", "1", "--limit", "2", *FAST])["points"]
    assert [q["calls"] for q in points] == [3, 1]  # the AR model says EOS at once: the prefix pass only
    assert points[1]["calls_per_token"] == 1.0  # its one output token: EOS
    assert points[1]["value"] == 0.0 and points[0]["total_s"] == pytest.approx(2 * points[0]["latency_s"])


@pytest.mark.parametrize("argv,flag", [
    ([], "--ckpt"),
    (["--ckpt", "AR"], "--ckpt"),
    (["--ckpt", "MASK", "--ar_ckpt", "MASK", "--task_dir", "TASK"], "--ar_ckpt"),
    (["--ckpt", "MASK", "--ar_ckpt", "OTHER", "--task_dir", "TASK"], "--ar_ckpt"),
    (["--ckpt", "MASK"], "--task_dir"),
    (["--ckpt", "MASK", "--task_dir", "NONE"], "--task_dir"),
    (["--ckpt", "MASK", "--task_dir", "TASK", "--split", "dev"], "--split"),
    (["--ckpt", "UNIFORM", "--task_dir", "TASK", "--threshold", "0.5"], "--threshold"),
    (["--ckpt", "MASK", "--task_dir", "TASK", "--threshold", "0.5,0"], "--threshold"),
    (["--ckpt", "MASK", "--task_dir", "TASK", "--lengths", "8"], "--lengths"),
    (["--ckpt", "MASK", "--task_dir", "TASK", "--top_k", "3"], "--top_k"),
    (["--ckpt", "MASK", "--task_dir", "TASK", "--target_len", "64"], "--target_len"),
    (["--compare", "--ckpt", "MASK"], "--compare"),
])
def test_bad_flags_name_the_flag(ckpts, tmp_path, capsys, argv, flag):
    paths = dict(ckpts, task=str(make_task(tmp_path / "qa")), none=str(tmp_path / "none"),
                 other=make_ckpt(tmp_path / "other.pt", "ar", task=dict(name="another_task"))[0])
    with pytest.raises(SystemExit) as e:
        quality.main([paths.get(a.lower(), a) if a.isupper() else a for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err, err

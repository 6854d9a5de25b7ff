"""The pipeline scripts, shortened: runs/tiny.sh --quick end to end, so the experiment cannot
silently break (the budgets are tiny: the numbers mean nothing, the plumbing is what is checked)."""
import subprocess

import pytest

from data.common import read_json


def run(cmd, root, **kw):
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, **kw)


def test_tiny_pipeline_quick(root, tmp_path):
    out = tmp_path / "tiny"
    p = run(["bash", "runs/tiny.sh", "--quick", "--seed", "3", "--out", str(out)], root, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"{out}/report.md" in p.stdout
    res = read_json(out / "results.json")
    assert res["missing"] == []
    assert set(res["results"]) == {"AR", "diffusion", "AR2Diff_0", "AR2Diff_2"}
    for row, per in res["results"].items():
        assert set(per) == {"translation", "qa", "code"}, row
        assert per["translation"]["metric"] == "bleu" and "signature" in per["translation"]
        assert per["qa"]["metric"] == "squad" and 0 <= per["qa"]["f1"] <= 100
        assert per["code"]["metric"] == "pass@k" and "pass@2" in per["code"]
        assert per["translation"]["count"] == 8  # --limit 8 in --quick
    objectives = {row: (s["objective"], s["noise"]) for row, s in res["pretrain"].items()}
    assert objectives == {"AR": ("ar", None), "diffusion": ("diffusion", "mask"),
                          "AR2Diff_0": ("diffusion", "mask"), "AR2Diff_2": ("diffusion", "mask")}
    assert res["pretrain"]["AR2Diff_2"]["step"] == 2 and res["pretrain"]["AR2Diff_0"]["step"] == 0
    # every fine-tuned model was trained by the objective of its row and evaluated on its own task
    for row, per in res["results"].items():
        for task, m in per.items():
            assert m["task"] == task and m["objective"] == objectives[row][0]
    speed = res["speed"]
    assert [r["length"] for r in speed["results"]] == [16, 32]  # --quick: short outputs, one repeat
    assert all(set(r["diffusion"]) == {"10", "20"} for r in speed["results"])
    assert all(r["ar"]["latency_s"] > 0 for r in speed["results"])
    report = (out / "report.md").read_text()
    for needed in ("## Results (test split)", "| AR |", "| AR2Diff_2 |", "## Decoding speed",
                   "## Reading", "Wall time", "--seed 3"):
        assert needed in report, needed
    assert (out / "speed.png").stat().st_size > 0
    # the seed reaches the generated data too
    assert read_json(out / "data" / "qa" / "meta.json")["seed"] == 3


def test_tiny_pipeline_rejects_unknown_flags(root):
    p = run(["bash", "runs/tiny.sh", "--steps", "3"], root, timeout=60)
    assert p.returncode == 2 and "usage: bash runs/tiny.sh" in p.stderr


@pytest.mark.parametrize("script", ["runs/small_gpu.sh", "runs/gpt2_ar2diff.sh"])
def test_other_recipes_parse(root, script):
    p = run(["bash", "-n", script], root, timeout=60)  # syntax only: they need a GPU or downloads
    assert p.returncode == 0, p.stderr

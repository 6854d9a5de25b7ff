"""The pipeline scripts, shortened: runs/tiny.sh --quick and runs/multi30k.sh --quick (each followed by
its ablation recipe on its output) end to end, so the experiments cannot silently break (the budgets
are tiny: the numbers mean nothing, the plumbing is what is checked)."""
import os
import shutil
import subprocess

import pytest
import torch

from data.common import load_checkpoint, read_json
from tests.conftest import ROOT, SHARED_DATA


def run(cmd, root, **kw):
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def tiny_quick(tmp_path_factory):
    """One `runs/tiny.sh --quick --seed 3` for the tests of this module: (output folder, process)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return out, run(["bash", "runs/tiny.sh", "--quick", "--seed", "3", "--out", str(out)], ROOT, timeout=900)


def test_tiny_pipeline_quick(tiny_quick):
    out, p = tiny_quick
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
    # diffusion from scratch: the AR model's compute, as half the steps with complementary masks
    ar, scratch = (read_json(out / "pretrain" / m / "ckpt.json") for m in ("ar", "diffusion"))
    assert (ar["step"], scratch["step"]) == (6, 3)
    assert scratch["args"]["complementary"] and not ar["args"]["complementary"]
    assert res["pretrain"]["diffusion"]["complementary"] and "complementary masks" in (out / "report.md").read_text()
    # every fine-tuned model was trained by the objective of its row and evaluated on its own task
    for row, per in res["results"].items():
        for task, m in per.items():
            assert m["task"] == task and m["objective"] == objectives[row][0]
    speed = res["speed"]
    assert [r["length"] for r in speed["results"]] == [16, 32]  # --quick: short outputs, one repeat
    assert all(set(r["diffusion"]) == {"10", "20"} for r in speed["results"])
    assert all(r["ar"]["latency_s"] > 0 for r in speed["results"])
    assert not speed["settings"]["compile"] and res["speed_compiled"] is None  # compiled: docs/benchmarks.md
    report = (out / "report.md").read_text()
    for needed in ("## Results (test split)", "| AR |", "| AR2Diff_2 |", "## Decoding speed", "## Reading",
                   "Wall time", "--seed 3"):
        assert needed in report, needed
    assert (out / "speed.png").stat().st_size > 0
    # the seed reaches the generated data too
    assert read_json(out / "data" / "qa" / "meta.json")["seed"] == 3


def test_tiny_ablations_quick(tiny_quick, root, tmp_path):
    """The block and uniform rows, the reranking sweep and the block speed table are produced."""
    out, _ = tiny_quick
    p = run(["bash", "runs/tiny_ablations.sh", "--quick", "--seed", "3", "--out", str(out)], root, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"{out}/ablations.md" in p.stdout
    block, uniform = (load_checkpoint(out / "pretrain" / m / "best.pt")
                      for m in ("ar2diff_block4_2", "ar2diff_uniform_2"))
    assert (block["objective"], block["noise"], block["block_len"]) == ("diffusion", "mask", 4)
    assert (uniform["objective"], uniform["noise"], uniform["block_len"]) == ("diffusion", "uniform", None)
    res = read_json(out / "ablations.json")
    assert res["seeds"] == ["3"]
    for row in ("AR2Diff-block4_2", "AR2Diff_2 (uniform)"):
        assert res["scores"][row]["translation"][0] is not None, row
        assert res["scores"][row]["qa"] == res["scores"][row]["code"] == [None]  # translation only by default
    assert set(res["reranking"]) == {"diffusion", "AR2Diff_2", "AR2Diff-block4_2"}  # S = 1, 4 and the eval's 8
    assert all(len(v) == 1 and v[0] is not None for per in res["reranking"].values() for v in per.values())
    speed = res["speed"]["3"]["results"]
    assert [r["length"] for r in speed] == [16, 32] and all(r["block"] and r["diffusion"] for r in speed)
    text = (out / "ablations.md").read_text()
    for needed in ("| AR2Diff-block4_2 |", "| AR2Diff_2 (uniform) |", "S = 4", "block (K = 4) against full",
                   "mask against uniform noise", "Decoding speed"):
        assert needed in text, needed
    # two seeds side by side: every cell holds one number per seed
    two = run(["python", "runs/ablations.py", "--runs", str(out), str(out), "--adapt_steps", "2", "--candidates",
               "1,4", "--out", str(tmp_path / "two")], root, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "at 2 of 2 seeds" in two.stdout or "at 0 of 2 seeds" in two.stdout
    assert read_json(tmp_path / "two.json")["seeds"] == ["3", "3"]


@pytest.fixture(scope="module")
def m30k_quick(tmp_path_factory):
    """One `runs/multi30k.sh --quick --seed 3` for the tests of this module: (output folder, process)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data test: {SHARED_DATA} is absent (set AR2DIFF_SHARED_DATA)")
    out = tmp_path_factory.mktemp("runs") / "m30k"
    return out, run(["bash", "runs/multi30k.sh", "--quick", "--seed", "3", "--out", str(out), "--shared",
                     str(SHARED_DATA)], ROOT, timeout=1800)


def test_multi30k_pipeline_quick(m30k_quick):
    out, p = m30k_quick
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = read_json(out / "results.json")
    assert res["missing"] == []
    rows = {"AR", "diffusion (distilled)", "AR2Diff-block4 of AR-ft (distilled)"}
    assert set(res["results"]) == rows and set(res["validation"]) == rows
    for row, m in ((r, per["multi30k"]) for r, per in res["results"].items()):
        assert m["task"] == "multi30k_enfr" and m["metric"] == "bleu" and "tok:13a" in m["signature"], row
        assert m["count"] == 4 and m["decode_seconds"] > 0  # --limit 4 in --quick
        assert m["task"] == res["validation"][row]["multi30k"]["task"] and m["settings"]["split"] == "test"
        assert res["validation"][row]["multi30k"]["settings"]["split"] == "validation"
    meta = read_json(out / "data" / "multi30k" / "meta.json")
    assert meta["splits"]["test"] == 1000 and meta["baselines"]["test"]["copy the source"] < 5
    assert meta["tokenizer"]["name"] == "spm" and meta["tokenizer"]["model"]  # SentencePiece, its model with it
    side = read_json(out / "pretrain" / "ar" / "best.json")  # a sidecar stays small: no model in it
    assert side["tokenizer"]["vocab_size"] == meta["tokenizer"]["vocab_size"] and "model" not in side["tokenizer"]
    # the distilled task: the fine-tuned AR model's outputs as train targets, the real validation and test
    kd = read_json(out / "data" / "multi30k_distilled" / "meta.json")["distilled"]
    assert kd == res["distilled"]["multi30k"] and kd["teacher"] == str(out / "finetune" / "ar" / "multi30k" / "best.pt")
    assert kd["rows"] == meta["splits"]["train"] and kd["teacher_tokenizer"]["model"] == meta["tokenizer"]["model"]
    for split in ("validation", "test"):
        assert (out / "data" / "multi30k_distilled" / f"{split}.jsonl").read_bytes() == \
            (out / "data" / "multi30k" / f"{split}.jsonl").read_bytes()
    for row in ("diffusion_distilled", "ar2diff_ft_block4_distilled"):
        ft = load_checkpoint(out / "finetune" / row / "multi30k" / "best.pt")  # trained on it, scored on the real one
        assert ft["data"] == str(out / "data" / "multi30k_distilled"), row
        ev = read_json(out / "finetune" / row / "multi30k" / "eval" / "metrics.json")
        assert ev["ckpt"].endswith(f"{row}/multi30k/best.pt")
    # AR2Diff-block4 of AR-ft: the teacher itself, converted (its weights but [MASK]), then fine-tuned
    converted = load_checkpoint(out / "pretrain" / "ar2diff_ft_block4" / "converted.pt")
    teacher = load_checkpoint(out / "finetune" / "ar" / "multi30k" / "best.pt")
    assert converted["converted_from"] == str(out / "finetune" / "ar" / "multi30k" / "best.pt")
    assert (converted["objective"], converted["block_len"]) == ("diffusion", 4)
    assert torch.equal(converted["model"]["transformer.h.0.attn.c_attn.weight"],
                       teacher["model"]["transformer.h.0.attn.c_attn.weight"])
    # the transfer curves: diffusion from scratch and the block conversion, one curve per pretraining
    curves = res["curves"]
    assert [s for s, _ in curves["pretrain"]["diffusion (distilled)"]] == [0, 2, 4]
    assert set(curves["pretrain"]) >= {"diffusion (distilled)"}
    assert set(curves["finetune"]) == rows
    assert {"pretrain_ar", "pretrain_diffusion", "finetune_ar", "finetune_diffusion_distilled",
            "finetune_ar2diff_ft_block4_distilled"} <= set(res["training_speed"])
    report = (out / "report.md").read_text()
    for needed in ("| AR2Diff-block4 of AR-ft (distilled) |", "## Distillation", "Validation split", "## Transfer curves",
                   "## Training speed", "sacreBLEU signature", "copy the source", "--quick", "SentencePiece BPE",
                   "ahead of diffusion from scratch on the same"):
        assert needed in report, needed
    for png in ("transfer.png", "finetune.png"):
        assert (out / png).stat().st_size > 0
    if os.path.exists(os.path.join(ROOT, "runs", "pareto.py")):  # the front, where its script is there
        assert (out / "pareto.json").stat().st_size > 0 and (out / "pareto.png").stat().st_size > 0
        assert res["pareto"] is not None


def test_multi30k_ablations_quick(m30k_quick, root, shared_data, tmp_path):
    """Block and uniform conversions of the run's own AR model, beside the run's rows; the data and the AR
    pretraining are reused, not redone."""
    out, _ = m30k_quick
    p = run(["bash", "runs/multi30k_ablations.sh", "--quick", "--seed", "3", "--out", str(out), "--shared",
             str(shared_data)], root, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "data (done before)" in p.stdout and "pretrain_ar (done before)" in p.stdout
    block, uniform = (load_checkpoint(out / "pretrain" / m / "best.pt")
                      for m in ("ar2diff_block4_2", "ar2diff_uniform_2"))
    assert (block["objective"], block["noise"], block["block_len"]) == ("diffusion", "mask", 4)
    assert (uniform["objective"], uniform["noise"], uniform["block_len"]) == ("diffusion", "uniform", None)
    res = read_json(out / "ablations.json")
    assert res["seeds"] == ["3"] and res["tasks"] == ["multi30k"] and res["metric"] == {"multi30k": "bleu"}
    assert res["reranking"] == {}  # no candidate sweep here
    for row in ("AR", "diffusion (distilled)", "AR2Diff-block4_2", "AR2Diff-block4_2 (distilled)",
                "AR2Diff_2 (uniform)"):
        assert res["scores"][row]["multi30k"][0] is not None, row
    for row in ("diffusion", "AR2Diff_0", "AR2Diff_2"):  # multi30k.sh no longer trains them
        assert res["scores"][row]["multi30k"] == [None], row
    for row in ("AR2Diff-block4_2", "AR2Diff_2 (uniform)"):
        m = read_json(out / "finetune" / res["rows"][row] / "multi30k" / "eval" / "metrics.json")
        assert m["count"] == 4 and "tok:13a" in m["signature"]
    text = (out / "ablations.md").read_text()
    for needed in ("| AR2Diff-block4_2 |", "| AR2Diff_2 (uniform) |", "multi30k (BLEU)", "distilled against real",
                   "both distilled", "val loss"):
        assert needed in text, needed
    # a folder with the ablation rows alone takes the other rows from the run's results.json, and says so
    alone = tmp_path / "alone"
    for sub in ("pretrain/ar", "finetune/ar2diff_block4_2/multi30k/eval"):
        shutil.copytree(out / sub, alone / sub)
    p = run(["python", "runs/ablations.py", "--runs", str(alone), "--results", str(out / "results.json"), "--tasks",
             "multi30k", "--candidates", "", "--adapt_steps", "2", "--out", str(tmp_path / "alone")], root, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    got = read_json(tmp_path / "alone.json")
    assert got["scores"] == {**res["scores"], "AR2Diff_2 (uniform)": {"multi30k": [None]},
                             "AR2Diff-block4_2 (distilled)": {"multi30k": [None]}}  # neither in multi30k.sh's results
    assert {row for _, row, _ in got["taken_from_results"]} == {"AR", "diffusion (distilled)"}
    assert list(got["same_ar_model"].values())[0][2] is True and "are the same" in p.stdout
    p = run(["python", "runs/ablations.py", "--runs", str(alone), "--results", str(tmp_path / "none.json"),
             "--out", str(tmp_path / "x")], root, timeout=300)
    assert p.returncode == 2 and "none.json does not exist" in p.stderr


def test_multi30k_pipeline_bad_flag_and_missing_data(root, tmp_path):
    p = run(["bash", "runs/multi30k.sh", "--steps", "3"], root, timeout=60)
    assert p.returncode == 2 and "usage: bash runs/multi30k.sh" in p.stderr
    p = run(["bash", "runs/multi30k.sh", "--quick", "--out", str(tmp_path / "o"), "--shared", str(tmp_path)],
            root, timeout=120)
    assert p.returncode != 0 and f"--src {tmp_path}/multi30k_enfr: train.en.gz is missing" in p.stderr


def test_tiny_pipeline_rejects_unknown_flags(root):
    p = run(["bash", "runs/tiny.sh", "--steps", "3"], root, timeout=60)
    assert p.returncode == 2 and "usage: bash runs/tiny.sh" in p.stderr


@pytest.mark.parametrize("script", ["runs/small_gpu.sh", "runs/gpt2_ar2diff.sh"])
def test_other_recipes_parse(root, script):
    p = run(["bash", "-n", script], root, timeout=60)  # syntax only: they need a GPU or downloads
    assert p.returncode == 0, p.stderr


def test_stage_runner_runs_in_pieces(root, tmp_path):
    """runs/stages.sh: MINUTES=M stops before the next stage (status 3); RESUME=1 skips what finished."""
    script = tmp_path / "recipe.sh"
    script.write_text(f"""set -euo pipefail
OUT={tmp_path}/out
source {root}/runs/stages.sh
step one bash -c 'echo 1 >> {tmp_path}/ran'
START=$((START - ${{SHIFT:-0}}))  # as if the first stage had taken SHIFT seconds
step two bash -c 'echo 2 >> {tmp_path}/ran'
step three bash -c 'echo 3 >> {tmp_path}/ran'
""")
    p = run(["bash", str(script)], root, env={**os.environ, "MINUTES": "1", "SHIFT": "61"}, timeout=60)
    assert p.returncode == 3 and "--resume goes on from stage 'two'" in p.stderr
    assert (tmp_path / "ran").read_text() == "1\n"
    p = run(["bash", str(script)], root, env={**os.environ, "RESUME": "1"}, timeout=60)
    assert p.returncode == 0 and "one (done before)" in p.stdout
    assert (tmp_path / "ran").read_text() == "1\n2\n3\n"
    p = run(["bash", str(script)], root, timeout=60)  # without RESUME every stage runs again
    assert p.returncode == 0 and (tmp_path / "ran").read_text() == "1\n2\n3\n1\n2\n3\n"


@pytest.mark.parametrize("lanes", ["1", "2"])
def test_stage_runner_lanes(root, tmp_path, lanes):
    """runs/stages.sh lanes: at most LANES at a time; wait_lane on a lane another wait already reaped, then
    drain, still waits for every lane (LANES=1 once let drain return early); a failed lane stops the recipe."""
    script = tmp_path / "lanes.sh"
    script.write_text(f"""set -euo pipefail
OUT={tmp_path}/out
source {root}/runs/stages.sh
slow() {{ sleep "$1"; echo "$2" >> {tmp_path}/ended; }}
lane slow 0.4 a; A=$LANE_PID
lane slow 0.1 b
wait_lane "$A"
lane slow 0.3 c
drain
echo "after drain: $(cat {tmp_path}/ended | tr '\\n' ' ')"
lane false
lane slow 0.2 d
drain
echo unreachable
""")
    p = run(["bash", str(script)], root, env={**os.environ, "LANES": lanes}, timeout=60)
    assert p.returncode == 1 and "unreachable" not in p.stdout, p.stdout + p.stderr
    ended = p.stdout.split("after drain: ")[1].split()
    assert sorted(ended) == ["a", "b", "c"]  # drain returned only after every lane had ended
    assert ended == (["a", "b", "c"] if lanes == "1" else ["b", "a", "c"])

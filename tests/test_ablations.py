"""runs/tiny_ablations.sh --quick on top of runs/tiny.sh --quick, and runs/ablations.py over two seeds:
the block and uniform rows, the reranking sweep and the block speed table are produced (the budgets
are tiny: the numbers mean nothing, the plumbing is what is checked)."""
import subprocess

from data.common import read_json
from model import load_checkpoint


def run(cmd, root):
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def test_ablations_quick(root, tmp_path):
    out = tmp_path / "tiny"
    run(["bash", "runs/tiny.sh", "--quick", "--seed", "5", "--out", str(out)], root)
    p = run(["bash", "runs/tiny_ablations.sh", "--quick", "--seed", "5", "--out", str(out)], root)
    assert f"{out}/ablations.md" in p.stdout
    block, uniform = (load_checkpoint(out / "pretrain" / m / "best.pt") for m in ("ar2diff_block4_2", "ar2diff_uniform_2"))
    assert (block["objective"], block["noise"], block["block_len"]) == ("diffusion", "mask", 4)
    assert (uniform["objective"], uniform["noise"], uniform["block_len"]) == ("diffusion", "uniform", None)
    res = read_json(out / "ablations.json")
    assert res["seeds"] == ["5"]
    for row in ("AR2Diff-block4_2", "AR2Diff_2 (uniform)"):
        assert res["scores"][row]["qa"] == [None]  # not run: a block of 4 holds a whole QA answer
        for task in ("translation", "code"):
            assert res["scores"][row][task][0] is not None, (row, task)
    assert set(res["reranking"]) == {"diffusion", "AR2Diff_2", "AR2Diff-block4_2"}
    assert all(len(v) == 1 and v[0] is not None for per in res["reranking"].values() for v in per.values())
    speed = res["speed"]["5"]["results"]
    assert [r["length"] for r in speed] == [16, 32] and all(r["block"] and r["diffusion"] for r in speed)
    text = (out / "ablations.md").read_text()
    for needed in ("| AR2Diff-block4_2 |", "| AR2Diff_2 (uniform) |", "S = 4", "block (K = 4) against full",
                   "mask against uniform noise", "Decoding speed"):
        assert needed in text, needed
    # two seeds side by side: every cell holds one number per seed
    two = run(["python", "runs/ablations.py", "--runs", str(out), str(out), "--adapt_steps", "2", "--candidates",
               "1,4", "--out", str(tmp_path / "two")], root)
    assert "at 2 of 2 seeds" in two.stdout or "at 0 of 2 seeds" in two.stdout
    assert read_json(tmp_path / "two.json")["seeds"] == ["5", "5"]

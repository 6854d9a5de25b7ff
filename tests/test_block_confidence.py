"""runs/block_confidence.py: what a block's first call knows, against the one-token-per-call decode."""
import math

import pytest

from data.common import read_json, sha256_of, write_json, write_jsonl
from runs import block_confidence
from tests.test_sample import TOK, make_ckpt


def make_task(root):
    write_jsonl(root / "validation.jsonl", [{"id": i, "input": f"say {i}", "target": "x y"} for i in range(6)])
    write_json(root / "meta.json", {"task": "toy", "metric": "bleu", "splits": {"validation": 6}})
    return dict(name="toy", folder=str(root))


def test_first_call_table(tmp_path):
    task = make_task(tmp_path / "toy")
    random, _ = make_ckpt(tmp_path / "block.pt", "diffusion", "mask", block_len=4, task=task)
    stats = block_confidence.main(["--ckpt", random, "--limit", "6", "--json", str(tmp_path / "c.json")])
    saved = read_json(tmp_path / "c.json")  # says what made it
    assert saved["positions"] == stats and saved["made_by"]["sha256"] == sha256_of(random)
    assert saved["made_by"]["data"] == str(tmp_path / "toy") and saved["limit"] == 6
    assert [s["position"] for s in stats] == [0, 1, 2, 3]
    assert sum(s["tokens"] for s in stats) == 6 * 16  # no EOS is likely: every output fills its 16 tokens
    assert stats[0]["accuracy"] == 1.0  # read before the block: what the decode commits there
    assert all(0 < s["top_probability"] < 1 for s in stats)
    # a model whose every output is these logits whatever it reads: "x" is its greedy token everywhere (p = 0.54)
    xy = {TOK.encode(c)[0]: v for c, v in (("x", 8.0), ("y", 7.0), (" ", 7.0))}
    fixed, _ = make_ckpt(tmp_path / "fixed.pt", "diffusion", "mask", logits=xy, block_len=4, task=task)
    ar, _ = make_ckpt(tmp_path / "ar.pt", "ar", logits={TOK.encode("y")[0]: 9.0}, task=task)  # greedy "y"
    for ref, acc in ((None, 1.0), (ar, 0.0)):
        stats = block_confidence.main(["--ckpt", fixed, "--limit", "6"] + (["--ref_ckpt", ref] if ref else []))
        assert all(s["accuracy"] == acc and s["sure"] == 0.0 for s in stats)
        top = math.exp(8) / (math.exp(8) + 2 * math.exp(7) + TOK.mask_id - 3)  # [MASK] and spare ids never drawn
        assert all(abs(s["top_probability"] - top) < 1e-4 for s in stats)


def test_bad_input_names_the_flag(tmp_path, capsys):
    task = make_task(tmp_path / "toy")
    full, _ = make_ckpt(tmp_path / "full.pt", "diffusion", "mask", task=task)
    with pytest.raises(SystemExit):
        block_confidence.main(["--ckpt", full])
    assert "block_len None" in capsys.readouterr().err
    ar, _ = make_ckpt(tmp_path / "ar.pt", "ar", task=task)
    block, _ = make_ckpt(tmp_path / "block.pt", "diffusion", "mask", block_len=4, task=task)
    with pytest.raises(SystemExit):
        block_confidence.main(["--ckpt", block, "--ref_ckpt", full])
    assert "--ref_ckpt: objective must be ar" in capsys.readouterr().err

"""runs/pareto.py: the BLEU-against-latency front, scored as evaluate.py scores, calls counted, the summary merged."""
import json

import pytest

import evaluate
from data.common import write_json, write_jsonl
from runs import pareto
from tests.test_sample import TOK, make_ckpt

# every position's logits, whatever the input: greedy is always "x" (p = 0.54: a 0.5 threshold commits a whole
# block at its first step), sampling mixes in "y" and spaces; EOS is never likely, so outputs fill 16 tokens
XY = {TOK.encode(c)[0]: v for c, v in (("x", 8.0), ("y", 7.0), (" ", 7.0))}
GRID = "block:threshold=0.5,temperature=0;block:paper;full:num_steps=2;num_steps=1,num_samples=2,temperature=1"


def make_task(root, n=5, distilled=False):
    rows = [{"id": f"s{i}", "input": f"translate {i}", "target": "x y x" if i % 2 else "xxxx y xxxx"}
            for i in range(n)]
    write_jsonl(root / "test.jsonl", rows)
    meta = {"task": "toy_mt", "metric": "bleu", "splits": {"test": n}}
    write_json(root / "meta.json", {**meta, "distilled": {"teacher": "ar.pt"}} if distilled else meta)
    return root


@pytest.fixture
def run(tmp_path):
    task, dist = make_task(tmp_path / "mt"), make_task(tmp_path / "mt_distilled", distilled=True)
    task_of = lambda folder: dict(name="toy_mt", folder=str(folder))  # noqa: E731
    ar, _ = make_ckpt(tmp_path / "ar.pt", "ar", logits=XY, task=task_of(task))
    block, _ = make_ckpt(tmp_path / "block.pt", "diffusion", "mask", logits=XY, block_len=4, task=task_of(dist))
    full, _ = make_ckpt(tmp_path / "full.pt", "diffusion", "mask", logits=XY, seed=1, task=task_of(task))
    return tmp_path, task, ar, block, full


def test_front_rows_calls_and_summary(run, capsys):
    tmp, task, ar, block, full = run
    summary = tmp / "summary.json"
    write_json(summary, {"seeds": {"1": {"AR": {"bleu": 40.0}}, "7": {"old row": {"bleu": 1.0}}}, "note": "kept"})
    out, png = tmp / "pareto.json", tmp / "pareto.png"
    result = pareto.main(["--ar_ckpt", ar, "--models", f"B4={block},full={full}", "--split", "test", "--limit", "4",
                          "--b1_limit", "2", "--repeats", "1", "--batch_size", "3", "--settings", GRID,
                          "--compile", "off", "--diffusion_compile", "off", "--json", str(out), "--plot", str(png),
                          "--summary", str(summary), "--seed", "7"])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    rows = {r["name"]: r for r in data["rows"]}
    assert list(rows) == ["AR", "B4 threshold=0.5,temperature=0", "B4 paper",
                          "B4 num_steps=1,num_samples=2,temperature=1", "full num_steps=2",
                          "full num_steps=1,num_samples=2,temperature=1"]
    assert data["machine"]["torch_threads"] >= 1 and "cpu" in data["machine"] and data["task"] == "toy_mt"
    for r in rows.values():
        assert r["n"] == 4 and r["ms_b1"] > 0 and r["ms_b50"] > 0 and 0 <= r["bleu"] <= 100 and r["length_ratio"] > 0
    # the settings as decoded, every one filled in: a threshold caps the steps at the block and keeps one candidate
    assert rows["B4 threshold=0.5,temperature=0"]["setting"] == dict(num_steps=4, num_samples=1, temperature=0.0,
                                                                     threshold=0.5, order="confidence",
                                                                     schedule="linear", compiled_b1=False,
                                                                     ms_b1_eager_compiled=None, compiled_b50=False,
                                                                     ms_b50_eager_compiled=None)
    assert rows["B4 paper"]["setting"]["num_steps"] == 10 and rows["B4 paper"]["setting"]["num_samples"] == 8
    assert rows["AR"]["setting"]["decoder"] == "greedy, KV cache" and rows["AR"]["setting"]["compiled_b1"] is False
    # calls per sentence (each alone, the prefix pass included) and per output token (16 tokens, no EOS)
    expected = {"AR": 16, "B4 threshold=0.5,temperature=0": 1 + 4, "B4 paper": 1 + 4 * 4,
                "B4 num_steps=1,num_samples=2,temperature=1": 1 + 4, "full num_steps=2": 1 + 2,
                "full num_steps=1,num_samples=2,temperature=1": 2}
    for name, calls in expected.items():
        assert rows[name]["calls_per_sentence"] == calls and rows[name]["calls_per_token"] == calls / 16, name
    assert [r["distilled"] for r in rows.values()] == [False, True, True, True, False, False]
    # scored as evaluate.py scores: the same outputs (its per-example seeds), the same BLEU
    for i, (name, ckpt, flags) in enumerate((("AR", ar, []), ("B4 paper", block, []),
                              ("full num_steps=1,num_samples=2,temperature=1", full,
                               ["--num_steps", "1", "--num_samples", "2", "--temperature", "1"]),
                              ("B4 threshold=0.5,temperature=0", block, ["--threshold", "0.5", "--temperature", "0",
                                                                         "--num_steps", "4", "--num_samples", "1"]))):
        metrics = evaluate.main(["--ckpt", ckpt, "--task_dir", str(task), "--limit", "4", "--out_dir",
                                 str(tmp / f"eval_{i}"), *flags])
        assert (rows[name]["bleu"], rows[name]["length_ratio"]) == (metrics["bleu"], metrics["length_ratio"]), name
    # the settings really differ: greedy writes one 16-x word (BLEU 0), temperature 1 a few words
    assert len({r["bleu"] for r in rows.values()}) > 1 and len({r["length_ratio"] for r in rows.values()}) > 1
    # the summary: this seed's rows merged in, the other seed and keys kept
    s = json.loads(summary.read_text())
    assert s["note"] == "kept" and s["seeds"]["1"] == {"AR": {"bleu": 40.0}} and "old row" in s["seeds"]["7"]
    assert s["seeds"]["7"]["AR"] == {k: rows["AR"][k] for k in ("bleu", "length_ratio", "ms_b1", "ms_b50",
                                                                 "calls_per_token", "distilled")}
    assert s["seeds"]["7"]["B4 paper"]["distilled"] is True and len(s["seeds"]["7"]) == 7
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "calls/tok" in capsys.readouterr().out


def test_rerank_by_the_ar_model(run, tmp_path):
    """rerank=ar: the --ar_ckpt model picks among the candidates, as evaluate.py --rerank_ckpt does; one call more."""
    _, task, ar, block, _ = run
    rr = "num_samples=3,temperature=1,rerank=ar"
    result = pareto.main(["--ar_ckpt", ar, "--models", f"B4={block}", "--limit", "4", "--b1_limit", "1", "--repeats",
                          "1", "--compile", "off", "--diffusion_compile", "off", "--settings",
                          f"block:num_samples=3,temperature=1;block:{rr}"])
    rows = {r["name"]: r for r in result["rows"]}
    assert rows[f"B4 {rr}"]["setting"]["rerank"] == "ar" and "rerank" not in rows["B4 num_samples=3,temperature=1"]
    assert rows[f"B4 {rr}"]["calls_per_sentence"] == rows["B4 num_samples=3,temperature=1"]["calls_per_sentence"] + 1
    metrics = evaluate.main(["--ckpt", block, "--task_dir", str(task), "--limit", "4", "--out_dir", str(tmp_path / "e"),
                             "--num_samples", "3", "--temperature", "1", "--rerank_ckpt", ar])
    assert (rows[f"B4 {rr}"]["bleu"], rows[f"B4 {rr}"]["length_ratio"]) == (metrics["bleu"], metrics["length_ratio"])
    assert metrics["settings"]["rerank_ckpt"] == ar and len(metrics["made_by"]["rerank_sha256"]) == 64


def test_each_row_takes_the_faster_of_eager_and_compiled():
    results = {"AR": dict(name="AR", setting=dict(compiled=False), ms_b1=2.0, ms_b50=1.0, bleu=5.0),
               "AR (compiled)": dict(name="AR (compiled)", setting=dict(compiled=True), ms_b1=1.0, ms_b50=3.0,
                                     bleu=5.0),
               "m x": dict(name="m x", setting=dict(threshold=0.5, compiled=False), ms_b1=4.0, bleu=1.0),
               "m x (compiled)": dict(name="m x (compiled)", setting=dict(threshold=0.5, compiled=True), ms_b1=3.0,
                                      bleu=1.0)}
    rows = pareto.pick(results, {"AR": ["AR", "AR (compiled)"], "m x": ["m x", "m x (compiled)"]})
    assert [r["name"] for r in rows] == ["AR", "m x"]
    assert (rows[0]["ms_b1"], rows[0]["ms_b50"], rows[1]["ms_b1"]) == (1.0, 1.0, 3.0)
    assert rows[0]["setting"]["compiled_b1"] is True and rows[0]["setting"]["compiled_b50"] is False
    assert rows[0]["setting"]["ms_b1_eager_compiled"] == [2.0, 1.0]
    assert rows[1]["setting"] == dict(threshold=0.5, compiled_b1=True, ms_b1_eager_compiled=[4.0, 3.0])
    rows = pareto.pick(results, {"m x": ["m x"]})  # --compile off: one variant, nothing to choose
    assert rows == [dict(results["m x"], setting=dict(threshold=0.5, compiled_b1=False, ms_b1_eager_compiled=None))]


def test_grid():
    grid = pareto.parse_grid(pareto.GRID)
    assert [(k, text) for k, text, _ in grid][:4] == [("block", "threshold=0.5,temperature=0"),
                                                       ("block", "threshold=0.7,temperature=0"),
                                                       ("block", "threshold=0.9,temperature=0"), ("block", "paper")]
    assert [kw for k, _, kw in grid if k == "full"] == [dict(num_steps=s) for s in (1, 10)]
    assert pareto.parse_grid("order=random,schedule=cosine") == [(None, "order=random,schedule=cosine",
                                                                  dict(order="random", schedule="cosine"))]
    for bad in ("steps=3", "block:num_steps=0", "half:paper", "threshold=1.5", "order=best", "num_steps=two", ";",
                "rerank=best"):
        with pytest.raises(ValueError):
            pareto.parse_grid(bad)


@pytest.mark.parametrize("argv,flag", [
    (["--models", "B4"], "--models"),
    (["--models", "AR={block}"], "--models"),
    (["--models", "a={block},a={full}"], "--models"),
    (["--models", "a={ar}"], "--models"),
    (["--models", "a={none}"], "--models"),
    (["--models", "u={uniform}", "--settings", "threshold=0.5"], "--settings"),
    (["--models", "a={block}", "--settings", "block:steps=2"], "--settings"),
    (["--models", "a={block}", "--settings", "full:num_steps=2"], "--settings"),
    (["--models", "a={block}", "--settings", "block:threshold=0.5,rerank=ar"], "--settings"),  # one candidate
    (["--models", "a={block}", "--summary", "{summary}"], "--seed"),
    (["--models", "a={block}", "--split", "dev"], "--split"),
    (["--models", "a={block}", "--data", "{none}"], "--data"),
])
def test_bad_input_names_the_flag(run, capsys, argv, flag):
    tmp, task, ar, block, full = run
    paths = dict(ar=ar, block=block, full=full, none=str(tmp / "none"), summary=str(tmp / "s.json"),
                 uniform=make_ckpt(tmp / "uniform.pt", "diffusion", "uniform", task=dict(name="toy_mt"))[0])
    with pytest.raises(SystemExit) as e:
        pareto.main(["--ar_ckpt", ar, "--compile", "off", "--diffusion_compile", "off", "--b1_limit", "0",
                     *[a.format(**paths) for a in argv]])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err, err


def test_the_multi30k_recipe_grid_parses():
    """The full run's front settings (runs/multi30k.sh) are a valid grid: a typo there would only show after an hour."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "runs" / "multi30k.sh").read_text().replace("\\\n", "")
    full = re.search(r'^B1_LIMIT=50; PARETO_FLAGS=\(.*--settings "([^"]+)"\)', text, re.M)
    grid = pareto.parse_grid(full.group(1))
    assert (None, "num_samples=16,temperature=0.5,rerank=ar", dict(num_samples=16, temperature=0.5, rerank="ar")) in grid
    assert {k for k, _, _ in grid} == {"block", "full", None}

"""sample.py: generation from AR, diffusion and block checkpoints, the AR-vs-diffusion timing, flag errors."""
import json

import pytest
import torch

import sample
from data.common import save_checkpoint
from data.tokenizer import get_tokenizer
from model import GPT, GPTConfig
from tests.tiny_data import set_fixed_logits

TOK = get_tokenizer("byte")
CONFIG = dict(vocab_size=TOK.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32)


def make_ckpt(path, objective, noise=None, target_len=16, logits=None, seed=0, **extra):
    """A random tiny checkpoint; logits {id: value}: every position's logits, whatever the input, are
    these values for these ids and 0 for the others (e.g. {EOS: 10}: an AR model that stops at once)."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**CONFIG))
    if logits:
        set_fixed_logits(model, logits)
    ckpt = dict(model=model.state_dict(), config=CONFIG, tokenizer=TOK.state(), objective=objective,
                noise=noise, step=7, **extra)
    if target_len is not None:
        ckpt["target_len"] = target_len
    save_checkpoint(path, ckpt)
    return str(path), ckpt


@pytest.fixture
def ckpts(tmp_path):
    return {name: make_ckpt(tmp_path / f"{name}.pt", *spec)[0] for name, spec in
            dict(ar=("ar",), mask=("diffusion", "mask"), uniform=("diffusion", "uniform")).items()} | {
        "block": make_ckpt(tmp_path / "block.pt", "diffusion", "mask", block_len=4)[0]}


FAST = ["--repeats", "1", "--warmup", "0"]


def test_compare_json_holds_latencies_and_their_speedups(tmp_path, capsys):
    out, png = tmp_path / "speed.json", tmp_path / "speed.png"
    result = sample.main(["--compare", "--preset", "tiny", "--tokenizer", "byte", "--block_size", "40",
                          "--lengths", "8,24", "--num_steps", "2,4", "--threshold", "0.9", "--block_len", "4",
                          "--json", str(out), "--plot", str(png), *FAST])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    s = data["settings"]
    assert s["config"]["block_size"] == 40 and s["num_samples"] == 1 and s["threshold"] == 0.9 and s["block_len"] == [4]
    assert [r["length"] for r in data["results"]] == [8, 24]
    for r in data["results"]:
        ar = r["ar"]
        assert ar["calls"] == r["length"] and ar["latency_s"] > 0
        assert ar["per_call_s"] == pytest.approx(ar["latency_s"] / r["length"], rel=1e-12)
        for key, names in (("diffusion", {"2", "4"}), ("threshold", {"2", "4"}), ("block", {"4x2", "4x4"})):
            assert set(r[key]) == names
            for steps, d in r[key].items():
                assert d["latency_s"] > 0
                assert d["speedup"] == pytest.approx(ar["latency_s"] / d["latency_s"], rel=1e-12)
                assert d["tokens_per_s"] == pytest.approx(r["length"] / d["latency_s"], rel=1e-12)
                assert d["per_call_s"] == pytest.approx(d["latency_s"] / d["calls"], rel=1e-12)
        # calls: forward passes per output, the prefix pass included. Random weights: no token reaches
        # probability 0.9, so the threshold sampler runs every step too.
        assert [r[key][k]["calls"] for key in ("diffusion", "threshold") for k in ("2", "4")] == [3, 5, 3, 5]
        # block: S steps per block of 4 tokens; a block is cached in the pass of the next one's first step; no
        # early stop
        blocks = r["length"] // 4
        assert [r["block"][k]["calls"] for k in ("4x2", "4x4")] == [1 + blocks * S for S in (2, 4)]
        assert r["block"]["4x2"]["calls_per_token"] == (1 + blocks * 2) / r["length"] and ar["calls_per_token"] == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "diffusion, 4 steps" in table and "threshold 0.9, <=2 steps" in table and "speedup" in table
    assert "block 4, 2 steps/block" in table


def test_compare_times_one_model_and_full_length_ar(tmp_path, monkeypatch):
    """Every decoder gets the very model loaded from --ckpt, and AR and block decoding produce every requested
    token even from a model whose greedy choice is always EOS."""
    path, ckpt = make_ckpt(tmp_path / "eos.pt", "ar", logits={TOK.eos_id: 10.0})
    seen = {"ar": [], "diffusion": []}
    generate, diffusion_generate = GPT.generate, sample.diffusion_generate

    def ar_spy(self, prefix, prefix_len, max_new_tokens, *a, **k):
        out = generate(self, prefix, prefix_len, max_new_tokens, *a, **k)
        seen["ar"].append((self, out[0]))
        return out

    def diffusion_spy(model, *a, **k):
        out = diffusion_generate(model, *a, **k)
        seen["diffusion"].append((model, k.get("block_len"), out[2]["calls"]))
        return out

    monkeypatch.setattr(GPT, "generate", ar_spy)
    monkeypatch.setattr(sample, "diffusion_generate", diffusion_spy)
    rows = sample.main(["--compare", "--ckpt", path, "--lengths", "8,16", "--num_steps", "2", "--block_len", "4",
                        *FAST])["results"]
    models = {id(m) for m, _ in seen["ar"]} | {id(m) for m, _, _ in seen["diffusion"]}
    assert len(models) == 1 and len(seen["ar"]) == 2 and len(seen["diffusion"]) == 4
    # block decoding runs every block although each one is all EOS: 2 steps per block (the caching fused)
    assert [(K, calls) for _, K, calls in seen["diffusion"]] == [(None, 3), (4, 1 + 2 * 2), (None, 3), (4, 1 + 4 * 2)]
    assert [r["block"]["4x2"]["calls"] for r in rows] == [5, 9] and [r["ar"]["calls"] for r in rows] == [8, 16]
    model = seen["diffusion"][0][0]
    for k, v in ckpt["model"].items():
        assert torch.equal(model.state_dict()[k], v), k
    for (_, out), L in zip(seen["ar"], (8, 16)):
        assert out.shape == (1, L) and not (out == TOK.eos_id).any()
    # the same model generating normally stops at once: the suppression above is what made it run
    assert sample.main(["--ckpt", path, "--prompt", "hi"]) == [""]


@pytest.mark.parametrize("name", ["ar", "mask", "uniform", "block"])
def test_generate_from_checkpoint_is_seeded(ckpts, name, capsys):
    argv = ["--ckpt", ckpts[name], "--prompt", "Hello", "--temperature", "1.0", "--num_outputs", "2"]
    first = sample.main(argv + ["--seed", "3"])
    printed = capsys.readouterr().out
    assert "--- output 1" in printed and first[1] in printed and len(first) == 2
    assert sample.main(argv + ["--seed", "3"]) == first  # reproducible
    assert capsys.readouterr().out == printed
    assert sample.main(argv + ["--seed", "4"]) != first
    # output i depends on its own seed only, not on how many outputs were asked for
    assert sample.main(argv[:-2] + ["--seed", "4"]) == [sample.main(argv + ["--seed", "4"])[0]]


def test_generate_lengths_and_prompt_file(ckpts, tmp_path, capsys):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Hello\n")
    a = sample.main(["--ckpt", ckpts["mask"], "--prompt_file", str(prompt), "--num_steps", "3",
                     "--num_samples", "2", "--schedule", "cosine", "--temperature", "0"])
    assert a == sample.main(["--ckpt", ckpts["mask"], "--prompt", "Hello", "--num_steps", "3",
                             "--num_samples", "2", "--schedule", "cosine", "--temperature", "0"])
    assert "16 tokens" in capsys.readouterr().out  # the checkpoint's target_len
    sample.main(["--ckpt", ckpts["ar"], "--target_len", "5"])
    assert "5 tokens" in capsys.readouterr().out


def test_block_checkpoint_decodes_as_trained(ckpts, capsys):
    """A block checkpoint generates block by block (its block_len is not a flag outside --compare), and
    --compare times its block_len by default."""
    texts = sample.main(["--ckpt", ckpts["block"], "--prompt", "Hello", "--num_steps", "2", "--num_samples", "1"])
    out = capsys.readouterr().out
    assert "mask noise, block_len 4" in out and "--- output 0" in out and texts[0] in out
    calls = int(out.split(" calls")[0].rsplit(" ", 1)[1])
    # b blocks of 4 decoded: the prefix pass, 2 steps each, each block cached in the next one's first pass (b = 4
    # for 16 tokens, fewer when a block holds EOS)
    assert calls in [1 + b * 2 for b in (1, 2, 3, 4)]
    per_token = float(out.split(" calls/token")[0].rsplit(" ", 1)[1])
    n = len(TOK.encode(texts[0])) + 1  # the output's tokens, its EOS included (the byte tokenizer round-trips)
    assert per_token == pytest.approx(calls / min(n, 16), rel=1e-2)
    with pytest.raises(SystemExit):
        sample.main(["--ckpt", ckpts["block"], "--block_len", "8"])
    assert "--block_len 8: not a flag for generating" in capsys.readouterr().err  # the checkpoint fixes it
    rows = sample.main(["--compare", "--ckpt", ckpts["block"], "--lengths", "8", "--num_steps", "2", *FAST])["results"]
    assert set(rows[0]["block"]) == {"4x2"} and rows[0]["block"]["4x2"]["calls"] == 1 + 2 * 2


@pytest.mark.parametrize("ckpt,argv,flag", [
    ("ar", ["--num_steps", "10"], "--num_steps"),
    ("ar", ["--threshold", "0.9", "--num_samples", "4"], "--num_samples"),
    ("ar", ["--order", "random"], "--order"),
    ("mask", ["--top_k", "5"], "--top_k"),
    ("mask", ["--num_steps", "0"], "--num_steps"),
    ("mask", ["--num_steps", "10,20"], "--num_steps"),
    ("mask", ["--threshold", "1.5"], "--threshold"),
    ("mask", ["--temperature", "-1"], "--temperature"),
    ("mask", ["--target_len", "60", "--prompt", "Hello"], "--target_len"),
    ("ar", ["--target_len", "64"], "--target_len"),
    ("uniform", ["--threshold", "0.5"], "--threshold"),
    ("block", ["--top_k", "5"], "--top_k"),
    ("block", ["--block_len", "8"], "--block_len"),
    ("ar", ["--block_len", "4"], "--block_len"),
    ("ar", ["--compare", "--block_len", "0"], "--block_len"),
    ("ar", ["--lengths", "8"], "--lengths"),
    ("ar", ["--compare", "--preset", "tiny"], "--preset"),
    ("ar", ["--compare", "--top_k", "3"], "--top_k"),
    ("ar", ["--compare", "--lengths", "8,60"], "--lengths"),
    (None, ["--compare", "--block_size", "64", "--lengths", "60"], "--block_size"),
    (None, ["--prompt", "hi"], "--ckpt"),
    ("ar", ["--prompt", "hi", "--no-compile", "--compile_mode", "reduce-overhead"], "--compile_mode"),
    ("missing", [], "--ckpt"),
    (None, ["--compare", "--threshold", "0.5,0.9"], "--threshold"),
    ("mask", ["--task_dir", "TASK"], "--task_dir"),  # runs/quality.py's
    ("mask", ["--threshold", "0.5,0.9"], "--threshold"),
])
def test_bad_flags_name_the_flag(ckpts, tmp_path, capsys, ckpt, argv, flag):
    path = str(tmp_path / "missing.pt") if ckpt == "missing" else ckpts.get(ckpt)
    with pytest.raises(SystemExit) as e:
        sample.main((["--ckpt", path] if path else []) + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err, err


@pytest.mark.parametrize("objective,noise", [("ar", None), ("diffusion", "mask")])
def test_train_checkpoint_round_trips(tmp_path, capsys, objective, noise):
    """A task checkpoint written by train.py generates with its own objective and target_len."""
    import train
    from tests.tiny_data import tiny_flags, write_tiny_task
    task = write_tiny_task(tmp_path / "task")
    out = tmp_path / "run"
    train.main(tiny_flags(task, out, max_steps=2, eval_interval=2, eval_examples=4)
               + ["--objective", objective] + (["--noise", noise] if noise else []))
    capsys.readouterr()
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    texts = sample.main(["--ckpt", str(out / "ckpt.pt"), "--prompt", "reverse: abc", "--num_outputs", "2"])
    printed = capsys.readouterr().out
    assert len(texts) == 2 and f"# {out / 'ckpt.pt'}: {objective}, step {ckpt['step']}" in printed
    assert f"{ckpt['target_len']} tokens" in printed and "--- output 1" in printed


def test_plot_names_do_not_cover_each_other(tmp_path, monkeypatch):
    """Two named points on the same spot get different label offsets; a lone point keeps the first one."""
    import matplotlib.axes
    placed = []
    annotate = matplotlib.axes.Axes.annotate

    def record(self, text, xy, **kw):
        placed.append((text, kw["xytext"]))
        return annotate(self, text, xy, **kw)
    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", record)
    sample.plot(tmp_path / "p.png", [("a", [10, 100], [40.0, 5.0], "o-", ["t0.8,T0", "far"]),
                                      ("b", [10], [40.0], "s--", ["t0.95,T0"])], xlabel="ms", ylabel="BLEU")
    offsets = dict(placed)
    assert (tmp_path / "p.png").stat().st_size > 0 and set(offsets) == {"t0.8,T0", "far", "t0.95,T0"}
    assert offsets["t0.8,T0"] == offsets["far"] == (4, 4) and offsets["t0.95,T0"] != (4, 4)

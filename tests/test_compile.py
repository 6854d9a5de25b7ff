"""Static decoding shapes and torch.compile: the same tokens and losses as eager (model.compile_for_decoding)."""
import copy
import subprocess

import pytest
import torch

from data.common import read_json
from data.tokenizer import get_tokenizer
from diffusion import diffusion_generate, diffusion_loss
from model import GPT, GPTConfig, ar_loss, compile_for_decoding, make_generators

TOK = get_tokenizer("byte")
CONFIG = dict(vocab_size=TOK.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(**CONFIG)).eval()


def batch(B=3, P=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(TOK.n_ordinary, (B, P), generator=g)
    return prefix, torch.tensor([P, 7, 13][:B])


def decodings(m, blocks=True):
    """AR (greedy, sampled), full diffusion and block diffusion (greedy) of one batch with mixed prefix lengths."""
    prefix, plen = batch()
    gens = make_generators([1, 2, 3], "cpu")
    out = dict(ar=m.generate(prefix, plen, 40, TOK.eos_id),
               sampled=m.generate(prefix, plen, 40, TOK.eos_id, temperature=1.0, generators=gens))
    for name, K in (("diffusion", None), ("block", 4))[: 2 if blocks else 1]:
        out[name] = diffusion_generate(m, prefix, plen, 24, TOK, temperature=0.0, num_samples=2, block_len=K)[0]
    return out


def test_static_cache_decodes_the_same_tokens(model):
    """A cache of a power-of-two capacity and a prefix padded to 64 tokens change nothing but the shapes."""
    eager = decodings(model)
    static = copy.deepcopy(model)
    static.static_decoding = True
    prefix, plen = batch()
    for asked, got in ((30, 64), (64, 64), (65, 96)):  # a power of two, at least 64, at most block_size (96)
        cache, _ = static.prefill(prefix, plen, capacity=asked)
        assert cache.capacity == cache.k[0].size(2) == got
    for name, tokens in decodings(static).items():
        assert torch.equal(tokens, eager[name]), name


def test_compiled_decoding_equals_eager(model):
    eager = decodings(model)
    compiled = compile_for_decoding(copy.deepcopy(model))
    for name, tokens in decodings(compiled, blocks=False).items():  # each graph compiled costs seconds on a CPU
        assert torch.equal(tokens, eager[name]), name
    prefix, plen = batch()  # and the logits of a cached step, within float tolerance
    cache_e, h_e = model.prefill(prefix, plen, 40)
    cache_c, h_c = compiled.prefill(prefix, plen, 40)
    nxt = torch.full((3, 1), 65)
    step = dict(start=plen)  # an AR step (the graph compiled above)
    with torch.no_grad():
        torch.testing.assert_close(compiled(nxt, plen, cache=cache_c, **step), model(nxt, plen, cache=cache_e, **step),
                                   rtol=1e-4, atol=1e-4)


def test_compiled_training_loss_and_gradients_equal_eager(model):
    train = copy.deepcopy(model).train()
    compiled = torch.compile(copy.deepcopy(model).train())
    idx = torch.randint(TOK.n_ordinary, (4, 48), generator=torch.Generator().manual_seed(2))
    plen, seq_len = torch.tensor([5, 9, 20, 30]), torch.tensor([48, 40, 48, 33])
    for loss_fn in (lambda m: ar_loss(m, idx, plen, seq_len),
                    lambda m: diffusion_loss(m, idx, plen, seq_len, "mask", TOK, torch.Generator().manual_seed(3))):
        losses, grads = [], []
        for m in (train, compiled):
            m.zero_grad()
            loss = loss_fn(m)
            loss.backward()
            losses.append(loss.item())
            grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_gpu_check_cpu_form(root, tmp_path):
    """runs/gpu_check.sh --cpu: every stage at tiny shapes, then the summary table."""
    out = tmp_path / "gc"
    r = subprocess.run(["bash", "runs/gpu_check.sh", "--cpu", "--out", str(out)], cwd=root, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    speed, eager = read_json(out / "speed.json"), read_json(out / "speed_eager.json")
    assert speed["settings"]["compile"] is True and eager["settings"]["compile"] is False
    assert [x["length"] for x in speed["results"]] == [x["length"] for x in eager["results"]] == [16, 64]
    summary = read_json(out / "summary.json")
    assert set(summary["mfu"]) == {"ar", "diffusion"} and summary["train"]["tokens_per_s"] > 0
    assert summary["decoding"]["length"] == 64 and summary["decoding"]["speedup"] > 0
    text = (out / "summary.md").read_text()
    assert "| 64 |" in text and "not a GPU" in text and (out / "speed.png").read_bytes()[:4] == b"\x89PNG"

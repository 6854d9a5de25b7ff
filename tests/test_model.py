"""The Transformer's contracts: attention rule, batch invariance, caches, GPT-2 import, bad input."""
import pytest
import torch

from data.tokenizer import get_tokenizer
from diffusion import diffusion_generate
from model import GPT, GPTConfig, KVCache, PRESETS, make_generators, sample_logits

TOK = get_tokenizer("byte")


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=TOK.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 256, (3, 24), generator=g)
    return idx, torch.tensor([6, 10, 0]), torch.tensor([24, 17, 12])  # idx, prefix_len, seq_len


@pytest.mark.parametrize("mode", ["ar", "diffusion"])
def test_attention_rule(mode):
    model = tiny_model()
    idx, P, L = batch()
    ref = model(idx, P, L, mode=mode)
    b, i = 0, 15  # perturb one target token of example 0 (prefix 6, length 24)
    idx2 = idx.clone()
    idx2[b, i] = (idx2[b, i] + 1) % 256
    out = model(idx2, P, L, mode=mode)
    diff = (out - ref).abs().amax(-1)[b]
    assert diff[:6].max() == 0, "a prefix output saw the target"
    if mode == "ar":
        assert diff[6:i].max() == 0, "an earlier target output saw a later token"
    else:
        assert diff[6:i].min() > 0 and diff[i + 1:24].min() > 0, "diffusion must see every target token"
    assert diff[i + 1:24].min() > 0  # later target positions see it in both modes
    assert (out[1:] == ref[1:]).all(), "another example changed"
    # padding content changes no real output
    idx3 = idx.clone()
    idx3[1, 17:] = 5
    idx3[2, 12:] = 7
    out3 = model(idx3, P, L, mode=mode)
    assert (out3[1, :17] == ref[1, :17]).all() and (out3[2, :12] == ref[2, :12]).all()
    assert torch.isfinite(out3).all()


def test_prefix_zero_is_causal_lm():
    model = tiny_model()
    idx, _, _ = batch()
    T = idx.size(1)
    fast = model(idx)  # the is_causal fast path
    masked = model(idx, torch.zeros(3, dtype=torch.long), torch.full((3,), T))
    torch.testing.assert_close(fast, masked, atol=1e-5, rtol=1e-5)
    # causal: token t never sees t+1
    idx2 = idx.clone()
    idx2[:, 10] = (idx2[:, 10] + 1) % 256
    assert (model(idx2)[:, :10] == fast[:, :10]).all()


@pytest.mark.parametrize("mode", ["ar", "diffusion"])
def test_batch_invariance_logits(mode):
    model = tiny_model()
    idx, P, L = batch()
    full = model(idx, P, L, mode=mode)
    for b in range(3):
        alone = model(idx[b:b + 1, :L[b]], P[b:b + 1], L[b:b + 1], mode=mode)
        torch.testing.assert_close(alone[0], full[b, :L[b]], atol=1e-5, rtol=1e-5)


def prefixes(seed=1):
    g = torch.Generator().manual_seed(seed)
    lens = [9, 4, 13]
    rows = [torch.randint(0, 256, (n,), generator=g) for n in lens]
    prefix = torch.zeros(3, max(lens), dtype=torch.long)
    for b, r in enumerate(rows):
        prefix[b, :len(r)] = r
    return rows, prefix, torch.tensor(lens)


def test_batch_invariance_generation():
    model = tiny_model()
    rows, prefix, P = prefixes()
    ar = model.generate(prefix, P, 12, TOK.eos_id, suppress_from=TOK.mask_id)
    kw = dict(target_len=10, tok=TOK, num_steps=5, temperature=0.7, num_samples=3)
    diff, _ = diffusion_generate(model, prefix, P, generators=make_generators([11, 12, 13], "cpu"), **kw)
    for b, r in enumerate(rows):
        one = model.generate(r[None], P[b:b + 1], 12, TOK.eos_id, suppress_from=TOK.mask_id)
        assert one[0].tolist() == ar[b].tolist()
        d, _ = diffusion_generate(model, r[None], P[b:b + 1], generators=make_generators([11 + b], "cpu"), **kw)
        assert d[0].tolist() == diff[b].tolist()


def uncached_greedy(model, prefix, n_new):
    seq = prefix.tolist()
    P = torch.tensor([len(seq)])
    for _ in range(n_new):
        logits = model(torch.tensor([seq]), P, torch.tensor([len(seq)]))[0, -1]
        logits[TOK.mask_id:] = float("-inf")
        seq.append(int(logits.argmax()))
        if seq[-1] == TOK.eos_id:
            break
    return seq[len(prefix):]


def test_kv_cache_generation_equals_uncached():
    model = tiny_model(seed=3)
    rows, prefix, P = prefixes()
    out = model.generate(prefix, P, 20, TOK.eos_id, suppress_from=TOK.mask_id)
    for b, r in enumerate(rows):
        ref = uncached_greedy(model, r, 20)
        assert out[b, :len(ref)].tolist() == ref
        assert (out[b, len(ref):] == TOK.eos_id).all()  # after its own EOS an example only pads


def test_generation_stops_at_each_eos():
    model = tiny_model(seed=5)
    with torch.no_grad():  # constant final hidden state v, with p(EOS) about 0.3 at every step
        model.transformer.ln_f.weight.zero_()
        v = model.transformer.ln_f.bias.fill_(0.1)
        model.lm_head.weight[TOK.eos_id] = v * 4.7 / v.pow(2).sum()
    rows, prefix, P = prefixes()
    prefix, P = prefix.repeat(4, 1), P.repeat(4)
    out = model.generate(prefix, P, 15, TOK.eos_id, temperature=1.0,
                         generators=make_generators(range(12), "cpu"), suppress_from=TOK.mask_id)
    stops = []
    for row in out.tolist():
        assert TOK.eos_id in row
        stops.append(row.index(TOK.eos_id))
        assert set(row[stops[-1]:]) == {TOK.eos_id}  # after its own EOS an example only pads
        assert max(row) <= TOK.eos_id  # [MASK] and spare ids are never produced
    assert len(set(stops)) > 2  # examples stopped at different steps


def test_prefix_cache_equals_full_forward():
    model = tiny_model(seed=2)
    idx, P, _ = batch()
    T_tgt = 8
    L = P + T_tgt
    full = model(idx, P, L, mode="diffusion")
    cache, _ = model.prefill(idx[:, :int(P.max())], P, capacity=int(P.max()) + T_tgt)
    target = torch.stack([idx[b, P[b]:P[b] + T_tgt] for b in range(3)])
    for _ in range(2):  # every step reuses the same prefix cache
        out = model(target, P, cache=cache, start=P, mode="diffusion")
        ref = torch.stack([full[b, P[b]:P[b] + T_tgt] for b in range(3)])
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_sample_logits():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    assert sample_logits(logits).tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_logits(logits[None, 0], 1.0, top_k=2, generators=[g]) for _ in range(2000)])
    assert 0 not in draws.tolist()  # top-k 2 removes the smallest logit
    frac = (draws == 1).float().mean().item()
    assert abs(frac - torch.softmax(torch.tensor([5.0, 1.0]), 0)[0].item()) < 0.02


def test_gpt2_import_matches_huggingface():
    transformers = pytest.importorskip("transformers")  # an optional dependency (GPT-2 import only)
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(vocab_size=100, n_positions=32, n_embd=48, n_layer=2, n_head=4)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    ours = GPT.from_hf(hf).eval()
    assert ours.config.vocab_size == 128  # padded to a multiple of 64
    idx = torch.randint(0, 100, (2, 20))
    with torch.no_grad():
        ref = hf(idx).logits
    torch.testing.assert_close(ours(idx)[..., :100], ref, atol=1e-4, rtol=1e-4)
    # the spare rows were initialised (not left random): they hold the mean embedding
    torch.testing.assert_close(ours.transformer.wte.weight[100], hf.transformer.wte.weight.mean(0))


def test_presets_and_flops():
    for name in PRESETS:
        GPTConfig.preset(name)
    tiny = GPT(GPTConfig.preset("tiny", vocab_size=TOK.vocab_size))
    assert 0.5e6 < tiny.num_params() < 1.5e6
    small = GPT(GPTConfig.preset("small", vocab_size=TOK.vocab_size))
    assert 10e6 < small.num_params() < 30e6
    assert tiny.flops_per_token(256) > 6 * tiny.num_params()


def test_bad_input():
    model = tiny_model()
    idx, P, L = batch()
    with pytest.raises(ValueError, match="mode"):
        model(idx, P, L, mode="bidirectional")
    with pytest.raises(ValueError, match="idx"):
        model(idx.float())
    with pytest.raises(ValueError, match="idx"):
        model(idx[0])
    with pytest.raises(ValueError, match="prefix_len"):
        model(idx, P[:2], L)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="preset"):
        GPTConfig.preset("gpt5")
    with pytest.raises(ValueError, match="block_size"):
        KVCache(model.config, 1, 65, "cpu", torch.float32)
    with pytest.raises(ValueError, match="block_size"):
        model.generate(idx[:, :10], torch.tensor([10, 10, 10]), 60, TOK.eos_id)
    with pytest.raises(ValueError, match="tokenizer"):
        get_tokenizer("bpe")
    with pytest.raises(ValueError, match="tokenizer"):  # a checkpoint made with another vocabulary
        get_tokenizer("byte").check({"name": "gpt2", "vocab_size": 50304})


def _sample_logits_reference(logits, temperature, generators):  # the plain Gumbel-max over every id
    u = torch.stack([torch.rand(logits.shape[1:], generator=g, dtype=torch.float64) for g in generators])
    return (logits.double() / temperature - torch.log(-torch.log(u.clamp(1e-300, 1.0)))).argmax(-1)


@pytest.mark.parametrize("spread", [0.5, 3.0, 30.0])  # flat rows fall back to the full computation
def test_sample_logits_equals_full_gumbel_max(spread):
    torch.manual_seed(0)
    logits = torch.randn(6, 40, 500) * spread
    logits[..., 450:] = float("-inf")
    for temperature in (0.2, 1.0):
        fast = sample_logits(logits, temperature, generators=make_generators(range(6), "cpu"))
        ref = _sample_logits_reference(logits, temperature, make_generators(range(6), "cpu"))
        assert torch.equal(fast, ref)


@pytest.mark.parametrize("mode", ["ar", "diffusion", "block"])
def test_logits_at_equal_full_logits(mode):
    """`at` (the rows a loss reads) gives exactly those rows of the full logits, and ar_loss computed
    through it equals the cross-entropy over the full logits at the target positions."""
    import torch.nn.functional as F
    from model import ar_loss, target_mask
    model = tiny_model()
    idx, P, L = batch()
    P = P.clamp(min=1)
    x = torch.cat([idx, idx.flip(1)], 1) if mode == "block" else idx
    run = dict(mode=mode, block_len=4 if mode == "block" else None)
    full = model(x, P, L, **run).flatten(0, 1)
    at = torch.tensor([0, 5, 23, 30, 71])
    torch.testing.assert_close(model(x, P, L, at=at, **run), full[at], rtol=1e-5, atol=1e-6)
    if mode == "ar":
        labels = idx[:, 1:].masked_fill(~target_mask(P, L, 24)[:, 1:], -1)
        want = F.cross_entropy(full.view(3, 24, -1)[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-1)
        torch.testing.assert_close(ar_loss(model, idx, P, L), want, rtol=1e-5, atol=1e-6)

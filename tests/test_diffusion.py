"""The diffusion process: noise statistics, losses on hand-computed toy cases, sampler invariants."""
import math

import pytest
import torch
import torch.nn as nn

from data.tokenizer import get_tokenizer
from diffusion import (commit_schedule, corrupt, cut_at_eos, decode, diffusion_generate, diffusion_loss, rerank)
from model import GPT, GPTConfig, make_generators, target_mask

TOK = get_tokenizer("byte")


def test_corrupted_fraction_matches_rate():
    g = torch.Generator().manual_seed(0)
    B, T = 30, 400
    idx = torch.randint(0, 256, (B, T), generator=g)
    P = torch.full((B,), 50)
    L = torch.full((B,), 350)
    rate = torch.tensor([0.1, 0.5, 0.9]).repeat(10)
    target = target_mask(P, L, T)
    for noise in ("mask", "uniform"):
        noisy, corrupted = corrupt(idx, target, rate, noise, TOK, generator=g)
        frac = corrupted[:, 50:350].float().mean(1)
        for r in (0.1, 0.5, 0.9):  # 3000 Bernoulli draws per rate: std < 0.01
            assert abs(frac[rate == r].mean().item() - r) < 0.03
        assert not corrupted[:, :50].any() and not corrupted[:, 350:].any()  # prefix, padding
        assert (noisy[~target] == idx[~target]).all()
        if noise == "mask":
            assert (noisy[corrupted] == TOK.mask_id).all() and (noisy[~corrupted] == idx[~corrupted]).all()


def test_uniform_replacements_cover_ordinary_vocabulary():
    g = torch.Generator().manual_seed(1)
    idx = torch.full((64, 512), 65)
    ones = torch.ones(64, dtype=torch.long)
    target = target_mask(0 * ones, 512 * ones, 512)
    noisy, corrupted = corrupt(idx, target, torch.ones(64), "uniform", TOK, generator=g)
    assert corrupted.all()
    counts = torch.bincount(noisy.flatten(), minlength=TOK.vocab_size)
    assert counts[TOK.n_ordinary:].sum() == 0  # never EOS, [MASK] or a spare id
    expected = noisy.numel() / TOK.n_ordinary  # 128 per token
    chi2 = ((counts[:TOK.n_ordinary] - expected) ** 2 / expected).sum().item()
    assert chi2 < 256 + 5 * math.sqrt(2 * 256)  # chi-square, 255 dof: mean 255, sd 22.6


class Table(nn.Module):
    """A toy 'model': logits at a position depend only on the token there (logits = W[token])."""

    def __init__(self, V, seed=0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(V, V, generator=torch.Generator().manual_seed(seed)))
        self.calls = []

    def forward(self, idx, prefix_len, seq_len, mode, at=None):
        self.calls.append((idx.clone(), mode))
        return self.W[idx] if at is None else self.W[idx.flatten()[at]]


def nll(W, given, want):
    z = W[given].tolist()
    return -(z[want] - math.log(sum(math.exp(v) for v in z)))


def toy_batch():
    idx = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 0, 0]])
    return idx, torch.tensor([2, 1]), torch.tensor([6, 4])  # targets: 4 tokens and 3 tokens


@pytest.mark.parametrize("weight", ["elbo", "flat"])
def test_mask_loss_hand_computed(weight):
    tok = TOK
    model = Table(tok.vocab_size)
    idx, P, L = toy_batch()
    rate = torch.tensor([0.5, 0.25])
    loss = diffusion_loss(model, idx, P, L, "mask", tok, generator=torch.Generator().manual_seed(3), rate=rate,
                          weight=weight)
    noisy, corrupted = corrupt(idx, target_mask(P, L, 6), rate, "mask", tok, torch.Generator().manual_seed(3))
    assert corrupted.any()
    assert (model.calls[0][0] == noisy).all() and model.calls[0][1] == "diffusion"
    elbo = flat = 0.0
    for b in range(2):
        for i in range(6):
            if corrupted[b, i]:  # token i is predicted by the output at i - 1, which saw noisy[i - 1]
                elbo += nll(model.W, int(noisy[b, i - 1]), int(idx[b, i])) / rate[b].item()
                flat += nll(model.W, int(noisy[b, i - 1]), int(idx[b, i]))
    want = elbo / 7 if weight == "elbo" else flat / corrupted.sum().item()  # 7 target tokens in the batch
    assert loss.item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="weight must be one of"):
        diffusion_loss(model, idx, P, L, "mask", tok, rate=rate, weight="none")


@pytest.mark.parametrize("weight", ["elbo", "flat"])
def test_complementary_masks_hand_computed(weight):
    """Complementary masks: the pass sees each sequence masked and then with exactly the other target tokens
    masked (prefix and padding never); every target token is predicted once per pair; the loss is the doubled
    batch's (flat: the mean over all 7 target tokens, each once; elbo: rates r and 1 - r)."""
    model = Table(TOK.vocab_size)
    idx, P, L = toy_batch()
    rate = torch.tensor([0.5, 0.25])
    loss = diffusion_loss(model, idx, P, L, "mask", TOK, generator=torch.Generator().manual_seed(3), rate=rate,
                          weight=weight, complementary=True)
    target = target_mask(P, L, 6)
    noisy, corrupted = corrupt(idx, target, rate, "mask", TOK, torch.Generator().manual_seed(3))
    seen = model.calls[0][0]
    assert seen.shape == (4, 6) and torch.equal(seen[:2], noisy) and len(model.calls) == 1
    assert torch.equal(seen[2:] == TOK.mask_id, target & ~corrupted)  # the complement, over the target only
    assert torch.equal((seen[:2] == TOK.mask_id) ^ (seen[2:] == TOK.mask_id), target)
    elbo = flat = 0.0
    for copy, rates in ((seen[:2], rate), (seen[2:], 1 - rate)):
        for b in range(2):
            for i in range(6):
                if copy[b, i] == TOK.mask_id:
                    elbo += nll(model.W, int(copy[b, i - 1]), int(idx[b, i])) / rates[b].item()
                    flat += nll(model.W, int(copy[b, i - 1]), int(idx[b, i]))
    assert loss.item() == pytest.approx(elbo / 14 if weight == "elbo" else flat / 7, rel=1e-5)
    with pytest.raises(ValueError, match="complementary masks need mask noise"):
        diffusion_loss(model, idx, P, L, "uniform", TOK, rate=rate, complementary=True)


def test_position_dependent_masking_hand_computed():
    """ramp (Efficient-DLM's position-dependent masking): the j-th of a block's K target positions is masked
    with probability 2 r (j + 1) / (K + 1), clipped to [MIN_RATE, 1], r the block's draw: the masks are exactly
    those of the same draws under that formula, and later positions of a block are masked more."""
    from diffusion import MIN_RATE, draw_rate
    seen = []

    class Stub(nn.Module):  # records the block input [clean ; noisy], returns flat logits for the noisy half
        def forward(self, x, prefix_len, seq_len, mode, block_len, at):
            assert mode == "block" and block_len == 4
            seen.append(x)
            return torch.zeros(len(at), TOK.vocab_size)

    B, T, K = 3000, 11, 4
    idx = torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(0))
    P, L = torch.full((B,), 3), torch.full((B,), 11)  # targets: positions 3-10, blocks 3-6 and 7-10
    diffusion_loss(Stub(), idx, P, L, "mask", TOK, generator=torch.Generator().manual_seed(5), weight="flat",
                   block_len=K, ramp=True)
    masked = seen[0][:, T:] == TOK.mask_id
    g = torch.Generator().manual_seed(5)  # the same draws: a rate per block, then one uniform per position
    r = draw_rate(B * (T // K + 1), "cpu", g).view(B, -1)
    u = torch.rand(idx.shape, generator=g)
    offset = (torch.arange(T) - 3).clamp(min=0)
    p = (r.gather(1, (offset // K).expand(B, T)) * 2 * (offset % K + 1) / (K + 1)).clamp(MIN_RATE, 1)
    assert torch.equal(masked, (u < p) & (torch.arange(T) >= 3))
    frac = masked[:, 3:].float().mean(0)  # per position: 2 E[r] (j + 1) / 5 before clipping, E[r] ~ 0.5
    for blk in (frac[:4], frac[4:]):
        assert (blk[1:] > blk[:-1] + 0.05).all(), frac
    assert abs(frac[0].item() - 0.2) < 0.03 and abs(frac.mean().item() - 0.5) < 0.05  # clipping: a little under


def test_uniform_loss_hand_computed_and_no_grad_through_argmax():
    tok = TOK
    model = Table(tok.vocab_size, seed=1)
    idx, P, L = toy_batch()
    rate = torch.tensor([0.9, 0.6])
    loss = diffusion_loss(model, idx, P, L, "uniform", tok, generator=torch.Generator().manual_seed(4), rate=rate)
    target = target_mask(P, L, 6)
    noisy, _ = corrupt(idx, target, rate, "uniform", tok, torch.Generator().manual_seed(4))
    (first, _), (second, _) = model.calls
    assert (first == noisy).all()
    l1 = l2 = 0.0
    for b in range(2):
        for i in range(6):
            if target[b, i]:  # token i is predicted by the output at i - 1
                guess = int(model.W[int(noisy[b, i - 1]), : tok.mask_id].argmax())
                assert second[b, i] == guess  # the second pass sees the argmax of the first
                l1 += nll(model.W, int(noisy[b, i - 1]), int(idx[b, i]))
                l2 += nll(model.W, int(second[b, i - 1]), int(idx[b, i]))
            else:
                assert second[b, i] == idx[b, i]  # prefix (and padding) kept clean
    assert loss.item() == pytest.approx((l1 + l2) / 7, rel=1e-5)
    # gradient = that of L1(W) + L2(W) with the second pass's input held constant
    loss.backward()
    grad = model.W.grad.clone()
    model.W.grad = None
    ce = nn.functional.cross_entropy
    src = target.roll(-1, dims=1)  # the positions whose outputs predict the target tokens
    ref = (ce(model.W[first[src]], idx[target], reduction="sum")
           + ce(model.W[second[src]], idx[target], reduction="sum")) / 7
    ref.backward()
    torch.testing.assert_close(grad, model.W.grad)


def small_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


def prefix_batch():
    prefix = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(0))
    return prefix, torch.tensor([7, 3])


@pytest.mark.parametrize("L,steps,schedule", [(20, 10, "linear"), (23, 7, "cosine"), (5, 10, "linear")])
def test_mask_sampler_follows_schedule(L, steps, schedule):
    prefix, P = prefix_batch()
    tokens, _, info = diffusion_generate(small_model(), prefix, P, L, TOK, num_steps=steps, num_samples=2,
                                         schedule=schedule, return_info=True)
    counts = commit_schedule(L, steps, schedule)
    assert sum(counts) == L and min(counts) >= 1
    assert info["steps"] == len(counts)
    assert (info["commits"] == torch.tensor(counts)).all()  # every candidate, every step
    assert not (info["candidates"] == TOK.mask_id).any()  # no [MASK] left after num_steps
    assert tokens.max() <= TOK.eos_id
    # one canvas: every position is decided, and the reranking score is their mean committed log-prob
    assert info["candidate_logp"].shape == info["candidates"].shape and (info["candidate_logp"] <= 0).all()
    assert torch.allclose(info["candidate_scores"], info["candidate_logp"].mean(-1))


def test_random_order_and_uniform_sampler():
    prefix, P = prefix_batch()
    model = small_model()
    tokens, _ = diffusion_generate(model, prefix, P, 16, TOK, order="random", generators=make_generators([1, 2], "cpu"))
    assert not (tokens == TOK.mask_id).any()
    tokens, _, info = diffusion_generate(model, prefix, P, 16, TOK, noise="uniform", num_steps=4, return_info=True)
    assert info["steps"] == 4 and tokens.max() <= TOK.eos_id


def test_threshold_sampler():
    prefix, P = prefix_batch()
    model = small_model()
    _, _, info = diffusion_generate(model, prefix, P, 16, TOK, num_steps=16, threshold=0.0, return_info=True)
    assert info["steps"] == 1  # every token passes a threshold of 0
    _, _, never = diffusion_generate(model, prefix, P, 16, TOK, num_steps=16, threshold=1.1, return_info=True)
    assert never["steps"] == 16 and (never["commits"] == 1).all()  # at least one per step
    with torch.no_grad():  # a confident model: one byte dominates every prediction
        model.transformer.ln_f.weight.zero_()
        v = model.transformer.ln_f.bias.fill_(0.1)
        model.lm_head.weight[ord("a")] = v * 8 / v.pow(2).sum()
    toks, _, info = diffusion_generate(model, prefix, P, 16, TOK, num_steps=16, threshold=0.9, return_info=True)
    assert info["steps"] < 16 and (info["commits"] >= 1).all() and not (toks == TOK.mask_id).any()


def test_sampler_seed_and_rerank():
    prefix, P = prefix_batch()
    model = small_model()
    kw = dict(num_steps=4, temperature=1.0, num_samples=4, return_info=True)
    a = diffusion_generate(model, prefix, P, 12, TOK, generators=make_generators([5, 6], "cpu"), **kw)
    b = diffusion_generate(model, prefix, P, 12, TOK, generators=make_generators([5, 6], "cpu"), **kw)
    c = diffusion_generate(model, prefix, P, 12, TOK, generators=make_generators([7, 8], "cpu"), **kw)
    assert (a[0] == b[0]).all() and not (a[2]["candidates"] == c[2]["candidates"]).all()
    for tokens, scores, info in (a, c):
        best = info["candidate_scores"].argmax(-1)
        assert (tokens == info["candidates"][torch.arange(2), best]).all()
        assert (scores == info["candidate_scores"].max(-1).values).all()
        assert len(set(info["candidate_scores"][0].tolist())) > 1  # candidates really differ


def test_rerank_by_an_ar_model():
    """Each candidate's mean log-probability per token (EOS included, nothing after it) under the AR model, from
    one batched call, equals scoring it alone; decode keeps the best one and counts the call."""
    prefix, P = prefix_batch()
    model, ar = small_model(), small_model(seed=3)
    cand = torch.randint(0, 256, (2, 3, 6), generator=torch.Generator().manual_seed(1))
    cand[0, 1, 2], cand[1, 2, 0] = TOK.eos_id, TOK.eos_id  # an early EOS: the slots after it hold EOS
    cand[0, 1, 3:], cand[1, 2, 1:] = TOK.eos_id, TOK.eos_id
    with torch.no_grad():
        got = rerank(ar, prefix, P, cand, TOK)
    for b in range(2):
        for s in range(3):
            ids = cand[b, s].tolist()
            ids = ids[: ids.index(TOK.eos_id) + 1] if TOK.eos_id in ids else ids
            seq = torch.tensor([prefix[b, : P[b]].tolist() + ids])
            with torch.no_grad():  # alone: the prefix LM over [prefix ; candidate], output i reads token i + 1
                logits = ar(seq, P[b: b + 1], mode="ar").float()[0, int(P[b]) - 1: -1]
            logits[:, TOK.mask_id:] = float("-inf")
            want = logits.log_softmax(-1).gather(-1, torch.tensor(ids)[:, None]).mean()
            assert torch.allclose(got[b, s], want, atol=1e-5), (b, s)
    trained = dict(objective="diffusion", noise="mask", block_len=None)
    gens = lambda: make_generators([5, 6], "cpu")  # noqa: E731
    kw = dict(num_steps=4, temperature=1.0, num_samples=3)
    plain, _, calls = decode(model, trained, prefix, P, 6, TOK, generators=gens(), **kw)
    tokens, scores, rr_calls = decode(model, trained, prefix, P, 6, TOK, generators=gens(), reranker=ar, **kw)
    _, _, info = diffusion_generate(model, prefix, P, 6, TOK, generators=gens(), return_info=True, **kw)
    want = rerank(ar, prefix, P, info["candidates"], TOK)
    assert (tokens == info["candidates"][torch.arange(2), want.argmax(-1)]).all()
    assert torch.equal(scores, want.max(-1).values) and torch.equal(rr_calls, calls + 1)
    with pytest.raises(ValueError, match="--num_samples of 2 or more"):
        decode(model, trained, prefix, P, 6, TOK, reranker=ar, num_samples=1)
    with pytest.raises(ValueError, match="needs a diffusion model"):
        decode(ar, dict(objective="ar"), prefix, P, 6, TOK, reranker=ar)


def test_sampler_reads_token_i_from_output_i_minus_1():
    # one greedy step on an all-[MASK] canvas = the argmax of a full forward pass, shifted by one:
    # the first target token from the last prefix position, token i from the output at i - 1
    prefix, P = prefix_batch()
    model, L = small_model(), 9
    tokens, scores = diffusion_generate(model, prefix, P, L, TOK, num_steps=1, temperature=0, num_samples=1)
    for b in range(2):
        p = int(P[b])
        idx = torch.cat([prefix[b, :p], torch.full((L,), TOK.mask_id)])[None]
        with torch.no_grad():
            logits = model(idx, torch.tensor([p]), mode="diffusion")[0, p - 1: p + L - 1]
        logits[:, TOK.mask_id:] = float("-inf")
        assert (tokens[b] == logits.argmax(-1)).all()
        want = logits.log_softmax(-1).gather(-1, tokens[b][:, None]).mean()
        assert scores[b].item() == pytest.approx(want.item(), abs=1e-5)


def test_cut_at_eos():
    eos = TOK.eos_id
    assert cut_at_eos(torch.tensor([[1, 2, eos, 3, eos], [4, 5, 6, 7, 8]]), eos) == [[1, 2], [4, 5, 6, 7, 8]]


def test_bad_input():
    prefix, P = prefix_batch()
    model = small_model()
    idx, Pt, L = toy_batch()
    with pytest.raises(ValueError, match="noise"):
        diffusion_loss(model, idx, Pt, L, "gaussian", TOK)
    with pytest.raises(ValueError, match="noise"):
        diffusion_generate(model, prefix, P, 8, TOK, noise="gaussian")
    with pytest.raises(ValueError, match="order"):
        diffusion_generate(model, prefix, P, 8, TOK, order="left-to-right")
    with pytest.raises(ValueError, match="num_steps"):
        diffusion_generate(model, prefix, P, 8, TOK, num_steps=0)
    with pytest.raises(ValueError, match="block_size"):
        diffusion_generate(model, prefix, P, 60, TOK)
    with pytest.raises(ValueError, match="schedule"):
        commit_schedule(8, 2, "exponential")


@pytest.mark.parametrize("case", ["mask_elbo", "mask_flat", "complementary", "uniform"])
def test_loss_equals_full_logits_reference(case):
    """diffusion_loss computes the head only at the outputs it scores (model.forward `at`); it must equal
    the loss written over the full logits with the same draws, gradients included."""
    import torch.nn.functional as F
    from diffusion import draw_rate
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32))
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 250, (5, 30), generator=g)
    P, L = torch.randint(1, 12, (5,), generator=g), torch.randint(20, 31, (5,), generator=g)
    noise = "uniform" if case == "uniform" else "mask"
    kw = dict(weight="flat" if case in ("mask_flat", "complementary") else "elbo", complementary=case == "complementary")
    got = diffusion_loss(model, idx, P, L, noise, TOK, generator=torch.Generator().manual_seed(3), **kw)
    got_grad = torch.autograd.grad(got, model.lm_head.weight)[0]

    gen = torch.Generator().manual_seed(3)  # the same draws, in diffusion_loss's order
    target = target_mask(P, L, 30)
    rate = draw_rate(5, "cpu", gen)[:, None].expand(5, 30)
    noisy, corrupted = corrupt(idx, target, rate, noise, TOK, gen)
    if case == "complementary":
        other = target & ~corrupted
        noisy, corrupted = torch.cat([noisy, torch.where(other, TOK.mask_id, idx)]), torch.cat([corrupted, other])
        idx, P, L, target = (torch.cat([t, t]) for t in (idx, P, L, target))

    def ce(x, where):  # (B, T-1): token i + 1 read from output i, zero where not scored
        logits = model(x, P, L, mode="diffusion")[:, :-1]
        labels = idx[:, 1:].masked_fill(~where[:, 1:], -1)
        nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-1, reduction="none")
        return nll.view(idx.size(0), -1), logits
    if case == "uniform":
        nll, logits = ce(noisy, target)
        guess = F.pad(logits[..., : TOK.mask_id].argmax(-1), (1, 0))
        want = (nll.sum() + ce(torch.where(target, guess, noisy), target)[0].sum()) / target.sum()
    elif kw["weight"] == "flat":
        want = ce(noisy, corrupted)[0].sum() / corrupted.sum()
    else:
        want = (ce(noisy, corrupted)[0] / rate[:, 1:]).sum() / target.sum()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_grad, torch.autograd.grad(want, model.lm_head.weight)[0], rtol=1e-4, atol=1e-6)

"""Block diffusion: the third attention rule sits exactly between AR (K = 1) and full diffusion
(K >= the target), its decoding cache is exact, outputs stop after their EOS block, and a block
model goes through adapt.py, train.py, evaluate.py like the others."""
import copy
import json
import subprocess
import sys

import pytest
import torch

import adapt
import evaluate
import train
from data.common import load_checkpoint
from data.tokenizer import get_tokenizer
from diffusion import calls_per_token, commit_schedule, decode, diffusion_generate, diffusion_loss, output_lengths
from model import GPT, GPTConfig, ar_loss, make_generators, target_mask
from tests.test_evaluate import make_task
from tests.tiny_data import one_thread, set_fixed_logits, tiny_flags, write_tiny_corpus, write_tiny_task  # noqa: F401 (autouse fixture)

TOK = get_tokenizer("byte")


def small_model(seed=0, block_size=48):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32)).eval()


def batch(seed=0):
    """Three sequences with different prefixes and right padding: (idx, prefix_len, seq_len)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, TOK.n_ordinary, (3, 24), generator=g)
    return idx, torch.tensor([3, 7, 1]), torch.tensor([24, 19, 13])


def all_masked(idx, prefix_len, seq_len):
    return torch.where(target_mask(prefix_len, seq_len, idx.size(1)), TOK.mask_id, idx)


def test_block_len_1_is_ar():
    model, (idx, P, L) = small_model(), batch()
    with torch.no_grad():
        ar = model(idx, P, L, mode="ar")
        block = model(torch.cat([idx, all_masked(idx, P, L)], 1), P, L, mode="block", block_len=1)
    assert block.shape == ar.shape
    for b in range(3):  # every output that reads a target token: positions P-1 .. L-2
        torch.testing.assert_close(block[b, P[b] - 1: L[b] - 1], ar[b, P[b] - 1: L[b] - 1], rtol=0, atol=1e-5)
    # every target token masked (rate 1): the block loss is the AR loss, under both weights
    expected = ar_loss(model, idx, P, L)
    for weight in ("flat", "elbo"):
        loss = diffusion_loss(model, idx, P, L, "mask", TOK, rate=torch.ones(3), weight=weight, block_len=1)
        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("noise", ["mask", "uniform"])
def test_block_longer_than_target_is_full_diffusion(noise):
    model, (idx, P, L) = small_model(), batch()
    noisy = torch.where(target_mask(P, L, 24) & (torch.rand(3, 24, generator=torch.Generator().manual_seed(1)) < 0.5),
                        TOK.mask_id, idx)
    with torch.no_grad():
        full = model(noisy, P, L, mode="diffusion")
        block = model(torch.cat([idx, noisy], 1), P, L, mode="block", block_len=23)
    for b in range(3):
        torch.testing.assert_close(block[b, P[b] - 1: L[b] - 1], full[b, P[b] - 1: L[b] - 1], rtol=0, atol=1e-5)
    rate = torch.tensor([0.2, 0.6, 0.9])  # same rate, same generator: the same corruption
    for weight in ("flat", "elbo"):
        a = diffusion_loss(model, idx, P, L, noise, TOK, torch.Generator().manual_seed(5), rate, weight)
        b = diffusion_loss(model, idx, P, L, noise, TOK, torch.Generator().manual_seed(5), rate, weight, block_len=40)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_block_attention_rule():
    """Clean copy: prefix + clean blocks up to its own; noisy copy: prefix + earlier clean blocks +
    its own noisy block; nothing attends to padding or to the noisy copy's prefix."""
    from model import attention_mask
    T, K = 7, 2  # prefix 2, target 4 (blocks {2,3}, {4,5}), padding 1
    pos = torch.arange(2 * T) % T
    noisy = torch.arange(2 * T) >= T
    m = attention_mask(pos[None], pos, torch.tensor([2]), torch.tensor([6]), "block", K, noisy, noisy)[0, 0]
    clean_q4, noisy_q4 = m[4], m[T + 4]
    assert clean_q4.nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5]  # prefix, clean blocks 0 and 1
    assert noisy_q4.nonzero().flatten().tolist() == [0, 1, 2, 3, T + 4, T + 5]  # prefix, clean block 0, own noisy
    assert m[T + 2].nonzero().flatten().tolist() == [0, 1, T + 2, T + 3]  # block 0: nothing clean of the target
    assert m[1].nonzero().flatten().tolist() == [0, 1]  # the prefix sees only the prefix
    for pad in (6, T + 6):  # padding, in either copy, is attended by itself only
        assert m[:, pad].nonzero().flatten().tolist() == [pad]


def reference_decode(model, prefix, P, L, K, num_steps):
    """Greedy, confidence-ordered block decoding that recomputes everything without a cache: each
    step runs [prefix ; committed blocks] beside the canvas with the training layout (two copies)."""
    out, logps = [], []
    for b in range(prefix.size(0)):
        p = prefix[b, : P[b]]
        done, score = torch.empty(0, dtype=torch.long), []
        for lo in range(0, L, K):
            n = min(K, L - lo)
            canvas = torch.full((n,), TOK.mask_id)
            for count in commit_schedule(n, num_steps):
                clean = torch.cat([p, done, torch.full((n,), TOK.eos_id)])[None]
                noisy = torch.cat([p, done, canvas])[None]
                logits = model(torch.cat([clean, noisy], 1), P[b: b + 1], mode="block", block_len=K)[0].float()
                logits = logits[len(p) + lo - 1: len(p) + lo + n - 1]
                logits[:, TOK.mask_id:] = float("-inf")
                x0, lp = logits.argmax(-1), logits.log_softmax(-1).max(-1).values
                conf = lp.exp().masked_fill(canvas != TOK.mask_id, -1.0)
                commit = torch.zeros(n, dtype=torch.bool)
                commit[conf.argsort(descending=True, stable=True)[:count]] = True
                commit &= canvas == TOK.mask_id
                canvas = torch.where(commit, x0, canvas)
                score += lp[commit].tolist()
            done = torch.cat([done, canvas])
            if (canvas == TOK.eos_id).any():
                break
        out.append(done)
        logps.append(sum(score) / len(score))
    return out, torch.tensor(logps)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("K,steps", [(4, 2), (3, 3), (1, 1), (2, 2)])
def test_cached_block_decoding_equals_recomputing(K, steps, fused):
    model = small_model(1)
    prefix = torch.randint(0, TOK.n_ordinary, (2, 6), generator=torch.Generator().manual_seed(2))
    P, L = torch.tensor([6, 4]), 11
    with torch.no_grad():
        tokens, scores, info = diffusion_generate(model, prefix, P, L, TOK, num_steps=steps, temperature=0,
                                                  num_samples=1, block_len=K, return_info=True, fused=fused)
        ref, ref_scores = reference_decode(model, prefix, P, L, K, steps)
    for b in range(2):
        assert tokens[b, : len(ref[b])].tolist() == ref[b].tolist()
    torch.testing.assert_close(scores, ref_scores, rtol=1e-5, atol=1e-5)
    sizes = [min(K, L - lo) for lo in range(0, L, K)]
    # model calls: the prefix pass, the canvas passes of each block (none for one token), and a pass caching
    # each block but the last; fused, that pass is also the first canvas pass of the next block (unless the
    # next block is one token, which has no canvas pass)
    caching = len(sizes) - 1 if not fused else sum(n == 1 for n in sizes[1:])
    assert info["calls"] == 1 + sum(min(steps, n) for n in sizes if n > 1) + caching
    assert info["example_calls"].tolist() == [info["calls"]] * 2  # greedy, no EOS: every block, every step


def fixed_logits_model(logits):
    """A model whose logits are these {id: value} (0 for other ids) at every position, whatever the input."""
    return set_fixed_logits(small_model(0), logits)


@pytest.mark.parametrize("order", ["confidence", "random"])
def test_threshold_block_decoding_is_batch_invariant(order):
    """p(x) = 0.54 passes the 0.5 threshold, so at temperature 1 each candidate fills its block after its own
    number of steps, and some outputs end early (EOS): a full row must not draw noise while its batch-mates
    go on, or its later blocks depend on them."""
    model = fixed_logits_model({ord("x"): 8.0, ord("y"): 7.0, ord(" "): 7.0, TOK.eos_id: 6.0})
    prefix = torch.randint(0, TOK.n_ordinary, (6, 5), generator=torch.Generator().manual_seed(4))
    P = torch.tensor([5, 3, 4, 5, 2, 5])
    kw = dict(num_steps=4, temperature=1.0, num_samples=2, block_len=4, threshold=0.5, order=order, return_info=True)
    with torch.no_grad():
        gens = make_generators(range(6), "cpu")
        tokens, scores, info = diffusion_generate(model, prefix, P, 16, TOK, generators=gens, **kw)
        alone = [diffusion_generate(model, prefix[b: b + 1], P[b: b + 1], 16, TOK,
                                    generators=make_generators([b], "cpu"), **kw) for b in range(6)]
    for b, (t, s, i) in enumerate(alone):
        assert torch.equal(tokens[b], t[0]) and torch.equal(scores[b], s[0])
        assert torch.equal(info["candidates"][b], i["candidates"][0])
        assert info["example_calls"][b] == i["calls"] == i["example_calls"][0]  # what it costs alone
    assert info["calls"] >= max(info["example_calls"].tolist())
    assert len(set(info["example_calls"].tolist())) > 1  # the rows really took different numbers of calls
    assert (info["commits"] > 1).any()  # the threshold committed several tokens in one call


def test_fused_pass_equals_separate_passes():
    """[decided block ; next canvas] in one cached forward = the decided block, then the canvas: the same
    logits within float tolerance and the same keys/values in the cache for the decided block."""
    model, K = small_model(4, block_size=32), 4
    prefix = torch.randint(0, TOK.n_ordinary, (2, 5), generator=torch.Generator().manual_seed(7))
    P = torch.tensor([5, 3])
    block = torch.randint(0, TOK.n_ordinary, (2, K), generator=torch.Generator().manual_seed(8))
    canvas = torch.full((2, K), TOK.mask_id)
    outs, caches = [], []
    with torch.no_grad():
        for fused in (True, False):
            cache, _ = model.prefill(prefix, P, capacity=5 + 2 * K)
            run = dict(cache=cache, mode="block", block_len=K)
            if fused:
                outs.append(model(torch.cat([block, canvas], 1), P, start=P, **run))
            else:
                outs.append(torch.cat([model(block, P, start=P, **run), model(canvas, P, start=P + K, **run)], 1))
            caches.append(cache)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for b in range(2):
        decided = slice(0, int(P[b]) + K)
        for a, c in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v):
            torch.testing.assert_close(a[b, :, decided], c[b, :, decided], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("K,threshold", [(4, None), (8, 0.3), (16, 0.3), (3, None)])
def test_fused_cache_write_equals_separate_pass(K, threshold):
    """Sampled, reranked, with and without a threshold, blocks of 3 to 16: the fused write gives the same tokens
    and scores as a pass of its own per decided block, one call fewer per block that follows (EOS never ends an
    output here: it is told that EOS is [MASK], which is never produced)."""
    model, L = small_model(5), 21
    prefix = torch.randint(0, TOK.n_ordinary, (3, 6), generator=torch.Generator().manual_seed(9))
    P = torch.tensor([6, 2, 4])
    no_eos = copy.copy(TOK)
    no_eos.eos_id = TOK.mask_id
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)  # sharper predictions: some pass the threshold
        runs = [diffusion_generate(model, prefix, P, L, no_eos, num_steps=K, temperature=1.0, num_samples=2,
                                   threshold=threshold, block_len=K, generators=make_generators([1, 2, 3], "cpu"),
                                   return_info=True, fused=fused) for fused in (True, False)]
    (tokens, scores, info), (ref, ref_scores, ref_info) = runs
    assert torch.equal(tokens, ref) and torch.equal(info["candidates"], ref_info["candidates"])
    torch.testing.assert_close(scores, ref_scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(info["candidate_logp"], ref_info["candidate_logp"], rtol=1e-5, atol=1e-5)
    sizes = [min(K, L - lo) for lo in range(0, L, K)]
    saved = sum(n > 1 for n in sizes[1:])
    assert info["calls"] == ref_info["calls"] - saved and info["steps"] == ref_info["steps"]
    assert (info["example_calls"] == ref_info["example_calls"] - saved).all()
    if threshold:
        assert info["steps"] < len(sizes) * K  # blocks ended early
    assert info["calls"] == 1 + info["steps"]  # one call per step (a one-token block's is its caching pass)


@pytest.mark.parametrize("K,threshold,order", [(4, None, "random"), (16, 0.05, "confidence"), (None, 0.05, "random"),
                                             (5, None, "confidence")])
def test_greedy_decoding_reads_only_masked_positions_with_the_same_result(K, threshold, order):
    """Greedy mask decoding reads the head only where some active row still has a [MASK]: the same tokens, scores,
    per-token score terms and calls as reading every position at every step (eos-prone: outputs end in blocks)."""
    model, L = eos_prone_model(), 21
    prefix = torch.randint(0, TOK.n_ordinary, (3, 6), generator=torch.Generator().manual_seed(4))
    P = torch.tensor([6, 2, 4])
    with torch.no_grad():
        model.lm_head.weight.mul_(3.0)  # sharper predictions: some pass the threshold, blocks end early
        runs = [diffusion_generate(model, prefix, P, L, TOK, num_steps=8, temperature=0, num_samples=1,
                                   threshold=threshold, order=order, block_len=K, return_info=True,
                                   generators=make_generators([1, 2, 3], "cpu"), read_all=read_all)
                for read_all in (False, True)]
    (tokens, scores, info), (ref, ref_scores, ref_info) = runs
    assert torch.equal(tokens, ref) and torch.equal(info["commits"], ref_info["commits"])
    torch.testing.assert_close(scores, ref_scores, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(info["candidate_logp"], ref_info["candidate_logp"], rtol=1e-6, atol=1e-6)
    assert info["calls"] == ref_info["calls"] and torch.equal(info["example_calls"], ref_info["example_calls"])
    assert len(set(output_lengths(tokens, TOK.eos_id).tolist())) > 1 or K is None
    assert threshold is None or (info["commits"] > 1).any()  # some step committed several tokens


def test_calls_per_output_token():
    """A confident model (threshold 0: each block decided in one call): the prefix pass, then one call per
    block; AR (K = 1) makes one call per output token, EOS included."""
    model = fixed_logits_model({ord("x"): 8.0, TOK.eos_id: 7.9})
    prefix, P = torch.full((1, 3), ord("a")), torch.tensor([3])
    with torch.no_grad():
        for fused, calls in ((True, 4), (False, 6)):  # 12 tokens in blocks of 4
            tokens, _, info = diffusion_generate(model, prefix, P, 12, TOK, num_steps=4, temperature=0, num_samples=1,
                                                 threshold=0.0, block_len=4, return_info=True, fused=fused)
            assert tokens.tolist() == [[ord("x")] * 12] and info["calls"] == calls and info["steps"] == 3
        ckpt = dict(objective="diffusion", noise="mask", block_len=4)
        tokens, _, calls = decode(model, ckpt, prefix, P, 12, TOK, threshold=0.0, num_steps=4, num_samples=1,
                                  temperature=0)
        assert calls.tolist() == [4] and calls_per_token(calls, output_lengths(tokens, TOK.eos_id)) == 4 / 12
        # an output that ends: EOS at slot 4 of a sampled AR output; its calls are its tokens, EOS included
        gens = make_generators([0, 1, 2, 3], "cpu")
        tokens, _, calls = decode(model, dict(objective="ar"), prefix.expand(4, 3), P.expand(4), 12, TOK, gens,
                                  temperature=1.0)
        n = output_lengths(tokens, TOK.eos_id)
        assert torch.equal(calls, n) and len(set(n.tolist())) > 1
        for b in range(4):
            row = tokens[b].tolist()
            assert n[b] == (row.index(TOK.eos_id) + 1 if TOK.eos_id in row else 12)
        assert calls_per_token(calls, n) == 1.0
    assert output_lengths(torch.tensor([[5, TOK.eos_id, 5, TOK.eos_id], [5, 5, 5, 5]]), TOK.eos_id).tolist() == [2, 4]


EOS_SCALE = 3.0


def eos_prone_model():
    """A random model whose EOS logit is often near the top, so that outputs end at various blocks."""
    model = small_model(3)
    with torch.no_grad():
        w = model.transformer.wte.weight
        w[TOK.eos_id] *= EOS_SCALE
    return model


def test_outputs_stop_after_their_eos_block_and_match_alone():
    model, K, L = eos_prone_model(), 3, 18
    prefix = torch.randint(0, TOK.n_ordinary, (6, 5), generator=torch.Generator().manual_seed(4))
    P = torch.tensor([5, 3, 4, 5, 2, 5])
    kw = dict(num_steps=2, temperature=1.0, num_samples=2, block_len=K)
    with torch.no_grad():
        tokens, scores = diffusion_generate(model, prefix, P, L, TOK, generators=make_generators(range(6), "cpu"), **kw)
        alone = [diffusion_generate(model, prefix[b: b + 1], P[b: b + 1], L, TOK,
                                    generators=make_generators([b], "cpu"), **kw) for b in range(6)]
    ends = []
    for b in range(6):
        assert torch.equal(tokens[b], alone[b][0][0]) and torch.allclose(scores[b], alone[b][1][0])
        row = tokens[b].tolist()
        if TOK.eos_id in row:
            end = (row.index(TOK.eos_id) // K + 1) * K  # the end of the block that holds the first EOS
            assert all(t == TOK.eos_id for t in row[end:]), row
            ends.append(end)
        else:
            ends.append(L)
    assert len(set(ends)) > 1 and min(ends) < L  # the batch really mixes lengths


def test_more_candidates_rerank_by_commit_log_prob():
    """The kept candidate is the one whose committed tokens were, on average, the likeliest."""
    model = small_model(2)
    prefix = torch.randint(0, TOK.n_ordinary, (2, 4), generator=torch.Generator().manual_seed(6))
    P = torch.tensor([4, 4])
    with torch.no_grad():
        tokens, scores, info = diffusion_generate(model, prefix, P, 8, TOK, num_steps=4, temperature=1.0, num_samples=5,
                                                  block_len=4, generators=make_generators([1, 2], "cpu"),
                                                  return_info=True)
    assert torch.equal(scores, info["candidate_scores"].max(-1).values)
    assert torch.equal(tokens, info["candidates"][torch.arange(2), info["candidate_scores"].argmax(-1)])
    assert (info["candidate_scores"] <= 0).all() and len(set(info["candidate_scores"][0].tolist())) > 1


@pytest.fixture(scope="module")
def block_run(tmp_path_factory):
    """AR pretraining, then AR2Diff-block_2 (2 diffusion steps with blocks of 4), then a fine-tune."""
    root = tmp_path_factory.mktemp("block")
    corpus, task = write_tiny_corpus(root / "corpus"), write_tiny_task(root / "task")
    train.main(tiny_flags(corpus, root / "ar", max_steps=4))
    flags = tiny_flags(corpus, root / "adapted")
    del flags[flags.index("--max_steps"): flags.index("--max_steps") + 2]
    adapt.main(["--init_from", str(root / "ar" / "ckpt.pt"), "--steps", "2", "--block_len", "4", *flags])
    train.main(tiny_flags(task, root / "ft", init_from=root / "adapted" / "ckpt.pt", max_steps=4))
    return root, task


def test_block_checkpoint_round_trip(block_run, tmp_path):
    root, task = block_run
    for folder, step in (("adapted", 2), ("ft", 4)):
        ckpt = load_checkpoint(root / folder / "ckpt.pt")
        assert (ckpt["objective"], ckpt["noise"], ckpt["block_len"], ckpt["step"]) == ("diffusion", "mask", 4, step)
    assert json.loads((root / "ft" / "best.json").read_text())["block_len"] == 4
    # resume keeps the block rule
    result = train.main(["--init_from", "resume", "--out_dir", str(root / "ft"), "--max_steps", "5"])
    assert result["block_len"] == 4 and result["step"] == 5
    qa, _ = make_task(tmp_path)  # a scored task (the tiny one has no metric)
    metrics = evaluate.main(["--ckpt", str(root / "ft" / "best.pt"), "--task_dir", str(qa), "--out_dir",
                             str(tmp_path / "eval"), "--num_samples", "2", "--num_steps", "2"])
    assert metrics["count"] == 5 and metrics["objective"] == "diffusion" and 0 <= metrics["f1"] <= 100


def test_block_bad_input(block_run, tmp_path, root):
    run, task = block_run
    corpus = str(run / "corpus")
    with pytest.raises(ValueError, match="--block_len 0: must be >= 1"):
        train.main(tiny_flags(corpus, tmp_path / "a", objective="diffusion", block_len=0))
    with pytest.raises(ValueError, match="--block_len 4: block diffusion needs --objective diffusion"):
        train.main(tiny_flags(corpus, tmp_path / "b", objective="ar", block_len=4))
    with pytest.raises(ValueError, match="trained with --block_len 4, not --block_len 8"):
        train.main(tiny_flags(task, tmp_path / "c", init_from=run / "ft" / "best.pt", block_len=8))
    with pytest.raises(ValueError, match="--block_len must be >= 1"):
        adapt.main(["--init_from", str(run / "ar" / "ckpt.pt"), "--block_len", "0", "--data", corpus])
    # a setting of another decoder, on the command line: one line naming the flag, no traceback
    qa, _ = make_task(tmp_path)
    p = subprocess.run([sys.executable, "evaluate.py", "--ckpt", str(run / "ft" / "best.pt"), "--task_dir", str(qa),
                        "--top_k", "5", "--out_dir", str(tmp_path / "e")],
                       capture_output=True, text=True, cwd=root)
    assert p.returncode != 0 and "--top_k cannot be used" in p.stderr and "Traceback" not in p.stderr

"""
The diffusion process over target tokens: two noise processes behind one interface.

    mask     absorbing [MASK] (default): each target token is replaced by tok.mask_id with
             probability r; the loss is the cross-entropy on masked positions, weighted 1/r (the
             ELBO) or flat (the mean over masked tokens); decoding unmasks a scheduled number of
             tokens per step, most confident first.
    uniform  the paper's simplified SUNDAE: each target token is replaced with probability r by a
             uniformly random ordinary token; loss L(1) + L(2) (a second pass on the argmax of the
             first); decoding resamples every target position at every step.

r ~ U(0, 1) per sequence (per block of block_len tokens for block diffusion, BD3-LM: decoding then
goes block after block with an exact KV cache, model.py). Only target tokens are corrupted: prefix
and batch padding never are.
The model has no timestep input and no length head: a diffusion target is padded with EOS to a
fixed length, so the model learns where the text ends (paper §3).

As in AR, the output at position i predicts the token at i + 1, in diffusion mode too (the "shift"
of DiffuLLaMA and Dream): the first target token is predicted by the last prefix position, whose
output never changes (the prefix never sees the target). The LM head keeps its meaning when an AR
model becomes a diffusion model (AR2Diff), and a visible token still predicts its masked neighbour
directly, so a model trained from scratch does not sit at the unigram plateau that predicting a
[MASK] from its own position starts on. Every example needs a prefix of at least one token (task
loaders use EOS for an empty input; corpus windows split at 1..T-1).

    from diffusion import diffusion_loss, diffusion_generate, decode
    loss = diffusion_loss(model, idx, prefix_len, seq_len, "mask", tok, block_len=None)
    tokens, scores = diffusion_generate(model, prefix, prefix_len, target_len=64, tok=tok)
    tokens, scores, calls = decode(model, ckpt, prefix, prefix_len, 64, tok)  # AR, diffusion or block
    calls_per_token(calls, output_lengths(tokens, tok.eos_id))  # model calls per output token
"""
import math

import torch
import torch.nn.functional as F

from model import outputs_reading, sample_logits, target_mask

NOISES = ("mask", "uniform")
WEIGHTS = ("elbo", "flat")  # mask noise: how the masked positions' cross-entropies are weighted
ORDERS = ("confidence", "random")
SCHEDULES = ("linear", "cosine")
MIN_RATE = 1e-3  # r ~ U(MIN_RATE, 1): keeps the 1/r ELBO weight bounded


def _check_noise(noise):
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")


def _rand(shape, generators, device, dtype=torch.float32):
    """U[0,1) noise of shape (B, *shape[1:]), one generator per example when given (batch-invariant)."""
    if generators is None:
        return torch.rand(shape, device=device, dtype=dtype)
    return torch.stack([torch.rand(shape[1:], generator=g, device=device, dtype=dtype) for g in generators])


def _randint(high, shape, generators, device):
    if generators is None:
        return torch.randint(high, shape, device=device)
    return torch.stack([torch.randint(high, shape[1:], generator=g, device=device) for g in generators])


def corrupt(idx, target, rate, noise, tok, generator=None):
    """
    Corrupt target positions of idx (B, T). target (B, T) bool marks the positions that may be
    corrupted; rate (B,) or (B, T) is each sequence's (or position's) corruption probability.
    Returns (noisy idx, corrupted) where corrupted (B, T) bool marks the positions that were replaced
    (a `uniform` replacement may draw the original token: it still counts as corrupted, as in SUNDAE).
    """
    _check_noise(noise)
    u = torch.rand(idx.shape, device=idx.device, generator=generator)
    corrupted = target & (u < (rate[:, None] if rate.dim() == 1 else rate))
    if noise == "mask":
        replacement = torch.full_like(idx, tok.mask_id)
    else:  # uniform over the ordinary vocabulary: never a special or spare id
        replacement = torch.randint(tok.n_ordinary, idx.shape, device=idx.device, generator=generator)
    return torch.where(corrupted, replacement, idx), corrupted


def draw_rate(batch_size, device, generator=None):
    return MIN_RATE + (1 - MIN_RATE) * torch.rand(batch_size, device=device, generator=generator)


def diffusion_loss(model, idx, prefix_len, seq_len, noise, tok, generator=None, rate=None, weight="elbo",
                   block_len=None, complementary=False, ramp=False):
    """
    idx (B, T) clean [prefix ; target ; padding]; rate (B,) or (B, T), drawn when None. Returns the
    scalar loss. With block_len K, block diffusion: a rate per block of K target tokens, and the
    model reads each block's noisy tokens beside the clean earlier blocks (model.py, two copies).

    p(x_i | .) is read from the output at position i - 1 (see the module docstring).
    mask, weight="elbo":
             L = (1/N) sum_b (1/r_b) sum_{i in target_b, masked} -log p(x_i | noisy x), N = the
             number of target tokens in the batch: an unbiased estimate of the negative ELBO per
             target token, an upper bound on the per-token NLL (MDLM/LLaDA). Use it to compare
             models and to pretrain on long windows.
    mask, weight="flat":
             L = the mean of -log p(x_i | noisy x) over the masked target tokens of the batch: the
             ELBO's integrand reweighted by r (a monotone weighting, as in Kingma & Gao 2023). On
             short task targets (a QA answer of one token) the 1/r weight makes the rare lightly
             masked example dominate the gradient; flat weighting fine-tunes far faster there.
    ramp (block diffusion, position-dependent masking as in Efficient-DLM): the j-th of a block's K
             positions is masked with probability 2 r (j + 1) / (K + 1), clipped to [MIN_RATE, 1]: later
             positions more, the block's mean rate r kept where no clipping applies, as decoding from left
             to right meets them. Meant with flat weighting (the 1/r weight then no longer gives the ELBO).
    complementary (mask noise, Fast-dLLM v2): each sequence is seen twice in the pass, with its mask and
             with the complement of it over the target (rate 1 - r): every target token is trained once per
             pair, at twice the compute per sequence; L is the loss of the doubled batch.
    uniform: L = L(1) + L(2), L(k) = (1/N) sum over all target positions of -log p(x_i | input_k);
             input_1 = the noisy sequence, input_2 = input_1 with every target position replaced by
             argmax of the first pass's logits (no gradient through the argmax; prefix kept clean).
             `weight` does not apply.
    """
    _check_noise(noise)
    if weight not in WEIGHTS:
        raise ValueError(f"weight must be one of {WEIGHTS}, got {weight!r}")
    B, T = idx.shape
    target = target_mask(prefix_len, seq_len, T)
    if rate is None and block_len is None:
        rate = draw_rate(B, idx.device, generator)
    elif rate is None:  # BD3-LM: a rate per block of K target tokens; a position takes its block's
        offset = (torch.arange(T, device=idx.device)[None] - prefix_len[:, None]).clamp(min=0)
        rate = draw_rate(B * (T // block_len + 1), idx.device, generator).view(B, -1).gather(1, offset // block_len)
        if ramp:
            rate = (rate * 2 * (offset % block_len + 1) / (block_len + 1)).clamp(MIN_RATE, 1)
    rate = rate[:, None].expand(B, T) if rate.dim() == 1 else rate  # (B, T): each position's rate
    noisy, corrupted = corrupt(idx, target, rate, noise, tok, generator)
    if complementary:
        if noise != "mask":
            raise ValueError("complementary masks need mask noise")
        other = target & ~corrupted  # the tokens left visible: masked in the second copy
        noisy, corrupted = torch.cat([noisy, torch.where(other, tok.mask_id, idx)]), torch.cat([corrupted, other])
        rate = torch.cat([rate, (1 - rate).clamp(min=MIN_RATE)])
        idx, prefix_len, seq_len, target = (torch.cat([t, t]) for t in (idx, prefix_len, seq_len, target))
    n_target = target.sum().clamp(min=1)

    def denoise(noisy, read):  # (N, V): the logits of the clean tokens i + 1 where read[:, i + 1]
        at = outputs_reading(read[:, 1:])
        if block_len is None:
            return model(noisy, prefix_len, seq_len, mode="diffusion", at=at)
        return model(torch.cat([idx, noisy], 1), prefix_len, seq_len, mode="block", block_len=block_len, at=at)

    def ce(logits, read):  # (N,) cross-entropy of each clean token read
        return F.cross_entropy(logits.float(), idx[:, 1:][read[:, 1:]], reduction="none")

    if noise == "mask":
        nll = ce(denoise(noisy, corrupted), corrupted)
        if weight == "flat":
            return nll.sum() / corrupted.sum().clamp(min=1)
        return (nll / rate[:, 1:][corrupted[:, 1:]]).sum() / n_target
    logits = denoise(noisy, target)
    loss1 = ce(logits, target).sum() / n_target
    unrolled = noisy.clone()  # each target token replaced by the first pass's argmax (no gradient)
    unrolled[:, 1:][target[:, 1:]] = logits.detach()[:, : tok.mask_id].argmax(-1)
    loss2 = ce(denoise(unrolled, target), target).sum() / n_target
    return loss1 + loss2


def commit_schedule(target_len, num_steps, schedule="linear"):
    """Tokens to unmask at each step (a list summing to target_len, each >= 1)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    steps = min(num_steps, target_len)  # more steps than tokens would only repeat work
    frac = [(s + 1) / steps for s in range(steps)]
    if schedule == "cosine":  # MaskGIT: few tokens first, many at the end
        frac = [1 - math.cos(math.pi / 2 * f) for f in frac]
    done = [min(target_len, max(s + 1, round(target_len * f))) for s, f in enumerate(frac)]
    done[-1] = target_len
    return [d - p for d, p in zip(done, [0] + done[:-1])]


@torch.no_grad()
def diffusion_generate(model, prefix, prefix_len, target_len, tok, noise="mask", num_steps=10,
                       temperature=0.2, num_samples=8, order="confidence", schedule="linear",
                       threshold=None, generators=None, block_len=None, return_info=False, fused=True,
                       read_all=False):
    """
    Decode a target of target_len tokens for each example of prefix (B, P) (right-padded, lengths
    prefix_len). Defaults are the paper's (§4.1): 10 steps, temperature 0.2, 8 candidates per
    example, keeping the one with the best score. The prefix's keys/values are computed once (prefix
    cache); each step runs only the target positions.

    block_len None: one canvas of target_len tokens (full diffusion). block_len K: blocks of K tokens
    one after another, num_steps steps inside each. A decided block's clean keys/values go into the
    cache (exact: what training showed the next blocks) in the same forward pass as the next block's
    first step (BD3-LM, Fast-dLLM v2): [decided block ; next canvas] under the block rule is exact, as
    the decided block attends only to the cache and itself; its last output reads the next block's
    first token. fused=False spends a call of its own on the decided block (the same tokens).
    Greedy mask decoding reads (LM head, log-softmax) only the positions still masked in some active row:
    the same tokens and scores as reading all (read_all=True), at a fraction of the vocabulary work. Decoding
    stops after the block that holds EOS (the slots after it hold EOS), so outputs have their own
    lengths. K = 1 is greedy-or-sampled AR.
    mask:    confidence order unmasks the most probable sampled tokens first; random order unmasks
             random positions (ancestral sampling); `threshold` also commits every token whose
             probability passes it (at least the schedule's count, so num_steps is a cap and a block
             ends early when it is full: Fast-dLLM's parallel decoding).
    uniform: the canvas starts as random tokens and every position is resampled at every step.
    Only the rows still decoding (their block has masks, no earlier block held EOS) draw noise, so
    each example's generator advances as if it were decoded alone: the output does not depend on
    the batch, with a threshold too.
    Score (the reranking, our choice where the paper's does not apply): mask noise, the mean
    log-probability each token had when it was committed. The paper scores the final canvas with
    the final step's logits, but the mask objective never trains the outputs at visible positions,
    so that score is mostly noise there; uniform noise trains every position: the paper's score.
    Returns tokens (B, target_len) and scores (B,); with return_info also a dict: "calls" (model
    forward passes, the prefix pass included), "example_calls" (B,) (the calls each example needs
    decoded alone), "steps" (denoising steps), "commits" (B*S, steps) tokens committed per step
    (mask only), "candidates" (B, S, L), "candidate_scores" (B, S) and "candidate_logp" (B, S, L):
    each token's score term, 0 after an EOS block (for other rerankings).
    """
    _check_noise(noise)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if num_steps < 1 or num_samples < 1 or target_len < 1 or (block_len is not None and block_len < 1):
        raise ValueError(f"num_steps, num_samples, target_len and block_len must be >= 1, got "
                         f"{num_steps}, {num_samples}, {target_len}, {block_len}")
    if prefix.dim() != 2 or prefix_len.shape != (prefix.size(0),):
        raise ValueError(f"prefix must be (B, P) and prefix_len (B,), got {tuple(prefix.shape)}, "
                         f"{tuple(prefix_len.shape)}")
    B, S, L, device = prefix.size(0), num_samples, target_len, prefix.device
    if int(prefix_len.max()) + L > model.config.block_size:
        raise ValueError(f"prefix ({int(prefix_len.max())}) + target_len ({L}) exceeds block_size "
                         f"{model.config.block_size}")
    if int(prefix_len.min()) < 1:
        raise ValueError("diffusion_generate needs at least one prefix token per example (e.g. EOS)")
    cache, h = model.prefill(prefix, prefix_len, capacity=int(prefix_len.max()) + L)
    # the first target token's logits come from the last prefix position: the same at every step
    first = model.lm_head(h[torch.arange(B, device=device), prefix_len - 1]).float().repeat_interleave(S, 0)
    cache.repeat_interleave(S)
    P = prefix_len.repeat_interleave(S)  # (B*S,)
    gens = None if generators is None else [g for g in generators for _ in range(S)]
    mode, K = ("diffusion", L) if block_len is None else ("block", block_len)
    tokens = torch.full((B * S, L), tok.eos_id, dtype=torch.long, device=device)
    logp = torch.zeros(B * S, L, device=device)  # each decided token's score term
    decided = torch.zeros(B * S, L, dtype=torch.bool, device=device)  # in a block decoded before EOS
    finished = torch.zeros(B * S, dtype=torch.bool, device=device)  # an earlier block held EOS
    calls, steps, commits = 1, 0, []
    example_calls = torch.ones(B, dtype=torch.long, device=device)

    def called(rows):  # one forward pass; it counts for the examples that would make it alone
        nonlocal calls
        calls += 1
        example_calls.add_(rows.view(B, S).any(-1))

    def new_canvas(n):
        if noise == "mask":
            return torch.full((B * S, n), tok.mask_id, dtype=torch.long, device=device)
        return _randint(tok.n_ordinary, (B, S, n), generators, device).flatten(0, 1)

    prune = noise == "mask" and temperature == 0 and not read_all  # no draws whose count must not change
    canvas, ahead = new_canvas(min(K, L)), None  # ahead: this block's first-step hidden states (fused pass)
    for lo in range(0, L, K):
        n = min(K, L - lo)
        run = dict(cache=cache, start=P + lo, mode=mode, block_len=block_len, head=False)
        # one token alone needs one draw: its logits do not depend on the canvas
        counts = commit_schedule(n, num_steps, schedule) if noise == "mask" else [0] * (num_steps if n > 1 else 1)
        block_logp = torch.zeros(B * S, n, device=device)
        for count in counts:
            active = ~finished & ((canvas == tok.mask_id).any(-1) if noise == "mask" else True)
            if not bool(active.any()):  # threshold: every block is full
                break
            rows = active.nonzero()[:, 0]
            # greedy mask decoding reads only the positions some active row still has to decide (cols): the
            # head and the softmax over the vocabulary cost the most here; None reads all
            cols = (canvas[rows] == tok.mask_id).any(0).nonzero()[:, 0] if prune else None
            parts = [first[rows, None]] if cols is None or int(cols[0]) == 0 else []  # output i reads token i + 1
            if n > 1:
                if ahead is None:
                    ahead = model(canvas, P, **run)
                    called(active)
                h = ahead[rows, :-1] if cols is None else ahead[rows][:, cols[cols > 0] - 1]
                parts.append(model.lm_head(h).float())
                ahead = None
            logits = torch.cat(parts, 1)  # (A, n or C, V)
            steps += 1
            logits[..., tok.mask_id:] = float("-inf")  # never produce [MASK] or a spare id
            g = None if gens is None else [gens[i] for i in rows.tolist()]
            x0 = sample_logits(logits, temperature, generators=g)  # the active rows only
            # log p(x0) = logit - logsumexp: no (A, n, V) softmax tensor
            lp = logits.gather(-1, x0[..., None])[..., 0] - logits.logsumexp(-1)
            if cols is not None:  # back to (A, n); the columns not read are decided already
                x0 = canvas.new_full((len(rows), n), tok.mask_id).index_copy_(1, cols, x0)
                lp = lp.new_zeros(len(rows), n).index_copy_(1, cols, lp)
            if noise == "uniform":
                canvas[rows], block_logp[rows] = x0, lp  # the paper's score: the final canvas under the final logits
                continue
            masked = canvas[rows] == tok.mask_id
            conf = lp.exp() if order == "confidence" else _rand(masked.shape, g, device)
            conf = conf.masked_fill(~masked, -1.0)
            n_commit = torch.full((len(rows),), count, device=device)
            if threshold is not None:
                n_commit = torch.maximum(n_commit, (conf >= threshold).sum(-1))
            rank = conf.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)  # 0 = most confident
            commit = masked & (rank < n_commit[:, None])
            canvas[rows] = torch.where(commit, x0, canvas[rows])
            block_logp[rows] = torch.where(commit, lp, block_logp[rows])
            commits.append(torch.zeros(B * S, dtype=torch.long, device=device).index_put_((rows,), commit.sum(-1)))
        tokens[:, lo: lo + n] = torch.where(finished[:, None], tok.eos_id, canvas)
        logp[:, lo: lo + n], decided[:, lo: lo + n] = block_logp, ~finished[:, None]
        finished |= (canvas == tok.eos_id).any(-1)
        if lo + n == L or bool(finished.all()):
            break
        # the block's clean keys/values into the cache, once (never recomputed), fused with the next
        # block's first step when that block has a canvas to run
        nxt = new_canvas(min(K, L - lo - n))
        both = fused and nxt.size(1) > 1
        out = model(torch.cat([canvas, nxt], 1) if both else canvas, P, **run)
        called(~finished)
        first, ahead, canvas = model.lm_head(out[:, n - 1]).float(), out[:, n:] if both else None, nxt
    logp = logp * decided  # a candidate's score terms: none after its EOS block
    score = (logp.sum(-1) / decided.sum(-1).clamp(min=1)).view(B, S)
    best = score.argmax(-1)  # rerank: keep the candidate with the best score (paper §4.1)
    out = tokens.view(B, S, L)[torch.arange(B, device=device), best]
    scores = score[torch.arange(B, device=device), best]
    if return_info:
        return out, scores, dict(calls=calls, example_calls=example_calls, steps=steps,
                                 commits=torch.stack(commits, 1) if commits else None,
                                 candidates=tokens.view(B, S, L), candidate_scores=score,
                                 candidate_logp=logp.view(B, S, L))
    return out, scores


PAPER = dict(num_steps=10, temperature=0.2, num_samples=8, order="confidence", schedule="linear", threshold=None)
MASK_ONLY = ("order", "schedule", "threshold")  # the uniform sampler resamples every position


def decode(model, trained, prefix, prefix_len, target_len, tok, generators=None, temperature=None, top_k=None,
           reranker=None, **sampler):
    """
    The one decoding entry point (evaluate.py, sample.py): decode a batch as `trained` says, a
    checkpoint dict or any dict with its "objective" (ar | diffusion), "noise" and "block_len".
    AR: KV-cached, greedy unless a temperature is given, [MASK] and spare ids never produced.
    Diffusion: diffusion_generate, the paper's settings (§4.1) for every `sampler` setting left None;
    `reranker` (an AR model of the same tokenizer) picks among the candidates instead (rerank, one call more).
    A setting that does not apply to the model is an error naming it as the scripts' flag.
    Returns tokens (B, target_len), scores (B,) (None for AR) and calls (B,): the model calls each
    example needs, as if decoded alone (the prefix pass included; the batch's passes are at least
    the largest of them). AR: one per output token (output_lengths).
    """
    if trained.get("objective") not in ("ar", "diffusion") or (trained["objective"] == "diffusion" and
                                                               trained.get("noise") not in NOISES):
        raise ValueError(f"the model records objective {trained.get('objective')!r} and noise "
                         f"{trained.get('noise')!r}: expected ar, or diffusion with a noise of {NOISES}")
    given = [k for k, v in dict(sampler, top_k=top_k).items() if v is not None]
    ar = trained["objective"] == "ar"
    wrong = [k for k in given if (k != "top_k") == ar or (trained.get("noise") == "uniform" and k in MASK_ONLY)]
    if wrong:
        what = "an AR" if ar else f"a {trained.get('noise')}-noise diffusion"
        raise ValueError(f"{', '.join('--' + k for k in wrong)} cannot be used with {what} model")
    if reranker is not None and (ar or (sampler.get("num_samples") or PAPER["num_samples"]) < 2):
        raise ValueError("a reranker picks among a diffusion model's candidates: it needs a diffusion model and "
                         "--num_samples of 2 or more")
    if ar:
        tokens = model.generate(prefix, prefix_len, target_len, tok.eos_id, temperature=temperature or 0.0,
                                top_k=top_k, generators=generators, suppress_from=tok.mask_id)
        return tokens, None, output_lengths(tokens, tok.eos_id)
    kw = {**PAPER, **{k: v for k, v in sampler.items() if v is not None}}
    kw["temperature"] = PAPER["temperature"] if temperature is None else temperature
    tokens, scores, info = diffusion_generate(model, prefix, prefix_len, target_len, tok, noise=trained["noise"],
                                              block_len=trained.get("block_len"), generators=generators,
                                              return_info=True, **kw)
    if reranker is None:
        return tokens, scores, info["example_calls"]
    scores = rerank(reranker, prefix, prefix_len, info["candidates"], tok)
    best = scores.argmax(-1)
    rows = torch.arange(len(best), device=best.device)
    return info["candidates"][rows, best], scores[rows, best], info["example_calls"] + 1


def rerank(ar_model, prefix, prefix_len, candidates, tok):
    """
    Noisy parallel decoding's rescoring (Gu et al. 2018): the mean log-probability per token of each
    candidate (B, S, L) under an AR model (its tokens up to and including its first EOS; [MASK] and spare
    ids never produced), teacher-forced in one model call over the B*S sequences [prefix ; candidate].
    Returns (B, S).
    """
    B, S, L = candidates.shape
    flat, device = candidates.flatten(0, 1), candidates.device
    P, n = prefix_len.repeat_interleave(S), output_lengths(flat, tok.eos_id)
    idx = F.pad(prefix, (0, L), value=tok.eos_id).repeat_interleave(S, 0)
    at = P[:, None] + torch.arange(L, device=device)  # (B*S, L): candidate token j sits at P + j
    idx.scatter_(1, at, flat)
    h = ar_model(idx, P, P + n, mode="ar", head=False)
    logits = ar_model.lm_head(h.gather(1, (at - 1)[..., None].expand(-1, -1, h.size(-1)))).float()  # output i reads i + 1
    logits[..., tok.mask_id:] = float("-inf")
    logp = logits.log_softmax(-1).gather(-1, flat[..., None])[..., 0]
    keep = torch.arange(L, device=device)[None] < n[:, None]
    return (torch.where(keep, logp, 0.0).sum(-1) / n).view(B, S)


def output_lengths(tokens, eos_id):
    """(B,) the tokens each output of (B, L) decides: up to and including its first EOS (L without one).
    EOS counts: it is a decision too, and then KV-cached AR makes exactly one model call per output token
    (its prefix pass reads the first)."""
    eos = tokens == eos_id
    return torch.where(eos.any(-1), eos.int().argmax(-1) + 1, tokens.size(1))


def calls_per_token(calls, lengths):
    """Model calls per output token over outputs: sum of each one's calls (decode's, as if alone) / sum of
    output_lengths. The one definition sample.py, runs/quality.py and runs/pareto.py report; 1 / it is the
    tokens per call (AR: 1)."""
    return float(sum(calls)) / max(1, int(sum(lengths)))


def cut_at_eos(tokens, eos_id):
    """(B, L) ids -> list of B lists, each cut before its first EOS."""
    out = []
    for row in tokens.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out

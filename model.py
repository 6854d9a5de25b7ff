"""
The decoder-only prefix-LM Transformer shared by AR and diffusion (GPT-2 compatible).

Every sequence is [prefix ; target ; right padding]. One forward pass serves every objective; they
differ only in the attention rule (DESIGN §3):
    prefix positions  attend to the whole prefix (bidirectionally), never to the target;
    target positions  attend to the whole prefix and, within the target, causally (`ar`), to every
                      target position (`diffusion`), or, cut into blocks of `block_len` tokens, to
                      every position of earlier blocks and of their own block (`block`);
    padding           is never attended to (a padding position attends only to itself, so that
                      its row is finite; its output is garbage and is never used).
Because the prefix never sees the target, its keys/values are computed once and reused: by AR
decoding (a KV cache) and by every diffusion step (the prefix cache). Prefix length 0 is GPT-2.

Block diffusion trains on two copies of the target in one sequence, as BD3-LM does (Arriola et al.,
ICLR 2025): idx is [clean sequence ; noisy copy], 2T tokens at positions 0..T-1 twice. A clean
position attends to the prefix and to clean blocks up to its own (what the KV cache holds when a
block is committed); a noisy position attends to the prefix, to the clean blocks before its own and
to its own noisy block (what a decoding step sees). We chose this over Fast-dLLM v2's complementary
masks because a decoding step then sees exactly the sequence trained on (clean earlier blocks, one
noisy block), the cache of a committed block is exact, and block_len 1 is AR and block_len >= the
target length is full diffusion, token for token (tests/test_block.py). The price: twice the
tokens per training sequence. With the shift (token i read from output i - 1), the first token of
a block is read from the clean copy (the last token of the block before, or of the prefix).

    from model import GPT, GPTConfig
    model = GPT(GPTConfig.preset("tiny", vocab_size=320))
    logits = model(idx, prefix_len=P, seq_len=L, mode="diffusion")            # (B, T, V)
    logits = model(torch.cat([idx, noisy], 1), P, L, mode="block", block_len=4)  # (B, 2T, V)
    out = model.generate(prefix, prefix_len, max_new_tokens=64, eos_id=256)   # KV-cached AR
    compile_for_decoding(model)  # torch.compile, static cache shapes: AR steps compiled once or twice
    gpt2 = GPT.from_pretrained("gpt2")                                         # needs transformers
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("ar", "diffusion", "block")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's

# Shapes: tiny/small for CPU, then the GPT-2 family (124M / 355M / 774M / 1.5B at the GPT-2 vocab).
PRESETS = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=256),
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=512),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, block_size=1024),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, block_size=1024),
}


@dataclass
class GPTConfig:
    vocab_size: int = 320  # padded to a multiple of 64 by the tokenizer; spare ids hold specials
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # GPT-2 has biases in Linear and LayerNorm

    @classmethod
    def preset(cls, name, **overrides):
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; expected one of {list(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")


class KVCache:
    """Keys/values of every layer at absolute positions [0, capacity) of each example: one
    (B, n_head, capacity, head_dim) tensor per layer for keys and one for values, written in place
    (a compiled step then updates one layer's tensor without copying the others) and kept at their
    address for their whole life (CUDA graphs may replay the steps that write them)."""

    def __init__(self, config, batch_size, capacity, device, dtype):
        if capacity > config.block_size:
            raise ValueError(f"cache capacity {capacity} exceeds block_size {config.block_size}")
        shape = (batch_size, config.n_head, capacity, config.n_embd // config.n_head)
        self.capacity = capacity
        self._set(*([torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)] for _ in "kv"))

    def _set(self, k, v):
        self.k, self.v = k, v
        for t in k + v:
            if t.is_cuda:  # mode="reduce-overhead" then keeps the cache writes inside the graph
                torch._dynamo.mark_static_address(t)

    def write(self, layer, pos, k, v):
        """Keys and values (B, n_head, T, head_dim) at positions pos (B, T) into `layer`; returns its
        whole cache. An index_put, which inductor does in place (a scatter_ copies the tensor)."""
        b = torch.arange(k.size(0), device=k.device)[:, None]
        self.k[layer][b, :, pos] = k.transpose(1, 2).to(self.k[layer].dtype)
        self.v[layer][b, :, pos] = v.transpose(1, 2).to(self.v[layer].dtype)
        return self.k[layer], self.v[layer]

    def repeat_interleave(self, n):
        """n copies of every example (the `num_samples` candidates share one prefill)."""
        self._set(*([t.repeat_interleave(n, dim=0) for t in ts] for ts in (self.k, self.v)))
        return self


def attention_mask(q_pos, k_pos, prefix_len, seq_len, mode, block_len=None, k_noisy=None, q_noisy=None):
    """(B, 1, Tq, Tk) bool, True = may attend. Positions are absolute; see the module docstring.
    k_noisy (Tk,) / q_noisy (Tq,): which keys / queries are the block objective's noisy copy."""
    q = q_pos[:, :, None]  # (B, Tq, 1)
    k = k_pos[None, None, :]  # (1, 1, Tk)
    P = prefix_len[:, None, None]
    if mode == "block":  # block index within the target (negative in the prefix)
        bq, bk = torch.div(q - P, block_len, rounding_mode="floor"), torch.div(k - P, block_len, rounding_mode="floor")
        within = bk <= bq
        if k_noisy is not None:  # two copies: clean keys of earlier blocks, noisy keys of the own block
            kn, qn = k_noisy[None, None, :], q_noisy[None, :, None]
            within = torch.where(qn, torch.where(kn, bk == bq, bk < bq), ~kn & within)
            rule = ((k < P) & ~kn) | ((q >= P) & within)
            diagonal = torch.eye(q.size(1), dtype=torch.bool, device=q.device)  # positions repeat: by index
            return ((rule & (k < seq_len[:, None, None])) | diagonal).unsqueeze(1)
    else:
        within = (k <= q) if mode == "ar" else True
    rule = (k < P) | ((q >= P) & within)
    return ((rule & (k < seq_len[:, None, None])) | (k == q)).unsqueeze(1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head, self.dropout = config.n_head, config.dropout

    def forward(self, x, mask, cache=None, layer=0, pos=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # write this call's keys/values at their positions, attend to all
            k, v = (t.to(q.dtype) for t in cache.write(layer, pos, k, v))
        dropout = self.dropout if self.training else 0.0
        if isinstance(mask, str):  # no prefix, no padding: plain causal (flash) or full attention
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=mask == "ar")
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # GPT-2's GELU


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, mask, cache=None, layer=0, pos=None):
        x = x + self.resid_dropout(self.attn(self.ln_1(x), mask, cache, layer, pos))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied embeddings, as GPT-2
        self.static_decoding = False  # static cache shapes for compiled decoding (compile_for_decoding)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2L)
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding=True):
        """Parameters (the tied wte/lm_head counted once); minus position embeddings by default."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx, prefix_len=None, seq_len=None, mode="ar", cache=None, start=None,
                head=True, block_len=None, at=None):
        """
        idx (B, T) token ids; prefix_len (B,) prefix lengths (default 0: a causal LM); seq_len (B,)
        real lengths, the rest is right padding (default: all real). With a `cache`, idx holds the
        tokens at absolute positions start[b] + [0, T) of each example, their keys/values are
        written into the cache, and seq_len defaults to start + T. mode "block" needs block_len;
        without a cache its idx is (B, 2T): the clean sequence, then its noisy copy (docstring), and
        output i, which reads token i + 1, is the clean copy's where token i + 1 begins a block, else
        the noisy copy's: (B, T) outputs. Returns logits (B, T, V), or the final hidden states
        (B, T, C) when head=False; with `at` (N,) indices into the B*T outputs flattened, only those
        rows (N, V): the losses compute the head only where they read it (on a fine-tuning prefix, and
        on a 50K vocabulary, the head is much of the work).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if (mode == "block") != (block_len is not None) or (block_len is not None and block_len < 1):
            raise ValueError(f"block_len must be an integer >= 1 with mode 'block' and None otherwise, got "
                             f"{block_len!r} with mode {mode!r}")
        if idx.dim() != 2 or idx.dtype != torch.long:
            raise ValueError(f"idx must be a (B, T) tensor of int64 token ids, got "
                             f"{tuple(idx.shape)} {idx.dtype}")
        B, T = idx.shape
        for name, t in (("prefix_len", prefix_len), ("seq_len", seq_len), ("start", start)):
            if t is not None and (t.shape != (B,) or t.dtype != torch.long):
                raise ValueError(f"{name} must be a ({B},) int64 tensor, got {tuple(t.shape)} {t.dtype}")
        two_copies = mode == "block" and cache is None
        if two_copies and T % 2:
            raise ValueError(f"mode 'block' without a cache takes [clean ; noisy], an even length, got {T}")
        Tp = T // 2 if two_copies else T  # distinct positions
        limit = self.config.block_size if cache is None else cache.capacity
        if Tp > limit:
            what = "block_size" if cache is None else "cache capacity"
            raise ValueError(f"sequence of {Tp} tokens exceeds the {what} {limit}")
        device = idx.device
        start = torch.zeros(B, dtype=torch.long, device=device) if start is None else start
        pos = start[:, None] + torch.arange(T, device=device) % Tp  # (B, T) absolute positions
        if cache is None and prefix_len is None and seq_len is None and mode != "block":
            mask = mode  # fast path: a plain causal LM (ar) or full attention (diffusion)
        else:
            zeros = torch.zeros(B, dtype=torch.long, device=device)
            prefix_len = zeros if prefix_len is None else prefix_len
            seq_len = start + Tp if seq_len is None else seq_len
            k_pos = (torch.arange(T, device=device) % Tp if cache is None
                     else torch.arange(cache.capacity, device=device))
            noisy = torch.arange(T, device=device) >= Tp if two_copies else None
            mask = attention_mask(pos, k_pos, prefix_len, seq_len, mode, block_len, noisy, noisy)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for i, block in enumerate(self.transformer.h):
            x = block(x, mask, cache, i, pos)
        if two_copies:
            begins = (torch.arange(Tp, device=device)[None] + 1 - prefix_len[:, None]) % block_len == 0  # (B, Tp)
            x = torch.where(begins[..., None], x[:, :Tp], x[:, Tp:])
        x = self.transformer.ln_f(x if at is None else x.flatten(0, 1)[at])
        return self.lm_head(x) if head else x

    @torch.no_grad()
    def prefill(self, prefix, prefix_len, capacity, dtype=None):
        """Run the prefix once into a new KVCache of `capacity` positions; returns (cache, hidden).
        With static_decoding (compile_for_decoding) the capacity is rounded up to a power of two (at
        least 64, at most block_size) and the prefix is padded to a multiple of 64 tokens: then the
        decoding steps of every position, and of every output length in a bucket, have one shape.
        Padding is never attended to (positions >= prefix_len), and a step overwrites it before its
        own positions become visible; unused cache slots are masked."""
        dtype = dtype or self.transformer.wte.weight.dtype
        if self.static_decoding:
            capacity = min(self.config.block_size, max(64, 1 << (capacity - 1).bit_length()))
            pad = min(capacity, -(-prefix.size(1) // 64) * 64) - prefix.size(1)
            prefix = F.pad(prefix, (0, pad), value=0)
        cache = KVCache(self.config, prefix.size(0), capacity, prefix.device, dtype)
        h = self(prefix, prefix_len, seq_len=prefix_len, cache=cache, head=False)
        return cache, h

    @torch.no_grad()
    def generate(self, prefix, prefix_len, max_new_tokens, eos_id, temperature=0.0, top_k=None,
                 generators=None, suppress_from=None, return_calls=False):
        """
        Batched KV-cached AR decoding. prefix (B, P) right-padded, prefix_len (B,) >= 1. Each example
        stops at its own EOS (later slots hold eos_id). Ids >= suppress_from (the [MASK] and spare
        ids) are never produced. Returns (B, max_new_tokens) token ids (and, with return_calls, the
        number of forward passes made, the prefix pass included).
        """
        B = prefix.size(0)
        if int(prefix_len.min()) < 1:
            raise ValueError("generate needs at least one prefix token per example (e.g. EOS as BOS)")
        cap = int(prefix_len.max()) + max_new_tokens
        if cap > self.config.block_size:
            raise ValueError(f"prefix ({int(prefix_len.max())}) + max_new_tokens ({max_new_tokens}) "
                             f"exceeds block_size {self.config.block_size}")
        cache, h = self.prefill(prefix, prefix_len, cap)
        logits = self.lm_head(h[torch.arange(B, device=prefix.device), prefix_len - 1])  # (B, V)
        out = torch.full((B, max_new_tokens), eos_id, dtype=torch.long, device=prefix.device)
        done = torch.zeros(B, dtype=torch.bool, device=prefix.device)
        check_every = 32 if prefix.device.type == "cuda" else 1
        for t in range(max_new_tokens):
            if suppress_from is not None:
                logits[:, suppress_from:] = float("-inf")
            nxt = sample_logits(logits[:, None], temperature, top_k, generators)[:, 0]
            nxt = torch.where(done, eos_id, nxt)
            out[:, t] = nxt
            done = done | (nxt == eos_id)
            # bool() waits for the device: on CUDA test "all done" only every 32 tokens so the CPU
            # queues kernels ahead (finished examples emit eos_id anyway: the output is the same)
            if t + 1 == max_new_tokens or (t % check_every == check_every - 1 and bool(done.all())):
                break
            logits = self(nxt[:, None], prefix_len, cache=cache, start=prefix_len + t)[:, -1]
        return (out, t + 1) if return_calls else out

    def flops_per_token(self, seq_len):
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L H Q T. N counts the
        head at every position; the losses apply it only at the positions they score (`at`), so where
        few are scored (a fine-tuning prefix) the MFU this gives is above the work really done."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * seq_len

    @classmethod
    def from_hf(cls, hf_model, vocab_size=None):
        """Our GPT from a Hugging Face GPT2LMHeadModel (explicit key mapping, every key asserted)."""
        hc = hf_model.config
        config = GPTConfig(vocab_size=vocab_size or -(-hc.vocab_size // 64) * 64, block_size=hc.n_positions,
                           n_layer=hc.n_layer, n_head=hc.n_head, n_embd=hc.n_embd)
        model = cls(config)
        sd = model.state_dict()
        hf = {k: v for k, v in hf_model.state_dict().items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        # GPT-2's names are ours (lm_head is tied to wte in both); HF's Conv1D weights are (in, out)
        assert set(hf) == set(sd), f"key mismatch: {sorted(set(hf) ^ set(sd))}"
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        with torch.no_grad():
            for k, w in hf.items():
                if k == "lm_head.weight":
                    continue  # tied: set with wte
                if k == "transformer.wte.weight":  # (50257, C) into the padded vocabulary
                    sd[k][: w.size(0)].copy_(w)
                    sd[k][w.size(0):].copy_(w.mean(0))  # spare rows: the mean embedding
                    continue
                w = w.t() if k.endswith(transposed) else w
                assert sd[k].shape == w.shape, f"{k}: {tuple(sd[k].shape)} vs {tuple(w.shape)}"
                sd[k].copy_(w)
        return model

    @classmethod
    def from_pretrained(cls, name="gpt2"):
        """Download GPT-2 weights with transformers (imported lazily: it is optional)."""
        if not name.startswith("gpt2") or name not in PRESETS:
            raise ValueError(f"unknown GPT-2 model {name!r}; expected one of "
                             f"{[p for p in PRESETS if p.startswith('gpt2')]}")
        try:
            from transformers import GPT2LMHeadModel
        except ImportError as e:
            raise ImportError("importing GPT-2 weights needs transformers: pip install transformers") from e
        return cls.from_hf(GPT2LMHeadModel.from_pretrained(name))


def _gumbel(u):
    return -torch.log(-torch.log(u.clamp(1e-300, 1.0)))  # u = 1 gives +inf: clamp the inner log


def sample_logits(logits, temperature=0.0, top_k=None, generators=None):
    """
    Token ids from logits (B, ..., V): argmax at temperature 0, else Gumbel-max sampling,
    argmax(logits / temperature + g). The noise is float64: in low precision, near-equal perturbed
    logits tie and bias the choice. With `generators` (one torch.Generator per example), each
    example draws its own noise, so its sample does not depend on the rest of the batch.
    Every position draws V uniforms, but g is computed only where it can win: a token whose logit,
    with the largest g of its row, stays below the top logit's perturbed value never wins. The
    result is the full computation's (the same draws, the same arithmetic), at a fraction of its cost.
    """
    if temperature == 0:
        return logits.argmax(-1)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    u = torch.empty(logits.shape, device=logits.device, dtype=torch.float64)
    if generators is None:
        u.uniform_()
    else:
        for row, g in zip(u, generators):
            torch.rand(row.shape, generator=g, device=logits.device, dtype=torch.float64, out=row)
    V = logits.size(-1)
    l, u = logits.reshape(-1, V), u.view(-1, V)
    a = l.argmax(-1, keepdim=True)  # the largest logit: its perturbed value z_a bounds the winner's from below
    z_a = l.gather(1, a).double() / temperature + _gumbel(u.gather(1, a))
    floor = (z_a - _gumbel(u.max(-1, keepdim=True).values)) * temperature  # below it, even the row's largest g loses
    rows, ids = (l >= (floor - 1e-4 * (1 + floor.abs())).float()).nonzero(as_tuple=True)  # a margin: a superset
    z = l[rows, ids].double() / temperature + _gumbel(u[rows, ids])
    best = z.new_full((l.size(0),), float("-inf")).scatter_reduce(0, rows, z, "amax")
    win = z == best[rows]  # ties go to the lowest id, as in argmax
    out = ids.new_full((l.size(0),), V).scatter_reduce(0, rows[win], ids[win], "amin")
    return out.view(logits.shape[:-1])


def compile_for_decoding(model, mode=None):
    """
    torch.compile every forward of `model` (prefill, AR steps, diffusion and block steps alike: both
    sides of a speed comparison) and give decoding static shapes (GPT.prefill): the KV cache spans
    a power of two, so one compiled AR step decodes every position (a tensor, not a constant) of
    every output length in its bucket, at the cost of attending to at most as many masked slots as
    used ones. A second bucket, like a diffusion canvas of another length, recompiles the graph once
    with that size dynamic (torch's automatic dynamic shapes); later ones reuse it.
    mode: torch.compile's ("reduce-overhead": CUDA graphs, one per shape).
    """
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)  # eval: many batch shapes
    model.static_decoding = True
    model.compile(mode=mode)
    return model


def make_generators(seeds, device):
    """One seeded torch.Generator per example."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def target_mask(prefix_len, seq_len, T):
    """(B, T) bool: True at target positions (P <= i < seq_len), i.e. not prefix, not padding."""
    i = torch.arange(T, device=prefix_len.device)[None]
    return (i >= prefix_len[:, None]) & (i < seq_len[:, None])


def ar_loss(model, idx, prefix_len, seq_len):
    """Next-token cross-entropy on target tokens only (mean over the batch's target tokens)."""
    read = target_mask(prefix_len, seq_len, idx.size(1))[:, 1:]  # token i + 1 is read from output i
    logits = model(idx, prefix_len, seq_len, mode="ar", at=outputs_reading(read))
    return F.cross_entropy(logits.float(), idx[:, 1:][read])


def outputs_reading(read):
    """(B, T-1) bool, token i + 1 scored -> the flat indices of the outputs i that predict them."""
    return F.pad(read, (0, 1)).flatten().nonzero().squeeze(1)


def model_from_checkpoint(ckpt, device="cpu"):
    model = GPT(GPTConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device)

r"""
Generate from a checkpoint with its own objective (AR or diffusion), or time AR decoding against
diffusion decoding on one model (the paper's Fig. 3, here with a KV cache for AR and the prefix
cache for diffusion, DESIGN §3).

Generate (flags left out take the checkpoint's settings and the paper's decoding, §4.1):
    python sample.py --ckpt out/diff.pt --prompt "Translate English to French: Hello."
    python sample.py --ckpt out/diff.pt --prompt_file prompt.txt --num_steps 20 --num_outputs 3
    python sample.py --ckpt out/ar.pt --prompt "def add(a, b):" --temperature 0.8 --top_k 40

Speed (random weights of a preset: timing does not depend on the weights; or --ckpt):
    python sample.py --compare --preset tiny --tokenizer byte --lengths 64,128,256 \
        --num_steps 10,20,50 --threshold 0.9 --json out/speed.json --plot out/speed.png
    python sample.py --compare --preset gpt2 --tokenizer gpt2 --block_size 4112 --device cuda \
        --lengths 64,128,256,512,1024,2048,4096 --num_steps 10,20,50 --json out/gpt2.json --plot out/gpt2.png
"""
import argparse
import importlib.util
import math
import platform
import statistics
import time
from dataclasses import asdict

import torch
from tqdm import tqdm

from data.common import atomic_write, write_json
from data.loader import pad_batch
from data.tokenizer import TOKENIZERS, get_tokenizer
from diffusion import NOISES, ORDERS, SCHEDULES, cut_at_eos, diffusion_generate
from model import PRESETS, GPT, GPTConfig, load_checkpoint, make_generators, model_from_checkpoint

DIFFUSION_FLAGS = ("num_steps", "num_samples", "order", "schedule", "threshold")
MASK_FLAGS = ("order", "schedule", "threshold")  # the uniform sampler resamples every position
GENERATE_FLAGS = ("num_outputs", "target_len", "top_k", "prompt", "prompt_file")
COMPARE_FLAGS = ("prompt_len", "lengths", "repeats", "warmup", "batch_size", "noise", "json", "plot")
RANDOM_FLAGS = ("preset", "tokenizer", "block_size")  # a checkpoint fixes these
SAMPLER = ("noise", "temperature", "num_samples", "order", "schedule")  # diffusion_generate's, timed
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
TIMING = dict(lengths=[64, 128, 256], num_steps=[10, 20, 50], temperature=0.2, num_samples=1,  # --compare's
              order="confidence", schedule="linear", batch_size=1, prompt_len=16, repeats=3, warmup=1)


def flag_type(convert, ok, what):
    """An argparse type; argparse reports a bad value as 'argument --flag: <what>, got ...'."""
    def parse(s):
        try:
            if ok(v := convert(s)):
                return v
        except (ValueError, RuntimeError):
            pass
        raise argparse.ArgumentTypeError(f"{what}, got {s!r}")
    return parse


INT = flag_type(int, lambda v: v >= 1, "must be an integer >= 1")
INT0 = flag_type(int, lambda v: v >= 0, "must be an integer >= 0")
INTS = flag_type(lambda s: [int(v) for v in s.split(",")], lambda v: min(v) >= 1, "must be integers >= 1")
FLOAT = flag_type(float, lambda v: 0 <= v < math.inf, "must be a number >= 0")
DEVICE = flag_type(torch.device, lambda d: d.type != "cuda" or torch.cuda.is_available(),
                   "must be cpu or an available CUDA device")


def get_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint (AR or diffusion); needed to generate")
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="prompt text, the prefix (default: none; EOS starts the text)")
    prompt.add_argument("--prompt_file", help="read the prompt from this file (one trailing newline dropped)")
    p.add_argument("--num_outputs", type=INT, help="outputs per prompt, each with its own seed (default 1)")
    p.add_argument("--target_len", type=INT, help="output tokens (default: the ckpt's target_len, else 64)")
    p.add_argument("--temperature", type=FLOAT, help="default: AR 0 (greedy), diffusion 0.2 (paper)")
    p.add_argument("--top_k", type=INT, help="AR sampling: keep the k likeliest tokens (default: all)")
    p.add_argument("--num_steps", "--steps", type=INTS, help="diffusion steps (10; --compare: 10,20,50)")
    p.add_argument("--num_samples", type=INT, help="diffusion candidates reranked per output (8; compare: 1)")
    p.add_argument("--order", choices=ORDERS, help="mask noise: unmasking order (default confidence)")
    p.add_argument("--schedule", choices=SCHEDULES, help="mask noise: tokens per step (default linear)")
    p.add_argument("--threshold", type=flag_type(float, lambda v: 0 < v <= 1, "must be in (0, 1]"),
                   help="mask noise, adaptive: also unmask tokens above this probability (default off)")
    p.add_argument("--compare", action="store_true", help="time AR vs diffusion decoding instead")
    p.add_argument("--preset", choices=list(PRESETS), help="--compare, random weights: shape (default tiny)")
    p.add_argument("--tokenizer", choices=TOKENIZERS, help="--compare, random weights (default byte)")
    p.add_argument("--block_size", type=INT, help="--compare, random weights (default: the preset's, or "
                   "what the sweep needs)")
    p.add_argument("--noise", choices=NOISES, help="--compare: diffusion sampler (default: ckpt's, or mask)")
    p.add_argument("--lengths", type=INTS, help="--compare: output lengths (default 64,128,256)")
    p.add_argument("--batch_size", type=INT, help="--compare: examples decoded together (default 1)")
    p.add_argument("--prompt_len", type=INT, help="--compare: random prompt tokens (default 16)")
    p.add_argument("--repeats", type=INT, help="--compare: timed runs; the median is kept (default 3)")
    p.add_argument("--warmup", type=INT0, help="--compare: untimed runs before (default 1)")
    p.add_argument("--json", help="--compare: write the results to this JSON file")
    p.add_argument("--plot", help="--compare: latency vs output length PNG (needs matplotlib)")
    p.add_argument("--seed", type=int, default=0, help="random seed (output i of a prompt uses seed + i)")
    p.add_argument("--device", type=DEVICE, default="cuda" if cuda else "cpu", help="cpu|cuda|cuda:N")
    p.add_argument("--dtype", choices=list(DTYPES), default="bfloat16" if cuda else "float32",
                   help="weights and caches (default: bfloat16 on CUDA)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile (default: CUDA)")
    return p, p.parse_args(argv)


def reject(p, args, flags, why):
    if given := [f"--{f}" for f in flags if getattr(args, f) is not None]:
        p.error(f"{', '.join(given)} cannot be used {why}")


def fill(args, **defaults):
    """Flags left out (None, so that reject() can tell) get their defaults for this mode."""
    for k, v in defaults.items():
        setattr(args, k, v if getattr(args, k) is None else getattr(args, k))


def setup(p, args):
    """(model, tokenizer, checkpoint dict or None) on args.device, in args.dtype, eval mode."""
    if args.ckpt:
        reject(p, args, RANDOM_FLAGS, "with --ckpt: the checkpoint fixes the model and tokenizer")
        try:
            ckpt = load_checkpoint(args.ckpt)
            tok = get_tokenizer(ckpt.get("tokenizer") or {})
            model = model_from_checkpoint(ckpt)
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            p.error(f"--ckpt {args.ckpt}: {e}")
    elif not args.compare:
        p.error("--ckpt is needed to generate (--compare times random weights)")
    else:
        ckpt, tok = None, get_tokenizer(args.tokenizer or "byte")
        config = GPTConfig.preset(args.preset or "tiny", vocab_size=tok.vocab_size)
        # random positions time like trained ones: block_size grows to fit the sweep unless given
        need = (args.prompt_len or TIMING["prompt_len"]) + max(args.lengths or TIMING["lengths"])
        config.block_size = args.block_size or max(config.block_size, need)
        torch.manual_seed(args.seed)
        model = GPT(config)
    # Weights are cast once rather than autocast: decoding is bound by reading the weights, and
    # autocast would re-read and re-cast the float32 weights at every call (once per AR token).
    model.to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    args.compile = args.device.type == "cuda" if args.compile is None else args.compile
    if args.compile:  # compiles the module's __call__: prefill, AR and diffusion steps alike, both sides
        model.compile()
    return model, tok, ckpt


def check_length(p, flag, n_prompt, length, block_size, hint=""):
    if n_prompt + length > block_size:
        p.error(f"{flag}: the prompt ({n_prompt} tokens) + {length} output tokens exceed the model's "
                f"block_size {block_size}{hint}")


def generate(p, args, model, tok, ckpt):
    """Decode --num_outputs outputs of the prompt with the checkpoint's objective; print them."""
    reject(p, args, COMPARE_FLAGS, "without --compare")
    objective, noise = ckpt.get("objective"), ckpt.get("noise")
    if objective not in ("ar", "diffusion"):
        p.error(f"--ckpt: objective must be 'ar' or 'diffusion', got {objective!r}")
    diffusion = objective == "diffusion"
    why = "with a diffusion checkpoint (AR only)" if diffusion else "with an AR checkpoint (diffusion only)"
    reject(p, args, ("top_k",) if diffusion else DIFFUSION_FLAGS, why)
    if diffusion and noise not in NOISES:
        p.error(f"--ckpt: a diffusion checkpoint must record its noise {NOISES}, got {noise!r}")
    if diffusion and noise == "uniform":
        reject(p, args, MASK_FLAGS, "with a uniform-noise checkpoint (mask noise only)")
    if len(args.num_steps or []) > 1:
        p.error("--num_steps takes one value without --compare")
    fill(args, num_outputs=1, target_len=ckpt.get("target_len") or 64, temperature=0.2 if diffusion else 0.0,
         noise=noise, num_steps=[10], num_samples=8, order="confidence", schedule="linear")  # paper §4.1
    text = args.prompt
    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                text = f.read().removesuffix("\n")
        except (OSError, UnicodeDecodeError) as e:
            p.error(f"--prompt_file: {e}")
    ids = (tok.encode(text) if text else []) or [tok.eos_id]  # no prompt: EOS, which ends documents
    check_length(p, "--target_len", len(ids), args.target_len, model.config.block_size)
    prefix, prefix_len = pad_batch([ids] * args.num_outputs, tok.eos_id, args.device)
    gens = make_generators([args.seed + i for i in range(args.num_outputs)], args.device)  # same for any B
    if not diffusion:
        kw = dict(temperature=args.temperature, top_k=args.top_k)
        out, scores = model.generate(prefix, prefix_len, args.target_len, tok.eos_id, **kw, generators=gens,
                                     suppress_from=tok.mask_id), None  # never [MASK] or a spare id
    else:
        kw = dict(num_steps=args.num_steps[0], threshold=args.threshold,
                  **{k: getattr(args, k) for k in SAMPLER})
        out, scores = diffusion_generate(model, prefix, prefix_len, args.target_len, tok, **kw,
                                         generators=gens)
    print(f"# {args.ckpt}: {objective}, step {ckpt.get('step')}, {args.target_len} tokens, seed {args.seed}, "
          + ", ".join(f"{k} {v}" for k, v in kw.items()))
    texts = [tok.decode(row) for row in cut_at_eos(out, tok.eos_id)]
    for i, text in enumerate(texts):
        print(f"--- output {i}" + ("" if scores is None else f" (mean log-prob {scores[i]:.3f})") + " ---")
        print(text)
    return texts


def timed(fn, repeats, warmup, device):
    """(median seconds of `repeats` runs of fn(), their results), after `warmup` untimed runs (these
    also absorb torch.compile's compilation)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    for _ in range(warmup):
        fn()
    times, results = [], []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        results.append(fn())
        sync()  # CUDA kernels run asynchronously: wait for them before reading the clock
        times.append(time.perf_counter() - t0)
    return statistics.median(times), results


def cost(latency, calls, tokens):
    """Latency, model calls (AR: one per token; diffusion: one per step) and what follows from them."""
    return dict(latency_s=latency, calls=calls, tokens_per_s=tokens / latency, per_call_s=latency / calls)


def speed_sweep(model, tok, prefix, prefix_len, lengths, num_steps, threshold=None, repeats=3, warmup=1,
                **sampler):
    """
    Latency of AR (KV cache, greedy) and diffusion (prefix cache) decoding with the same `model`
    and prefix (B, P), per output length: a list of rows {length, ar, diffusion: {steps: ...},
    threshold: {steps cap: ...}}, each leaf a cost() dict; diffusion leaves add the speedup (AR
    latency / diffusion latency). Both latencies include the prefix pass. `sampler`: the other
    diffusion_generate arguments (noise, temperature, num_samples, order, schedule).
    """
    B, device, rows = prefix.size(0), prefix.device, []
    for L in tqdm(lengths, desc="lengths", leave=False):
        # AR must do the work of L tokens, as the diffusion canvas always holds L: EOS (and every
        # special id) is suppressed, so greedy decoding never stops early.
        t_ar, outs = timed(lambda: model.generate(prefix, prefix_len, L, tok.eos_id,
                                                  suppress_from=tok.eos_id), repeats, warmup, device)
        assert outs[-1].shape == (B, L) and not (outs[-1] == tok.eos_id).any()
        row = dict(length=L, ar=cost(t_ar, L, B * L))
        for key, thr in [("diffusion", None)] + ([("threshold", threshold)] if threshold else []):
            for S in num_steps:
                t, outs = timed(lambda: diffusion_generate(model, prefix, prefix_len, L, tok, num_steps=S,
                                threshold=thr, return_info=True, **sampler), repeats, warmup, device)
                calls = statistics.mean(info["steps"] for _, _, info in outs)  # threshold: varies
                row.setdefault(key, {})[str(S)] = dict(cost(t, calls, B * L), speedup=t_ar / t)
        rows.append(row)
    return rows


def curves(rows, s):
    """(label, key, steps) of every diffusion curve in the results."""
    names = {"diffusion": "diffusion, {} steps", "threshold": f"threshold {s['threshold']}, <={{}} steps"}
    return [(name.format(S), key, S) for key, name in names.items() for S in rows[0].get(key, {})]


def print_table(rows, s):
    print(f"# {s['model']} ({s['n_params'] / 1e6:.2f}M params), {s['device_name']}, {s['dtype']}, compile "
          f"{s['compile']}, batch {s['batch_size']}, prompt {s['prompt_len']} tokens, median of {s['repeats']}")
    print(f"# AR: {s['ar']}.\n# diffusion: {s['diffusion']}.\n# calls: AR one per token, diffusion one per "
          f"step; ms/call = latency / calls; speedup = AR latency / diffusion latency")
    print(f"{'length':>6}  {'decoder':<26}{'calls':>7}{'latency ms':>12}{'tokens/s':>11}{'ms/call':>9}"
          f"{'speedup':>9}")
    for r in rows:
        for label, c in [("AR, KV cache", r["ar"])] + [(lab, r[k][S]) for lab, k, S in curves(rows, s)]:
            speedup = f"{c['speedup']:.2f}x" if "speedup" in c else ""
            print(f"{r['length']:>6}  {label:<26}{c['calls']:>7.4g}{c['latency_s'] * 1e3:>12.1f}"
                  f"{c['tokens_per_s']:>11.0f}{c['per_call_s'] * 1e3:>9.3f}{speedup:>9}")


def plot(rows, s, path):
    """Latency vs output length, log-log, like the paper's Fig. 3 (matplotlib is optional: imported here)."""
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    x = [r["length"] for r in rows]
    ax.plot(x, [r["ar"]["latency_s"] for r in rows], "o-", color="black", label="AR, KV cache")
    for label, key, S in curves(rows, s):
        ax.plot(x, [r[key][S]["latency_s"] for r in rows], "s-" if key == "diffusion" else "^--", label=label)
    ax.set(xscale="log", yscale="log", xlabel="output length (tokens)", ylabel="latency (s)",
           title=f"{s['model']}, {s['device_name']}, {s['dtype']}, batch {s['batch_size']}")
    ax.set_xticks(x, [str(v) for v in x])
    ax.set_xticks([], minor=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"), mode="wb")
    plt.close(fig)


def compare(p, args, model, tok, ckpt):
    """Time the sweep, print the table, write --json / --plot; returns the JSON dict."""
    reject(p, args, GENERATE_FLAGS, "with --compare (it times a random prompt of --prompt_len tokens)")
    fill(args, noise=(ckpt or {}).get("noise") or "mask")
    if args.noise == "uniform":
        reject(p, args, MASK_FLAGS, "with uniform noise (mask noise only)")
    fill(args, **TIMING)
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # fail now, not after the sweep
        p.error("--plot needs matplotlib: pip install matplotlib")
    check_length(p, "--lengths", args.prompt_len, max(args.lengths), model.config.block_size,
                 "" if ckpt else " (raise --block_size)")
    B, device, g = args.batch_size, args.device, torch.Generator().manual_seed(args.seed)
    prefix = torch.randint(tok.n_ordinary, (B, args.prompt_len), generator=g).to(device)  # content: no matter
    prefix_len = torch.full((B,), args.prompt_len, device=device)
    s = {k: getattr(args, k) for k in ("batch_size", "prompt_len", "lengths", "num_steps", "threshold",
                                       *SAMPLER, "repeats", "warmup", "seed", "dtype", "compile")}
    s.update(model=args.ckpt or args.preset or "tiny", n_params=model.num_params(), tokenizer=tok.name,
             config=asdict(model.config), device=str(device), torch=torch.__version__,
             device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"CPU {platform.machine()}, threads={torch.get_num_threads()}")
    s["ar"] = "KV cache, greedy, EOS suppressed so that every output has exactly `length` tokens"
    s["diffusion"] = (f"prefix cache, {args.noise} noise, temperature {args.temperature}, num_samples "
                      f"{args.num_samples} (candidates reranked per output: the paper's 8 cost 8x the batch)")
    torch.manual_seed(args.seed)
    rows = speed_sweep(model, tok, prefix, prefix_len, args.lengths, args.num_steps, args.threshold,
                       args.repeats, args.warmup, **{k: getattr(args, k) for k in SAMPLER})
    print_table(rows, s)
    if args.json:
        write_json(args.json, dict(settings=s, results=rows))
    if args.plot:
        plot(rows, s, args.plot)
    return dict(settings=s, results=rows)


def main(argv=None):
    p, args = get_args(argv)
    model, tok, ckpt = setup(p, args)
    with torch.no_grad():
        return compare(p, args, model, tok, ckpt) if args.compare else generate(p, args, model, tok, ckpt)


if __name__ == "__main__":
    main()

r"""
Generate from a checkpoint with its own objective (AR or diffusion); time AR against diffusion decoding on
one model (the paper's Fig. 3, with a KV cache for AR and the prefix cache for diffusion, DESIGN §3); or
plot a task's metric against latency (the trade-off the paper left out).

Generate (flags left out take the checkpoint's settings and the paper's decoding, §4.1):
    python sample.py --ckpt out/diff.pt --prompt "Translate English to French: Hello."
    python sample.py --ckpt out/diff.pt --prompt_file prompt.txt --num_steps 20 --num_outputs 3
    python sample.py --ckpt out/ar.pt --prompt "def add(a, b):" --temperature 0.8 --top_k 40

Speed (random weights of a preset: timing does not depend on the weights; or --ckpt):
    python sample.py --compare --preset tiny --tokenizer byte --lengths 64,128,256 \
        --num_steps 10,20,50 --threshold 0.9 --json out/speed.json --plot out/speed.png
    python sample.py --compare --preset gpt2 --tokenizer gpt2 --block_size 4112 --device cuda \
        --lengths 64,128,256,512,1024,2048,4096 --num_steps 10,20,50 --json out/gpt2.json --plot out/gpt2.png

Quality vs speed (a fine-tuned diffusion checkpoint and the AR one of the task; every setting decodes the
split with evaluate.py's decoder, timed, and is scored with the task's metric):
    python sample.py --quality --ckpt DIFF.pt --ar_ckpt AR.pt --task_dir data/embedded/qa --split test \
        --limit 100 --num_steps 1,2,5,10,20 --threshold 0.5,0.7,0.9 --json out/quality.json --plot out/quality.png
"""
import argparse
import importlib.util
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

import evaluate
from data.common import atomic_write, write_json
from data.loader import pad_batch
from data.tasks import load_split, load_task, score
from data.tokenizer import TOKENIZERS, get_tokenizer
from diffusion import NOISES, ORDERS, SCHEDULES, cut_at_eos, diffusion_generate
from model import PRESETS, GPT, GPTConfig, load_checkpoint, make_generators, model_from_checkpoint

DIFFUSION_FLAGS = ("num_steps", "num_samples", "order", "schedule", "threshold")
MASK_FLAGS = ("order", "schedule", "threshold")  # the uniform sampler resamples every position
RANDOM_FLAGS = ("preset", "tokenizer", "block_size")  # a checkpoint fixes these
MODES = {  # flags that only these modes take
    ("generate",): ("prompt", "prompt_file", "top_k"),
    ("compare",): ("prompt_len", "lengths", "noise", *RANDOM_FLAGS),
    ("quality",): ("ar_ckpt", "task_dir", "split", "limit"),
    ("generate", "quality"): ("num_outputs", "target_len"),
    ("compare", "quality"): ("batch_size", "repeats", "warmup", "json", "plot"),
}
SAMPLER = ("noise", "temperature", "num_samples", "order", "schedule")  # diffusion_generate's, timed
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PAPER = dict(temperature=0.2, num_samples=8, order="confidence", schedule="linear")  # §4.1, with 10 steps
TIMING = dict(PAPER, lengths=[64, 128, 256], num_steps=[10, 20, 50], num_samples=1, batch_size=1, prompt_len=16,
              repeats=3, warmup=1)  # --compare's defaults
QUALITY = dict(PAPER, num_steps=[1, 2, 5, 10, 20], num_outputs=1, split="test", limit=0, batch_size=1, repeats=1,
               warmup=1)  # --quality's defaults


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
PROBS = flag_type(lambda s: [float(v) for v in s.split(",")], lambda v: all(0 < x <= 1 for x in v), "must be in (0, 1]")
FLOAT = flag_type(float, lambda v: 0 <= v < float("inf"), "must be a number >= 0")
DEVICE = flag_type(torch.device, lambda d: d.type != "cuda" or torch.cuda.is_available(),
                   "must be cpu or an available CUDA device")


def get_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint (AR or diffusion; --quality: diffusion); needed to generate")
    prompt, mode = p.add_mutually_exclusive_group(), p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="prompt text, the prefix (default: none; EOS starts the text)")
    prompt.add_argument("--prompt_file", help="read the prompt from this file (one trailing newline dropped)")
    p.add_argument("--num_outputs", type=INT, help="outputs per prompt or example, each its own seed (default 1)")
    p.add_argument("--target_len", type=INT, help="output tokens (default: the ckpt's target_len, else 64)")
    p.add_argument("--temperature", type=FLOAT, help="default: AR 0 (greedy), diffusion 0.2 (paper)")
    p.add_argument("--top_k", type=INT, help="AR sampling: keep the k likeliest tokens (default: all)")
    p.add_argument("--num_steps", "--steps", type=INTS, help="diffusion steps (10; --compare 10,20,50; --quality "
                   "1,2,5,10,20)")
    p.add_argument("--num_samples", type=INT, help="diffusion candidates reranked per output (8; compare: 1)")
    p.add_argument("--order", choices=ORDERS, help="mask noise: unmasking order (default confidence)")
    p.add_argument("--schedule", choices=SCHEDULES, help="mask noise: tokens per step (default linear)")
    p.add_argument("--threshold", type=PROBS, help="mask noise, adaptive: also unmask tokens above this probability"
                   " (default off; --quality: several, each capped at the largest --num_steps)")
    mode.add_argument("--compare", action="store_true", help="time AR vs diffusion decoding instead")
    mode.add_argument("--quality", action="store_true", help="a task's metric vs latency instead")
    p.add_argument("--preset", choices=list(PRESETS), help="--compare, random weights: shape (default tiny)")
    p.add_argument("--tokenizer", choices=TOKENIZERS, help="--compare, random weights (default byte)")
    p.add_argument("--block_size", type=INT, help="--compare, random weights (default: the preset's, or to fit)")
    p.add_argument("--noise", choices=NOISES, help="--compare: diffusion sampler (default: ckpt's, or mask)")
    p.add_argument("--lengths", type=INTS, help="--compare: output lengths (default 64,128,256)")
    p.add_argument("--prompt_len", type=INT, help="--compare: random prompt tokens (default 16)")
    p.add_argument("--ar_ckpt", help="--quality: the AR checkpoint of the same task, one more point")
    p.add_argument("--task_dir", help="--quality: prepared task folder (default: the ckpt's task)")
    p.add_argument("--split", help="--quality: split to decode (default test)")
    p.add_argument("--limit", type=INT0, help="--quality: only the first N examples (default 0 = all)")
    p.add_argument("--batch_size", type=INT, help="--compare / --quality: examples decoded together (default 1)")
    p.add_argument("--repeats", type=INT, help="timed runs; the median is kept (--compare 3, --quality 1)")
    p.add_argument("--warmup", type=INT0, help="untimed runs first (--quality: of the whole split) (default 1)")
    p.add_argument("--json", help="--compare / --quality: write the results to this JSON file")
    p.add_argument("--plot", help="--compare / --quality: write a PNG plot of them (needs matplotlib)")
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


def one(p, args, flag, modes):
    """The one value of a list flag (None if left out): only `modes` take several."""
    if len(v := getattr(args, flag) or [None]) > 1:
        p.error(f"--{flag} takes one value without {modes}")
    return v[0]


def load(p, args, flag="ckpt", objective=None):
    """(model, tokenizer, checkpoint or None) from --flag (of `objective`), else random weights of --preset;
    on args.device, in args.dtype, eval mode, compiled if asked."""
    if getattr(args, flag) is None:  # --compare only
        tok, ckpt = get_tokenizer(args.tokenizer or "byte"), None
        config = GPTConfig.preset(args.preset or "tiny", vocab_size=tok.vocab_size)
        # random positions time like trained ones: block_size grows to fit the sweep unless given
        need = (args.prompt_len or TIMING["prompt_len"]) + max(args.lengths or TIMING["lengths"])
        config.block_size = args.block_size or max(config.block_size, need)
        torch.manual_seed(args.seed)
        model = GPT(config)
    else:
        try:
            ckpt = load_checkpoint(getattr(args, flag))
            tok, model = get_tokenizer(ckpt.get("tokenizer") or {}), model_from_checkpoint(ckpt)
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            p.error(f"--{flag} {getattr(args, flag)}: {e}")
        if not args.compare:  # --compare times any weights
            if ckpt.get("objective") not in ((objective,) if objective else ("ar", "diffusion")):
                p.error(f"--{flag}: objective must be {objective or 'ar or diffusion'}, got {ckpt.get('objective')!r}"
                        + (" (--quality: --ckpt diffusion, --ar_ckpt AR)" if objective else ""))
            if ckpt["objective"] == "diffusion" and ckpt.get("noise") not in NOISES:
                p.error(f"--{flag}: a diffusion checkpoint must record its noise {NOISES}, got {ckpt.get('noise')!r}")
            if ckpt.get("noise") == "uniform":
                reject(p, args, MASK_FLAGS, "with a uniform-noise checkpoint (mask noise only)")
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
    objective, noise = ckpt["objective"], ckpt.get("noise")
    diffusion = objective == "diffusion"
    why = "with a diffusion checkpoint (AR only)" if diffusion else "with an AR checkpoint (diffusion only)"
    reject(p, args, ("top_k",) if diffusion else DIFFUSION_FLAGS, why)
    args.num_steps = one(p, args, "num_steps", "--compare or --quality")
    args.threshold = one(p, args, "threshold", "--quality")
    fill(args, num_outputs=1, target_len=ckpt.get("target_len") or 64, temperature=0.2 if diffusion else 0.0,
         noise=noise, num_steps=10)
    fill(args, **PAPER)  # paper §4.1
    try:
        text = Path(args.prompt_file).read_text("utf-8").removesuffix("\n") if args.prompt_file else args.prompt
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
        kw = dict(num_steps=args.num_steps, threshold=args.threshold, **{k: getattr(args, k) for k in SAMPLER})
        out, scores = diffusion_generate(model, prefix, prefix_len, args.target_len, tok, **kw, generators=gens)
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


def plot(path, lines, xticks=None, **axes):
    """A PNG of `lines` (label, x, y, style, a name per point or None), log x, written atomically.
    matplotlib is optional: imported here."""
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for label, x, y, style, names in lines:
        ax.plot(x, y, style, label=label, ms=14 if "*" in style else 6)
        for xy, name in zip(zip(x, y), names or []):
            ax.annotate(name, xy, xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set(xscale="log", **axes)
    if xticks:
        ax.set_xticks(xticks, [str(v) for v in xticks])
        ax.set_xticks([], minor=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"), mode="wb")
    plt.close(fig)


def describe(args, model, keys):
    """`keys` of args and the settings that every timed point shares."""
    return dict({k: getattr(args, k) for k in keys}, n_params=model.num_params(), config=asdict(model.config),
                seed=args.seed, dtype=args.dtype, compile=args.compile, device=str(args.device),
                torch=torch.__version__, device_name=torch.cuda.get_device_name(args.device) if
                args.device.type == "cuda" else f"CPU {platform.machine()}, threads={torch.get_num_threads()}")


def compare(p, args, model, tok, ckpt):
    """Time the sweep (the paper's Fig. 3), print the table, write --plot; returns {settings, results}."""
    fill(args, noise=(ckpt or {}).get("noise") or "mask", **TIMING)
    if args.noise == "uniform":
        reject(p, args, MASK_FLAGS, "with uniform noise (mask noise only)")
    args.threshold = one(p, args, "threshold", "--quality")
    check_length(p, "--lengths", args.prompt_len, max(args.lengths), model.config.block_size,
                 "" if ckpt else " (raise --block_size)")
    B, device, g = args.batch_size, args.device, torch.Generator().manual_seed(args.seed)
    prefix = torch.randint(tok.n_ordinary, (B, args.prompt_len), generator=g).to(device)  # content: no matter
    prefix_len = torch.full((B,), args.prompt_len, device=device)
    s = describe(args, model, ("batch_size", "prompt_len", "lengths", "num_steps", "threshold", *SAMPLER,
                               "repeats", "warmup"))
    s.update(model=args.ckpt or args.preset or "tiny", tokenizer=tok.name)
    s["ar"] = "KV cache, greedy, EOS suppressed so that every output has exactly `length` tokens"
    s["diffusion"] = (f"prefix cache, {args.noise} noise, temperature {args.temperature}, num_samples "
                      f"{args.num_samples} (candidates reranked per output: the paper's 8 cost 8x the batch)")
    torch.manual_seed(args.seed)
    rows = speed_sweep(model, tok, prefix, prefix_len, args.lengths, args.num_steps, args.threshold,
                       args.repeats, args.warmup, **{k: getattr(args, k) for k in SAMPLER})
    print(f"# {s['model']} ({s['n_params'] / 1e6:.2f}M params), {s['device_name']}, {s['dtype']}, compile "
          f"{s['compile']}, batch {s['batch_size']}, prompt {s['prompt_len']} tokens, median of {s['repeats']}")
    print(f"# AR: {s['ar']}.\n# diffusion: {s['diffusion']}.\n# calls: AR one per token, diffusion one per "
          f"step; ms/call = latency / calls; speedup = AR latency / diffusion latency")
    print(f"{'length':>6}  {'decoder':<26}{'calls':>7}{'latency ms':>12}{'tokens/s':>11}{'ms/call':>9}{'speedup':>9}")
    for r in rows:
        for label, c in [("AR, KV cache", r["ar"])] + [(lab, r[k][S]) for lab, k, S in curves(rows, s)]:
            speedup = f"{c['speedup']:.2f}x" if "speedup" in c else ""
            print(f"{r['length']:>6}  {label:<26}{c['calls']:>7.4g}{c['latency_s'] * 1e3:>12.1f}"
                  f"{c['tokens_per_s']:>11.0f}{c['per_call_s'] * 1e3:>9.3f}{speedup:>9}")
    if args.plot:  # latency vs output length, log-log
        x = [r["length"] for r in rows]
        lines = [("AR, KV cache", x, [r["ar"]["latency_s"] for r in rows], "ko-", None)]
        lines += [(label, x, [r[key][S]["latency_s"] for r in rows], "s-" if key == "diffusion" else "^--", None)
                  for label, key, S in curves(rows, s)]
        plot(args.plot, lines, x, yscale="log", xlabel="output length (tokens)", ylabel="latency (s)",
             title=f"{s['model']}, {s['device_name']}, {s['dtype']}, batch {B}")
    return dict(settings=s, results=rows)


def quality(p, args, model, tok, ckpt):
    """Decode the split with every setting and --ar_ckpt, timed and scored; print the table, write --plot;
    returns {settings, points}."""
    fill(args, task_dir=(ckpt.get("task") or {}).get("folder"), **QUALITY)
    if not args.task_dir:
        p.error("--task_dir is needed: the checkpoint records no fine-tuning task")
    try:
        meta, rows = load_task(args.task_dir), load_split(args.task_dir, args.split)[: args.limit or None]
    except (OSError, ValueError) as e:
        p.error(f"--task_dir / --split: {e}")
    models = {"diffusion": (model, tok, ckpt), **({"AR": load(p, args, "ar_ckpt", "ar")} if args.ar_ckpt else {})}
    for (m, _, c), flag in zip(models.values(), ("ckpt", "ar_ckpt")):
        if (name := (c.get("task") or {}).get("name")) not in (None, meta["task"]):
            p.error(f"--{flag} was fine-tuned on task {name!r}, but --task_dir holds {meta['task']!r}")
        if not 1 <= (L := args.target_len or c.get("target_len") or 0) < m.config.block_size:
            p.error(f"--target_len must be in [1, block_size {m.config.block_size}) for --{flag}, got {L}")
    cap = max(args.num_steps)  # our choice: thresholds stop by this many steps (--num_steps L: 1 token/step at least)
    runs = [("diffusion", S, None, f"diffusion, {S} steps") for S in args.num_steps]
    runs += [("threshold", cap, x, f"threshold {x}, <={cap} steps") for x in args.threshold or []]
    runs += [("AR", None, None, "AR, greedy")] if args.ar_ckpt else []
    metric, kw = evaluate.MAIN_METRIC[meta["metric"]], {"ks": [1]} if meta["metric"] == "pass@k" else {}
    s = describe(args, model, ("ckpt", "ar_ckpt", "task_dir", "split", "num_steps", "threshold", "num_outputs",
                               "target_len", *PAPER, "batch_size", "repeats", "warmup"))
    s.update(task=meta["task"], metric=metric, examples=len(rows), noise=ckpt["noise"], ar="greedy")
    passes, counts, points = [], [], []  # model calls since the last batch; (outputs, calls) of each batch
    hooks = [m.register_forward_hook(lambda *_: passes.append(1)) for m, _, _ in models.values()]

    def on_batch(batch, calls):
        counts.append((len(batch), len(passes)))
        passes.clear()
    for decoder, S, x, label in tqdm(runs, desc="settings", leave=False):
        m, t, c = models["AR" if decoder == "AR" else "diffusion"]
        ar = decoder == "AR"  # AR takes no diffusion setting
        e = argparse.Namespace(**{k: getattr(args, k) for k in ("num_outputs", "target_len", "batch_size", "seed",
                               "dtype", "device")}, **{k: None if ar else getattr(args, k) for k in ("num_samples",
                               "order", "schedule")}, num_steps=S, threshold=x, top_k=None,
                               temperature=None if ar else args.temperature)  # None: greedy

        def run():  # evaluate.py's decoder, as evaluate.py runs it
            passes.clear()
            counts.clear()
            return evaluate.predict(m, c, t, rows, e, on_batch)
        total, outs = timed(run, args.repeats, args.warmup, args.device)
        # AR: one call per token (the prefix pass gives the first); diffusion: one per step after the prefix pass
        calls = sum(n * (k - (decoder != "AR")) for n, k in counts) / sum(n for n, _ in counts)
        value = score(meta["metric"], rows, evaluate.to_metric_format(meta["metric"], outs[-1]), **kw)[metric]
        points.append(dict(decoder=decoder, num_steps=S, threshold=x, label=label, calls=calls,
                           latency_s=total / len(rows), total_s=total, metric=metric, value=value))
    for h in hooks:
        h.remove()
    print(f"# {args.ckpt} on {meta['task']} {args.split} ({len(rows)} examples), {s['device_name']}, {args.dtype}, "
          f"compile {args.compile}, batch {args.batch_size}, median of {args.repeats}\n# diffusion: {ckpt['noise']} "
          f"noise, temperature {args.temperature}, {args.num_samples} candidates; calls: model calls per output")
    print(f"{'decoder':<28}{'calls':>7}{'ms/example':>12}{metric:>10}")
    for q in points:
        print(f"{q['label']:<28}{q['calls']:>7.3g}{q['latency_s'] * 1e3:>12.2f}{q['value']:>10.2f}")
    if args.plot:  # metric vs latency per example, log x; each point named by its steps or threshold
        lines = []
        for decoder, name, style, key in [("diffusion", "diffusion (steps)", "o-", "num_steps"),
                                          ("AR", "AR, greedy", "k*", "decoder"),
                                          ("threshold", f"threshold (<={cap} steps)", "^--", "threshold")]:
            if pts := [q for q in points if q["decoder"] == decoder]:
                lines.append((name, [q["latency_s"] for q in pts], [q["value"] for q in pts], style,
                              [str(q[key]) for q in pts]))
        plot(args.plot, lines, xlabel="latency per example (s)", ylabel=f"{meta['task']} {metric}",
             title=f"{args.ckpt}, {s['device_name']}, {args.dtype}, batch {args.batch_size}")
    return dict(settings=s, points=points)


def main(argv=None):
    p, args = get_args(argv)
    mode = "compare" if args.compare else "quality" if args.quality else "generate"
    for modes, flags in MODES.items():
        if mode not in modes:
            reject(p, args, flags, f"{'to generate' if mode == 'generate' else 'with --' + mode} (only: "
                   f"{', '.join(modes)})")
    if args.ckpt:
        reject(p, args, RANDOM_FLAGS, "with --ckpt: the checkpoint fixes the model and tokenizer")
    elif mode != "compare":
        p.error("--ckpt is needed: --quality decodes a task with a diffusion checkpoint" if args.quality else
                "--ckpt is needed to generate (--compare times random weights)")
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # fail now, not after the sweep
        p.error("--plot needs matplotlib: pip install matplotlib")
    model, tok, ckpt = load(p, args, "ckpt", "diffusion" if args.quality else None)
    with torch.no_grad():
        if mode == "generate":
            return generate(p, args, model, tok, ckpt)
        result = compare(p, args, model, tok, ckpt) if args.compare else quality(p, args, model, tok, ckpt)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

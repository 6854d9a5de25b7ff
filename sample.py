r"""
Generate from a checkpoint as it was trained (AR, diffusion or block diffusion); time AR against full and block
diffusion decoding on one model's weights (the paper's Fig. 3, with a KV cache for AR and the prefix cache for
diffusion, DESIGN §3); or plot a task's metric against latency (the trade-off the paper left out).

Generate (diffusion.decode: flags left out take the paper's settings, §4.1; one the model does not take is an error):
    python sample.py --ckpt out/diff.pt --prompt "Translate English to French: Hello."
    python sample.py --ckpt out/diff.pt --prompt_file prompt.txt --num_steps 20 --num_outputs 3
    python sample.py --ckpt out/ar.pt --prompt "def add(a, b):" --temperature 0.8 --top_k 40

Speed (random weights of a preset, as timing does not depend on the weights, or --ckpt; every output has exactly
`length` tokens; --block_len K adds block diffusion, --num_steps steps per block of K tokens; --compile compiles both
sides alike, model.compile_for_decoding, and the "first s" column then holds the compilation):
    python sample.py --compare --preset tiny --tokenizer byte --lengths 64,128,256 \
        --num_steps 10,20,50 --threshold 0.9 --json out/speed.json --plot out/speed.png
    python sample.py --compare --preset tiny --lengths 64,128,256 --num_steps 2,4 --block_len 4,16 --plot out/block.png
    python sample.py --compare --preset gpt2 --tokenizer gpt2 --block_size 4112 --device cuda \
        --lengths 64,128,256,512,1024,2048,4096 --num_steps 10,20,50 --json out/gpt2.json --plot out/gpt2.png

Quality vs speed (a fine-tuned diffusion or block diffusion checkpoint and the AR one of its task; every setting
decodes the split with evaluate.predict, timed, and is scored with the task's metric):
    python sample.py --quality --ckpt DIFF.pt --ar_ckpt AR.pt --task_dir data/embedded/qa --split test \
        --limit 100 --num_steps 1,2,5,10,20 --threshold 0.5,0.7,0.9 --json out/quality.json --plot out/quality.png
"""
import argparse
import copy
import importlib.util
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

import evaluate
from data.common import FLOAT0, INT, INT0, atomic_write, flag_type, write_json
from data.loader import pad_batch
from data.tasks import load_split, load_task, score
from data.tokenizer import TOKENIZERS, get_tokenizer
from diffusion import MASK_ONLY, NOISES, ORDERS, PAPER, SCHEDULES, cut_at_eos, decode, diffusion_generate
from model import (COMPILE_MODES, PRESETS, GPT, GPTConfig, compile_for_decoding, load_checkpoint, make_generators,
                   model_from_checkpoint)

SAMPLER = ("top_k", "temperature", "num_samples", "order", "schedule", "num_steps", "threshold")  # decode()'s
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
COMPARE = ("preset", "tokenizer", "block_size", "noise", "lengths", "prompt_len")
QUALITY = ("ar_ckpt", "task_dir", "split", "limit")
UNUSED = {"generate": COMPARE + QUALITY + ("batch_size", "repeats", "warmup", "plot"),  # an error, not ignored
          "compare": QUALITY + ("prompt", "prompt_file", "top_k", "num_outputs", "target_len"),
          "quality": COMPARE + ("prompt", "prompt_file")}


INTS = flag_type(lambda s: [int(v) for v in s.split(",")], lambda v: min(v) >= 1, "must be integers >= 1")
PROBS = flag_type(lambda s: [float(v) for v in s.split(",")], lambda v: all(0 < x <= 1 for x in v), "must be in (0, 1]")
DEVICE = flag_type(torch.device, lambda d: d.type != "cuda" or torch.cuda.is_available(), "must be cpu or a CUDA device")


def get_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint (AR or diffusion; --quality: diffusion); needed to generate")
    prompt, mode = p.add_mutually_exclusive_group(), p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="prompt text, the prefix (default: none; EOS starts the text)")
    prompt.add_argument("--prompt_file", help="read the prompt from this file (one trailing newline dropped)")
    p.add_argument("--num_outputs", type=INT, help="outputs per prompt or example, each its own seed (default 1)")
    p.add_argument("--target_len", type=INT, help="output tokens (default: the ckpt's target_len, else 64)")
    p.add_argument("--temperature", type=FLOAT0, help="default: AR 0 (greedy), diffusion 0.2 (paper)")
    p.add_argument("--top_k", type=INT, help="AR sampling: keep the k likeliest tokens (default: all)")
    p.add_argument("--num_steps", "--steps", type=INTS, help="diffusion steps, per block (10; compare 10,20,50)")
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
    p.add_argument("--block_len", type=INTS, help="--compare: also time blocks of these K tokens (default: ckpt's)")
    p.add_argument("--lengths", type=INTS, help="--compare: output lengths (default 64,128,256)")
    p.add_argument("--prompt_len", type=INT, help="--compare: random prompt tokens (default 16)")
    p.add_argument("--ar_ckpt", help="--quality: the AR checkpoint of the same task, one more point")
    p.add_argument("--task_dir", help="--quality: prepared task folder (default: the ckpt's task)")
    p.add_argument("--split", help="--quality: split to decode (default test)")
    p.add_argument("--limit", type=INT0, help="--quality: only the first N examples (default 0 = all)")
    p.add_argument("--batch_size", type=INT, help="--compare / --quality: examples decoded together (default 1)")
    p.add_argument("--repeats", type=INT, help="timed runs; the median is kept (--compare 3, --quality 1)")
    p.add_argument("--warmup", type=INT0, help="untimed runs first (--quality: of the whole split) (default 1)")
    p.add_argument("--json", help="write the results (generate: the output texts) to this JSON file")
    p.add_argument("--plot", help="--compare / --quality: write a PNG plot of them (needs matplotlib)")
    p.add_argument("--seed", type=int, default=0, help="random seed (output i of a prompt uses seed + i)")
    p.add_argument("--device", type=DEVICE, default="cuda" if cuda else "cpu", help="cpu|cuda|cuda:N")
    p.add_argument("--dtype", choices=list(DTYPES), default="bfloat16" if cuda else "float32", help="weights, caches")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile (default: CUDA)")
    p.add_argument("--compile_mode", choices=COMPILE_MODES, help="torch.compile mode (default: torch's; "
                   "reduce-overhead: CUDA graphs)")
    return p, p.parse_args(argv)


def reject(p, args, flags, why):
    if given := [f"--{f}" for f in flags if getattr(args, f) is not None]:
        p.error(f"{', '.join(given)} cannot be used {why}")


def fill(args, **defaults):
    """Flags left out (None, so that reject() and decode() can tell) get this mode's defaults."""
    for k, v in defaults.items():
        setattr(args, k, v if getattr(args, k) is None else getattr(args, k))


def one(p, args, flag):
    """The one value of a list flag (None if left out): only --quality takes several."""
    if len(v := getattr(args, flag) or [None]) > 1:
        p.error(f"--{flag} takes one value without --quality")
    return v[0]


def load(p, args, flag="ckpt", objective=None):
    """(model, tokenizer, checkpoint or None) from --flag, else random weights of --preset; cast, compiled."""
    if getattr(args, flag) is None:  # --compare: random positions time like trained ones; block_size grows to fit
        tok, ckpt = get_tokenizer(args.tokenizer or "byte"), None
        config = GPTConfig.preset(args.preset or "tiny", vocab_size=tok.vocab_size)
        config.block_size = args.block_size or max(config.block_size, (args.prompt_len or 16) + max(args.lengths or [0]))
        torch.manual_seed(args.seed)
        model = GPT(config)
    else:
        try:
            ckpt = load_checkpoint(getattr(args, flag))
            tok, model = get_tokenizer(ckpt.get("tokenizer") or {}), model_from_checkpoint(ckpt)
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            p.error(f"--{flag} {getattr(args, flag)}: {e}")
        if objective and ckpt.get("objective") != objective:
            p.error(f"--{flag}: objective must be {objective} (--quality: --ckpt diffusion, --ar_ckpt AR), got "
                    f"{ckpt.get('objective')!r}")
    # Weights are cast once rather than autocast: decoding is bound by reading the weights, and
    # autocast would re-read and re-cast the float32 weights at every call (once per AR token).
    model.to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    args.compile = args.device.type == "cuda" if args.compile is None else args.compile
    if args.compile_mode and not args.compile:
        p.error("--compile_mode needs --compile (the default on CUDA only)")
    if args.compile:  # every forward, AR and diffusion alike: both sides of a comparison compiled
        compile_for_decoding(model, args.compile_mode)
    return model, tok, ckpt


def check_length(p, flag, n_prompt, length, block_size, hint=""):
    if n_prompt + length > block_size:
        p.error(f"{flag}: the prompt ({n_prompt} tokens) + {length} output tokens exceed the model's "
                f"block_size {block_size}{hint}")


def generate(p, args, model, tok, ckpt):
    """Decode --num_outputs outputs of the prompt as the checkpoint says; print them; returns their texts."""
    args.num_steps, args.threshold = one(p, args, "num_steps"), one(p, args, "threshold")
    fill(args, num_outputs=1, target_len=ckpt.get("target_len") or 64)
    try:
        text = Path(args.prompt_file).read_text("utf-8").removesuffix("\n") if args.prompt_file else args.prompt
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"--prompt_file: {e}")
    ids = (tok.encode(text) if text else []) or [tok.eos_id]  # no prompt: EOS, which ends documents
    check_length(p, "--target_len", len(ids), args.target_len, model.config.block_size)
    prefix, prefix_len = pad_batch([ids] * args.num_outputs, tok.eos_id, args.device)
    gens = make_generators([args.seed + i for i in range(args.num_outputs)], args.device)  # same for any B
    given = {k: getattr(args, k) for k in SAMPLER}  # None: decode's default (the paper's)
    try:
        out, scores, calls = decode(model, ckpt, prefix, prefix_len, args.target_len, tok, gens, **given)
    except ValueError as e:  # a setting this model does not take, named as its flag
        p.error(str(e))
    how = [f"{ckpt['noise']} noise", f"block_len {ckpt.get('block_len')}"] if ckpt["objective"] != "ar" else []
    print(f"# {args.ckpt}: {ckpt['objective']}, step {ckpt.get('step')}, " + ", ".join(how + [f"{k} {v}" for k, v in
          given.items() if v is not None] + [f"{args.target_len} tokens", f"seed {args.seed}", f"{calls} calls"]))
    texts = [tok.decode(row) for row in cut_at_eos(out, tok.eos_id)]
    for i, text in enumerate(texts):
        print(f"--- output {i}" + ("" if scores is None else f" (mean log-prob {scores[i]:.3f})") + " ---")
        print(text)
    return texts


def timed(fn, repeats, warmup, device):
    """(median seconds of `repeats` runs of fn(), their results, seconds of the very first run: with
    torch.compile, compilation included) after `warmup` untimed runs."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    times, results = [], []
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()  # CUDA kernels run asynchronously: wait for them before reading the clock
        times.append(time.perf_counter() - t0)
        if i >= warmup:
            results.append(out)
    return statistics.median(times[warmup:]), results, times[0]


def plot(path, lines, xticks=None, **axes):
    """A PNG of `lines` (label, x, y, style, a name per point or None), log x; matplotlib is imported here."""
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
    """Latency of AR, full and block diffusion on the same model and prefix, per length: rows {length, ar, diffusion:
    {S}, threshold: {S}, block: {"KxS"}} of {latency_s, calls, tokens_per_s, per_call_s, speedup (not AR)}."""
    trained = ckpt or {}
    if (args.noise or trained.get("noise")) == "uniform":
        reject(p, args, MASK_ONLY, "with uniform noise (mask noise only)")
    args.threshold = one(p, args, "threshold")
    fill(args, noise=trained.get("noise") or "mask", block_len=[trained["block_len"]] if trained.get("block_len")
         else [], lengths=[64, 128, 256], num_steps=[10, 20, 50], prompt_len=16, batch_size=1, repeats=3, warmup=1,
         num_samples=1, **{k: PAPER[k] for k in ("temperature", "order", "schedule")})  # one candidate per output
    check_length(p, "--lengths", args.prompt_len, max(args.lengths), model.config.block_size,
                 "" if ckpt else " (raise --block_size)")
    B, device, g = args.batch_size, args.device, torch.Generator().manual_seed(args.seed)
    prefix = torch.randint(tok.n_ordinary, (B, args.prompt_len), generator=g).to(device)  # content: no matter
    prefix_len = torch.full((B,), args.prompt_len, device=device)
    sampler = {k: getattr(args, k) for k in ("noise", "temperature", "num_samples", "order", "schedule")}
    s = describe(args, model, ("batch_size", "prompt_len", "lengths", "num_steps", "threshold", "block_len",
                               *sampler, "repeats", "warmup"))
    s.update(model=args.ckpt or args.preset or "tiny", tokenizer=tok.name, ar="KV cache, greedy", diffusion=
             f"prefix cache, {args.noise} noise, temperature {args.temperature}, {args.num_samples} candidate(s)")
    decoders = [("diffusion", str(S), f"diffusion, {S} steps", dict(num_steps=S)) for S in args.num_steps]
    decoders += [("threshold", str(S), f"threshold {args.threshold}, <={S} steps",
                  dict(num_steps=S, threshold=args.threshold)) for S in args.num_steps if args.threshold]
    decoders += [("block", f"{K}x{S}", f"block {K}, {S} steps/block", dict(num_steps=S, block_len=K))
                 for K in args.block_len for S in args.num_steps]
    # Every decoder does the work of `length` tokens. AR never produces EOS (nor any special id); block decoding
    # is told that EOS is [MASK], which is never produced, so no block ends an output early (the real EOS is then
    # an ordinary token); a full-diffusion canvas always holds `length` tokens anyway.
    no_eos = copy.copy(tok)
    no_eos.eos_id = tok.mask_id
    torch.manual_seed(args.seed)
    rows = []
    for L in tqdm(args.lengths, desc="lengths", leave=False):
        t_ar, outs, first = timed(lambda: model.generate(prefix, prefix_len, L, tok.eos_id, suppress_from=tok.eos_id,
                                                         return_calls=True), args.repeats, args.warmup, device)
        assert outs[-1][0].shape == (B, L) and not (outs[-1][0] == tok.eos_id).any()
        row = dict(length=L, ar=dict(latency_s=t_ar, first_s=first, calls=outs[-1][1]))
        for key, name, _, kw in decoders:
            t, outs, first = timed(lambda: diffusion_generate(model, prefix, prefix_len, L, no_eos, **sampler, **kw,
                                                              return_info=True), args.repeats, args.warmup, device)
            calls = statistics.mean(info["calls"] for _, _, info in outs)  # threshold: varies from run to run
            row.setdefault(key, {})[name] = dict(latency_s=t, first_s=first, calls=calls, speedup=t_ar / t)
        for c in [row["ar"]] + [row[key][name] for key, name, _, _ in decoders]:
            c.update(tokens_per_s=B * L / c["latency_s"], per_call_s=c["latency_s"] / c["calls"])
        rows.append(row)
    print(f"# {s['model']} ({s['n_params'] / 1e6:.2f}M params), {s['device_name']}, {s['dtype']}, compile "
          f"{s['compile']}, batch {B}, prompt {args.prompt_len}, median of {args.repeats}; AR: {s['ar']}; diffusion: "
          f"{s['diffusion']}\n# EOS never ends an output; calls: forward passes per output, the prefix pass included; "
          f"first s: the first (untimed) run{', compilation included' if args.compile else ''}")
    print(f"{'length':>6}  {'decoder':<26}{'calls':>7}{'latency ms':>12}{'tokens/s':>11}{'ms/call':>9}{'speedup':>9}"
          f"{'first s':>9}")
    for r in rows:
        for label, c in [("AR, KV cache", r["ar"])] + [(label, r[k][name]) for k, name, label, _ in decoders]:
            speedup = f"{c['speedup']:.2f}x" if "speedup" in c else ""
            print(f"{r['length']:>6}  {label:<26}{c['calls']:>7.4g}{c['latency_s'] * 1e3:>12.1f}"
                  f"{c['tokens_per_s']:>11.0f}{c['per_call_s'] * 1e3:>9.3f}{speedup:>9}{c['first_s']:>9.2f}")
    if args.plot:  # latency vs output length, log-log
        x, style = [r["length"] for r in rows], {"diffusion": "s-", "threshold": "^--", "block": "d:"}
        lines = [("AR, KV cache", x, [r["ar"]["latency_s"] for r in rows], "ko-", None)]
        lines += [(label, x, [r[key][name]["latency_s"] for r in rows], style[key], None)
                  for key, name, label, _ in decoders]
        plot(args.plot, lines, x, yscale="log", xlabel="output length (tokens)", ylabel="latency (s)",
             title=f"{s['model']}, {s['device_name']}, {s['dtype']}, batch {B}")
    return dict(settings=s, results=rows)


def quality(p, args, model, tok, ckpt):
    """Decode the split with every setting and --ar_ckpt through evaluate.predict, timed and scored; print the
    table, write --plot; returns {settings, points}."""
    fill(args, task_dir=(ckpt.get("task") or {}).get("folder"), num_steps=[1, 2, 5, 10, 20], split="test", limit=0,
         batch_size=1, repeats=1, warmup=1, num_outputs=1, temperature=PAPER["temperature"],
         num_samples=PAPER["num_samples"])  # order, schedule: decode's (a uniform-noise model takes neither)
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
    cap, K = max(args.num_steps), ckpt.get("block_len")  # our choice: thresholds stop by the largest --num_steps
    kind = f"block {K}" if K else "diffusion"

    def setting(S=None, x=None, ar=False):  # evaluate.predict's args: this setting; AR greedy, no sampler setting
        return argparse.Namespace(**{**vars(args), **dict.fromkeys(SAMPLER if ar else ()), "num_steps": S,
                                     "threshold": x})
    runs = [("diffusion", f"{kind}, {S} steps" + ("/block" if K else ""), setting(S)) for S in args.num_steps]
    runs += [("threshold", f"threshold {x}, <={cap} steps", setting(cap, x)) for x in args.threshold or []]
    runs += [("AR", "AR, greedy", setting(ar=True))] if args.ar_ckpt else []
    try:  # one example per kind of setting first: one that the model does not take fails now, not mid-sweep
        for decoder, e in {decoder: e for decoder, _, e in reversed(runs)}.items():
            m, t, c = models["AR" if decoder == "AR" else "diffusion"]
            evaluate.predict(m, c, t, rows[:1], e)
    except ValueError as e:
        p.error(str(e))
    metric, kw = evaluate.MAIN_METRIC[meta["metric"]], {"ks": [1]} if meta["metric"] == "pass@k" else {}
    s = describe(args, model, ("ckpt", "ar_ckpt", "task_dir", "split", "num_steps", "threshold", "num_outputs",
                               "target_len", "temperature", "num_samples", "order", "schedule", "batch_size", "repeats",
                               "warmup"))
    s.update(task=meta["task"], metric=metric, examples=len(rows), noise=ckpt["noise"], block_len=K, ar="greedy")
    points, counts = [], []  # (outputs, model calls) of each batch of the last run
    for decoder, label, e in tqdm(runs, desc="settings", leave=False):
        m, t, c = models["AR" if decoder == "AR" else "diffusion"]

        def run():  # evaluate.py's decoder, as evaluate.py runs it
            counts.clear()
            return evaluate.predict(m, c, t, rows, e, lambda batch, calls: counts.append((len(batch), calls)))
        total, outs, _ = timed(run, args.repeats, args.warmup, args.device)
        value = score(meta["metric"], rows, evaluate.to_metric_format(meta["metric"], outs[-1]), **kw)[metric]
        calls = sum(n * k for n, k in counts) / sum(n for n, _ in counts)  # per output, the prefix pass included
        points.append(dict(decoder=decoder, num_steps=e.num_steps, threshold=e.threshold, label=label, calls=calls,
                           latency_s=total / len(rows), total_s=total, metric=metric, value=value))
    print(f"# {args.ckpt} on {meta['task']} {args.split} ({len(rows)} examples), {s['device_name']}, {args.dtype}, "
          f"compile {args.compile}, batch {args.batch_size}, median of {args.repeats}\n# {kind}: {ckpt['noise']} noise,"
          f" temperature {args.temperature}, {args.num_samples} candidates; calls: forward passes per output")
    print(f"{'decoder':<28}{'calls':>7}{'ms/example':>12}{metric:>10}")
    for q in points:
        print(f"{q['label']:<28}{q['calls']:>7.3g}{q['latency_s'] * 1e3:>12.2f}{q['value']:>10.2f}")
    if args.plot:  # metric vs latency per example, log x; each point named by its steps or threshold
        curves = [("diffusion", f"{kind} (steps)", "o-", "num_steps"), ("AR", "AR, greedy", "k*", "decoder"),
                  ("threshold", f"threshold (<={cap} steps)", "^--", "threshold")]
        lines = [(name, [q["latency_s"] for q in pts], [q["value"] for q in pts], style, [str(q[key]) for q in pts])
                 for decoder, name, style, key in curves if (pts := [q for q in points if q["decoder"] == decoder])]
        plot(args.plot, lines, xlabel="latency per example (s)", ylabel=f"{meta['task']} {metric}",
             title=f"{args.ckpt}, {s['device_name']}, {args.dtype}, batch {args.batch_size}")
    return dict(settings=s, points=points)


def main(argv=None):
    p, args = get_args(argv)
    mode = "compare" if args.compare else "quality" if args.quality else "generate"
    reject(p, args, UNUSED[mode], "to generate" if mode == "generate" else f"with --{mode}")
    if args.ckpt:
        reject(p, args, ("preset", "tokenizer", "block_size"), "with --ckpt: the checkpoint fixes the model")
    elif mode != "compare":
        p.error(f"--ckpt is needed to {'decode a task' if args.quality else 'generate'} (--compare needs none)")
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # fail now, not after the sweep
        p.error("--plot needs matplotlib: pip install matplotlib")
    model, tok, ckpt = load(p, args, "ckpt", "diffusion" if args.quality else None)
    if args.block_len and not args.compare:
        p.error(f"--block_len cannot be used without --compare: the checkpoint fixes block_len ({ckpt.get('block_len')})")
    with torch.no_grad():
        result = dict(generate=generate, compare=compare, quality=quality)[mode](p, args, model, tok, ckpt)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

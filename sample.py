r"""
Generate from a checkpoint as it was trained (AR, diffusion or block diffusion), or time AR against full and
block diffusion decoding on one model's weights (the paper's Fig. 3, with a KV cache for AR and the prefix cache
for diffusion, DESIGN §3). A task metric against latency over decoding settings: runs/quality.py.

Generate (diffusion.decode: flags left out take the paper's settings, §4.1; one the model does not take is an error):
    python sample.py --ckpt out/diff.pt --prompt "Translate English to French: Hello."
    python sample.py --ckpt out/diff.pt --prompt_file prompt.txt --num_steps 20 --num_outputs 3
    python sample.py --ckpt out/ar.pt --prompt "def add(a, b):" --temperature 0.8 --top_k 40

Speed (`sample.py --compare --help`: its flags; random weights of a preset, as timing does not depend on them, or
--ckpt; every output has exactly `length` tokens; --block_len K adds block diffusion, --num_steps steps per block;
--compile compiles both sides alike, model.compile_for_decoding, and the "first s" column then holds compilation):
    python sample.py --compare --preset tiny --tokenizer byte --lengths 64,128,256 \
        --num_steps 10,20,50 --threshold 0.9 --json out/speed.json --plot out/speed.png
    python sample.py --compare --preset tiny --lengths 64,128,256 --num_steps 2,4 --block_len 4,16 --plot out/block.png
At gpt2 shape on a GPU, up to 4,096 tokens: runs/gpu_check.sh.
"""
import argparse
import copy
import importlib.util
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from data.common import FLOAT0, INT, atomic_write, flag_type, load_checkpoint, write_json
from data.loader import pad_batch
from data.tokenizer import TOKENIZERS, get_tokenizer
from diffusion import (MASK_ONLY, NOISES, ORDERS, PAPER, SCHEDULES, calls_per_token, cut_at_eos, decode,
                       diffusion_generate, output_lengths)
from model import COMPILE_MODES, PRESETS, GPT, GPTConfig, compile_for_decoding, make_generators, model_from_checkpoint

SAMPLER = ("top_k", "temperature", "num_samples", "order", "schedule", "num_steps", "threshold")  # decode()'s
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
INTS = flag_type(lambda s: [int(v) for v in s.split(",")], lambda v: min(v) >= 1, "must be integers >= 1")
PROB = flag_type(float, lambda v: 0 < v <= 1, "must be in (0, 1]")
PROBS = flag_type(lambda s: [float(v) for v in s.split(",")], lambda v: all(0 < x <= 1 for x in v), "must be in (0, 1]")
DEVICE = flag_type(torch.device, lambda d: d.type != "cuda" or torch.cuda.is_available(), "must be cpu or cuda[:N]")


def get_args(argv=None, timing=False, sweep=False):
    """(parser, argv) of one job. Generating: one value per sampler flag, None if unset (decode's default: the
    paper's); --compare (timing): lists of steps, lengths, block lengths; runs/quality.py (sweep) adds flags."""
    argv = sys.argv[1:] if argv is None else list(argv)
    timing = timing or "--compare" in argv
    cuda, many = torch.cuda.is_available(), timing or sweep
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if not sweep:
        p.add_argument("--compare", action="store_true", help="time AR vs diffusion decoding (--compare --help)")
    p.add_argument("--ckpt", help="checkpoint" + (" (default: random weights of --preset)" if timing else ""))
    p.add_argument("--temperature", type=FLOAT0, help="default: AR 0 (greedy), diffusion 0.2 (paper)")
    p.add_argument("--num_steps", "--steps", type=INTS if many else INT, help="diffusion steps, per block (default: "
                   + ("10,20,50" if timing else "1,2,5,10,20" if sweep else "10, the paper's") + ")")
    p.add_argument("--num_samples", type=INT, help=f"diffusion candidates reranked per output ({1 if timing else 8})")
    p.add_argument("--order", choices=ORDERS, help="mask noise: unmasking order (default confidence)")
    p.add_argument("--schedule", choices=SCHEDULES, help="mask noise: tokens per step (default linear)")
    p.add_argument("--threshold", type=PROBS if sweep else PROB, help="mask noise, adaptive: also unmask tokens "
                   "above this probability (default off)" + ("; a list, at most max(--num_steps)" if sweep else ""))
    if timing:
        p.add_argument("--preset", choices=list(PRESETS), help="random weights: shape (default tiny)")
        p.add_argument("--tokenizer", choices=TOKENIZERS, help="random weights (default byte)")
        p.add_argument("--block_size", type=INT, help="random weights (default: the preset's, or to fit)")
        p.add_argument("--noise", choices=NOISES, help="diffusion sampler (default: the ckpt's, or mask)")
        p.add_argument("--block_len", type=INTS, help="also time blocks of these K tokens (default: the ckpt's)")
        p.add_argument("--lengths", type=INTS, default=[64, 128, 256], help="output lengths")
        p.add_argument("--prompt_len", type=INT, default=16, help="random prompt tokens")
    elif not sweep:
        prompt = p.add_mutually_exclusive_group()
        prompt.add_argument("--prompt", help="prompt text, the prefix (default: none; EOS starts the text)")
        prompt.add_argument("--prompt_file", help="read the prompt from this file (one trailing newline dropped)")
        p.add_argument("--num_outputs", type=INT, default=1, help="outputs of the prompt, each its own seed")
        p.add_argument("--target_len", type=INT, help="output tokens (default: the ckpt's target_len, else 64)")
        p.add_argument("--top_k", type=INT, help="AR sampling: keep the k likeliest tokens (default: all)")
    if many:
        p.add_argument("--batch_size", type=INT, default=1, help="examples decoded together")
        p.add_argument("--repeats", type=INT, default=3 if timing else 1, help="timed runs; the median is kept")
        p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
        p.add_argument("--plot", help="write a PNG plot of the results (needs matplotlib)")
    p.add_argument("--json", help="write the results" + ("" if many else " (the output texts)") + " to this JSON file")
    p.add_argument("--seed", type=int, default=0, help="random seed" + ("" if many else " (output i: seed + i)"))
    p.add_argument("--device", type=DEVICE, default="cuda" if cuda else "cpu", help="cpu|cuda|cuda:N")
    p.add_argument("--dtype", choices=list(DTYPES), default="bfloat16" if cuda else "float32", help="weights, caches")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile (default: CUDA)")
    p.add_argument("--compile_mode", choices=COMPILE_MODES, help="torch.compile's (reduce-overhead: CUDA graphs)")
    return p, argv


def parse(p, argv, job):
    """Parse; a flag of another job is named with the help that lists this job's flags."""
    args, extra = p.parse_known_args(argv)
    if extra:
        p.error(f"{' '.join(extra)}: not a flag {job} (see --help)")
    if getattr(args, "plot", None) and importlib.util.find_spec("matplotlib") is None:  # fail now, not after the run
        p.error("--plot needs matplotlib: pip install matplotlib")
    return args


def load(p, args, flag="ckpt", objective=None):
    """(model, tokenizer, checkpoint or None) from --flag, else random weights of --preset; cast, compiled."""
    if getattr(args, flag) is None:  # --compare: random positions time like trained ones; block_size grows to fit
        tok, ckpt = get_tokenizer(args.tokenizer or "byte"), None
        config = GPTConfig.preset(args.preset or "tiny", vocab_size=tok.vocab_size)
        config.block_size = args.block_size or max(config.block_size, args.prompt_len + max(args.lengths))
        torch.manual_seed(args.seed)
        model = GPT(config)
    else:
        try:
            ckpt = load_checkpoint(getattr(args, flag))
            tok, model = get_tokenizer(ckpt.get("tokenizer") or {}), model_from_checkpoint(ckpt)
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            p.error(f"--{flag} {getattr(args, flag)}: {e}")
        if objective and ckpt.get("objective") != objective:
            p.error(f"--{flag}: objective must be {objective}, got {ckpt.get('objective')!r}")
    # Weights are cast once rather than autocast: decoding is bound by reading the weights, and
    # autocast would re-read and re-cast the float32 weights at every call (once per AR token).
    model.to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    args.compile = args.device.type == "cuda" if args.compile is None else args.compile
    if args.compile_mode and not args.compile:
        p.error("--compile_mode needs --compile (the default on CUDA only)")
    if args.compile:  # every forward, AR and diffusion alike: both sides of a comparison compiled
        compile_for_decoding(model, args.compile_mode)
    return model, tok, ckpt


def generate(p, args, model, tok, ckpt):
    """Decode --num_outputs outputs of the prompt as the checkpoint says; print them; returns their texts."""
    args.target_len = args.target_len or ckpt.get("target_len") or 64
    try:
        text = Path(args.prompt_file).read_text("utf-8").removesuffix("\n") if args.prompt_file else args.prompt
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"--prompt_file: {e}")
    ids = (tok.encode(text) if text else []) or [tok.eos_id]  # no prompt: EOS, which ends documents
    if len(ids) + args.target_len > (n := model.config.block_size):
        p.error(f"--target_len {args.target_len} + the prompt's {len(ids)} tokens exceed the model's block_size {n}")
    prefix, prefix_len = pad_batch([ids] * args.num_outputs, tok.eos_id, args.device)
    gens = make_generators([args.seed + i for i in range(args.num_outputs)], args.device)  # same for any B
    given = {k: getattr(args, k) for k in SAMPLER}  # None: decode's default (the paper's)
    try:
        out, scores, calls = decode(model, ckpt, prefix, prefix_len, args.target_len, tok, gens, **given)
    except ValueError as e:  # a setting this model does not take, named as its flag
        p.error(str(e))
    how = [f"{ckpt['noise']} noise", f"block_len {ckpt.get('block_len')}"] if ckpt["objective"] != "ar" else []
    per_token = calls_per_token(calls, output_lengths(out, tok.eos_id))  # calls: each output's, as if alone
    print(f"# {args.ckpt}: {ckpt['objective']}, step {ckpt.get('step')}, " + ", ".join(how + [f"{k} {v}" for k, v in
          given.items() if v is not None] + [f"{args.target_len} tokens", f"seed {args.seed}",
                                             f"{int(calls.max())} calls", f"{per_token:.3g} calls/token"]))
    texts = [tok.decode(row) for row in cut_at_eos(out, tok.eos_id)]
    for i, text in enumerate(texts):
        print(f"--- output {i}" + ("" if scores is None else f" (mean log-prob {scores[i]:.3f})") + f" ---\n{text}")
    return texts


def timed(fn, repeats, warmup, device):
    """(median seconds of `repeats` runs of fn() after `warmup` untimed ones, their results, the first's seconds)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    times, results = [], []
    for _ in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        results.append(fn())
        sync()  # CUDA kernels run asynchronously: wait for them before reading the clock
        times.append(time.perf_counter() - t0)
    return statistics.median(times[warmup:]), results[warmup:], times[0]


def plot(path, lines, xticks=None, **axes):
    """A PNG of `lines` (label, x, y, style, a name per point or None), log x; matplotlib is imported here."""
    import matplotlib.pyplot as plt
    plt.switch_backend("Agg")  # no display needed
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for label, x, y, style, names in lines:
        ax.plot(x, y, style, label=label, ms=14 if "*" in style else 6)
    ax.set(xscale="log", **axes)
    if xticks:
        ax.set_xticks(xticks, [str(v) for v in xticks])
        ax.set_xticks([], minor=True)
    fig.canvas.draw()  # the final limits: where each point lands on the page
    placed = []  # the names' boxes in points: each name takes the first offset whose box is free
    for label, x, y, style, names in lines:
        for xy, name in zip(zip(x, y), names or []):
            (px, py), w = ax.transData.transform(xy) * 72 / fig.dpi, 4.2 * len(name)
            for dx, dy in ((4, 4), (4, -11), (-w - 4, 4), (-w - 4, -11), (4, 14), (4, -21), (-w - 4, 14), (4, 4)):
                box = (px + dx, py + dy, px + dx + w, py + dy + 8)
                if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                    break
            placed.append(box)
            ax.annotate(name, xy, xytext=(dx, dy), textcoords="offset points", fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"), mode="wb")
    plt.close(fig)


def describe(args, model, keys):
    """`keys` of args and the settings that every timed point shares."""
    name = (torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else
            f"CPU {platform.machine()}, threads={torch.get_num_threads()}")
    return dict({k: getattr(args, k) for k in (*keys, "seed", "dtype", "compile")}, n_params=model.num_params(),
                config=asdict(model.config), device=str(args.device), torch=torch.__version__, device_name=name)


def compare(p, args, model, tok, ckpt):
    """Latency of AR, full and block diffusion on one model and prefix: rows {length, ar, diffusion: {S}, threshold:
    {S}, block: {"KxS"}} of {latency_s, first_s, calls, calls_per_token, tokens_per_s, per_call_s, speedup (not AR)}."""
    trained = ckpt or {}
    if ckpt and (given := [f"--{f}" for f in ("preset", "tokenizer", "block_size") if getattr(args, f)]):
        p.error(f"{', '.join(given)} cannot be used with --ckpt: the checkpoint fixes the model")
    args.noise = args.noise or trained.get("noise") or "mask"
    if args.noise == "uniform" and (given := [f"--{f}" for f in MASK_ONLY if getattr(args, f) is not None]):
        p.error(f"{', '.join(given)} cannot be used with uniform noise (mask noise only)")
    args.block_len = args.block_len or ([trained["block_len"]] if trained.get("block_len") else [])
    for k, default in dict(PAPER, num_steps=[10, 20, 50], num_samples=1).items():  # unless given: one candidate each
        setattr(args, k, default if getattr(args, k) is None else getattr(args, k))
    if args.prompt_len + max(args.lengths) > model.config.block_size:
        p.error(f"--lengths: --prompt_len {args.prompt_len} + {max(args.lengths)} output tokens exceed block_size "
                f"{model.config.block_size}" + ("" if ckpt else " (raise --block_size)"))
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
            c.update(tokens_per_s=B * L / c["latency_s"], per_call_s=c["latency_s"] / c["calls"],
                     calls_per_token=c["calls"] / L)  # every output has L tokens: diffusion.calls_per_token
        rows.append(row)
    print(f"# {s['model']} ({s['n_params'] / 1e6:.2f}M params), {s['device_name']}, {s['dtype']}, compile "
          f"{s['compile']}, batch {B}, prompt {args.prompt_len}, median of {args.repeats}; AR: {s['ar']}; diffusion: "
          f"{s['diffusion']}\n# EOS never ends an output; calls: forward passes per output, the prefix pass included, "
          f"calls/tok: per output token; first s: the first (untimed) run"
          f"{', compilation included' if args.compile else ''}")
    print(f"{'length':>6}  {'decoder':<26}{'calls':>7}{'calls/tok':>10}{'latency ms':>12}{'tokens/s':>11}{'ms/call':>9}"
          f"{'speedup':>9}{'first s':>9}")
    for r in rows:
        for label, c in [("AR, KV cache", r["ar"])] + [(label, r[k][name]) for k, name, label, _ in decoders]:
            speedup = f"{c['speedup']:.2f}x" if "speedup" in c else ""
            print(f"{r['length']:>6}  {label:<26}{c['calls']:>7.4g}{c['calls_per_token']:>10.3f}"
                  f"{c['latency_s'] * 1e3:>12.1f}{c['tokens_per_s']:>11.0f}{c['per_call_s'] * 1e3:>9.3f}{speedup:>9}"
                  f"{c['first_s']:>9.2f}")
    if args.plot:  # latency vs output length, log-log
        x, style = [r["length"] for r in rows], {"diffusion": "s-", "threshold": "^--", "block": "d:"}
        lines = [("AR, KV cache", x, [r["ar"]["latency_s"] for r in rows], "ko-", None)]
        lines += [(label, x, [r[key][name]["latency_s"] for r in rows], style[key], None)
                  for key, name, label, _ in decoders]
        plot(args.plot, lines, x, yscale="log", xlabel="output length (tokens)", ylabel="latency (s)",
             title=f"{s['model']}, {s['device_name']}, {s['dtype']}, batch {B}")
    return dict(settings=s, results=rows)


def main(argv=None):
    p, argv = get_args(argv)
    args = parse(p, argv, "for --compare" if "--compare" in argv else "for generating (--compare has its own)")
    if not args.ckpt and not args.compare:
        p.error("--ckpt is needed to generate (--compare needs none)")
    model, tok, ckpt = load(p, args)
    with torch.no_grad():
        result = (compare if args.compare else generate)(p, args, model, tok, ckpt)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

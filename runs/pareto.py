"""
The quality-against-latency front on a translation task (DESIGN §3): each model's decoding settings scored with
BLEU and length ratio (sacreBLEU, data/tasks.py, as evaluate.py scores), ms per sentence at batch 1 and at
batch 50, and model calls per sentence and per output token, with KV-cached AR greedy timed in the same run.

    python runs/pareto.py --ar_ckpt out/multi30k/finetune/ar/multi30k/best.pt \
        --models AR2Diff-block4_200=out/multi30k/finetune/ar2diff_block4_200/multi30k/best.pt \
        --split test --limit 500 --b1_limit 50 --json out/multi30k/pareto.json --plot out/multi30k/pareto.png \
        --summary runs/results/multi30k_summary.json --seed 1337

--settings: ';'-separated settings, each `[block:|full:]key=value,...` (or `paper`: decode's defaults, the paper's
§4.1); a `block:` one applies to block models only, `full:` to full-diffusion models only, one without a kind to
both. Keys: num_steps, num_samples, temperature, threshold, order, schedule; the rest are the paper's, except that a
threshold setting caps its steps at the block length and keeps one candidate unless told otherwise. rerank=ar: the
--ar_ckpt model picks among the candidates (diffusion.rerank: noisy parallel decoding; one model call more).
AR: greedy with the KV cache. A row is timed eager and torch.compile'd (model.compile_for_decoding: static cache
shapes) and keeps the faster per batch size (the same tokens, tests/test_compile.py): AR by --compile, the diffusion
rows by --diffusion_compile (off: eager only, which can only make diffusion look slower, never faster). Batch 1: the first --b1_limit sentences, each decoded alone by every setting in turn
(the order rotating), --repeats times; a sentence's time is its median, ms_b1 their mean. Batch 50: the whole split,
--batch_size sentences at a time, which gives the BLEU. Calls: what each sentence needs decoded alone, the prefix
pass included (diffusion.decode); per output token: diffusion.calls_per_token (EOS counted: AR makes 1).
"""
import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import evaluate  # noqa: E402
from data.common import INT, INT0, read_json, write_json  # noqa: E402
from data.loader import encode_task, pad_batch  # noqa: E402
from data.tasks import load_split, load_task, score  # noqa: E402
from diffusion import (MASK_ONLY, ORDERS, PAPER, SCHEDULES, calls_per_token, cut_at_eos, decode,  # noqa: E402
                       output_lengths)
from model import make_generators  # noqa: E402
from sample import DEVICE, DTYPES, load, plot  # noqa: E402

GRID = ";".join([*(f"block:threshold={x},temperature=0" for x in (0.5, 0.7, 0.9)), "block:paper",
                 *(f"full:num_steps={s}" for s in (1, 10))])
KEYS = dict(num_steps=int, num_samples=int, temperature=float, threshold=float, order=str, schedule=str, rerank=str)
VALID = dict(num_steps=lambda v: v >= 1, num_samples=lambda v: v >= 1, temperature=lambda v: v >= 0,
             threshold=lambda v: 0 < v <= 1, order=lambda v: v in ORDERS, schedule=lambda v: v in SCHEDULES,
             rerank=lambda v: v == "ar")


def parse_grid(text):
    """--settings -> [(kind or None, name, {key: value})]; ValueError names the bad part."""
    out = []
    for part in filter(None, (s.strip() for s in text.split(";"))):
        kind, _, body = part.rpartition(":")
        if kind not in ("", "block", "full"):
            raise ValueError(f"{part!r}: the kind must be block: or full:, got {kind!r}")
        kw = {}
        for pair in [] if body == "paper" else body.split(","):
            key, eq, value = pair.partition("=")
            if key not in KEYS or not eq:
                raise ValueError(f"{part!r}: expected key=value with a key of {list(KEYS)} (or 'paper'), got {pair!r}")
            try:
                kw[key] = KEYS[key](value)
            except ValueError:
                raise ValueError(f"{part!r}: {key} must be {KEYS[key].__name__}, got {value!r}") from None
            if not VALID[key](kw[key]):
                raise ValueError(f"{part!r}: {key} {value!r} is out of range")
        out.append((kind or None, body, kw))
    if not out:
        raise ValueError("no setting given")
    return out


def resolve(kw, ckpt, ar_model):
    """(decode's settings, every setting filled in: what the row records) of a grid entry on a checkpoint."""
    cap = dict(num_steps=ckpt.get("block_len") or PAPER["num_steps"], num_samples=1) if kw.get("threshold") else {}
    given = {**cap, **kw}
    record = {k: v for k, v in {**PAPER, **given}.items() if ckpt["noise"] == "mask" or k not in MASK_ONLY}
    if given.pop("rerank", None):
        given["reranker"] = ar_model
    return given, record


def decode_split(model, ckpt, tok, rows, setting, batch_size, device, seed=0):
    """Decode rows as evaluate.predict does (its seeds per example, one output each); returns ({id: text}, calls,
    output lengths (lists, per row), seconds spent in decode)."""
    L = ckpt["target_len"]
    examples = encode_task(tok, rows, L, model.config.block_size, ckpt["objective"])
    texts, calls, lengths, seconds = {}, [], [], 0.0
    for s in range(0, len(rows), batch_size):
        chunk = range(s, min(s + batch_size, len(rows)))
        prefix, prefix_len = pad_batch([examples[i][0] for i in chunk], tok.eos_id, device)
        gens = make_generators([evaluate.example_seed(seed, rows[i]["id"], 0) for i in chunk], device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        tokens, _, c = decode(model, ckpt, prefix, prefix_len, L, tok, gens, **setting)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        calls += c.tolist()
        lengths += output_lengths(tokens, tok.eos_id).tolist()
        for i, ids in zip(chunk, cut_at_eos(tokens, tok.eos_id)):
            texts[str(rows[i]["id"])] = " ".join(tok.decode(ids).split())  # evaluate.to_metric_format
    return texts, calls, lengths, seconds


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return platform.processor() or None


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ar_ckpt", required=True, help="the AR checkpoint of the task (greedy, KV cache)")
    p.add_argument("--models", required=True, help="NAME=PATH[,NAME=PATH...]: the diffusion checkpoints")
    p.add_argument("--data", help="task folder (default: the --ar_ckpt's fine-tuning task)")
    p.add_argument("--split", default="test", help="split to score")
    p.add_argument("--limit", type=INT0, default=0, help="only the first N sentences (0 = all)")
    p.add_argument("--b1_limit", type=INT0, default=50, help="batch-1 latency on the first M sentences (0: none)")
    p.add_argument("--settings", default=GRID, help="decoding settings (see above; default: %(default)s)")
    p.add_argument("--batch_size", type=INT, default=50, help="the serving batch: BLEU and ms_b50")
    p.add_argument("--repeats", type=INT, default=3, help="batch-1 timings per sentence and setting (median)")
    p.add_argument("--compile", choices=("best", "on", "off"), default="best",
                   help="AR timed eager and compiled, the faster kept per batch size (best), or one of them")
    p.add_argument("--diffusion_compile", choices=("best", "on", "off"), default="best",
                   help="the same for every diffusion model")
    p.add_argument("--threads", type=INT, help="torch threads for every model (default: torch's)")
    p.add_argument("--sample_seed", type=int, default=0, help="sampling seed (evaluate.py's --seed)")
    p.add_argument("--json", help="write the rows and the machine to this JSON file")
    p.add_argument("--plot", help="BLEU against ms per sentence, batch 1 and batch 50 (PNG, needs matplotlib)")
    p.add_argument("--summary", help="merge the rows into this {seeds: {seed: {row: ...}}} JSON (needs --seed)")
    p.add_argument("--seed", help="the pipeline seed the rows are filed under in --summary")
    p.add_argument("--device", type=DEVICE, default="cpu", help="cpu|cuda[:N]")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help="weights and caches")
    return p, p.parse_args(argv)


def main(argv=None):
    p, args = get_args(argv)
    if args.summary and args.seed is None:
        p.error("--summary needs --seed (the pipeline seed its rows are filed under)")
    if args.plot:
        import importlib.util
        if importlib.util.find_spec("matplotlib") is None:
            p.error("--plot needs matplotlib: pip install matplotlib")
    try:
        grid = parse_grid(args.settings)
    except ValueError as e:
        p.error(f"--settings: {e}")
    named = [m.partition("=") for m in args.models.split(",") if m]
    if not named or any(not n or not eq or not path for n, eq, path in named) or len({n for n, _, _ in named}) < len(
            named) or "AR" in {n for n, _, _ in named}:
        p.error(f"--models must be NAME=PATH[,NAME=PATH...] with distinct names other than AR, got {args.models!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    base = argparse.Namespace(device=args.device, dtype=args.dtype, compile=False, compile_mode=None)
    ar = load(p, argparse.Namespace(**vars(base), ar_ckpt=args.ar_ckpt), "ar_ckpt", "ar")
    models = {n: load(p, argparse.Namespace(**vars(base), models=path), "models", "diffusion") for n, _, path in named}
    args.data = args.data or (ar[2].get("task") or {}).get("folder")
    if not args.data:
        p.error("--data is needed: --ar_ckpt records no fine-tuning task")
    try:
        meta, rows = load_task(args.data), load_split(args.data, args.split)[: args.limit or None]
    except (OSError, ValueError) as e:
        p.error(f"--data / --split: {e}")
    if meta["metric"] != "bleu":
        p.error(f"--data {args.data}: the front is BLEU, but the task's metric is {meta['metric']!r}")
    for (flag, name), (_, _, c) in zip([("ar_ckpt", "AR")] + [("models", n) for n in models], [ar, *models.values()]):
        if (task := (c.get("task") or {}).get("name")) not in (None, meta["task"]):
            p.error(f"--{flag} {name} was fine-tuned on task {task!r}, but --data holds {meta['task']!r}")
        if not c.get("target_len"):
            p.error(f"--{flag} {name}: the checkpoint records no target_len")
    # every (row name, model name, (model, tokenizer, checkpoint), decode's settings, the row's settings)
    entries, paths = [], dict(AR=args.ar_ckpt, **{n: path for n, _, path in named})
    for name, (m, tok, c) in models.items():
        kind = "block" if c.get("block_len") else "full"
        entries += [(f"{name} {text}", name, (m, tok, c), *resolve(kw, c, ar[0])) for k, text, kw in grid
                    if k in (None, kind)]
    if not entries:
        p.error(f"--settings: no setting applies to the --models (block models take block: and kind-less ones, "
                f"full-diffusion models full: and kind-less ones)")
    try:  # a setting the model does not take (e.g. a threshold on uniform noise) fails now, naming the flag
        for _, name, (m, tok, c), kw, _ in entries:
            decode_split(m, c, tok, rows[:1], kw, 1, args.device)
    except ValueError as e:
        p.error(f"--settings: {e} (model {name})")
    variants = {"off": [False], "on": [True], "best": [False, True]}
    compiled_copy = {}  # one compiled copy of each model, shared by its settings

    def flavour(row, name, loaded, kw, setting, compiled):  # a row as decoded eager or compiled
        if compiled and name not in compiled_copy:
            compiled_copy[name] = compiled_model(p, base, paths[name], loaded)
        return (row + " (compiled)" if compiled else row, name, compiled_copy[name] if compiled else loaded, kw,
                dict(setting, compiled=compiled))

    ars = [flavour("AR", "AR", ar, {}, dict(decoder="greedy, KV cache"), c) for c in variants[args.compile]]
    dv = variants[args.diffusion_compile]
    groups = {"AR": [r for r, *_ in ars], **{e[0]: [e[0] + " (compiled)" * c for c in dv] for e in entries}}
    entries = [flavour(*e, c) for e in entries for c in dv]
    results = {}
    with torch.no_grad():
        for row, name, (m, tok, c), kw, setting in tqdm(ars + entries, desc=f"batch {args.batch_size}", leave=False):
            if setting.get("compiled"):  # compile every batch shape first, untimed
                decode_split(m, c, tok, rows, kw, args.batch_size, args.device, args.sample_seed)
            texts, calls, lengths, seconds = decode_split(m, c, tok, rows, kw, args.batch_size, args.device,
                                                          args.sample_seed)
            s = score("bleu", rows, texts)
            results[row] = dict(name=row, model=name, setting=setting, bleu=s["bleu"], length_ratio=s["length_ratio"],
                                ms_b50=1e3 * seconds / len(rows), calls_per_sentence=statistics.mean(calls),
                                calls_per_token=calls_per_token(calls, lengths), n=len(rows),
                                distilled=distilled(c), ckpt=paths[name])
        b1 = time_batch1(ars + entries, rows[: args.b1_limit], args)
    for row, ms in b1.items():
        results[row]["ms_b1"] = ms
    out = pick(results, groups)
    machine = dict(torch_threads=torch.get_num_threads(), cpu=cpu_name(), platform=platform.platform(),
                   torch=torch.__version__, device=str(args.device), dtype=args.dtype,
                   device_name=torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else None)
    result = dict(rows=out, machine=machine, task=meta["task"], split=args.split, data=args.data,
                  settings=dict(batch_size=args.batch_size, b1_limit=min(args.b1_limit, len(rows)),
                                repeats=args.repeats, compile=args.compile, diffusion_compile=args.diffusion_compile,
                                grid=args.settings,
                                sample_seed=args.sample_seed))
    print_table(result)
    if args.json:
        write_json(args.json, result)
    if args.plot:
        draw(args.plot, out, result)
    if args.summary:
        merge_summary(p, args.summary, str(args.seed), out)
    return result


def compiled_model(p, base, path, loaded):
    """A second copy of a model, compiled for decoding (sample.load, as sample.py --compile does)."""
    flag, objective = ("ar_ckpt", "ar") if loaded[2]["objective"] == "ar" else ("models", "diffusion")
    return load(p, argparse.Namespace(**{**vars(base), "compile": True}, **{flag: path}), flag, objective)


def distilled(ckpt):
    """Whether the checkpoint was fine-tuned on a distilled task folder (its meta.json says "distilled")."""
    folder = (ckpt.get("task") or {}).get("folder")
    path = os.path.join(folder, "meta.json") if folder else None
    return bool(path and os.path.exists(path) and read_json(path).get("distilled"))


def time_batch1(entries, rows, args):
    """{row: ms per sentence at batch 1}: sentence by sentence, every entry in turn (rotating), args.repeats
    rounds; each sentence's median, then their mean. Interleaving gives every entry the same machine state."""
    if not rows:
        return {}
    for _, _, (m, tok, c), kw, _ in entries:  # warm up (and compile) on the first sentence, untimed
        decode_split(m, c, tok, rows[:1], kw, 1, args.device, args.sample_seed)
    times = {e[0]: [[] for _ in rows] for e in entries}
    for i in tqdm(range(len(rows)), desc="batch 1", leave=False):
        for r in range(args.repeats):
            k = (i * args.repeats + r) % len(entries)
            for row, _, (m, tok, c), kw, _ in entries[k:] + entries[:k]:
                times[row][i].append(decode_split(m, c, tok, rows[i: i + 1], kw, 1, args.device, args.sample_seed)[3])
    return {row: 1e3 * statistics.mean(statistics.median(t) for t in ts) for row, ts in times.items()}


def pick(results, groups):
    """One row per group {row: [its eager and compiled variants]}: per batch size the faster variant's time (the
    same tokens: tests/test_compile.py); the setting records which and both times."""
    out = []
    for row, names in groups.items():
        variants = [results[n] for n in names]
        best = dict(variants[0], name=row, setting={k: v for k, v in variants[0]["setting"].items() if k != "compiled"})
        for key in ("ms_b1", "ms_b50"):
            if key in variants[0]:
                fast = min(variants, key=lambda r: r[key])
                best[key] = fast[key]
                best["setting"][f"compiled_{key[3:]}"] = fast["setting"]["compiled"]
                best["setting"][f"{key}_eager_compiled"] = [r[key] for r in variants] if len(variants) > 1 else None
        out.append(best)
    return out


def print_table(result):
    m = result["machine"]
    print(f"# {result['task']} {result['split']}: {result['rows'][0]['n']} sentences (batch "
          f"{result['settings']['batch_size']}), batch 1 on the first {result['settings']['b1_limit']} (median of "
          f"{result['settings']['repeats']}); {m['cpu']}, {m['torch_threads']} threads, {m['dtype']}")
    print(f"{'row':<48}{'BLEU':>7}{'len':>6}{'ms b1':>9}{'ms b50':>9}{'calls':>8}{'calls/tok':>10}")
    for r in result["rows"]:
        b1 = f"{r['ms_b1']:.1f}" if "ms_b1" in r else "-"
        print(f"{r['name']:<48}{r['bleu']:>7.2f}{r['length_ratio']:>6.2f}{b1:>9}{r['ms_b50']:>9.2f}"
              f"{r['calls_per_sentence']:>8.2f}{r['calls_per_token']:>10.3f}")


def draw(path, rows, result):
    """BLEU against ms per sentence (log x): each model a line per batch size, AR a star (sample.plot); batch-1
    points named by their setting (short)."""
    lines = []
    for key, batch, style in (("ms_b1", 1, "o-"), ("ms_b50", result["settings"]["batch_size"], "s--")):
        for model in dict.fromkeys(r["model"] for r in rows):
            pts = sorted((r for r in rows if r["model"] == model and key in r), key=lambda r: r[key])
            if pts:
                lines.append((f"{model}, batch {batch}", [r[key] for r in pts], [r["bleu"] for r in pts],
                              ("k*" if batch == 1 else "kP") if model == "AR" else style,
                              [short(r["name"][len(model) + 1:]) for r in pts] if batch == 1 else None))
    m = result["machine"]
    plot(path, lines, xlabel="ms per sentence", ylabel=f"{result['task']} {result['split']} BLEU",
         title=f"{result['task']}: quality against latency ({m['cpu']}, {m['torch_threads']} threads)")


def short(text):
    """A grid entry as a point's label: threshold=0.9,temperature=0 -> t0.9,T0."""
    for long, brief in (("threshold=", "t"), ("temperature=", "T"), ("num_steps=", "S"), ("num_samples=", "n"),
                        ("rerank=ar", "AR rerank")):
        text = text.replace(long, brief)
    return text


def merge_summary(p, path, seed, rows):
    """Rows into {"seeds": {seed: {row: {...}}}} at `path`, other seeds and rows kept; written atomically."""
    try:
        data = read_json(path) if os.path.exists(path) else {}
    except (OSError, ValueError) as e:
        p.error(f"--summary {path}: {e}")
    if not isinstance(data, dict) or not isinstance(data.setdefault("seeds", {}), dict):
        p.error(f"--summary {path}: not a {{\"seeds\": {{...}}}} summary")
    keep = ("bleu", "length_ratio", "ms_b1", "ms_b50", "calls_per_token", "distilled")
    data["seeds"].setdefault(seed, {}).update({r["name"]: {k: r.get(k) for k in keep} for r in rows})
    write_json(path, data)


if __name__ == "__main__":
    main()

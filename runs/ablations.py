"""
Collect runs of runs/tiny.sh (+ runs/tiny_ablations.sh), or of runs/multi30k.sh (+
runs/multi30k_ablations.sh), one per seed, into one table per finding with every seed's number, so that
a reading is stated only where it holds at every seed.

    python runs/ablations.py --runs out/tiny_s1337 out/tiny_s9173 out/tiny_s4242 \
        --adapt_steps 100 --block_len 4 --candidates 1,4,8,16 --out runs/results/tiny_seeds/ablations
    python runs/ablations.py --runs out/multi30k_s1337 out/multi30k_s9173 --tasks multi30k --candidates "" \
        --adapt_steps 200 --out runs/results/multi30k_ablations/ablations

It reads each run's finetune/<model>/<task>/eval/metrics.json (evaluate.py), the reranking sweep's
finetune/<model>/<first task>/eval_samples<S>/metrics.json, and pretrain/<model>/best.json; it writes
<out>.json and <out>.md.
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from data.common import atomic_write, write_json  # noqa: E402
from evaluate import MAIN_METRIC  # noqa: E402

NAMES = {"bleu": "BLEU", "f1": "F1", "pass@1": "pass@1"}


def load(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None):
    p = argparse.ArgumentParser(description="Per-seed tables of the tiny runs and their ablations.")
    p.add_argument("--runs", nargs="+", required=True, help="output folders of runs/tiny.sh, one per seed")
    p.add_argument("--adapt_steps", type=int, default=100, help="N of the AR2Diff_N rows")
    p.add_argument("--block_len", type=int, default=4, help="K of the AR2Diff-blockK_N row")
    p.add_argument("--tasks", default="translation,qa,code", help="the tasks' folder names (columns)")
    p.add_argument("--candidates", default="1,4,8,16", help="numbers of candidates of the reranking sweep, on "
                   "the first task ('' for none)")
    p.add_argument("--results", nargs="+", help="one results.json (runs/report.py) per run: rows its folder "
                   "lacks are read from it (e.g. a committed report of the run that trained the same AR model)")
    p.add_argument("--seconds", type=float, default=None, help="wall time of the ablation recipe (one run)")
    p.add_argument("--out", required=True, help="writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    N, K = args.adapt_steps, args.block_len
    rows = {"AR": "ar", "diffusion": "diffusion", "AR2Diff_0": "ar2diff_0", f"AR2Diff_{N}": f"ar2diff_{N}",
            f"AR2Diff-block{K}_{N}": f"ar2diff_block{K}_{N}", f"AR2Diff_{N} (uniform)": f"ar2diff_uniform_{N}",
            # runs/multi30k.sh's rows fine-tuned on the AR model's distilled train set (runs/distill.py)
            "diffusion (distilled)": "diffusion_distilled",
            f"AR2Diff-block{K}_{N} (distilled)": f"ar2diff_block{K}_{N}_distilled"}
    sweep = {"diffusion": "diffusion", f"AR2Diff_{N}": f"ar2diff_{N}", f"AR2Diff-block{K}_{N}": f"ar2diff_block{K}_{N}"}
    TASKS = tuple(t for t in args.tasks.split(",") if t)
    counts = sorted(int(s) for s in args.candidates.split(",") if s)
    seeds, scores, reranking, adapt_loss, metric = [], {}, {}, {}, {}
    if args.results and len(args.results) != len(args.runs):
        p.error(f"--results: one results.json per --runs folder ({len(args.runs)}), got {len(args.results)}")
    taken, same_ar, decoding = [], {}, {}  # taken: (seed, row, results.json) of each row read from a report
    for i, run in enumerate(args.runs):
        report = load(args.results[i]) if args.results else None
        if args.results and report is None:
            p.error(f"--results: {args.results[i]} does not exist")
        data = load(os.path.join(run, "data", TASKS[0], "meta.json")) or {}  # the generator's seed
        ar = load(os.path.join(run, "pretrain", "ar", "best.json")) or {}  # else the pipeline's
        seed = str(data.get("seed", ar.get("args", {}).get("seed", run)))
        seeds.append(seed)
        if report and ar:  # rows from a report pair with this folder's rows only if the AR model is the same
            theirs = report["pretrain"].get("AR", {}).get("val_loss")
            same_ar[seed] = (theirs, ar.get("val_loss"), theirs == ar.get("val_loss"))
        for row, folder in rows.items():
            for task in TASKS:
                m = load(os.path.join(run, "finetune", folder, task, "eval", "metrics.json"))
                if m is None and report and task in report["results"].get(row, {}):
                    m = report["results"][row][task]
                    taken.append((seed, row, args.results[i]))
                if m is not None:
                    metric[task] = MAIN_METRIC[m["metric"]]
                scores.setdefault(row, {}).setdefault(task, []).append(
                    None if m is None else m[MAIN_METRIC[m["metric"]]])
                decoding.setdefault(row, {}).setdefault(task, []).append(None if m is None else dict(
                    ms=1e3 * m["decode_seconds"] / m["examples"] if m.get("examples") else None,
                    length_ratio=m.get("length_ratio")))
            side = load(os.path.join(run, "pretrain", folder.removesuffix("_distilled"), "best.json"))
            if side is None and report:
                side = report["pretrain"].get(row)
            adapt_loss.setdefault(row, []).append(None if side is None else side.get("val_loss"))
        for row, folder in sweep.items() if counts else ():
            for S in counts:
                m = load(os.path.join(run, "finetune", folder, TASKS[0], f"eval_samples{S}", "metrics.json"))
                reranking.setdefault(row, {}).setdefault(S, []).append(None if m is None else m["bleu"])
    speed = {seed: load(os.path.join(run, "speed_block.json")) for seed, run in zip(seeds, args.runs)}
    out = dict(seeds=seeds, tasks=TASKS, metric=metric, rows=rows, scores=scores, reranking=reranking,
               pretrain_val_loss=adapt_loss, decoding=decoding, seconds=args.seconds, speed=speed,
               taken_from_results=taken, same_ar_model=same_ar)
    write_json(args.out + ".json", out)

    def cell(values):
        got = [v for v in values if v is not None]
        if not got:
            return "–"
        spread = f" (mean {statistics.mean(got):.1f})" if len(got) > 1 else ""
        return " / ".join("–" if v is None else f"{v:.1f}" for v in values) + spread

    sources = sorted({(row, path) for _, row, path in taken})
    lines = [f"Seeds: {', '.join(map(str, seeds))} (each cell: one number per seed, in this order)."]
    lines += [f"Read from {path}: {', '.join(r for r, q in sources if q == path)}." for path in dict.fromkeys(
        q for _, q in sources)]
    lines += [f"Seed {seed}: the AR model of the report and of the run folder "
              f"{'are the same' if same else 'DIFFER'} (best validation loss {a!r} / {b!r})."
              for seed, (a, b, same) in same_ar.items()]
    lines += ["", "| model | " + " | ".join(f"{t} ({NAMES.get(metric.get(t), metric.get(t))})" for t in TASKS) + " |",
              "|---" * (len(TASKS) + 1) + "|"]
    shown = [row for row in rows if any(v is not None for t in TASKS for v in scores[row][t])]
    lines += [f"| {row} | " + " | ".join(cell(scores[row][t]) for t in TASKS) + " |" for row in shown]
    fmt = lambda d, key, f: "–" if d is None or d.get(key) is None else f.format(d[key])  # noqa: E731
    lines += ["", "Decoding: ms per test example (evaluate.py's decode_seconds / examples; the load of the machine "
              "while it ran is not recorded) and the output/reference length ratio (BLEU tasks).", "",
              "| model | " + " | ".join(f"{t}: ms | {t}: length ratio" for t in TASKS) + " |",
              "|---" * (2 * len(TASKS) + 1) + "|"]
    lines += [f"| {row} | " + " | ".join(" / ".join(fmt(d, "ms", "{:.0f}") for d in decoding[row][t]) + " | " +
                                        " / ".join(fmt(d, "length_ratio", "{:.2f}") for d in decoding[row][t])
                                        for t in TASKS) + " |" for row in shown]
    if counts:
        lines += ["", f"Reranking: {TASKS[0]} {NAMES.get(metric.get(TASKS[0]))} at 10 steps with S candidates per "
                  "example.", "", "| model | " + " | ".join(f"S = {S}" for S in counts) + " |",
                  "|---" * (len(counts) + 1) + "|"]
        lines += [f"| {row} | " + " | ".join(cell(reranking[row][S]) for S in counts) + " |" for row in sweep]
    losses = {row: v for row, v in adapt_loss.items()  # a distilled row's pretraining is its model's
              if any(x is not None for x in v) and not row.endswith(" (distilled)")}
    lines += ["", "Best validation loss of pretraining or adaptation (nats per token; AR: next-token NLL, the "
              "others: their diffusion loss, a bound on the NLL):", "", "| model | val loss |", "|---|---|"]
    lines += [f"| {row} | " + " / ".join("–" if x is None else f"{x:.3f}" for x in v) + " |"
              for row, v in losses.items()]
    for seed, sp in speed.items():
        if sp:
            lines += ["", f"Decoding speed (seed {seed}'s block model; ms per output, speedup over AR):", ""] + \
                speed_table(sp)
    lines += ["", "Reading (a claim is made only where it holds at every seed):", ""] + \
        reading(scores, reranking, rows, counts, N, K, len(seeds), TASKS)
    text = "\n".join(lines) + "\n"
    atomic_write(args.out + ".md", lambda f: f.write(text))
    print(text)
    return out


def speed_table(speed):
    """Latency (ms) and speedup over AR of every timed decoder, one row per output length."""
    rows = speed["results"]
    cols = [(kind, k) for kind in ("diffusion", "block") for k in rows[0].get(kind) or {}]
    s = speed["settings"]
    out = [f"{s.get('device_name')}, batch {s.get('batch_size')}, {s.get('num_samples')} candidate(s), median of "
           f"{s.get('repeats')}; block KxS: blocks of K tokens, S steps per block.", "",
           "| tokens | AR | " + " | ".join(f"{kind} {k}" for kind, k in cols) + " |", "|---" * (2 + len(cols)) + "|"]
    for r in rows:
        out.append(f"| {r['length']} | {r['ar']['latency_s'] * 1e3:.0f} | " + " | ".join(
            f"{r[kind][k]['latency_s'] * 1e3:.0f} ({r[kind][k]['speedup']:.2f}x)" for kind, k in cols) + " |")
    return out


def reading(scores, reranking, rows, counts, N, K, n_seeds, TASKS):
    out = []
    full, block, uniform = f"AR2Diff_{N}", f"AR2Diff-block{K}_{N}", f"AR2Diff_{N} (uniform)"
    for a, b, what in ((block, full, f"block (K = {K}) against full conversion"),
                       (full, uniform, "mask against uniform noise"),
                       (block, "diffusion", f"AR2Diff-block{K}_{N} against diffusion from scratch"),
                       (f"{block} (distilled)", block, f"AR2Diff-block{K}_{N} distilled against real references"),
                       (f"{block} (distilled)", "diffusion (distilled)",
                        f"AR2Diff-block{K}_{N} against diffusion from scratch, both distilled")):
        text = []
        for t in TASKS:
            pairs = [(x, y) for x, y in zip(scores[a][t], scores[b][t]) if None not in (x, y)]
            if pairs:
                text.append(f"{t}: {a} ahead at {sum(x > y for x, y in pairs)} of {len(pairs)} seeds, behind at "
                            f"{sum(x < y for x, y in pairs)}")
        if text:
            out.append(f"- {what}: {'; '.join(text)}.")
    for row in reranking:
        one, best = reranking[row][counts[0]], [max((reranking[row][S][i] for S in counts[1:]
                                                     if reranking[row][S][i] is not None), default=None)
                                                for i in range(n_seeds)]
        pairs = [(o, b) for o, b in zip(one, best) if None not in (o, b)]
        if pairs:
            out.append(f"- more candidates than {counts[0]} help {row}: at {sum(b > o for o, b in pairs)} of "
                       f"{len(pairs)} seeds (the best of S = {', '.join(map(str, counts[1:]))} above S = {counts[0]}).")
    return out


if __name__ == "__main__":
    main()

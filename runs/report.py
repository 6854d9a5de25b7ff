"""
Collect a pipeline run (runs/tiny.sh, runs/small_gpu.sh) into results.json and report.md.

    python runs/report.py --out out/tiny --models AR=ar,diffusion=diffusion,AR2Diff_0=ar2diff_0,AR2Diff_200=ar2diff_200 \
        --tasks translation,qa,code --seconds 512

It reads <out>/finetune/<model>/<task>/eval/metrics.json (evaluate.py), the pretraining checkpoints'
sidecars (<out>/pretrain/<model>/best.json), the tasks' meta.json (trivial baselines), and
<out>/speed.json (sample.py --compare). The "reading" compares this run with the paper's findings by
fixed rules, so it says what the numbers say, whichever way they go.
"""
import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from data.common import read_json, write_json  # noqa: E402
from evaluate import MAIN_METRIC, markdown_table  # noqa: E402

# Table 2 of the paper (Base size): WMT14 En-Fr BLEU / SQuAD F1 / MBPP Pass@80
PAPER = {"AR": (33.3, 68.1, 5.5), "diffusion": (29.8, 77.4, 12.2), "AR2Diff_0": (29.6, 64.8, 1.1),
         "AR2Diff_10K": (29.4, 68.1, 4.4), "AR2Diff_100K": (29.9, 71.9, 7.7)}


def load(path):
    return read_json(path) if os.path.exists(path) else None


def main():
    p = argparse.ArgumentParser(description="Write results.json and report.md for a pipeline run.")
    p.add_argument("--out", required=True, help="the run's output folder")
    p.add_argument("--models", required=True, help="comma-separated ROW=folder under <out>/finetune")
    p.add_argument("--tasks", required=True, help="comma-separated task folders under <out>/data")
    p.add_argument("--data", default=None, help="task data folder (default: <out>/data)")
    p.add_argument("--seconds", type=float, default=None, help="wall time of the whole run")
    p.add_argument("--title", default="AR2Diff on the embedded default", help="report title")
    p.add_argument("--settings", default="", help="free text: the recipe's settings, for the report")
    args = p.parse_args()
    models = dict(m.split("=") for m in args.models.split(","))
    tasks = args.tasks.split(",")
    data = args.data or os.path.join(args.out, "data")

    results, pretrain, missing = {}, {}, []
    for row, folder in models.items():
        for task in tasks:
            m = load(os.path.join(args.out, "finetune", folder, task, "eval", "metrics.json"))
            if m is None:
                missing.append(f"{row}/{task}")
                continue
            results.setdefault(row, {})[task] = m
        side = load(os.path.join(args.out, "pretrain", folder, "best.json"))
        if side:
            pretrain[row] = dict(step=side.get("step"), val_loss=side.get("val_loss"),
                                 objective=side.get("objective"), noise=side.get("noise"))
    metas = {t: load(os.path.join(data, t, "meta.json")) or {} for t in tasks}
    speed = load(os.path.join(args.out, "speed.json"))
    out = dict(results=results, pretrain=pretrain, baselines={t: metas[t].get("baselines") for t in tasks},
               speed=speed, seconds=args.seconds, settings=args.settings, missing=missing,
               machine=f"{platform.machine()}, {os.cpu_count()} CPU cores")
    write_json(os.path.join(args.out, "results.json"), out)

    lines = [f"# {args.title}", ""]
    if args.seconds is not None:
        lines.append(f"Wall time: {args.seconds / 60:.1f} minutes on {out['machine']}.")
    if missing:
        lines.append(f"**Missing results:** {', '.join(missing)}.")
    lines += ["", "## Results (test split)", "", markdown_table(results), ""]
    lines += [f"Metric per task: " + ", ".join(f"{t}: {MAIN_METRIC[metas[t].get('metric', 'bleu')]}"
                                                for t in tasks) + " (percent; BLEU by sacreBLEU)."]
    extra = []
    for row, per in results.items():
        for t, m in per.items():
            if m["metric"] == "squad":
                extra.append(f"{row}/{t} EM {m['exact_match']:.1f}")
            if m["metric"] == "pass@k":
                extra.append(f"{row}/{t} " + ", ".join(f"{k} {v:.1f}" for k, v in m.items() if k.startswith("pass@")))
    if extra:
        lines += ["", "Other metrics: " + "; ".join(extra) + "."]
    if any(metas[t].get("baselines") for t in tasks):
        lines += ["", "Trivial baselines (from the task generator, same split):", ""]
    for t in tasks:
        b = test_baselines(metas[t])
        if b:
            lines.append(f"- {t}: " + ", ".join(f"{k} {fmt(v)}" for k, v in b.items()))
    if pretrain:
        lines += ["", "## Pretraining", "", "| model | objective | steps | val loss (nats/token) |",
                  "|---|---|---|---|"]
        for row, s in pretrain.items():
            obj = s["objective"] + (f"/{s['noise']}" if s.get("noise") else "")
            lines.append(f"| {row} | {obj} | {s['step']} | {s['val_loss']:.3f} |")
        lines += ["", "AR and diffusion validation losses are different quantities (next-token NLL vs the "
                  "diffusion loss, an upper bound on NLL): compare within a row type only."]
    if speed:
        lines += ["", "## Decoding speed", "", speed_table(speed)]
    lines += ["", "## Reading: the paper's findings in this run", ""] + reading(results, tasks, metas)
    lines += ["", "Paper, Table 2 (Base, WMT14 BLEU / SQuAD F1 / MBPP Pass@80): " +
              "; ".join(f"{k} {'/'.join(map(str, v))}" for k, v in PAPER.items()) + "."]
    if args.settings:
        lines += ["", "## Settings", "", args.settings]
    text = "\n".join(lines) + "\n"
    from data.common import atomic_write
    atomic_write(os.path.join(args.out, "report.md"), lambda f: f.write(text))
    print(text)


def test_baselines(meta):
    """{name: value} of a task's trivial baselines on the test split (meta.json of the task)."""
    b = meta.get("baselines") or {}
    return b.get("test", b)


def fmt(v):  # a baseline value: a number, or {"em": .., "f1": ..}
    return "/".join(f"{k} {x:.1f}" for k, x in v.items()) if isinstance(v, dict) else f"{v:.1f}"


def baseline_score(v):  # comparable with the task's main metric (QA: F1)
    return v.get("f1", max(v.values())) if isinstance(v, dict) else v


def speed_table(speed):
    s = speed["settings"]
    first = speed["results"][0]
    cols = [(kind, k) for kind in ("diffusion", "threshold") for k in first.get(kind) or {}]
    head = {"diffusion": "diffusion {} steps", "threshold": f"threshold {s.get('threshold')}, <={{}} steps"}
    rows = [f"{s['model']} on {s['device_name']}, {s['dtype']}, batch {s['batch_size']}, "
            f"{s['num_samples']} candidate(s) per output; median of {s['repeats']} runs. "
            "Cells: latency in ms, speedup over AR.", "",
            "| output tokens | AR (ms) | " + " | ".join(head[kind].format(k) for kind, k in cols) + " |",
            "|---" * (2 + len(cols)) + "|"]
    for r in speed["results"]:
        cells = [f"{r[kind][k]['latency_s'] * 1e3:.0f}, {r[kind][k]['speedup']:.2f}x" for kind, k in cols]
        rows.append(f"| {r['length']} | {r['ar']['latency_s'] * 1e3:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def reading(results, tasks, metas):
    """The paper's findings, each checked against this run's numbers."""
    def score(row, task):
        m = results.get(row, {}).get(task)
        return None if m is None else m[MAIN_METRIC[m["metric"]]]

    kind = {t: metas[t].get("metric") for t in tasks}
    ns = sorted((int(r.split("_")[1]), r) for r in results if r.startswith("AR2Diff_") and r != "AR2Diff_0")
    largest = ns[-1][1] if ns else None
    out = []
    for t in tasks:  # the quality bar: every fine-tuned model above the strongest baseline
        base = test_baselines(metas[t])
        if not base:
            continue
        name, best = max(((k, baseline_score(v)) for k, v in base.items()), key=lambda kv: kv[1])
        below = [f"{r} {score(r, t):.1f}" for r in results if score(r, t) is not None and score(r, t) <= best]
        out.append(f"- Every model above the strongest baseline on {t} ({name}, {best:.1f}): "
                   + ("yes" if not below else f"no ({', '.join(below)})") + ".")
    for t in tasks:
        ar, diff = score("AR", t), score("diffusion", t)
        if ar is None or diff is None:
            continue
        if kind[t] == "bleu":
            verdict = "reproduced" if ar > diff else "not reproduced"
            out.append(f"- AR beats diffusion on translation ({t}): {verdict} (AR {ar:.1f} vs diffusion {diff:.1f}).")
        else:
            verdict = "reproduced" if diff >= ar - 2 else "not reproduced"
            out.append(f"- Diffusion competitive with (within 2 points of) or better than AR on {t}: {verdict} "
                       f"(diffusion {diff:.1f} vs AR {ar:.1f}).")
    if largest and "AR2Diff_0" in results:
        better = [t for t in tasks if None not in (score(largest, t), score("AR2Diff_0", t))
                  and score(largest, t) > score("AR2Diff_0", t)]
        out.append(f"- AR2Diff improves with N ({largest} vs AR2Diff_0): better on {len(better)} of {len(tasks)} "
                   f"tasks ({', '.join(better) or 'none'}).")
        worst = [t for t in tasks if None not in (score("AR2Diff_0", t), score(largest, t), score("diffusion", t))
                 and score("AR2Diff_0", t) < min(score(largest, t), score("diffusion", t))]
        out.append(f"- AR2Diff_0 is the weakest diffusion model (strictly): on {len(worst)} of {len(tasks)} tasks "
                   f"({', '.join(worst) or 'none'}).")
    return out or ["- (no complete rows to compare)"]


if __name__ == "__main__":
    main()

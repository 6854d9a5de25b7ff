"""
Collect a pipeline run (runs/tiny.sh, runs/multi30k.sh, runs/small_gpu.sh) into results.json and report.md.

    python runs/report.py --out out/tiny --tasks translation,qa,code --seconds 512 \
        --models AR=ar,diffusion=diffusion,AR2Diff_0=ar2diff_0,AR2Diff_200=ar2diff_200
    python runs/report.py --out out/multi30k --models ... --tasks multi30k --curves --quality out/multi30k/quality.json

It reads <out>/finetune/<model>/<task>/eval/metrics.json (evaluate.py), the pretraining checkpoints'
sidecars (<out>/pretrain/<model>/best.json), the tasks' meta.json (trivial baselines),
<out>/speed.json (sample.py --compare) and the training speed of every stage (the tok/s of train.py's
log lines in <out>/logs/). --curves also plots the validation curves that the checkpoints' sidecars
record (<out>/transfer.png: diffusion from scratch against AR2Diff_N on the same held-out windows;
<out>/finetune.png: fine-tuning) and counts the diffusion steps that starting from the AR model saves;
--quality adds a steps sweep (runs/quality.py). The "reading" compares this run with the paper's
findings by fixed rules, so it says what the numbers say, whichever way they go.
"""
import argparse
import os
import platform
import re
import statistics
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
    p.add_argument("--curves", action="store_true", help="plot the validation curves (needs matplotlib)")
    p.add_argument("--quality", default=None, help="a steps sweep JSON of runs/quality.py, for the report")
    p.add_argument("--validation", action="store_true", help="also report eval_validation/metrics.json of each row")
    p.add_argument("--pareto", default=None, help="the front's JSON (runs/pareto.py), kept in results.json")
    args = p.parse_args()
    models = dict(m.split("=") for m in args.models.split(","))
    tasks = args.tasks.split(",")
    data = args.data or os.path.join(args.out, "data")

    results, validation, pretrain, missing = {}, {}, {}, []
    for row, folder in models.items():
        for task in tasks:
            m = load(os.path.join(args.out, "finetune", folder, task, "eval", "metrics.json"))
            if m is None:
                missing.append(f"{row}/{task}")
                continue
            results.setdefault(row, {})[task] = m
            v = load(os.path.join(args.out, "finetune", folder, task, "eval_validation", "metrics.json"))
            if args.validation and v is None:
                missing.append(f"{row}/{task} (validation)")
            elif v is not None:
                validation.setdefault(row, {})[task] = v
        if pretrain_folder(folder) in [pretrain_folder(models[r]) for r in pretrain]:
            continue  # a distilled row shares its pretraining with the row on the real references
        side = load(os.path.join(args.out, "pretrain", pretrain_folder(folder), "best.json"))
        if side:
            pretrain[row] = dict(step=side.get("step"), val_loss=side.get("val_loss"), objective=side.get("objective"),
                                 noise=side.get("noise"), complementary=bool(side.get("args", {}).get("complementary")))
    metas = {t: load(os.path.join(data, t, "meta.json")) or {} for t in tasks}
    speed = load(os.path.join(args.out, "speed.json"))
    speed_compiled = load(os.path.join(args.out, "speed_compiled.json"))  # the same, both sides compiled
    quality = load(args.quality) if args.quality else None
    curves = transfer_curves(args.out, models) if args.curves else None
    distilled = {t: (load(os.path.join(data, f"{t}_distilled", "meta.json")) or {}).get("distilled") for t in tasks}
    distilled = {t: d for t, d in distilled.items() if d}
    pareto = load(args.pareto) if args.pareto else None
    out = dict(results=results, validation=validation if args.validation else None, distilled=distilled or None,
               pareto=pareto, pretrain=pretrain, baselines={t: metas[t].get("baselines") for t in tasks},
               speed=speed, speed_compiled=speed_compiled, quality=quality, curves=curves,
               training_speed=training_speed(args.out),
               seconds=args.seconds, settings=args.settings, missing=missing,
               machine=f"{platform.machine()}, {os.cpu_count()} CPU cores")
    write_json(os.path.join(args.out, "results.json"), out)

    lines = [f"# {args.title}", ""]
    if args.seconds is not None:
        lines.append(f"Wall time: {args.seconds / 60:.1f} minutes on {out['machine']}.")
    if missing:
        lines.append(f"**Missing results:** {', '.join(missing)}.")
    lines += ["", "## Results (test split)", "", markdown_table(results), ""]
    if validation:
        lines += ["Validation split (the same decoding; settings are chosen here):", "", markdown_table(validation), ""]
    ratios = [f"{row} {m['length_ratio']:.2f}" for row, per in results.items() for m in per.values()
              if m.get("length_ratio") is not None]
    if ratios:
        lines += ["Output/reference length ratio (test): " + ", ".join(ratios) + ".", ""]
    lines += ["Metric per task: " + ", ".join(f"{t}: {MAIN_METRIC[metas[t].get('metric', 'bleu')]}"
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
    signatures = sorted({m["signature"] for per in results.values() for m in per.values() if m.get("signature")})
    if signatures:
        lines += ["", "sacreBLEU signature: " + "; ".join(f"`{x}`" for x in signatures) + "."]
    latency = [f"{row} {m['decode_seconds'] / m['examples'] * 1e3:.0f} ms" for row, per in results.items()
               for t, m in per.items() if m.get("decode_seconds") and m.get("examples")]
    if latency:
        lines += ["", "Decoding time per test example (evaluate.py's decode_seconds / examples, batch as in the "
                  "settings): " + ", ".join(latency) + "."]
    if any(metas[t].get("baselines") for t in tasks):
        lines += ["", "Trivial baselines (from the task generator, same split):", ""]
    for t in tasks:
        b = test_baselines(metas[t])
        if b:
            lines.append(f"- {t}: " + ", ".join(f"{k} {fmt(v)}" for k, v in b.items()))
    for t, d in distilled.items():
        lines += ["", "## Distillation", "", f"{t}: the AR teacher {d['teacher']} (step {d['teacher_step']}) decoded the "
                  f"{d['rows']:,} train inputs greedily ({d['decoding']['target_len']} tokens at most, batch "
                  f"{d['batch_size']}) in {d['seconds']:.0f} s; {d['identical_to_reference']:,} outputs are identical "
                  f"to their reference, {d['empty_outputs']} empty. Rows marked (distilled) were fine-tuned on these "
                  "targets; validation and test keep the real references."]
    if pareto is not None:
        lines += ["", "## Quality against latency", "", f"The front of runs/pareto.py: {args.pareto} "
                  "(`pareto.png`)."]
    if pretrain:
        lines += ["", "## Pretraining", "", "| model | objective | steps | val loss (nats/token) |",
                  "|---|---|---|---|"]
        for row, s in pretrain.items():
            obj = s["objective"] + (f"/{s['noise']}" if s.get("noise") else "") + (
                ", complementary masks (each step passes its sequences twice)" if s.get("complementary") else "")
            lines.append(f"| {row} | {obj} | {s['step']} | {s['val_loss']:.3f} |")
        lines += ["", "AR and diffusion validation losses are different quantities (next-token NLL vs the "
                  "diffusion loss, an upper bound on NLL): compare within a row type only."]
    if curves:
        lines += ["", "## Transfer curves", "", curves_text(curves)]
    if out["training_speed"]:
        lines += ["", "## Training speed", "", "Median tokens/s of each training stage (train.py's log lines; "
                  "real tokens, padding excluded):", "", "| stage | steps | tokens/s |", "|---|---|---|"]
        lines += [f"| {k} | {v['steps']} | {v['tok_s']:,.0f} |" for k, v in out["training_speed"].items()]
    if quality:
        lines += ["", "## Diffusion steps against quality and latency", "", quality_table(quality)]
    if speed:
        lines += ["", "## Decoding speed", "", speed_table(speed)]
    if speed_compiled:
        lines += ["", "Both sides compiled (`sample.py --compare --compile`: torch.compile, static KV cache):", "",
                  speed_table(speed_compiled)]
    lines += ["", "## Reading: the paper's findings in this run", ""] + reading(results, tasks, metas)
    lines += reading_curves(curves, quality)
    lines += ["", "Paper, Table 2 (Base, WMT14 BLEU / SQuAD F1 / MBPP Pass@80): " +
              "; ".join(f"{k} {'/'.join(map(str, v))}" for k, v in PAPER.items()) + "."]
    if args.settings:
        lines += ["", "## Settings", "", args.settings]
    text = "\n".join(lines) + "\n"
    from data.common import atomic_write
    atomic_write(os.path.join(args.out, "report.md"), lambda f: f.write(text))
    print(text)


def pretrain_folder(folder):
    """The pretraining (or adaptation) a fine-tuning folder started from: a distilled row's is its model's."""
    return folder.removesuffix("_distilled")


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
    compiled = s.get("compile")
    rows = [f"{s['model']} on {s['device_name']}, {s['dtype']}, batch {s['batch_size']}, "
            f"{s['num_samples']} candidate(s) per output; median of {s['repeats']} runs. "
            "Cells: latency in ms, speedup over AR." + (" Compile: seconds of the first run less a timed one's "
                                                        "(AR / each diffusion column)." if compiled else ""), "",
            "| output tokens | AR (ms) | " + " | ".join(head[kind].format(k) for kind, k in cols) + " |"
            + (" compile (s) |" if compiled else ""), "|---" * (2 + len(cols) + bool(compiled)) + "|"]
    for r in speed["results"]:
        cells = [f"{r[kind][k]['latency_s'] * 1e3:.0f}, {r[kind][k]['speedup']:.2f}x" for kind, k in cols]
        if compiled:
            timed = [r["ar"]] + [r[kind][k] for kind, k in cols]
            cells.append(" / ".join(f"{max(0.0, c['first_s'] - c['latency_s']):.1f}" for c in timed))
        rows.append(f"| {r['length']} | {r['ar']['latency_s'] * 1e3:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)

LOG_LINE = re.compile(r"^step (\d+) \| loss .* \| ([\d,]+) tok/s")


def training_speed(out):
    """{stage: {steps, tok_s}}: the median tokens/s of train.py's step lines in each <out>/logs/*.log
    (the first 3 steps left out: warm-up)."""
    folder, speeds = os.path.join(out, "logs"), {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
            rates = [float(m.group(2).replace(",", "")) for m in map(LOG_LINE.match, f) if m and int(m.group(1)) >= 3]
        if rates:
            speeds[name.removesuffix(".log")] = dict(steps=len(rates) + 3, tok_s=statistics.median(rates))
    return speeds


def history(path):
    """(step, validation loss) pairs of a run; a step with complementary masks counts as two (it passes each
    sequence twice), so that curves compare at equal compute."""
    side = load(path) or {}
    passes = 2 if side.get("args", {}).get("complementary") else 1
    return [(h["step"] * passes, h["val_loss"]) for h in side.get("history", [])]


def first_reach(curve, target):
    """The first step (linearly interpolated between evaluations) at which `curve` reaches `target`, or None."""
    for (s0, v0), (s1, v1) in zip([curve[0]] + curve, curve):
        if v1 <= target:
            return s1 if v1 == v0 or s1 == s0 else s0 + (s1 - s0) * (v0 - target) / (v0 - v1)
    return None


def transfer_curves(out, models):
    """Validation curves from the checkpoints' sidecars: diffusion pretraining from scratch against each
    AR2Diff_N (the same fixed held-out windows and noise draw), the fine-tuning runs; and for each N the
    diffusion steps from scratch needed to reach AR2Diff_N's validation loss. Writes the two PNGs."""
    pre = {}
    for row, folder in models.items():  # one curve per pretraining (a distilled row shares its model's)
        if pretrain_folder(folder) not in [pretrain_folder(models[r]) for r in pre]:
            pre[row] = history(os.path.join(out, "pretrain", pretrain_folder(folder), "ckpt.json"))
    ft = os.path.join(out, "finetune")
    fine = {row: history(os.path.join(ft, folder, task, "ckpt.json"))
            for row, folder in models.items() for task in sorted(os.listdir(os.path.join(ft, folder)))
            if os.path.isdir(os.path.join(ft, folder, task))} if os.path.isdir(ft) else {}
    scratch = next((c for r, c in pre.items() if pretrain_folder(models[r]) == "diffusion"), None) or []
    saved = {}
    for row, curve in pre.items():
        if not row.startswith("AR2Diff_") or not curve or not scratch:
            continue
        n, v = curve[-1]
        at_n = [val for s, val in scratch if s == n]
        reach = first_reach(scratch, v)
        saved[row] = dict(n=n, val_loss=v, scratch_at_n=at_n[0] if at_n else None, scratch_steps_to_reach=reach,
                          scratch_steps=scratch[-1][0], scratch_final=scratch[-1][1])
    curves = dict(pretrain={r: c for r, c in pre.items() if r != "AR" and c}, ar_pretrain=pre.get("AR"),
                  finetune={r: c for r, c in fine.items() if c}, saved=saved)
    try:
        plot_curves(out, curves)
    except ImportError:
        print("report.py: matplotlib is not installed (pip install matplotlib): no curve plots")
    return curves


def plot_curves(out, curves):
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from data.common import atomic_write

    def save(fig, name):
        atomic_write(os.path.join(out, name), lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"),
                     mode="wb")
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for row, c in curves["pretrain"].items():
        if len(c) > 1:
            scratch = row.startswith("diffusion")
            ax.plot(*zip(*c), "o-" if scratch else "s-", ms=3, label=row.removesuffix(" (distilled)") + (
                " (from scratch)" if scratch else " (from the AR model)"))
        else:
            ax.plot(*zip(*c), "k*", ms=10, label=f"{row} (the converted AR model)")
    ax.set(xlabel="diffusion pretraining steps (a complementary-mask step counts as 2)",
           ylabel="validation loss (diffusion ELBO, nats/token)",
           title="Transfer: diffusion from scratch vs from the AR model")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "transfer.png")
    rows = curves["finetune"]
    if rows:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for row, c in rows.items():
            ax = axes[0] if row == "AR" else axes[1]
            ax.plot(*zip(*c), "o-", ms=3, label=row)
        axes[0].set(xlabel="fine-tuning steps", ylabel="validation NLL (nats/token)", title="AR")
        axes[1].set(xlabel="fine-tuning steps", ylabel="validation loss (diffusion ELBO)", title="diffusion rows")
        for ax in axes:
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        save(fig, "finetune.png")


def curves_text(curves):
    out = ["Validation loss of diffusion pretraining (the diffusion ELBO, nats per target token, on the same fixed "
           "held-out windows and noise draw): from scratch against AR2Diff_N (`transfer.png`); fine-tuning "
           "validation curves in `finetune.png`. Steps compare at equal compute: a step with complementary masks "
           "counts as two.", ""]
    for row, s in curves["saved"].items():
        reach = s["scratch_steps_to_reach"]
        at_n = f"{s['scratch_at_n']:.3f}" if s["scratch_at_n"] is not None else "not measured"
        out.append(f"- {row}: validation loss {s['val_loss']:.3f} after {s['n']} diffusion steps; diffusion from "
                   f"scratch at step {s['n']}: {at_n}; from scratch it takes "
                   + (f"{reach:.0f} steps to reach it: starting from the AR model saves ~{reach - s['n']:.0f} "
                      f"diffusion steps ({reach / max(1, s['n']):.1f}x)." if reach is not None else
                      f"more than its {s['scratch_steps']} steps to reach it (it ends at {s['scratch_final']:.3f}): "
                      f"starting from the AR model saves more than {s['scratch_steps'] - s['n']} diffusion steps."))
    return "\n".join(out)


def quality_table(q):
    s = q["settings"]
    rows = [f"{s['ckpt']} on {s['task']} {s['split']} ({s['examples']} examples), {s.get('device_name', '')}, "
            f"batch {s['batch_size']}, temperature {s['temperature']}, {s['num_samples']} candidates; latency per "
            "example (`quality.png`).", "", f"| decoder | model calls | ms per example | {s['metric']} |",
            "|---|---|---|---|"]
    rows += [f"| {p['label']} | {p['calls']:.3g} | {p['latency_s'] * 1e3:.1f} | {p['value']:.1f} |"
             for p in q["points"]]
    return "\n".join(rows)


def reading_curves(curves, quality):
    out = []
    for row, s in (curves or {}).get("saved", {}).items():
        if s["scratch_at_n"] is not None and s["n"] > 0:
            verdict = "yes" if s["val_loss"] < s["scratch_at_n"] else "no"
            out.append(f"- {row} below diffusion from scratch at the same number of diffusion steps ({s['n']}): "
                       f"{verdict} ({s['val_loss']:.3f} vs {s['scratch_at_n']:.3f}).")
    pts = sorted((p["num_steps"], p["value"]) for p in (quality or {}).get("points", []) if p["decoder"] == "diffusion")
    if len(pts) > 1:
        verdict = "reproduced" if pts[-1][1] > pts[0][1] else "not reproduced"
        out.append(f"- More diffusion steps help: {verdict} ("
                   + ", ".join(f"{n} steps {v:.1f}" for n, v in pts) + ").")
    return out


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
    scratch = "diffusion" if "diffusion" in results else "diffusion (distilled)"
    for t in tasks:
        ar, diff = score("AR", t), score(scratch, t)
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
    for t in tasks:  # distillation: each distilled row against the same model fine-tuned on the real references
        for row in results:
            real = row.removesuffix(" (distilled)")
            if row != real and None not in (score(row, t), score(real, t)):
                out.append(f"- Distillation helps {real} on {t}: {'yes' if score(row, t) > score(real, t) else 'no'} "
                           f"({score(row, t):.1f} distilled vs {score(real, t):.1f}, {score(row, t) - score(real, t):+.1f}).")
        if score("diffusion (distilled)", t) is not None:
            for row in results:
                if row.startswith("AR2Diff") and row.endswith(" (distilled)") and score(row, t) is not None:
                    ahead = score(row, t) > score("diffusion (distilled)", t)
                    out.append(f"- {row} ahead of diffusion from scratch on the same distilled data ({t}): "
                               f"{'yes' if ahead else 'no'} ({score(row, t):.1f} vs {score('diffusion (distilled)', t):.1f}).")
        family = {r: score(r, t) for r in results if r != "AR" and score(r, t) is not None}
        if score("AR", t) is not None and family and kind[t] == "bleu":
            best = max(family, key=family.get)
            gap = score("AR", t) - family[best]
            out.append(f"- The best diffusion-family row within 3 BLEU of AR ({t}): {'yes' if gap <= 3 else 'no'} "
                       f"({best} {family[best]:.1f} vs AR {score('AR', t):.1f}, {gap:.1f} behind).")
    return out or ["- (no complete rows to compare)"]


if __name__ == "__main__":
    main()

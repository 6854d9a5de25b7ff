"""
The summary of runs/gpu_check.sh: one table of its figures against the goals, and the decoding speed
both sides compiled against both sides uncompiled.

    python runs/gpu_check.py --out out/gpu_check --seconds 431

Reads <out>/mfu.json (model.py --json), <out>/speed.json, speed_eager.json and, if present,
speed_cudagraphs.json (sample.py --compare --json), and the step lines of <out>/logs/train.log
(train.py); writes <out>/summary.md and <out>/summary.json.
"""
import argparse
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from data.common import atomic_write, read_json, write_json  # noqa: E402

GOALS = dict(mfu=0.45, speedup_1024=30.0, step_over_token=3.0)  # H100-class, 10 diffusion steps at 1024 tokens
STEP_LINE = re.compile(r"^step (\d+) \| loss .* \| ([\d,]+) tok/s(?: \| MFU ([\d.]+)%)?")


def train_figures(path):
    """Median tokens/s and MFU of train.py's step lines (the first 3 left out: compilation, warm-up)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [m for m in map(STEP_LINE.match, f) if m and int(m.group(1)) >= 3]
    if not lines:
        raise ValueError(f"{path}: no train.py step lines after step 3")
    mfu = [float(m.group(3)) / 100 for m in lines if m.group(3)]
    return dict(steps=len(lines) + 3, tokens_per_s=statistics.median(float(m.group(2).replace(",", "")) for m in lines),
                mfu=statistics.median(mfu) if mfu else None)


def at(speed, length):
    return next((r for r in speed["results"] if r["length"] == length), None)


def steps_key(speed):
    """The diffusion row compared: 10 steps (the paper's), else the fewest timed."""
    keys = list(speed["results"][0]["diffusion"])
    return "10" if "10" in keys else min(keys, key=int)


def decoding_checks(speed):
    """Diffusion (10 steps) against compiled AR at 1024 tokens (else the longest length timed)."""
    row, key = at(speed, 1024) or speed["results"][-1], steps_key(speed)
    diff = row["diffusion"][key]
    return dict(length=row["length"], num_steps=int(key), speedup=diff["speedup"],
                step_over_token=diff["per_call_s"] / (row["ar"]["latency_s"] / row["length"]))


def pct(v):
    return "n/a" if v is None else f"{v:.1%}"


def verdict(value, goal, higher=True, cuda=True):
    if not cuda or value is None:
        return "n/a (not a GPU)" if not cuda else "n/a"
    return "met" if (value >= goal if higher else value <= goal) else "missed"


def main():
    p = argparse.ArgumentParser(description="Summarise runs/gpu_check.sh's outputs.")
    p.add_argument("--out", required=True, help="runs/gpu_check.sh's output folder")
    p.add_argument("--seconds", type=float, help="wall time of the whole check")
    args = p.parse_args()
    mfu, speed = read_json(os.path.join(args.out, "mfu.json")), read_json(os.path.join(args.out, "speed.json"))
    eager = read_json(os.path.join(args.out, "speed_eager.json"))
    graphs = os.path.join(args.out, "speed_cudagraphs.json")
    graphs = read_json(graphs) if os.path.exists(graphs) else None
    train = train_figures(os.path.join(args.out, "logs", "train.log"))
    s, m = speed["settings"], mfu["settings"]
    cuda = s["device"].startswith("cuda")
    dec = decoding_checks(speed)
    rows = [("MFU, ar (model.py, fwd+bwd)", pct(mfu["results"]["ar"]["mfu"]), f">= {GOALS['mfu']:.0%}",
             verdict(mfu["results"]["ar"]["mfu"], GOALS["mfu"], cuda=cuda)),
            ("MFU, diffusion (model.py, fwd+bwd)", pct(mfu["results"]["diffusion"]["mfu"]), f">= {GOALS['mfu']:.0%}",
             verdict(mfu["results"]["diffusion"]["mfu"], GOALS["mfu"], cuda=cuda)),
            (f"{dec['num_steps']}-step diffusion over compiled AR, {dec['length']} tokens", f"{dec['speedup']:.1f}x",
             f">= {GOALS['speedup_1024']:.0f}x", verdict(dec["speedup"], GOALS["speedup_1024"], cuda=cuda)),
            (f"one diffusion step / one AR token, {dec['length']} tokens", f"{dec['step_over_token']:.2f}x",
             f"<= {GOALS['step_over_token']:.0f}x",
             verdict(dec["step_over_token"], GOALS["step_over_token"], higher=False, cuda=cuda)),
            ("pretraining (train.py log), tokens/s", f"{train['tokens_per_s']:,.0f}", "", ""),
            ("pretraining (train.py log), MFU", pct(train["mfu"]), "", "")]
    lines = [f"# GPU check: {s['device_name']}, torch {s['torch']}", "",
             f"Wall time {args.seconds / 60:.1f} minutes." if args.seconds else "",
             f"model.py: {m['preset']}, batch {m['batch_size']} x {m['seq_len']}, {m['dtype']}, compile "
             f"{m['compile']}; sample.py --compare: {s['model']}, "
             f"{s['dtype']}, batch {s['batch_size']}, prompt {s['prompt_len']}, median of {s['repeats']}.", "",
             "| check | figure | goal | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    S = dec["num_steps"]
    lines += ["", f"Decoding latency in ms ({S}-step diffusion: speedup over AR of the same run); compile: the first "
              "run's seconds less a timed run's.", "",
              f"| tokens | AR eager | diffusion {S} eager | AR compiled | diffusion {S} compiled "
              "| compile AR / diffusion (s) |" + (f" AR CUDA graphs | diffusion {S} CUDA graphs |" if graphs else ""),
              "|---" * (6 + (2 if graphs else 0)) + "|"]
    for r in speed["results"]:
        def cells(run):
            e = at(run, r["length"]) if run else None
            if e is None:
                return ["", ""]
            d = e["diffusion"][str(S)]
            return [f"{e['ar']['latency_s'] * 1e3:.1f}", f"{d['latency_s'] * 1e3:.1f} ({d['speedup']:.1f}x)"]
        d = r["diffusion"][str(S)]
        compile_s = " / ".join(f"{max(0.0, c['first_s'] - c['latency_s']):.1f}" for c in (r["ar"], d))
        lines.append("| " + " | ".join([str(r["length"]), *cells(eager), *cells(speed), compile_s]
                                       + (cells(graphs) if graphs else [])) + " |")
    text = "\n".join(lines) + "\n"
    atomic_write(os.path.join(args.out, "summary.md"), lambda f: f.write(text))
    write_json(os.path.join(args.out, "summary.json"), dict(mfu=mfu["results"], decoding=dec, train=train,
                                                            goals=GOALS, seconds=args.seconds, device=s["device_name"]))


if __name__ == "__main__":
    main()

"""
A task's metric against decoding latency, over decoding settings (the paper's Table 3 question, which
its translation results left out): every setting decodes the split with evaluate.predict, exactly as
evaluate.py decodes it, timed, and is scored with the task's metric; --ar_ckpt adds the AR model of
the same task (greedy) as one more point.

    python runs/quality.py --ckpt DIFF.pt --ar_ckpt AR.pt --task_dir data/embedded/qa --split test \
        --limit 100 --num_steps 1,2,5,10,20 --threshold 0.5,0.7,0.9 --json out/quality.json --plot out/quality.png

The sampler, device and timing flags are sample.py's; thresholds stop by the largest --num_steps.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import evaluate  # noqa: E402
from data.common import INT, INT0, write_json  # noqa: E402
from data.tasks import load_split, load_task, score  # noqa: E402
from diffusion import PAPER, calls_per_token  # noqa: E402
from sample import SAMPLER, describe, get_args, load, parse, plot, timed  # noqa: E402


def main(argv=None):
    p, argv = get_args(argv, sweep=True)
    p.description = __doc__
    p.add_argument("--ar_ckpt", help="the AR checkpoint of the same task: one more point")
    p.add_argument("--task_dir", help="prepared task folder (default: the ckpt's task)")
    p.add_argument("--split", default="test", help="split to decode")
    p.add_argument("--limit", type=INT0, default=0, help="only the first N examples (0 = all)")
    p.add_argument("--target_len", type=INT, help="output tokens (default: each checkpoint's)")
    args = parse(p, argv, "of runs/quality.py")
    if not args.ckpt:
        p.error("--ckpt is needed: the diffusion or block diffusion checkpoint to sweep")
    model, tok, ckpt = load(p, args, "ckpt", "diffusion")
    args.num_steps, args.num_samples = args.num_steps or [1, 2, 5, 10, 20], args.num_samples or PAPER["num_samples"]
    args.temperature = PAPER["temperature"] if args.temperature is None else args.temperature
    args.task_dir = args.task_dir or (ckpt.get("task") or {}).get("folder")
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
        return argparse.Namespace(**{**vars(args), **dict.fromkeys(SAMPLER if ar else ()), "top_k": None,
                                     "num_outputs": 1, "num_steps": S, "threshold": x})
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
    s = describe(args, model, ("ckpt", "ar_ckpt", "task_dir", "split", "num_steps", "threshold", "target_len",
                               "temperature", "num_samples", "order", "schedule", "batch_size", "repeats", "warmup"))
    s.update(task=meta["task"], metric=metric, examples=len(rows), noise=ckpt["noise"], block_len=K, ar="greedy")
    points, counts = [], []  # (calls, output tokens) of each output of the last run
    with torch.no_grad():
        for decoder, label, e in tqdm(runs, desc="settings", leave=False):
            m, t, c = models["AR" if decoder == "AR" else "diffusion"]

            def run():  # evaluate.py's decoder, as evaluate.py runs it
                counts.clear()
                return evaluate.predict(m, c, t, rows, e, lambda batch, calls, lengths: counts.extend(
                    zip(calls.tolist(), lengths.tolist())))
            total, outs, _ = timed(run, args.repeats, args.warmup, args.device)
            value = score(meta["metric"], rows, evaluate.to_metric_format(meta["metric"], outs[-1]), **kw)[metric]
            calls = sum(k for k, _ in counts) / len(counts)  # per output (as if alone), the prefix pass included
            # output tokens as decoded, EOS included (diffusion.output_lengths)
            per_token = calls_per_token(*zip(*counts))
            points.append(dict(decoder=decoder, num_steps=e.num_steps, threshold=e.threshold, label=label,
                               calls=calls, calls_per_token=per_token, latency_s=total / len(rows), total_s=total,
                               metric=metric, value=value))
    print(f"# {args.ckpt} on {meta['task']} {args.split} ({len(rows)} examples), {s['device_name']}, {args.dtype}, "
          f"compile {args.compile}, batch {args.batch_size}, median of {args.repeats}\n# {kind}: {ckpt['noise']} noise,"
          f" temperature {args.temperature}, {args.num_samples} candidates; calls: forward passes per output, "
          f"calls/tok: per output token")
    print(f"{'decoder':<28}{'calls':>7}{'calls/tok':>10}{'ms/example':>12}{metric:>10}")
    for q in points:
        print(f"{q['label']:<28}{q['calls']:>7.3g}{q['calls_per_token']:>10.3f}{q['latency_s'] * 1e3:>12.2f}"
              f"{q['value']:>10.2f}")
    if args.plot:  # metric vs latency per example, log x; each point named by its steps or threshold
        curves = [("diffusion", f"{kind} (steps)", "o-", "num_steps"), ("AR", "AR, greedy", "k*", "decoder"),
                  ("threshold", f"threshold (<={cap} steps)", "^--", "threshold")]
        lines = [(name, [q["latency_s"] for q in pts], [q["value"] for q in pts], style, [str(q[key]) for q in pts])
                 for decoder, name, style, key in curves if (pts := [q for q in points if q["decoder"] == decoder])]
        plot(args.plot, lines, xlabel="latency per example (s)", ylabel=f"{meta['task']} {metric}",
             title=f"{args.ckpt}, {s['device_name']}, {args.dtype}, batch {args.batch_size}")
    result = dict(settings=s, points=points)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

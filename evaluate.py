"""
Evaluate a checkpoint (AR or diffusion) on a task split, or score a predictions file without a model.

    # run a model: predictions are appended as they are made (an interrupted run continues),
    # then metrics.json is written and the metric printed
    python evaluate.py --ckpt out/ft/ckpt.pt --task_dir data/squad --split devsplit_eval --limit 200
    # score an existing file (no model): SQuAD's official {id: answer} JSON, one line per segment
    # for translation, {"task_id", "completion"} lines (several per task) for code
    python evaluate.py --task squad --split dev --predictions preds.json
    python evaluate.py --task wmt14_enfr --split test --predictions hyp.txt
    python evaluate.py --task mbpp --split test --predictions preds.jsonl --k 1,10
    # a Table-2-like markdown table from {model: {task: metrics}} JSON files
    python evaluate.py --table out/tiny/results.json

Every output records what made it: settings.json and metrics.json hold the decoding flags and the
checkpoint (its path, sha256, step and run id). Predictions of another checkpoint path, or made with
other settings, are refused (another --out_dir, or delete them); those of the same path whose file
has changed since (retrained, resumed) are stale and remade, saying so in one line.

Decoding defaults are the paper's (§4.1): diffusion 10 steps, temperature 0.2, 8 candidates reranked
by model score; AR greedy for translation and QA, temperature sampling (0.8, our choice: the paper
does not give it) for code.
"""
import argparse
import json
import os
import time
import zlib

import torch

from data.common import (INT, INT0, POSITIVE, atomic_write, cli, device_flag, load_checkpoint, read_json,
                         remove_stale_temps, sha256_of, weights_mismatch, write_json)
from data.loader import encode_task, pad_batch
from data.tasks import load_split, load_task, read_predictions, score
from data.tokenizer import get_tokenizer
from diffusion import ORDERS, SCHEDULES, calls_per_token, cut_at_eos, decode, output_lengths
from model import compile_for_decoding, make_generators, model_from_checkpoint

MAIN_METRIC = {"bleu": "bleu", "squad": "f1", "pass@k": "pass@1"}
TABLE_ROWS = ("AR", "diffusion", "AR2Diff_0")  # then every AR2Diff_N, in order
SAMPLER = ("num_steps", "num_samples", "order", "schedule", "threshold")  # diffusion settings, None = paper's
AR_CODE_TEMPERATURE = 0.8  # our choice: the paper samples AR code with a temperature it does not give


def get_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate a checkpoint on a task, or score predictions.")
    p.add_argument("--ckpt", help="checkpoint to run (AR or diffusion)")
    p.add_argument("--task", help="task name: its data folder defaults to data/<task>")
    p.add_argument("--task_dir", help="prepared task folder (default: data/<task>, else the ckpt's task)")
    p.add_argument("--split", default="test", help="split file to evaluate: <task_dir>/<split>.jsonl")
    p.add_argument("--predictions", help="score this predictions file instead of running a model")
    p.add_argument("--table", nargs="+", help="print a markdown table from results JSON files")
    p.add_argument("--out_dir", help="where predictions.jsonl and metrics.json go (default: beside the ckpt)")
    p.add_argument("--limit", type=INT0, default=0, help="evaluate only the first N examples (0 = all)")
    p.add_argument("--batch_size", type=INT, default=32, help="examples decoded together")
    p.add_argument("--target_len", type=INT0, default=0, help="output length in tokens (default: the ckpt's)")
    p.add_argument("--num_steps", type=INT, default=None, help="diffusion denoising steps (default: paper, 10; "
                   "block diffusion: per block)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default: diffusion 0.2; AR 0, or 0.8 for code)")
    p.add_argument("--num_samples", type=INT, default=None, help="diffusion candidates reranked per output (paper: 8)")
    p.add_argument("--order", default=None, choices=ORDERS, help="mask unmasking order (default confidence)")
    p.add_argument("--schedule", default=None, choices=SCHEDULES, help="tokens unmasked per step (default linear)")
    p.add_argument("--threshold", type=float, default=None, help="adaptive: also unmask tokens above this probability")
    p.add_argument("--top_k", type=int, default=None, help="AR sampling: keep the k likeliest tokens")
    p.add_argument("--rerank_ckpt", help="an AR checkpoint (the same tokenizer) that picks among the diffusion "
                   "candidates: the mean log-probability per token it gives each (noisy parallel decoding)")
    p.add_argument("--num_outputs", type=INT, default=1, help="outputs per example (pass@k needs n >= k)")
    p.add_argument("--k", default="1", help="comma-separated k for pass@k")
    p.add_argument("--timeout", type=POSITIVE, default=5.0, help="seconds per sandboxed program")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (each example draws its own noise)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", type=device_flag,
                   help="cpu|cuda|cuda:N")
    p.add_argument("--dtype", default="bfloat16" if torch.cuda.is_available() else "float32",
                   help="autocast dtype on CUDA: bfloat16|float32")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the decoding passes (model.compile_for_decoding); default: on CUDA only")
    return p.parse_args(argv)


def example_seed(seed, row_id, j):
    """A seed per (example, output): an output never depends on batching or on resuming."""
    return zlib.crc32(f"{seed}|{row_id}|{j}".encode())


@torch.no_grad()
def predict(model, ckpt, tok, rows, args, on_batch=None, metric=None, reranker=None):
    """Generated text for every (row, output j); returns {str(id): [text, ...]} in row order. After each
    batch, on_batch(list of (id, j, text), calls (B,), output lengths (B,)) if given: the model calls each
    output needs decoded alone and the tokens it decides (diffusion.output_lengths: EOS included)."""
    diffusion = ckpt["objective"] == "diffusion"
    L = args.target_len or ckpt.get("target_len")
    if not L:
        raise ValueError("--target_len is needed: the checkpoint records no target_len")
    temperature = args.temperature
    if temperature is None:  # paper §4.1: diffusion 0.2; AR greedy, but sampled for code (pass@k)
        temperature = 0.2 if diffusion else AR_CODE_TEMPERATURE if metric == "pass@k" else 0.0
    examples = encode_task(tok, rows, L, model.config.block_size, ckpt["objective"])
    jobs = [(i, j) for i in range(len(rows)) for j in range(args.num_outputs)]
    out = {}
    device_type = torch.device(args.device).type
    autocast = torch.autocast(device_type, dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")
    for s in range(0, len(jobs), args.batch_size):
        chunk = jobs[s: s + args.batch_size]
        prefix, prefix_len = pad_batch([examples[i][0] for i, _ in chunk], tok.eos_id, args.device)
        gens = make_generators([example_seed(args.seed, rows[i]["id"], j) for i, j in chunk], args.device)
        with autocast:
            tokens, _, calls = decode(model, ckpt, prefix, prefix_len, L, tok, generators=gens, temperature=temperature,
                                      top_k=args.top_k, reranker=reranker, **{k: getattr(args, k) for k in SAMPLER})
        texts = [tok.decode(ids) for ids in cut_at_eos(tokens, tok.eos_id)]
        batch = [(str(rows[i]["id"]), j, text) for (i, j), text in zip(chunk, texts)]
        for key, _, text in batch:
            out.setdefault(key, []).append(text)
        if on_batch:
            on_batch(batch, calls, output_lengths(tokens, tok.eos_id))
    return out


def to_metric_format(metric, outputs):
    """{id: [texts]} -> what data.tasks.score takes: one string (bleu, squad) or all samples (pass@k)."""
    if metric == "pass@k":
        return outputs
    return {k: " ".join(v[0].split()) for k, v in outputs.items()}  # one line, single spaces


def check_predictions(out_dir, made_by, settings):
    """Keep (resume) the predictions in out_dir only if this checkpoint file made them with these
    settings: another checkpoint's, or other settings', are refused; those of this path made before
    its file changed are deleted, to be remade."""
    path, settings_path = (os.path.join(out_dir, f) for f in ("predictions.jsonl", "settings.json"))
    old = read_json(settings_path) if os.path.exists(settings_path) else {}
    by, old_settings = old.get("made_by"), old.get("settings", old)  # older folders: the settings alone
    if not os.path.exists(path):
        return
    if by is None:
        raise ValueError(f"--out_dir {out_dir} holds predictions that do not record the checkpoint that made them; "
                         f"delete them or pass another --out_dir")
    if by["ckpt"] != made_by["ckpt"]:
        raise ValueError(f"--out_dir {out_dir} holds the predictions of {by['ckpt']} (step {by['step']}), not of "
                         f"--ckpt {made_by['ckpt']}; pass another --out_dir, or delete them")
    if by.get("task_dir", made_by["task_dir"]) != made_by["task_dir"]:
        raise ValueError(f"--out_dir {out_dir} holds predictions for the task {by['task_dir']}, not --task_dir "
                         f"{made_by['task_dir']}; pass another --out_dir, or delete them")
    if by["sha256"] != made_by["sha256"] or by.get("rerank_sha256") != made_by.get("rerank_sha256"):
        what = (f"{made_by['ckpt']} has changed since they were made (step {by['step']} -> {made_by['step']}, sha256 "
                f"{by['sha256'][:12]} -> {made_by['sha256'][:12]})" if by["sha256"] != made_by["sha256"]
                else f"the --rerank_ckpt {settings.get('rerank_ckpt')} has changed since they were made")
        print(f"{out_dir}: remaking the predictions: {what}")
        for stale in (path, os.path.join(out_dir, "metrics.json")):
            if os.path.exists(stale):
                os.remove(stale)
    elif old_settings != settings:
        diff = {k: (old_settings.get(k), v) for k, v in settings.items() if old_settings.get(k) != v}
        raise ValueError(f"--out_dir {out_dir} holds predictions made with other settings (theirs, these: {diff}); "
                         f"delete them or pass another --out_dir")


def load_model(path, device):
    """(checkpoint, model in eval mode) of path; weights or a config that do not fit are a ValueError naming it."""
    ckpt = load_checkpoint(path, device)
    try:
        return ckpt, model_from_checkpoint(ckpt, device).eval()
    except RuntimeError as e:
        raise weights_mismatch(path, e) from None
    except TypeError as e:
        raise ValueError(f"{path}: its config is not a model config ({e})") from None


def load_reranker(args, ckpt):
    """(the --rerank_ckpt AR model or None, what made_by records of it); ValueError names the flag."""
    if not args.rerank_ckpt:
        return None, {}
    args.rerank_ckpt = os.path.abspath(args.rerank_ckpt)  # settings.json records it: one spelling
    if ckpt["objective"] != "diffusion":
        raise ValueError(f"--rerank_ckpt reranks a diffusion model's candidates, but --ckpt {args.ckpt} is "
                         f"{ckpt['objective']}")
    sha256 = sha256_of(args.rerank_ckpt)
    other, model = load_model(args.rerank_ckpt, args.device)
    if other.get("objective") != "ar":
        raise ValueError(f"--rerank_ckpt {args.rerank_ckpt}: must be an AR checkpoint, got {other.get('objective')!r}")
    if other.get("tokenizer") != ckpt.get("tokenizer"):
        raise ValueError(f"--rerank_ckpt {args.rerank_ckpt} has tokenizer {other.get('tokenizer')}, --ckpt "
                         f"{args.ckpt} has {ckpt.get('tokenizer')}: they must be the same")
    return model, dict(rerank_sha256=sha256, rerank_step=other.get("step"))


def run_model(args, task_dir, meta, rows):
    out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)),
                                           f"eval_{meta['task']}_{args.split}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out_dir {out_dir} is a file, not a folder")
    if not os.path.isfile(args.ckpt):
        load_checkpoint(args.ckpt)  # its message: no such file, or a folder
    sha256 = sha256_of(args.ckpt)  # before the load: a file rewritten in between only makes the next run remake
    ckpt, model = load_model(args.ckpt, args.device)
    tok = get_tokenizer(ckpt["tokenizer"])
    reranker, rerank_by = load_reranker(args, ckpt)
    compiled = torch.device(args.device).type == "cuda" if args.compile is None else args.compile
    if compiled:
        compile_for_decoding(model)
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temps(out_dir)
    path = os.path.join(out_dir, "predictions.jsonl")
    settings = {k: getattr(args, k) for k in ("split", "limit", "target_len", "num_steps", "temperature",
                                               "num_samples", "order", "schedule", "threshold", "top_k",
                                               "num_outputs", "seed", "rerank_ckpt")}
    made_by = dict(ckpt=os.path.abspath(args.ckpt), sha256=sha256, step=ckpt.get("step"),
                   run_id=ckpt.get("run_id"), task_dir=os.path.abspath(task_dir), **rerank_by)
    check_predictions(out_dir, made_by, settings)
    write_json(os.path.join(out_dir, "settings.json"), dict(settings=settings, made_by=made_by))
    done, cost = {}, {}  # cost: (model calls, output tokens) of each (id, j)
    if os.path.exists(path):  # continue an interrupted run: keep every complete line
        records = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # the last line of a killed run may be cut short
        for rec in records:
            done.setdefault(rec["id"], {})[rec["j"]] = rec["text"]
            if "calls" in rec:
                cost[rec["id"], rec["j"]] = (rec["calls"], rec["tokens"])
        atomic_write(path, lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    todo = [r for r in rows if len(done.get(str(r["id"]), {})) < args.num_outputs]
    print(f"{args.ckpt}: {ckpt['objective']}{'/' + ckpt['noise'] if ckpt.get('noise') else ''}, "
          f"step {ckpt.get('step')}; {len(rows) - len(todo)} of {len(rows)} examples already done")

    def on_batch(batch, calls, lengths):  # append each batch as soon as it is decoded
        with open(path, "a", encoding="utf-8") as f:
            for (key, j, text), c, n in zip(batch, calls.tolist(), lengths.tolist()):
                f.write(json.dumps({"id": key, "j": j, "text": text, "calls": c, "tokens": n}, ensure_ascii=False)
                        + "\n")
                done.setdefault(key, {})[j] = text
                cost[key, j] = (c, n)
            f.flush()
            os.fsync(f.fileno())

    t0 = time.time()
    from tqdm import tqdm
    for s in tqdm(range(0, len(todo), args.batch_size), desc="decoding", disable=not todo):
        predict(model, ckpt, tok, todo[s: s + args.batch_size], args, on_batch, meta["metric"], reranker=reranker)
    elapsed = time.time() - t0
    outputs = {str(r["id"]): [done[str(r["id"])][j] for j in range(args.num_outputs)] for r in rows}
    metrics = score(meta["metric"], rows, to_metric_format(meta["metric"], outputs),
                    **({"ks": parse_ks(args.k), "timeout": args.timeout} if meta["metric"] == "pass@k" else {}))
    metrics.pop("results", None)
    if cost:  # model calls per output (as if decoded alone, the prefix pass included) and per output token
        calls, lengths = zip(*cost.values())
        metrics.update(calls_per_output=sum(calls) / len(calls), calls_per_token=calls_per_token(calls, lengths))
    metrics.update(task=meta["task"], ckpt=os.path.abspath(args.ckpt), step=ckpt.get("step"),
                   objective=ckpt["objective"], noise=ckpt.get("noise"), examples=len(rows),
                   decode_seconds=round(elapsed, 2), settings=settings, made_by=made_by)
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


def parse_ks(text):
    try:
        ks = sorted({int(k) for k in str(text).split(",")})
    except ValueError:
        raise SystemExit(f"--k must be comma-separated integers, got {text!r}")
    if ks[0] < 1:
        raise SystemExit(f"--k values must be >= 1, got {text!r}")
    return ks


def markdown_table(results):
    """{model: {task: metrics}} -> Table-2-like markdown (rows: AR, diffusion, AR2Diff_0, AR2Diff_N)."""
    tasks = sorted({t for per in results.values() for t in per})
    rows = [r for r in TABLE_ROWS if r in results] + [r for r in results if r not in TABLE_ROWS]
    kind = {t: m["metric"] for per in results.values() for t, m in per.items()}
    lines = ["| model | " + " | ".join(f"{t} ({MAIN_METRIC[kind[t]]})" for t in tasks) + " |",
             "|---" * (len(tasks) + 1) + "|"]
    for r in rows:
        cells = [f"{results[r][t][MAIN_METRIC[kind[t]]]:.1f}" if t in results[r] else "–" for t in tasks]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = get_args(argv)
    if args.table:
        results = {}
        for path in args.table:
            results.update(read_json(path))
        print(markdown_table(results))
        return results
    if bool(args.ckpt) == bool(args.predictions):
        raise SystemExit("give either --ckpt (run a model) or --predictions (score a file)")
    task_dir = args.task_dir or (f"data/{args.task}" if args.task else None)
    if task_dir is None and args.ckpt:
        task_dir = (load_checkpoint(args.ckpt).get("task") or {}).get("folder")  # the fine-tuning task
    if task_dir is None:
        raise SystemExit("give --task or --task_dir")
    meta = load_task(task_dir)
    rows = load_split(task_dir, args.split)
    rows = rows[: args.limit] if args.limit else rows
    if args.predictions:
        if os.path.isdir(args.predictions):
            raise ValueError(f"--predictions {args.predictions} is a folder, not a predictions file")
        predictions = read_predictions(meta["metric"], args.predictions, rows)
        kw = {"ks": parse_ks(args.k), "timeout": args.timeout} if meta["metric"] == "pass@k" else {}
        metrics = score(meta["metric"], rows, predictions, **kw)
        metrics.pop("results", None)
        metrics.update(made_by=dict(predictions=os.path.abspath(args.predictions),
                                    sha256=sha256_of(args.predictions), task_dir=os.path.abspath(task_dir)))
    else:
        metrics = run_model(args, task_dir, meta, rows)
    print(json.dumps(metrics, ensure_ascii=False))
    return metrics


if __name__ == "__main__":
    cli(main, "error", (OSError, ValueError))  # bad input: a clear message, not a stack trace

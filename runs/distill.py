"""
Sequence-level knowledge distillation (Kim & Rush 2016; Gu et al. 2018): an AR teacher decodes a task's
train inputs, and its outputs become the train targets of a distilled copy of the task folder.

    python runs/distill.py --teacher out/multi30k/finetune/ar/multi30k/best.pt \
        --data out/multi30k/data/multi30k --out_dir out/multi30k/data/multi30k_distilled

The copy has the task's schema: train.jsonl with the same ids and inputs in the same order, `target`
replaced by the teacher's greedy output (KV-cached, evaluate.py's batching and the prefix/target
encoding the trainer uses, up to the teacher's target_len tokens); the other splits (validation, test)
copied unchanged, so that checkpoints are still chosen and scored against the real references; and
meta.json = the task's meta.json plus "distilled" (teacher, its sha256 and step, its tokenizer, the
source folder, the decoding, the seconds it took). train.py --data and evaluate.py --task_dir take the
folder like any task folder.

Resumable: the teacher's outputs are appended to <out_dir>/train.partial.jsonl batch by batch; a rerun
keeps its complete lines and goes on. meta.json is written last: a folder that has it is finished and
is reused as it is, when it was made by the same teacher from the same source (else refused).
"""
import argparse
import json
import os
import shutil
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from data.common import atomic_write, load_checkpoint, read_json, sha256_of, write_json  # noqa: E402
from data.tasks import load_split, load_task  # noqa: E402
from data.tokenizer import brief, get_tokenizer  # noqa: E402

PARTIAL = "train.partial.jsonl"  # the teacher's outputs so far, one {"id", "target"} per line
IDENTITY = "distill.json"  # what the partial file was made from: a rerun with anything else is refused


def get_args(argv=None):
    p = argparse.ArgumentParser(description="Distil a task: an AR teacher's outputs become its train targets.")
    p.add_argument("--teacher", required=True, help="AR checkpoint (e.g. a run's finetune/ar/<task>/best.pt)")
    p.add_argument("--data", required=True, help="the task folder to distil (train.jsonl, meta.json, ...)")
    p.add_argument("--out_dir", required=True, help="the distilled task folder to write (not inside --data)")
    p.add_argument("--batch_size", type=int, default=100, help="train inputs decoded together")
    p.add_argument("--target_len", type=int, default=0, help="longest output in tokens (default: the teacher's)")
    p.add_argument("--device", default="cpu", help="cpu|cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default, OMP_NUM_THREADS)")
    return p, p.parse_args(argv)


def inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or os.path.commonpath([path, folder]) == folder


def identity(args, ckpt, target_len):
    """What makes two distilled folders the same: the teacher's bytes, the source's train set, the decoding."""
    return dict(teacher=os.path.abspath(args.teacher), teacher_sha256=sha256_of(args.teacher),
                teacher_step=ckpt.get("step"), source=os.path.abspath(args.data),
                source_train_sha256=sha256_of(os.path.join(args.data, "train.jsonl")),
                decoding=dict(method="greedy", target_len=target_len, kv_cache=True))


def same(a, b):  # the identity fields of a finished folder's "distilled" (or of distill.json)
    keys = ("teacher_sha256", "source_train_sha256", "decoding")
    return all(a.get(k) == b.get(k) for k in keys)


def read_partial(path, ids):
    """{id: target} of the complete lines of a partial file (a killed run may leave its last line cut)."""
    done = {}
    if not os.path.exists(path):
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and str(rec.get("id")) in ids and isinstance(rec.get("target"), str):
                done[str(rec["id"])] = rec["target"]
    return done


def main(argv=None):
    p, args = get_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.threads < 0:
        p.error(f"--threads must be >= 0, got {args.threads}")
    if args.target_len < 0:
        p.error(f"--target_len must be >= 0, got {args.target_len}")
    meta = load_task(args.data)  # a missing or malformed folder is named by load_task
    if inside(args.out_dir, args.data):
        p.error(f"--out_dir {args.out_dir} is inside the task folder --data {args.data}: the distilled copy "
                "would mix with the real data; give a folder beside it")
    ckpt = load_checkpoint(args.teacher)
    if ckpt.get("objective") != "ar":
        p.error(f"--teacher {args.teacher} is a {ckpt.get('objective')} checkpoint: the teacher must be an AR "
                "model (e.g. the run's finetune/ar/<task>/best.pt)")
    if "tokenizer" not in ckpt:
        p.error(f"--teacher {args.teacher} records no tokenizer")
    tok = get_tokenizer(ckpt["tokenizer"])
    if meta.get("tokenizer") is not None:
        try:
            tok.check(meta["tokenizer"], what="the task")
        except ValueError:
            p.error(f"--teacher {args.teacher} uses tokenizer {brief(ckpt['tokenizer'])} but the task --data "
                    f"{args.data} (meta.json) uses {brief(meta['tokenizer'])}: its outputs would be other tokens")
    if "distilled" in meta:
        p.error(f"--data {args.data} is itself a distilled folder (of {meta['distilled'].get('source')}): "
                "distil the original task")
    target_len = args.target_len or ckpt.get("target_len")
    if not target_len:
        p.error(f"--teacher {args.teacher} records no target_len: give --target_len")
    me = identity(args, ckpt, target_len)

    out_meta = os.path.join(args.out_dir, "meta.json")
    if os.path.exists(out_meta):  # a finished folder: reused when it is this distillation, else refused
        prev = read_json(out_meta).get("distilled")
        if prev is None or not same(prev, me):
            p.error(f"--out_dir {args.out_dir} holds another task folder or a distillation by another teacher or "
                    f"from another source ({(prev or {}).get('teacher')}, {(prev or {}).get('source')}); "
                    "delete it or give another --out_dir")
        print(f"{args.out_dir}: already distilled by this teacher from this source ({prev['seconds']:.0f} s); reused")
        return prev
    id_path = os.path.join(args.out_dir, IDENTITY)
    if os.path.exists(id_path) and not same(read_json(id_path), me):
        prev = read_json(id_path)
        p.error(f"--out_dir {args.out_dir} holds a partial distillation by another teacher or from another "
                f"source ({prev.get('teacher')}, {prev.get('source')}); delete it or give another --out_dir")
    if os.path.isdir(args.out_dir) and not os.path.exists(id_path) and os.listdir(args.out_dir):
        p.error(f"--out_dir {args.out_dir} is not empty and holds no distillation; give an empty or new folder")

    rows = load_split(args.data, "train")
    ids = [str(r["id"]) for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{args.data}/train.jsonl: ids are not unique; a distillation could not be resumed")
    os.makedirs(args.out_dir, exist_ok=True)
    prev_seconds = read_json(id_path).get("seconds", 0.0) if os.path.exists(id_path) else 0.0
    write_json(id_path, {**me, "seconds": prev_seconds})
    part = os.path.join(args.out_dir, PARTIAL)
    done = read_partial(part, set(ids))
    # keep the complete lines only, atomically, so that appends go after a whole line
    atomic_write(part, lambda f: f.writelines(json.dumps({"id": k, "target": v}, ensure_ascii=False) + "\n"
                                              for k, v in done.items()))
    todo = [r for r in rows if str(r["id"]) not in done]
    print(f"{args.teacher}: AR, step {ckpt.get('step')}; {len(rows) - len(todo)} of {len(rows)} train inputs "
          f"already decoded; greedy up to {target_len} tokens, batch {args.batch_size}")

    import torch
    from tqdm import tqdm

    from evaluate import predict, to_metric_format
    from model import model_from_checkpoint
    if args.threads:
        torch.set_num_threads(args.threads)
    model = model_from_checkpoint(ckpt, args.device).eval()
    # evaluate.predict's settings: AR greedy (temperature 0), one output per input, no sampler settings
    settings = SimpleNamespace(target_len=target_len, temperature=0.0, top_k=None, num_outputs=1, seed=0,
                               batch_size=args.batch_size, device=args.device, dtype="float32",
                               num_steps=None, num_samples=None, order=None, schedule=None, threshold=None)
    t0 = time.time()
    with torch.no_grad():
        for s in tqdm(range(0, len(todo), args.batch_size), desc="distilling", disable=not todo):
            outputs = to_metric_format("bleu", predict(model, ckpt, tok, todo[s: s + args.batch_size], settings))
            with open(part, "a", encoding="utf-8") as f:
                for k, text in outputs.items():
                    f.write(json.dumps({"id": k, "target": text}, ensure_ascii=False) + "\n")
                    done[k] = text
                f.flush()
                os.fsync(f.fileno())
            write_json(id_path, {**me, "seconds": prev_seconds + time.time() - t0})
    seconds = prev_seconds + time.time() - t0

    # the distilled train split: every source row, its target replaced; then the other splits as they are
    out_rows = [{**r, "target": done[str(r["id"])]} for r in rows]
    atomic_write(os.path.join(args.out_dir, "train.jsonl"),
                 lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in out_rows))
    for split in meta["splits"]:
        if split != "train":
            src = os.path.join(args.data, f"{split}.jsonl")
            atomic_write(os.path.join(args.out_dir, f"{split}.jsonl"), lambda f: shutil.copyfileobj(open(src, "rb"), f),
                         mode="wb")
    same_as_source = sum(r["target"] == o["target"] for r, o in zip(rows, out_rows))
    distilled = dict(me, teacher_tokenizer=ckpt["tokenizer"], seconds=round(seconds, 1), batch_size=args.batch_size,
                     threads=torch.get_num_threads(),
                     rows=len(rows), identical_to_reference=same_as_source,
                     empty_outputs=sum(not o["target"].strip() for o in out_rows),
                     command=" ".join(["python", "runs/distill.py"] + list(sys.argv[1:] if argv is None else argv)))
    write_json(out_meta, {**meta, "distilled": distilled})
    os.remove(part)
    os.remove(id_path)
    print(f"{args.out_dir}: {len(rows)} train targets from the teacher ({same_as_source} identical to the reference, "
          f"{distilled['empty_outputs']} empty) in {seconds:.0f} s")
    return distilled


if __name__ == "__main__":
    from data.common import cli
    cli(main)

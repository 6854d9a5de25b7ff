"""
Batches for the prefix LM: every example is [prefix ; target], right-padded in a batch, and handed
to the model as (idx (B, T), prefix_len (B,), seq_len (B,)).

Task examples (jsonl rows with `input` and `target`) are encoded once by `encode_task`:
    prefix = tok.encode(input), cut to block_size - target_len tokens (the start is kept: task
             prompts put their cue words first)
    target = tok.encode(target) + [EOS], cut to target_len tokens; for the diffusion objective it is
             then padded with EOS to exactly target_len, so the model learns the length (paper §3)

Data folders are made by data/<name>/prepare.py: a pretraining corpus holds train.bin / val.bin
(uint16 ids, EOS after every document) and meta.json (with the tokenizer); a task holds train.jsonl /
validation.jsonl and meta.json (task, metric). `data_kind`, `load_corpus` and `load_task_split` read
them; a missing file names the command that makes it. Every draw is a function of its seeds
(`corpus_batch` of a generator, `epoch_indices` of (seed, position)), so any batch can be re-drawn.
"""
import os

import numpy as np
import torch

from data.common import read_json, read_jsonl
from data.tokenizer import brief

OBJECTIVES = ("ar", "diffusion")


def encode_task(tok, rows, target_len, block_size, objective):
    """List of (prefix ids, target ids) for task rows; see the module docstring."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not 1 <= target_len < block_size:
        raise ValueError(f"target_len must be in [1, block_size={block_size}), got {target_len}")
    out = []
    for row in rows:
        # an empty input gets EOS (which ends every pretraining document) as its prefix, so the
        # first target token is predicted like every other one
        prefix = tok.encode(row["input"])[: block_size - target_len] or [tok.eos_id]
        target = (tok.encode(row["target"]) + [tok.eos_id])[:target_len]
        if objective == "diffusion":
            target = target + [tok.eos_id] * (target_len - len(target))
        out.append((prefix, target))
    return out


def pad_batch(seqs, pad_id, device="cpu"):
    """Right-pad lists of ids -> (B, T) long tensor and their lengths (B,)."""
    T = max(1, max(len(s) for s in seqs))
    idx = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        idx[b, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return idx.to(device), torch.tensor([len(s) for s in seqs], device=device)


def task_batch(examples, pad_id, device="cpu"):
    """(prefix, target) pairs -> (idx, prefix_len, seq_len) for training or scoring."""
    idx, seq_len = pad_batch([p + t for p, t in examples], pad_id, device)
    return idx, torch.tensor([len(p) for p, _ in examples], device=device), seq_len


def corpus_batch(tokens, batch_size, block_size, generator, device="cpu"):
    """
    Random windows of a token stream (a np.memmap of uint16), each split at a uniformly random
    point into prefix and target (paper §3: prefix-LM pretraining on a document stream). The draw
    depends only on `generator`, so a batch is reproducible from its seed.
    """
    if len(tokens) <= block_size:
        raise ValueError(f"the corpus has {len(tokens)} tokens, fewer than block_size+1={block_size + 1}")
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator).tolist()
    idx = torch.from_numpy(np.stack([tokens[s: s + block_size] for s in starts]).astype(np.int64))
    prefix_len = torch.randint(1, block_size, (batch_size,), generator=generator)
    seq_len = torch.full((batch_size,), block_size)
    return idx.to(device), prefix_len.to(device), seq_len.to(device)


# ----------------------------------------------------------------------------------------------
# Data folders. A pretraining corpus holds train.bin / val.bin / meta.json; a task holds
# train.jsonl / validation.jsonl / meta.json. Both are made by a data/<name>/prepare.py.

def prepare_hint(folder):
    """The command that makes `folder`: from its meta.json if any, else data/<name>/prepare.py."""
    meta = os.path.join(folder, "meta.json")
    if os.path.exists(meta):
        try:
            command = read_json(meta).get("command")  # each prepare script records its command line
        except ValueError:
            command = None
        if command:
            return f"run `{command}`"
    parts = os.path.normpath(os.path.abspath(folder)).split(os.sep)
    name = parts[parts.index("data") + 1] if "data" in parts[:-1] else parts[-1]
    if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), name, "prepare.py")):
        return f"run `python data/{name}/prepare.py --out_dir {folder}`"
    return "make it with the data/<name>/prepare.py that writes it (see its --out_dir)"


def require(path, folder):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {prepare_hint(folder)}")
    return path


def data_kind(folder):
    """'corpus' (train.bin) or 'task' (a meta.json with a metric, or train.jsonl); else a clear error."""
    if os.path.exists(os.path.join(folder, "train.bin")):
        return "corpus"
    meta = os.path.join(folder, "meta.json")
    if os.path.exists(os.path.join(folder, "train.jsonl")) or os.path.exists(meta) and "metric" in read_json(meta):
        return "task"
    raise FileNotFoundError(f"{os.path.join(folder, 'train.bin')} (a pretraining corpus) or train.jsonl (a task) "
                            f"not found: {prepare_hint(folder)}")


def load_corpus(folder):
    """(train tokens, val tokens, meta): np.memmap uint16 token streams and the meta.json dict."""
    meta = read_json(require(os.path.join(folder, "meta.json"), folder))
    if "tokenizer" not in meta:
        raise ValueError(f"{folder}/meta.json has no 'tokenizer': {prepare_hint(folder)}")
    train, val = (np.memmap(require(os.path.join(folder, f"{split}.bin"), folder), dtype=np.uint16, mode="r")
                  for split in ("train", "val"))
    return train, val, meta


def load_task_split(folder, split):
    """Rows of {folder}/{split}.jsonl (each needs `input` and `target`; at least one)."""
    path = require(os.path.join(folder, f"{split}.jsonl"), folder)
    rows = read_jsonl(path, required=("input", "target"))
    if not rows:
        raise ValueError(f"{path}: empty, no rows: {prepare_hint(folder)}")
    return rows


def task_meta(folder):
    """The task's meta.json (task name, metric) or, if absent, the folder name as the task."""
    path = os.path.join(folder, "meta.json")
    meta = read_json(path) if os.path.exists(path) else {}
    return dict(name=meta.get("task", os.path.basename(os.path.normpath(folder))),
                metric=meta.get("metric"), folder=os.path.normpath(folder))


def check_teacher_tokenizer(folder, tok, model):
    """A distilled task folder's targets are its teacher's tokens decoded to text: a model fine-tuned on
    them must have the teacher's tokenizer (ValueError naming both otherwise)."""
    path = os.path.join(folder, "meta.json")
    distilled = read_json(path).get("distilled") if os.path.exists(path) else None
    if not distilled:
        return
    try:
        tok.check(distilled["teacher_tokenizer"], what=f"the teacher {distilled['teacher']}")
    except ValueError:
        raise ValueError(f"--data {folder} was distilled from the teacher {distilled['teacher']}, whose tokenizer "
                         f"{brief(distilled['teacher_tokenizer'])} is not the tokenizer {brief(tok.state())} of "
                         f"--init_from {model}: fine-tune a model with the teacher's tokenizer") from None


def auto_target_len(tok, rows, block_size):
    """The longest target + EOS, capped at half the block (the prefix keeps the other half)."""
    return min(max(len(tok.encode(r["target"])) + 1 for r in rows), block_size // 2)


def epoch_indices(n, start, count, seed):
    """
    Example indices for positions [start, start + count) of an endless stream of epochs, each a
    fresh permutation of range(n) seeded by (seed, epoch): every example once per epoch, and the
    indices of a position depend on nothing else (exact resume, same on 1 or N processes).
    """
    perms, out = {}, []
    for p in range(start, start + count):
        epoch = p // n
        if epoch not in perms:
            perms[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed_of(seed, epoch)))
        out.append(int(perms[epoch][p % n]))
    return out


def seed_of(*keys):
    """A 63-bit seed that is a function of the integer keys (independent streams per key tuple)."""
    a, b = np.random.SeedSequence([int(k) for k in keys]).generate_state(2)
    return int(a) << 31 ^ int(b)

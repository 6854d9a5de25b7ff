"""
Small I/O helpers shared by every data/*/prepare.py and by the scripts: atomic writes (a crash
never leaves a half-written file; checkpoints too), jsonl reading with errors that name the file and
line, token .bin files, downloads checked by sha256, and bad command-line input reported in one line
(argparse types that name the flag, `cli` for a script's main, `check_device`), and the run folders
of train.py and adapt.py (one run per --out_dir; a checkpoint and its sidecar agree after any
interruption; the temp files of a killed save are removed at the next start).
"""
import argparse
import contextlib
import glob
import gzip
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid

import numpy as np


def atomic_write(path, write_fn, mode="w"):
    """Write a file through `write_fn(f)` into a temp file beside `path`, then rename it over."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # the writer's pid in the name: remove_stale_temps removes only those of processes now gone
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=f".tmp_{os.getpid()}_")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files: give the usual permissions
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(folder):
    """Remove the temp files that a killed atomic_write (SIGKILL, power loss) left in `folder`; a
    temp file of a process still running (another torchrun rank) is left alone. The removed names."""
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(os.fspath(folder)), ".tmp_*")):
        name = os.path.basename(tmp)
        pid = name[len(".tmp_"):].split("_")[0] if name.count("_") >= 2 else ""  # .tmp_<pid>_<random>
        if pid.isdigit() and (int(pid) == os.getpid() or pid_alive(int(pid))):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def deferred_signals(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold Ctrl-C and SIGTERM until the block ends (then deliver them): files written together
    (a checkpoint, its sidecar, best.pt) are never left half-updated by them. SIGKILL cannot be
    held: the write order and the check at load cover it."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


def write_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n"))


def sidecar_path(path):
    return os.path.splitext(os.fspath(path))[0] + ".json"


def save_checkpoint(path, ckpt, sidecar=None):
    """torch.save through atomic_write: a crash mid-save leaves the previous checkpoint intact. With a
    sidecar (a small JSON a human can cat, written beside it as <name>.json), the checkpoint is
    written first and holds the sidecar and a save id that the sidecar repeats: load_checkpoint
    rewrites a sidecar that a crash between the two writes left behind."""
    import torch
    if sidecar is not None:
        save_id = uuid.uuid4().hex
        sidecar = {**sidecar, "save_id": save_id}
        ckpt = {**ckpt, "sidecar": sidecar, "save_id": save_id}
    atomic_write(path, lambda f: torch.save(ckpt, f), mode="wb")
    if sidecar is not None:
        write_json(sidecar_path(path), sidecar)


def load_checkpoint(path, device="cpu"):
    """A checkpoint dict; its model state has `_orig_mod.` / `module.` prefixes stripped."""
    import torch
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path} is a folder, not a checkpoint file (ckpt.pt or best.pt in it?)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch's own message runs to many lines: its kind is enough here
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or not {"model", "config"} <= set(ckpt):
        raise ValueError(f"{path}: not an ar2diff checkpoint (needs 'model' and 'config')")
    ckpt["model"] = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in ckpt["model"].items()}
    if isinstance(ckpt.get("sidecar"), dict):  # the sidecar of another save (killed in between): remade
        side = sidecar_path(path)
        try:
            stale = read_json(side).get("save_id") != ckpt.get("save_id")
        except (OSError, ValueError, AttributeError):
            stale = True
        if stale:
            with contextlib.suppress(OSError):
                write_json(side, ckpt["sidecar"])
                print(f"note: {side} did not describe {path} (a save was interrupted): rewritten", file=sys.stderr)
    return ckpt


def weights_mismatch(path, error):
    """A load_state_dict RuntimeError as one line naming the checkpoint: its first mismatch."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    first = next((ln for ln in lines[1:] if "mismatch" in ln or "key" in ln.lower()), lines[-1] if lines else "")
    return ValueError(f"{path}: its weights do not fit its config ({first.split('. ')[0].rstrip('.')})")


def check_device(flag, device):
    """`device` (cpu, cuda, cuda:N, ...) usable here, or a ValueError naming the flag."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{flag} {device}: not a device (cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {device}: CUDA is not available on this machine; use {flag} cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def command_line(script, argv):
    """The command that reruns a data/<name>/prepare.py (`script` is its __file__): kept in meta.json."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return shlex.join(["python", os.path.relpath(os.path.abspath(script), root), *argv])


def write_meta(out_dir, meta, script, argv):
    """A task's meta.json, with the command that remakes it (`script` is the prepare.py's __file__)."""
    meta["command"] = command_line(script, argv)
    write_json(os.path.join(out_dir, "meta.json"), meta)
    return meta


def write_jsonl(path, rows):
    atomic_write(path, lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_json(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


def read_jsonl(path, required=()):
    """List of dicts from a .jsonl (or .jsonl.gz) file; a malformed line, a line that is not UTF-8
    or a missing field names file and line."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as f:  # bytes: a line that is not UTF-8 is named, not a codec error
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 (byte {raw[e.start]:#04x} at column "
                                 f"{e.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing field(s) {missing}")
            rows.append(row)
    return rows


def local_file(flag, src, name):
    """The file a --src style flag gives: `src` itself, or `name` inside the folder `src`."""
    path = src if os.path.isfile(src) else os.path.join(src, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag} {src}: no {name} there" if os.path.isdir(src) else
                                f"{flag} {src}: no such file or folder (expected {name} or a folder holding it)")
    return path


def flag_type(convert, ok, what):
    """An argparse type; argparse reports a bad value as 'argument --flag: <what>, got ...'."""
    def parse(s):
        try:
            if ok(v := convert(s)):
                return v
        except (ValueError, RuntimeError):
            pass
        raise argparse.ArgumentTypeError(f"{what}, got {s!r}")
    return parse


INT = flag_type(int, lambda v: v >= 1, "must be an integer >= 1")
INT0 = flag_type(int, lambda v: v >= 0, "must be an integer >= 0")
FLOAT0 = flag_type(float, lambda v: 0 <= v < float("inf"), "must be a number >= 0")
FRACTION = flag_type(float, lambda v: 0 <= v < 1, "must be in [0, 1)")
POSITIVE = flag_type(float, lambda v: 0 < v < float("inf"), "must be a number > 0")


def device_flag(s):
    """An argparse type for --device: auto, or a device this machine has (check_device)."""
    if s == "auto":
        return s
    try:
        return check_device("--device", s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--device {s}: ") + f", got {s!r}") from None


def cli(main, prefix="error", errors=(OSError, ValueError, RuntimeError)):
    """Run a script's main(): bad input (a missing or malformed file, a failed download, a run
    folder that holds another run) ends it with one line that names the file, line or flag, not a
    traceback, and exit status 2, as argparse's own flag errors."""
    try:
        return main()
    except errors as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        sys.exit(2)


def write_tokens(path, ids):
    """Token ids -> a flat uint16 .bin (all our vocabularies are < 65536), written atomically."""
    arr = np.asarray(ids, dtype=np.uint16)
    atomic_write(path, lambda f: f.write(arr.tobytes()), mode="wb")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url, dest, sha256=None):
    """Download `url` to `dest` (skipped if already there and valid), checking its sha256."""
    if os.path.exists(dest) and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    print(f"downloading {url} -> {dest}")
    tmp = dest + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    try:
        urllib.request.urlretrieve(url, tmp)
    except OSError as e:
        raise RuntimeError(f"could not download {url} ({e}); pass a local copy with --src") from None
    if sha256 is not None and sha256_of(tmp) != sha256:
        os.remove(tmp)
        raise ValueError(f"{url}: sha256 mismatch (expected {sha256}); refusing the file")
    os.replace(tmp, dest)
    return dest


# ----------------------------------------------------------------------------------------------
# Run folders (train.py, adapt.py): one run per --out_dir, its identity recorded in every
# checkpoint and sidecar; after an interruption the files are made to agree again.

SHAPE = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")  # what makes two models the same model
RUN_FLAGS = dict(objective="--objective", noise="--noise", block_len="--block_len", data="--data", model="--model",
                 source="--init_from")  # a run folder holds one run: these, the same from start to end


def git_commit():
    """The checkout's commit (recorded in checkpoints), or None outside a git checkout."""
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def is_hf_name(init_from):
    """gpt2, gpt2-medium, ...: GPT-2 weights from Hugging Face (a file of that name wins)."""
    return init_from.startswith("gpt2") and not os.path.exists(init_from)


def source_id(init_from):
    """How a run records its start: scratch, a GPT-2 name, or a checkpoint's absolute path."""
    return init_from if init_from == "scratch" or is_hf_name(init_from) else os.path.abspath(init_from)


def run_identity(objective, noise, block_len, data, config, source):
    """What a run folder's run is: a run of another one in the same --out_dir is refused."""
    return dict(objective=objective, noise=noise, block_len=block_len, data=os.path.abspath(data),
                model={k: config[k] for k in SHAPE}, source=source)


def recorded_run(out_dir):
    """The identity of the run --out_dir holds (None if none): from its sidecar (older sidecars: the
    fields they have), else from the checkpoint itself."""
    for name in ("ckpt", "best"):
        path = os.path.join(out_dir, name)
        if os.path.exists(path + ".json"):
            old = read_json(path + ".json")
        elif os.path.exists(path + ".pt"):
            old = load_checkpoint(path + ".pt")
        else:
            continue
        if old.get("run"):
            return old["run"]
        legacy = {k: old[k] for k in ("objective", "noise", "block_len") if k in old}
        if old.get("data"):
            legacy["data"] = os.path.abspath(old["data"])
        if isinstance(old.get("config"), dict) and all(k in old["config"] for k in SHAPE):
            legacy["model"] = {k: old["config"][k] for k in SHAPE}
        return legacy
    return None


def check_out_dir(out_dir, run, overwrite=False):
    """Refuse an --out_dir that is a file, or that holds a run of another objective, data, model or
    source checkpoint (unless --overwrite): its checkpoints would be replaced by another run's."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out_dir {out_dir} is a file, not a folder")
    old = recorded_run(out_dir) if os.path.isdir(out_dir) else None
    if old is None or overwrite:
        return

    def show(k, v):
        return f"a {v['n_layer']}-layer {v['n_embd']}-dim model (vocab {v['vocab_size']}, block {v['block_size']})" \
            if k == "model" else f"{RUN_FLAGS[k]} {v if v is not None else 'none'}"
    diff = [k for k in run if k in old and old[k] != run[k]]
    if "objective" in diff:  # an AR run has no noise or blocks to compare
        diff = [k for k in diff if k not in ("noise", "block_len")]
    if diff:
        raise ValueError(f"--out_dir {out_dir} holds another run: {', '.join(show(k, old[k]) for k in diff)}, not "
                         f"{', '.join(show(k, run[k]) for k in diff)}; pass another --out_dir, or --overwrite to "
                         f"replace it")


def sidecar_of(ckpt):
    """The small JSON a human can cat beside a checkpoint: everything but the weights."""
    from data.tokenizer import brief
    sidecar = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "config", "sidecar")}
    sidecar.update(config=ckpt["config"], val_loss=ckpt["history"][-1]["val_loss"], tokenizer=brief(ckpt["tokenizer"]))
    return sidecar


def check_best(out_dir, ckpt):
    """Resume: best.pt must hold ckpt.pt's best step. A save interrupted in an older train.py (ckpt.pt
    written before best.pt) could leave best.pt behind it; the run then goes on with best.pt's step as its best."""
    path = os.path.join(out_dir, "best.pt")
    if ckpt.get("best_step") is None or not os.path.exists(path):
        return ckpt.get("best_val"), ckpt.get("best_step")
    best = load_checkpoint(path)
    if best.get("step") is not None and best["step"] < ckpt["best_step"] and best.get("best_val") is not None:
        print(f"note: {path} holds step {best['step']}, not the best step {ckpt['best_step']} that ckpt.pt records "
              f"(an interrupted save); step {best['step']} stays the best")
        return best["best_val"], best["step"]
    return ckpt["best_val"], ckpt["best_step"]


# ----------------------------------------------------------------------------------------------
# Pretraining corpora: every data/*/prepare.py that makes one writes it through these, so the
# layout is defined once: train.bin / val.bin are flat uint16 ids with tok.eos_id after every
# document, and meta.json holds the tokenizer, the counts and the sources.

def encode_docs(docs, tok):
    """(source, text) pairs -> (source, uint16 ids) pairs, lazily: a caller that stops early
    (take_tokens with a budget) never pays for the rest."""
    for source, text in docs:
        yield source, np.asarray(tok.encode(text), dtype=np.uint16)


def take_tokens(docs, budget=None):
    """(source, ids) pairs in order until `budget` tokens, counting each document's EOS; the
    last document is cut to fit, so a mixture hits its fractions exactly. None: take all."""
    out, used = [], 0
    for source, ids in docs:
        if budget is not None and used + len(ids) + 1 > budget:
            room = budget - used - 1
            if room > 0:
                out.append((source, ids[:room]))
            break
        out.append((source, ids))
        used += len(ids) + 1
    return out


def count_tokens(docs):
    return sum(len(ids) + 1 for _, ids in docs)


def write_corpus(out_dir, docs, tok, val_frac, meta):
    """Write train.bin, val.bin and meta.json from (source, ids) pairs given in the order to
    write (the caller shuffles). The split is by document and per source, so val has the same
    mixture as train: a document goes to val while its source's val share stays <= val_frac."""
    totals, val_used = {}, {}
    for source, ids in docs:
        totals[source] = totals.get(source, 0) + len(ids) + 1
    eos = np.array([tok.eos_id], dtype=np.uint16)
    parts = {"train": [], "val": []}
    stats = {s: dict(name=s, docs=0, tokens=0, train_tokens=0, val_tokens=0) for s in totals}
    for source, ids in docs:
        n = len(ids) + 1
        split = "val" if val_used.get(source, 0) + n <= val_frac * totals[source] else "train"
        if split == "val":
            val_used[source] = val_used.get(source, 0) + n
        parts[split] += [np.asarray(ids, dtype=np.uint16), eos]
        st = stats[source]
        st["docs"] += 1
        st["tokens"] += n
        st[f"{split}_tokens"] += n
    arrays = {k: np.concatenate(v) if v else np.zeros(0, np.uint16) for k, v in parts.items()}
    if len(arrays["val"]) == 0 and val_frac > 0:
        raise ValueError(f"{out_dir}: val_frac={val_frac} put no document in val.bin; "
                         f"raise it or give more documents")
    total = sum(totals.values())
    for st in stats.values():
        st["fraction"] = round(st["tokens"] / total, 4)
    write_tokens(os.path.join(out_dir, "train.bin"), arrays["train"])
    write_tokens(os.path.join(out_dir, "val.bin"), arrays["val"])
    meta = {"tokenizer": tok.state(), "train_tokens": int(len(arrays["train"])),
            "val_tokens": int(len(arrays["val"])),
            "sources": sorted(stats.values(), key=lambda st: (-st["tokens"], st["name"])), **meta}
    write_json(os.path.join(out_dir, "meta.json"), meta)
    return meta

"""train.py's contracts: learning, exact resume (stopped or killed), DDP equivalence, atomic
checkpoints, clean stops, task fine-tuning, and clear errors on bad input."""
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import train
from data.common import load_checkpoint, write_json
from data.loader import epoch_indices
from data.tokenizer import get_tokenizer
from tests.tiny_data import one_thread, tiny_flags, write_tiny_corpus, write_tiny_task  # noqa: F401 (autouse fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBJECTIVES = [("ar", None), ("diffusion", "mask"), ("diffusion", "uniform")]


def objective_flags(objective, noise):
    return ["--objective", objective] + (["--noise", noise] if noise else [])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def ar_ckpt(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ar")
    train.main(tiny_flags(corpus, out, max_steps=4))
    return os.path.join(out, "ckpt.pt")


def test_lr_schedule():
    args = train.parser.parse_args(["--lr", "1.0", "--min_lr", "0.1", "--warmup_steps", "4", "--max_steps", "14"])
    assert [train.lr_at(s, args) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert train.lr_at(9, args) == pytest.approx(0.55) and train.lr_at(14, args) == pytest.approx(0.1)
    args.lr_schedule = "constant"
    assert train.lr_at(4, args) == train.lr_at(1000, args) == 1.0


def test_epoch_indices():
    n = 7
    stream = epoch_indices(n, 0, 3 * n, seed=5)
    assert all(sorted(stream[e * n: (e + 1) * n]) == list(range(n)) for e in range(3))  # once per epoch
    assert stream[n: 2 * n] != stream[:n]  # a fresh order every epoch
    pieces = [epoch_indices(n, s, 4, seed=5) for s in range(0, 3 * n, 4)]  # any cut, same stream
    assert sum(pieces, [])[: 3 * n] == stream and epoch_indices(n, 0, n, seed=6) != stream[:n]


@pytest.mark.parametrize("objective,noise", OBJECTIVES)
def test_loss_falls(corpus, tmp_path, objective, noise):
    out = train.main(tiny_flags(corpus, tmp_path, max_steps=30, eval_interval=30, micro_batch_size=8)
                     + objective_flags(objective, noise))
    first, last = out["history"][0]["val_loss"], out["history"][-1]["val_loss"]
    assert last < 0.75 * first, (first, last)
    losses = [loss for _, loss in out["losses"]]
    assert sum(losses[-5:]) < 0.75 * sum(losses[:5])
    assert out["objective"] == objective and out["noise"] == noise


def resume_flags(corpus, out_dir, **kw):  # dropout, accumulation, noise: every random draw in play
    return tiny_flags(corpus, out_dir, decay_steps=8, dropout=0.1, **kw) + objective_flags("diffusion", "mask")


@pytest.mark.parametrize("extra", [[], ["--complementary"]])
def test_resume_is_exact(corpus, tmp_path, extra):
    """A resumed run keeps the saved run's flags (--complementary too) and repeats its losses."""
    full = train.main(resume_flags(corpus, tmp_path / "full") + extra)
    train.main(resume_flags(corpus, tmp_path / "cut", max_steps=4) + extra)
    resumed = train.main(["--init_from", "resume", "--out_dir", str(tmp_path / "cut"), "--max_steps", "8"])
    assert resumed["losses"] == full["losses"][4:]  # same floats, step for step
    assert resumed["history"] == full["history"]
    a, b = (load_checkpoint(tmp_path / d / "ckpt.pt") for d in ("full", "cut"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert b["args"]["init_from"] == "scratch" and b["args"]["max_steps"] == 8
    assert b["args"]["complementary"] == bool(extra)


def test_block_warmup_and_position_masking(corpus, tmp_path, monkeypatch):
    """--block_warmup N trains blocks of 1, 2 (below --block_len 4) in equal stages over the first N steps, then 4;
    --position_masking ramps the training masks; validation stays at blocks of 4 with the plain masks."""
    calls, orig = [], train.diffusion_loss
    monkeypatch.setattr(train, "diffusion_loss",
                        lambda *a, **k: calls.append((k["block_len"], k["ramp"])) or orig(*a, **k))
    out = train.main(tiny_flags(corpus, tmp_path / "w", max_steps=8, eval_interval=8, micro_batch_size=8) +
                     objective_flags("diffusion", "mask") + ["--block_len", "4", "--block_warmup", "6",
                                                             "--position_masking"])
    assert [b for b, ramp in calls if ramp] == [1, 1, 1, 2, 2, 2, 4, 4]  # the training steps 0-7
    assert {c for c in calls if not c[1]} == {(4, False)} and len(out["history"]) == 2  # validation at 0 and 8
    assert load_checkpoint(tmp_path / "w" / "ckpt.pt")["block_len"] == 4


def test_resume_after_kill(corpus, tmp_path):
    """A process killed mid-step (SIGKILL) resumes from its last checkpoint to the same losses."""
    flags = resume_flags(corpus, tmp_path / "killed")
    # loss calls: 2 (eval at step 0) + 4 x 2 (steps 0-3) + 2 (eval at 4, then ckpt) + 2 (step 4) + 1 -> kill
    code = ("import os, signal, sys, train\n"
            "orig, calls = train.diffusion_loss, []\n"
            "def loss(*a, **k):\n"
            "    calls.append(1)\n"
            "    if len(calls) == 15:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return orig(*a, **k)\n"
            "train.diffusion_loss = loss\n"
            "train.main(sys.argv[1:])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as this process: a CPU sum's order depends on the threads
    proc = subprocess.run([sys.executable, "-c", code, *flags], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert "step 4 | loss" in proc.stdout and "step 5 | loss" not in proc.stdout  # died inside step 5
    assert load_checkpoint(tmp_path / "killed" / "ckpt.pt")["step"] == 4
    resumed = train.main(["--init_from", "resume", "--out_dir", str(tmp_path / "killed")])
    full = train.main(resume_flags(corpus, tmp_path / "full"))
    assert resumed["losses"] == full["losses"][4:] and resumed["history"] == full["history"]


def logged_losses(stdout):
    return [(int(s), float(v)) for s, v in re.findall(r"^step (\d+) \| loss ([\d.]+)", stdout, re.M)]


def test_ddp_matches_single_process(corpus, tmp_path):
    """torchrun with 2 CPU processes (gloo) trains what 1 process trains for the same global batch."""
    flags = tiny_flags(corpus, tmp_path / "ddp", micro_batch_size=2, max_steps=6, eval_interval=3, dropout=0.1)
    flags += objective_flags("diffusion", "uniform")  # two passes per loss, DDP-wrapped
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "train.py", *flags], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es) x 2 accumulation step(s)" in proc.stdout
    single = train.main(flags + ["--out_dir", str(tmp_path / "one")])  # the last --out_dir wins
    ddp_losses = logged_losses(proc.stdout)
    assert [s for s, _ in ddp_losses] == list(range(6))
    for (_, a), (_, b) in zip(ddp_losses, single["losses"]):
        assert a == pytest.approx(b, abs=1e-4)
    with open(tmp_path / "ddp" / "ckpt.json") as f:
        ddp_history = json.load(f)["history"]
    for a, b in zip(ddp_history, single["history"]):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
    a, b = (load_checkpoint(tmp_path / d / "ckpt.pt")["model"] for d in ("ddp", "one"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-4)


def test_crash_during_save_keeps_previous_checkpoint(corpus, tmp_path, monkeypatch):
    train.main(tiny_flags(corpus, tmp_path, max_steps=4, decay_steps=8))
    before = load_checkpoint(tmp_path / "ckpt.pt")
    real_save = torch.save

    def crashing_save(obj, f, *a, **k):  # writes part of the file, then dies like a full disk
        real_save(obj, f, *a, **k)
        f.truncate(100)
        raise OSError("No space left on device")
    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="No space"):
        train.main(["--init_from", "resume", "--out_dir", str(tmp_path), "--max_steps", "8"])
    monkeypatch.undo()
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert after["step"] == before["step"] == 4
    assert all(torch.equal(after["model"][k], before["model"][k]) for k in before["model"])
    assert sorted(os.listdir(tmp_path)) == ["best.json", "best.pt", "ckpt.json", "ckpt.pt"]  # no temp file left
    train.main(["--init_from", "resume", "--out_dir", str(tmp_path), "--max_steps", "8"])  # and it resumes


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    orig, training_calls = train.ar_loss, []

    def loss(model, *a):
        training_calls.append(model.training)
        value = orig(model, *a)
        return value * float("nan") if sum(training_calls) > 10 else value  # step 5 goes bad
    monkeypatch.setattr(train, "ar_loss", loss)
    with pytest.raises(SystemExit, match="step 5: the loss is nan"):
        train.main(tiny_flags(corpus, tmp_path))
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["step"] == 4 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_early_stopping(corpus, tmp_path):
    # lr 0: the validation loss never improves, so the run stops `patience` evaluations after step 0
    out = train.main(tiny_flags(corpus, tmp_path, lr=0.0, patience=2, eval_interval=1, max_steps=10))
    assert out["step"] == 2 and [h["step"] for h in out["history"]] == [0, 1, 2] and out["best_step"] == 0
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 0 and load_checkpoint(tmp_path / "ckpt.pt")["step"] == 2
    again = train.main(["--init_from", "resume", "--out_dir", str(tmp_path)])  # it stays stopped
    assert again["step"] == 2 and again["losses"] == []


@pytest.mark.parametrize("objective,noise", OBJECTIVES[:2])
def test_task_finetune(corpus, tmp_path, objective, noise):
    task = write_tiny_task(tmp_path / "reverse")
    base = tmp_path / "base"
    train.main(tiny_flags(corpus, base, max_steps=2, block_size=64) + objective_flags(objective, noise))
    out = train.main(tiny_flags(task, tmp_path / "ft", init_from=base / "ckpt.pt", max_steps=12, eval_interval=12,
                                lr=1e-3, lr_schedule="constant", warmup_steps=0))
    assert out["target_len"] == 7  # the longest target (6 bytes) + EOS
    assert out["history"][-1]["val_loss"] < out["history"][0]["val_loss"]
    ckpt = load_checkpoint(tmp_path / "ft" / "best.pt")
    assert ckpt["target_len"] == 7 and ckpt["objective"] == objective and ckpt["noise"] == noise
    assert ckpt["task"]["name"] == "reverse" and ckpt["task"]["folder"] == os.path.normpath(task)
    out = train.main(tiny_flags(task, tmp_path / "ft10", init_from=base / "ckpt.pt", max_steps=1, target_len=10))
    assert out["target_len"] == 10 and load_checkpoint(tmp_path / "ft10" / "ckpt.pt")["target_len"] == 10


def test_loss_weight_defaults_and_validation_is_the_elbo(corpus, tmp_path):
    task = write_tiny_task(tmp_path / "reverse")
    base = tmp_path / "base"
    train.main(tiny_flags(corpus, base, max_steps=2, block_size=64) + objective_flags("diffusion", "mask"))
    assert load_checkpoint(base / "ckpt.pt")["args"]["loss_weight"] == "elbo"  # a corpus: the ELBO
    runs = {}
    for weight in (None, "elbo", "flat"):
        flags = tiny_flags(task, tmp_path / str(weight), init_from=base / "ckpt.pt", max_steps=3, eval_interval=3)
        runs[weight] = train.main(flags + (["--loss_weight", weight] if weight else []))
    assert load_checkpoint(tmp_path / "None" / "ckpt.pt")["args"]["loss_weight"] == "flat"  # a task: flat
    assert runs[None]["losses"] == runs["flat"]["losses"] != runs["elbo"]["losses"]  # the weight trains
    val0 = {w: r["history"][0]["val_loss"] for w, r in runs.items()}  # step 0: the same model and noise
    assert val0["elbo"] == val0["flat"] == val0[None]  # validation reports the ELBO whatever trains


def test_missing_data_names_the_prepare_command(corpus, tmp_path):
    missing = tmp_path / "data" / "embedded" / "pretrain"
    with pytest.raises(FileNotFoundError, match=r"embedded/pretrain/train.bin .*python data/embedded/prepare.py"):
        train.main(tiny_flags(missing, tmp_path / "out"))
    broken = write_tiny_corpus(tmp_path / "data" / "pretrain")
    os.remove(os.path.join(broken, "val.bin"))
    with pytest.raises(FileNotFoundError, match=r"pretrain/val.bin not found: run `python data/pretrain/prepare.py"):
        train.main(tiny_flags(broken, tmp_path / "out"))


def test_malformed_jsonl_names_file_and_line(tmp_path):
    task = write_tiny_task(tmp_path / "reverse")
    with open(os.path.join(task, "train.jsonl"), "r+") as f:
        lines = f.readlines()
        lines[2] = '{"input": "reverse: ab", "target": \n'
        f.seek(0)
        f.writelines(lines)
        f.truncate()
    with pytest.raises(ValueError, match=r"train.jsonl:3: malformed JSON"):
        train.main(tiny_flags(task, tmp_path / "out"))


def test_checkpoint_tokenizer_must_match_data(corpus, ar_ckpt, tmp_path):
    other = write_tiny_corpus(tmp_path / "gpt2corpus")
    meta_path = os.path.join(other, "meta.json")
    with open(meta_path) as f:
        meta = json.load(f)
    write_json(meta_path, {**meta, "tokenizer": dict(name="gpt2", n_ordinary=50256, eos_id=50256, mask_id=50257,
                                                     vocab_size=50304)})
    with pytest.raises(ValueError, match=r"gpt2corpus/meta.json .*tokenizer"):
        train.main(tiny_flags(other, tmp_path / "out", init_from=ar_ckpt))
    write_json(meta_path, {**meta, "tokenizer": {**get_tokenizer("byte").state(), "vocab_size": 384}})
    with pytest.raises(ValueError, match=r"vocab_size.*\(384, 320\)"):
        train.main(tiny_flags(other, tmp_path / "out", init_from=ar_ckpt))


def test_bad_flags(corpus, ar_ckpt, tmp_path):
    with pytest.raises(ValueError, match=r"--batch_size 10 is not divisible by --micro_batch_size 4"):
        train.main(tiny_flags(corpus, tmp_path, batch_size=10))
    with pytest.raises(ValueError, match=r"'ar' objective.*python adapt.py --init_from"):
        train.main(tiny_flags(corpus, tmp_path, init_from=ar_ckpt) + objective_flags("diffusion", "mask"))
    with pytest.raises(FileNotFoundError, match=r"--init_from resume: .*ckpt.pt does not exist"):
        train.main(["--init_from", "resume", "--out_dir", str(tmp_path / "nothing")])
    with pytest.raises(ValueError, match=r"--block_size 64 exceeds the model's block_size 32"):
        train.main(tiny_flags(corpus, tmp_path, init_from=ar_ckpt, block_size=64))
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*missing.pt does not exist"):
        train.main(tiny_flags(corpus, tmp_path, init_from=tmp_path / "missing.pt"))


def file_bytes(folder, names=("ckpt.pt", "ckpt.json", "best.pt", "best.json")):
    return {n: (folder / n).read_bytes() for n in names}


def test_out_dir_holding_another_run_is_refused(corpus, tmp_path):
    """A run folder holds one run: another objective, data, model or source is refused, naming the
    flag and the folder, and the run there is left as it was; --overwrite replaces it."""
    run = tmp_path / "ar"
    train.main(tiny_flags(corpus, run, max_steps=4))
    kept = file_bytes(run)
    task = write_tiny_task(tmp_path / "reverse")
    for flags, named in [
        (tiny_flags(corpus, run) + objective_flags("diffusion", "mask"), "--objective ar, not --objective diffusion"),
        (tiny_flags(task, run), f"--data {corpus}, not --data {task}"),
        (tiny_flags(corpus, run, block_size=64), "a 4-layer 128-dim model (vocab 320, block 32), not a 4-layer "
                                                 "128-dim model (vocab 320, block 64)"),
        (tiny_flags(corpus, run, init_from=run / "best.pt"), f"--init_from scratch, not --init_from {run}/best.pt"),
    ]:
        with pytest.raises(ValueError, match=rf"^--out_dir {run} holds another run: .*{re.escape(named)}.*; pass "
                                             rf"another --out_dir, or --overwrite to replace it$"):
            train.main(flags)
    assert file_bytes(run) == kept
    train.main(tiny_flags(corpus, run, max_steps=1))  # the same run again (a rerun of its stage): allowed
    train.main(tiny_flags(task, run, max_steps=1) + ["--overwrite"])
    assert load_checkpoint(run / "ckpt.pt")["data"] == task


def test_resume_with_other_data_is_refused(corpus, tmp_path):
    train.main(tiny_flags(corpus, tmp_path, max_steps=4))
    kept = file_bytes(tmp_path)
    task = write_tiny_task(tmp_path / "reverse")
    with pytest.raises(ValueError, match=rf"--init_from resume: {tmp_path} holds a run on --data {corpus}, not "
                                         rf"--data {task}; .* another --out_dir \(--init_from {tmp_path}/ckpt.pt\)"):
        train.main(["--init_from", "resume", "--out_dir", str(tmp_path), "--data", task, "--max_steps", "8"])
    assert file_bytes(tmp_path) == kept


def test_ctrl_c_during_save_leaves_the_files_consistent(corpus, tmp_path, monkeypatch):
    """SIGINT between best.pt and ckpt.pt (the moment that left ckpt.pt's best step without its
    best.pt) is held until all four files are written, then stops the run."""
    real, saved = train.save_checkpoint, []

    def interrupted(path, ckpt, sidecar=None):
        real(path, ckpt, sidecar)
        saved.append(os.path.basename(path))
        if ckpt["step"] == 4 and len(saved) == 3:  # step 0: best.pt, ckpt.pt; step 4: the first file
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(train, "save_checkpoint", interrupted)
    # Ctrl-C as a terminal delivers it, whatever handler an earlier test of the session left installed
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train.main(tiny_flags(corpus, tmp_path, max_steps=8))
    finally:
        signal.signal(signal.SIGINT, old_handler)
    ckpt, best = load_checkpoint(tmp_path / "ckpt.pt"), load_checkpoint(tmp_path / "best.pt")
    side = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ckpt", "best")}
    assert saved[2:] == ["best.pt", "ckpt.pt"] and ckpt["step"] == side["ckpt"]["step"] == 4  # step 4 improved
    assert best["step"] == ckpt["best_step"] == side["best"]["step"] == 4


def test_kill_during_save_resumes_with_no_temp_file_and_a_true_sidecar(corpus, tmp_path):
    """SIGKILL while ckpt.json is written (ckpt.pt already at step 4): the partial .tmp_* file is
    removed at the next start and the stale sidecar is rewritten from ckpt.pt when it is loaded."""
    code = ("import os, signal, sys, train, data.common as c\n"
            "real = c.write_json\n"
            "def write_json(path, obj):\n"
            "    if path.endswith('ckpt.json') and obj['step'] == 4:\n"
            "        c.atomic_write(path, lambda f: (f.write('{'), f.flush(), os.kill(os.getpid(), signal.SIGKILL)))\n"
            "    real(path, obj)\n"
            "c.write_json = write_json\n"
            "train.main(sys.argv[1:])\n")
    flags = tiny_flags(corpus, tmp_path, max_steps=8)
    proc = subprocess.run([sys.executable, "-c", code, *flags], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    temps = [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]
    assert len(temps) == 1 and json.loads((tmp_path / "ckpt.json").read_text())["step"] == 0
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 4  # and the load rewrote the sidecar
    assert json.loads((tmp_path / "ckpt.json").read_text())["step"] == 4
    out = train.main(["--init_from", "resume", "--out_dir", str(tmp_path)])
    assert out["step"] == 8 and not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]


def test_resume_after_an_older_interrupted_save_keeps_best_pt_true(corpus, tmp_path, capsys):
    """A best.pt behind ckpt.pt's best step (what an older save order could leave): the run goes on
    with best.pt's step as its best, so best.pt again holds the best step."""
    train.main(tiny_flags(corpus, tmp_path, max_steps=0))
    step0 = (tmp_path / "best.pt").read_bytes()
    train.main(["--init_from", "resume", "--out_dir", str(tmp_path), "--max_steps", "4"])
    (tmp_path / "best.pt").write_bytes(step0)
    assert load_checkpoint(tmp_path / "ckpt.pt")["best_step"] == 4
    capsys.readouterr()
    out = train.main(["--init_from", "resume", "--out_dir", str(tmp_path), "--max_steps", "5", "--eval_interval", "5"])
    assert "holds step 0, not the best step 4 that ckpt.pt records" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "best.pt")["step"] == out["best_step"] == load_checkpoint(
        tmp_path / "ckpt.pt")["best_step"]


def test_stale_temp_files_go_and_a_live_writers_stay(tmp_path):
    """remove_stale_temps: a temp file of a process that is gone (or of the older unnamed form) is
    removed; one whose writer still runs (another torchrun rank, say) is left alone."""
    from data.common import atomic_write, remove_stale_temps
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    names = {f".tmp_{int(gone.stdout)}_ab_c": False, ".tmp_x1y2z3": False, f".tmp_{os.getppid()}_live": True,
             f".tmp_{os.getpid()}_mine": True}
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    atomic_write(tmp_path / "kept.json", lambda f: f.write("{}"))
    removed = remove_stale_temps(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == sorted(n for n, live in names.items() if not live)
    assert sorted(os.listdir(tmp_path)) == sorted([n for n, live in names.items() if live] + ["kept.json"])

"""
Train the prefix LM with the `ar` or the `diffusion` objective, on a pretraining corpus or on a task.
Every training stage of AR2Diff is this one script (adapt.py converts a checkpoint, then calls it):

    python data/embedded/prepare.py                                   # the offline default data
    python train.py --out_dir out/ar                                  # AR pretraining (tiny, CPU)
    python train.py --objective diffusion --noise mask --out_dir out/diff   # diffusion from scratch
    python adapt.py --init_from out/ar/ckpt.pt --steps 1000 --out_dir out/ar2diff   # AR2Diff_1000
    python train.py --data data/embedded/qa --init_from out/ar2diff/ckpt.pt --out_dir out/qa \
        --lr 1e-3 --lr_schedule constant --warmup_steps 0 --patience 5     # fine-tune (paper §4)
    python train.py --init_from resume --out_dir out/ar               # continue a killed run exactly
    python train.py --data data/squad --train_split devsplit_train --val_split devsplit_eval ...
    torchrun --standalone --nproc_per_node=8 train.py --model gpt2 --data data/pretrain ...

Data: a corpus folder (train.bin, val.bin, meta.json) gives random windows split at a random point
into prefix and target (paper §3); a task folder (train.jsonl, validation.jsonl) gives input ->
target pairs, the diffusion target padded with EOS to --target_len (the model learns the length).

Randomness: every draw of a step (its examples, its noise, its dropout) comes from generators seeded
by (seed, step, global micro-batch index), so N processes together draw exactly what 1 process draws
and a resumed run draws what the uninterrupted run drew: a checkpoint needs no RNG state. On a CPU
with the same thread count a resumed run repeats the losses bit for bit; on CUDA, up to the
run-to-run noise of non-deterministic kernels (atomics in attention and embedding backward).

One run per folder: an --out_dir holding a run of another objective, noise, block_len, data, model
or source checkpoint is refused (--overwrite replaces it; the same run again starts it over), and a
resumed run keeps its --data. A save writes best.pt, then ckpt.pt, each with its .json sidecar, with
Ctrl-C held until all are written; a temp file that a killed save left is removed at the next start.

Validation uses a fixed set (fixed corpus windows or the first validation rows), a fixed noise draw
and, for diffusion, the ELBO whatever --loss_weight trains with, so its numbers compare across runs
and checkpoints.
"""
import argparse
import math
import os
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from data.common import (FLOAT0, FRACTION, INT, INT0, check_best, check_device, check_out_dir, cli, deferred_signals,
                         device_flag, git_commit, is_hf_name, load_checkpoint, remove_stale_temps, run_identity,
                         save_checkpoint, sidecar_of, source_id, weights_mismatch)
from data.loader import (OBJECTIVES, auto_target_len, check_teacher_tokenizer, corpus_batch, data_kind, encode_task,
                         epoch_indices, load_corpus, load_task_split, seed_of, task_batch, task_meta)
from data.tokenizer import TOKENIZERS, get_tokenizer
from diffusion import NOISES, WEIGHTS, diffusion_loss
from model import GPT, PRESETS, GPTConfig, ar_loss, target_mask

# Dense bf16 peak FLOP/s by device name, for MFU (datasheet numbers, no sparsity).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12,
              "4090": 165e12, "3090": 71e12}

parser = argparse.ArgumentParser(description="Train a prefix LM (ar or diffusion) on a corpus or a task.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
arg = parser.add_argument
# data and I/O
arg("--data", default="data/embedded/pretrain", help="a corpus folder (train.bin) or a task folder (train.jsonl)")
arg("--train_split", default="train", help="task split to train on ({split}.jsonl, e.g. devsplit_train)")
arg("--val_split", default="validation", help="task split of the fixed validation set (e.g. devsplit_eval)")
arg("--out_dir", default="out/run", help="where ckpt.pt, best.pt and their .json sidecars go (one run per folder)")
arg("--overwrite", action="store_true", help="replace the run --out_dir holds even if its objective, data, model or "
    "source checkpoint differ (refused without it)")
arg("--init_from", default="scratch",
    help="scratch | resume (--out_dir/ckpt.pt) | a checkpoint path | gpt2, gpt2-medium, ... (Hugging Face)")
# model
arg("--model", default=None, choices=list(PRESETS), help="shape preset of --init_from scratch (default tiny); beside "
    "a checkpoint it must be the checkpoint's shape")
arg("--block_size", type=INT0, default=0,
    help="context length (a corpus window); 0 = the preset's (scratch) or the model's")
arg("--dropout", type=FRACTION, default=0.0, help="dropout rate (0 to pretrain; try 0.1 to fine-tune on little data)")
arg("--tokenizer", default=None, choices=TOKENIZERS, help="of a model trained from scratch on a task; default byte "
    "(a corpus names its own)")
# objective
arg("--objective", default=None, choices=OBJECTIVES, help="training loss; default: the checkpoint's, else ar")
arg("--noise", default=None, choices=NOISES, help="diffusion noise process; default: the checkpoint's, else mask")
arg("--block_len", default=None, type=int, help="block diffusion: blocks of this many target tokens, causal across "
    "blocks, bidirectional inside (1 = AR); default: the checkpoint's, else none (full diffusion)")
arg("--loss_weight", default=None, choices=WEIGHTS, help="mask noise: how training weights the masked tokens' "
    "cross-entropy (validation always reports the ELBO); default: elbo on a corpus, flat on a task (see diffusion.py)")
arg("--complementary", action="store_true", help="mask noise: train each sequence with its mask and with the "
    "complement of it (Fast-dLLM v2): every target token once per pair, twice the compute per sequence")
arg("--position_masking", action="store_true", help="block diffusion: later positions of a block masked more "
    "(Efficient-DLM; see diffusion.py's ramp)")
arg("--block_warmup", type=INT0, default=0, help="block diffusion: train with blocks of 1, 2, 4, ... (below "
    "--block_len) in equal stages over the first this many steps, then --block_len (LLaDA 2.0); 0 = off")
arg("--target_len", type=INT0, default=0,
    help="task target tokens, EOS included; 0 = the longest train target + EOS, at most block_size/2")
# optimisation
arg("--batch_size", type=INT, default=32, help="sequences per optimizer step, over all processes")
arg("--micro_batch_size", type=INT0, default=0, help="sequences per forward pass; 0 = batch_size / processes")
arg("--max_steps", type=INT0, default=2000, help="optimizer steps in total (a resumed run counts from its checkpoint)")
arg("--lr", type=FLOAT0, default=6e-4, help="peak learning rate (paper, fine-tuning: constant 1e-3)")
arg("--min_lr", type=FLOAT0, default=None, help="final learning rate of the cosine schedule; default lr/10")
arg("--lr_schedule", default="cosine", choices=["cosine", "constant"], help="after the warmup")
arg("--warmup_steps", type=INT0, default=100, help="linear warmup steps")
arg("--decay_steps", type=INT0, default=0,
    help="cosine decay length; 0 = max_steps (set it to stop early and resume on the same schedule)")
arg("--weight_decay", type=FLOAT0, default=0.1, help="AdamW weight decay of the 2-D weights")
arg("--beta1", type=FRACTION, default=0.9, help="AdamW beta1")
arg("--beta2", type=FRACTION, default=0.95, help="AdamW beta2")
arg("--grad_clip", type=FLOAT0, default=1.0, help="clip the gradient norm to this; 0 = no clipping")
# evaluation
arg("--eval_interval", type=INT, default=200, help="evaluate and checkpoint every this many steps, and at the end")
arg("--eval_examples", type=INT, default=200, help="fixed validation set: corpus windows or first validation rows")
arg("--eval_batch_size", type=INT, default=16,
    help="sequences per validation forward pass (part of the fixed noise draw: keep it to compare runs)")
arg("--patience", type=INT0, default=0, help="stop after this many evaluations without improvement; 0 = never")
# system
arg("--seed", type=int, default=1337, help="seed of the initialisation and of every training draw")
arg("--device", default="auto", type=device_flag,
    help="cpu | cuda | cuda:N; auto = cuda if available (torchrun: cuda:LOCAL_RANK)")
arg("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
    help="autocast dtype; auto = bfloat16 on CUDA, float32 on CPU")
arg("--compile", default=None, action=argparse.BooleanOptionalAction, help="torch.compile; default: on CUDA only")

EVAL_SEED = 1234  # the validation windows and the validation noise: the same in every run


def lr_at(step, args):
    """Linear warmup, then constant or cosine decay to min_lr at decay_steps (nanoGPT)."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    if args.lr_schedule == "constant":
        return args.lr
    min_lr = args.lr / 10 if args.min_lr is None else args.min_lr
    decay = args.decay_steps or args.max_steps
    t = min(1.0, (step - args.warmup_steps) / max(1, decay - args.warmup_steps))
    return min_lr + 0.5 * (1 + math.cos(math.pi * t)) * (args.lr - min_lr)


def peak_flops(device):
    """Dense bf16 peak of a CUDA device by name (None when unknown or on CPU: no MFU then)."""
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def setup(args):
    """Processes, device, dtype and compilation, decided in this one place (args keep "auto")."""
    ddp = "RANK" in os.environ  # launched by torchrun
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else \
        check_device("--device", args.device)  # a resumed run's saved --device too
    cuda = torch.device(device).type == "cuda"
    rank, world = 0, 1
    if ddp:
        dist.init_process_group("nccl" if cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if cuda:
            device = f"cuda:{os.environ['LOCAL_RANK']}"
            torch.cuda.set_device(device)
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    autocast = nullcontext()  # float32: no autocast
    if dtype == "bfloat16":
        autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    compile = cuda if args.compile is None else args.compile
    return ddp, rank, world, device, cuda, dtype, compile, autocast


def load_source(init_from):
    """The checkpoint dict of --init_from: a train.py checkpoint, or GPT-2's weights from Hugging Face
    (gpt2, gpt2-medium, ...) as an AR checkpoint with the gpt2 tokenizer."""
    if not is_hf_name(init_from):
        return load_checkpoint(init_from)
    hf = GPT.from_pretrained(init_from)
    return dict(model=hf.state_dict(), config=asdict(hf.config), tokenizer=get_tokenizer("gpt2").state(),
                objective="ar")


def load_start(args, resume_ckpt, data_tokenizer):
    """(model config, state dict or None, tokenizer, the previous checkpoint's dict or {})."""
    if resume_ckpt is not None:
        prev = resume_ckpt
    elif args.init_from == "scratch":
        tok = get_tokenizer(args.tokenizer or data_tokenizer or "byte")
        overrides = dict(block_size=args.block_size) if args.block_size else {}
        return GPTConfig.preset(args.model, vocab_size=tok.vocab_size, **overrides), None, tok, {}
    else:
        prev = load_source(args.init_from)
    name = args.out_dir + "/ckpt.pt" if resume_ckpt is not None else args.init_from
    if "tokenizer" not in prev:
        raise ValueError(f"{name}: the checkpoint records no tokenizer")
    try:
        config = GPTConfig(**prev["config"])
    except TypeError as e:
        raise ValueError(f"{name}: its config is not a model config ({e})") from None
    return config, prev["model"], get_tokenizer(prev["tokenizer"]), prev


def shape(config):
    return f"{config['n_layer']} layers, {config['n_head']} heads, {config['n_embd']} dims"


def main(argv=None):
    args = parser.parse_args(argv)
    model_flag = args.model  # given on this command line (None: not given)
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise ValueError(f"--out_dir {args.out_dir} is a file, not a folder")
    resume_ckpt = None
    if args.init_from == "resume":  # the saved run's flags, except those given again here
        path = os.path.join(args.out_dir, "ckpt.pt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--init_from resume: {path} does not exist (wrong --out_dir?)")
        resume_ckpt = load_checkpoint(path)
        saved = resume_ckpt["args"]
        args = parser.parse_args(argv, argparse.Namespace(**{**saved, "model": None}))
        args.init_from = saved["init_from"]
        if os.path.abspath(args.data) != os.path.abspath(saved["data"]):  # a run trains on one data set
            raise ValueError(f"--init_from resume: {args.out_dir} holds a run on --data {saved['data']}, not --data "
                             f"{args.data}; to train it on {args.data}, start a new run from it in another "
                             f"--out_dir (--init_from {path})")
        model_flag, args.model = args.model, saved.get("model")
    elif args.init_from == "scratch":
        args.model = args.model or "tiny"
    if min(args.batch_size, args.max_steps + 1, args.eval_interval, args.eval_examples, args.eval_batch_size) < 1:
        raise ValueError("--batch_size, --eval_interval, --eval_examples and --eval_batch_size must be >= 1, "
                         "--max_steps >= 0")
    ddp, rank, world, device, cuda, dtype, compile, autocast = setup(args)
    master = rank == 0
    log = print if master else (lambda *a, **k: None)
    micro = args.micro_batch_size or args.batch_size // world
    if args.batch_size % (micro * world):
        raise ValueError(f"--batch_size {args.batch_size} is not divisible by --micro_batch_size {micro} x "
                         f"{world} process(es) = {micro * world}; change --batch_size or --micro_batch_size")
    accum = args.batch_size // (micro * world)  # micro-steps per process per optimizer step

    # ---- model, tokenizer, objective: from scratch, a checkpoint, GPT-2, or the run to resume
    kind = data_kind(args.data)
    if kind == "corpus":
        train_tokens, val_tokens, meta = load_corpus(args.data)
    config, state, tok, prev = load_start(args, resume_ckpt, meta["tokenizer"] if kind == "corpus" else None)
    source = "resume" if resume_ckpt is not None else args.init_from
    preset = PRESETS.get(model_flag, {})
    if prev and preset and any(preset[k] != getattr(config, k) for k in ("n_layer", "n_head", "n_embd")):
        log(f"note: --model {model_flag} ({shape(PRESETS[model_flag])}) is ignored: the model of --init_from "
            f"{source} keeps its own shape ({shape(asdict(config))})")
    if args.tokenizer:
        tok.check({"name": args.tokenizer}, what=f"--tokenizer {args.tokenizer}")
    if kind == "corpus":
        tok.check(meta["tokenizer"], what=f"the corpus {args.data}/meta.json (model: {source})")
    if kind == "task" and args.init_from != "scratch":
        check_teacher_tokenizer(args.data, tok, args.init_from)
    if config.vocab_size != tok.vocab_size:
        raise ValueError(f"{source}: the model's vocabulary ({config.vocab_size}) does not fit its tokenizer {tok}")
    objective = args.objective or prev.get("objective") or "ar"
    noise = (args.noise or prev.get("noise") or "mask") if objective == "diffusion" else None
    if prev.get("objective", objective) != objective:
        hint = (f"; make a diffusion model from it with `python adapt.py --init_from {source} --steps 0`"
                if prev["objective"] == "ar" else "")
        raise ValueError(f"{source} was trained with the {prev['objective']!r} objective, not --objective "
                         f"{objective}{hint}")
    if objective == "diffusion" and prev.get("noise", noise) != noise:
        raise ValueError(f"{source} was trained with --noise {prev['noise']}, not --noise {noise}")
    if args.complementary and noise != "mask":
        raise ValueError(f"--complementary needs mask noise (--objective diffusion --noise mask), not "
                         f"--objective {objective}{' --noise ' + noise if noise else ''}")
    block_len = args.block_len or prev.get("block_len")
    for flag, on in (("--position_masking", args.position_masking), ("--block_warmup", args.block_warmup)):
        if on and (not block_len or noise != "mask"):
            raise ValueError(f"{flag} needs a block-diffusion model with mask noise (--block_len K, --noise mask)")
    if args.position_masking and args.complementary:
        raise ValueError("--position_masking with --complementary: the complement of a ramped mask masks the "
                         "early positions more; use one of them")
    if args.block_len is not None and (args.block_len < 1 or objective != "diffusion"):
        raise ValueError(f"--block_len {args.block_len}: " + ("must be >= 1" if args.block_len < 1 else
                         "block diffusion needs --objective diffusion (adapt.py --block_len converts an AR model)"))
    if prev.get("objective") == "diffusion" and prev.get("block_len") != block_len:
        raise ValueError(f"{source} was trained with --block_len {prev.get('block_len') or 'none (full diffusion)'}, "
                         f"not --block_len {block_len}")
    config = GPTConfig(**{**asdict(config), "dropout": args.dropout})
    block = args.block_size or config.block_size
    if block > config.block_size:
        raise ValueError(f"--block_size {block} exceeds the model's block_size {config.block_size}")
    # adapt.py's converted.pt: the run's source is the AR checkpoint it was converted from
    run = (resume_ckpt or {}).get("run") or run_identity(objective, noise, block_len, args.data, asdict(config),
                                                         source_id(prev.get("converted_from") or args.init_from))
    if resume_ckpt is None:
        check_out_dir(args.out_dir, run, args.overwrite)
    run_id = (resume_ckpt or {}).get("run_id") or uuid.uuid4().hex[:16]  # evaluate.py records it with the step
    torch.manual_seed(args.seed)
    model = GPT(config)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            name = args.out_dir + "/ckpt.pt" if resume_ckpt else args.init_from
            raise weights_mismatch(name + (f" (converted from {prev['converted_from']})" if prev.get("converted_from")
                                           else ""), e) from None
    model.to(device)
    if master:
        os.makedirs(args.out_dir, exist_ok=True)
        for tmp in remove_stale_temps(args.out_dir):
            log(f"removed {tmp}, left by a save that was killed")

    # ---- data: a draw is a function of (seed, step, global micro-batch index) only
    task, target_len = None, None
    if kind == "task":
        task = dict(task_meta(args.data), train_split=args.train_split, val_split=args.val_split)
        rows, val_rows = load_task_split(args.data, args.train_split), load_task_split(args.data, args.val_split)
        target_len = args.target_len or (resume_ckpt or {}).get("target_len") or auto_target_len(tok, rows, block)
        if target_len >= block:
            raise ValueError(f"--target_len {target_len} leaves no room for a prefix in the block of {block} tokens")
        train_ex = encode_task(tok, rows, target_len, block, objective)
        val_ex = encode_task(tok, val_rows[: args.eval_examples], target_len, block, objective)
        cut = sum(len(tok.encode(r["target"])) + 1 > target_len for r in rows)
        seq_tokens = sum(len(p) + len(t) for p, t in train_ex) / len(train_ex)
        val_set = [task_batch(val_ex[i: i + args.eval_batch_size], tok.eos_id)
                   for i in range(0, len(val_ex), args.eval_batch_size)]
    else:
        windows = corpus_batch(val_tokens, args.eval_examples, block, torch.Generator().manual_seed(EVAL_SEED))
        val_set = [tuple(t[i: i + args.eval_batch_size] for t in windows)
                   for i in range(0, args.eval_examples, args.eval_batch_size)]
        seq_tokens = block
    if args.block_len and args.block_len > (target_len or block - 1):
        raise ValueError(f"--block_len {args.block_len} is larger than the target (" + (
            f"--target_len {target_len}" if target_len else f"a corpus window's, at most --block_size {block} - 1") +
            " tokens): one block would hold it whole, which is full diffusion; give a smaller --block_len or none")

    def get_batch(step, j):
        if kind == "corpus":
            generator = torch.Generator().manual_seed(seed_of(args.seed, step, j, 0))
            return corpus_batch(train_tokens, micro, block, generator, device)
        ids = epoch_indices(len(train_ex), (step * accum * world + j) * micro, micro, args.seed)
        return task_batch([train_ex[i] for i in ids], tok.eos_id, device)

    args.loss_weight = args.loss_weight or ("elbo" if kind == "corpus" else "flat")  # saved resolved

    warmup = [2 ** i for i in range((block_len - 1).bit_length())] if args.block_warmup else []  # 1, 2, ... < K

    def block_at(step):  # --block_warmup: the sizes below block_len in equal stages, then block_len
        return warmup[step * len(warmup) // args.block_warmup] if warmup and step < args.block_warmup else block_len

    def loss_fn(m, batch, generator, weight=args.loss_weight, complementary=args.complementary, step=None,
                ramp=args.position_masking):
        idx, prefix_len, seq_len = batch
        if objective == "ar":
            return ar_loss(m, idx, prefix_len, seq_len)
        return diffusion_loss(m, idx, prefix_len, seq_len, noise, tok, generator=generator, weight=weight,
                              block_len=block_len if step is None else block_at(step), complementary=complementary,
                              ramp=ramp)

    # ---- optimizer: decay the 2-D weights (matmuls and the tied embedding/lm_head, as nanoGPT);
    # biases and LayerNorm gains do not decay. Fused (one kernel for all tensors) on CUDA and CPU.
    params = list(model.parameters())  # the tied wte/lm_head weight once
    groups = [dict(params=[p for p in params if p.dim() >= 2], weight_decay=args.weight_decay),
              dict(params=[p for p in params if p.dim() < 2], weight_decay=0.0)]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2),
                                  fused=torch.device(device).type in ("cuda", "cpu"))
    if resume_ckpt is not None:
        optimizer.load_state_dict(resume_ckpt["optimizer"])
    fwd = torch.compile(model) if compile else model
    train_model = DDP(fwd, device_ids=[torch.cuda.current_device()] if cuda else None) if ddp else fwd

    step = resume_ckpt["step"] if resume_ckpt else 0
    history = resume_ckpt["history"] if resume_ckpt else []
    best_val, best_step = check_best(args.out_dir, resume_ckpt) if resume_ckpt else (None, None)
    # uniform: L(1) + L(2), two forward+backward passes; block: two copies of each sequence
    passes = (2 if noise == "uniform" else 1) * (2 if block_len else 1)
    peak, commit = peak_flops(device), git_commit()
    log(f"model: {'resumed from ' + args.out_dir if resume_ckpt else args.init_from} | {config.n_layer} layers, "
        f"{config.n_head} heads, {config.n_embd} dims, block {config.block_size}, vocab {config.vocab_size} | "
        f"{model.num_params() / 1e6:.2f}M parameters (without position embeddings)")
    log(f"data: {kind} {args.data} | " + (f"{len(train_tokens):,} train / {len(val_tokens):,} val tokens"
        if kind == "corpus" else f"task {task['name']}: {len(rows):,} train / {len(val_rows):,} validation rows, "
        f"{cut} train targets cut to target_len") + f" | tokenizer {tok.name}")
    options = [args.loss_weight + " weight"] + ["complementary masks"] * args.complementary + \
        ["position-dependent masking"] * args.position_masking + \
        [f"blocks of 1, 2, ... over the first {args.block_warmup} steps"] * bool(args.block_warmup)
    weighting = f" ({', '.join(options)})" if noise == "mask" else ""
    log(f"objective: {objective} | noise: {noise or '-'}{weighting} | block_len: {block_len or '-'} | "
        f"target_len: {target_len or '-'} | validation: {sum(len(b[0]) for b in val_set)} fixed "
        f"{'windows' if kind == 'corpus' else 'rows'}")
    log(f"batch: {args.batch_size} sequences x {'~' if kind == 'task' else ''}{seq_tokens:.0f} tokens = "
        f"{args.batch_size * seq_tokens:,.0f} tokens per step | micro-batch {micro} x {world} process(es) x "
        f"{accum} accumulation step(s)")
    log(f"optimizer: AdamW lr {args.lr:g} {args.lr_schedule}, warmup {args.warmup_steps}, weight decay "
        f"{args.weight_decay}, clip {args.grad_clip} | steps {step} -> {args.max_steps}")
    log(f"system: {device} {dtype} compile={compile} processes={world} seed={args.seed} | out {args.out_dir}")

    @torch.no_grad()
    def evaluate():
        """Mean loss per target token on the fixed validation set (chunks shared out over processes)."""
        model.eval()
        total = torch.zeros(2, device=device)  # (sum of loss x target tokens, target tokens)
        for i in range(rank, len(val_set), world):
            batch = tuple(t.to(device) for t in val_set[i])
            generator = torch.Generator(device).manual_seed(seed_of(EVAL_SEED, i))  # the fixed noise draw
            with autocast:
                loss = loss_fn(fwd, batch, generator, weight="elbo", complementary=False, ramp=False)
            n = target_mask(batch[1], batch[2], batch[0].size(1)).sum()
            total += torch.stack([loss.float() * n, n.float()])
        if ddp:
            dist.all_reduce(total)
        model.train()
        return (total[0] / total[1]).item()

    def save(improved):
        ckpt = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), config=asdict(config),
                    tokenizer=tok.state(), objective=objective, noise=noise, block_len=block_len,
                    target_len=target_len, task=task,
                    data=args.data, step=step, samples_seen=step * args.batch_size, best_val=best_val,
                    best_step=best_step, history=history, git_commit=commit, args=vars(args), run=run, run_id=run_id)
        sidecar = sidecar_of(ckpt)
        # Ctrl-C waits until all four files are written; a SIGKILL in between leaves best.pt ahead of
        # ckpt.pt (never behind it: the resumed run redoes that step), and a sidecar behind its
        # checkpoint is rewritten when the checkpoint is loaded
        with deferred_signals():
            if improved:  # best.pt: the model to evaluate or fine-tune; only resume needs the optimizer
                save_checkpoint(os.path.join(args.out_dir, "best.pt"), {**ckpt, "optimizer": None}, sidecar)
            save_checkpoint(os.path.join(args.out_dir, "ckpt.pt"), ckpt, sidecar)

    def stop(message):  # the last good checkpoint stays as it is: nothing of this state is saved
        if ddp:
            dist.destroy_process_group()
        raise SystemExit(f"{message}; stopped at step {step}, the last good checkpoint is in {args.out_dir}")

    losses = []  # (step, training loss) of this invocation, for callers and tests
    model.train()
    while True:
        # ---- evaluate -> checkpoint (at every eval_interval and at the end)
        due = step % args.eval_interval == 0 or step == args.max_steps
        if due and not (history and history[-1]["step"] == step):  # not twice at a resumed step
            val = evaluate()
            if not math.isfinite(val):
                stop(f"validation loss is {val}")
            improved = best_val is None or val < best_val
            if improved:
                best_val, best_step = val, step
            history.append(dict(step=step, val_loss=val, train_loss=losses[-1][1] if losses else None))
            log(f"step {step} | val loss {val:.4f} | best {best_val:.4f} at step {best_step}")
            if master:
                save(improved)
        if args.patience and sum(h["step"] > best_step for h in history) >= args.patience:
            log(f"early stop: {args.patience} evaluations without improvement since step {best_step}")
            break
        if step >= args.max_steps:
            break
        # ---- micro-steps: this process takes global micro-batches [rank * accum, (rank + 1) * accum)
        t0 = time.perf_counter()
        lr = lr_at(step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        stats = torch.zeros(2, device=device)  # (sum of micro-batch losses, real tokens)
        for k in range(accum):
            j = rank * accum + k
            batch = get_batch(step, j)
            generator = torch.Generator(device).manual_seed(seed_of(args.seed, step, j, 1))  # noise
            torch.manual_seed(seed_of(args.seed, step, j, 2))  # dropout draws from the global RNG
            sync = train_model.no_sync() if ddp and k < accum - 1 else nullcontext()  # all-reduce once
            with sync:
                with autocast:
                    loss = loss_fn(train_model, batch, generator, step=step)
                (loss / accum).backward()
            stats += torch.stack([loss.detach().float(), batch[2].sum().float()])
        if ddp:
            dist.all_reduce(stats)
        # ---- optimizer step (never with a non-finite loss or gradient)
        loss = stats[0].item() / (accum * world)
        norm = torch.nn.utils.clip_grad_norm_(params, args.grad_clip or float("inf")).item()
        if not (math.isfinite(loss) and math.isfinite(norm)):
            stop(f"step {step}: the loss is {loss} and the gradient norm {norm}: training diverged "
                 f"(lower --lr, raise --warmup_steps, or check the data)")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        # ---- log
        dt = time.perf_counter() - t0
        tok_s = stats[1].item() / dt
        mfu = (f" | MFU {model.flops_per_token(batch[0].size(1)) * passes * tok_s / world / peak:.1%}"
               if peak else "")
        log(f"step {step} | loss {loss:.6f} | lr {lr:.2e} | norm {norm:.3f} | {dt * 1000:.1f} ms | "
            f"{tok_s:,.0f} tok/s{mfu}")
        losses.append((step, loss))
        step += 1
    if ddp:
        dist.destroy_process_group()
    return dict(history=history, losses=losses, best_val=best_val, best_step=best_step, step=step,
                target_len=target_len, objective=objective, noise=noise, block_len=block_len, out_dir=args.out_dir)


if __name__ == "__main__":
    cli(main, "train.py: error", (OSError, ValueError))  # bad input: the message names the flag or file

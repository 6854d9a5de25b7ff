"""
AR2Diff (paper §3): turn an AR checkpoint into a diffusion model, then continue pretraining it with
the diffusion objective for N steps on the pretraining corpus (AR2Diff_N). N = 0 gives AR2Diff_0: a
diffusion checkpoint with no adaptation, to be fine-tuned directly.

    python adapt.py --init_from out/ar/ckpt.pt --steps 0 --out_dir out/ar2diff_0
    python adapt.py --init_from out/ar/ckpt.pt --steps 1000 --out_dir out/ar2diff_1000 --lr 3e-4
    python adapt.py --init_from out/ar/ckpt.pt --steps 1000 --block_len 4 --out_dir out/ar2diff_block4_1000
    python adapt.py --init_from gpt2 --noise uniform --steps 10000 --data data/openwebtext \
        --batch_size 128 --micro_batch_size 16                       # from Hugging Face GPT-2
    python train.py --init_from resume --out_dir out/ar2diff_1000    # continue a killed adaptation

Every flag that `python adapt.py --help` does not list goes to train.py (batch size, learning rate
and schedule, evaluation, device, ...: see `python train.py --help`); the N steps are train.py's loop.

The conversion, printed when it runs:
  1. attention: target positions attend to every target position instead of causally (with
     --block_len K: to earlier blocks and their own block of K tokens, BD3-LM / Fast-dLLM v2: the
     AR2Diff-block_N model). No weight changes: the rule is chosen at forward time from the
     recorded objective (model.py).
  2. the checkpoint's objective becomes `diffusion` and its noise --noise.
  3. mask noise: the [MASK] embedding, which an AR model never reads, starts at the mean of the
     ordinary token embeddings (paper: silent; a random row would be an outlier input at the start).
  4. the optimizer state, step and validation history are dropped: a new training stage starts.
Writes --out_dir/converted.pt (the converted model) and, through train.py, ckpt.pt / best.pt.
"""
import argparse
import os
import sys

import train
from data.common import check_out_dir, cli, run_identity, save_checkpoint, source_id
from data.loader import data_kind
from data.tokenizer import get_tokenizer
from diffusion import NOISES

parser = argparse.ArgumentParser(description="AR2Diff: convert an AR checkpoint to diffusion, adapt it N steps.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 epilog="Every other flag goes to train.py: see `python train.py --help`.")
parser.add_argument("--init_from", required=True, help="an AR checkpoint of train.py, or gpt2, gpt2-medium, ...")
parser.add_argument("--out_dir", default="out/ar2diff", help="where converted.pt, ckpt.pt and best.pt go")
parser.add_argument("--noise", default="mask", choices=NOISES, help="diffusion noise process from now on")
parser.add_argument("--block_len", type=int, default=None, help="block diffusion with blocks of K tokens "
                    "(default: full diffusion, the paper's)")
parser.add_argument("--steps", type=int, default=0, help="N: diffusion steps on the corpus (AR2Diff_N); 0 = convert")
parser.add_argument("--data", default="data/embedded/pretrain", help="the pretraining corpus of the N steps")
parser.add_argument("--overwrite", action="store_true", help="replace the run --out_dir holds even if it is another "
                    "run (an AR run, another source checkpoint, noise or corpus): refused without it")

SET_HERE = ("--objective", "--max_steps", "--noise", "--init_from")  # train.py flags adapt.py decides


def convert(init_from, noise, block_len=None):
    """(the diffusion checkpoint dict, the list of changes made) from an AR checkpoint or GPT-2."""
    ckpt = train.load_source(init_from)
    if ckpt.get("objective") != "ar":
        raise ValueError(f"{init_from} is not an AR checkpoint (objective {ckpt.get('objective')!r}, noise "
                         f"{ckpt.get('noise')!r}): adapt.py converts models trained with --objective ar")
    tok = get_tokenizer(ckpt["tokenizer"])
    state = dict(ckpt["model"])
    rule = (f"to earlier blocks and to their own block of {block_len} tokens (block diffusion)" if block_len
            else "to the whole target (diffusion)")
    changes = [f"attention: target positions attend {rule}, not causally; weights unchanged",
               f"objective: ar -> diffusion; noise: {noise}; block_len: {block_len or 'none (full diffusion)'}"]
    if noise == "mask":
        wte = state["transformer.wte.weight"].clone()
        old = wte[tok.mask_id].norm().item()
        wte[tok.mask_id] = wte[: tok.n_ordinary].mean(0)
        new = wte[tok.mask_id].norm().item()
        state["transformer.wte.weight"] = state["lm_head.weight"] = wte  # tied: one tensor, both keys
        changes.append(f"[MASK] embedding (id {tok.mask_id}), never read by an AR model: set to the mean of the "
                       f"{tok.n_ordinary} ordinary token embeddings (norm {old:.3f} -> {new:.3f})")
    else:
        changes.append("[MASK] embedding: left as it is (uniform noise never uses [MASK])")
    changes.append(f"optimizer state, step ({ckpt.get('step', 0)}) and validation history: dropped (a new stage)")
    return dict(model=state, config=ckpt["config"], tokenizer=tok.state(), objective="diffusion", noise=noise,
                block_len=block_len, step=0, converted_from=init_from, source_step=ckpt.get("step"),
                changes=changes), changes


def main(argv=None):
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    clash = [f for f in rest if f.split("=")[0] in SET_HERE]
    if clash:
        raise ValueError(f"{clash}: adapt.py sets these itself (use --steps for the number of steps)")
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    if args.block_len is not None and args.block_len < 1:
        raise ValueError(f"--block_len must be >= 1, got {args.block_len}")
    if data_kind(args.data) != "corpus":  # paper §3: the adaptation runs on the pretraining data
        raise ValueError(f"--data {args.data} is a task; adapt.py continues pretraining on a corpus "
                         f"(fine-tune the adapted checkpoint on the task with train.py)")
    ckpt, changes = convert(args.init_from, args.noise, args.block_len)
    # the folder's run must be this adaptation (of this source, noise, corpus) before converted.pt is written
    check_out_dir(args.out_dir, run_identity("diffusion", args.noise, args.block_len, args.data, ckpt["config"],
                                             source_id(args.init_from)), args.overwrite)
    path = os.path.join(args.out_dir, "converted.pt")
    # under torchrun every process writes the same bytes (atomic rename), so none has to wait for another
    save_checkpoint(path, ckpt)
    if os.environ.get("RANK", "0") == "0":
        print(f"AR2Diff: converted {args.init_from} -> {path}:\n" + "\n".join(f"  - {c}" for c in changes))
        print(f"AR2Diff{'-block' if args.block_len else ''}_{args.steps}: {args.steps} diffusion steps on {args.data}")
    block = ["--block_len", str(args.block_len)] if args.block_len else []
    result = train.main(["--init_from", path, "--objective", "diffusion", "--noise", args.noise, *block,
                         "--max_steps", str(args.steps), "--out_dir", args.out_dir, "--data", args.data, *rest]
                        + (["--overwrite"] if args.overwrite else []))
    return {**result, "changes": changes}


if __name__ == "__main__":
    cli(main, "adapt.py: error", (OSError, ValueError))  # bad input: the message names the flag or file

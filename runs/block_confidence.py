"""
How many tokens a block-diffusion model could commit in one call: for each position of a block, how often the
argmax of the block's first call (every position of the block masked, the earlier blocks decided) is the token
that decoding one token per call commits there, and how sure the model is of it. Parallel decoding can commit
several tokens per call only where the first call already knows them.

    python runs/block_confidence.py --ckpt out/multi30k/finetune/ar2diff_ft_block4_distilled/multi30k/best.pt \
        --split validation --limit 200

The reference output is the model's own greedy decode, one token per call in confidence order (the slowest
setting, which the faster ones approximate); --ref_ckpt an AR checkpoint takes that model's greedy output instead.
Position 0 of a block is read from the output before the block, which no masked token changes: its argmax is
always the one committed, and what it prints for it checks the rest.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import torch  # noqa: E402

from data.common import INT, sha256_of, write_json  # noqa: E402
from data.loader import encode_task, pad_batch  # noqa: E402
from data.tasks import load_split  # noqa: E402
from diffusion import diffusion_generate, output_lengths  # noqa: E402
from sample import load  # noqa: E402


@torch.no_grad()
def first_call_stats(model, tok, K, prefix, prefix_len, ref, sure=0.9):
    """Per position j of a block (list of K dicts): tokens, the first call's argmax accuracy against ref (B, L),
    its mean top probability, the share of tokens with top probability >= sure and their accuracy."""
    n = output_lengths(ref, tok.eos_id)  # tokens up to and including EOS
    idx, seq_len = pad_batch([p[:k].tolist() + r[:m].tolist() for p, k, r, m in zip(prefix, prefix_len, ref, n)],
                             tok.eos_id, prefix.device)
    pos = torch.arange(idx.size(1), device=idx.device)[None]
    target = (pos >= prefix_len[:, None]) & (pos < seq_len[:, None])
    noisy = torch.where(target, tok.mask_id, idx)  # every block's first call: the block masked, earlier ones clean
    logits = model(torch.cat([idx, noisy], 1), prefix_len, seq_len, mode="block", block_len=K).float()
    logits[..., tok.mask_id:] = float("-inf")
    top, arg = logits.softmax(-1).max(-1)  # output i reads token i + 1
    top, arg, want, where = top[:, :-1], arg[:, :-1], idx[:, 1:], target[:, 1:]
    j = (pos[:, 1:] - prefix_len[:, None]) % K
    out = []
    for b in range(K):
        at = where & (j == b)
        hit, confident = (arg == want) & at, (top >= sure) & at
        out.append(dict(position=b, tokens=int(at.sum()), accuracy=float(hit.sum() / at.sum().clamp(min=1)),
                        top_probability=float(top[at].mean()) if at.any() else 0.0,
                        sure=float(confident.sum() / at.sum().clamp(min=1)),
                        sure_accuracy=float((confident & hit).sum() / confident.sum().clamp(min=1))))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a block-diffusion checkpoint fine-tuned on a task")
    p.add_argument("--ref_ckpt", help="an AR checkpoint whose greedy output is the reference (default: the model's)")
    p.add_argument("--data", help="task folder (default: the --ckpt's fine-tuning task)")
    p.add_argument("--split", default="validation", help="split to read")
    p.add_argument("--limit", type=INT, default=200, help="the first N examples")
    p.add_argument("--sure", type=float, default=0.9, help="the top probability counted as sure")
    p.add_argument("--json", help="write the table to this JSON file")
    args = p.parse_args(argv)
    base = dict(device=torch.device("cpu"), dtype="float32", compile=False, compile_mode=None)
    model, tok, ckpt = load(p, argparse.Namespace(**base, ckpt=args.ckpt), "ckpt", "diffusion")
    K, L = ckpt.get("block_len"), ckpt.get("target_len")
    if not K or ckpt.get("noise") != "mask":
        p.error(f"--ckpt {args.ckpt}: needs a mask-noise block-diffusion model, got block_len {K!r}, noise "
                f"{ckpt.get('noise')!r}")
    data = args.data or (ckpt.get("task") or {}).get("folder")
    if not data:
        p.error("--data is needed: --ckpt records no fine-tuning task")
    try:
        rows = load_split(data, args.split)[: args.limit]
    except (OSError, ValueError) as e:
        p.error(f"--data / --split: {e}")
    prefix, prefix_len = pad_batch([e[0] for e in encode_task(tok, rows, L, model.config.block_size, "diffusion")],
                                   tok.eos_id)
    with torch.no_grad():
        if args.ref_ckpt:
            ar, ar_tok, _ = load(p, argparse.Namespace(**base, ref_ckpt=args.ref_ckpt), "ref_ckpt", "ar")
            if ar_tok.state() != tok.state():
                p.error(f"--ref_ckpt {args.ref_ckpt} has another tokenizer than --ckpt {args.ckpt}")
            ref = ar.generate(prefix, prefix_len, L, tok.eos_id, suppress_from=tok.mask_id)
        else:
            ref = diffusion_generate(model, prefix, prefix_len, L, tok, num_steps=K, temperature=0.0, num_samples=1,
                                     block_len=K)[0]
    stats = first_call_stats(model, tok, K, prefix, prefix_len, ref, args.sure)
    print(f"# {args.ckpt}: {len(rows)} {args.split} examples, blocks of {K}; reference: "
          f"{args.ref_ckpt or 'its own greedy decode, one token per call'}")
    print(f"{'position':>8}{'tokens':>8}{'accuracy':>10}{'top p':>8}{f'p>={args.sure}':>9}{'their acc.':>12}")
    for s in stats:
        print(f"{s['position']:>8}{s['tokens']:>8}{s['accuracy']:>10.3f}{s['top_probability']:>8.3f}{s['sure']:>9.3f}"
              f"{s['sure_accuracy']:>12.3f}")
    if args.json:
        made_by = dict(ckpt=os.path.abspath(args.ckpt), sha256=sha256_of(args.ckpt), step=ckpt.get("step"),
                       ref_ckpt=args.ref_ckpt and os.path.abspath(args.ref_ckpt), data=os.path.abspath(data))
        write_json(args.json, dict(made_by=made_by, split=args.split, limit=args.limit, examples=len(rows),
                                   block_len=K, sure=args.sure, positions=stats))
    return stats


if __name__ == "__main__":
    main()

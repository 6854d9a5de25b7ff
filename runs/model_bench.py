"""
Benchmark: forward+backward tokens/s (and MFU on CUDA) of a model.py preset in `ar`, `diffusion` and
`block` mode (block: the two copies of each sequence, so its tokens/s counts the sequence's own tokens).

    python runs/model_bench.py --preset tiny                         # CPU
    python runs/model_bench.py --preset gpt2 --seq_len 1024 --batch_size 16 --device cuda --dtype bfloat16 --compile
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from model import GPT, MODES, PRESETS, GPTConfig  # noqa: E402
from train import peak_flops  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description="Forward+backward tokens/s (and MFU) of a model shape.")
    parser.add_argument("--preset", default="tiny", help=f"model shape, one of {list(PRESETS)}")
    parser.add_argument("--vocab_size", type=int, default=320, help="320 = byte tokenizer, 50304 = gpt2")
    parser.add_argument("--batch_size", type=int, default=32, help="sequences per step")
    parser.add_argument("--seq_len", type=int, default=256, help="tokens per sequence (<= block_size)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode (after 3 warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu|cuda")
    parser.add_argument("--dtype", default="float32", help="float32|bfloat16 (autocast)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--block_len", type=int, default=4, help="block mode: tokens per block")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {MODES}")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: expected a comma-separated list of {MODES}, got {args.modes!r}")
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    cfg = GPTConfig.preset(args.preset, vocab_size=args.vocab_size)
    model = GPT(cfg).to(args.device)
    fwd = torch.compile(model) if args.compile else model
    B, T = args.batch_size, args.seq_len
    idx = torch.randint(cfg.vocab_size, (B, T), device=args.device)
    prefix_len = torch.randint(1, T, (B,), device=args.device)  # prefix LM: a random split point
    seq_len = torch.full((B,), T, device=args.device)
    autocast = torch.autocast(torch.device(args.device).type, dtype=getattr(torch, args.dtype),
                              enabled=args.dtype != "float32")
    peak = peak_flops(args.device)
    print(f"{args.preset}: {model.num_params() / 1e6:.2f}M params, batch {B} x {T}, {args.device} "
          f"{args.dtype}{' compiled' if args.compile else ''}")
    results = {}
    for mode in modes:
        for i in range(args.steps + 3):
            if i == 0:
                t_start = time.perf_counter()
            if i == 3:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            with autocast:
                block = dict(block_len=args.block_len) if mode == "block" else {}
                logits = fwd(torch.cat([idx, idx], 1) if block else idx, prefix_len, seq_len, mode=mode, **block)
                loss = F.cross_entropy(logits.flatten(0, 1).float(), idx.flatten())
            loss.backward()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        tok_s = B * T * args.steps / (time.perf_counter() - t0)
        mfu = model.flops_per_token(T) * tok_s * (2 if mode == "block" else 1) / peak if peak else None
        results[mode] = dict(tokens_per_s=tok_s, mfu=mfu, warmup_s=t0 - t_start)  # warm-up: compilation too
        print(f"{mode:9s}: {tok_s:,.0f} tokens/s (forward+backward)" + (f", MFU {mfu:.1%}" if peak else "") +
              f"; 3 warm-up steps {t0 - t_start:.1f} s")
    if args.json:
        from data.common import write_json
        write_json(args.json, dict(settings=dict(vars(args), n_params=model.num_params(), torch=torch.__version__,
                                                 device_name=torch.cuda.get_device_name(args.device)
                                                 if args.device.startswith("cuda") else "CPU"), results=results))
    return results


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The GPU figures in at most ~8 minutes on one H100/H200, compilation included:
#   bash runs/gpu_check.sh [--out DIR] [--shared DIR] [--data DIR] [--cudagraphs] [--cpu]
# 1. mfu       python runs/model_bench.py: forward+backward tokens/s and MFU at gpt2 shape, sequence 1024, bf16,
#              compiled, objectives ar and diffusion (prefix-LM masks, as training uses them)
# 2. speed     sample.py --compare at gpt2 shape, 64 ... 4096 output tokens, 10/20/50 steps, both sides
#              compiled (static KV cache: the AR step compiled at two lengths, reused at all); speed_eager: both
#              sides uncompiled, 64 ... 1024 tokens (eager AR alone would take minutes at 4096)
# 3. train     a short real-data AR pretraining run (train.py, gpt2 shape, GPT-2 BPE, compiled, bf16):
#              tokens/s and MFU from its log
# 4. summary   runs/gpu_check.py: summary.md (one table) and summary.json beside the JSON and PNG files
# --data DIR     a prepared GPT-2 BPE corpus (data/pretrain/prepare.py); default: prepared from
#                --shared DIR/pretrain (default ../shared/data)
# --cudagraphs   also time --compile_mode reduce-overhead (CUDA graphs), 64 ... 1024 tokens
# --cpu          the same stages at tiny shapes on a CPU, on the embedded data (a test runs it in
#                about a minute); its figures say nothing about a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
source runs/setup.sh  # installs what is missing (into .venv, or the active environment), once

OUT=out/gpu_check
SHARED=../shared/data
DATA=
CPU=0
CUDAGRAPHS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --shared) SHARED="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --cudagraphs) CUDAGRAPHS=1; shift ;;
    --cpu) CPU=1; shift ;;
    *) echo "usage: bash runs/gpu_check.sh [--out DIR] [--shared DIR] [--data DIR] [--cudagraphs] [--cpu]" >&2
       exit 2 ;;
  esac
done
[ -d "$SHARED/tiktoken_cache" ] && export TIKTOKEN_CACHE_DIR="$(cd "$SHARED/tiktoken_cache" && pwd)"
if [ "$CPU" = 0 ] && ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "runs/gpu_check.sh: no CUDA device; --cpu runs the same stages at tiny shapes" >&2
  exit 2
fi

source runs/stages.sh  # step NAME COMMAND...: a stage with its log in $OUT/logs/NAME.log

if [ "$CPU" = 1 ]; then  # tiny shapes; compiled decoding still (the comparison under test)
  DEV=(--device cpu); MFU=(--preset tiny --vocab_size 320 --seq_len 256 --batch_size 8 --steps 3)
  SPEED=(--preset tiny --tokenizer byte --lengths 16,64 --num_steps 2,5 --repeats 1)
  EAGER=(--lengths 16,64); TRAIN=(--model tiny --block_size 256 --batch_size 8 --max_steps 12 --eval_interval 6)
  CG=()
else
  DEV=(--device cuda); MFU=(--preset gpt2 --vocab_size 50304 --seq_len 1024 --batch_size 16 --steps 20
                            --dtype bfloat16 --compile)
  SPEED=(--preset gpt2 --tokenizer gpt2 --block_size 4112 --lengths 64,128,256,512,1024,2048,4096
         --num_steps 10,20,50 --dtype bfloat16 --repeats 3)
  EAGER=(--lengths 64,128,256,512,1024 --repeats 1)
  TRAIN=(--model gpt2 --block_size 1024 --batch_size 32 --max_steps 60 --eval_interval 60 --warmup_steps 20
         --compile)
  CG=(--lengths 64,128,256,512,1024)
fi

step mfu python runs/model_bench.py "${DEV[@]}" "${MFU[@]}" --modes ar,diffusion --json "$OUT/mfu.json"
step speed python sample.py --compare "${DEV[@]}" "${SPEED[@]}" --compile \
  --json "$OUT/speed.json" --plot "$OUT/speed.png"
step speed_eager python sample.py --compare "${DEV[@]}" "${SPEED[@]}" "${EAGER[@]}" --no-compile \
  --json "$OUT/speed_eager.json"
if [ "$CUDAGRAPHS" = 1 ] && [ "$CPU" = 0 ]; then
  step speed_cudagraphs python sample.py --compare "${DEV[@]}" "${SPEED[@]}" "${CG[@]}" --compile \
    --compile_mode reduce-overhead --json "$OUT/speed_cudagraphs.json"
fi

if [ -z "$DATA" ]; then
  DATA=$OUT/data
  if [ "$CPU" = 1 ]; then
    step data python data/embedded/prepare.py --tokenizer byte --train 16 --validation 8 --test 8 \
      --pretrain_tokens 50000 --out_dir "$DATA"
    DATA=$DATA/pretrain
  else
    step data python data/pretrain/prepare.py --src "$SHARED/pretrain" --tokenizer gpt2 --max_tokens 4000000 \
      --out_dir "$DATA"
  fi
fi
step train python train.py "${DEV[@]}" "${TRAIN[@]}" --data "$DATA" --objective ar --lr 6e-4 --eval_examples 64 \
  --out_dir "$OUT/train"

step summary python runs/gpu_check.py --out "$OUT" --seconds "$(($(date +%s) - START))"
cat "$OUT/summary.md"

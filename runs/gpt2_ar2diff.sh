#!/usr/bin/env bash
# AR2Diff from a real pretrained AR model: GPT-2 (124M) -> diffusion, on GPUs with torchrun.
#   bash runs/gpt2_ar2diff.sh [--gpus 8] [--out DIR] [--adapt_steps N] [--model gpt2]
# Needs internet (GPT-2 weights through transformers, FineWeb-Edu shards, SQuAD and MBPP) or local
# copies: set SHARED=../shared/data to read SQuAD/MBPP from there. Stages:
# 1. data: FineWeb-Edu (web text, GPT-2 BPE) for the adaptation; SQuAD v1.1 (train/dev); MBPP
# 2. AR2Diff_N: import GPT-2, switch to bidirectional attention and the mask noise, continue
#    pretraining with the diffusion loss for N steps (paper: 10K-100K steps at batch 128 x 1024)
# 3. fine-tune the diffusion model, and GPT-2 itself with the AR loss as the baseline, on each task
#    (paper: constant lr 1e-3; GPT-2 scale prefers lower: 1e-4 here), then evaluate
set -euo pipefail
cd "$(dirname "$0")/.."
source runs/setup.sh  # installs what is missing (into .venv, or the active environment), once

GPUS=8
OUT=out/gpt2_ar2diff
ADAPT_STEPS=10000
MODEL=gpt2
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) GPUS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --adapt_steps) ADAPT_STEPS="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    *) echo "usage: bash runs/gpt2_ar2diff.sh [--gpus N] [--out DIR] [--adapt_steps N] [--model gpt2]" >&2; exit 2 ;;
  esac
done
SHARED=${SHARED:-}
src() { [ -n "$SHARED" ] && [ -d "$SHARED/$1" ] && echo "--src $SHARED/$1" || true; }
RUN=(torchrun --standalone --nproc_per_node="$GPUS")
D=$OUT/data
mkdir -p "$OUT"

# 1. data (about 1B tokens from 4 FineWeb-Edu shards)
python data/fineweb_edu/prepare.py --num_shards 4 --out_dir "$D/fineweb_edu"
# shellcheck disable=SC2046
python data/squad/prepare.py $(src squad_v1.1) --out_dir "$D/squad"
# shellcheck disable=SC2046
python data/mbpp/prepare.py $(src mbpp) --out_dir "$D/mbpp"
SQUAD_TRAIN=train; SQUAD_EVAL=dev
[ -f "$D/squad/train.jsonl" ] || { SQUAD_TRAIN=devsplit_train; SQUAD_EVAL=devsplit_eval; }  # dev-split protocol

# 2. AR2Diff_N: batch 128 x 1024 tokens as the paper, the gradient accumulated over the GPUs
"${RUN[@]}" adapt.py --init_from "$MODEL" --steps "$ADAPT_STEPS" --noise mask --data "$D/fineweb_edu" \
  --batch_size 128 --micro_batch_size 16 --block_size 1024 --lr 1e-4 --warmup_steps 500 \
  --eval_interval 1000 --out_dir "$OUT/ar2diff_$ADAPT_STEPS"

# 3. fine-tune and evaluate: diffusion (from AR2Diff_N) and the AR baseline (GPT-2 itself)
for task in squad mbpp; do
  if [ "$task" = squad ]; then
    SPLITS=(--train_split "$SQUAD_TRAIN" --val_split "$SQUAD_EVAL"); TLEN=32; STEPS=5000
    EVAL=(--split "$SQUAD_EVAL")
  else
    SPLITS=(--train_split train --val_split validation); TLEN=256; STEPS=500
    EVAL=(--split test --num_outputs 10 --k 1,10)
  fi
  for start in ar2diff gpt2; do
    if [ "$start" = ar2diff ]; then INIT=$OUT/ar2diff_$ADAPT_STEPS/best.pt; else INIT=$MODEL; fi
    FT=$OUT/finetune/$start/$task
    "${RUN[@]}" train.py --init_from "$INIT" --data "$D/$task" "${SPLITS[@]}" --target_len "$TLEN" \
      --batch_size 128 --micro_batch_size 16 --lr 1e-4 --lr_schedule constant --warmup_steps 100 \
      --max_steps "$STEPS" --eval_interval 250 --patience 4 --dropout 0.1 --out_dir "$FT"
    python evaluate.py --ckpt "$FT/best.pt" --task_dir "$D/$task" "${EVAL[@]}" --out_dir "$FT/eval"
  done
done
python runs/report.py --out "$OUT" --data "$D" --models "AR=gpt2,AR2Diff_$ADAPT_STEPS=ar2diff" --tasks squad,mbpp \
  --title "AR2Diff from GPT-2 ($MODEL)" --settings "bash runs/gpt2_ar2diff.sh --gpus $GPUS --adapt_steps $ADAPT_STEPS"

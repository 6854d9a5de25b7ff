#!/usr/bin/env bash
# Ablations of the tiny experiment, on top of a finished `bash runs/tiny.sh --seed N --out DIR`:
#   bash runs/tiny_ablations.sh [--seed N] [--out DIR] [--quick]
# 1. AR2Diff-block4_N: the same AR model converted into a block-diffusion model (blocks of 4 target
#    tokens, BD3-LM / Fast-dLLM v2) instead of full diffusion, adapted N steps, fine-tuned on
#    translation (and code with TASKS="translation code")
# 2. AR2Diff_N (uniform): the paper's own noise (SUNDAE-style uniform, loss L(1) + L(2)), same budgets
# 3. reranking: the full-diffusion rows of tiny.sh and the block row decoded with 1, 4, 8 and 16
#    candidates at 10 steps on translation (the paper's Table 3 asks the same of 4 / 8 / 16 samples)
# 4. decoding speed of AR, full and block diffusion on the block model's weights (speed_block.json)
# 5. ablations.json and ablations.md in the output folder (python runs/ablations.py)
# Budgets, learning rates and the evaluation are tiny.sh's, unchanged: only the conversion differs.
# --quick shrinks every budget (a test runs it after tiny.sh --quick); the numbers then mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source runs/setup.sh  # installs what is missing (into .venv, or the active environment), once

SEED=1337
OUT=out/tiny
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) SEED="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "usage: bash runs/tiny_ablations.sh [--seed N] [--out DIR] [--quick]" >&2; exit 2 ;;
  esac
done
if [ ! -f "$OUT/pretrain/ar/best.pt" ] || [ ! -f "$OUT/results.json" ]; then
  echo "runs/tiny_ablations.sh: $OUT holds no finished tiny run; first: bash runs/tiny.sh --seed $SEED --out $OUT" >&2
  exit 2
fi

source runs/tiny_settings.sh  # tiny.sh's budgets, COMMON flags, finetune_and_eval
BLOCK_LEN=4
CANDIDATES=(1 4 16)  # and 8: the paper's default, already decoded by the evaluation above
[ "$QUICK" = 1 ] && CANDIDATES=(1 4)
# QA answers are one or two tokens: a block of 4 holds the whole answer, so block and full diffusion
# coincide there; code fine-tuning is the longest stage: the ablations take translation, the task
# with long outputs that fits the budget (TASKS="translation code" adds code)
read -r -a TASKS <<< "${TASKS:-translation}"
BLOCK="ar2diff_block${BLOCK_LEN}_$ADAPT_STEPS"; UNIFORM="ar2diff_uniform_$ADAPT_STEPS"

source runs/stages.sh

PRE=("${COMMON[@]}" --data "$OUT/data/pretrain" --batch_size "$PRETRAIN_BATCH" --lr "$ADAPT_LR" --warmup_steps 20
     --lr_schedule constant --eval_interval 500)
adapt_and_finetune() {  # adapt_and_finetune NAME ADAPT-FLAGS...: one lane per conversion
  local m=$1; shift
  step "adapt_$m" python adapt.py --init_from "$OUT/pretrain/ar/best.pt" --steps "$ADAPT_STEPS" "$@" \
    "${PRE[@]}" --out_dir "$OUT/pretrain/$m"
  for task in "${TASKS[@]}"; do finetune_and_eval "$m" "$task"; done
}
lane adapt_and_finetune "$BLOCK" --block_len "$BLOCK_LEN"
lane adapt_and_finetune "$UNIFORM" --noise uniform
drain

candidates() {  # candidates MODEL: translation at 10 steps with S candidates each
  local FT="$OUT/finetune/$1/translation"
  ln -sfn eval "$FT/eval_samples8"  # 8 candidates: the evaluation with the paper's settings
  for S in "${CANDIDATES[@]}"; do
    rm -rf "$FT/eval_samples$S"
    step "candidates_$1_$S" python evaluate.py --ckpt "$FT/best.pt" --split test \
      --limit "${EVAL_LIMIT[translation]}" --batch_size 50 --num_samples "$S" --out_dir "$FT/eval_samples$S"
  done
}
for m in diffusion "ar2diff_$ADAPT_STEPS" "$BLOCK"; do lane candidates "$m"; done
drain

# decoding speed on one model's weights: KV-cached AR, prefix-cached full diffusion, block diffusion
# (blocks of the checkpoint's K, an exact KV cache of the committed blocks), as tiny.sh times it
step speed_block python sample.py --compare --ckpt "$OUT/finetune/$BLOCK/translation/best.pt" "${SPEED[@]}" \
  --num_steps 2,10 --json "$OUT/speed_block.json"

SECONDS_TOTAL=$(($(date +%s) - START))
step report python runs/ablations.py --runs "$OUT" --seconds "$SECONDS_TOTAL" --adapt_steps "$ADAPT_STEPS" \
  --block_len "$BLOCK_LEN" --candidates "$(IFS=,; echo "${CANDIDATES[*]}"),8" --out "$OUT/ablations"
echo "done in $((SECONDS_TOTAL / 60))m$((SECONDS_TOTAL % 60))s: $OUT/ablations.md, $OUT/ablations.json"

#!/usr/bin/env bash
# Ablations of the Multi30k experiment: the same AR model converted another way, same budgets:
#   bash runs/multi30k_ablations.sh [--seed N] [--out DIR] [--shared DIR] [--scale X] [--eval_limit N] [--quick]
# 1. AR2Diff-block4_N: a block-diffusion model (blocks of 4 target tokens, BD3-LM / Fast-dLLM v2)
#    instead of full diffusion, adapted N steps on the corpus, fine-tuned on Multi30k train, and (after
#    runs/multi30k.sh into the same folder) on its distilled train set, with AR's budget
# 2. AR2Diff_N (uniform): the paper's own noise (SUNDAE-style uniform, loss L(1) + L(2))
# 3. both evaluated on test_2016 as runs/multi30k.sh evaluates its rows; ablations.md and
#    ablations.json in the output folder (python runs/ablations.py), beside that run's rows when
#    runs/multi30k.sh has run into the same folder
# The data and the AR pretraining are runs/multi30k.sh's stages: done once, reused from a finished
# run in DIR (same seed, same flags), run here otherwise. --quick shrinks every budget (a test).
set -euo pipefail
cd "$(dirname "$0")/.."
source runs/setup.sh  # installs what is missing (into .venv, or the active environment), once

source runs/multi30k_settings.sh "$@"
BLOCK_LEN=4
BLOCK_ROW="ar2diff_block${BLOCK_LEN}_$ADAPT_STEPS"; UNIFORM_ROW="ar2diff_uniform_$ADAPT_STEPS"

source runs/stages.sh

RESUME=1 prepare_data  # a finished multi30k.sh run into $OUT already holds these two stages
RESUME=1 lane pretrain_ar; drain  # one thread, as multi30k.sh trains it: the same floats on the same CPU
adapt_and_finetune() {  # adapt_and_finetune NAME ADAPT-FLAGS...: one lane per conversion
  local m=$1; shift
  adapt "$m" "$ADAPT_STEPS" "$@"
  finetune_and_eval "$m"
}
lane adapt "$BLOCK_ROW" "$ADAPT_STEPS" --block_len "$BLOCK_LEN"; BLOCK_LANE=$LANE_PID
lane adapt_and_finetune "$UNIFORM_ROW" --noise uniform
wait_lane "$BLOCK_LANE"
lane finetune_and_eval "$BLOCK_ROW"
if [ -e "$OUT/data/${TASK}_distilled/meta.json" ]; then  # multi30k.sh's distilled folder: the paper-order row on it
  lane finetune_and_eval "$BLOCK_ROW" distilled
fi
drain

SECONDS_TOTAL=$(($(date +%s) - START))
step report python runs/ablations.py --runs "$OUT" --tasks "$TASK" --candidates "" --seconds "$SECONDS_TOTAL" \
  --adapt_steps "$ADAPT_STEPS" --block_len "$BLOCK_LEN" --out "$OUT/ablations"
echo "done in $((SECONDS_TOTAL / 60))m$((SECONDS_TOTAL % 60))s: $OUT/ablations.md, $OUT/ablations.json"

#!/usr/bin/env bash
# The whole AR2Diff experiment on the embedded default, on a CPU, with no network:
#   bash runs/tiny.sh [--seed N] [--out DIR] [--quick] [--compile]
# 1. prepare the embedded data (a pretraining corpus and three tasks), deterministic by --seed
# 2. pretrain a tiny AR model and, with the same budget, a diffusion model from scratch
# 3. AR2Diff_0 (convert only) and AR2Diff_N (N diffusion steps on the corpus), from the AR model
# 4. fine-tune AR, diffusion, AR2Diff_0 and AR2Diff_N on each task (paper: constant lr 1e-3)
# 5. evaluate all of them on the test split with the paper's decoding (diffusion: 10 steps,
#    temperature 0.2, 8 candidates reranked; AR: greedy, temperature sampling for code)
# 6. time AR vs diffusion decoding (both sides uncompiled; the compiled comparison is one more command,
#    docs/benchmarks.md), then write report.md and results.json into the output folder
# --quick shrinks every budget (CI runs it as a test); the numbers then mean nothing.
# --compile  torch.compile every training and evaluation stage too (on a CPU it makes this run slower:
#            README, Benchmarks); the speed stages time both ways whatever this says.
set -euo pipefail
cd "$(dirname "$0")/.."
source runs/setup.sh  # installs what is missing (into .venv, or the active environment), once

SEED=1337
OUT=out/tiny
QUICK=0
COMPILE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) SEED="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --compile) COMPILE=1; shift ;;
    *) echo "usage: bash runs/tiny.sh [--seed N] [--out DIR] [--quick] [--compile]" >&2; exit 2 ;;
  esac
done

source runs/tiny_settings.sh  # budgets, COMMON flags, finetune_and_eval
TASKS=(translation qa code)
MODELS=(ar diffusion ar2diff_0 "ar2diff_$ADAPT_STEPS")

# Independent stages run two at a time (lane) with one thread each: the tiny model's matmuls keep
# two threads only ~60% busy, so two single-thread processes finish ~1.4x sooner than in turn.
source runs/stages.sh

step data python data/embedded/prepare.py --tokenizer words --seed "$SEED" --out_dir "$OUT/data" "${DATA_FLAGS[@]}"

PRE=("${COMMON[@]}" --data "$OUT/data/pretrain" --batch_size "$PRETRAIN_BATCH" --lr "$PRETRAIN_LR"
     --warmup_steps 50 --eval_interval 500)
pretrain_ar_and_adapt() {
  step pretrain_ar python train.py "${PRE[@]}" --objective ar --max_steps "$PRETRAIN_STEPS" \
    --out_dir "$OUT/pretrain/ar"
  step adapt_0 python adapt.py --init_from "$OUT/pretrain/ar/best.pt" --steps 0 \
    --data "$OUT/data/pretrain" --out_dir "$OUT/pretrain/ar2diff_0"
  step "adapt_$ADAPT_STEPS" python adapt.py --init_from "$OUT/pretrain/ar/best.pt" --steps "$ADAPT_STEPS" \
    "${PRE[@]}" --lr "$ADAPT_LR" --warmup_steps 20 --lr_schedule constant --out_dir "$OUT/pretrain/ar2diff_$ADAPT_STEPS"
}
pretrain_diffusion_and_code() {  # the shorter pretraining lane goes on with its first fine-tune
  step pretrain_diffusion python train.py "${PRE[@]}" --objective diffusion --noise mask "${DIFF_PRETRAIN[@]}" \
    --out_dir "$OUT/pretrain/diffusion"
  finetune_and_eval diffusion code
}
lane pretrain_ar_and_adapt; AR_LANE=$LANE_PID
lane pretrain_diffusion_and_code
wait_lane "$AR_LANE"  # the other fine-tunes start from the AR lane's checkpoints

for task in qa code translation; do  # longest first and AR (it decodes fast) last, so the lanes end together
  for m in "${MODELS[@]:1}" ar; do
    [ "$m/$task" = diffusion/code ] || lane finetune_and_eval "$m" "$task"
  done
done
drain

step speed python sample.py --compare --ckpt "$OUT/finetune/diffusion/translation/best.pt" \
  "${SPEED[@]}" --num_steps 10,20 --threshold 0.9 \
  --json "$OUT/speed.json" --plot "$OUT/speed.png"

SECONDS_TOTAL=$(($(date +%s) - START))
ROWS="AR=ar,diffusion=diffusion,AR2Diff_0=ar2diff_0,AR2Diff_$ADAPT_STEPS=ar2diff_$ADAPT_STEPS"
SETTINGS="seed $SEED; tiny model (4 layers, 128 wide, block 256, the world's words as tokens); pretraining \
$PRETRAIN_STEPS steps x $PRETRAIN_BATCH sequences of 256 tokens, lr $PRETRAIN_LR cosine (AR; diffusion from scratch: \
$((PRETRAIN_STEPS / 2)) steps, each sequence with complementary masks, the same compute); \
AR2Diff_$ADAPT_STEPS: $ADAPT_STEPS more diffusion steps from the AR model at constant lr $ADAPT_LR; fine-tuning (translation/qa/code) \
${FINETUNE_STEPS[translation]}/${FINETUNE_STEPS[qa]}/${FINETUNE_STEPS[code]} steps x $FINETUNE_BATCH examples, lr ${FINETUNE_LR[translation]}/${FINETUNE_LR[qa]}/${FINETUNE_LR[code]} cosine, diffusion loss flat-weighted (pretraining: ELBO), best validation checkpoint; evaluation on the first \
${EVAL_LIMIT[translation]}/${EVAL_LIMIT[qa]}/${EVAL_LIMIT[code]} test examples; code pass@k with $CODE_SAMPLES samples per problem. Command: bash runs/tiny.sh --seed $SEED --out $OUT$([ "$QUICK" = 1 ] && echo ' --quick' || true)$([ "$COMPILE" = 1 ] && echo ' --compile' || true)"
step report python runs/report.py --out "$OUT" --models "$ROWS" --tasks "$(IFS=,; echo "${TASKS[*]}")" \
  --seconds "$SECONDS_TOTAL" --settings "$SETTINGS"
echo "done in $((SECONDS_TOTAL / 60))m$((SECONDS_TOTAL % 60))s: $OUT/report.md, $OUT/results.json, $OUT/speed.png"

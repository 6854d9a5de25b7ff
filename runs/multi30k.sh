#!/usr/bin/env bash
# The AR2Diff experiment on real text and a real translation benchmark, on a CPU, with no network:
#   bash runs/multi30k.sh [--seed N] [--out DIR] [--shared DIR] [--scale X] [--eval_limit N] [--task_block K] [--quick]
# 1. Multi30k En->Fr (train / validation / test = test_2016_flickr) and a pretraining corpus of real
#    monolingual English + French text (data/multi30k/prepare.py; --shared holds the local copies)
# 2. pretrain a tiny AR model and, with the same budget, a diffusion model from scratch
# 3. fine-tune AR on Multi30k train (real references), then distil it: the fine-tuned AR model decodes
#    the train inputs greedily into a distilled copy of the task (runs/distill.py; validation and test
#    keep the real references)
# 4. fine-tune on the distilled train set: diffusion from scratch with AR's budget (the transfer
#    comparison), and AR2Diff-blockK of AR-ft: the fine-tuned AR model itself converted to block
#    diffusion (blocks of K = 4; Fast-dLLM v2's order: convert the finished AR model), fine-tuned
#    TASK_FT_STEPS more steps with complementary masks (beyond AR's budget, reported as such). Every
#    fine-tune keeps the checkpoint of best validation loss (early stopping)
# 5. evaluate them on test_2016 and on validation with the paper's decoding (diffusion: 10 steps,
#    temperature 0.2, 8 candidates reranked; AR greedy): sacreBLEU against the raw references
# 6. the quality-against-latency front of the rows (runs/pareto.py: each row's decoding settings beside
#    KV-cached AR, eager or compiled, whichever is faster), then report.md, results.json and the plots
# The paper's order (AR2Diff_N: convert the pretrained AR model, adapt N steps, fine-tune), distilled
# and not, and the paper's uniform noise: runs/multi30k_ablations.sh in the same --out.
# --scale X multiplies every training budget (for machines with more time); --quick shrinks
# everything to a plumbing check (CI runs it as a test): the numbers then mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source runs/setup.sh  # installs what is missing (into .venv, or the active environment), once

source runs/multi30k_settings.sh "$@"  # the flags, budgets and stages both Multi30k recipes share
# the front: batch-1 latencies on the first 50 test sentences; AR eager and compiled (the faster kept), diffusion
# eager (compiling its many batch shapes on a CPU costs more time than the recipe has; it can only look slower)
# (chosen on validation at seed 1337: thresholds 0.95, the closest to the paper's decoding, and 0.5, the fewest
# calls; 16 candidates at temperature 0.5 reranked by the AR model, the best BLEU; diffusion from scratch gets it too)
B1_LIMIT=50; PARETO_FLAGS=(--diffusion_compile off --settings "block:paper;block:threshold=0.95,temperature=0;\
block:threshold=0.8,temperature=0;block:threshold=0.5,temperature=0;block:rerank=ar;\
num_samples=16,temperature=0.5,rerank=ar;full:paper;full:num_steps=1")
# --quick: two sentences, one setting per model kind, one repeat, AR eager only (no compiler to wait for)
[ "$QUICK" = 1 ] && { B1_LIMIT=2; PARETO_FLAGS=(--compile off --diffusion_compile off --repeats 1 --settings \
  "block:paper;full:num_steps=1"); }
TASKK="ar2diff_ft_block$TASK_BLOCK"
VAL_EVAL=1  # every row is scored on validation too (settings are chosen there, never on test)

source runs/stages.sh

prepare_data
lane pretrain_ar; AR_LANE=$LANE_PID
lane step pretrain_diffusion python train.py "${PRE[@]}" --objective diffusion --noise mask --lr "$PRETRAIN_LR" \
  --warmup_steps 50 --max_steps "$PRETRAIN_STEPS" --eval_interval "$DIFF_EVAL" --out_dir "$OUT/pretrain/diffusion"
wait_lane "$AR_LANE"
ar_and_distill() {  # the teacher: fine-tuned on the real references, then decoding the train inputs
  finetune_and_eval ar
  distill
}
lane ar_and_distill; AR_LANE=$LANE_PID
wait_lane "$AR_LANE"  # the distilled fine-tunes need the distilled folder
of_ar_ft() {  # AR2Diff-blockK of AR-ft: the teacher itself converted, fine-tuned on its own outputs
  convert_teacher "$TASK_BLOCK"
  finetune_and_eval "$TASKK" distilled "$TASK_FT_STEPS" "$TASK_FT_LR" "${TASK_FT_FLAGS[@]}"
}
lane of_ar_ft
lane finetune_and_eval diffusion distilled  # from scratch on the same distilled data: an honest transfer row
drain

ROWS="AR=ar,diffusion (distilled)=diffusion_distilled,AR2Diff-block${TASK_BLOCK} of AR-ft (distilled)=${TASKK}_distilled"
# the front: each row's decoding settings against AR greedy, timed in the same process (runs/pareto.py)
FT="$OUT/finetune"
MODELS="diffusion-distilled=$FT/diffusion_distilled/$TASK/best.pt"
MODELS="$MODELS,AR2Diff-block${TASK_BLOCK}-of-AR-ft-distilled=$FT/${TASKK}_distilled/$TASK/best.pt"
PARETO=()
if [ -e runs/pareto.py ]; then
  step pareto python runs/pareto.py --ar_ckpt "$FT/ar/$TASK/best.pt" --models "$MODELS" --split test \
    --limit "$EVAL_LIMIT" --b1_limit "$B1_LIMIT" --json "$OUT/pareto.json" --plot "$OUT/pareto.png" \
    --summary "$OUT/summary.json" --seed "$SEED" "${PARETO_FLAGS[@]}"
  PARETO=(--pareto "$OUT/pareto.json")
fi
SECONDS_TOTAL=$(($(date +%s) - START))
VOCAB=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['tokenizer']['vocab_size'])" "$OUT/data/$TASK/meta.json")
SETTINGS="seed $SEED; tiny model (4 layers, 128 wide, block $BLOCK; SentencePiece BPE of the Multi30k train examples, \
vocabulary $VOCAB); pretraining $PRETRAIN_STEPS steps x $PRETRAIN_BATCH windows of $BLOCK tokens, lr $PRETRAIN_LR cosine \
(AR and diffusion alike); AR2Diff-blockK_$ADAPT_STEPS: $ADAPT_STEPS block-diffusion steps (blocks of K target tokens) \
from the AR model at constant lr $ADAPT_LR; distillation: the fine-tuned AR model's greedy outputs on the Multi30k \
train inputs (runs/distill.py, batch 100) replace the train targets of the rows marked distilled (validation and \
test keep the real references); fine-tuning (every row the same budget): at most $FINETUNE_STEPS steps x \
$FINETUNE_BATCH pairs, lr $FINETUNE_LR cosine, target_len $TARGET_LEN, validation loss on $FT_EVAL_EXAMPLES validation \
pairs every $FT_EVAL steps, patience 3, best checkpoint kept; test_2016_flickr and validation \
($([ "$EVAL_LIMIT" = 0 ] && echo all || echo "first $EVAL_LIMIT") sentences), diffusion 10 steps (block: per \
block), temperature 0.2, 8 candidates reranked, AR greedy. \
Command: bash runs/multi30k.sh --seed $SEED --out $OUT --scale $SCALE$([ "$TASK_BLOCK" = 4 ] || echo " --task_block $TASK_BLOCK")\
$([ "$QUICK" = 1 ] && echo ' --quick' || true)"
step report python runs/report.py --out "$OUT" --models "$ROWS" --tasks "$TASK" --title "AR2Diff on Multi30k En-Fr" \
  --seconds "$SECONDS_TOTAL" --settings "$SETTINGS" --curves --validation "${PARETO[@]}"
echo "done in $((SECONDS_TOTAL / 60))m$((SECONDS_TOTAL % 60))s: $OUT/report.md, $OUT/results.json, $OUT/*.png"

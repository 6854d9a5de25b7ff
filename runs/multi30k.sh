#!/usr/bin/env bash
# The AR2Diff experiment on real text and a real translation benchmark, on a CPU, with no network:
#   bash runs/multi30k.sh [--seed N] [--out DIR] [--shared DIR] [--scale X] [--eval_limit N] [--quick]
# 1. Multi30k En->Fr (train / validation / test = test_2016_flickr) and a pretraining corpus of real
#    monolingual English + French text (data/multi30k/prepare.py; --shared holds the local copies)
# 2. pretrain a tiny AR model and, with the same budget, a diffusion model from scratch
# 3. AR2Diff_0 (convert only) and AR2Diff_N (N diffusion steps on the corpus), from the AR model
# 4. fine-tune AR, diffusion, AR2Diff_0 and AR2Diff_N on Multi30k train, keeping the checkpoint of
#    best validation loss (early stopping)
# 5. evaluate them on test_2016 with the paper's decoding (diffusion: 10 steps, temperature 0.2, 8
#    candidates reranked; AR greedy): sacreBLEU against the raw references
# 6. sweep the diffusion steps (1, 2, 5, 10, 20) of the best diffusion row against latency, then write
#    report.md, results.json and the plots (transfer curves, fine-tuning curves, steps sweep)
# --scale X multiplies every training budget (for machines with more time); --quick shrinks
# everything to a plumbing check (CI runs it as a test): the numbers then mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

source runs/multi30k_settings.sh "$@"  # the flags, budgets and stages both Multi30k recipes share
SWEEP_LIMIT=100; SWEEP_STEPS=1,2,5,10,20  # the steps sweep decodes the first 100 test sentences
[ "$QUICK" = 1 ] && { SWEEP_LIMIT=2; SWEEP_STEPS=1,2; }

source runs/stages.sh

prepare_data
pretrain_ar_and_adapt() {
  pretrain_ar
  adapt ar2diff_0 0
  adapt "ar2diff_$ADAPT_STEPS" "$ADAPT_STEPS"
}
pretrain_diffusion_and_finetune() {  # the shorter pretraining lane goes on with its fine-tune
  step pretrain_diffusion python train.py "${PRE[@]}" --objective diffusion --noise mask --lr "$PRETRAIN_LR" \
    --warmup_steps 50 --max_steps "$PRETRAIN_STEPS" --eval_interval "$DIFF_EVAL" \
    --out_dir "$OUT/pretrain/diffusion"
  finetune_and_eval diffusion
}
lane pretrain_ar_and_adapt; AR_LANE=$LANE_PID
lane pretrain_diffusion_and_finetune
wait_lane "$AR_LANE"  # the other fine-tunes start from the AR lane's checkpoints
for m in "ar2diff_$ADAPT_STEPS" ar2diff_0 ar; do lane finetune_and_eval "$m"; done
drain

# the steps sweep, on the diffusion row with the best test BLEU (a choice of what to plot, not of a model)
BEST=$(python -c "import json, sys
rows = {m: json.load(open(f'$OUT/finetune/{m}/$TASK/eval/metrics.json'))['bleu'] for m in sys.argv[1:]}
print(max(rows, key=rows.get))" diffusion ar2diff_0 "ar2diff_$ADAPT_STEPS")
step sweep python runs/quality.py --ckpt "$OUT/finetune/$BEST/$TASK/best.pt" \
  --ar_ckpt "$OUT/finetune/ar/$TASK/best.pt" --split test --limit "$SWEEP_LIMIT" --num_steps "$SWEEP_STEPS" \
  --batch_size 50 --warmup 0 --json "$OUT/quality.json" --plot "$OUT/quality.png"

SECONDS_TOTAL=$(($(date +%s) - START))
ROWS="AR=ar,diffusion=diffusion,AR2Diff_0=ar2diff_0,AR2Diff_$ADAPT_STEPS=ar2diff_$ADAPT_STEPS"
VOCAB=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['tokenizer']['vocab_size'])" "$OUT/data/$TASK/meta.json")
SETTINGS="seed $SEED; tiny model (4 layers, 128 wide, block $BLOCK; SentencePiece BPE of the Multi30k train examples, \
vocabulary $VOCAB); pretraining $PRETRAIN_STEPS steps x $PRETRAIN_BATCH windows of $BLOCK tokens, lr $PRETRAIN_LR cosine \
(AR and diffusion alike); AR2Diff_$ADAPT_STEPS: $ADAPT_STEPS more diffusion steps from the AR model at constant lr \
$ADAPT_LR; fine-tuning on Multi30k train: at most $FINETUNE_STEPS steps x $FINETUNE_BATCH pairs, lr $FINETUNE_LR cosine, \
target_len $TARGET_LEN, validation loss on $FT_EVAL_EXAMPLES validation pairs every $FT_EVAL steps, patience 3, best checkpoint kept; \
test_2016_flickr ($([ "$EVAL_LIMIT" = 0 ] && echo all || echo "first $EVAL_LIMIT") sentences), diffusion 10 steps, \
temperature 0.2, 8 candidates reranked, AR greedy; steps sweep of $BEST on the first $SWEEP_LIMIT test sentences. \
Command: bash runs/multi30k.sh --seed $SEED --out $OUT --scale $SCALE$([ "$QUICK" = 1 ] && echo ' --quick' || true)"
step report python runs/report.py --out "$OUT" --models "$ROWS" --tasks "$TASK" --title "AR2Diff on Multi30k En-Fr" \
  --seconds "$SECONDS_TOTAL" --settings "$SETTINGS" --curves --quality "$OUT/quality.json"
echo "done in $((SECONDS_TOTAL / 60))m$((SECONDS_TOTAL % 60))s: $OUT/report.md, $OUT/results.json, $OUT/*.png"

#!/usr/bin/env bash
# The AR2Diff pipeline on real data, one GPU (about 25 minutes on one H100 is the aim):
#   bash runs/small_gpu.sh [--seed N] [--out DIR] [--shared DIR] [--quick] [--minutes M] [--resume]
# A `small` model (6 layers, 384 wide, GPT-2 BPE: ~30M parameters, 19M of them the embedding):
#   pretraining  English + Python mixture (data/pretrain, 80/20 as the paper's mC4 + The Stack)
#   translation  WMT14 En-Fr: trained on Europarl + Multi30k, scored on newstest2014 (sacreBLEU)
#   QA           SQuAD v1.1, dev-split protocol: fine-tuned on the first 38 dev articles, scored on
#                the last 10 (not comparable with official dev numbers)
#   code         MBPP: fine-tuned on train (374 problems), pass@k on validation (90)
# --shared DIR   local copies of the data (default ../shared/data); without it, data is downloaded
# --quick        a plumbing check that runs on a CPU in minutes; the numbers then mean nothing
# --minutes M    run in pieces: start no stage after M minutes and stop (status 3); every stage is
#                one command (a pretraining run, a fine-tune, an evaluation) meant to take at most
#                a few minutes on an H100, so a piece ends within M plus one stage
# --resume       skip the stages that finished in an earlier run into --out, the wall time summed
set -euo pipefail
cd "$(dirname "$0")/.."
source runs/setup.sh  # installs what is missing (into .venv, or the active environment), once

SEED=1337
OUT=out/small_gpu
SHARED=../shared/data
QUICK=0
MINUTES=0
RESUME=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) SEED="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --shared) SHARED="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    --resume) RESUME=1; shift ;;
    *) echo "usage: bash runs/small_gpu.sh [--seed N] [--out DIR] [--shared DIR] [--quick] [--minutes M] [--resume]" >&2
       exit 2 ;;
  esac
done
[ -d "$SHARED/tiktoken_cache" ] && export TIKTOKEN_CACHE_DIR="$(cd "$SHARED/tiktoken_cache" && pwd)"

# Budgets: steps x 32 sequences of 512 tokens (pretraining), x 32 examples (fine-tuning)
PRETRAIN_STEPS=4000; ADAPT_STEPS=1000; FINETUNE_STEPS=800; BATCH=32; CODE_SAMPLES=10; LIMIT=0
MAX_TOKENS=0; PAIRS=0; EVAL_EXAMPLES=256
if [ "$QUICK" = 1 ]; then
  PRETRAIN_STEPS=4; ADAPT_STEPS=2; FINETUNE_STEPS=2; BATCH=4; CODE_SAMPLES=2; LIMIT=4
  MAX_TOKENS=200000; PAIRS=500; EVAL_EXAMPLES=8
fi
TASKS=(wmt14_enfr squad mbpp)
MODELS=(ar diffusion ar2diff_0 "ar2diff_$ADAPT_STEPS")
src() { [ -d "$SHARED/$1" ] && echo "--src $SHARED/$1" || true; }  # a local copy when present

source runs/stages.sh  # step NAME COMMAND...: a stage with its log in $OUT/logs/NAME.log
[ "$RESUME" = 1 ] || rm -f "$OUT"/logs/*.done "$OUT/logs/seconds"
trap 'echo $(($(date +%s) - START)) >> "$OUT/logs/seconds"; kill $(jobs -p) 2>/dev/null || true' EXIT  # this piece

D=$OUT/data
if [ -d "$SHARED/pretrain" ]; then
  step data_pretrain python data/pretrain/prepare.py --src "$SHARED/pretrain" --max_tokens "$MAX_TOKENS" \
    --seed "$SEED" --out_dir "$D/pretrain"
else  # with internet: web text instead of the local English mixture
  step data_pretrain python data/fineweb_edu/prepare.py --num_shards 1 --max_tokens "$MAX_TOKENS" \
    --out_dir "$D/pretrain"
fi
M30K=(); [ -d "$SHARED/multi30k_enfr" ] && M30K=(--multi30k_src "$SHARED/multi30k_enfr" --train_sources europarl,multi30k)
# shellcheck disable=SC2046
step data_wmt python data/wmt14_enfr/prepare.py $(src wmt14_enfr) "${M30K[@]}" \
  --max_pairs_per_source "$PAIRS" --out_dir "$D/wmt14_enfr"
# shellcheck disable=SC2046
step data_squad python data/squad/prepare.py $(src squad_v1.1) --out_dir "$D/squad"
# shellcheck disable=SC2046
step data_mbpp python data/mbpp/prepare.py $(src mbpp) --out_dir "$D/mbpp"

# compile (default on CUDA) pays for the long runs; the short fine-tunes skip its start-up cost
COMMON=(--model small --seed "$SEED" --eval_examples "$EVAL_EXAMPLES" --eval_batch_size 32)
PRE=("${COMMON[@]}" --data "$D/pretrain" --block_size 512 --batch_size "$BATCH" --lr 1e-3
     --warmup_steps 200 --eval_interval 500)
step pretrain_ar python train.py "${PRE[@]}" --objective ar --max_steps "$PRETRAIN_STEPS" --out_dir "$OUT/pretrain/ar"
step pretrain_diffusion python train.py "${PRE[@]}" --objective diffusion --noise mask \
  --max_steps "$PRETRAIN_STEPS" --out_dir "$OUT/pretrain/diffusion"
step adapt_0 python adapt.py --init_from "$OUT/pretrain/ar/best.pt" --steps 0 --data "$D/pretrain" \
  --out_dir "$OUT/pretrain/ar2diff_0"
step "adapt_$ADAPT_STEPS" python adapt.py --init_from "$OUT/pretrain/ar/best.pt" --steps "$ADAPT_STEPS" \
  "${PRE[@]}" --warmup_steps 0 --lr_schedule constant --out_dir "$OUT/pretrain/ar2diff_$ADAPT_STEPS"

for task in "${TASKS[@]}"; do
  case $task in  # target tokens (EOS included): longer targets are cut in training only
    wmt14_enfr) SPLITS=(--train_split train --val_split validation); TLEN=128; EVAL=(--split test) ;;
    squad) SPLITS=(--train_split devsplit_train --val_split devsplit_eval); TLEN=32; EVAL=(--split devsplit_eval) ;;
    mbpp) SPLITS=(--train_split train --val_split validation); TLEN=256
          EVAL=(--split validation --num_outputs "$CODE_SAMPLES" --k "1,$CODE_SAMPLES") ;;
  esac
  [ "$LIMIT" != 0 ] && EVAL+=(--limit "$LIMIT")
  for m in "${MODELS[@]}"; do
    FT="$OUT/finetune/$m/$task"
    step "finetune_${m}_$task" python train.py "${COMMON[@]}" --data "$D/$task" "${SPLITS[@]}" \
      --target_len "$TLEN" --init_from "$OUT/pretrain/$m/best.pt" --batch_size "$BATCH" --lr 1e-3 \
      --lr_schedule constant --warmup_steps 0 --max_steps "$FINETUNE_STEPS" --dropout 0.1 --no-compile \
      --eval_interval "$((FINETUNE_STEPS / 4 > 0 ? FINETUNE_STEPS / 4 : 1))" --patience 3 --out_dir "$FT"
    step "eval_${m}_$task" python evaluate.py --ckpt "$FT/best.pt" "${EVAL[@]}" --batch_size 64 --out_dir "$FT/eval"
  done
done

LENGTHS=64,128,256,512,1024,2048,4096; [ "$QUICK" = 1 ] && LENGTHS=16,32
step speed python sample.py --compare --preset gpt2 --tokenizer gpt2 --lengths "$LENGTHS" --num_steps 10,20,50 \
  --json "$OUT/speed.json" --plot "$OUT/speed.png" $([ "$QUICK" = 1 ] && echo "--preset tiny --repeats 1")

SECONDS_TOTAL=$(($(date +%s) - START))
if [ -f "$OUT/logs/seconds" ]; then while read -r s; do SECONDS_TOTAL=$((SECONDS_TOTAL + s)); done < "$OUT/logs/seconds"; fi
ROWS="AR=ar,diffusion=diffusion,AR2Diff_0=ar2diff_0,AR2Diff_$ADAPT_STEPS=ar2diff_$ADAPT_STEPS"
step report python runs/report.py --out "$OUT" --models "$ROWS" --tasks "$(IFS=,; echo "${TASKS[*]}")" \
  --seconds "$SECONDS_TOTAL" --title "AR2Diff on real data (small model)" --settings "seed $SEED; small model, \
GPT-2 BPE, block 512; pretraining $PRETRAIN_STEPS steps x $BATCH x 512 tokens (AR and diffusion alike); \
AR2Diff_$ADAPT_STEPS; fine-tuning up to $FINETUNE_STEPS steps x $BATCH, constant lr 1e-3, dropout 0.1, flat diffusion loss weight, early \
stopping (patience 3 evaluations); SQuAD numbers follow the dev-split protocol. \
Command: bash runs/small_gpu.sh --seed $SEED --out $OUT$([ "$QUICK" = 1 ] && echo ' --quick' || true)"
echo "done in $((SECONDS_TOTAL / 60))m$((SECONDS_TOTAL % 60))s: $OUT/report.md, $OUT/results.json, $OUT/speed.png"

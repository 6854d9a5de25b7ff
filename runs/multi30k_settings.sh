# The Multi30k experiment's flags, budgets and stages, shared by runs/multi30k.sh and
# runs/multi30k_ablations.sh (sourced with the script's arguments, not run); `step` comes from stages.sh.
SEED=1337; OUT=out/multi30k; SHARED=../shared/data; SCALE=1; QUICK=0; TASK_BLOCK=4
EVAL_LIMIT=0  # test (and validation) sentences scored (0: all)
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) SEED="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --shared) SHARED="$2"; shift 2 ;;
    --scale) SCALE="$2"; shift 2 ;;
    --eval_limit) EVAL_LIMIT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --task_block) TASK_BLOCK="$2"; shift 2 ;;
    *) echo "usage: bash $0 [--seed N] [--out DIR] [--shared DIR] [--scale X] [--eval_limit N] [--task_block K] [--quick]" >&2
       exit 2 ;;
  esac
done
scaled() { python -c "import sys; print(max(1, round($1 * float(sys.argv[1]))))" "$SCALE"; }
# Budgets (optimizer steps). AR and diffusion pretraining get the same budget; AR2Diff_N continues
# the AR model for N more diffusion steps (paper: N = 10K or 100K after 1M AR steps).
PRETRAIN_STEPS=$(scaled 600); ADAPT_STEPS=$(scaled 200); FINETUNE_STEPS=$(scaled 2400)  # 2.6 epochs
PRETRAIN_BATCH=16; FINETUNE_BATCH=32; BLOCK=128; TARGET_LEN=34  # 97% of the French train captions fit
PRETRAIN_LR=3e-3; ADAPT_LR=1e-3; FINETUNE_LR=3e-3
TASK_FT_STEPS=$(scaled 800); TASK_FT_LR=1e-3  # AR2Diff-blockK of AR-ft: its steps beyond AR's fine-tune
TASK_FT_FLAGS=(--complementary)  # each pair with a mask and its complement (Fast-dLLM v2); K, steps, flags: chosen on validation
PRE_EVAL=$(scaled 100); DIFF_EVAL=$(scaled 25); FT_EVAL=$(scaled 100)  # validation every this many steps
FT_EVAL_EXAMPLES=256; DATA_FLAGS=()
if [ "$QUICK" = 1 ]; then
  PRETRAIN_STEPS=4; ADAPT_STEPS=2; FINETUNE_STEPS=4; TASK_FT_STEPS=4; PRE_EVAL=2; DIFF_EVAL=2; FT_EVAL=2; FT_EVAL_EXAMPLES=16
  EVAL_LIMIT=4; DATA_FLAGS=(--limit_train 500 --nltk_tokens 5000 --vocab_pieces 400)
fi
TASK=multi30k
COMMON=(--model tiny --block_size "$BLOCK" --seed "$SEED" --eval_batch_size 16)
# the same fixed validation windows for every pretraining curve: AR, diffusion, AR2Diff_0, AR2Diff_N
PRE=("${COMMON[@]}" --data "$OUT/data/pretrain" --batch_size "$PRETRAIN_BATCH" --eval_examples 64)

prepare_data() {
  step data python data/multi30k/prepare.py --src "$SHARED/multi30k_enfr" --pretrain_src "$SHARED" \
    --out_dir "$OUT/data/$TASK" --pretrain_dir "$OUT/data/pretrain" --seed "$SEED" "${DATA_FLAGS[@]}"
}
pretrain_ar() {
  step pretrain_ar python train.py "${PRE[@]}" --objective ar --lr "$PRETRAIN_LR" --warmup_steps 50 \
    --max_steps "$PRETRAIN_STEPS" --eval_interval "$PRE_EVAL" --out_dir "$OUT/pretrain/ar"
}
adapt() {  # adapt NAME STEPS ADAPT-FLAGS...: AR2Diff from the pretrained AR model
  local m=$1 n=$2; shift 2
  if [ "$n" = 0 ]; then
    step "adapt_${m#ar2diff_}" python adapt.py --init_from "$OUT/pretrain/ar/best.pt" --steps 0 "$@" "${PRE[@]}" \
      --out_dir "$OUT/pretrain/$m"
  else
    step "adapt_${m#ar2diff_}" python adapt.py --init_from "$OUT/pretrain/ar/best.pt" --steps "$n" "$@" "${PRE[@]}" \
      --lr "$ADAPT_LR" --warmup_steps 20 --lr_schedule constant --eval_interval "$DIFF_EVAL" \
      --out_dir "$OUT/pretrain/$m"
  fi
}
finetune_and_eval() {  # finetune_and_eval MODEL [DATA [STEPS LR [TRAIN-FLAGS...]]]: DATA = distilled trains on
  local m=$1 data="$OUT/data/$TASK" row=$1 steps=${3:-$FINETUNE_STEPS} lr=${4:-$FINETUNE_LR}  # $OUT/data/${TASK}_distilled
  local extra=("${@:5}")
  if [ "${2:-}" = distilled ]; then data="$OUT/data/${TASK}_distilled"; row="${m}_distilled"; fi
  local FT="$OUT/finetune/$row/$TASK"
  step "finetune_$row" python train.py "${COMMON[@]}" --data "$data" \
    --init_from "$OUT/pretrain/$m/best.pt" --batch_size "$FINETUNE_BATCH" --lr "$lr" \
    --lr_schedule cosine --warmup_steps 0 --max_steps "$steps" --eval_interval "$FT_EVAL" \
    --eval_examples "$FT_EVAL_EXAMPLES" --target_len "$TARGET_LEN" --patience 3 --out_dir "$FT" "${extra[@]}"
  # predictions of an earlier run's model would be resumed, not remade (RESUME=1 keeps a finished evaluation)
  [ "${RESUME:-0}" = 1 ] && [ -e "$OUT/logs/eval_$row.done" ] || rm -rf "$FT/eval"
  [ "${RESUME:-0}" = 1 ] && [ -e "$OUT/logs/val_$row.done" ] || rm -rf "$FT/eval_validation"
  # scored against the real references (a distilled folder's test.jsonl is a copy of them)
  step "eval_$row" python evaluate.py --ckpt "$FT/best.pt" --task_dir "$OUT/data/$TASK" --split test \
    --limit "$EVAL_LIMIT" --batch_size 50 --out_dir "$FT/eval"
  [ "${VAL_EVAL:-0}" = 1 ] || return 0
  step "val_$row" python evaluate.py --ckpt "$FT/best.pt" --task_dir "$OUT/data/$TASK" --split validation \
    --limit "$EVAL_LIMIT" --batch_size 50 --out_dir "$FT/eval_validation"
}
distill() {  # the fine-tuned AR model's greedy outputs on the train inputs: $OUT/data/${TASK}_distilled
  step distill python runs/distill.py --teacher "$OUT/finetune/ar/$TASK/best.pt" --data "$OUT/data/$TASK" \
    --out_dir "$OUT/data/${TASK}_distilled" --batch_size 100
}
convert_teacher() {  # convert_teacher K: the fine-tuned AR model (the teacher) as a blockK diffusion model, no steps
  step "convert_ft_block$1" python adapt.py --init_from "$OUT/finetune/ar/$TASK/best.pt" --steps 0 --block_len "$1" \
    "${PRE[@]}" --out_dir "$OUT/pretrain/ar2diff_ft_block$1"
}

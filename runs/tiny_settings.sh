# The tiny experiment's budgets and its fine-tune-and-evaluate stage, shared by runs/tiny.sh and
# runs/tiny_ablations.sh (sourced, not run). Needs SEED, OUT and QUICK (COMPILE=1: torch.compile the
# training and evaluation stages); `step` comes from stages.sh.
# Budgets (optimizer steps). The AR and the diffusion pretraining get the same compute; AR2Diff_N
# continues the AR model for N more steps (paper: N = 10K or 100K after 1M AR steps).
PRETRAIN_STEPS=1000; ADAPT_STEPS=100; CODE_SAMPLES=2
declare -A FINETUNE_STEPS=([translation]=500 [qa]=2000 [code]=1000)
# the same for every model; code: 3e-3, chosen on validation (5e-3 left a row copying no function name)
declare -A FINETUNE_LR=([translation]=5e-3 [qa]=1e-3 [code]=3e-3)
declare -A EVAL_LIMIT=([translation]=200 [qa]=200 [code]=50)  # test examples scored
PRETRAIN_BATCH=4; FINETUNE_BATCH=16; PRETRAIN_LR=3e-3; ADAPT_LR=5e-4
DATA_FLAGS=(); SPEED=(--lengths 32,64,128,224 --repeats 3)
if [ "$QUICK" = 1 ]; then
  PRETRAIN_STEPS=6; ADAPT_STEPS=2; CODE_SAMPLES=2
  FINETUNE_STEPS=([translation]=4 [qa]=4 [code]=4)
  EVAL_LIMIT=([translation]=8 [qa]=8 [code]=8); SPEED=(--lengths 16,32 --repeats 1)
  DATA_FLAGS=(--train 64 --validation 16 --test 16 --pretrain_tokens 50000)
fi
# Diffusion from scratch pretrains with complementary masks (each sequence with its mask and with the
# complement of it, twice the compute per step) for half the steps: the AR model's compute. With one
# mask per sequence it learned to copy from the prompt at some seeds only (docs/tiny.md, seed 4242).
DIFF_PRETRAIN=(--complementary --max_steps "$((PRETRAIN_STEPS / 2))")
COMPILE_FLAG=(--no-compile); [ "${COMPILE:-0}" = 1 ] && COMPILE_FLAG=(--compile)
COMMON=(--model tiny --seed "$SEED" --eval_examples 64 --eval_batch_size 16 "${COMPILE_FLAG[@]}")
finetune_and_eval() {  # finetune_and_eval MODEL TASK
  local m=$1 task=$2 FT="$OUT/finetune/$1/$2" S=${FINETUNE_STEPS[$2]}
  local EVAL=(--split test --limit "${EVAL_LIMIT[$task]}" --batch_size 50 "${COMPILE_FLAG[@]}")
  [ "$task" = code ] && EVAL+=(--num_outputs "$CODE_SAMPLES" --k "1,$CODE_SAMPLES")
  step "finetune_${m}_$task" python train.py "${COMMON[@]}" --data "$OUT/data/$task" \
    --init_from "$OUT/pretrain/$m/best.pt" --batch_size "$FINETUNE_BATCH" --lr "${FINETUNE_LR[$task]}" \
    --lr_schedule cosine --warmup_steps 0 --max_steps "$S" --eval_interval "$(( S / 2 ))" --out_dir "$FT"
  rm -rf "$FT/eval"  # predictions of an earlier run's model would be resumed, not remade
  step "eval_${m}_$task" python evaluate.py --ckpt "$FT/best.pt" "${EVAL[@]}" --out_dir "$FT/eval"
}

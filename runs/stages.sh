# The stage runner shared by runs/*.sh (sourced, not run). Needs OUT (the output folder).
#   step NAME COMMAND...   run a stage with its log in $OUT/logs/NAME.log; a failure stops the run
#                          RESUME=1: skip a stage that finished in an earlier run into $OUT
#                          MINUTES=M: start no stage after M minutes; stop with status 3 instead
#   lane FUNCTION ARGS...  run it in the background, one thread, once one of $LANES lanes is free
#   wait_lane PID          wait for one lane (its PID: $LANE_PID right after `lane`)
#   drain                  wait for every lane; a failed one stops the run
START=$(date +%s)
mkdir -p "$OUT/logs"
step() {
  local name=$1; shift
  if [ "${RESUME:-0}" = 1 ] && [ -e "$OUT/logs/$name.done" ]; then
    printf '[%5ss] %s (done before)\n' "$(($(date +%s) - START))" "$name"; return 0
  fi
  if [ "${MINUTES:-0}" != 0 ] && [ "$(($(date +%s) - START))" -ge "$((MINUTES * 60))" ]; then
    echo "$0: $MINUTES minutes spent; the same command with --resume goes on from stage '$name'" >&2
    exit 3
  fi
  printf '[%5ss] %s\n' "$(($(date +%s) - START))" "$name"
  rm -f "$OUT/logs/$name.done"
  if ! "$@" > "$OUT/logs/$name.log" 2>&1; then
    tail -n 20 "$OUT/logs/$name.log" >&2
    echo "$0: stage '$name' failed; its log: $OUT/logs/$name.log" >&2
    exit 1
  fi
  touch "$OUT/logs/$name.done"
}
LANES=${LANES:-2}; PIDS=()  # the lanes not yet waited for
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
forget() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
reap() { local done; wait -n -p done "${PIDS[@]}"; forget "$done"; }  # the next lane to end (errexit: a failure stops)
lane() {
  while [ "${#PIDS[@]}" -ge "$LANES" ]; do reap; done
  (export OMP_NUM_THREADS=1; "$@") &
  LANE_PID=$!; PIDS+=("$LANE_PID")
}
wait_lane() { if [[ " ${PIDS[*]} " == *" $1 "* ]]; then wait "$1"; forget "$1"; fi; }  # unless reaped already
drain() { while [ "${#PIDS[@]}" -gt 0 ]; do reap; done; }

#!/usr/bin/env bash
# One call on a lent GPU: train candidate runs side by side for a fixed wall-clock budget
# (scripts/train_for.py fits each cosine schedule to it), then time the ONNX runtime on CUDA.
# Run from the repository root with the MNIST cache in $AETOOL_CACHE; results go to $OUT
# (train.log: the machine's facts, the training log, the benchmark; one tar per candidate's run folders;
# scores.jsonl and heldout.tar with HOLDOUT).
#   BUDGET=420 OUT=/tmp/out bash scripts/gpu_candidates.sh
# HOLDOUT=10000 trains every candidate without training images 0-9,999 and scores it there with
# scripts/score_runs.py (scores.jsonl): images none of them saw (start them from random weights: a start from
# a zoo run has seen them). With TWINS=1 as well, each candidate is also trained on all 60,000 images as
# models/RUN, and the held-out one, models/RUN-holdout, trains exactly as many epochs (the README's held-out
# protocol: rank the held-out runs, ship the winner's twin if its test SSE is lower); only the twins' folders
# come back whole.
set -u
BUDGET=${BUDGET:-420}
OUT=${OUT:?set OUT to a folder for the results}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
# "run d width lr batch init [shift [then [seed]]]": init "-" starts from random weights, else from that run,
# widened and revived; shift (default 0) moves the training digits by up to that many pixels (aetool train --shift);
# then "EPOCHS:LR:AVERAGE" adds train_for.py's second phase (unmoved digits, constant LR, mean of the last AVERAGE)
# into models/RUN-then, "-" (the default) none; seed (default 0) seeds weights and batches (two seeds of one recipe
# measure its rerun noise)
CANDIDATES=${CANDIDATES:-"cnn-d16-w64 16 64 1e-3 100 -
cnn-d16-w64-warm 16 64 3e-4 50 models/cnn-d16
cnn-d8-w64 8 64 1e-3 100 -
cnn-d8-w64-warm 8 64 3e-4 50 models/cnn-d8"}
if [ -n "${TWINS:-}" ] && [ -z "${HOLDOUT:-}" ]; then
  echo "TWINS=1 pairs each candidate with a held-out twin: set HOLDOUT too" >&2; exit 2
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc  # plain nproc prints OMP_NUM_THREADS when it is set
  python3 -c "import sys, torch, onnxruntime as ort; print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.is_available(), 'onnxruntime', ort.__version__, ort.get_available_providers())"
} 2>&1 | tee "$OUT/train.log"

# train_for.py for models/$1 with the rest of its arguments, in the background
launch() {
  local out=$1; shift
  timeout $((BUDGET + 60)) python3 scripts/train_for.py --seconds "$BUDGET" --out "models/$out" --precision fp32 \
    --device "${DEVICE:-cuda}" ${LIMIT:+--limit "$LIMIT"} "$@" >>"$OUT/train.log" 2>&1 &
  pids+=($!)
}

pids=() held_out=()
while read -r run d width lr batch init shift then seed; do
  [ -z "$run" ] && continue
  args=(--d "$d" --nb-channels "$width" --lr "$lr" --batch-size "$batch" --shift "${shift:-0}" --seed "${seed:-0}")
  [ "$init" != "-" ] && args+=(--init-from "$init" --revive-dead)
  if [ -n "${then:-}" ] && [ "$then" != "-" ]; then
    IFS=: read -r then_epochs then_lr then_average <<<"$then"
    args+=(--then-epochs "$then_epochs" --then-lr "$then_lr" --then-average "$then_average")
  fi
  if [ -n "${TWINS:-}" ]; then
    launch "$run" "${args[@]}"
    launch "$run-holdout" "${args[@]}" --holdout "$HOLDOUT" --epochs-from "models/$run"
    held_out+=("models/$run-holdout")
  else
    launch "$run" "${args[@]}" ${HOLDOUT:+--holdout "$HOLDOUT"}
    [ -n "${HOLDOUT:-}" ] && held_out+=("models/$run")
  fi
done <<<"$CANDIDATES"
wait "${pids[@]}"
grep -E "epoch 2 took|error|Error|weights:|epoch ([0-9]+)/\1:" "$OUT/train.log" | tail -40

# score the held-out runs (and their second phases) on the images they never saw, side by side
scored=() scores=$(mktemp -d)
for run in "${held_out[@]}"; do
  for folder in "$run" "$run-then"; do
    [ -f "$folder/checkpoint.pt" ] || continue
    OMP_NUM_THREADS=2 python3 scripts/score_runs.py "$folder" >"$scores/${#scored[@]}" 2>&1 &
    scored+=("$folder")
  done
done
wait
for i in "${!scored[@]}"; do cat "$scores/$i"; done | tee "$OUT/scores.jsonl"
rm -rf "$scores"
# the held-out runs' histories (their weights stay behind: at most 8 files come back)
histories=()
for folder in "${scored[@]}"; do histories+=("${folder#models/}/metrics.json"); done
[ ${#histories[@]} -gt 0 ] && tar -cf "$OUT/heldout.tar" -C models "${histories[@]}"

while read -r run _; do
  [ -z "$run" ] && continue
  folders=()
  for folder in "$run" "$run-then"; do [ -d "models/$folder" ] && folders+=("$folder"); done
  [ ${#folders[@]} -gt 0 ] && tar -cf "$OUT/$run.tar" -C models "${folders[@]}"
done <<<"$CANDIDATES"

if python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
  for dev in cuda cpu; do
    timeout 60 python3 -m aetool bench --bundle cnn-d16 --device "$dev" --batch-sizes 1,256 --seconds 1 2>&1
  done | tee -a "$OUT/train.log"
else
  echo "onnxruntime here has no CUDAExecutionProvider: no CUDA benchmark" | tee -a "$OUT/train.log"
fi
ls -la "$OUT"

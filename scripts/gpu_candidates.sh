#!/usr/bin/env bash
# One call on a lent GPU: train candidate runs side by side for a fixed wall-clock budget
# (scripts/train_for.py fits each cosine schedule to it), then time the ONNX runtime on CUDA.
# Run from the repository root with the MNIST cache in $AETOOL_CACHE; results go to $OUT
# (one tar per run folder, the training log, the machine's facts, the benchmark).
#   BUDGET=420 OUT=/tmp/out bash scripts/gpu_candidates.sh
# HOLDOUT=10000 trains every candidate without training images 0-9,999, so scripts/score_runs.py scores them
# on images none of them saw (start them from random weights: a start from a zoo run has seen them).
set -u
BUDGET=${BUDGET:-420}
OUT=${OUT:?set OUT to a folder for the results}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
# "run d width lr batch init [shift]": init "-" starts from random weights, else from that run, widened and
# revived; shift (default 0) moves the training digits by up to that many pixels (aetool train --shift)
CANDIDATES=${CANDIDATES:-"cnn-d16-w64 16 64 1e-3 100 -
cnn-d16-w64-warm 16 64 3e-4 50 models/cnn-d16
cnn-d8-w64 8 64 1e-3 100 -
cnn-d8-w64-warm 8 64 3e-4 50 models/cnn-d8"}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  python3 -c "import sys, torch, onnxruntime as ort; print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.is_available(), 'onnxruntime', ort.__version__, ort.get_available_providers())"
} 2>&1 | tee "$OUT/env.txt"

pids=()
while read -r run d width lr batch init shift; do
  [ -z "$run" ] && continue
  extra=()
  [ "$init" != "-" ] && extra=(--init-from "$init" --revive-dead)
  timeout $((BUDGET + 60)) python3 scripts/train_for.py --seconds "$BUDGET" --out "models/$run" --d "$d" \
    --nb-channels "$width" --lr "$lr" --batch-size "$batch" --precision fp32 --shift "${shift:-0}" --device "${DEVICE:-cuda}" ${LIMIT:+--limit "$LIMIT"} ${HOLDOUT:+--holdout "$HOLDOUT"} "${extra[@]}" \
    >>"$OUT/train.log" 2>&1 &
  pids+=($!)
done <<<"$CANDIDATES"
wait "${pids[@]}"
grep -E "epoch 2 took|error|Error|weights:|epoch ([0-9]+)/\1:" "$OUT/train.log" | tail -40

while read -r run _; do
  [ -n "$run" ] && [ -d "models/$run" ] && tar -cf "$OUT/$run.tar" -C models "$run"
done <<<"$CANDIDATES"

if python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
  for dev in cuda cpu; do
    timeout 60 python3 -m aetool bench --bundle cnn-d16 --device "$dev" --batch-sizes 1,256 --seconds 1 2>&1
  done | tee "$OUT/bench.txt"
else
  echo "onnxruntime here has no CUDAExecutionProvider: no CUDA benchmark" | tee "$OUT/bench.txt"
fi
ls -la "$OUT"

#!/usr/bin/env bash
# Reproduce the pretrained zoo from scratch: runs in models/, bundles in export/
# (= aetool/pretrained/, shipped with the package), and the digit classifier.
#   bash scripts/train_zoo.sh     # trains what is missing (resuming interrupted runs), then exports all
# Epochs and seeds are fixed here and recorded in each run's metrics.json.
# On 2 CPU cores with bf16 autocast an epoch of MNIST takes about 40 s.
set -euo pipefail
cd "$(dirname "$0")/.."
CNN=${CNN:-"16:20 8:20 2:30 32:12 4:12"}   # d:epochs, in this order; cosine schedule from lr 1e-3, seed 0, bf16

for d in 2 4 8 16 32; do
  [ -f "models/pca-d$d/density.json" ] || aetool train --model pca --d "$d" --quiet
done

if [ ! -f models/digit-classifier/classifier.onnx ]; then
  aetool train-classifier --epochs 10 --seed 0 --quiet
fi
ln -sf ../../models/digit-classifier/classifier.onnx aetool/pretrained/digit-classifier.onnx

for pair in $CNN; do
  d=${pair%%:*}; e=${pair##*:}
  run=models/cnn-d$d
  if [ -f "$run/density.json" ]; then continue; fi
  if [ -f "$run/checkpoint.pt" ]; then
    aetool train --out "$run" --resume
  else
    aetool train --d "$d" --epochs "$e" --schedule cosine --seed 0
  fi
  aetool export "$run" --quiet
done

# warm restarts: resume these runs to more epochs (the cosine schedule restarts at the new horizon)
EXTEND=${EXTEND:-"16:34"}
for pair in $EXTEND; do
  d=${pair%%:*}; e=${pair##*:}
  done_epochs=$(python -c "import json; print(json.load(open('models/cnn-d$d/metrics.json'))['epochs_done'])")
  if [ "$done_epochs" -lt "$e" ]; then
    aetool train --out "models/cnn-d$d" --resume --epochs "$e"
    aetool export "models/cnn-d$d" --quiet
  fi
done

for run in models/pca-d*/; do
  aetool export "$run" --quiet
done
# the int8 variant of the d=16 bundle, shipped beside it
aetool export models/cnn-d16 --int8 --quiet

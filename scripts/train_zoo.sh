#!/usr/bin/env bash
# Reproduce the pretrained zoo in models/ and export/ from scratch.
#   bash scripts/train_zoo.sh            # trains what is missing, then exports everything
# Epochs and seeds are written here and in each run's metrics.json.  On 2 CPU
# cores with bf16 autocast an epoch of MNIST takes about 40 s.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS_CNN=${EPOCHS_CNN:-"16:20 2:30 8:20 32:20 4:20"}   # d:epochs, trained in this order
for pair in $EPOCHS_CNN; do
  d=${pair%%:*}; e=${pair##*:}
  run=models/cnn-d$d
  if [ -f "$run/density.json" ]; then echo "skip $run (done)"; continue; fi
  if [ -f "$run/checkpoint.pt" ]; then
    aetool train --out "$run" --resume --quiet
  else
    aetool train --d "$d" --epochs "$e" --schedule cosine --seed 0 --quiet
  fi
done
for d in 2 4 8 16 32; do
  [ -f models/pca-d$d/density.json ] || aetool train --model pca --d "$d" --quiet
done
for run in models/*/; do
  aetool export "$run" --quiet
done

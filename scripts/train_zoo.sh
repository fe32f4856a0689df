#!/usr/bin/env bash
# Reproduce the pretrained zoo from scratch: runs in models/, bundles in export/
# (= aetool/pretrained/, shipped with the package), and the digit classifier.
#   bash scripts/train_zoo.sh     # trains what is missing (resuming interrupted runs), then exports all
# Epochs and seeds are fixed here and recorded in each run's metrics.json.
# On 2 CPU cores with bf16 autocast an epoch of MNIST takes about 40 s.
set -euo pipefail
cd "$(dirname "$0")/.."

# CNN stages, in order: "run d width until horizon seed batch lr init revive". A stage trains models/<run>
# (<width> channels per hidden layer, the lecture's nb_channels) up to epoch <until> of a cosine schedule
# (<lr> -> <lr>/100, bf16) that ends at epoch <horizon>, <batch> images per step; a later stage of the same
# run with a larger horizon resumes it there (a warm restart of the schedule). <init> "-" starts from random
# weights (seeded); a run name starts from that run (aetool train --init-from: its latent projected on its
# top-d principal directions where d is smaller, widened where <width> is larger; with <revive> "yes" also
# --revive-dead, its dead ReLU channels revived), so that run must be trained first. An optional 11th field K
# trains the stage at the constant rate <lr> instead and ships the mean of the weights of its last K epochs
# (--average-last K, stochastic weight averaging); "-" or nothing: off. An optional 12th field sets --precision
# ("-": the default), an optional 13th --shift (random moves of the training digits, in pixels).
# The 64-channel runs were trained on lent H100 GPUs (scripts/gpu_candidates.sh, fp32 with TF32 convolutions):
# cnn-d16-r3 (166 epochs in 7.7 minutes; shipped until the held-out protocol below replaced it), and cnn-d8,
# cnn-d16-r4 (40 epochs on digits moved by up to a pixel) and cnn-d16-r5 (8 more on unmoved digits at a constant
# 1e-4, the mean of the last 7), the recipes that won the README's held-out protocol, each run beside 7 others
# (about 7 minutes). cnn-d16-r6 is a CPU restart of cnn-d16-r5 (12 epochs at 5e-5, bf16, about 45 minutes on one
# core). cnn-d16-r7 (162 epochs on moved digits, seed 1) and cnn-d16 (12 more on unmoved digits at a constant
# 1e-4, the mean of the last 10) are that recipe made longer, one GPU call beside one other run (7.6 minutes),
# kept by the restart rule. On one CPU core a 64-channel epoch from random weights takes roughly 4 minutes
# (estimated from the 48-channel runs, not run): run the GPU stages where there is a GPU.
# Only the runs named cnn-dD are exported; *-base and *-rN runs are the starts of the chain that leads there.
# cnn-d16-w48 is kept as a run, not shipped: identity kept on training images 0-9,999 98.99 vs 98.90 %, test 98.54 vs 98.55 %, at
# about twice the FLOPs of the default bundle.
# d=2 base uses seed 2: seeds 1-4 were each trained 3 epochs of a 30-epoch schedule and ranked by identity
# kept on training images 0-9,999 (43.3 %, 48.2 %, 38.5 %, 44.6 %), then seed 2 was continued to 40 and
# warm-restarted to 60; a 35-epoch run from d=32 (batch 50) kept less (67.2 % vs 67.4 % on those images).
# d=32 is trained first and is the start of d=16, 8 and 4: scripts/pilot_recipe.py (3 epochs, scored on
# held-out training images) put a start from the earlier d=16 run far ahead of random weights at the
# same cost (d=2: identity kept 54.7 % vs 33.8 %; d=8: 92.7 % vs 89.7 %; with a first, centred version
# of the projection), and batch 50 at lr 2e-3 ahead of batch 100 at lr 1e-3 or 2e-3.
# Then restarts from the run before, dead channels revived: -r1 at lr 5e-4 (in a 6-epoch pilot from the
# d=16 run, revived at 5e-4 beat revived at 1e-3, held-out SSE 4.59 vs 4.66 with 9 vs 26 channels dead
# again, and plain continuation at 1e-3, 4.67; lower rates ranked higher still: 2.5e-4 4.57, 1e-4 4.55).
# Each later restart was kept only where it raised identity kept on training images 0-9,999
# (python scripts/score_runs.py models/<before> models/<after>; see README).
STAGES=${STAGES:-"cnn-d32 32 32 12 12 0 100 1e-3 - -
cnn-d16-base 16 32 25 25 0 50 1e-3 cnn-d32 -
cnn-d8-base 8 32 30 30 0 50 1e-3 cnn-d32 -
cnn-d2-base 2 32 3 30 2 100 1e-3 - -
cnn-d2-base 2 32 40 40 2 100 1e-3 - -
cnn-d2-base 2 32 60 60 2 100 1e-3 - -
cnn-d4 4 32 12 12 0 50 1e-3 cnn-d32 -
cnn-d2-r1 2 32 40 40 0 50 5e-4 cnn-d2-base yes
cnn-d8-r1 8 32 40 40 0 50 5e-4 cnn-d8-base yes
cnn-d8-r1 8 32 70 70 0 50 5e-4 cnn-d8-base yes
cnn-d16-r1 16 32 30 30 0 50 5e-4 cnn-d16-base yes
cnn-d16-r2 16 32 30 30 0 50 1e-4 cnn-d16-r1 yes
cnn-d2-r2 2 32 40 40 0 50 3e-4 cnn-d2-r1 yes
cnn-d2-r3 2 32 26 26 0 50 3e-4 cnn-d2-r2 yes
cnn-d8-r2 8 48 22 22 0 50 3e-4 cnn-d8-r1 yes
cnn-d2-r4 2 32 24 24 0 50 3e-4 cnn-d2-r3 yes
cnn-d8-r3 8 48 22 22 0 50 2e-4 cnn-d8-r2 yes
cnn-d2-r5 2 32 40 40 0 50 3e-4 cnn-d2-r4 yes
cnn-d8-r4 8 48 22 22 0 50 2e-4 cnn-d8-r3 yes
cnn-d2-r6 2 32 40 40 0 50 3e-4 cnn-d2-r5 yes
cnn-d2-r7 2 32 20 20 0 50 3e-4 cnn-d2-r6 yes
cnn-d2 2 32 80 80 0 50 2e-4 cnn-d2-r7 yes 75
cnn-d8-r5 8 48 48 48 0 50 1.5e-4 cnn-d8-r4 yes 44
cnn-d8-r6 8 48 22 22 0 50 3e-4 cnn-d8-r5 yes 20
cnn-d16-w48 16 48 12 12 0 50 2e-4 cnn-d16-r2 yes
cnn-d16-r3 16 64 166 166 0 100 1e-3 - - - fp32
cnn-d8 8 64 50 50 0 100 1e-3 - - - fp32
cnn-d16-r4 16 64 40 40 0 100 1e-3 - - - fp32 1
cnn-d16-r5 16 64 8 8 0 100 1e-4 cnn-d16-r4 - 7 fp32
cnn-d16-r6 16 64 12 12 0 100 5e-5 cnn-d16-r5 - 10
cnn-d16-r7 16 64 162 162 1 100 1e-3 - - - fp32 1
cnn-d16 16 64 12 12 1 100 1e-4 cnn-d16-r7 - 10 fp32"}

epochs_done() {  # epochs_done RUN: how far a run got (0 if it does not exist)
  python -c "import json,sys; print(json.load(open(sys.argv[1]))['epochs_done'])" "$1/metrics.json" 2>/dev/null || echo 0
}

for d in 2 4 8 16 32; do
  [ -f "models/pca-d$d/density.json" ] || aetool train --model pca --d "$d" --quiet
done

if [ ! -f models/digit-classifier/classifier.onnx ]; then
  aetool train-classifier --epochs 10 --seed 0 --quiet
fi
ln -sf ../../models/digit-classifier/classifier.onnx aetool/pretrained/digit-classifier.onnx

while read -r name d width until horizon seed batch lr init revive average precision shift; do
  run=models/$name
  done_epochs=$(epochs_done "$run")
  if [ "$done_epochs" -ge "$until" ]; then continue; fi
  if [ -f "$run/checkpoint.pt" ]; then
    aetool train --out "$run" --resume --epochs "$horizon" --batch-size "$batch" --stop-after "$until" < /dev/null
  else
    start=(); [ "$init" = - ] || start=(--init-from "models/$init")
    [ "$revive" != yes ] || start+=(--revive-dead)
    options=(--schedule cosine); [ -z "$average" ] || [ "$average" = - ] || options=(--schedule constant --average-last "$average")
    [ -z "$precision" ] || [ "$precision" = - ] || options+=(--precision "$precision")
    [ -z "$shift" ] || options+=(--shift "$shift")
    aetool train --d "$d" --nb-channels "$width" --epochs "$horizon" "${options[@]}" --seed "$seed" --batch-size "$batch" --lr "$lr" \
      "${start[@]}" --out "$run" --stop-after "$until" < /dev/null
  fi
done <<< "$STAGES"

for d in 2 4 8 16 32; do
  aetool export "models/cnn-d$d" --quiet
  aetool export "models/pca-d$d" --quiet
done
# the int8 variant of the d=16 bundle, shipped beside it
aetool export models/cnn-d16 --int8 --quiet

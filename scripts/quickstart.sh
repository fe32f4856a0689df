#!/usr/bin/env bash
# From a fresh machine with only Python: install, show what a shipped bundle does, then
# train the lecture's autoencoder (d=16, 2 epochs), export it and use it. Everything is
# written to ./quickstart/. About 2 minutes on 2 CPU cores after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
EPOCHS=${EPOCHS:-2}
mkdir -p quickstart
cd quickstart

echo "== the shipped cnn-d16 bundle (no training needed)"
aetool sample -n 64 --seed 0 -o shipped-samples.png --bundle cnn-d16
aetool reconstruct --mnist-test 36 -o shipped-recon.png --bundle cnn-d16 | tail -n 2
# two test digits as image files, as a user would bring them
python - <<'PY'
from aetool.mnist import mnist_test_head
from aetool.image_output import make_grid, write_png
x = mnist_test_head(2).images
write_png(make_grid(x[:1], 1, pad=0), "a.png", scale=1)
write_png(make_grid(x[1:], 1, pad=0), "b.png", scale=1)
PY
aetool interpolate a.png b.png -o shipped-walk.gif --bundle cnn-d16

echo "== training your own: d=16, $EPOCHS epochs (progress lines every 10 % of an epoch)"
aetool train --d 16 --epochs "$EPOCHS" --force
aetool export
aetool sample -n 64 --seed 0 -o samples.png
aetool reconstruct --mnist-test 36 -o recon.png | tail -n 2
aetool interpolate a.png b.png -o walk.gif
echo
echo "done. In $(pwd):"
echo "  shipped-*.png/gif  what the shipped cnn-d16 bundle does (samples, reconstructions, a walk)"
echo "  samples.png        64 digits drawn from your bundle's latent density and decoded"
echo "  recon.png          the first 36 MNIST test digits above your bundle's reconstructions"
echo "  walk.gif           interpolation between a.png and b.png in your bundle's latent space"
echo "  models/cnn-d16/    your run (checkpoint, metrics.json);  export/cnn-d16/  your bundle"

#!/usr/bin/env bash
# From a fresh machine with only Python: install, train the lecture's autoencoder
# (d=16, a short run), export it, and write a sample grid, a reconstruction grid
# and an interpolation GIF into ./quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
EPOCHS=${EPOCHS:-2}
mkdir -p quickstart
cd quickstart
aetool train --d 16 --epochs "$EPOCHS" --force
aetool export
aetool sample -n 64 --seed 0 -o samples.png
aetool reconstruct --mnist-test 36 -o recon.png | tail -n 2
# two test digits as image files, as a user would bring them
python - <<'PY'
from aetool.data import mnist_test_head
from aetool.images import make_grid, write_png
x = mnist_test_head(2).images
write_png(make_grid(x[:1], 1, pad=0), "a.png", scale=1)
write_png(make_grid(x[1:], 1, pad=0), "b.png", scale=1)
PY
aetool interpolate a.png b.png -o walk.gif
echo
echo "done. In $(pwd):"
echo "  samples.png  64 digits drawn from the latent density (a Gaussian mixture) and decoded"
echo "  recon.png    the first 36 MNIST test digits above their reconstructions"
echo "  walk.gif     interpolation between a.png and b.png in latent space"
echo "  models/cnn-d16/ (checkpoint, metrics.json)  export/cnn-d16/ (encoder.onnx, decoder.onnx, latent.json)"

#!/usr/bin/env bash
# Your own images, end to end, on a stand-in for a folder of photos: 10,000 MNIST digits drawn in
# colour on coloured backgrounds (32x32 PNGs, one sub-folder per digit). Everything goes to ./demo/.
#   bash scripts/demo_colour.sh        # about 2 minutes on 2 CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
EPOCHS=${EPOCHS:-10}
mkdir -p demo
cd demo
[ -d photos ] || python -c "from aetool.coloured_digits import write_coloured_digits; write_coloured_digits('photos', n=10000)"
aetool train --data photos --arch cnn --d 16 --epochs "$EPOCHS" --schedule cosine --force   # digits: the lecture's network, no flips
aetool export models/cnn-d16-photos
aetool reconstruct photos/digit-*/0000?.png -o recon.png     # the first ten images
aetool interpolate photos/digit-3/00007.png photos/digit-8/00017.png -o walk.gif --steps 12
aetool sample -n 64 --seed 0 -o samples.png
aetool encode photos -o latents.npy
aetool decode latents.npy -o decoded.png --ncols 100 --scale 1 -q
echo "done: demo/recon.png walk.gif samples.png latents.npy (+ latents.paths.txt)"

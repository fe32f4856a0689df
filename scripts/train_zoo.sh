#!/usr/bin/env bash
# Reproduce the shipped zoo from its recipes: runs in models/, bundles into the package's
# aetool/pretrained/, and the digit classifier that scores "identity kept".
#   bash scripts/train_zoo.sh                       # every recipe in recipes/
#   bash scripts/train_zoo.sh recipes/cnn-d4.toml   # some of them
# A recipe's stages already done are skipped and a stage half done is resumed, so the
# script picks up where it stopped. The 64-channel recipes (cnn-d8, cnn-d16) were trained
# on a GPU; on a 2-core CPU each of their epochs takes minutes. See docs/zoo.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPES=("$@")
[ ${#RECIPES[@]} -gt 0 ] || RECIPES=(recipes/*.toml)

if [ ! -f models/digit-classifier/classifier.onnx ]; then
  aetool train-classifier --epochs 10 --seed 0 --quiet
fi
cp models/digit-classifier/classifier.onnx aetool/pretrained/digit-classifier.onnx

for recipe in "${RECIPES[@]}"; do
  aetool train --config "$recipe" < /dev/null
  # the recipe's name and final run, as aetool reads them
  read -r name run int8 < <(python -c "
import sys
from aetool.training.config import load_recipe
r = load_recipe(sys.argv[1])
print(r.name, r.final.out, 'yes' if r.int8 else 'no')" "$recipe")
  flags=(); [ "$int8" = no ] || flags=(--int8)
  aetool export "$run" --out "aetool/pretrained/$name" "${flags[@]}" --quiet
done

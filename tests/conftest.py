"""Shared fixtures: one tiny real training run, exported once per test session.

Every CLI test runs ``python -m aetool`` in a subprocess, as a user would, in a
workspace folder of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TINY = ["--limit", "300", "--epochs", "1", "--batch-size", "50", "--quiet"]


def run_cli(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``aetool ARGS`` in ``cwd``; with ``check`` fail loudly on a non-zero exit."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "aetool", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"aetool {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def usage_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    """A bad option value: Click's usage message, exit status 2, the reason on the Error line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("Usage: "), proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and fragment in error[0], proc.stderr


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """A workspace with a tiny trained run in models/cnn-d4 and its bundle in export/cnn-d4."""
    ws = tmp_path_factory.mktemp("ws")
    run_cli("train", "--d", "4", "--seed", "1", *TINY, cwd=ws)
    run_cli("export", "--quiet", cwd=ws)
    return ws


@pytest.fixture(scope="session")
def bundle_dir(workspace) -> Path:
    return workspace / "export" / "cnn-d4"


@pytest.fixture()
def ws_copy(workspace, tmp_path) -> Path:
    """A private copy of the workspace, for tests that damage or add files."""
    dst = tmp_path / "ws"
    shutil.copytree(workspace, dst)
    return dst


@pytest.fixture(scope="session")
def digit_pngs(tmp_path_factory) -> tuple[Path, Path]:
    """Two real MNIST test digits saved as black-on-white PNGs of another size, as a user might have."""
    from PIL import Image

    from aetool.mnist import mnist_test_head

    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for i, x in enumerate(mnist_test_head(2).images):
        a = (255 - np.round(x[0] * 255)).astype(np.uint8)  # dark ink on light paper
        path = folder / f"digit{i}.png"
        Image.fromarray(a).resize((84, 84), Image.NEAREST).save(path)
        paths.append(path)
    return paths[0], paths[1]


def pytest_collection_modifyitems(items):
    """A test on the trained workspace is end to end, wherever it lives."""
    for item in items:
        if "workspace" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def smooth_pictures(folder: Path, n: int, side: int = 40, seed: int = 0) -> Path:
    """``n`` colour pictures of smooth blobs and gradients, like patches of photographs: what the
    photo network is for, made here so no test needs a data set."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for i in range(n):
        a = rng.uniform(0, 1, 3)[:, None, None] * (1 - yy) + rng.uniform(0, 1, 3)[:, None, None] * xx
        for _ in range(3):
            cy, cx, r = rng.uniform(0, 1, 3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.02 + 0.1 * r))
            a = a + rng.uniform(-0.6, 0.6, 3)[:, None, None] * blob
        Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)).save(folder / f"p{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def photo_workspace(tmp_path_factory) -> Path:
    """A workspace with a tiny run of the photo network on 32x32 colour pictures, exported to export/photo."""
    ws = tmp_path_factory.mktemp("photo-ws")
    smooth_pictures(ws / "pictures", 120)
    run_cli("train", "--data", "pictures", "--image-size", "32", "--d", "6", "--epochs", "2", "--batch-size", "20",
            "--width", "8", "--quiet", "--out", "models/photo", cwd=ws)
    run_cli("export", "models/photo", "--out", "export/photo", "--quiet", cwd=ws)
    return ws


@pytest.fixture(scope="session")
def photo_bundle(photo_workspace) -> Path:
    return photo_workspace / "export" / "photo"

"""Small sets of real photographs for tests: random crops of scikit-image's colour pictures (the
`test` extra installs it), as uint8 arrays or as a folder of PNG files a user might have."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from photo_patches import photo_crops as _crops  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")


def photo_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 3, size, size) uint8: crops of random side, place and mirror, resized with Pillow (the
    benchmarks' cutter, benchmarks/photo_patches.py, on the photographs above)."""
    pytest.importorskip("skimage.data")
    return _crops(n, size, seed, PHOTOS)


def photo_folder(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` crops saved as size x size RGB PNGs in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(photo_crops(n, size, seed)):
        Image.fromarray(x.transpose(1, 2, 0)).save(folder / f"photo{i:04d}.png")
    return folder

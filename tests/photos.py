"""Small sets of real photographs for tests: random crops of scikit-image's colour pictures (the
`test` extra installs it), as uint8 arrays or as a folder of PNG files a user might have."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")


def photo_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 3, size, size) uint8: crops of random side, place and mirror, resized with Pillow."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    photos = [getattr(skdata, name)()[..., :3] for name in PHOTOS]
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        im = photos[rng.integers(len(photos))]
        side = int(rng.integers(size // 2, min(4 * size, *im.shape[:2]) + 1))
        y, x = rng.integers(0, im.shape[0] - side + 1), rng.integers(0, im.shape[1] - side + 1)
        crop = Image.fromarray(im[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(crop).transpose(2, 0, 1)
    return out


def photo_folder(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` crops saved as size x size RGB PNGs in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(photo_crops(n, size, seed)):
        Image.fromarray(x.transpose(1, 2, 0)).save(folder / f"photo{i:04d}.png")
    return folder

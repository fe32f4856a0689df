"""A coloured folder of MNIST digits, for demos and tests of training on a folder of pictures.

A user's own photos cannot ship with aetool, and a real photo set is large and slow; these
folders are made offline in seconds from the MNIST copy, in any number and size, and their
sub-folders are classes, so the folder path of every command (training, ``compare``, anomaly
scores by class) can be shown and tested end to end.  Used by ``scripts/demo_colour.sh``, the
benchmarks and the tests; nothing else in aetool needs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .mnist import load_mnist

__all__ = ["PALETTE", "write_coloured_digits"]

PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def write_coloured_digits(folder: str | Path, n: int = 400, size: int = 32, seed: int = 0) -> Path:
    """The first ``n`` MNIST training digits as size x size colour PNGs, one sub-folder per digit
    (``digit-0`` ... ``digit-9``): digit k in colour k on a dim background of another colour, with a
    little noise, so a model must learn shape and colour together.  Offline stand-in for a user's photos."""
    folder = Path(folder)
    train = load_mnist("train").head(n)
    palette = np.asarray(PALETTE, np.float32)
    rng = np.random.default_rng(seed)
    for i, (x, label) in enumerate(zip(train.images, train.labels)):
        ink = np.asarray(Image.fromarray((x[0] * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
                         np.float32)[..., None] / 255
        rgb = palette[(label + 3) % 10] * 0.35 * (1 - ink) + palette[label] * ink
        sub = folder / f"digit-{label}"
        sub.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(-8, 9, rgb.shape)
        Image.fromarray(np.clip(rgb + noise, 0, 255).astype(np.uint8)).save(sub / f"{i:05d}.png")
    return folder

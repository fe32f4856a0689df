"""The channels and square size to train a folder at, read from its files' headers.

Only headers are opened, never pixels, so this is fast on any folder: grey when every readable
file is in a grey mode or has a palette of greys only, and the size in IMAGE_SIZES nearest the
median longer side.  Unreadable files are ignored here (decoding reports them).

numpy and Pillow only.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from . import image_input
from .lecture import IMAGE_SIZES

__all__ = ["infer_channels", "infer_size", "infer_shape"]


def _grey_palette(im: Image.Image) -> bool:
    """Whether a palette image's palette, as read from the header, holds only greys."""
    palette = getattr(im, "palette", None)
    if palette is None:
        return False
    data = np.frombuffer(bytes(palette.palette), dtype=np.uint8)
    rawmode = getattr(palette, "rawmode", None)
    layout = rawmode or palette.mode
    if layout == "RGB;L":  # planar (TIFF): all reds, then all greens, then all blues
        n = len(data) // 3
        r, g, b = data[:n], data[n : 2 * n], data[2 * n : 3 * n]
    elif layout in ("RGB", "BGR", "RGBA", "RGBX", "BGRA", "BGRX"):
        k = len(layout)
        triples = data[: len(data) // k * k].reshape(-1, k)
        r, g, b = triples[:, 0], triples[:, 1], triples[:, 2]
    else:  # a layout we do not know: call it colour, the safe side
        return False
    return bool(np.array_equal(r, g) and np.array_equal(g, b))


def _header(path: Path) -> tuple[bool, int, int] | None:
    """(is grey, width, height) from the file's header, without decoding pixels; None if unreadable.

    Only a regular file is opened: opening a FIFO blocks until something writes to it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                mode = im.mode
                grey = image_input.is_grey_mode(mode) or mode in ("LA", "La") or (
                    mode in ("P", "PA") and _grey_palette(im))
                return grey, int(im.width), int(im.height)
    except Exception:  # noqa: BLE001 - unreadable files are load_folder's to report, not ours
        return None


def _headers(paths: Sequence[str | os.PathLike]) -> list[tuple[bool, int, int]]:
    return [h for h in (_header(Path(p)) for p in paths) if h is not None]


def _channels_of(headers: list[tuple[bool, int, int]]) -> int:
    return 1 if all(grey for grey, _, _ in headers) else 3


def _size_of(headers: list[tuple[bool, int, int]], channels: int) -> int:
    if not headers or (channels == 1 and all((w, h) == (28, 28) for _, w, h in headers)):
        return 28
    median = float(np.median([max(w, h) for _, w, h in headers]))
    # nearest; on a tie the larger, since detail lost to a smaller size cannot be learnt back
    return min(IMAGE_SIZES, key=lambda s: (abs(s - median), -s))


def infer_channels(paths: Sequence[str | os.PathLike]) -> int:
    """1 when every readable image is grey, else 3.

    Grey means a grey mode ("1", "L", "LA", "I", "I;16", "F") or a palette of greys only, so a
    grey data set stored as palette GIFs or PNGs is not tripled in size and training time.  Only
    headers are read, which keeps this fast on any folder; the price is that an RGB file whose
    pixels happen to be grey counts as colour.  Unreadable files are ignored (load_folder reports
    them).
    """
    return _channels_of(_headers(paths))


def infer_size(paths: Sequence[str | os.PathLike], channels: int) -> int:
    """The square size to train at: 28 for a grey set of 28x28 images (MNIST-like), else the size
    in IMAGE_SIZES nearest the median longer side (ties: the larger).  Headers only."""
    return _size_of(_headers(paths), channels)


def infer_shape(paths: Sequence[str | os.PathLike], channels: int | None, size: int | None) -> tuple[int, int]:
    """(channels, size): each given one as it is, each None inferred as :func:`infer_channels` and
    :func:`infer_size` would, from one read of the headers."""
    if channels is None or size is None:
        headers = _headers(paths)
        channels = channels or _channels_of(headers)
        size = size or _size_of(headers, channels)
    return int(channels), int(size)

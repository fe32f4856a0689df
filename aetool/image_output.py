"""Pictures aetool writes: reconstructions, samples and latent walks tiled into grids and saved
as PNG (or JPEG, WebP, ...) files or animated GIFs.

Kept apart from reading (``aetool.image_input``) because writing has its own rules: a model's
floats overshoot [0, 1] and are clipped once to bytes (``to_uint8``, which reading reuses so
both sides round alike); every size is checked against MAX_OUTPUT_PIXELS before any work, so a
typo in ``-n`` or ``--scale`` is a one-line refusal instead of minutes of work and a giant file;
and every file is written atomically, so a failed write never destroys the previous picture.

Only numpy and Pillow are used so this stays importable without torch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .errors import AetoolError, UsageError
from .fileio import atomic_path
from .lecture import IMAGE_SHAPE

__all__ = [
    "grid_size",
    "check_output_size",
    "to_uint8",
    "make_grid",
    "stack_rows",
    "write_png",
    "write_gif",
    "OUTPUT_FORMATS",
    "MAX_OUTPUT_PIXELS",
]

# The largest picture a command writes (all frames of a GIF together); checked before any work.
MAX_OUTPUT_PIXELS = 50_000_000

# Suffix -> (Pillow format, save options).  WebP is lossless because grids of
# digits are exactly what lossy WebP smears; JPEG gets a high quality for the
# same reason.
OUTPUT_FORMATS: dict[str, tuple[str, dict]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95}),
    ".jpeg": ("JPEG", {"quality": 95}),
    ".bmp": ("BMP", {}),
    ".webp": ("WEBP", {"lossless": True}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
}


# ---------------------------------------------------------------------------
# layout


def grid_size(n: int, ncols: int, height: int = IMAGE_SHAPE[1], width: int = IMAGE_SHAPE[2], pad: int = 2) -> tuple[int, int]:
    """(height, width) in pixels of :func:`make_grid` of ``n`` cells, before upscaling."""
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    return nrows * (height + pad) + pad, ncols * (width + pad) + pad


def check_output_size(height: int, width: int, scale: int, *, frames: int = 1, lower: str) -> None:
    """Refuse, before any work, a picture above MAX_OUTPUT_PIXELS (all frames together), naming the
    options that would bring it down."""
    pixels = height * width * scale * scale * frames
    if pixels > MAX_OUTPUT_PIXELS:
        what = f"{frames} frames of " if frames > 1 else ""
        raise UsageError(f"the output would be {what}{width * scale}x{height * scale} pixels "
                         f"({pixels / 1e6:,.0f} megapixels), above aetool's limit of "
                         f"{MAX_OUTPUT_PIXELS // 1_000_000} megapixels; lower {lower}")


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Quantise [0, 1] floats to bytes; model outputs overshoot, so clip first."""
    a = np.nan_to_num(np.asarray(images, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def _pad_byte(pad_value: float) -> int:
    return to_uint8(np.float32(pad_value)).reshape(()).item()


def make_grid(images: np.ndarray, ncols: int, pad: int = 2, pad_value: float = 0.25) -> np.ndarray:
    """Tile (N, 1, H, W) images into one 2-D uint8 picture for viewing, (N, 3, H, W) ones into an
    (H', W', 3) RGB picture.

    The padding is grey by default so black digit backgrounds stay visibly
    separate cells.
    """
    a = np.asarray(images)
    if a.ndim == 3:  # (N, H, W) is unambiguous enough to accept
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"make_grid expects (N, 1, H, W) or (N, 3, H, W) images, got shape {a.shape}")
    n, c, h, w = a.shape
    if n == 0:
        raise AetoolError("no images to put in a grid")
    if int(ncols) < 1:
        raise AetoolError(f"number of columns must be at least 1, got {ncols}")
    if int(pad) < 0:
        raise AetoolError(f"padding must be >= 0, got {pad}")
    ncols, pad = min(int(ncols), n), int(pad)
    nrows = math.ceil(n / ncols)
    cells = a if a.dtype == np.uint8 else to_uint8(a)
    if c == 3:
        cells = cells.transpose(0, 2, 3, 1)  # channels last, as pictures are stored
    else:
        cells = cells[:, 0]
    grid = np.full(
        (nrows * (h + pad) + pad, ncols * (w + pad) + pad) + cells.shape[3:], _pad_byte(pad_value), dtype=np.uint8
    )
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = cells[i]
    return grid


def _is_rgb(a: np.ndarray) -> bool:
    return a.ndim == 3 and a.shape[2] == 3


def stack_rows(grids: Sequence[np.ndarray], gap: int = 4, pad_value: float = 0.25) -> np.ndarray:
    """Stack uint8 grids vertically, e.g. originals above reconstructions: 2-D grey grids give a
    2-D grid, (H, W, 3) RGB ones an RGB grid; where both meet, the grey ones become RGB."""
    if len(grids) == 0:
        raise AetoolError("no grids to stack")
    if int(gap) < 0:
        raise AetoolError(f"gap must be >= 0, got {gap}")
    gs = [np.asarray(g) for g in grids]
    for g in gs:
        if g.ndim != 2 and not _is_rgb(g):
            raise ValueError(f"stack_rows expects 2-D or (H, W, 3) grids, got shape {g.shape}")
    gs = [g if g.dtype == np.uint8 else to_uint8(g) for g in gs]
    if any(g.ndim == 3 for g in gs):
        gs = [g if g.ndim == 3 else np.repeat(g[:, :, None], 3, axis=2) for g in gs]
    width = max(g.shape[1] for g in gs)
    height = sum(g.shape[0] for g in gs) + int(gap) * (len(gs) - 1)
    out = np.full((height, width) + gs[0].shape[2:], _pad_byte(pad_value), dtype=np.uint8)
    y = 0
    for g in gs:
        out[y : y + g.shape[0], : g.shape[1]] = g
        y += g.shape[0] + int(gap)
    return out


# ---------------------------------------------------------------------------
# writing


def _one_line(e: BaseException) -> str:
    """OS messages sometimes span lines; our contract is one line."""
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _as_frame(grid: np.ndarray) -> np.ndarray:
    a = np.asarray(grid)
    if a.ndim != 2 and not _is_rgb(a):
        raise ValueError(f"expected a 2-D (grey) or (H, W, 3) (RGB) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return to_uint8(a)
    raise ValueError(f"expected uint8 (or float in [0, 1]) pixels, got {a.dtype}")


def _check_scale(scale: int) -> int:
    try:
        s = int(scale)
    except (TypeError, ValueError):
        raise AetoolError(f"scale must be a whole number >= 1, got {scale!r}") from None
    if s != scale or s < 1:
        raise AetoolError(f"scale must be a whole number >= 1, got {scale!r}")
    return s


def _upscale(a: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour so each 28x28 pixel stays a crisp block when viewed (grey or RGB)."""
    if scale == 1:
        return a
    return np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)


def _output_format(path: Path) -> tuple[str, dict]:
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        shown = suffix or "(none)"
        allowed = ", ".join(OUTPUT_FORMATS)
        raise AetoolError(f"{path}: unsupported output format '{shown}' (use {allowed})")
    return OUTPUT_FORMATS[suffix]


def _save_atomically(path: Path, save) -> None:
    """Run ``save(tmp)`` via atomic_path; an OS failure becomes one line and
    leaves any previous file untouched."""
    try:
        with atomic_path(path) as tmp:
            save(tmp)
    except AetoolError:
        raise
    except OSError as e:
        raise AetoolError(f"cannot write {path}: {e.strerror or _one_line(e)}") from None


def write_png(grid: np.ndarray, path: str | os.PathLike, scale: int = 4) -> None:
    """Save a 2-D (grey) or (H, W, 3) (RGB) uint8 picture, upscaled; the format follows the suffix
    (.png, .jpg/.jpeg, .bmp, .webp, .tif/.tiff) despite the historic name."""
    path = Path(path)
    fmt, options = _output_format(path)
    s = _check_scale(scale)
    img = Image.fromarray(np.ascontiguousarray(_upscale(_as_frame(grid), s)))
    _save_atomically(path, lambda tmp: img.save(tmp, format=fmt, **options))


def write_gif(
    frames: Sequence[np.ndarray],
    path: str | os.PathLike,
    fps: float = 8.0,
    scale: int = 4,
    loop: bool = True,
    bounce: bool = False,
) -> None:
    """Save 2-D uint8 frames as an animated greyscale GIF (e.g. a latent walk), or (H, W, 3) frames
    as a colour one.

    A GIF holds at most 256 colours a frame, so each RGB frame is quantised to its own palette
    (median cut, no dithering: deterministic, and no dither noise crawling across a walk); grey
    frames need no palette work and are stored exactly.  ``bounce`` plays the frames back in reverse so a walk returns smoothly to
    its start instead of jumping.  Pillow merges consecutive identical frames
    (adding their durations), so the stored frame count can be lower than
    given when frames repeat.
    """
    path = Path(path)
    try:
        fps_f = float(fps)
    except (TypeError, ValueError):
        raise AetoolError(f"fps must be a number > 0, got {fps!r}") from None
    if not math.isfinite(fps_f) or fps_f <= 0:
        raise AetoolError(f"fps must be a number > 0, got {fps!r}")
    s = _check_scale(scale)
    seq = [_as_frame(f) for f in frames]
    if not seq:
        raise AetoolError(f"{path}: no frames to write")
    if any(f.shape != seq[0].shape for f in seq):
        raise ValueError("all GIF frames must have the same shape")
    if bounce and len(seq) > 2:
        seq = seq + seq[-2:0:-1]
    images = [_gif_frame(np.ascontiguousarray(_upscale(f, s))) for f in seq]
    # GIF stores delays in 1/100 s and browsers slow anything under 20 ms down
    # to 100 ms, so very high fps would play slower than a moderate one.
    options: dict = {"duration": max(20, int(1000 / fps_f))}
    if loop:
        options["loop"] = 0  # without the loop extension the GIF plays once

    def save(tmp: Path) -> None:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], **options)

    _save_atomically(path, save)


def _gif_frame(a: np.ndarray) -> Image.Image:
    """A grey frame as is ("L"); an RGB frame quantised to its own 256-colour palette ("P")."""
    im = Image.fromarray(a)
    if im.mode == "RGB":
        im = im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return im

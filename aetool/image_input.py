"""Reading a user's pictures into the tensors a bundle expects.

The digit bundles were trained on MNIST: 28x28, white digit on black, the digit
scaled into a 20x20 box and centred by its centre of mass.  Real user files are
anything but: scans with a white page, RGBA exports with transparent
backgrounds, 16-bit TIFFs, big photos.  ``load_image`` brings all of them into
that one distribution so the autoencoder sees what it was trained on.

Bundles trained on a folder of the user's own pictures (``aetool.folder``) see
them another way: grey or RGB, resized keeping the aspect ratio into a square
(``picture_to_uint8``: padded with black, or centre-cropped).  Training caches
that function's bytes and the runtime calls the same function, so the two agree
bit for bit.  ``load_for`` picks the right one from a bundle's image spec.

Every way a file can be wrong (missing, a FIFO, truncated, a decompression bomb)
is turned into one line here, because this is where untrusted files are opened.
Writing pictures is ``aetool.image_output``'s.

Only numpy and Pillow are used so this stays importable without torch.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .bundle_format import PREPROCESSING, RESIZE_FITS, Preprocessing
from .errors import AetoolError
from .fileio import stat_regular
from .image_output import to_uint8
from .lecture import IMAGE_SHAPE

__all__ = [
    "load_image",
    "load_images",
    "mnist_normalise",
    "picture_to_uint8",
    "load_picture",
    "load_pictures",
    "load_for",
    "from_uint8",
    "is_grey_mode",
    "FITS",
    "PREPROCESSINGS",
]

SIZE = IMAGE_SHAPE[-1]  # MNIST canvas
BOX = 20  # MNIST puts the digit's longest side in a 20 px box
INK_THRESHOLD = 0.1
# An input becomes a 28x28 image, so nothing is gained from decoding more than a few megapixels:
# JPEGs are decoded at a reduced scale (Image.draft) and any picture is shrunk to WORK_SIDE pixels
# on its longer side before it is turned into floats; a picture that would still need more than
# MAX_INPUT_PIXELS decoded is refused before any pixel is read.
WORK_SIDE = 1024
MAX_INPUT_PIXELS = 40_000_000
# How a picture of another aspect ratio becomes a square: "pad" keeps all of it (black bars),
# "crop" keeps the largest centred square.
FITS = RESIZE_FITS
# A bundle's image.preprocessing -> how load_for reads its inputs (aetool.bundle_format.Preprocessing).
PREPROCESSINGS = tuple(PREPROCESSING)
# Pillow first shrinks by an integer box filter down to REDUCING_GAP times the target size, then
# applies LANCZOS: several times faster on big photos, and indistinguishable from LANCZOS alone.
REDUCING_GAP = 3.0
# picture_to_uint8 decodes a big picture at about this many times the target size, then resamples.
PICTURE_OVERSAMPLE = 4


# ---------------------------------------------------------------------------
# reading


def _one_line(e: BaseException) -> str:
    """Pillow messages sometimes span lines; our contract is one line."""
    text = " ".join(str(e).split())
    return text or type(e).__name__


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """Force truncation to be an error for this load only.

    Someone else in the process may have set the global on purpose, so it is
    restored afterwards rather than clobbered for good.
    """
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def _read_pillow(path: Path, work_side: int = WORK_SIDE, min_short_side: int | None = None) -> Image.Image:
    """Open and fully decode ``path``, turning every failure into one line.

    ``.load()`` is inside the try because Pillow decodes lazily: a truncated
    file opens fine and only fails when the pixels are needed.  A picture larger
    than ``work_side`` is shrunk to about that on its longer side, but never its
    shorter side below ``min_short_side`` (a wide panorama centre-cropped to a
    square needs its height, not its width).
    """
    info = stat_regular(path, noun="image file")
    if info.st_size == 0:
        raise AetoolError(f"{path}: empty file (0 bytes)")
    try:
        # Pillow warns on stderr (its own bomb check, corrupt EXIF, ...): a user gets aetool's one
        # line or a result, never a Python warning; the size limit below is aetool's, stated
        with _strict_decoding(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as src:
                if max(src.size) > work_side:
                    src.draft(src.mode, (work_side, work_side))  # JPEG: decode at 1/2 .. 1/8 scale
                width, height = src.size
                if width * height > MAX_INPUT_PIXELS:
                    raise AetoolError(f"{path}: {width}x{height} pixels is above aetool's input limit of "
                                      f"{MAX_INPUT_PIXELS // 1_000_000} megapixels; shrink it first")
                src.load()
                im = src if max(src.size) <= work_side else _shrink(src, work_side, min_short_side)
                # Phone photos store rotation in EXIF; honour it so a digit isn't
                # fed to the model sideways.  Returns a detached copy either way.
                return ImageOps.exif_transpose(im)
    except AetoolError:
        raise
    except UnidentifiedImageError:
        raise AetoolError(f"{path}: not an image file (cannot identify image file)") from None
    except PermissionError as e:
        raise AetoolError(f"{path}: cannot read ({e.strerror or _one_line(e)})") from None
    except Image.DecompressionBombError as e:
        raise AetoolError(f"{path}: image too large ({_one_line(e)})") from None
    except MemoryError:
        raise AetoolError(f"{path}: image too large to decode") from None
    except Exception as e:  # noqa: BLE001 - corrupt files raise anything from plugins
        raise AetoolError(f"{path}: corrupt or truncated image ({_one_line(e)})") from None


def _shrink(im: Image.Image, work_side: int = WORK_SIDE, min_short_side: int | None = None) -> Image.Image:
    """The picture with its longer side ``work_side`` pixels, by an integer box reduction where the mode
    allows it (cheap in memory), else a resize; never its shorter side below ``min_short_side``."""
    factor = max(1, max(im.size) // work_side)
    scale = work_side / max(im.size)
    if min_short_side:
        factor = max(1, min(factor, min(im.size) // min_short_side))
        scale = min(1.0, max(scale, min_short_side / min(im.size)))
    if factor == 1 and scale >= 1.0:
        return im
    try:
        return im.reduce(factor)
    except (ValueError, NotImplementedError):
        return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))


def _gray_and_alpha(im: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-mode conversion to float grey in [0, 1] plus alpha (None if opaque).

    Done by hand rather than ``convert("L")`` because Pillow clips 16-bit and
    float data to 0..255 instead of rescaling it.
    """
    mode = im.mode
    alpha: np.ndarray | None = None

    if mode == "1":
        gray = np.asarray(im, dtype=np.float32)  # bool -> 0/1
    elif mode == "L":
        gray = np.asarray(im, dtype=np.float32) / 255.0
    elif mode.startswith("I;16"):
        gray = np.asarray(im).astype(np.float32) / 65535.0
    elif mode == "I":
        a = np.asarray(im).astype(np.float64)
        hi = float(a.max()) if a.size else 0.0
        # "I" usually holds 8- or 16-bit data widened to int32; guess which.
        if hi > 65535:
            denom = hi
        elif hi > 255:
            denom = 65535.0
        else:
            denom = 255.0
        gray = np.clip(a / denom, 0.0, 1.0).astype(np.float32)
    elif mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(a.max()) if a.size else 0.0
        gray = np.clip(a if hi <= 1.0 else a / hi, 0.0, 1.0).astype(np.float32)
    else:
        rgba = None
        for target in ("RGBA", "LA"):
            try:
                rgba = im.convert(target)
                break
            except (ValueError, OSError):
                continue
        if rgba is None:
            raise AetoolError(f"{path}: unsupported image mode {mode}")
        a = np.asarray(rgba, dtype=np.float32) / 255.0
        if rgba.mode == "RGBA":
            gray = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
        else:
            gray = a[..., 0]
        alpha = a[..., -1]

    if alpha is not None and alpha.min() >= 1.0:
        alpha = None
    return np.ascontiguousarray(gray, dtype=np.float32), alpha


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten transparency onto the colour opposite the ink.

    The colour under transparent pixels is arbitrary (often black), so a black
    digit on a transparent background would vanish on black; putting it on the
    opposite colour keeps the digit visible whichever way it was drawn.
    """
    opaque = alpha > 0.5
    if not opaque.any():
        return gray * alpha  # nothing drawn: anything is fine, keep it dark
    background = 1.0 if float(gray[opaque].mean()) < 0.5 else 0.0
    return gray * alpha + background * (1.0 - alpha)


def _border_mean(x: np.ndarray) -> float:
    border = np.concatenate([x[0, :], x[-1, :], x[:, 0], x[:, -1]])
    return float(border.mean())


def _resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float resize via Pillow's "F" mode so no precision is lost to uint8."""
    out = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32)).resize(
        (width, height), Image.Resampling.LANCZOS
    )
    # LANCZOS rings past the input range around sharp strokes.
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def mnist_normalise(x: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit it in 20x20, centre its mass in 28x28 like MNIST."""
    ink = x > INK_THRESHOLD
    if not ink.any():
        return _resize(x, SIZE, SIZE)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    patch = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = patch.shape
    s = BOX / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    patch = _resize(patch, nw, nh)

    total = float(patch.sum())
    if total > 0:
        cy = float((patch.sum(axis=1) * np.arange(nh)).sum()) / total
        cx = float((patch.sum(axis=0) * np.arange(nw)).sum()) / total
    else:
        cy, cx = (nh - 1) / 2.0, (nw - 1) / 2.0
    centre = (SIZE - 1) / 2.0
    top = min(max(int(round(centre - cy)), 0), SIZE - nh)
    left = min(max(int(round(centre - cx)), 0), SIZE - nw)

    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    canvas[top : top + nh, left : left + nw] = patch
    return canvas


def load_image(path: str | os.PathLike, invert: bool | None = None) -> np.ndarray:
    """Load any Pillow-readable image as a (1, 28, 28) float32 MNIST-like digit.

    ``invert=None`` guesses from the border (a light border means dark ink on
    paper, the opposite of MNIST); True/False override the guess.
    """
    path = Path(path)
    im = _read_pillow(path)
    gray, alpha = _gray_and_alpha(im, path)
    if gray.size == 0:
        raise AetoolError(f"{path}: image has no pixels")
    if alpha is not None:
        gray = _composite(gray, alpha)
    if invert is None:
        invert = _border_mean(gray) > 0.5
    if invert:
        gray = 1.0 - gray
    gray = np.clip(gray, 0.0, 1.0)
    if gray.shape != (SIZE, SIZE):
        gray = mnist_normalise(gray)
    return gray.astype(np.float32, copy=False).reshape(1, SIZE, SIZE)


def load_images(paths: Iterable[str | os.PathLike], invert: bool | None = None) -> np.ndarray:
    """Load several files as one (N, 1, 28, 28) float32 batch for the model."""
    arrays = [load_image(p, invert=invert) for p in paths]
    if not arrays:
        return np.zeros((0, 1, SIZE, SIZE), dtype=np.float32)
    return np.stack(arrays).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------
# pictures (bundles trained on a folder of images)

_GREY_MODES = ("1", "L", "I", "F")  # and every "I;16..." mode: one channel, no alpha


def is_grey_mode(mode: str) -> bool:
    """Whether Pillow's ``mode`` holds one channel and no alpha (grey, bilevel, 16-bit, int, float)."""
    return mode in _GREY_MODES or mode.startswith("I;16")


def _planes(im: Image.Image, path: Path, channels: int) -> np.ndarray:
    """``im`` as (channels, H, W) float32 in [0, 1], transparency composited onto black.

    Grey goes through ``_gray_and_alpha`` (16-bit and float data rescaled, not clipped; colour to
    ITU-R 601 luma); RGB keeps colour and replicates a grey picture.  Black under transparency,
    not load_image's "opposite of the ink", because a photo has no ink: black is the canvas
    the padding uses too.
    """
    if channels == 1 or is_grey_mode(im.mode):
        gray, alpha = _gray_and_alpha(im, path)
        if alpha is not None:
            gray = gray * alpha
        planes = gray[None]
        return np.repeat(planes, channels, axis=0) if channels == 3 else planes
    if im.mode == "RGB":
        return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    try:
        rgba = im.convert("RGBA")
    except (ValueError, OSError):
        raise AetoolError(f"{path}: unsupported image mode {im.mode}") from None
    a = np.asarray(rgba, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    rgb, alpha = a[:3], a[3]
    return rgb if alpha.min() >= 1.0 else rgb * alpha


def _fit_geometry(width: int, height: int, size: int, fit: str) -> tuple[tuple[slice, slice], tuple[int, int], int, int]:
    """The part of the picture kept (rows, columns), its resized (width, height), and its (top, left)
    offset in the square.  A crop is cut before resampling, so nothing outside it bleeds in."""
    if fit == "crop":
        side = min(width, height)
        top, left = (height - side) // 2, (width - side) // 2
        return (slice(top, top + side), slice(left, left + side)), (size, size), 0, 0
    scale = size / max(width, height)
    nw, nh = max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale)))
    return (slice(None), slice(None)), (nw, nh), (size - nh) // 2, (size - nw) // 2


def _check_picture_args(channels: int, size: int, fit: str) -> None:
    if channels not in (1, 3):
        raise AetoolError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise AetoolError(f"image size must be a whole number >= 1, got {size!r}")
    if fit not in FITS:
        raise AetoolError(f"unknown fit {fit!r}; use {' or '.join(FITS)}")


def picture_to_uint8(path: str | os.PathLike, channels: int, size: int, fit: str = "pad") -> np.ndarray:
    """Any Pillow-readable picture as a (channels, size, size) uint8 array, the way the folder
    bundles were trained.

    channels 1 is grey (luma), 3 is RGB (a grey picture replicated); transparency goes onto black.
    The aspect ratio is kept: ``fit="pad"`` fits all of the picture in the square, centred on
    black; ``fit="crop"`` takes the largest centred square.  Resampling is LANCZOS (after a box
    reduction for big pictures), in float, clipped, and rounded once to 8 bits: training caches
    these bytes and the runtime divides the same bytes by 255, so both see identical floats.
    """
    _check_picture_args(channels, size, fit)
    path = Path(path)
    # Decode no more than the resampling needs: about PICTURE_OVERSAMPLE times the target on the
    # side that the fit scales by (JPEGs are then decoded at 1/2 .. 1/8 scale: much faster).
    work = int(size) * PICTURE_OVERSAMPLE
    im = _read_pillow(path, work_side=min(WORK_SIDE, work), min_short_side=work if fit == "crop" else None)
    if im.width == 0 or im.height == 0:
        raise AetoolError(f"{path}: image has no pixels")
    planes = _planes(im, path, channels)
    (rows, cols), (nw, nh), top, left = _fit_geometry(im.width, im.height, int(size), fit)
    out = np.zeros((channels, size, size), dtype=np.float32)
    for c in range(channels):
        plane = Image.fromarray(np.ascontiguousarray(planes[c][rows, cols], dtype=np.float32))  # mode "F"
        resized = plane.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        out[c, top : top + nh, left : left + nw] = np.asarray(resized, dtype=np.float32)
    return to_uint8(out)  # clips LANCZOS's ringing to 0..255, rounds once


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1]: one division by 255, the conversion training and the
    runtime must both use for their floats to be identical."""
    return np.divide(np.asarray(images, dtype=np.uint8), np.float32(255), dtype=np.float32)


def load_picture(path: str | os.PathLike, channels: int, size: int, fit: str = "pad") -> np.ndarray:
    """A picture as the (channels, size, size) float32 in [0, 1] that a folder bundle takes:
    exactly ``picture_to_uint8(...) / 255``."""
    return from_uint8(picture_to_uint8(path, channels, size, fit))


def load_pictures(paths: Iterable[str | os.PathLike], channels: int, size: int, fit: str = "pad") -> np.ndarray:
    """Several pictures as one (N, channels, size, size) float32 batch."""
    _check_picture_args(channels, size, fit)
    arrays = [picture_to_uint8(p, channels, size, fit) for p in paths]
    if not arrays:
        return np.zeros((0, channels, size, size), dtype=np.float32)
    return from_uint8(np.stack(arrays))


def own_size_uint8(path: str | os.PathLike, channels: int, max_side: int | None = None) -> np.ndarray:
    """A picture at its own size as (channels, H, W) uint8, the way map bundles take it: grey or RGB,
    transparency onto black; with ``max_side``, a larger picture is first resized (LANCZOS, aspect
    ratio kept) so that its longer side is ``max_side``.  A folder's cache for the map families holds
    these bytes, and the runtime divides the same bytes by 255."""
    _check_picture_args(channels, max_side or 1, FITS[0])
    path = Path(path)
    # no shrink while decoding unless a cap asks for one: then decode at no less than twice the cap
    work = 1 << 30 if not max_side else int(max_side) * 2
    im = _read_pillow(path, work_side=work)
    if im.width == 0 or im.height == 0:
        raise AetoolError(f"{path}: image has no pixels")
    kept = not max_side or max(im.width, im.height) <= max_side
    if kept and (im.mode, channels) in (("RGB", 3), ("L", 1)):
        # 8-bit bytes are already what the float path would round back to (v / 255 * 255 = v): no
        # float copies, so a 40-megapixel photograph is read in its own 120 MB, not in gigabytes
        a = np.asarray(im, dtype=np.uint8)
        return np.ascontiguousarray(a.transpose(2, 0, 1) if a.ndim == 3 else a[None])
    planes = _planes(im, path, channels)
    if max_side and max(im.width, im.height) > max_side:
        scale = max_side / max(im.width, im.height)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        planes = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(p, dtype=np.float32)).resize(
            size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP), dtype=np.float32) for p in planes])
    return to_uint8(planes)


def load_own_size(paths: Iterable[str | os.PathLike], channels: int) -> list[np.ndarray]:
    """Pictures at their own size as float32 (channels, H, W) arrays in [0, 1], one per file (their
    sizes differ, so they are not one batch)."""
    return [from_uint8(own_size_uint8(p, channels)) for p in paths]


def load_for(
    paths: Iterable[str | os.PathLike],
    channels: int,
    height: int,
    width: int,
    preprocessing: str | Preprocessing,
    invert: bool | None = None,
) -> np.ndarray:
    """The (N, C, H, W) float32 input of a bundle whose image spec is (channels, height, width,
    preprocessing): the one entry point the runtime uses, so every bundle gets its inputs the way
    it was trained.  ``preprocessing`` is the stored name or its parsed form (bundle_format owns
    both).  ``invert`` is for the digit preprocessing only; pictures are never inverted."""
    prep = preprocessing if isinstance(preprocessing, Preprocessing) else Preprocessing.parse(preprocessing)
    if prep.is_digit:
        if (channels, height, width) != IMAGE_SHAPE:
            raise AetoolError(f"preprocessing {prep.name!r} makes 1x28x28 digits, but the bundle takes "
                              f"{channels}x{height}x{width} images")
        return load_images(paths, invert=invert)
    if prep.is_own_size:
        pictures = load_own_size(paths, channels)
        if len({p.shape for p in pictures}) > 1:
            raise AetoolError("pictures of different sizes are not one batch: load them one by one "
                              "(image_input.load_own_size)")
        return np.stack(pictures) if pictures else np.zeros((0, channels, height, width), np.float32)
    if height != width:
        raise AetoolError(f"preprocessing {prep.name!r} makes square images, but the bundle takes "
                          f"{height}x{width}")
    return load_pictures(paths, channels, height, fit=prep.fit)


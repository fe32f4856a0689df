"""Where a picture is wrong: a map bundle's per-pixel anomaly map, torch-free.

A raw squared error lights up every edge and texture, because a small autoencoder never
reconstructs those exactly, and a defect shows up as a *region* where the error is high, not as
single pixels.  So the map is the reconstruction's squared error, summed over the channels,
smoothed with a Gaussian of ``SIGMA`` pixels (the noise of texture averages out, a region's error
adds up), and divided by ``pixel_scale``, the mean of that smoothed error over normal held-out
pictures: a map value of 5 reads "five times the error normal pictures have".  The picture's one
score is the mean of the highest ``TOP_SHARE`` of its map: a defect of a few hundred pixels moves
it, where the whole picture's mean would dilute it away.

The Gaussian is three passes of a box filter along each axis (running sums: the cost does not grow
with sigma), mirrored at the edges, so a 12-megapixel picture's map costs a few passes over it.
"""

from __future__ import annotations

import math

import numpy as np

SIGMA = 4.0  # pixels
TOP_SHARE = 0.01  # the image score: the mean of the highest 1 % of the map
BOX_PASSES = 3


def _box_widths(sigma: float, passes: int = BOX_PASSES) -> list[int]:
    """Odd box widths whose ``passes`` successive box filters have (about) the variance of a
    Gaussian of ``sigma`` (Kovesi's choice of two neighbouring widths)."""
    ideal = math.sqrt(12 * sigma * sigma / passes + 1)
    lower = int(ideal) - (1 - int(ideal) % 2)  # the odd width at or below the ideal
    lower = max(lower, 1)
    upper = lower + 2
    m = round((12 * sigma * sigma - passes * lower * lower - 4 * passes * lower - 3 * passes) / (-4 * lower - 4))
    return [lower if i < m else upper for i in range(passes)]


def _box(a: np.ndarray, width: int) -> np.ndarray:
    """The mean over a centred window of ``width`` (odd) along axis 0, mirrored at the edges (a
    side shorter than the radius repeats its last values beyond the mirror).  A running sum, row by
    row over whole rows: numpy's cumsum down a tall array is many times slower."""
    r = width // 2
    n = a.shape[0]
    if r == 0:
        return a
    mirror = min(r, n - 1)
    padded = np.pad(a, ((mirror, mirror), (0, 0)), mode="reflect") if mirror else a
    if mirror < r:
        padded = np.pad(padded, ((r - mirror, r - mirror), (0, 0)), mode="edge")
    out = np.empty(a.shape, np.float32)
    acc = padded[:width].sum(0, dtype=np.float64)
    out[0] = acc / width
    for i in range(1, n):
        acc += padded[i + width - 1]
        acc -= padded[i - 1]
        out[i] = acc / width
    return out


def gaussian_blur(m: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """A (H, W) map smoothed with (about) a Gaussian of ``sigma`` pixels, mirrored at the edges."""
    out = np.asarray(m, np.float32)
    if sigma <= 0:
        return out.copy()
    for width in _box_widths(sigma):
        out = np.ascontiguousarray(_box(np.ascontiguousarray(_box(out, width).T), width).T)
    return out


def squared_error(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W): the squared error of a (C, H, W) reconstruction, summed over the channels."""
    d = np.asarray(x, np.float32) - np.asarray(y, np.float32)
    return np.einsum("chw,chw->hw", d, d)


def error_map(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """The smoothed squared error of a reconstruction, in SSE per pixel (not yet scaled)."""
    return gaussian_blur(squared_error(x, y), sigma)


def image_score(amap: np.ndarray, share: float = TOP_SHARE) -> float:
    """The mean of the highest ``share`` of a map's values (at least one of them)."""
    flat = np.asarray(amap, np.float64).ravel()
    k = max(1, math.floor(share * flat.size + 0.5))  # as the web page rounds it (Python's round() halves to even)
    return float(np.mean(np.partition(flat, flat.size - k)[flat.size - k:]))


def scaled_map(x: np.ndarray, y: np.ndarray, pixel_scale: float | None) -> np.ndarray:
    """The anomaly map of picture ``x`` and its reconstruction ``y``, in multiples of the normal
    pictures' error where the bundle's calibration says what that is (else in SSE per pixel)."""
    m = error_map(x, y)
    return m / np.float32(pixel_scale) if pixel_scale else m


# black -> red -> yellow -> white, a ramp that stays readable in grey print
_RAMP = np.array([[0, 0, 0], [200, 30, 20], [250, 200, 40], [255, 255, 255]], np.float32)


def heat_overlay(x: np.ndarray, amap: np.ndarray, threshold: float | None) -> np.ndarray:
    """(H, W, 3) uint8: the picture in grey, dimmed, with the map over it in colour: clear below
    half the pixel threshold, opaque from the threshold up, where the ramp reaches yellow.  Without
    a threshold (an uncalibrated bundle) the map's own 0.999 quantile stands in for it."""
    grey = np.asarray(x, np.float32).mean(0) if x.ndim == 3 else np.asarray(x, np.float32)
    if not threshold:
        threshold = float(np.quantile(amap, 0.999)) or 1.0
    t = np.clip(np.asarray(amap, np.float32) / np.float32(threshold), 0.0, 2.0)  # 1: the threshold
    pos = t / 2 * (len(_RAMP) - 1)
    lo = np.minimum(pos.astype(np.int32), len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    colour = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    alpha = np.clip(2 * t - 1, 0.0, 1.0)[..., None] * 0.85
    base = (0.25 + 0.6 * np.clip(grey, 0, 1))[..., None] * 255
    return np.clip(base * (1 - alpha) + colour * alpha, 0, 255).round().astype(np.uint8)

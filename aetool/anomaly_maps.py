"""Where a picture is wrong: a map bundle's per-pixel anomaly map, torch-free.

A raw squared error lights up every edge and texture: a small autoencoder reconstructs busy
regions worse than flat ones even when they are normal, and a defect shows up as a *region* of
high error, not as single pixels.  So the map is a ratio of two local energies over the same
neighbourhood (a Gaussian of ``SIGMA`` pixels):

    map = smooth(squared error) / (smooth(texture energy) + floor)

where the squared error is the reconstruction's, summed over the channels; the texture energy is
the detail (the squared difference from itself blurred by ``DETAIL_SIGMA``) of the picture or of
its reconstruction, whichever has less there, so a busy normal region is held to its own standard
while a defect cannot excuse itself: a scratch adds detail to the picture but not to the
reconstruction, a blur takes it from the picture; and ``floor`` is the picture's own mean smoothed
error, so a flat region is not divided by almost nothing.  The map is a function of the picture and
its reconstruction alone (no calibration enters it), so the command line, a script and the web page
draw the same map.  Chosen by measurement: benchmarks/anomaly_maps.py compares it with the plain
smoothed error and 1 - SSIM (a floor from the normal pictures' error instead of the picture's own
did worse on the pixels there).  The picture's one score is the mean of the highest
``TOP_SHARE`` of its map: a defect of a few hundred pixels moves it, where the whole picture's mean
would dilute it away.

The Gaussian is three passes of a box filter along each axis (running sums: the cost does not grow
with sigma), mirrored at the edges, so a 12-megapixel picture's map costs a few passes over it.
"""

from __future__ import annotations

import math

import numpy as np

SIGMA = 4.0  # pixels: the neighbourhood both energies are measured over
DETAIL_SIGMA = 2.0  # pixels: what the picture keeps beyond a blur of this is its texture
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


def texture_energy(x: np.ndarray) -> np.ndarray:
    """(H, W): a (C, H, W) picture's detail beyond a blur of DETAIL_SIGMA, squared, summed over the
    channels and smoothed like the error (the denominator's local energy)."""
    x = np.asarray(x, np.float32)
    detail = np.zeros(x.shape[1:], np.float32)
    for c in x:
        d = c - gaussian_blur(c, DETAIL_SIGMA)
        detail += d * d
    return gaussian_blur(detail)


def anomaly_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The anomaly map of picture ``x`` and its reconstruction ``y`` (module docstring): a ratio, about
    1 where the error is what the picture's texture and its mean error lead one to expect."""
    error = error_map(x, y)
    floor = max(float(error.mean(dtype=np.float64)), 1e-12)
    return error / (np.minimum(texture_energy(x), texture_energy(y)) + np.float32(floor))


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

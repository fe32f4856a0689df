"""Where a picture is wrong: a map bundle's per-pixel anomaly map, torch-free.

A calibrated map bundle draws the map with an **appearance model** (:class:`AppearanceModel`):
around each pixel, a picture's local statistics (its mean level in each channel and the log energy
of its detail in three bands, over neighbourhoods of two widths), whitened by the normal pictures'
covariance, and their distance to the nearest of the normal neighbourhoods that calibration kept.
A defect is a region that looks like no normal region: a hole, a stain, a blur, a scratch or a
patch of another texture each moves some statistic away from every normal neighbourhood.  The
reconstruction's error cannot say that on a stochastic texture (grass, gravel): a small model
reconstructs a smooth hole *better* than the normal texture around it.  Chosen by measurement:
benchmarks/anomaly_maps.py compares it with the reconstruction map below, the plain smoothed error
and 1 - SSIM; adding the reconstruction's error to the statistics did not help there.

A bundle calibrated before the appearance model existed, or never, draws the **reconstruction
map** (:func:`reconstruction_map`), a ratio of two local energies over a Gaussian of ``SIGMA``
pixels: the smoothed squared error of the reconstruction over the lesser smoothed texture energy of
picture and reconstruction (a busy normal region is held to its own standard, while a defect cannot
excuse itself: a scratch adds detail to the picture, not to the reconstruction), plus the picture's
own mean error as a floor.

The picture's one score is the mean of the highest ``TOP_SHARE`` of its map: a defect of a few
hundred pixels moves it, where the whole picture's mean would dilute it away.  Every Gaussian is
three passes of a box filter along each axis (running sums: the cost does not grow with sigma),
mirrored at the edges.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from .bundle_format import AppearanceParams

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


def detail_energy(x: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W): a (C, H, W) picture's detail beyond a blur of ``sigma``, squared and summed over the
    channels, pixel by pixel (not yet smoothed)."""
    x = np.asarray(x, np.float32)
    e = np.zeros(x.shape[1:], np.float32)
    for c in x:
        d = c - gaussian_blur(c, sigma)
        e += d * d
    return e


def texture_energy(x: np.ndarray) -> np.ndarray:
    """(H, W): a (C, H, W) picture's detail beyond a blur of DETAIL_SIGMA, smoothed like the error
    (the denominator's local energy)."""
    return gaussian_blur(detail_energy(x, DETAIL_SIGMA))


def reconstruction_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The reconstruction's map of picture ``x`` and its reconstruction ``y``: a ratio, about 1 where
    the error is what the picture's texture and its mean error lead one to expect.  The map of a
    bundle calibrated without an appearance model (see :func:`anomaly_map`)."""
    error = error_map(x, y)
    floor = max(float(error.mean(dtype=np.float64)), 1e-12)
    return error / (np.minimum(texture_energy(x), texture_energy(y)) + np.float32(floor))


STAT_SIGMAS = (2.0, 6.0)  # pixels: the two neighbourhoods local statistics are taken over
BANDS = (1.0, 2.0, 4.0)  # pixels: a band's detail is what a picture keeps beyond a blur of this width
LOG_FLOOR = 1e-5  # of a band's energy, before its logarithm: 8-bit rounding noise is about 1e-6
BANK = 4096  # normal neighbourhoods an appearance model keeps
POOL = 200_000  # neighbourhoods (at most) the model is chosen from, drawn evenly over the pictures
STEP = 2  # the distance is measured every STEP pixels (the statistics are smooth), then spread back
LARGE, LARGE_STEP = 4_000_000, 4  # pixels: past this, every LARGE_STEP pixels (the search is most of the cost)
CHUNK = 4096  # places a distance is computed for at once: a (CHUNK, BANK) float32 block, 16 MB


def local_features(x: np.ndarray, sigmas: Sequence[float] = STAT_SIGMAS, bands: Sequence[float] = BANDS,
                   step: int = 1) -> np.ndarray:
    """(H, W, D), or at every ``step``-th pixel of each axis (ceil(H / step), ceil(W / step), D): what
    a (C, H, W) picture looks like around each pixel, at each neighbourhood of
    ``sigmas``: its mean level in each channel and the log energy of its detail in each band of
    ``bands`` (summed over the channels).  A hole, a stain, a blur, a scratch or a patch of another
    texture each moves some of these away from every normal neighbourhood, even where a model
    reconstructs the defect as well as the texture around it."""
    x = np.asarray(x, np.float32)
    detail = [detail_energy(x, s) for s in bands]
    out = []  # each statistic kept at the grid alone as it is made: a 12-megapixel picture's D maps would be GBs
    for sigma in sigmas:
        out += [gaussian_blur(c, sigma)[::step, ::step] for c in x]
        out += [np.log(gaussian_blur(e, sigma)[::step, ::step] + np.float32(LOG_FLOOR)) for e in detail]
    return np.stack(out, -1)


class AppearanceModel:
    """What normal pictures look like, neighbourhood by neighbourhood, and how far a picture's
    neighbourhoods are from it: the distance from each pixel's :func:`local_features` to the nearest
    of ``BANK`` normal ones, after whitening by the normal features' covariance (so every statistic
    counts by its own spread, and correlated ones are not counted twice).  Nearest-neighbour, as
    PatchCore scores a patch, because normal appearance is many things at once (grass and sky,
    brick and mortar): one Gaussian around their mean would call a flat patch of mean grey normal.

    Follows scikit-learn's conventions: settings in ``__init__``, fitted arrays end in ``_``.
    ``owners_`` (not stored) says which fitted picture each kept neighbourhood came from, so a
    calibration can score those pictures without their own neighbourhoods (``exclude``)."""

    mean_: np.ndarray  # (D,)
    whiten_: np.ndarray  # (D, D): features @ whiten_ have the identity covariance
    bank_: np.ndarray  # (BANK, D), whitened

    def __init__(self, size: int = BANK, sigmas: Sequence[float] = STAT_SIGMAS, bands: Sequence[float] = BANDS,
                 seed: int = 0) -> None:
        self.size, self.sigmas, self.bands, self.seed = size, tuple(sigmas), tuple(bands), seed

    def features(self, x: np.ndarray) -> np.ndarray:
        """The statistics where the distance is measured (:func:`step`)."""
        return local_features(x, self.sigmas, self.bands, step(*np.shape(x)[1:]))

    def fit(self, pictures: Iterable[np.ndarray], count: int | None = None) -> "AppearanceModel":
        """From normal (C, H, W) pictures of any sizes, read once (a stream of ``count`` of them is
        never all in memory): up to POOL of their neighbourhoods, evenly from each picture, whitened,
        of which ``size`` are kept.  ``owners_`` counts the pictures in the order they came."""
        if count is None:
            pictures = list(pictures)
            count = len(pictures)
        rng = np.random.default_rng(self.seed)
        each = max(1, -(-POOL // max(count, 1)))
        pool, owners = [], []
        for i, x in enumerate(pictures):
            f = self.features(x)
            f = f.reshape(-1, f.shape[-1])
            keep = f if len(f) <= each else f[rng.choice(len(f), each, replace=False)]
            pool.append(keep.astype(np.float64))
            owners.append(np.full(len(keep), i))
        if not pool:
            raise ValueError("an appearance model needs at least one picture")
        f, own = np.concatenate(pool), np.concatenate(owners)
        self.mean_ = f.mean(0)
        cov = np.atleast_2d(np.cov(f, rowvar=False))
        cov += np.eye(len(cov)) * (1e-6 * max(float(np.trace(cov)) / len(cov), 1e-12))  # a constant statistic
        self.whiten_ = np.linalg.cholesky(np.linalg.inv(cov))
        pick = rng.choice(len(f), min(self.size, len(f)), replace=False)
        # to 4 decimals (whitened statistics are of order 1): latent.json holds the bank the scores used
        self.bank_ = np.round((f[pick] - self.mean_) @ self.whiten_, 4).astype(np.float32)
        self.owners_ = own[pick]
        return self

    def to_params(self) -> AppearanceParams:
        return AppearanceParams(self.sigmas, self.bands, self.mean_, self.whiten_, self.bank_)

    @classmethod
    def from_params(cls, params: AppearanceParams) -> "AppearanceModel":
        out = cls(len(params.bank), params.sigmas, params.bands)
        out.mean_, out.whiten_, out.bank_ = params.mean, params.whiten, params.bank.astype(np.float32)
        out.owners_ = None
        return out

    def distance(self, x: np.ndarray, exclude: int | None = None) -> np.ndarray:
        """(H, W): each pixel's whitened distance to the nearest normal neighbourhood kept; with
        ``exclude``, to the nearest not taken from fitted picture ``exclude``."""
        f = self.features(x)
        h, w = np.shape(x)[1:]
        dim = f.shape[-1]
        if dim != self.bank_.shape[1]:
            raise ValueError(f"appearance model of {self.bank_.shape[1]} statistics, picture gives {dim}")
        bank = self.bank_
        if exclude is not None and self.owners_ is not None:
            bank = bank[self.owners_ != exclude]
        grid = f.reshape(-1, dim)
        q = (grid - self.mean_.astype(np.float32)) @ self.whiten_.astype(np.float32)
        bank_t = np.ascontiguousarray(bank.T)
        half = np.float32(0.5) * np.einsum("nd,nd->n", bank, bank)
        best = np.empty(len(q), np.float32)
        for start in range(0, len(q), CHUNK):  # max of q.b - |b|^2 / 2 is the nearest b
            block = q[start : start + CHUNK] @ bank_t
            block -= half
            best[start : start + CHUNK] = block.max(1)
        coarse = np.sqrt(np.maximum(np.einsum("nd,nd->n", q, q) - 2 * best, 0)).reshape(f.shape[:2])
        k = step(h, w)
        return gaussian_blur(np.repeat(np.repeat(coarse, k, 0), k, 1)[:h, :w], k / 2)


def step(h: int, w: int) -> int:
    """Every how many pixels a picture of h x w has its distance measured: STEP, or LARGE_STEP for a
    picture of more than LARGE pixels (a 12-megapixel photograph's defects are not 2 pixels wide)."""
    return LARGE_STEP if h * w > LARGE else STEP


def anomaly_map(x: np.ndarray, y: np.ndarray, appearance: AppearanceModel | None = None,
                exclude: int | None = None) -> np.ndarray:
    """A map bundle's anomaly map of picture ``x`` (and its reconstruction ``y``): with the
    calibration's appearance model, each pixel's distance from normal appearance
    (:class:`AppearanceModel`); without one (a bundle calibrated before it existed, or never), the
    reconstruction's error over the local texture (:func:`reconstruction_map`)."""
    if appearance is None:
        return reconstruction_map(x, y)
    return appearance.distance(x, exclude)


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

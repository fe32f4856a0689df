"""Reconstruction metrics shared by training (torch) and the runtime (numpy)."""

from __future__ import annotations

import math

import numpy as np

from .lecture import IMAGE_SHAPE

PIXELS = math.prod(IMAGE_SHAPE)


def psnr_from_sse(sse_per_image: float, pixels: int = PIXELS) -> float:
    """PSNR in dB for images in [0, 1], from the mean per-pixel squared error."""
    mse = sse_per_image / pixels
    return float("inf") if mse == 0 else float(10 * math.log10(1.0 / mse))


def sse_per_image(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    return ((np.asarray(x_hat, np.float64) - x) ** 2).reshape(len(x), -1).sum(axis=1)


def sse_picture(x: np.ndarray, y: np.ndarray, rows: int = 256) -> float:
    """Sum of squared differences of two (C, H, W) pictures in float64, a band of ``rows`` rows at a
    time: a 40-megapixel photograph's differences in float64 would take a gigabyte at once."""
    total = 0.0
    for r in range(0, x.shape[1], rows):
        diff = np.asarray(y[:, r : r + rows], np.float64) - x[:, r : r + rows]
        total += float(np.dot(diff.ravel(), diff.ravel()))
    return total


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for telling ``positive`` (True) from the rest: the chance
    that a random positive scores above a random negative, ties counted half (Mann-Whitney U).

    Scores that are not finite rank above every finite one, as ``aetool score`` flags them.
    """
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=np.inf)
    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positive and negative examples")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.arange(1, len(s) + 1)
    uniq, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    if len(uniq) < len(s):  # tied scores share their mean rank
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# SSIM as Wang et al. (2004) define it and scikit-image computes it with
# structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1):
# local means, variances and covariance under an 11-tap Gaussian window (sigma 1.5, truncated at
# 3.5 sigma), K1 = 0.01, K2 = 0.03, averaged over the pixels at least 5 from the border (where the
# window lies inside the image, so the border mode never matters) and then over the channels.
SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # scikit-image's truncate=3.5: an 11-pixel window
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _valid_gaussian(n: int) -> np.ndarray:
    """(n - 2r, n): the normalised Gaussian window at each position where it lies inside n pixels."""
    taps = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    w = np.exp(-0.5 * (taps / SSIM_SIGMA) ** 2)
    w /= w.sum()
    m = np.zeros((n - 2 * SSIM_RADIUS, n))
    for i in range(len(m)):
        m[i, i : i + len(w)] = w
    return m


def ssim_per_image(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, batch: int = 64) -> np.ndarray:
    """Mean SSIM of each image pair of (N, C, H, W) arrays (or (N, H, W)), in float64, a batch at a time;
    1 for identical images.  The images must be at least 11 pixels on a side."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"SSIM compares images of one shape, got {x.shape} and {y.shape}")
    if x.ndim == 3:
        x, y = x[:, None], y[:, None]
    if x.ndim != 4 or min(x.shape[-2:]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs (N, C, H, W) images of at least {2 * SSIM_RADIUS + 1} pixels a side, got {x.shape}")
    h, w = x.shape[-2:]
    gh, gw = np.ascontiguousarray(_valid_gaussian(h).T), np.ascontiguousarray(_valid_gaussian(w).T)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    out = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), batch):
        a = x[start : start + batch].astype(np.float64)
        b = y[start : start + batch].astype(np.float64)

        def blur(v: np.ndarray) -> np.ndarray:
            """Along the rows, then the columns, each as one matrix product over the batch (a stacked
            product per image is many times slower); the result comes out transposed (n, c, W', H'),
            which the mean over pixels does not mind."""
            n, c = v.shape[:2]
            t = (v.reshape(-1, w) @ gw).reshape(n, c, h, -1)
            return (np.swapaxes(t, 2, 3).reshape(-1, h) @ gh).reshape(n, c, t.shape[3], -1)

        ua, ub = blur(a), blur(b)
        va, vb, vab = blur(a * a) - ua * ua, blur(b * b) - ub * ub, blur(a * b) - ua * ub
        s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
        out[start : start + batch] = s.mean(axis=(2, 3)).mean(axis=1)
    return out


def _gaussian_taps() -> np.ndarray:
    taps = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    w = np.exp(-0.5 * (taps / SSIM_SIGMA) ** 2)
    return w / w.sum()


def _blur_valid(v: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """The 'valid' separable blur of (..., h, w) by ``taps`` along both of the last axes: a sum of
    shifted slices, so its cost grows with the pixels, not with their square."""
    k = len(taps)
    rows = sum(t * v[..., i : v.shape[-2] - k + 1 + i, :] for i, t in enumerate(taps))
    return sum(t * rows[..., i : rows.shape[-1] - k + 1 + i] for i, t in enumerate(taps))


def ssim_picture(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, strip: int = 64) -> float | None:
    """Mean SSIM of two (C, H, W) pictures of any size, as :func:`ssim_per_image` computes it (the
    same window, constants and border rule), in strips of ``strip`` rows: a 12-megapixel
    photograph in a few hundred megabytes, where the matrix form would need gigabytes.  None for a
    picture under 11 pixels a side, which has no position where the window fits."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(f"SSIM compares two (C, H, W) pictures of one shape, got {x.shape} and {y.shape}")
    k = 2 * SSIM_RADIUS + 1
    c, h, w = x.shape
    if min(h, w) < k:
        return None
    taps = _gaussian_taps()
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    total = np.zeros(c)
    for r0 in range(0, h - k + 1, strip):
        r1 = min(h - k + 1, r0 + strip)  # the valid rows r0..r1 need input rows r0..r1 + k - 1
        a = x[:, r0 : r1 + k - 1].astype(np.float64)
        b = y[:, r0 : r1 + k - 1].astype(np.float64)
        ua, ub = _blur_valid(a, taps), _blur_valid(b, taps)
        va, vb, vab = _blur_valid(a * a, taps) - ua * ua, _blur_valid(b * b, taps) - ub * ub, _blur_valid(a * b, taps) - ua * ub
        s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
        total += s.sum(axis=(1, 2))
    return float((total / ((h - k + 1) * (w - k + 1))).mean())

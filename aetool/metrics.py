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

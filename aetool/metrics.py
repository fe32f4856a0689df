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

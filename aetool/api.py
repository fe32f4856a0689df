"""Figures built from a bundle, shared by the CLI and the comparison report."""

from __future__ import annotations

import numpy as np

from .bundle import Bundle
from .image_output import make_grid, stack_rows
from .metrics import sse_per_image


def reconstruction_figure(bundle: Bundle, x: np.ndarray, ncols: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Originals above reconstructions (a uint8 grid), and each image's SSE."""
    x_hat = bundle.reconstruct(x)
    sse = sse_per_image(x, x_hat)
    grid = stack_rows([make_grid(x, ncols), make_grid(x_hat, ncols)])
    return grid, sse

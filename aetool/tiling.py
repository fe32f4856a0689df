"""Large pictures through a fully convolutional graph in overlapping tiles, blended without seams.

A map bundle's graphs take any size, but onnxruntime holds every activation of a call at once: a
12-megapixel photograph in one call would need several gigabytes.  So above a bound
(:data:`MAX_TILE_PIXELS` picture pixels per call) a picture, or a latent map, is cut into tiles
aligned to the latent grid, each run with a margin of context on every side, and the outputs are
blended back with a feathered weight: the outer part of each margin is dropped (weight 0, where
the network saw the tile's edge instead of its neighbour), the rest ramps linearly to 1, and the
ramps of two neighbours add up to 1 over their overlap.  The result is divided by the summed
weights, so any window works and no seam shows; where a position's receptive field fits inside
the kept part of the margin, tiled equals untiled to float rounding.

Memory: the picture, its output and one (H, W) weight plane in float32 (28 bytes a pixel for RGB),
plus onnxruntime's activations for one tile of at most MAX_TILE_PIXELS pixels (its margins
included; about 200 MB for a network the size of the issue's sketch).  Measured for a whole
``aetool reconstruct`` (reading, both graphs, SSIM, the PNG) with that network on 2 shared cores:
12 megapixels (4000 x 3000) at 0.77 GB peak resident memory in 17 s, 38 megapixels (6400 x 6000,
near image_input's 40-megapixel limit) at 1.75 GB in 60 s: every picture aetool reads stays within
2 GB.  512 x 512 tiles with 32-pixel margins (f = 8) cost about 30 % more arithmetic than one call.

One function serves both directions: the encoder (picture -> map: ``scale_in = f``,
``scale_out = 1``) and the decoder (map -> picture: ``scale_in = 1``, ``scale_out = f``); tiles,
margins and the cut are counted in latent positions.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

MAX_TILE_PIXELS = 1 << 18  # picture pixels (H x W) per onnxruntime call, margins included: 512 x 512
MARGIN_BLOCKS = 4  # latent positions of context on each side of a tile (4 x f pixels)
CUT_BLOCKS = 2  # of them, dropped outright at a tile edge that has a neighbour


def tile_blocks(max_pixels: int, factor: int, margin: int = MARGIN_BLOCKS) -> int:
    """The core side of a square tile, in latent positions, whose run with its margins stays within
    ``max_pixels`` picture pixels; at least twice the margin, so a tile's two ramps never meet."""
    side = int(math.isqrt(max(1, max_pixels))) // factor - 2 * margin
    return max(side, 2 * margin, 1)


def _spans(n: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) cores of about equal length covering 0..n."""
    count = max(1, -(-n // tile))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _ramp(length: int, lo_open: bool, hi_open: bool, margin: int, cut: int, scale: int) -> np.ndarray:
    """The 1-D weight of one extended tile of ``length`` output samples: 0 over the first ``cut``
    positions of an edge with a neighbour, then a linear ramp up to 1 over the next
    2 (margin - cut) positions; 1 everywhere along an edge that is the picture's own."""
    t = np.arange(length, dtype=np.float64) + 0.5
    w = np.ones(length)
    width = max(2 * (margin - cut), 1) * scale
    if lo_open:
        w = np.minimum(w, np.clip((t - cut * scale) / width, 0.0, 1.0))
    if hi_open:
        w = np.minimum(w, np.clip((length - t - cut * scale) / width, 0.0, 1.0))
    return w


def run_tiled(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, *, scale_in: int, scale_out: int,
              out_channels: int, tile: int, margin: int = MARGIN_BLOCKS, cut: int = CUT_BLOCKS) -> np.ndarray:
    """``run`` (one (1, C, H, W) batch in, one (1, C', H', W') out) over ``x`` (C, h * scale_in,
    w * scale_in) in tiles of ``tile`` x ``tile`` latent positions with ``margin`` positions of
    context each side, blended as the module docstring says; returns (C', h * scale_out, w * scale_out).

    Each dimension of the output is exactly ``scale_out / scale_in`` times the input's, as for a
    fully convolutional graph whose sides are multiples of the factor."""
    if x.ndim != 3 or x.shape[1] % scale_in or x.shape[2] % scale_in:
        raise ValueError(f"run_tiled: expected (C, H, W) with sides multiples of {scale_in}, got {x.shape}")
    cut = min(cut, margin)
    h, w = x.shape[1] // scale_in, x.shape[2] // scale_in
    out = np.zeros((out_channels, h * scale_out, w * scale_out), np.float32)
    total = np.zeros((h * scale_out, w * scale_out), np.float32)
    for r0, r1 in _spans(h, tile):
        a0, a1 = max(0, r0 - margin), min(h, r1 + margin)
        wy = _ramp((a1 - a0) * scale_out, a0 > 0, a1 < h, margin, cut, scale_out)
        for c0, c1 in _spans(w, tile):
            b0, b1 = max(0, c0 - margin), min(w, c1 + margin)
            wx = _ramp((b1 - b0) * scale_out, b0 > 0, b1 < w, margin, cut, scale_out)
            piece = x[:, a0 * scale_in : a1 * scale_in, b0 * scale_in : b1 * scale_in]
            y = run(np.ascontiguousarray(piece[None]))[0]
            weight = np.outer(wy, wx).astype(np.float32)
            rows, cols = slice(a0 * scale_out, a1 * scale_out), slice(b0 * scale_out, b1 * scale_out)
            out[:, rows, cols] += y * weight
            total[rows, cols] += weight
    out /= total  # every position lies in some tile's core, where its weight is at least 1/2
    return out

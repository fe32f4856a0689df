"""The families whose latent is a map: d codes per f x f block, from fully convolutional graphs.

In the spirit of TAESD's ``taesd.py``: a whole encoder and decoder of plain residual
blocks in one short file, and nothing in them that depends on the picture's size or on
the batch (no normalisation, pooling or Linear layer), so the same weights run on a
48-px training crop and on a 12-megapixel photograph.

- ``map`` (:class:`MapAutoEncoder`): a 4x4 stride-2 stem, then per resolution below
  half size one residual block (two at the smallest) between 3x3 stride-2 convolutions,
  widths doubling up to ``8 * width``; a 3x3 convolution to d.  The decoder mirrors it
  with its work kept at the small sizes: each doubling is a 1x1 convolution to the
  narrower width and a nearest x2, and its last stage runs at half size on the picture
  rearranged 2x2 into channels (seeing the fixed path's picture there), ending in one
  depth-to-space; so decoding costs about what encoding does.  SiLU throughout.
- beside the convolutions, a fixed linear path each way: block PCA, the lecture's
  baseline applied per f x f block (an f x f stride-f convolution down, its transpose
  up).  The convolutional paths start at zero, so a fresh network *is* block PCA and
  training spends every step on what a per-block linear map cannot do; the fixed path
  also anchors the colours and the broad shading on photographs the network never saw,
  which a few training photographs cannot teach it.
- ``pca --factor f`` (:class:`BlockPCA`): that linear path alone, fitted in closed form.

The block PCA itself (mean and components of the f x f x C blocks) is fitted in numpy
over the training pictures (:func:`fit_block_pca`), exactly, through the covariance of
all their blocks.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

MAX_WIDTH_FACTOR = 8


def levels(factor: int) -> int:
    """Halvings in a map network: log2 of the factor (4 -> 2, 8 -> 3, 16 -> 4)."""
    n = int(round(math.log2(factor)))
    if 2**n != factor or n < 1:
        raise ValueError(f"factor must be a power of two >= 2, got {factor}")
    return n


def map_widths(width: int, factor: int) -> list[int]:
    """The width at each resolution below full size: /2, /4, ... /factor."""
    return [width * min(2**i, MAX_WIDTH_FACTOR) for i in range(levels(factor))]


class ResBlock(nn.Module):
    """x + conv(SiLU(conv(x))), then SiLU; the second convolution starts at zero, so the block
    starts as the identity (a deep stack then trains from the first step like a shallow one)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class BlockProject(nn.Conv2d):
    """Block PCA's projection as an f x f stride-f convolution: each block's d coefficients.
    Fixed: set by :meth:`set_pca`, never trained."""

    def __init__(self, channels: int, d: int, factor: int) -> None:
        super().__init__(channels, d, factor, stride=factor)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        self.requires_grad_(False)

    @torch.no_grad()
    def set_pca(self, mean: np.ndarray, components: np.ndarray) -> None:
        """``mean`` (C*f*f,), ``components`` (C*f*f, d) orthonormal columns, blocks flattened C, row, column."""
        w = torch.from_numpy(np.ascontiguousarray(components.T, dtype=np.float32))  # (d, C*f*f)
        self.weight.copy_(w.reshape(self.weight.shape))
        self.bias.copy_(-(w @ torch.from_numpy(mean.astype(np.float32))))


class BlockReconstruct(nn.ConvTranspose2d):
    """Block PCA's reconstruction as an f x f stride-f transposed convolution: mean + components @ z.

    With ``space_to_depth`` s > 1 it gives the same picture rearranged as :class:`torch.nn.PixelUnshuffle`
    (s) would: C*s*s channels at 1/s of the size (an f/s x f/s stride-f/s transposed convolution),
    which is where the map decoder's last stage works."""

    def __init__(self, d: int, channels: int, factor: int, space_to_depth: int = 1) -> None:
        k = factor // space_to_depth
        super().__init__(d, channels * space_to_depth**2, k, stride=k, bias=False)
        nn.init.zeros_(self.weight)
        self.register_buffer("mean", torch.zeros(1, channels * space_to_depth**2, k, k))
        self.requires_grad_(False)
        self.channels, self.factor, self.space_to_depth = channels, factor, space_to_depth

    @torch.no_grad()
    def set_pca(self, mean: np.ndarray, components: np.ndarray) -> None:
        c, f, s = self.channels, self.factor, self.space_to_depth
        w = np.ascontiguousarray(components.T, dtype=np.float32).reshape(-1, c, f, f)  # (d, C, f, f)
        m = mean.astype(np.float32).reshape(1, c, f, f)
        # (., C, f, f) -> (., C*s*s, f/s, f/s): pixel (y, x) = (s*a + i, s*b + j) goes to channel (c, i, j)
        unshuffle = lambda a: a.reshape(a.shape[0], c, f // s, s, f // s, s).transpose(0, 1, 3, 5, 2, 4)  # noqa: E731
        self.weight.copy_(torch.from_numpy(np.ascontiguousarray(unshuffle(w))).reshape(self.weight.shape))
        self.mean.copy_(torch.from_numpy(np.ascontiguousarray(unshuffle(m))).reshape(self.mean.shape))

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # "input": the name the exporter's shapes key on
        out = super().forward(input)
        return out + self.mean.repeat(1, 1, input.shape[2], input.shape[3])


class MapEncoder(nn.Module):
    """f: (N, C, H, W) -> (N, d, H/f, W/f) for H, W multiples of f."""

    def __init__(self, d: int, width: int, channels: int, factor: int) -> None:
        super().__init__()
        ws = map_widths(width, factor)
        self.stem = nn.Sequential(nn.Conv2d(channels, ws[0], 4, stride=2, padding=1), nn.SiLU())
        stages: list[nn.Module] = []
        for i, c in enumerate(ws):
            if i:  # no block at half size: there it would cost as much as one at every other size together
                stages.append(ResBlock(c))
            if i + 1 < len(ws):
                stages += [nn.Conv2d(c, ws[i + 1], 3, stride=2, padding=1), nn.SiLU()]
        stages.append(ResBlock(ws[-1]))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(ws[-1], d, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # the code starts as block PCA's alone
        nn.init.zeros_(self.head.bias)
        self.linear = BlockProject(channels, d, factor)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(input - 0.5))) + self.linear(input)


class MapDecoder(nn.Module):
    """g: (N, d, h, w) -> (N, C, h*f, w*f), the mirror of :class:`MapEncoder`, with its work at the
    small sizes: each doubling is a 1x1 convolution to the narrower width, then nearest x2 (the
    residual block after it does the spatial mixing), and the last stage runs at half size on the
    picture rearranged 2x2 into channels, ending in one depth-to-space.  There it sees block PCA's
    picture beside the features: what a per-block linear map gets wrong (its block edges, above all)
    is visible there."""

    def __init__(self, d: int, width: int, channels: int, factor: int) -> None:
        super().__init__()
        ws = map_widths(width, factor)
        stages: list[nn.Module] = [nn.Conv2d(d, ws[-1], 3, padding=1), nn.SiLU(), ResBlock(ws[-1])]
        for i in range(len(ws) - 1, 0, -1):
            stages += [nn.Conv2d(ws[i], ws[i - 1], 1), nn.Upsample(scale_factor=2, mode="nearest")]
            if i > 1:
                stages.append(ResBlock(ws[i - 1]))
        self.stages = nn.Sequential(*stages)
        self.linear = BlockReconstruct(d, channels, factor, space_to_depth=2)  # fixed: block PCA at half size
        self.mix = nn.Conv2d(ws[0], ws[0], 3, padding=1)
        self.see = nn.Conv2d(4 * channels, ws[0], 1)
        self.act = nn.SiLU()
        self.out = nn.Conv2d(ws[0], 4 * channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # the picture starts as block PCA's alone
        nn.init.zeros_(self.out.bias)
        self.to_full = nn.PixelShuffle(2)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        base = self.linear(input)
        h = self.act(self.mix(self.stages(input)) + self.see(base))
        return self.to_full(base + self.out(h))


class MapAutoEncoder(nn.Module):
    def __init__(self, d: int, width: int = 16, channels: int = 3, factor: int = 8) -> None:
        super().__init__()
        self.embedding_dim, self.factor = d, factor
        self.encoder = MapEncoder(d, width, channels, factor)
        self.decoder = MapDecoder(d, width, channels, factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def start_at_pca(self, mean: np.ndarray, components: np.ndarray) -> "MapAutoEncoder":
        self.encoder.linear.set_pca(mean, components)
        self.decoder.linear.set_pca(mean, components)
        return self


class BlockPCA(nn.Module):
    """The lecture's baseline per block: PCA of the f x f x C blocks, as a map autoencoder."""

    def __init__(self, d: int, channels: int = 3, factor: int = 8) -> None:
        super().__init__()
        self.embedding_dim, self.factor = d, factor
        self.encoder = BlockProject(channels, d, factor)  # the fixed paths themselves are the graphs
        self.decoder = BlockReconstruct(d, channels, factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def start_at_pca(self, mean: np.ndarray, components: np.ndarray) -> "BlockPCA":
        self.encoder.set_pca(mean, components)
        self.decoder.set_pca(mean, components)
        return self


# ---------------------------------------------------------------- block PCA in numpy
def blocks_of(picture: np.ndarray, factor: int) -> np.ndarray:
    """The whole f x f blocks of a (C, H, W) picture as rows (blocks, C*f*f), flattened channel,
    row, column: the order of the convolution's kernel."""
    c, h, w = picture.shape
    h, w = h - h % factor, w - w % factor
    x = picture[:, :h, :w].reshape(c, h // factor, factor, w // factor, factor)
    return x.transpose(1, 3, 0, 2, 4).reshape(-1, c * factor * factor)


def fit_block_pca(pictures: Sequence[np.ndarray], factor: int, d: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Mean and top-d principal directions of every whole block of ``pictures`` (uint8 or float
    (C, H, W) arrays), exactly: the blocks' covariance (C*f*f square, at most 768 x 768 at f=16 in
    colour) summed picture by picture in float64, then its eigendecomposition.  Memory: one
    picture's blocks at a time."""
    n, total, outer = 0, None, None
    for p in pictures:
        p = np.asarray(p)
        x = blocks_of(p, factor).astype(np.float64)
        if p.dtype == np.uint8:
            x /= 255.0
        if total is None:
            total, outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        n += len(x)
        total += x.sum(0)
        outer += x.T @ x
    if not n:
        raise ValueError("no whole block in the pictures")
    mean = total / n
    cov = outer / n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    k = min(d, len(values))
    components = np.zeros((len(values), d))
    components[:, :k] = vectors[:, order[:k]]
    for j in range(k):  # a sign convention, so refits agree: each column's largest entry positive
        if components[np.argmax(np.abs(components[:, j])), j] < 0:
            components[:, j] *= -1
    explained = float(values[order[:k]].sum() / max(values.sum(), 1e-30))
    return mean.astype(np.float32), components.astype(np.float32), {"blocks": n, "explained_variance": explained}

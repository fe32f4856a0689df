"""The network for natural images (family ``photo``): residual stages, widths growing as the side halves.

Why not the lecture's network at other sizes: a constant 32 channels pushed through
stride-2 convolutions with nothing in between, and no normalisation, has too little
capacity where the picture is small and trains unstably on photographs.  Here:

- a 3x3 stem, then one residual block per resolution; between resolutions a 2x2
  stride-2 convolution (a "patchify" step: cheap, and its mirror in the decoder is
  a 1x1 convolution and a pixel shuffle, so the decoder costs what the encoder does);
- widths double as the side halves, from ``width`` at full size up to ``8 * width``;
- BatchNorm after every convolution (folded into it at export, so the graphs hold
  plain Conv/Gemm nodes that onnxruntime and onnxruntime-web run as they are), SiLU;
- the smallest map (4x4, or the first odd side) goes through a Linear layer to d, and
  the decoder mirrors it all back; its last convolution has no activation, as in the
  lecture (the runtime clips for display);
- beside the convolutions, a fixed linear path each way (image -> d, d -> image): PCA of
  the training images, set before the first step, while the convolutional paths start at
  zero.  The network begins as the best linear autoencoder, and training spends every
  step on what no linear map can do instead of first re-learning the broad shading.

Each residual block's last BatchNorm starts at zero, so every block starts as the
identity and a deep stack trains from the first step like a shallow one; the output
convolution starts at zero too, so a fresh decoder draws mid-grey rather than noise.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .model import set_pca_layers

MAX_WIDTH_FACTOR = 8  # the widths stop doubling at 8x the full-size width
SMALLEST_SIDE = 4  # halve the side while it is even and above this


def sides(size: int) -> list[int]:
    """The side of each resolution, full size first: 64 -> [64, 32, 16, 8, 4]; 28 -> [28, 14, 7]."""
    out = [size]
    while out[-1] > SMALLEST_SIDE and out[-1] % 2 == 0:
        out.append(out[-1] // 2)
    return out


def widths(width: int, levels: int) -> list[int]:
    return [width * min(2**i, MAX_WIDTH_FACTOR) for i in range(levels)]


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2 if stride == 1 else 0, bias=False),
                               nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.SiLU()) if act else nn.Sequential(*layers)


def fixed_linear(n_in: int, n_out: int) -> nn.Linear:
    """A Linear layer that training leaves alone: zero until :meth:`PhotoAutoEncoder.start_at_pca`
    sets it.  Fixed, because its weights are tiny (an orthonormal basis of thousands of pixels) and
    Adam's steps, about the learning rate in size whatever the weight, would scramble them."""
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    layer.requires_grad_(False)
    return layer


class ResBlock(nn.Module):
    """x + BN(conv(SiLU(BN(conv(x))))), then SiLU: two 3x3 convolutions around an identity path."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c, 3), conv_bn(c, c, 3, act=False))
        nn.init.zeros_(self.body[1][1].weight)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class Up(nn.Module):
    """Double the side: a 1x1 convolution to 4x the channels, then a pixel shuffle (exports as
    Conv + DepthToSpace): the mirror of the encoder's 2x2 stride-2 convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 4 * c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(4 * c_out)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.bn(self.conv(x))))


class PhotoEncoder(nn.Module):
    """f: (N, C, S, S) -> (N, d, 1, 1)."""

    def __init__(self, d: int, width: int, channels: int, size: int) -> None:
        super().__init__()
        side, ws = sides(size), widths(width, len(sides(size)))
        self.stem = conv_bn(channels, ws[0], 3)
        stages: list[nn.Module] = []
        for i, c in enumerate(ws):
            stages.append(ResBlock(c))
            if i + 1 < len(ws):
                stages.append(conv_bn(c, ws[i + 1], 2, stride=2))
        self.stages = nn.Sequential(*stages)
        self.to_latent = nn.Linear(ws[-1] * side[-1] ** 2, d)
        nn.init.zeros_(self.to_latent.weight)  # the latent starts as the linear path's alone
        nn.init.zeros_(self.to_latent.bias)
        self.linear = fixed_linear(channels * size * size, d)  # the linear path: PCA's projection

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(input - 0.5))
        z = self.to_latent(h.flatten(1)) + self.linear(input.flatten(1))
        return z.reshape(z.shape[0], z.shape[1], 1, 1)


class PhotoDecoder(nn.Module):
    """g: (N, d, 1, 1) -> (N, C, S, S), the mirror of :class:`PhotoEncoder`."""

    def __init__(self, d: int, width: int, channels: int, size: int) -> None:
        super().__init__()
        side, ws = sides(size), widths(width, len(sides(size)))
        self.map_shape = (ws[-1], side[-1], side[-1])
        self.from_latent = nn.Linear(d, math.prod(self.map_shape), bias=False)
        self.latent_bn = nn.BatchNorm1d(math.prod(self.map_shape))
        self.act = nn.SiLU()
        stages: list[nn.Module] = []
        for i in range(len(ws) - 1, -1, -1):
            stages.append(ResBlock(ws[i]))
            if i > 0:
                stages.append(Up(ws[i], ws[i - 1]))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(ws[0], channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # the picture starts as the linear path's alone
        nn.init.zeros_(self.head.bias)
        self.image_shape = (channels, size, size)
        self.linear = fixed_linear(d, channels * size * size)  # the linear path: PCA's reconstruction

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        z = input.flatten(1)
        h = self.act(self.latent_bn(self.from_latent(z)))
        detail = self.head(self.stages(h.reshape(h.shape[0], *self.map_shape)))
        return detail + self.linear(z).reshape(detail.shape)


class PhotoAutoEncoder(nn.Module):
    def __init__(self, d: int, width: int = 16, channels: int = 3, size: int = 64) -> None:
        super().__init__()
        self.embedding_dim = d
        self.image_shape = (channels, size, size)
        self.encoder = PhotoEncoder(d, width, channels, size)
        self.decoder = PhotoDecoder(d, width, channels, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def start_at_pca(self, mean: np.ndarray, components: np.ndarray) -> "PhotoAutoEncoder":
        """Set both linear paths to PCA's (``components``: (pixels, d) orthonormal columns), so the
        network starts as the best linear autoencoder and training adds what no linear map can."""
        set_pca_layers(self.encoder.linear, self.decoder.linear, mean, components)
        return self


def pca_start(images: Any, d: int, sample: int = 2048, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-d principal directions of up to ``sample`` training images (uint8 rows or floats),
    through their Gram matrix: a start for the linear paths, not the baseline's exact PCA."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(images))[:sample])
    x = np.asarray(images[pick]).reshape(len(pick), -1).astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255
    mean = x.mean(0)
    x -= mean
    values, vectors = np.linalg.eigh((x @ x.T).astype(np.float64))
    k = min(d, len(x))
    order = np.argsort(values)[::-1][:k]
    components = np.zeros((x.shape[1], d), dtype=np.float32)  # fewer images than d: the rest stay zero
    components[:, :k] = (x.T @ vectors[:, order].astype(np.float32)) / np.sqrt(np.maximum(values[order], 1e-12)).astype(np.float32)
    return mean, components

@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` with every BatchNorm folded into the convolution or Linear
    layer before it: the same function in fewer nodes, and no BatchNorm for a runtime to get wrong."""
    module = copy.deepcopy(module).eval()

    def fold(parent: nn.Module) -> None:
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            first, second = parent._modules[a], parent._modules[b]
            if isinstance(second, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if isinstance(first, nn.Conv2d):
                    parent._modules[a] = fuse_conv_bn_eval(first, second)
                elif isinstance(first, nn.Linear):
                    parent._modules[a] = fuse_linear_bn_eval(first, second)
                else:
                    continue
                parent._modules[b] = nn.Identity()
        for child in parent.children():
            fold(child)

    fold(module)
    return module

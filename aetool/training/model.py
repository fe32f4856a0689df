"""The models, whole in one file: the lecture's convolutional autoencoder and PCA.

The CNN is layer for layer the lecture's code (EE-559, "Autoencoders"): a 28x28
image is squeezed through four convolutions to a d x 1 x 1 latent and decoded
by the mirror stack of transposed convolutions.  The decoder has no final
activation, as in the lecture, so outputs can leave [0, 1] slightly; the
runtime clips for display.

PCA, the optimum of the linear autoencoder, is wrapped with the same shapes,
(N, 1, 28, 28) <-> (N, d, 1, 1), so export, bundles and every runtime command
treat both families alike (training.pca fits it in closed form).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..lecture import IMAGE_SHAPE, NB_CHANNELS

PIXELS = math.prod(IMAGE_SHAPE)


# (kernel, stride) of the lecture's five convolutions, from the image down to the 1x1 latent;
# the decoder runs the same list backwards with transposed convolutions
LECTURE_LAYERS = ((5, 1), (5, 1), (4, 2), (3, 2), (4, 1))


def _stack(conv: type[nn.Module], channels: list[int], layers: tuple[tuple[int, int], ...]) -> list[nn.Module]:
    """conv, ReLU, conv, ..., conv: no activation after the last (the latent, or the pixels)."""
    modules: list[nn.Module] = []
    for i, ((kernel, stride), c_in, c_out) in enumerate(zip(layers, channels[:-1], channels[1:])):
        if i:
            modules.append(nn.ReLU(inplace=True))
        modules.append(conv(c_in, c_out, kernel_size=kernel, stride=stride))
    return modules


class Encoder(nn.Sequential):
    """f: (N, 1, 28, 28) -> (N, d, 1, 1)."""

    def __init__(self, embedding_dim: int, nb_channels: int = NB_CHANNELS) -> None:
        c = nb_channels
        super().__init__(*_stack(nn.Conv2d, [IMAGE_SHAPE[0], c, c, c, c, embedding_dim], LECTURE_LAYERS))


class Decoder(nn.Sequential):
    """g: (N, d, 1, 1) -> (N, 1, 28, 28), the mirror of :class:`Encoder`."""

    def __init__(self, embedding_dim: int, nb_channels: int = NB_CHANNELS) -> None:
        c = nb_channels
        super().__init__(*_stack(nn.ConvTranspose2d, [embedding_dim, c, c, c, c, IMAGE_SHAPE[0]], LECTURE_LAYERS[::-1]))


class AutoEncoder(nn.Module):
    """Encoder and decoder kept as separate modules so each exports to its own ONNX graph."""

    def __init__(self, embedding_dim: int, nb_channels: int = NB_CHANNELS) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ValueError("embedding_dim must be at least 1")
        self.embedding_dim = embedding_dim
        self.nb_channels = nb_channels
        self.encoder = Encoder(embedding_dim, nb_channels)
        self.decoder = Decoder(embedding_dim, nb_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class PCAEncoder(nn.Module):
    """z = (x - mean) W, reshaped to (N, d, 1, 1)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear = nn.Linear(PIXELS, d)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        z = self.linear(input.reshape(input.shape[0], PIXELS))
        return z.reshape(z.shape[0], z.shape[1], 1, 1)


class PCADecoder(nn.Module):
    """x = z W^T + mean, reshaped to (N, 1, 28, 28)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, PIXELS)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = self.linear(input.reshape(input.shape[0], -1))
        return x.reshape(x.shape[0], *IMAGE_SHAPE)


class PCAAutoEncoder(nn.Module):
    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.encoder = PCAEncoder(embedding_dim)
        self.decoder = PCADecoder(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def set_basis(self, mean: np.ndarray, components: np.ndarray) -> "PCAAutoEncoder":
        """``components``: (784, d) orthonormal columns."""
        w = torch.from_numpy(components.astype(np.float32))
        mu = torch.from_numpy(mean.astype(np.float32))
        self.encoder.linear.weight.copy_(w.T)
        self.encoder.linear.bias.copy_(-(mu @ w))
        self.decoder.linear.weight.copy_(w)
        self.decoder.linear.bias.copy_(mu)
        return self


def build_model(config: dict[str, Any]) -> nn.Module:
    """The model a stored config describes (``model``, ``d``, ``nb_channels``), with fresh weights."""
    if config.get("model", "cnn") == "pca":
        return PCAAutoEncoder(config["d"])
    return AutoEncoder(config["d"], config.get("nb_channels", NB_CHANNELS))


@torch.no_grad()
def forward_all(module: nn.Module, images: np.ndarray, device: torch.device | str = "cpu", batch: int = 1000) -> np.ndarray:
    """``module`` (an encoder, or a whole autoencoder) over ``images`` in batches, as float32 numpy.

    Batched so that 60,000 images never sit in one activation tensor.
    """
    module.eval()
    out = [module(torch.from_numpy(images[i : i + batch]).to(device)).float().cpu().numpy()
           for i in range(0, len(images), batch)]
    return np.concatenate(out)


@torch.no_grad()
def sse_per_image(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu", batch: int = 1000) -> np.ndarray:
    """Sum of squared errors of each image's reconstruction, in exact fp32."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).to(device)
        out.append((model(x) - x).pow(2).flatten(1).sum(1).cpu().numpy())
    return np.concatenate(out)


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The lecture's loss: 0.5 * sum of squared errors, averaged over the batch."""
    return 0.5 * (x_hat.float() - x.float()).pow(2).sum() / x.shape[0]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

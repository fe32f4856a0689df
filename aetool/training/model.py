"""The lecture's convolutional autoencoder (EE-559, "Autoencoders").

Layer for layer the lecture's code: a 28x28 image is squeezed through four
convolutions to a d x 1 x 1 latent and decoded by the mirror stack of
transposed convolutions.  The decoder has no final activation, as in the
lecture, so outputs can leave [0, 1] slightly; the runtime clips for display.
"""

from __future__ import annotations

import torch
from torch import nn

from ..lecture import NB_CHANNELS


class Encoder(nn.Sequential):
    """f: (N, 1, 28, 28) -> (N, d, 1, 1)."""

    def __init__(self, embedding_dim: int, nb_channels: int = NB_CHANNELS) -> None:
        c = nb_channels
        super().__init__(
            nn.Conv2d(1, c, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, kernel_size=4, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, embedding_dim, kernel_size=4),
        )


class Decoder(nn.Sequential):
    """g: (N, d, 1, 1) -> (N, 1, 28, 28), the mirror of :class:`Encoder`."""

    def __init__(self, embedding_dim: int, nb_channels: int = NB_CHANNELS) -> None:
        c = nb_channels
        super().__init__(
            nn.ConvTranspose2d(embedding_dim, c, kernel_size=4),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, c, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, c, kernel_size=4, stride=2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, c, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, 1, kernel_size=5),
        )


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


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The lecture's loss: 0.5 * sum of squared errors, averaged over the batch."""
    return 0.5 * (x_hat.float() - x.float()).pow(2).sum() / x.shape[0]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

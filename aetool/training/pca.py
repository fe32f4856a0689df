"""PCA, the optimum of the linear autoencoder, as a model family.

Fitted in closed form (top-d eigenvectors of the training covariance) and
wrapped as torch modules with the CNN's shapes, (N,1,28,28) <-> (N,d,1,1), so
export, bundles and every runtime command treat both families alike.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data import load_mnist
from ..density import DiagonalGaussian
from ..fileio import atomic_path, write_json
from ..lecture import IMAGE_SHAPE
from ..metrics import psnr_from_sse, sse_per_image

PIXELS = math.prod(IMAGE_SHAPE)


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


def fit_pca(images: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-d principal directions (784, d), in float64 for a faithful optimum."""
    x = images.reshape(len(images), -1).astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / len(x)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:d]
    components = eigvecs[:, order]
    # a deterministic sign per direction, so two fits on the same data agree
    components *= np.sign(components[np.abs(components).argmax(axis=0), np.arange(d)])
    return mean, components


def reconstruct_numpy(images: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1).astype(np.float64)
    return ((x - mean) @ components @ components.T + mean).reshape(images.shape)


def train_pca(config, out_dir: Path, *, log: Callable[[str], None] = print) -> dict:
    from .train import CHECKPOINT, DENSITY, METRICS

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = config.training_part(load_mnist("train", config.data))
    test = load_mnist("test", config.data)
    if config.d > PIXELS:
        from ..errors import AetoolError

        raise AetoolError(f"--d {config.d}: PCA has at most {PIXELS} directions")
    t0 = time.perf_counter()
    mean, components = fit_pca(train.images, config.d)
    seconds = time.perf_counter() - t0
    sse = sse_per_image(test.images, reconstruct_numpy(test.images, mean, components))
    train_sse = sse_per_image(train.images, reconstruct_numpy(train.images, mean, components))
    model = PCAAutoEncoder(config.d).set_basis(mean, components)
    history = [{
        "epoch": 1,
        "train_loss": float(0.5 * train_sse.mean()),
        "test_sse_per_image": float(sse.mean()),
        "test_psnr_db": psnr_from_sse(float(sse.mean())),
        "seconds": seconds,
    }]
    state = {"config": dataclasses.asdict(config), "epoch": 1, "model": model.state_dict(), "history": history}
    with atomic_path(out_dir / CHECKPOINT) as tmp:
        torch.save(state, tmp)
    z = (train.images.reshape(len(train), -1) - mean) @ components
    write_json(out_dir / DENSITY, DiagonalGaussian().fit(z).to_dict())
    metrics = {
        "family": "pca",
        "config": dataclasses.asdict(config),
        "parameters": {"encoder": PIXELS * config.d + config.d, "decoder": PIXELS * config.d + PIXELS},
        "data": {"name": "mnist", "train_images": len(train), "test_images": len(test)},
        "epochs_done": 1,
        "complete": True,
        "test_sse_per_image": history[0]["test_sse_per_image"],
        "test_psnr_db": history[0]["test_psnr_db"],
        "history": history,
    }
    write_json(out_dir / METRICS, metrics)
    log(f"PCA d={config.d} on {len(train)} images: test SSE/image {history[0]['test_sse_per_image']:.3f}  "
        f"PSNR {history[0]['test_psnr_db']:.2f} dB ({seconds:.1f} s) -> {out_dir}")
    return metrics

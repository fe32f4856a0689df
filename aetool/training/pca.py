"""PCA, the optimum of the linear autoencoder, fitted in closed form into a run folder.

The top-d eigenvectors of the training covariance become a
:class:`~aetool.training.model.PCAAutoEncoder`, saved like any CNN run so
export and every runtime command treat both families alike.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from ..density import DiagonalGaussian
from ..errors import UsageError
from ..metrics import psnr_from_sse, sse_per_image
from .config import TrainConfig
from .datasets import TrainingData, as_float
from .model import PCAAutoEncoder
from .run import RunFolder


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


MAX_PIXELS = 4096  # the covariance is pixels x pixels: 4096 values an image is 128 MB and seconds to decompose


def train_pca(config: TrainConfig, run: RunFolder, data: TrainingData, *, log: Callable[[str], None] = print) -> dict:
    pixels = data.image.pixels
    if pixels > MAX_PIXELS:
        raise UsageError(f"PCA in closed form takes images of at most {MAX_PIXELS} values, these have {pixels}: "
                         f"use a smaller --image-size or --channels 1")
    if config.d > pixels:
        raise UsageError(f"--d {config.d}: PCA has at most {pixels} directions")
    train, heldout = as_float(data.train[:]), as_float(data.heldout[:])
    t0 = time.perf_counter()
    mean, components = fit_pca(train, config.d)
    seconds = time.perf_counter() - t0
    sse = sse_per_image(heldout, reconstruct_numpy(heldout, mean, components))
    train_sse = sse_per_image(train, reconstruct_numpy(train, mean, components))
    model = PCAAutoEncoder(config.d, data.image.shape).set_basis(mean, components)
    history = [{
        "epoch": 1,
        "train_loss": float(0.5 * train_sse.mean()),
        "test_sse_per_image": float(sse.mean()),
        "test_psnr_db": psnr_from_sse(float(sse.mean()), pixels),
        "seconds": seconds,
    }]
    run.forget_density()  # an old run's density, if this replaces one (--force)
    run.save_checkpoint({"config": dataclasses.asdict(config), "epoch": 1, "model": model.state_dict(), "history": history})
    z = (train.reshape(len(train), -1) - mean) @ components
    run.write_density(DiagonalGaussian().fit(z).to_dict())
    metrics = {
        "family": "pca",
        "config": dataclasses.asdict(config),
        "parameters": {"encoder": pixels * config.d + config.d, "decoder": pixels * config.d + pixels},
        "data": data.info,
        "epochs_done": 1,
        "started_from": [],
        "epochs_in_all": 1,
        "complete": True,
        "test_sse_per_image": history[0]["test_sse_per_image"],
        "test_psnr_db": history[0]["test_psnr_db"],
        "history": history,
    }
    run.write_metrics(metrics)
    log(f"PCA d={config.d} on {len(train)} images: {data.heldout_name} SSE/image {history[0]['test_sse_per_image']:.3f}  "
        f"PSNR {history[0]['test_psnr_db']:.2f} dB ({seconds:.1f} s) -> {run}")
    return metrics

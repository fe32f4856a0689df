"""A small MNIST digit classifier, trained once and shipped as ONNX.

It turns "does the reconstruction still look like a 7?" into a number:
identity kept = the fraction of reconstructions read as the true digit.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..fileio import write_json
from ..mnist import load_mnist
from ..progress import progress
from .device import resolve_precision, torch_device
from .export import GraphConfig, export_graph, validate_graph
from .run import save_torch

ONNX_NAME = "classifier.onnx"


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class DigitClassifier(nn.Sequential):
    """Two stages of two 3x3 convs (batch-normed) and a pool, then two linear layers.

    It is the measuring instrument for identity kept, so it should be as
    accurate as a small net gets (about 99.6 % on MNIST test) and read a digit
    through the small shifts, rotations and scale changes that handwriting has.
    """

    def __init__(self) -> None:
        super().__init__(
            *_conv(1, 32), *_conv(32, 32), nn.MaxPool2d(2),
            *_conv(32, 64), *_conv(64, 64), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(0.3),
            nn.Linear(256, 10),
        )


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    model.eval()
    preds = [model(torch.from_numpy(images[i : i + batch])).argmax(1).numpy() for i in range(0, len(images), batch)]
    return float((np.concatenate(preds) == labels).mean())


def train_classifier(out_dir: Path, *, epochs: int = 10, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     limit: int | None = None, device: str = "auto", precision: str = "auto", quiet: bool = False,
                     log: Callable[[str], None] = print) -> dict:
    """Train on randomly warped digits (the handwriting variation, not reconstruction artefacts), export, check parity.

    The augmentation is generic on purpose: training on autoencoder outputs
    would teach the classifier to forgive exactly the errors it must count.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch_device(device)
    prec = resolve_precision(precision, dev)
    torch.manual_seed(seed)
    train, test = load_mnist("train"), load_mnist("test")
    if limit is not None:
        train = train.head(limit)
    model = DigitClassifier().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_train, y_train = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    warp_rng = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed + epoch))
        t0, total = time.perf_counter(), 0.0
        for start in progress(range(0, len(order), batch_size), quiet=quiet, desc=f"classifier epoch {epoch + 1}/{epochs}"):
            idx = order[start : start + batch_size]
            x = random_warp(x_train[idx], warp_rng).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y_train[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model_cpu = model.cpu()
        acc = accuracy(model_cpu, test.images, test.labels)
        model.to(dev)
        history.append({"epoch": epoch + 1, "train_loss": total / len(order), "test_accuracy": acc,
                        "seconds": time.perf_counter() - t0})
        log(f"classifier epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f}  test accuracy {acc:.4f}")
    model = model.cpu().eval()
    # not checkpoint.pt: it is no autoencoder run
    save_torch(out_dir / "classifier.pt", {"model": model.state_dict(), "epochs": epochs, "seed": seed})
    graph = GraphConfig(model, f".{ONNX_NAME}.tmp", "image", "logits")
    try:
        validate_graph(export_graph(graph, out_dir, test.images), "image", graph.reference, test.images, 1e-3,
                       what="classifier logits")
        (out_dir / graph.file).replace(out_dir / ONNX_NAME)
    finally:
        (out_dir / graph.file).unlink(missing_ok=True)
    metrics = {"test_accuracy": history[-1]["test_accuracy"], "epochs": epochs, "train_images": len(train), "seed": seed, "batch_size": batch_size,
               "lr": lr, "precision": prec, "history": history}
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def random_warp(x: torch.Tensor, rng: torch.Generator, degrees: float = 12.0, scale: float = 0.1,
                shift_px: float = 2.5) -> torch.Tensor:
    """One random rotation, scale and shift per image (bilinear), the variation seen between writers."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=rng) * 2 - 1
    angle = u[:, 0] * math.radians(degrees)
    s = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    shift = u[:, 2:] * (2 * shift_px / x.shape[-1])
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

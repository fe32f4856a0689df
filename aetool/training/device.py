"""Torch device and precision choice, kept apart so train and bench agree."""

from __future__ import annotations

import torch

from ..errors import AetoolError


def torch_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AetoolError("--device cuda: PyTorch sees no CUDA GPU here (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise AetoolError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """bfloat16 autocast only pays off where the CPU has native BF16 dot products."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device, graphed: bool = False) -> str:
    """``auto`` picks what measured faster on that device and path.

    On a GPU: bf16 autocast (with channels_last) for a step replayed as a CUDA graph, exact fp32 for
    eager steps, whose time goes into launching kernels, which bf16's casts only add to (as measured on
    an H200; ``benchmarks/gpu_train.py`` checks the pick on the GPU it runs on).  On a CPU: bf16 where
    it has native BF16 dot products.
    """
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if graphed and torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise AetoolError(f"unknown precision {precision!r} (use auto, fp32 or bf16)")
    return precision

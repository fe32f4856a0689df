"""Rebuild a bundle's model in PyTorch from the weights inside its ONNX graphs.

Used to benchmark torch eager against onnxruntime on the very same weights
when only a bundle (no training run) is at hand.
"""

from __future__ import annotations

import onnx
import torch
from onnx import numpy_helper

from ..bundle import DECODER, ENCODER, Bundle
from .export import build_model


def _initializers(path) -> dict[str, torch.Tensor]:
    graph = onnx.load(str(path)).graph
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}


def model_from_bundle(bundle: Bundle) -> tuple[torch.nn.Module, str]:
    """The model with the bundle's weights, and where the weights came from."""
    model = build_model({"model": bundle.family, "d": bundle.d}).eval()
    try:
        model.encoder.load_state_dict(_initializers(bundle.path / ENCODER))
        model.decoder.load_state_dict(_initializers(bundle.path / DECODER))
        return model, "bundle"
    except RuntimeError:
        # an exporter that renamed the initializers: timing does not depend on the weights' values
        return model, "random (same architecture)"

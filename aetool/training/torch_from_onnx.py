"""Rebuild a bundle's model in PyTorch from the weights inside its ONNX graphs.

Used to benchmark torch eager against onnxruntime on the very same weights
when only a bundle (no training run) is at hand.
"""

from __future__ import annotations

import onnx
import torch
from onnx import numpy_helper

from ..bundle import Bundle
from ..bundle_format import DECODER, ENCODER
from ..lecture import NB_CHANNELS
from .conv_form import lecture_state
from .model import build_model


def _graph(path) -> onnx.GraphProto:
    return onnx.load(str(path)).graph


def _weights(graph: onnx.GraphProto) -> dict[str, torch.Tensor]:
    """The graph's weights by name."""
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}


def _depth_to_space_mode(graph: onnx.GraphProto) -> str:
    """DCR where the graph's sub-pixel layer was exported in that order (conv_form.depth_to_space_dcr)."""
    modes = {a.s.decode() for n in graph.node if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode"}
    return "DCR" if "DCR" in modes else "CRD"


def model_from_bundle(bundle: Bundle) -> tuple[torch.nn.Module, str]:
    """The model with the bundle's weights, and where the weights came from."""
    encoder_weights = _weights(_graph(bundle.path / ENCODER))
    first = encoder_weights.get("0.weight")  # the CNN's first convolution: (nb_channels, 1, 5, 5)
    width = int(first.shape[0]) if first is not None and first.dim() == 4 else NB_CHANNELS
    model = build_model({"model": bundle.family, "d": bundle.d, "nb_channels": width}).eval()
    try:
        model.encoder.load_state_dict(encoder_weights)
        decoder = _graph(bundle.path / DECODER)
        weights = _weights(decoder)
        if bundle.family == "cnn" and any(n.op_type == "Conv" for n in decoder.node):  # conv form: flip kernels back
            weights = lecture_state(model.decoder, weights, _depth_to_space_mode(decoder))
        model.decoder.load_state_dict(weights)
        return model, "bundle"
    except RuntimeError:
        # an exporter that renamed the initializers: timing does not depend on the weights' values
        return model, "random (same architecture)"

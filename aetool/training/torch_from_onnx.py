"""Rebuild a bundle's model in PyTorch from the weights inside its ONNX graphs.

Used to benchmark torch eager against onnxruntime on the very same weights
when only a bundle (no training run) is at hand.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..bundle import Bundle
from ..bundle_format import DECODER, ENCODER
from ..errors import AetoolError
from ..lecture import NB_CHANNELS
from .families import ArchConfig, get_family


def _graph(path) -> onnx.GraphProto:
    return onnx.load(str(path)).graph


def _weights(graph: onnx.GraphProto) -> dict[str, torch.Tensor]:
    """The graph's weights by name."""
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}


def bundle_arch(bundle: Bundle) -> ArchConfig:
    """The architecture a bundle records; bundles from before it was recorded are the lecture's
    network, whose width the first convolution's weight tells."""
    record = bundle.meta.training_record
    if record.arch is not None:
        arch = ArchConfig.from_dict(record.arch, f"bundle {bundle.path}: training.arch")
        # checked against the graphs before a model is built from it: latent.json's records are not hashed
        graphs = (bundle.family, bundle.d, tuple(bundle.image_shape))
        if (get_family(arch.family).name, arch.d, arch.image_shape) != graphs:
            raise AetoolError(f"bundle {bundle.path}: training.arch ({arch.words()}) is not the model its graphs hold "
                              f"({graphs[0]} d={graphs[1]} {'x'.join(map(str, graphs[2]))})")
        return arch
    config = dict(record.config)
    if bundle.family == "cnn":
        first = _weights(_graph(bundle.path / ENCODER)).get("0.weight")  # (width, channels, 5, 5)
        config["width"] = int(first.shape[0]) if first is not None and first.dim() == 4 else NB_CHANNELS
    config.setdefault("model", bundle.family)
    config.update(d=bundle.d, channels=bundle.meta.image.channels, image_size=bundle.meta.image.height)
    return ArchConfig.from_stored({"config": config}, f"bundle {bundle.path}")


def model_from_bundle(bundle: Bundle) -> tuple[torch.nn.Module, str]:
    """The model with the bundle's weights, and where the weights came from."""
    arch = bundle_arch(bundle)
    family = get_family(arch.family)
    model = family.build(arch).eval()
    try:
        family.modules_from_onnx(model, _weights(_graph(bundle.path / ENCODER)), _graph(bundle.path / DECODER))
        return model, "bundle"
    except RuntimeError:
        # an exporter that renamed the initializers, or a form that does not map back (BatchNorm
        # folded): timing does not depend on the weights' values
        return model, "random (same architecture)"


def torch_ops(bundle: Bundle, x: np.ndarray) -> tuple[dict[str, Callable[[], object]], str]:
    """The bundle's model in torch eager, weights copied from the ONNX graphs."""
    model, weights = model_from_bundle(bundle)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        zt = model.encoder(xt)

    def wrap(f):
        def call():
            with torch.inference_mode():
                return f()
        return call

    return {
        "encode": wrap(lambda: model.encoder(xt)),
        "decode": wrap(lambda: model.decoder(zt)),
        "roundtrip": wrap(lambda: model.decoder(model.encoder(xt))),
    }, weights

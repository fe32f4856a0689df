"""The decoder's export form (conv_form): the same function as the lecture's decoder, in PyTorch and in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from aetool.training.conv_form import conv_form, depth_to_space_dcr, lecture_state
from aetool.training.export import TOLERANCE, GraphConfig, export_graph, validate_graph
from aetool.training.model import AutoEncoder

SHAPES = [(size, channels) for size in (28, 32, 64, 128, 256) for channels in (1, 3)]


def random_decoder(d: int, width: int, channels: int, size: int, seed: int) -> torch.nn.Sequential:
    """A decoder with random weights and non-zero biases (fresh biases are small enough to hide a bias bug)."""
    torch.manual_seed(seed)
    decoder = AutoEncoder(d, width, channels, size).decoder.eval()
    with torch.no_grad():
        for layer in decoder:
            if isinstance(layer, torch.nn.ConvTranspose2d):
                layer.bias.normal_(0, 0.1)
    return decoder


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("size, channels", SHAPES)
def test_sub_pixel_form_is_the_same_function_at_every_image_shape(size, channels):
    decoder = random_decoder(6, 8, channels, size, seed=size + channels)
    rewritten = conv_form(decoder)
    kinds = [type(m).__name__ for m in rewritten]
    assert kinds.count("SubPixelConvTranspose") == 1
    # the sub-pixel layer is the last stride-2 one: only the picture's own layer comes after it
    assert [k for k in kinds[kinds.index("SubPixelConvTranspose") + 1 :] if k not in ("ReLU", "Identity", "Conv2d")] \
        == ["ConvTranspose2d"]
    z = torch.randn(4, 6, 1, 1)
    with torch.no_grad():
        out, ref = rewritten(z), decoder(z)
    assert out.shape == ref.shape == (4, channels, size, size)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (256, 1)])
def test_weights_map_back_exactly(size, channels):
    decoder = random_decoder(4, 8, channels, size, seed=1)
    back = AutoEncoder(4, 8, channels, size).decoder
    back.load_state_dict(lecture_state(back, conv_form(decoder).state_dict()))
    for key, value in decoder.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


@pytest.mark.parametrize("size, channels", [(28, 1), (28, 3), (32, 1), (64, 3)])
def test_exported_graph_matches_pytorch_and_maps_back(tmp_path, size, channels):
    """What the export writes: Conv -> Relu -> DepthToSpace in DCR order, within the export's tolerance."""
    from aetool.training.conv_form import depth_to_space_mode
    from aetool.training.torch_from_onnx import _graph, _weights

    decoder = random_decoder(5, 8, channels, size, seed=size)
    graph = GraphConfig(conv_form(decoder), "decoder.onnx", "latent", "image", checked_against=decoder,
                        rewrite=depth_to_space_dcr)
    z = np.random.default_rng(0).normal(size=(256, 5, 1, 1)).astype(np.float32)
    path = export_graph(graph, tmp_path, z)
    assert validate_graph(path, "latent", graph.reference, z, TOLERANCE) <= TOLERANCE
    ops = _ops(path)
    assert "DepthToSpace" in ops and depth_to_space_mode(_graph(path)) == "DCR"
    assert ops[ops.index("DepthToSpace") - 2 : ops.index("DepthToSpace")] == ["Conv", "Relu"]  # Conv+ReLU fuse
    weights = {k: v for k, v in _weights(_graph(path)).items() if k.endswith((".weight", ".bias"))}  # not the crop's constants
    back = AutoEncoder(5, 8, channels, size).decoder
    back.load_state_dict(lecture_state(back, weights, "DCR"))
    for key, value in decoder.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_dcr_rewrite_leaves_other_graphs_alone(tmp_path):
    decoder = random_decoder(3, 4, 1, 28, seed=0)
    path = export_graph(GraphConfig(decoder, "plain.onnx", "latent", "image"), tmp_path, np.zeros((2, 3, 1, 1), np.float32))
    before = path.read_bytes()
    assert depth_to_space_dcr(path) == 0 and path.read_bytes() == before


@pytest.mark.parametrize("name", ["cnn-d16", "cnn-d16-int8", "cnn-d2", "cnn-d4", "cnn-d8", "cnn-d32"])
def test_shipped_decoders_use_the_sub_pixel_form(name):
    from aetool.bundle import resolve_bundle_path

    path = resolve_bundle_path(name) / "decoder.onnx"
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("ConvTranspose") == 3 and ops.count("DepthToSpace") == 1
    assert [a.s for n in model.graph.node if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode"] == [b"DCR"]
    if name.endswith("int8"):  # both Convs are quantized: their weights come through a DequantizeLinear
        producer = {o: n for n in model.graph.node for o in n.output}
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        assert all(producer[c.input[1]].op_type == "DequantizeLinear" for c in convs)


class _Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # export_graph names the batch axis of ``input``
        return input * self.factor


@pytest.mark.parametrize("factor, off_ok, off_bad", [(0.5, 5e-5, 2e-4), (1000.0, 0.05, 0.5)])
def test_the_export_check_is_absolute_for_pictures_and_relative_for_large_outputs(tmp_path, factor, off_ok, off_bad):
    """A latent that sums thousands of pixels is in the tens: float32 in another order differs past 1e-4 there."""
    from aetool.errors import AetoolError

    x = np.random.default_rng(0).uniform(0.5, 1, size=(8, 3, 4, 4)).astype(np.float32)
    path = export_graph(GraphConfig(_Scale(factor), "scale.onnx", "image", "out"), tmp_path, x)
    assert validate_graph(path, "image", lambda v: v * factor + off_ok, x, 1e-4, batches=(1, 8)) <= 1.01 * off_ok
    with pytest.raises(AetoolError, match=r"scale differs from its reference by .* > .* at batch 1"):
        validate_graph(path, "image", lambda v: v * factor + off_bad, x, 1e-4, batches=(1, 8))

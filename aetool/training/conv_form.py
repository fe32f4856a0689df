"""The decoder's transposed convolutions rewritten as plain convolutions, for export.

onnxruntime's CPU provider runs ``Conv`` in its blocked NCHWc layout on all
threads and has int8 kernels for it (QLinearConv), while ``ConvTranspose``
runs as a per-image GEMM plus a single-threaded col2im and stays float under
quantization.  The exported decoder therefore rewrites two of its layers into
the same function (the lecture's PyTorch model is untouched):

- the big stride-1 layer between feature maps: a stride-1 transposed convolution
  with padding p is exactly a convolution with the kernel flipped, in/out
  channels swapped and ``k - 1 - p`` zero padding;
- the last (largest) stride-2 layer, in sub-pixel form: output pixel
  ``s*m + r`` of a stride-s transposed convolution only sees the kernel taps
  ``s*j + r``, so the s*s output phases are one Conv with s*s times the output
  channels and a ceil(k/s) kernel, its ReLU, then DepthToSpace and a crop.
  DepthToSpace is exported in DCR mode (:func:`depth_to_space_dcr`), which
  onnxruntime runs about twice as fast as the CRD order PyTorch's pixel_shuffle
  exports.  With the ReLU ahead of the DepthToSpace the Conv+ReLU fuse, and in
  int8 the layer quantizes to a QLinearConv with the DepthToSpace on uint8.

Measured side by side on the d=16 MNIST decoder at batch 1024 (onnxruntime 1.31,
2 shared CPU cores; ratios of interleaved runs, not absolute speeds): the int8
decoder runs about 1.2-1.5x faster than with the stride-2 layer as a
ConvTranspose (the float ConvTranspose between quantized layers was most of its
time), fp32 is unchanged within noise, and batch-1 latency is unchanged in fp32
and about 1.25x better in int8.  Why it is not more on two cores: the decoder's
time is dominated by the big stride-1 layer, which as a Conv must compute a
"full" convolution (its output is larger than its input, so a border of zero
padding) and costs about 1.2x the encoder's matching layer whatever its form;
DepthToSpace is a single-threaded copy.  On more cores the rewritten layer's
Conv scales while the ConvTranspose's col2im did not (not measured here).

Where it does not pay, a layer stays a ConvTranspose:
- the first layer: its input is 1x1, so it is one small matrix product either way
  (a Gemm form measured no faster);
- the last layer, which writes the picture's 1 or 3 channels: NCHWc pads output
  channels to blocks of 16, which made the one-channel layer 10x slower as a
  Conv, and its polyphase form (a stride-4 Conv into 16 phase channels, then
  DepthToSpace) computes 3.5x the multiply-adds and measured slower in fp32 and int8;
- the smaller stride-2 layers: sub-pixel form adds a DepthToSpace and a crop for a
  small tensor, which cost more than they save (batch-1 latency rose 4 %).

The big stride-1 layer in its own arithmetic, with no zero border (a 1x1 Conv to C*k*k
columns, then ONNX's Col2Im), measured 1.5x slower than its Conv form: its columns are
k*k = 25 times the layer's output, written and read back.

``lecture_state`` maps the weights back, so both directions are exact.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# the lecture decoder's form in its bundle, in words (latent.json graphs.decoder.form)
DECODER_FORM = ("stride-1 ConvTranspose layers between feature maps exported as the equivalent Conv, the last stride-2 one "
                "as Conv + DepthToSpace (sub-pixel form; aetool.training.conv_form)")


def _flip(w: torch.Tensor) -> torch.Tensor:
    """ConvTranspose weight (in, out, kh, kw) <-> Conv weight (out, in, kh, kw) of the same map (an involution)."""
    return w.flip(2, 3).transpose(0, 1).contiguous()


def _as_conv(layer: nn.ConvTranspose2d) -> nn.Conv2d:
    (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, (kh, kw), padding=(kh - 1 - ph, kw - 1 - pw),
                     bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(_flip(layer.weight))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


def _subpixel_weight(w: torch.Tensor, s: int) -> torch.Tensor:
    """ConvTranspose weight (in, out, k, k) -> phase Conv weight (out*s*s, in, K, K), K = ceil(k/s), CRD order.

    Phase (rh, rw) at kernel position (uh, uw) holds tap (s*(K-1-uh) + rh, s*(K-1-uw) + rw), zero past k.
    """
    c_in, c_out, k, _ = w.shape
    big = -(-k // s)
    padded = F.pad(w, (0, s * big - k, 0, s * big - k))  # taps s*K-1 .. k are zero
    phases = padded.reshape(c_in, c_out, big, s, big, s).flip(2, 4)  # (in, out, uh, rh, uw, rw)
    return phases.permute(1, 3, 5, 0, 2, 4).reshape(c_out * s * s, c_in, big, big).contiguous()


def _transpose_weight(w: torch.Tensor, s: int, k: int) -> torch.Tensor:
    """The inverse of :func:`_subpixel_weight` (drops the structural zeros)."""
    c_out = w.shape[0] // (s * s)
    c_in, big = w.shape[1], w.shape[2]
    taps = w.reshape(c_out, s, s, c_in, big, big).permute(3, 0, 4, 1, 5, 2).flip(2, 4)
    return taps.reshape(c_in, c_out, s * big, s * big)[:, :, :k, :k].contiguous()


class SubPixelConvTranspose(nn.Module):
    """A stride-s ConvTranspose2d and the ReLU after it, as Conv -> ReLU -> pixel shuffle -> crop."""

    def __init__(self, layer: nn.ConvTranspose2d) -> None:
        super().__init__()
        (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
        big = -(-k // s)
        self.stride, self.start, self.tail = s, p, s * big - k + p  # the crop: p in front, tail behind
        self.conv = nn.Conv2d(layer.in_channels, layer.out_channels * s * s, big, padding=big - 1)
        with torch.no_grad():
            self.conv.weight.copy_(_subpixel_weight(layer.weight, s))
            self.conv.bias.copy_(layer.bias.repeat_interleave(s * s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_shuffle(torch.relu(self.conv(x)), self.stride)
        if self.start or self.tail:
            y = y[:, :, self.start : y.shape[2] - self.tail, self.start : y.shape[3] - self.tail]
        return y


def _convs(decoder: nn.Sequential) -> list[int]:
    return [i for i, layer in enumerate(decoder) if isinstance(layer, nn.ConvTranspose2d)]


def _plain(layer: nn.ConvTranspose2d) -> bool:
    return layer.dilation == (1, 1) and layer.groups == 1 and layer.output_padding == (0, 0) \
        and layer.kernel_size[0] == layer.kernel_size[1] and layer.stride[0] == layer.stride[1] \
        and layer.padding[0] == layer.padding[1] and all(p < k for p, k in zip(layer.padding, layer.kernel_size))


def _rewritable(decoder: nn.Sequential) -> list[int]:
    """Positions of the stride-1 layers between feature maps (exported as Conv)."""
    convs = _convs(decoder)
    return [i for i in convs[1:-1] if decoder[i].stride == (1, 1) and _plain(decoder[i])]


def _subpixel(decoder: nn.Sequential) -> int | None:
    """Position of the last (largest) stride-2 layer between feature maps, followed by its ReLU."""
    convs = _convs(decoder)
    strided = [i for i in convs[1:-1] if decoder[i].stride != (1, 1) and _plain(decoder[i]) and decoder[i].bias is not None
               and isinstance(decoder[i + 1], nn.ReLU)]
    return strided[-1] if strided else None


def conv_form(decoder: nn.Sequential, *, sub_pixel: bool = True) -> nn.Sequential:
    """An eval-mode copy of ``decoder`` computing the same function, in the form exported for onnxruntime.

    Module positions are kept (the sub-pixel layer's ReLU becomes an Identity in
    its place), so state-dict keys match the lecture's Decoder but for the
    sub-pixel layer's ``{i}.conv.*``.  ``sub_pixel=False`` gives the earlier
    form (stride-2 layers as ConvTranspose), which the benchmarks compare against.
    """
    rewrite, sub = set(_rewritable(decoder)), _subpixel(decoder) if sub_pixel else None
    modules: list[nn.Module] = []
    for i, layer in enumerate(decoder):
        if i in rewrite:
            modules.append(_as_conv(layer))
        elif i == sub:
            modules.append(SubPixelConvTranspose(layer))
        elif sub is not None and i == sub + 1:
            modules.append(nn.Identity())  # the ReLU now runs inside the sub-pixel layer
        else:
            modules.append(nn.ReLU() if isinstance(layer, nn.ReLU) else layer)  # no in-place op on a view
    return nn.Sequential(*modules).eval()


def _dcr(t: torch.Tensor, s: int, inverse: bool = False) -> torch.Tensor:
    """Output channels c*s*s + phase (CRD) <-> phase*C + c (DCR)."""
    c = t.shape[0] // (s * s)
    shape = (s * s, c) if inverse else (c, s * s)
    return t.reshape(*shape, *t.shape[1:]).transpose(0, 1).reshape(t.shape).contiguous()


def lecture_state(decoder: nn.Sequential, rewritten_state: dict[str, torch.Tensor],
                  depth_to_space: str = "CRD") -> dict[str, torch.Tensor]:
    """The state dict for ``decoder`` (the lecture's form) from the weights of its :func:`conv_form`.

    ``depth_to_space="DCR"`` for weights read from an exported graph (see
    :func:`depth_to_space_dcr`).  Graphs exported before the sub-pixel form
    (no ``{i}.conv.weight``) map back as well.
    """
    state = dict(rewritten_state)
    for i in _rewritable(decoder):
        state[f"{i}.weight"] = _flip(state[f"{i}.weight"])
    sub = _subpixel(decoder)
    if sub is not None and f"{sub}.conv.weight" in state:
        layer = decoder[sub]
        s, k = layer.stride[0], layer.kernel_size[0]
        weight, bias = state.pop(f"{sub}.conv.weight"), state.pop(f"{sub}.conv.bias")
        if depth_to_space == "DCR":
            weight, bias = _dcr(weight, s, inverse=True), _dcr(bias, s, inverse=True)
        state[f"{sub}.weight"] = _transpose_weight(weight, s, k)
        state[f"{sub}.bias"] = bias.reshape(-1, s * s)[:, 0].contiguous()
    return state


def depth_to_space_dcr(path: str | Path) -> int:
    """Rewrite an exported graph's DepthToSpace nodes fed by a Conv (or Conv -> Relu) from CRD to DCR order.

    The Conv's output channels are permuted to match, so the function is the
    same; onnxruntime's CPU kernel for DCR is the faster one.  Returns the number
    of nodes rewritten.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    weights = {t.name: t for t in graph.initializer}
    done = 0
    for node in graph.node:
        mode = next((a for a in node.attribute if a.name == "mode"), None)
        if node.op_type != "DepthToSpace" or mode is None or mode.s != b"CRD":
            continue
        s = next(a.i for a in node.attribute if a.name == "blocksize")
        chain, source = [], producer.get(node.input[0])
        while source is not None and source.op_type == "Relu":
            chain.append(source)
            source = producer.get(source.input[0])
        feeds = [n.output[0] for n in (source, *chain) if n is not None]
        if source is None or source.op_type != "Conv" or any(consumers.get(f, 0) != 1 for f in feeds) \
                or not all(name in weights for name in source.input[1:]):
            continue
        for name in source.input[1:]:
            permuted = _dcr(torch.from_numpy(numpy_helper.to_array(weights[name]).copy()), s).numpy()
            weights[name].CopyFrom(numpy_helper.from_array(permuted, name))
        mode.s = b"DCR"
        done += 1
    if done:
        onnx.save(model, str(path))
    return done


def depth_to_space_mode(graph) -> str:
    """DCR where an ONNX graph's sub-pixel layer was exported in that order (depth_to_space_dcr), else CRD."""
    modes = {a.s.decode() for n in graph.node if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode"}
    return "DCR" if "DCR" in modes else "CRD"

"""The decoder's big transposed convolution written as a plain convolution, for export.

onnxruntime's CPU provider runs ``Conv`` in its blocked NCHWc layout on all
threads and has int8 kernels for it (QLinearConv), while ``ConvTranspose``
runs as a GEMM plus a single-threaded col2im and stays float under
quantization.  A stride-1 transposed convolution with padding p is exactly a
convolution with the kernel flipped, in/out channels swapped and ``k - 1 - p``
zero padding, so the exported decoder uses that form where it pays.

Where it does not pay, the layer stays a ConvTranspose (measured on the d=16
decoder with onnxruntime 1.2x on 2 CPU cores):
- the first layer: its input is 1x1, so it is one small matrix product either way;
- the last layer, which writes the picture's 1 or 3 channels: NCHWc pads output
  channels to blocks of 16, which made the one-channel layer 10x slower as a Conv;
- the stride-2 layers: their sub-pixel form (one Conv with 4x the channels,
  then DepthToSpace) was slower in fp32 and in int8 than the ConvTranspose.

Side by side on the d=16 decoder at batch 1024 (2 cores): fp32 within a few
per cent of the ConvTranspose graph, int8 1.6-1.9x faster than the int8 graph
that keeps the ConvTranspose, because the layer can now be quantized; in the
benchmark suite the int8 round trip went from 1.10x to 1.64x the fp32 one.
``lecture_state`` maps the weights back, so both directions are exact.
"""

from __future__ import annotations

import torch
from torch import nn


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


def _rewritable(decoder: nn.Sequential) -> list[int]:
    """Positions of the layers worth rewriting (see the module docstring)."""
    convs = [i for i, layer in enumerate(decoder) if isinstance(layer, nn.ConvTranspose2d)]
    return [i for i in convs[1:-1] if decoder[i].stride == (1, 1) and decoder[i].dilation == (1, 1)
            and decoder[i].groups == 1 and all(p < k for p, k in zip(decoder[i].padding, decoder[i].kernel_size))]


def conv_form(decoder: nn.Sequential) -> nn.Sequential:
    """An eval-mode copy of ``decoder`` computing the same function, big stride-1 layers as Conv2d.

    Module positions are kept, so state-dict keys match the lecture's Decoder.
    """
    rewrite = set(_rewritable(decoder))
    return nn.Sequential(*(_as_conv(layer) if i in rewrite else layer for i, layer in enumerate(decoder))).eval()


def lecture_state(decoder: nn.Sequential, rewritten_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict for ``decoder`` (the lecture's form) from the weights of its :func:`conv_form`."""
    state = dict(rewritten_state)
    for i in _rewritable(decoder):
        state[f"{i}.weight"] = _flip(state[f"{i}.weight"])
    return state

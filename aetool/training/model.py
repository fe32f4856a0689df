"""The models, whole in one file: the lecture's convolutional autoencoder, its other image shapes, and PCA.

The CNN is layer for layer the lecture's code (EE-559, "Autoencoders") at 1x28x28:
the image is squeezed through four convolutions to a d x 1 x 1 latent and decoded
by the mirror stack of transposed convolutions.  Other shapes (a user's folder of
gray or colour images at 32, 64, 128 or 256 pixels) get the same design, with
the layers derived from the size: a 3x3 convolution, stride-2 convolutions halving
the picture down to 4x4, a 4x4 convolution to the 1x1 latent, and the mirror back.
The decoder has no final activation, as in the lecture, so outputs can leave
[0, 1] slightly; the runtime clips for display.

PCA, the optimum of the linear autoencoder, is wrapped with the same shapes,
(N, C, H, W) <-> (N, d, 1, 1), so export, bundles and every runtime command
treat both families alike (training.pca fits it in closed form).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..lecture import IMAGE_SHAPE, IMAGE_SIZES, NB_CHANNELS

# (kernel, stride, padding) of the lecture's five convolutions, from the image down to the 1x1 latent;
# the decoder runs the same list backwards with transposed convolutions
LECTURE_LAYERS = ((5, 1, 0), (5, 1, 0), (4, 2, 0), (3, 2, 0), (4, 1, 0))


def layer_plan(size: int) -> tuple[tuple[int, int, int], ...]:
    """The (kernel, stride, padding) of each convolution for square images of ``size`` pixels."""
    if size == IMAGE_SHAPE[-1]:
        return LECTURE_LAYERS
    if size not in IMAGE_SIZES:
        raise UsageError(f"--image-size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {size}")
    plan, side = [(3, 1, 1)], size
    while side > 4:
        plan.append((4, 2, 1))  # halves the side exactly; its transpose doubles it
        side //= 2
    return (*plan, (4, 1, 0))


def _stack(conv: type[nn.Module], channels: list[int], layers: tuple[tuple[int, int, int], ...]) -> list[nn.Module]:
    """conv, ReLU, conv, ..., conv: no activation after the last (the latent, or the pixels)."""
    modules: list[nn.Module] = []
    for i, ((kernel, stride, padding), c_in, c_out) in enumerate(zip(layers, channels[:-1], channels[1:])):
        if i:
            modules.append(nn.ReLU(inplace=True))
        modules.append(conv(c_in, c_out, kernel_size=kernel, stride=stride, padding=padding))
    return modules


class Encoder(nn.Sequential):
    """f: (N, C, S, S) -> (N, d, 1, 1); at 1x28x28 the lecture's layers."""

    def __init__(self, embedding_dim: int, nb_channels: int = NB_CHANNELS, channels: int = 1, size: int = 28) -> None:
        plan = layer_plan(size)
        widths = [channels] + [nb_channels] * (len(plan) - 1) + [embedding_dim]
        super().__init__(*_stack(nn.Conv2d, widths, plan))


class Decoder(nn.Sequential):
    """g: (N, d, 1, 1) -> (N, C, S, S), the mirror of :class:`Encoder`."""

    def __init__(self, embedding_dim: int, nb_channels: int = NB_CHANNELS, channels: int = 1, size: int = 28) -> None:
        plan = layer_plan(size)
        widths = [embedding_dim] + [nb_channels] * (len(plan) - 1) + [channels]
        super().__init__(*_stack(nn.ConvTranspose2d, widths, plan[::-1]))


class AutoEncoder(nn.Module):
    """Encoder and decoder kept as separate modules so each exports to its own ONNX graph."""

    def __init__(self, embedding_dim: int, nb_channels: int = NB_CHANNELS, channels: int = 1, size: int = 28) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ValueError("embedding_dim must be at least 1")
        self.embedding_dim = embedding_dim
        self.nb_channels = nb_channels
        self.image_shape = (channels, size, size)
        self.encoder = Encoder(embedding_dim, nb_channels, channels, size)
        self.decoder = Decoder(embedding_dim, nb_channels, channels, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class PCAEncoder(nn.Module):
    """z = (x - mean) W, reshaped to (N, d, 1, 1)."""

    def __init__(self, d: int, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
        super().__init__()
        self.pixels = math.prod(image_shape)
        self.linear = nn.Linear(self.pixels, d)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        z = self.linear(input.reshape(input.shape[0], self.pixels))
        return z.reshape(z.shape[0], z.shape[1], 1, 1)


class PCADecoder(nn.Module):
    """x = z W^T + mean, reshaped to (N, C, H, W)."""

    def __init__(self, d: int, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.linear = nn.Linear(d, math.prod(image_shape))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = self.linear(input.reshape(input.shape[0], -1))
        return x.reshape(x.shape[0], *self.image_shape)


class PCAAutoEncoder(nn.Module):
    def __init__(self, embedding_dim: int, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.image_shape = tuple(image_shape)
        self.encoder = PCAEncoder(embedding_dim, image_shape)
        self.decoder = PCADecoder(embedding_dim, image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def set_basis(self, mean: np.ndarray, components: np.ndarray) -> "PCAAutoEncoder":
        """``components``: (pixels, d) orthonormal columns."""
        set_pca_layers(self.encoder.linear, self.decoder.linear, mean, components)
        return self


@torch.no_grad()
def set_pca_layers(project: nn.Linear, reconstruct: nn.Linear, mean: np.ndarray, components: np.ndarray) -> None:
    """Two Linear layers as PCA's projection z = (x - mean) W and reconstruction x = z W^T + mean
    (``components`` W: (pixels, d) orthonormal columns): PCA's model, and the photo network's linear paths."""
    w = torch.from_numpy(np.ascontiguousarray(components, dtype=np.float32))
    mu = torch.from_numpy(np.ascontiguousarray(mean, dtype=np.float32))
    project.weight.copy_(w.T)
    project.bias.copy_(-(mu @ w))
    reconstruct.weight.copy_(w)
    reconstruct.bias.copy_(mu)


@contextlib.contextmanager
def _plain_layout(module: nn.Module) -> Iterator[None]:
    """Evaluate a channels_last model (bf16 training) in the plain NCHW layout: on CPUs its
    reorders, call after call, held hundreds of MB that the plain layout does not need.  Not on a
    GPU: there the conversion would move the weights a captured training step (CUDA graph) updates."""
    w = next((p for p in module.parameters() if p.dim() == 4), None)
    channels_last = (w is not None and w.device.type == "cpu" and not w.is_contiguous()
                     and w.is_contiguous(memory_format=torch.channels_last))
    if channels_last:
        module.to(memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        if channels_last:
            module.to(memory_format=torch.channels_last)


def eval_batch(images: np.ndarray) -> int:
    """Images per batch when only evaluating: 1,000 MNIST digits, fewer large pictures (about 4 MB of
    input a batch), so the activations of a batch stay well under the size of a large data set."""
    return max(8, min(1000, (1 << 20) // max(1, int(np.prod(images.shape[1:])))))


def batch_on(images: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """A batch as float32 on ``device``: uint8 pixels travel as bytes (a quarter of the floats) and
    are divided by 255 where they land, the same float32 division ``as_float`` makes."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def forward_all(module: nn.Module, images: np.ndarray, device: torch.device | str = "cpu", batch: int | None = None) -> np.ndarray:
    """``module`` (an encoder, or a whole autoencoder) over ``images`` in batches, as float32 numpy.

    Batched so that 60,000 images never sit in one activation tensor.
    """
    batch = batch or eval_batch(images)
    module.eval()
    with _plain_layout(module):
        out = [module(batch_on(images[i : i + batch], device)).float().cpu().numpy()
               for i in range(0, len(images), batch)]
    return np.concatenate(out)


@torch.no_grad()
def sse_per_image(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu", batch: int | None = None) -> np.ndarray:
    """Sum of squared errors of each image's reconstruction, in exact fp32."""
    batch = batch or eval_batch(images)
    model.eval()
    out = []
    with _plain_layout(model):
        for i in range(0, len(images), batch):
            x = batch_on(images[i : i + batch], device)
            out.append((model(x) - x).pow(2).flatten(1).sum(1).cpu().numpy())
    return np.concatenate(out)


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The lecture's loss: 0.5 * sum of squared errors, averaged over the batch (an empty share of a
    ragged last batch under torchrun gives 0)."""
    return 0.5 * (x_hat.float() - x.float()).pow(2).sum() / max(x.shape[0], 1)


def describe_layers(model: nn.Module) -> dict[str, list[str]]:
    """The weighted layers of both halves in words, in order, for the run's record and the bundle's."""
    def words(layer: nn.Module) -> str:
        if isinstance(layer, nn.Linear):
            return f"Linear({layer.in_features}->{layer.out_features})"
        (k, _), (st, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
        return f"{type(layer).__name__}({layer.in_channels}->{layer.out_channels}, k{k}, s{st}, p{p})"

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    return {part: [words(m) for m in getattr(model, part).modules() if isinstance(m, kinds)]
            for part in ("encoder", "decoder")}


@torch.no_grad()
def _hooked_forward(module: nn.Module, example: torch.Tensor, hook: Callable, layers: Callable[[nn.Module], bool]) -> None:
    """One eval-mode forward pass of ``example``'s first image with ``hook`` on the ``layers`` it
    picks; the module's mode and hooks are as they were afterwards, whatever happens."""
    handles = [m.register_forward_hook(hook) for m in module.modules() if layers(m)]
    training = module.training
    try:
        module.eval()(example[:1].float())
    finally:
        module.train(training)
        for h in handles:
            h.remove()


def count_macs(module: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of one image through ``module`` (convolutions and Linear layers; the rest is
    a rounding error), counted on a forward pass of ``example``'s first image."""
    total = 0

    def hook(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features
        elif isinstance(layer, nn.Conv2d):
            total += output[0].numel() * layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        elif isinstance(layer, nn.ConvTranspose2d):
            total += inputs[0][0].numel() * layer.out_channels // layer.groups * math.prod(layer.kernel_size)

    _hooked_forward(module, example, hook, lambda m: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)))
    return total


def activation_bytes(module: nn.Module, example: torch.Tensor) -> int:
    """Bytes of every leaf layer's output for one image, at float32: about what autograd keeps of
    each image for the backward pass, so a step's memory grows with it times the batch."""
    total = 0

    def hook(layer: nn.Module, inputs: tuple, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output[:1].numel() * 4

    _hooked_forward(module, example, hook, lambda m: not any(m.children()))
    return total


def count_parameters(module: nn.Module) -> int:
    """Every parameter, BatchNorm's included (export folds those into the layer before them)."""
    return sum(p.numel() for p in module.parameters())

"""Start an autoencoder from a trained one: a smaller latent, wider layers, dead units revived.

At d=2 the start decides how the ten digits share the plane, and training
from random weights lands in a different arrangement for every seed.  A run
with a larger latent has already learned good convolutional features; its
latents, projected on their top-d principal directions, are the best linear
d-dimensional summary of what it encodes.  So the small model copies every
layer, and its two latent layers absorb the projection: the encoder's last
convolution followed by Pᵀ, the decoder's first transposed convolution
preceded by P, so the small model starts as exactly the big one with its
latent squeezed through the d-dimensional subspace.  Training then continues from there
with the lecture's loss, unchanged architecture and all.

Widening (a larger ``nb_channels``, the lecture's width knob) is exact too: the
new channels get fresh random weights into them and zero weights out of them,
so the wide model starts as exactly the narrow one, and the first gradient
step on those zero weights brings the new channels into play.  A wider model
trained from a good narrow one skips the epochs a random start would spend
re-learning what the narrow one already knows.

Reviving uses the same move on the channels a run has lost: a ReLU channel
that is zero on every training image is capacity the run pays for and never
uses (the lecture's loop at lr 1e-3 leaves 15 of the 32 channels after the
encoder's second convolution dead).  Fresh weights into it and zero weights
out of it bring it back without changing what the model computes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import UsageError
from ..datasets import as_float
from .model import AutoEncoder, forward_all

if TYPE_CHECKING:  # the registry (families.py) calls start_from_run: this module imports nothing that imports it
    from .run import RunFolder


def principal_directions(latents: np.ndarray, d: int) -> np.ndarray:
    """The top-``d`` right singular vectors (D, d) of (N, D) latents, not centred.

    Not centring keeps the projection exact in the network: the decoder's first
    layer has only a per-channel bias, which cannot hold the spatial pattern
    that the latent mean would otherwise leave behind.
    """
    latents = latents.reshape(len(latents), -1).astype(np.float64)
    _, _, vt = np.linalg.svd(latents, full_matrices=False)
    return vt[:d].T


@torch.no_grad()
def shrink_latent(big: AutoEncoder, d: int, latents: np.ndarray) -> AutoEncoder:
    """A d-latent AutoEncoder computing ``big.decoder(P Pᵀ big.encoder(x))`` exactly.

    ``latents`` are ``big``'s encodings of the training images; P holds their
    top-d principal directions.
    """
    if not 1 <= d < big.embedding_dim:
        raise ValueError(f"shrink_latent needs 1 <= d < {big.embedding_dim}, got {d}")
    channels, size, _ = big.image_shape
    small = AutoEncoder(d, big.nb_channels, channels, size)
    last = len(big.encoder) - 1
    small.load_state_dict({k: v for k, v in big.state_dict().items() if not k.startswith((f"encoder.{last}.", "decoder.0."))},
                          strict=False)
    p = torch.from_numpy(principal_directions(latents, d)).float()  # (D, d)
    enc, small_enc = big.encoder[last], small.encoder[last]  # Conv2d(c -> D, k4): z = W*h + b
    small_enc.weight.copy_(torch.einsum("Dk,Dchw->kchw", p, enc.weight))
    small_enc.bias.copy_(p.T @ enc.bias)
    dec, small_dec = big.decoder[0], small.decoder[0]  # ConvTranspose2d(D -> c, k4): y = sum_D z_D V_D + bias
    small_dec.weight.copy_(torch.einsum("Dk,Dchw->kchw", p, dec.weight))
    small_dec.bias.copy_(dec.bias)
    return small


def _conv_out_dim(layer: torch.nn.Module) -> int:
    """The output-channel axis of a weight: Conv2d (out, in, kh, kw), ConvTranspose2d (in, out, kh, kw)."""
    return 1 if isinstance(layer, torch.nn.ConvTranspose2d) else 0


@torch.no_grad()
def widen_channels(narrow: AutoEncoder, nb_channels: int, seed: int = 0) -> AutoEncoder:
    """An AutoEncoder with ``nb_channels`` hidden channels computing exactly what ``narrow`` does.

    Each layer keeps the narrow weights in its leading block; the weights that
    read the new channels are zero, the ones that write them are the layer's
    usual random initialisation (seeded), so the new channels carry signal
    that nothing downstream reads yet.
    """
    if nb_channels < narrow.nb_channels:
        raise ValueError(f"widen_channels needs nb_channels >= {narrow.nb_channels}, got {nb_channels}")
    torch.manual_seed(seed)
    channels, size, _ = narrow.image_shape
    wide = AutoEncoder(narrow.embedding_dim, nb_channels, channels, size)
    c = narrow.nb_channels
    for old, new in zip(list(narrow.encoder) + list(narrow.decoder), list(wide.encoder) + list(wide.decoder)):
        if not isinstance(old, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            continue
        in_dim = 1 - _conv_out_dim(old)
        reads_hidden = old.weight.shape[in_dim] == c and new.weight.shape[in_dim] == nb_channels
        if reads_hidden:
            new.weight.narrow(in_dim, c, nb_channels - c).zero_()
        new.weight[tuple(slice(0, n) for n in old.weight.shape)] = old.weight
        new.bias[: old.bias.shape[0]] = old.bias
    return wide


@torch.no_grad()
def dead_channels(model: AutoEncoder, images: np.ndarray, batch: int = 1000) -> dict[tuple[str, int], torch.Tensor]:
    """For each hidden convolution (module name, position), a mask of its channels that no image turns on."""
    model.eval()
    peaks: dict[tuple[str, int], torch.Tensor] = {}
    hooks = []
    for name in ("encoder", "decoder"):
        stack = getattr(model, name)
        for i, layer in enumerate(stack):
            if isinstance(layer, torch.nn.ReLU):
                def record(_module, _inputs, out, key=(name, i - 1)):
                    peak = out.amax(dim=(0, 2, 3))
                    peaks[key] = peak if key not in peaks else torch.maximum(peaks[key], peak)
                hooks.append(layer.register_forward_hook(record))
    try:
        for start in range(0, len(images), batch):
            model(torch.from_numpy(as_float(images[start : start + batch])))
    finally:
        for h in hooks:
            h.remove()
    return {key: peak <= 0 for key, peak in peaks.items()}


@torch.no_grad()
def revive_dead_channels(model: AutoEncoder, images: np.ndarray, seed: int = 0) -> int:
    """Give every dead hidden channel fresh incoming weights and zero outgoing ones, in place.

    The model's output on ``images`` does not change (a dead channel contributed
    nothing); training then grows the outgoing weights from zero.  Returns how
    many channels were revived.
    """
    torch.manual_seed(seed)
    revived = 0
    for (name, i), dead in dead_channels(model, images).items():
        if not dead.any():
            continue
        stack = getattr(model, name)
        layer, reader = stack[i], stack[i + 2]
        fresh = type(layer)(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                            padding=layer.padding)
        out_dim = _conv_out_dim(layer)
        idx = dead.nonzero().flatten()
        layer.weight.index_copy_(out_dim, idx, fresh.weight.index_select(out_dim, idx))
        layer.bias[idx] = fresh.bias[idx].abs()  # a positive bias: on from the first step
        reader.weight.index_fill_(1 - _conv_out_dim(reader), idx, 0.0)  # the reader's input-channel axis
        revived += int(dead.sum())
    return revived


def start_from_run(run: RunFolder, d: int, nb_channels: int, images: np.ndarray,
                   revive: bool = False, model_shape: tuple[int, int, int] = (1, 28, 28)) -> tuple[AutoEncoder, int]:
    """A trained CNN run as the start of a new one, computing what the run computes (its latent
    squeezed to ``d`` where smaller): latent shrunk (:func:`shrink_latent`, latents taken on
    ``images``, the training set), layers widened to ``nb_channels``, dead channels revived if
    asked. Returns the model and how many channels were revived."""
    big, _ = run.load_model()
    if not isinstance(big, AutoEncoder):
        raise UsageError(f"--init-from: {run} is not a CNN run")
    if big.embedding_dim < d:
        raise UsageError(f"--init-from: {run} has d={big.embedding_dim}; starting d={d} needs a run with a larger latent")
    if big.image_shape != model_shape:
        raise UsageError(f"--init-from: {run} takes images of shape {big.image_shape}, this run {model_shape}")
    if big.nb_channels > nb_channels:
        raise UsageError(f"--init-from: {run} has {big.nb_channels} channels; starting {nb_channels} needs a run "
                          f"at most as wide")
    model = big if big.embedding_dim == d else shrink_latent(big, d, forward_all(big.encoder, images, torch.device("cpu")))
    model = model if big.nb_channels == nb_channels else widen_channels(model, nb_channels)
    return model, revive_dead_channels(model, images) if revive else 0

"""Start a small-latent autoencoder from a trained one with a larger latent.

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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import AetoolError
from .model import AutoEncoder


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
    small = AutoEncoder(d, big.nb_channels)
    small.load_state_dict({k: v for k, v in big.state_dict().items() if not k.startswith(("encoder.8.", "decoder.0."))},
                          strict=False)
    p = torch.from_numpy(principal_directions(latents, d)).float()  # (D, d)
    enc, small_enc = big.encoder[8], small.encoder[8]  # Conv2d(c -> D, k4): z = W*h + b
    small_enc.weight.copy_(torch.einsum("Dk,Dchw->kchw", p, enc.weight))
    small_enc.bias.copy_(p.T @ enc.bias)
    dec, small_dec = big.decoder[0], small.decoder[0]  # ConvTranspose2d(D -> c, k4): y = sum_D z_D V_D + bias
    small_dec.weight.copy_(torch.einsum("Dk,Dchw->kchw", p, dec.weight))
    small_dec.bias.copy_(dec.bias)
    return small


def shrunk_from_run(run_dir: Path, d: int, nb_channels: int, images: np.ndarray) -> AutoEncoder:
    """:func:`shrink_latent` of a trained CNN run, its latents taken on ``images`` (the training set)."""
    from .export import load_run_model  # export imports train, which imports this module
    from .train import encode_all

    big, _ = load_run_model(run_dir)
    if not isinstance(big, AutoEncoder):
        raise AetoolError(f"--init-from: {run_dir} is not a CNN run")
    if big.embedding_dim <= d:
        raise AetoolError(f"--init-from: {run_dir} has d={big.embedding_dim}; starting d={d} needs a run with a larger latent")
    if big.nb_channels != nb_channels:
        raise AetoolError(f"--init-from: {run_dir} has {big.nb_channels} channels, this run {nb_channels}")
    return shrink_latent(big, d, encode_all(big.encoder, images, torch.device("cpu")))

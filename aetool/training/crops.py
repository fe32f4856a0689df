"""Training data of the map families: random crops in, whole pictures out.

A map network is fully convolutional, so it trains on small random crops (cheap,
and many different ones a step) and is measured on whole held-out pictures at
their own size, as a user will run it.  The Trainer asks this module for the three
things that differ from a code-vector family: a step's batch (:class:`CropImages`),
the held-out error (:func:`picture_errors`) and the codes a density is fitted on
(:func:`map_codes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import ssim_per_image
from ..picture_store import PictureSet


class CropImages:
    """An epoch of ``crops_per_epoch`` random ``crop`` x ``crop`` crops of the training pictures,
    drawn as the Trainer asks for batches.  The Trainer hands each batch a slice of its own seeded
    permutation; the crops are drawn from a generator seeded by that slice, so a run and its resumed
    copy draw the same crops."""

    def __init__(self, pictures: PictureSet, crop: int, crops_per_epoch: int, seed: int,
                 device: torch.device, *, zoom: float = 1.0, turns: bool = False, colours: bool = False) -> None:
        self.pictures, self.crop, self.length, self.seed, self.device = pictures, crop, crops_per_epoch, seed, device
        self.zoom, self.turns, self.colours = zoom, turns, colours
        self.eligible = pictures.large_enough(crop)
        self.uint8 = True
        if not len(self.eligible):
            from ..errors import UsageError

            largest = int(pictures.sizes.min(axis=1).max())
            raise UsageError(f"--crop {crop}: no training picture is that large (the largest has a shorter side of "
                             f"{largest}); lower --crop or raise --max-side")

    def __len__(self) -> int:
        return self.length

    @property
    def skipped(self) -> int:
        """Training pictures too small for a crop."""
        return len(self.pictures) - len(self.eligible)

    @property
    def index_device(self) -> torch.device:
        return torch.device("cpu")

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """len(idx) crops as float (N, C, crop, crop) in [0, 1].  With ``zoom`` Z > 1 a batch is cut
        at a side of crop * s, s log-uniform in [1, Z], and shrunk to the crop (antialiased): the
        same content at other scales, which a few photographs otherwise show at one only.  With
        ``turns`` a batch is turned by a random multiple of 90 degrees; with ``colours`` each crop's
        RGB channels are put in a random order (so no colour is learnt as more likely than another)."""
        rng = np.random.default_rng([self.seed, *idx[:4].tolist()])
        side = self.crop
        if self.zoom > 1:
            side = int(round(self.crop * float(np.exp(rng.uniform(0, np.log(self.zoom))))))
            fits = self.pictures.large_enough(side)
            side, eligible = (side, fits) if len(fits) else (self.crop, self.eligible)
        else:
            eligible = self.eligible
        x = torch.from_numpy(self.pictures.random_crops(len(idx), side, rng, eligible)).to(self.device).float().div_(255)
        if side != self.crop:
            x = F.interpolate(x, size=(self.crop, self.crop), mode="bilinear", antialias=True, align_corners=False)
        if self.turns:
            x = torch.rot90(x, int(rng.integers(4)), dims=(2, 3))
        if self.colours and x.shape[1] == 3:
            order = torch.from_numpy(np.argsort(rng.random((len(x), 3)), axis=1)).to(x.device)
            x = torch.gather(x, 1, order[:, :, None, None].expand_as(x))
        return x.contiguous()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(N, C, H, W) padded at the bottom and right by mirroring, each side up to a multiple of
    ``multiple`` (the runtime's rule, bundle_format.LatentLayout.padded_size)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    while ph or pw:  # reflect needs a pad smaller than the side: tiny pictures take several rounds
        a, b = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        x = F.pad(x, (0, b, 0, a), mode="reflect") if (a or b) else F.pad(x, (0, pw, 0, ph), mode="replicate")
        ph, pw = (ph - a, pw - b) if (a or b) else (0, 0)
    return x


@dataclass
class PictureErrors:
    """Held-out numbers of a map network on whole pictures."""

    sse: np.ndarray  # per picture (sum over its values)
    values: np.ndarray  # values per picture (C x H x W)
    ssim: np.ndarray  # per picture
    channels: int = 3

    @property
    def sse_per_pixel(self) -> float:
        """Squared error summed over channels, per pixel, over all held-out pixels."""
        return float(self.sse.sum() / (self.values.sum() / self.channels))

    @property
    def psnr_db(self) -> float:
        mse = self.sse.sum() / self.values.sum()
        return float(10 * np.log10(1.0 / max(mse, 1e-20)))


@torch.no_grad()
def reconstruct_picture(model: nn.Module, picture: np.ndarray, multiple: int, device: torch.device | str) -> np.ndarray:
    """One (C, H, W) picture (uint8 or float) through the model at its own size: padded, run, cropped back."""
    x = torch.from_numpy(np.array(picture, dtype=np.float32))  # a copy: the cache's memory map is read-only
    if np.asarray(picture).dtype == np.uint8:
        x /= 255
    h, w = x.shape[-2:]
    was = model.training
    model.eval()
    try:
        y = model(pad_to_multiple(x[None], multiple).to(device))[0, :, :h, :w].float().cpu().numpy()
    finally:
        model.train(was)
    return y


def picture_errors(model: nn.Module, pictures: PictureSet, multiple: int, device: torch.device | str) -> PictureErrors:
    sse, values, ssim = [], [], []
    for p in pictures:
        x = p.astype(np.float32) / 255
        y = reconstruct_picture(model, p, multiple, device)
        sse.append(float(((x - y) ** 2).sum(dtype=np.float64)))
        values.append(x.size)
        ssim.append(float(ssim_per_image(x[None], np.clip(y, 0, 1)[None])[0]))
    return PictureErrors(np.asarray(sse), np.asarray(values), np.asarray(ssim), pictures.channels)


@torch.no_grad()
def map_codes(encoder: nn.Module, pictures: PictureSet, multiple: int, device: torch.device | str,
              max_codes: int = 50_000, seed: int = 0) -> np.ndarray:
    """Code vectors (n, d) of the training pictures' latent maps, every position of every picture,
    sub-sampled to ``max_codes``: what a map bundle's densities are fitted on."""
    was = encoder.training
    encoder.eval()
    codes = []
    try:
        for p in pictures:
            x = pad_to_multiple(torch.from_numpy(p.astype(np.float32) / 255)[None], multiple).to(device)
            z = encoder(x)[0].float().cpu().numpy()
            codes.append(z.reshape(z.shape[0], -1).T)
    finally:
        encoder.train(was)
    z = np.concatenate(codes)
    if len(z) > max_codes:
        z = z[np.sort(np.random.default_rng(seed).permutation(len(z))[:max_codes])]
    return z

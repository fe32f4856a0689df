"""Random whole-pixel shifts of training digits (``aetool train --shift K``), and input noise for
denoising training (``--denoise SIGMA``).

Why: the 64-channel runs fit their training digits far better than unseen ones
(d=16 after 166 epochs: training SSE/image 2.95 against 4.21 on the test set;
d=8: 6.91 against 10.16, and its test SSE rose from epoch 51 on).  A digit
moved by a pixel or two is a new image for the network but the same digit, so
the shifted copies regularise without touching the lecture's architecture or
loss: the network still reconstructs exactly what it was given.

Denoising: the network sees x + noise and is asked for the clean x, so it learns to pull a picture
back onto what it was trained on instead of copying whatever it is shown.  That is what a one-class
detector wants: a picture of another kind comes back as the normal kind, with a large error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def shift_images(x: torch.Tensor, offsets: torch.Tensor, fill: str = "zeros") -> torch.Tensor:
    """Move image ``i`` of an N×C×H×W batch down by ``offsets[i, 0]`` and right by
    ``offsets[i, 1]`` pixels (negative: up / left).  What comes in is zeros (a digit's black
    background) or, with ``fill="reflect"``, the picture's own edge mirrored: a photograph has no
    background, and a black band would be a feature no real picture has."""
    n, _, h, w = x.shape
    k = int(offsets.abs().max()) if len(offsets) else 0
    if k == 0:
        return x
    offsets = offsets.to(x.device)
    padded = F.pad(x, (k, k, k, k), mode="reflect") if fill == "reflect" else F.pad(x, (k, k, k, k))
    rows = torch.arange(h, device=x.device) + k - offsets[:, :1]  # N×H: the padded row each output row reads
    cols = torch.arange(w, device=x.device) + k - offsets[:, 1:]  # N×W
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices on dims 0, 2, 3 around a slice: the result is N×H×W×C
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, fill: str = "zeros") -> torch.Tensor:
    """Each image moved by its own offset, uniform in [-max_shift, max_shift] on both axes.

    ``generator`` is the epoch's CPU generator, so a resumed run draws the same shifts."""
    if max_shift == 0:
        return x
    offsets = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=generator)
    return shift_images(x, offsets, fill)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each picture mirrored left-right with probability 1/2: a photograph's mirror image is as
    likely a photograph, so the network sees twice the pictures (never used for digits, whose mirror
    images are not digits).  Drawn from the epoch's generator, so a resumed run sees the same flips."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    if not flip.any():
        return x
    out = x.clone()
    out[flip.to(x.device)] = x[flip.to(x.device)].flip(-1)
    return out


def random_noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus Gaussian noise of standard deviation ``sigma``, clipped to the pixels' [0, 1].

    Drawn on the CPU from the epoch's generator, so a resumed run sees the same noise."""
    if sigma == 0:
        return x
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    return (x + sigma * noise).clamp_(0, 1)

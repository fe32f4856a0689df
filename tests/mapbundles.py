"""Small map bundles for the runtime's tests, made without the trained map family.

Encoder: a 3x3 convolution (SiLU) then an f x f convolution of stride f to d channels; decoder:
a transposed f x f convolution of stride f then a 3x3 convolution.  The 3x3 layers give every
latent position a receptive field one pixel beyond its block, so tiles really need their margins.
Exported with torch.onnx (the TorchScript exporter, dynamic batch, height and width axes) and
described through bundle_format (LatentLayout.map, the own_size preprocessing, densities fitted
by aetool.density on code vectors of random pictures).  Weights are seeded: the same bundle each
time.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np


def make_map_bundle(folder: Path, *, factor: int = 8, d: int = 4, channels: int = 3, crop: int = 32,
                    seed: int = 0, name: str = "maps", context: bool = True) -> Path:
    """A map bundle in ``folder`` (created): f = ``factor``, ``d`` codes per position, ``channels``
    1 or 3, trained-crop size ``crop`` (the image spec's height and width)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    hidden = 8
    enc_layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU()] if context else []
    enc = nn.Sequential(*enc_layers, nn.Conv2d(hidden if context else channels, d, factor, stride=factor))
    dec_layers: list[nn.Module] = [nn.ConvTranspose2d(d, hidden if context else channels, factor, stride=factor)]
    if context:
        dec_layers += [nn.SiLU(), nn.Conv2d(hidden, channels, 3, padding=1)]
    dec = nn.Sequential(*dec_layers)
    with torch.no_grad():  # a rough autoencoder: the decoder's output near the picture's mean
        dec[-1].bias.add_(0.5)
    return _write_bundle(folder, enc, dec, factor=factor, d=d, channels=channels, crop=crop, seed=seed, name=name)


def _write_bundle(folder: Path, enc, dec, *, factor: int, d: int, channels: int, crop: int, seed: int, name: str) -> Path:
    """Export ``enc`` and ``dec`` (torch modules) and describe them in latent.json."""
    import torch

    from aetool.bundle_format import (BundleMeta, GraphInfo, ImageSpec, LatentLayout, sha256_file, write_meta,
                                      ENCODER_INPUT, ENCODER_OUTPUT)
    from aetool.density import DiagonalGaussian, GaussianMixture

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    axes_in = {0: "batch", 2: "height", 3: "width"}
    example = torch.rand(2, channels, crop, crop)
    for module, arg, file, inp, out in ((enc, example, "encoder.onnx", ENCODER_INPUT, ENCODER_OUTPUT),
                                        (dec, enc(example).detach(), "decoder.onnx", ENCODER_OUTPUT, ENCODER_INPUT)):
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (arg,), str(folder / file), input_names=[inp], output_names=[out],
                              dynamic_axes={inp: axes_in, out: axes_in}, opset_version=17, dynamo=False)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        codes = enc(torch.from_numpy(rng.random((8, channels, crop, crop), dtype=np.float32))).numpy()
    z = codes.transpose(0, 2, 3, 1).reshape(-1, d).astype(np.float64)
    densities = {"diagonal_gaussian": DiagonalGaussian().fit(z).to_dict(),
                 "gaussian_mixture": GaussianMixture(2, random_state=seed).fit(z).to_dict()}
    meta = BundleMeta(name=name, family="maptest", d=d,
                      image=ImageSpec(channels, crop, crop, (0.0, 1.0), "own_size"),
                      encoder=GraphInfo("encoder.onnx", ENCODER_INPUT, ENCODER_OUTPUT, sha256_file(folder / "encoder.onnx")),
                      decoder=GraphInfo("decoder.onnx", ENCODER_OUTPUT, ENCODER_INPUT, sha256_file(folder / "decoder.onnx")),
                      densities=densities, default_density="gaussian_mixture", opset=17,
                      latent=LatentLayout.map(factor))
    write_meta(folder, meta)
    return folder


def photo(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth (C, H, W) picture in [0, 1] with some detail: gradients, a disc, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = [0.5 + 0.4 * np.sin(xx / (7 + 3 * c) + yy / (11 + c)) for c in range(channels)]
    disc = ((yy - height / 2) ** 2 + (xx - width / 3) ** 2 < (min(height, width) / 4) ** 2).astype(np.float32)
    x = np.stack(base) * (1 - 0.5 * disc) + 0.05 * rng.standard_normal((channels, height, width)).astype(np.float32)
    return np.clip(x, 0, 1).astype(np.float32)


def save_photo(path: Path, height: int, width: int, channels: int = 3, seed: int = 0) -> Path:
    """:func:`photo` as an 8-bit file (PNG, or whatever the suffix says)."""
    from PIL import Image

    a = np.round(photo(height, width, channels, seed) * 255).astype(np.uint8)
    Image.fromarray(a[0] if channels == 1 else a.transpose(1, 2, 0)).save(path)
    return Path(path)


def make_deep_map_bundle(folder: Path, *, factor: int = 8, d: int = 4, seed: int = 0) -> Path:
    """A map bundle the size of the issue's sketch (about 1 M parameters: a pixel-unshuffle stem,
    widths 32 -> 64 -> 128, nearest x2 + convolution upsampling, SiLU), untrained: what the memory
    and speed of a 12-megapixel reconstruction are measured on before the real family exists."""
    import torch
    from torch import nn

    assert factor == 8
    torch.manual_seed(seed)

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]

    enc = nn.Sequential(nn.PixelUnshuffle(2), *block(12, 32), nn.Conv2d(32, 64, 2, stride=2), *block(64, 64),
                        nn.Conv2d(64, 128, 2, stride=2), *block(128, 128), nn.Conv2d(128, d, 1))
    up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
    dec = nn.Sequential(nn.Conv2d(d, 128, 3, padding=1), nn.SiLU(), *block(128, 128), up(), *block(128, 64), up(),
                        *block(64, 32), up(), nn.Conv2d(32, 3, 3, padding=1))
    return _write_bundle(folder, enc, dec, factor=factor, d=d, channels=3, crop=64, seed=seed, name="deep")

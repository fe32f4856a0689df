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

    from aetool.bundle_format import (BundleMeta, GraphInfo, ImageSpec, LatentLayout, sha256_file, write_meta,
                                      ENCODER_INPUT, ENCODER_OUTPUT)
    from aetool.density import DiagonalGaussian, GaussianMixture

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

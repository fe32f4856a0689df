"""Pictures made with a bundle and written to a file: what ``reconstruct``, ``interpolate`` and
``sample`` do, as functions a script can call.

Each checks the size of what it will write before any work (a grid is at most
image_output.MAX_OUTPUT_PIXELS), then reads, runs the bundle and writes atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .bundle import Bundle
from .errors import UsageError
from .fileio import path_text
from .image_output import (OUTPUT_FORMATS, check_output_size, grid_size, make_grid, stack_rows, to_uint8, write_gif,
                           write_png)
from .metrics import psnr_from_sse, sse_per_image, sse_picture, ssim_picture

VECTOR_SCALE = 4  # --scale's default for a code vector bundle's small pictures; map bundles write at their own size


def default_scale(bundle: Bundle, scale: int | None) -> int:
    """--scale as given, else 4 for a code vector bundle's small pictures and 1 (their own size) for a map's."""
    return scale if scale is not None else 1 if bundle.is_map else VECTOR_SCALE


def picture_metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """How close a (C, H, W) reconstruction ``y`` is to ``x``: SSE per pixel (summed over the channels),
    PSNR over every value, and SSIM (None for a picture under 11 pixels a side)."""
    sse = sse_picture(x, y)
    return {"sse_per_pixel": sse / (x.shape[1] * x.shape[2]), "psnr_db": psnr_from_sse(sse, x.size),
            "ssim": ssim_picture(x, np.clip(y, 0.0, 1.0))}


def picture_uint8(y: np.ndarray, rows: int = 256) -> np.ndarray:
    """A (C, H, W) float picture as bytes (image_output.to_uint8), a band of rows at a time, so that
    no float copy of a whole photograph is made on its way to the file."""
    out = np.empty(y.shape, np.uint8)
    for r in range(0, y.shape[1], rows):
        out[:, r : r + rows] = to_uint8(y[:, r : r + rows])
    return out


def output_folder(output: str | os.PathLike) -> bool:
    """-o names a folder: it ends in a slash or is one already."""
    text = os.fspath(output)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def one_name_each(paths: Sequence[Path], suffix: str) -> list[str]:
    """A file name per input for a folder of outputs: its stem, numbered where two stems are the same."""
    stems = [Path(p).stem or "picture" for p in paths]
    digits = len(str(len(paths)))
    return [f"{stem}{suffix}" if stems.count(stem) == 1 else f"{i:0{digits}d}-{stem}{suffix}"
            for i, stem in enumerate(stems)]


def write_map_reconstructions(bundle: Bundle, output: str | os.PathLike, images: Sequence[Path], *,
                              scale: int = 1) -> dict[str, Any]:
    """A map bundle's reconstructions at each picture's own size: one input -> ``output`` (a picture
    file); several -> one PNG each in the folder ``output`` (named by their stems).  Pictures are
    read, run and written one at a time, so a folder of photographs needs the memory of one."""
    if not images:
        raise UsageError(f"give picture files (bundle {bundle.name} reconstructs pictures at their own size)")
    to_folder = output_folder(output)
    if len(images) > 1 and not to_folder:
        raise UsageError(f"-o {path_text(output)}: {len(images)} pictures give {len(images)} reconstructions: "
                         f"give a folder, -o DIR/, for one PNG each")
    if not to_folder and Path(output).suffix.lower() not in OUTPUT_FORMATS:
        raise UsageError(f"-o {path_text(output)}: use a picture name ending in one of {' '.join(sorted(OUTPUT_FORMATS))}, "
                         f"or a folder ending in /")
    targets = ([Path(output) / name for name in one_name_each(images, ".png")] if to_folder else [Path(output)])
    rows = []
    for path, target in zip(images, targets):
        x = bundle.load_images([path])[0]
        check_output_size(*x.shape[1:], scale, lower="--scale")
        y = bundle.reconstruct_picture(x)
        metrics = picture_metrics(x, y)
        pixels = picture_uint8(y)
        del y, x  # a photograph's floats are freed before its file is written
        if to_folder:
            target.parent.mkdir(parents=True, exist_ok=True)
        write_png(make_grid(pixels[None], 1, pad=0), target, scale=scale)
        rows.append({"name": path_text(path), "output": path_text(target), "height": int(pixels.shape[1]),
                     "width": int(pixels.shape[2]), **metrics})
    return {"output": path_text(output), "images": rows,
            "mean_sse_per_pixel": float(np.mean([r["sse_per_pixel"] for r in rows]))}


def reconstruction_figure(bundle: Bundle, x: np.ndarray, ncols: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Originals above reconstructions (a uint8 grid), and each image's SSE."""
    x_hat = bundle.reconstruct(x)
    sse = sse_per_image(x, x_hat)
    grid = stack_rows([make_grid(x, ncols), make_grid(x_hat, ncols)])
    return grid, sse


def write_reconstructions(bundle: Bundle, output: str | os.PathLike, images: Sequence[Path] = (),
                          mnist_test: int | None = None, *, ncols: int = 12, scale: int = 4,
                          invert: bool | None = None) -> dict[str, Any]:
    """Reconstruct picture files (or the first ``mnist_test`` MNIST test digits): originals above
    reconstructions in one picture; returns the SSE of each.  A map bundle writes each picture's
    reconstruction at its own size instead (:func:`write_map_reconstructions`)."""
    if bundle.is_map and not mnist_test:
        return write_map_reconstructions(bundle, output, images, scale=scale)
    if bool(images) == bool(mnist_test):
        raise UsageError("give image files or --mnist-test N (one of the two)")
    if mnist_test and bundle.meta.image.preprocessing != "mnist_digit":
        raise UsageError(f"--mnist-test: bundle {bundle.name} was not trained on MNIST digits; give image files")
    height, width = grid_size(mnist_test or len(images), ncols, *bundle.image_shape[1:])
    check_output_size(2 * height + 4, width, scale, lower="the number of images or --scale")
    if mnist_test:
        from .mnist import mnist_test_head

        x, names = mnist_test_head(mnist_test).images, [f"test[{i}]" for i in range(mnist_test)]
    else:
        x, names = bundle.load_images(images, invert=invert), [path_text(p) for p in images]
    grid, sse = reconstruction_figure(bundle, x, ncols)
    write_png(grid, output, scale=scale)
    return {"output": str(output), "mean_sse_per_image": float(sse.mean()),
            "images": [{"name": name, "sse": float(s)} for name, s in zip(names, sse)]}


def write_interpolation(bundle: Bundle, image_a: str | os.PathLike, image_b: str | os.PathLike,
                        output: str | os.PathLike, *, steps: int = 16, fps: float = 8.0, bounce: bool = False,
                        scale: int = 4, invert: bool | None = None) -> dict[str, Any]:
    """The latent line g((1-a) f(A) + a f(B)) from A to B: an animated GIF for ``*.gif``, else a strip."""
    animated = Path(output).suffix.lower() == ".gif"
    if bundle.is_map:
        return _write_map_interpolation(bundle, image_a, image_b, output, steps=steps, fps=fps, bounce=bounce,
                                        scale=scale, animated=animated)
    _, height, width = bundle.image_shape
    if animated:
        check_output_size(height, width, scale, frames=2 * steps - 2 if bounce else steps, lower="--steps or --scale")
    else:
        check_output_size(*grid_size(steps, steps, height, width), scale, lower="--steps or --scale")
    x = bundle.load_images([image_a, image_b], invert=invert)
    frames = bundle.interpolate(x[0], x[1], steps)
    if animated:
        write_gif([make_grid(f[None], 1, pad=0) for f in frames], output, fps=fps, scale=scale, bounce=bounce)
    else:
        write_png(make_grid(frames, ncols=steps), output, scale=scale)
    return {"output": str(output), "steps": steps, "animated": animated, "bounce": bounce and animated}


def common_crop(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (C, H, W) pictures centre-cropped to their common size (the smaller height, the smaller
    width): no resampling, so neither is stretched or blurred before it is encoded."""
    h, w = min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2])

    def crop(x: np.ndarray) -> np.ndarray:
        top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
        return x[:, top : top + h, left : left + w]

    return crop(a), crop(b)


def _write_map_interpolation(bundle: Bundle, image_a: str | os.PathLike, image_b: str | os.PathLike,
                             output: str | os.PathLike, *, steps: int, fps: float, bounce: bool, scale: int,
                             animated: bool) -> dict[str, Any]:
    """A map bundle's walk: both pictures centre-cropped to their common size, encoded to maps, the
    maps mixed position by position and decoded."""
    a, b = common_crop(*bundle.load_images([image_a, image_b]))
    _, height, width = a.shape
    if animated:
        check_output_size(height, width, scale, frames=2 * steps - 2 if bounce else steps, lower="--steps or --scale")
    else:
        check_output_size(*grid_size(steps, steps, height, width), scale, lower="--steps or --scale")
    frames = bundle.interpolate(a, b, steps)
    if animated:
        write_gif([make_grid(f[None], 1, pad=0) for f in frames], output, fps=fps, scale=scale, bounce=bounce)
    else:
        write_png(make_grid(frames, ncols=steps), output, scale=scale)
    return {"output": str(output), "steps": steps, "animated": animated, "bounce": bounce and animated,
            "height": int(height), "width": int(width)}


def write_samples(bundle: Bundle, output: str | os.PathLike, n: int = 64, *, seed: int | None = None,
                  density: str | None = None, ncols: int | None = None, scale: int = 4,
                  size: tuple[int, int] | None = None) -> dict[str, Any]:
    """``n`` draws from the bundle's latent density (``density``: its default, or one by name), decoded
    into a grid of about sqrt(n) columns.  A map bundle draws each position's code on its own, at
    ``size`` (height, width; default its training crop): textures, not scenes."""
    if size is not None and not bundle.is_map:
        raise UsageError(f"--size: bundle {bundle.name} has one code per {'x'.join(map(str, bundle.image_shape[1:]))} "
                         f"picture; only map bundles draw pictures of other sizes")
    ncols = ncols or math.ceil(math.sqrt(n))
    height, width = size or bundle.image_shape[1:]
    check_output_size(*grid_size(n, ncols, height, width), scale, lower="-n, --size or --scale" if bundle.is_map else "-n or --scale")
    latent_density = bundle.density_named(density)
    x = bundle.sample(n, seed=seed, density=latent_density, size=size if bundle.is_map else None)
    write_png(make_grid(x, ncols), output, scale=scale)
    out = {"output": str(output), "n": n, "seed": seed, "density": latent_density.kind}
    return {**out, "height": int(height), "width": int(width)} if bundle.is_map else out

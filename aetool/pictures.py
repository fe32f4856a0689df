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
from .image_output import check_output_size, grid_size, make_grid, stack_rows, write_gif, write_png
from .metrics import sse_per_image


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
    reconstructions in one picture; returns the SSE of each."""
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


def write_samples(bundle: Bundle, output: str | os.PathLike, n: int = 64, *, seed: int | None = None,
                  density: str | None = None, ncols: int | None = None, scale: int = 4) -> dict[str, Any]:
    """``n`` draws from the bundle's latent density (``density``: its default, or one by name), decoded
    into a grid of about sqrt(n) columns."""
    ncols = ncols or math.ceil(math.sqrt(n))
    check_output_size(*grid_size(n, ncols, *bundle.image_shape[1:]), scale, lower="-n or --scale")
    latent_density = bundle.density_named(density)
    x = bundle.sample(n, seed=seed, density=latent_density)
    write_png(make_grid(x, ncols), output, scale=scale)
    return {"output": str(output), "n": n, "seed": seed, "density": latent_density.kind}

"""The picture commands: reconstruct, interpolate, sample, encode, decode (onnxruntime, no torch)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import PICTURE_FORMATS, SEED, Command, FloatRange, bundle_options, examples, invert_option, output_option, scale_option


@click.command(cls=Command, epilog=examples(
    "aetool reconstruct --mnist-test 36 -o recon.png",
    "aetool reconstruct my_digit.jpg scan.png --bundle cnn-d8",
    "aetool reconstruct a.png --json        # SSE per image for scripts",
))
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--mnist-test", "mnist_test", type=click.IntRange(min=1, max=10_000), default=None,
              help="Use the first N MNIST test digits instead of files.")
@output_option("recon.png")
@click.option("--ncols", type=click.IntRange(min=1, max=1000), default=12, show_default=True)
@scale_option
@invert_option
@bundle_options
def reconstruct(images, mnist_test, output, ncols, scale, invert, bundle, echo, quiet):
    """Reconstruct IMAGES: originals above reconstructions in one PNG grid, SSE per image."""
    from ..pictures import write_reconstructions

    report = write_reconstructions(bundle, output, images, mnist_test, ncols=ncols, scale=scale, invert=invert)
    if len(report["images"]) <= 64:
        for row in report["images"]:
            echo(f"  {row['name']}: SSE {row['sse']:.3f}")
    echo(f"mean SSE per image {report['mean_sse_per_image']:.3f} over {len(report['images'])} image(s)")
    echo(f"wrote {output}")
    return report


@click.command(cls=Command, epilog=examples(
    "aetool interpolate a.png b.png -o walk.gif",
    "aetool interpolate a.png b.png -o walk.png --steps 10    # a strip",
    "aetool interpolate a.png b.png --bounce --fps 12 --bundle cnn-d2",
))
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@output_option("walk.gif", help=f"Output: .gif (animated), or {PICTURE_FORMATS} for a strip; at most 50 megapixels "
                                "(all frames together).")
@click.option("--steps", type=click.IntRange(min=2, max=1000), default=16, show_default=True, help="Frames, ends included.")
@click.option("--fps", type=FloatRange(min=0.1, max=100), default=8.0, show_default=True)
@click.option("--bounce/--no-bounce", default=False, show_default=True, help="GIF plays forth and back.")
@scale_option
@invert_option
@bundle_options
def interpolate(image_a, image_b, output, steps, fps, bounce, scale, invert, bundle, echo, quiet):
    """Walk the latent line g((1-a) f(A) + a f(B)): an animated GIF, or a PNG strip for -o *.png."""
    from ..pictures import write_interpolation

    report = write_interpolation(bundle, image_a, image_b, output, steps=steps, fps=fps, bounce=bounce, scale=scale,
                                 invert=invert)
    if report["animated"]:
        echo(f"wrote {output} ({steps} frames{', forth and back' if bounce else ''}, {fps:g} fps)")
    else:
        echo(f"wrote {output} ({steps} steps in a strip)")
    return report


@click.command(cls=Command, epilog=examples(
    "aetool sample -n 64 -o samples.png --seed 0",
    "aetool sample -n 16 --density diagonal   # the lecture's N(m, diag)",
    "aetool sample --bundle cnn-d2 --scale 8",
))
@click.option("-n", "n", type=click.IntRange(min=1, max=100_000), default=64, show_default=True)
@click.option("--seed", type=SEED, default=None, help="Random seed (default: fresh randomness).")
@click.option("--density", default=None, metavar="mixture|diagonal",
              help="Latent density to draw from (default: the bundle's, a Gaussian mixture where it has one; "
                   "diagonal: the lecture's N(m, diag)).")
@output_option("samples.png")
@click.option("--ncols", type=click.IntRange(min=1, max=1000), default=None, help="Grid columns (default: about sqrt(n)).")
@scale_option
@bundle_options
def sample(n, seed, density, output, ncols, scale, bundle, echo, quiet):
    """Draw from the bundle's latent density and decode: a grid of new digits."""
    from ..pictures import write_samples

    report = write_samples(bundle, output, n, seed=seed, density=density, ncols=ncols, scale=scale)
    echo(f"wrote {output} ({n} samples from the {report['density']} density)")
    return report


@click.command(cls=Command, epilog=examples(
    "aetool encode photos/ -o latents.npy    # N x d float32; the paths in latents.paths.txt",
    "aetool encode a.png b.jpg -o latents.csv --bundle export/cnn-d32-photos",
))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="IMAGES_OR_FOLDERS...")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("latents.npy"),
              show_default=True, help="Latents: .npy (N x d float32, image paths in NAME.paths.txt) or .csv.")
@click.option("--strict", is_flag=True, help="An unreadable file is an error (default: skipped, counted, named).")
@invert_option
@bundle_options
def encode(inputs, output, strict, invert, bundle, echo, quiet):
    """Encode pictures (files, or folders searched recursively) into latent vectors, a batch at a time.

    Each row's image path is written (NAME.paths.txt, one a line, or the CSV's path column) as UTF-8
    with a backslash, control characters (a newline) and bytes that are not UTF-8 escaped (\\\\,
    \\n, \\xff), so there is exactly one path per row; aetool.fileio.path_from_text reverses it.
    """
    from ..embed import encode_files

    report = encode_files(bundle, inputs, output, strict=strict, invert=invert, quiet=quiet)
    skipped = report["skipped"]
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]['path']}: {skipped[0]['error']}", err=True)
    echo(f"wrote {report['output']} ({report['rows']} x {report['d']})"
         + (f" and {report['paths']}" if report["paths"] else ""))
    return report


@click.command(cls=Command, epilog=examples(
    "aetool decode latents.npy -o grid.png",
    "aetool decode latents.csv -o pictures/    # one PNG a row",
))
@click.argument("latents", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", default="decoded.png", show_default=True,
              help=f"A grid picture ({PICTURE_FORMATS}), or a folder (ending in /) for one PNG a row.")
@click.option("--ncols", type=click.IntRange(min=1, max=1000), default=None, help="Grid columns (default: about sqrt(N)).")
@scale_option
@bundle_options
def decode(latents, output, ncols, scale, bundle, echo, quiet):
    """Decode a file of latents (.npy or .csv, as `aetool encode` writes) into pictures.

    Every value must be a finite number: a NaN or infinite latent is refused, naming its row."""
    from ..embed import decode_file

    report = decode_file(bundle, latents, output, ncols=ncols, scale=scale, quiet=quiet)
    echo(f"wrote {report['output']} ({report['images']} pictures)")
    return report

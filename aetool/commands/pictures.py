"""The picture commands: reconstruct, interpolate, sample, encode, decode (onnxruntime, no torch)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (PICTURE_FORMATS, SEED, Command, FloatRange, bundle_options, examples, invert_option,
                     output_option, picture_scale_option, picture_size)


@click.command(cls=Command, epilog=examples(
    "aetool reconstruct --mnist-test 36 -o recon.png",
    "aetool reconstruct my_digit.jpg scan.png --bundle cnn-d8",
    "aetool reconstruct a.png --json        # SSE per image for scripts",
    "aetool reconstruct photo.jpg -o back.png --bundle export/maps   # a map bundle: at its own size",
    "aetool reconstruct holiday/*.jpg -o back/ --bundle export/maps  # one PNG each in back/",
))
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--mnist-test", "mnist_test", type=click.IntRange(min=1, max=10_000), default=None,
              help="Use the first N MNIST test digits instead of files.")
@click.option("-o", "--output", default="recon.png", show_default=True,
              help=f"Output picture: {PICTURE_FORMATS} (a grid at most 50 megapixels); a map bundle with several "
                   f"pictures: a folder DIR/ for one PNG each.")
@click.option("--ncols", type=click.IntRange(min=1, max=1000), default=12, show_default=True)
@picture_scale_option
@invert_option
@bundle_options
def reconstruct(images, mnist_test, output, ncols, scale, invert, bundle, echo, quiet):
    """Reconstruct IMAGES: originals above reconstructions in one PNG grid, SSE per image.

    A map bundle (aetool info says which) reconstructs each picture at its own size: padded by
    reflection to a multiple of its factor, run (in blended tiles above 512 x 512 pixels) and cropped
    back.  One picture is written to -o; several need -o DIR/, one PNG each named after its file.
    It prints SSE per pixel (summed over the channels), PSNR and SSIM per picture."""
    from ..pictures import default_scale, write_reconstructions

    report = write_reconstructions(bundle, output, images, mnist_test, ncols=ncols, scale=default_scale(bundle, scale),
                                   invert=invert)
    if bundle.is_map:
        for row in report["images"][:64]:
            ssim = "-" if row["ssim"] is None else f"{row['ssim']:.4f}"
            echo(f"  {row['name']} ({row['width']}x{row['height']}): SSE/pixel {row['sse_per_pixel']:.5f}, "
                 f"PSNR {row['psnr_db']:.2f} dB, SSIM {ssim} -> {row['output']}")
        echo(f"mean SSE per pixel {report['mean_sse_per_pixel']:.5f} over {len(report['images'])} picture(s)")
        return report
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
    "aetool interpolate a.jpg b.jpg -o walk.gif --bundle export/maps   # both centre-cropped to a common size",
))
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@output_option("walk.gif", help=f"Output: .gif (animated), or {PICTURE_FORMATS} for a strip; at most 50 megapixels "
                                "(all frames together).")
@click.option("--steps", type=click.IntRange(min=2, max=1000), default=16, show_default=True, help="Frames, ends included.")
@click.option("--fps", type=FloatRange(min=0.1, max=100), default=8.0, show_default=True)
@click.option("--bounce/--no-bounce", default=False, show_default=True, help="GIF plays forth and back.")
@picture_scale_option
@invert_option
@bundle_options
def interpolate(image_a, image_b, output, steps, fps, bounce, scale, invert, bundle, echo, quiet):
    """Walk the latent line g((1-a) f(A) + a f(B)): an animated GIF, or a PNG strip for -o *.png.

    With a map bundle both pictures are first centre-cropped to their common size (the smaller
    height and the smaller width; nothing is resized), then their latent maps are mixed position
    by position."""
    from ..pictures import default_scale, write_interpolation

    report = write_interpolation(bundle, image_a, image_b, output, steps=steps, fps=fps, bounce=bounce,
                                 scale=default_scale(bundle, scale), invert=invert)
    if report["animated"]:
        echo(f"wrote {output} ({steps} frames{', forth and back' if bounce else ''}, {fps:g} fps)")
    else:
        echo(f"wrote {output} ({steps} steps in a strip)")
    return report


@click.command(cls=Command, epilog=examples(
    "aetool sample -n 64 -o samples.png --seed 0",
    "aetool sample -n 16 --density diagonal   # the lecture's N(m, diag)",
    "aetool sample --bundle cnn-d2 --scale 8",
    "aetool sample -n 16 --size 256 --bundle export/maps       # map bundle: 16 textures of 256x256",
    "aetool sample -n 4 --size 320x240 --bundle export/maps    # WIDTHxHEIGHT",
))
@click.option("-n", "n", type=click.IntRange(min=1, max=100_000), default=64, show_default=True)
@click.option("--seed", type=SEED, default=None, help="Random seed (default: fresh randomness).")
@click.option("--density", default=None, metavar="mixture|diagonal",
              help="Latent density to draw from (default: the bundle's, a Gaussian mixture where it has one; "
                   "diagonal: the lecture's N(m, diag)).")
@click.option("--size", default=None, metavar="SIDE|WxH", callback=lambda ctx, param, value: picture_size(value, param),
              help="Map bundles only: the pictures' size, 256 or 320x240 (default: the bundle's training crop).")
@output_option("samples.png")
@click.option("--ncols", type=click.IntRange(min=1, max=1000), default=None, help="Grid columns (default: about sqrt(n)).")
@picture_scale_option
@bundle_options
def sample(n, seed, density, size, output, ncols, scale, bundle, echo, quiet):
    """Draw from the bundle's latent density and decode: a grid of new digits.

    A map bundle draws every position's code independently from its density (fitted on the code
    vectors of its training maps) and decodes the map: this gives textures, not scenes, since no
    position knows what its neighbours drew.  Code vector bundles refuse --size."""
    from ..pictures import default_scale, write_samples

    report = write_samples(bundle, output, n, seed=seed, density=density, ncols=ncols,
                           scale=default_scale(bundle, scale), size=size)
    echo(f"wrote {output} ({n} samples from the {report['density']} density)")
    return report


@click.command(cls=Command, epilog=examples(
    "aetool encode photos/ -o latents.npy    # N x d float32; the paths in latents.paths.txt",
    "aetool encode a.png b.jpg -o latents.csv --bundle export/cnn-d32-photos",
    "aetool encode crops/ -o maps.npy --bundle export/maps     # one size: N x d x h x w",
    "aetool encode holiday/ -o maps/ --bundle export/maps      # any sizes: one (d, h, w) .npy each",
))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="IMAGES_OR_FOLDERS...")
@click.option("-o", "--output", default="latents.npy", show_default=True,
              help="Latents: .npy (N x d float32, image paths in NAME.paths.txt) or .csv; a map bundle: .npy, or a "
                   "folder DIR/ for one .npy per picture.")
@click.option("--strict", is_flag=True, help="An unreadable file is an error (default: skipped, counted, named).")
@invert_option
@bundle_options
def encode(inputs, output, strict, invert, bundle, echo, quiet):
    """Encode pictures (files, or folders searched recursively) into latent vectors, a batch at a time.

    A map bundle encodes each picture at its own size (padded to a multiple of its factor) into
    a latent map: into one .npy of N x d x h x w when every picture has the same padded size, or,
    with -o DIR/, into one (d, h, w) .npy per picture named after its file (DIR/paths.txt lists
    the pictures in the order of the files' names).

    Each row's image path is written (NAME.paths.txt, one a line, or the CSV's path column) as UTF-8
    with a backslash, control characters (a newline) and bytes that are not UTF-8 escaped (\\\\,
    \\n, \\xff), so there is exactly one path per row; aetool.fileio.path_from_text reverses it.
    """
    from ..embed import encode_files

    report = encode_files(bundle, inputs, output, strict=strict, invert=invert, quiet=quiet)
    skipped = report["skipped"]
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]['path']}: {skipped[0]['error']}", err=True)
    if "shape" in report:
        what = "one .npy each" if report["folder"] else f"one array of {tuple(report['shape'])}"
        echo(f"wrote {report['output']} ({report['rows']} latent map(s), {what})"
             + (f" and {report['paths']}" if report["paths"] else ""))
        return report
    echo(f"wrote {report['output']} ({report['rows']} x {report['d']})"
         + (f" and {report['paths']}" if report["paths"] else ""))
    return report


@click.command(cls=Command, epilog=examples(
    "aetool decode latents.npy -o grid.png",
    "aetool decode latents.csv -o pictures/    # one PNG a row",
    "aetool decode maps/003-beach.npy -o beach.png --bundle export/maps   # a map bundle's (d, h, w) map",
))
@click.argument("latents", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", default="decoded.png", show_default=True,
              help=f"A grid picture ({PICTURE_FORMATS}), or a folder (ending in /) for one PNG a row.")
@click.option("--ncols", type=click.IntRange(min=1, max=1000), default=None, help="Grid columns (default: about sqrt(N)).")
@picture_scale_option
@bundle_options
def decode(latents, output, ncols, scale, bundle, echo, quiet):
    """Decode a file of latents (.npy or .csv, as `aetool encode` writes) into pictures.

    Every value must be a finite number: a NaN or infinite latent is refused, naming its row.
    A map bundle reads an .npy latent map, (N, d, h, w) or one (d, h, w), and decodes each to an
    h f x w f picture (the padded size: the map does not record the picture's own size)."""
    from ..embed import decode_file
    from ..pictures import default_scale

    report = decode_file(bundle, latents, output, ncols=ncols, scale=default_scale(bundle, scale), quiet=quiet)
    echo(f"wrote {report['output']} ({report['images']} pictures)")
    return report

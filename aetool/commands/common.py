"""What every command shares: the usage-error rule, the runtime options (--bundle, --device,
--threads, --json, --quiet), output and input options, and the JSON report.

A command module imports from here; the root group (aetool.cli) loads command modules by name.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import UsageError
from ..fileio import one_line


class Command(click.Command):
    """Turns aetool's UsageError (a bad option value) into Click's usage message and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UsageError as e:
            raise click.UsageError(one_line(str(e)), ctx=ctx) from None


class FloatRange(click.FloatRange):
    """click.FloatRange that also refuses NaN and the infinities: NaN passes every comparison a range
    makes, so ``--fpr nan`` would otherwise get through as a value inside [0, 0.5]."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def examples(*lines: str) -> str:
    """An epilog of example command lines, kept as written by Click's formatter."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


EXIT_CODE = "_exit_code"  # a runtime command's report may ask for a non-zero exit after it is printed


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


# ---------------------------------------------------------------- shared options
def bundle_options(f: Callable) -> Callable:
    """--bundle / --device / --threads / --quiet / --json, shared by every runtime command.

    The command gets the loaded bundle, an ``echo`` that is silent under --quiet and
    --json, and ``as_json``; what it returns is printed as JSON under --json.
    """

    @click.option("--bundle", "bundle_path", metavar="PATH|NAME",
                  help="Bundle folder or name; default: newest in ./export, else the shipped cnn-d16.")
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                  help="onnxruntime device; auto uses CUDA when it works, else CPU.")
    @click.option("--threads", type=click.IntRange(min=0, max=256), default=0,
                  help="onnxruntime intra-op threads (0: its default).")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout instead of text.")
    @click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
    @functools.wraps(f)
    def wrapper(*args, bundle_path, device, threads, as_json, quiet, **kwargs):
        from ..bundle import load_bundle  # onnxruntime: loaded when a command runs, not for --help

        bundle = load_bundle(bundle_path, device=device, threads=threads or None,
                             note=None if quiet else lambda line: click.echo(line, err=True))
        echo = text_echo(quiet, as_json)
        report = f(*args, bundle=bundle, echo=echo, quiet=quiet or as_json, **kwargs)
        exit_code = report.pop(EXIT_CODE, 0)
        if as_json:
            emit_json({**report, "bundle": str(bundle.path), "provider": bundle.provider})
        # after the work, so a failure prints its one error line alone; on stderr, so stdout
        # stays clean for --json and pipes
        if not quiet:
            click.echo(f"bundle {bundle.path} ({bundle.family}, d={bundle.d}) ran on {bundle.provider}", err=True)
        if exit_code:
            sys.exit(exit_code)

    return wrapper


PICTURE_FORMATS = ".png .jpg .bmp .webp .tif"


def output_option(default: str, help: str = f"Output picture: {PICTURE_FORMATS} (a grid at most 50 megapixels)."):
    return click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=default,
                        show_default=True, help=help)


def picture_path(value: Path | None, param: click.Parameter) -> Path | None:
    """An output picture's name is checked before any work: a wrong suffix is a usage error."""
    from ..image_output import OUTPUT_FORMATS

    if value is not None and value.suffix.lower() not in OUTPUT_FORMATS:
        raise click.BadParameter(f"{value}: use a picture name ending in one of {PICTURE_FORMATS}", param=param)
    return value


def positive_ints(value: str, option: str, example: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers, or Click's usage error naming the option."""
    try:
        sizes = tuple(int(s) for s in value.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"expected positive integers like {example}, got {value!r}", param_hint=f"'{option}'")
    return sizes


SEED = click.IntRange(min=0, max=2**32 - 1)  # one rule for every command's --seed
scale_option = click.option("--scale", type=click.IntRange(min=1, max=64), default=4, show_default=True,
                            help="Upscale factor for the written pictures.")
picture_scale_option = click.option("--scale", type=click.IntRange(min=1, max=64), default=None,
                                    help="Upscale factor for the written pictures (default: 4; 1 for a map bundle, "
                                         "whose pictures are written at their own size).")


def picture_size(value: str | None, param: click.Parameter) -> tuple[int, int] | None:
    """--size as (height, width): ``256`` (a square) or ``WIDTHxHEIGHT`` like ``320x240``."""
    if value is None:
        return None
    parts = value.lower().split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers, default=0) < 1 or max(numbers) > 8192:
        raise click.BadParameter(f"expected a side like 256 or WIDTHxHEIGHT like 320x240 (1 to 8192), got {value!r}",
                                 param=param)
    return (numbers[0], numbers[0]) if len(numbers) == 1 else (numbers[1], numbers[0])
invert_option = click.option("--invert/--no-invert", default=None,
                             help="Force inverting input images (default: invert when the background is light).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars or progress lines.")


def text_echo(quiet: bool, as_json: bool) -> Callable[..., None]:
    """``click.echo`` for a command's text, silent under --quiet and under --json (stdout is the report)."""
    return (lambda *a, **k: None) if quiet or as_json else click.echo


def logger(quiet: bool) -> Callable[[str], None]:
    return (lambda s: None) if quiet else click.echo

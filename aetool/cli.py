"""The ``aetool`` command: parse options, call the Python API, print.

Runtime commands (reconstruct, interpolate, sample, bench, info, list) import
only numpy, Pillow and onnxruntime; torch is imported inside the training
commands alone, so an edge install without PyTorch runs everything else.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from . import __version__
from .errors import AetoolError, UsageError
from .lecture import IMAGE_SIZES
from .training.families import family_names

if TYPE_CHECKING:
    from .bundle_format import StartRecord

FAMILY_CHOICES = family_names(with_aliases=True)


class Command(click.Command):
    """Turns aetool's UsageError (a bad option value) into Click's usage message and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UsageError as e:
            from .fileio import one_line

            raise click.UsageError(one_line(str(e)), ctx=ctx) from None


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) as an exception: the same clean-up as Ctrl-C, so a terminated command
    removes its temporary files and stops its worker processes instead of dying in place."""


def _terminate(signum: int, _frame) -> None:
    raise Terminated(signum)


def _on_termination() -> dict:
    """Make SIGTERM and SIGHUP raise Terminated where nothing else handles them; returns what to restore."""
    import signal

    saved = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
            saved[sig] = signal.signal(sig, _terminate)
    return saved


class Group(click.Group):
    """Turns AetoolError (and OS errors on user files) into one line and exit status 1."""

    command_class = Command

    def invoke(self, ctx: click.Context):
        from .fileio import one_line

        saved = _on_termination()
        try:
            return super().invoke(ctx)
        except AetoolError as e:
            click.echo(f"error: {one_line(str(e))}", err=True)
            sys.exit(1)
        except BrokenPipeError:  # the reader went away (aetool list | head): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            sys.exit(1)
        except OSError as e:
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            click.echo(f"error: {one_line(f'{e.strerror or e}{where}')}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Terminated as e:
            click.echo("terminated", err=True)
            sys.exit(128 + int(e.args[0]))
        finally:
            import signal

            for sig, handler in saved.items():  # a caller in the same process (a test) gets its own back
                signal.signal(sig, handler)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aetool")
def main() -> None:
    """Train, export and run the EE-559 convolutional autoencoder on MNIST-like digits.

    \b
    aetool sample -n 64                  new digits from the shipped bundle
    aetool train --d 16 && aetool export train your own, then use it
    aetool list                          the bundles found here and shipped
    """


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
        from .bundle import load_bundle

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
    from .images import OUTPUT_FORMATS

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
invert_option = click.option("--invert/--no-invert", default=None,
                             help="Force inverting input images (default: invert when the background is light).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars or progress lines.")


def text_echo(quiet: bool, as_json: bool) -> Callable[..., None]:
    """``click.echo`` for a command's text, silent under --quiet and under --json (stdout is the report)."""
    return (lambda *a, **k: None) if quiet or as_json else click.echo


def logger(quiet: bool) -> Callable[[str], None]:
    return (lambda s: None) if quiet else click.echo


# ---------------------------------------------------------------- training stage
class TrainCommand(Command):
    """``--help`` shows the everyday options; ``--help-all`` adds the advanced ones."""

    def get_help(self, ctx: click.Context) -> str:
        if not ctx.meta.get("aetool.help_all"):
            return super().get_help(ctx)
        advanced = [p for p in self.params if getattr(p, "hidden", False) and p.name != "help_all"]
        for p in advanced:
            p.hidden = False
        try:
            return super().get_help(ctx)
        finally:
            for p in advanced:
                p.hidden = True


def _help_all(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        ctx.meta["aetool.help_all"] = True
        click.echo(ctx.get_help())
        ctx.exit()


def advanced(*args, **kwargs):
    """An option listed only by ``--help-all``."""
    return click.option(*args, hidden=True, **kwargs)


def config_options(f: Callable) -> Callable:
    """One Click option per TrainConfig field, from the field's own declaration (training.config.Option).

    Every default is None here: an option the user did not give leaves the field at TrainConfig's
    default, so the defaults live in one place too."""
    import dataclasses

    from .training.config import TrainConfig

    for fld in reversed(dataclasses.fields(TrainConfig)):
        spec = fld.metadata["option"]
        if "/" in spec.flags[0] or fld.type == "bool":
            kwargs: dict[str, Any] = {"default": None} if "/" in spec.flags[0] else {"is_flag": True, "default": None}
        elif spec.choices is not None:
            kwargs = {"type": click.Choice([str(c) for c in spec.choices]), "default": None}
        elif fld.type.startswith(("int", "float")):
            rng = click.IntRange if fld.type.startswith("int") else click.FloatRange
            kwargs = {"type": rng(min=spec.low, max=spec.high, min_open=spec.low_open, max_open=spec.high_open),
                      "default": None}
        else:
            kwargs = {"default": None}
        shown = fld.default is not None and not isinstance(fld.default, bool) and "default" not in spec.help
        help = spec.help + (f" [default: {fld.default}]" if shown else "")
        f = (advanced if spec.advanced else click.option)(*spec.flags, fld.name, help=help, metavar=spec.metavar,
                                                          **kwargs)(f)
    return f


def config_given(options: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave, typed as TrainConfig's fields (Click gives choices as strings)."""
    import dataclasses

    from .training.config import TrainConfig

    out = {}
    for fld in dataclasses.fields(TrainConfig):
        value = options.get(fld.name)
        if value is not None:
            out[fld.name] = int(value) if fld.type.startswith("int") and isinstance(value, str) else value
    return out


@main.command(cls=TrainCommand, epilog=examples(
    "aetool train --d 16                    # the lecture's CNN on MNIST -> models/cnn-d16/",
    "aetool train --arch pca --d 16         # the linear baseline, in closed form",
    "aetool train --data photos/ --d 32 --image-size 64   # your own pictures: the photo network",
    "aetool train --d 8 --epochs 30 --out models/mine",
    "aetool train --normal-class 3          # a one-class detector: digit 3 is normal (see aetool score)",
    "aetool train --out models/mine --resume --epochs 40   # go on after Ctrl-C, or further",
    "aetool train --config recipes/cnn-d16.toml            # a shipped bundle's recipe, all stages",
    "torchrun --nproc-per-node 2 -m aetool train --latent-dim 16   # DistributedDataParallel, 2 processes",
))
@click.option("--config", "recipe_path", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Train a recipe (TOML, see recipes/): every stage in order, resuming where it stopped.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: models/<family>-d<d>, with -w<W> for a width other than the family's).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@quiet_option
@click.option("--help-all", is_flag=True, expose_value=False, is_eager=True, callback=_help_all,
              help="Show the advanced options too.")
@advanced("--force", is_flag=True, help="Replace an existing run in --out.")
@advanced("--stop-after", type=click.IntRange(min=1), default=None, metavar="EPOCH",
          help="Pause after this epoch of the schedule (continue later with --resume).")
@config_options
@click.pass_context
def train(ctx, recipe_path, out, resume, quiet, force, stop_after, **options):
    """Train an autoencoder on MNIST or a folder of your images into a run folder (models/<family>-d<d>/).

    Each epoch prints its held-out SSE per image and PSNR and rewrites the checkpoint,
    so Ctrl-C loses at most one epoch. --help-all lists the advanced options.
    """
    from .training.config import TrainConfig, load_recipe

    log = logger(quiet)
    given = config_given(options)
    device, cuda_graph = given.get("device", "auto"), given.get("cuda_graph", True)
    if recipe_path is not None:
        machine = ("device", "cuda_graph")  # where and how to run is this machine's choice, not the recipe's
        named = [f"--{name.replace('_', '-')}" for name in [*given, *("out", "resume", "stop_after", "force")]
                 if name not in machine and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if named:
            raise UsageError(f"--config sets every training option itself; drop {', '.join(named)}")
        recipe = load_recipe(recipe_path)  # before torch is imported: a bad recipe is answered at once
        from .training.train import train_recipe

        for stage in recipe.stages:
            stage.config.device, stage.config.cuda_graph = device, cuda_graph
        metrics = train_recipe(recipe, quiet=quiet, log=log)
        out = recipe.final.out
    else:
        config = TrainConfig(**given)
        config.validate()
        from .training.train import resume_config, train as run_training

        out = out or Path("models") / config.default_run_name()
        if resume:  # the device is this machine's, not the run's
            config = resume_config(out, given.get("epochs"), given.get("batch_size"), device, cuda_graph)
        metrics = run_training(config, out, resume=resume, force=force, quiet=quiet, stop_after=stop_after, log=log)
    from .training.distributed import launched_rank

    if launched_rank() != 0:  # under torchrun rank 0 alone reports
        return
    if not metrics["complete"]:
        click.echo(f"paused: {out} after epoch {metrics['epochs_done']} of {metrics['config']['epochs']}, held-out SSE/image "
                   f"{metrics['test_sse_per_image']:.3f}; continue with: aetool train --out {out} --resume")
        return
    heldout = (metrics.get("data") or {}).get("heldout", "test")
    click.echo(f"done: {out}  {heldout} SSE/image {metrics['test_sse_per_image']:.3f}, PSNR {metrics['test_psnr_db']:.2f} dB "
               f"after {metrics['epochs_done']} epoch(s); next: aetool export {out}")


@main.command(epilog=examples(
    "aetool export                          # newest run in models/ -> export/<its name>/",
    "aetool export models/cnn-d8 --int8     # also export/cnn-d8-int8/, for CPUs with VNNI",
    "aetool export cnn-d8 --out /tmp/b      # any folder",
))
@click.argument("run", required=False)
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
              show_default=True, help="Where runs live.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle folder (default: export/<run name>).")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Largest allowed |onnxruntime - torch| in the self-check.")
@click.option("--int8", is_flag=True, help="Also write a static int8 variant, <out>-int8 (calibrated on training images).")
@click.option("--fp16", is_flag=True, help="Also write an fp16 variant for GPUs, <out>-fp16 (checked at fp16 tolerance).")
@click.option("--eval-images", type=click.IntRange(min=1, max=10_000), default=10_000, show_default=True,
              help="Test images on which the variants' error is measured.")
@click.option("--fpr", type=click.FloatRange(min=0, max=0.5), default=0.01, show_default=True,
              help="Calibrate the anomaly threshold for this false-positive rate on held-out images (0: none).")
@click.option("--last", is_flag=True, help="Export the last epoch's weights (default: the best held-out epoch's).")
@quiet_option
def export(run, models_dir, out, tolerance, int8, fp16, eval_images, fpr, last, quiet):
    """Export a run (RUN: a folder or a name in models/; default the newest) to an ONNX bundle.

    The bundle is checked against PyTorch before it replaces anything at --out.
    """
    from .fileio import check_replaceable_dir
    from .training.export import export_run
    from .training.run import find_run

    log = logger(quiet)
    run_dir = find_run(models_dir, run)
    out = out or Path("export") / run_dir.name
    out = check_replaceable_dir(out)  # before the work: '.', a file, or a folder that is no bundle
    for variant, wanted in (("int8", int8), ("fp16", fp16)):
        if wanted:
            check_replaceable_dir(out.with_name(f"{out.name}-{variant}"))
    export_run(run_dir.path, out, tolerance=tolerance, fpr=fpr, last=last, log=log)
    if int8:
        from .training.variants import quantize_int8

        quantize_int8(out, out.with_name(f"{out.name}-int8"), eval_images=eval_images, log=log)
    if fp16:
        from .training.variants import convert_fp16

        convert_fp16(out, out.with_name(f"{out.name}-fp16"), eval_images=eval_images, log=log)


@main.command("train-classifier", epilog=examples("aetool train-classifier --epochs 10"))
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Train on the first N images only.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("models/digit-classifier"),
              show_default=True)
@quiet_option
def train_classifier_cmd(epochs, seed, limit, device, out, quiet):
    """Train the MNIST digit classifier that scores identity kept (ONNX in --out)."""
    from .training.classifier import train_classifier

    m = train_classifier(out, epochs=epochs, seed=seed, limit=limit, device=device, quiet=quiet, log=logger(quiet))
    click.echo(f"done: {out}/classifier.onnx, test accuracy {100 * m['test_accuracy']:.2f} %")


# ---------------------------------------------------------------- runtime
@main.command(epilog=examples(
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
    from . import images as img
    from .api import reconstruction_figure

    if bool(images) == bool(mnist_test):
        raise UsageError("give image files or --mnist-test N (one of the two)")
    if mnist_test and bundle.meta.image.preprocessing != "mnist_digit":
        raise UsageError(f"--mnist-test: bundle {bundle.name} was not trained on MNIST digits; give image files")
    height, width = img.grid_size(mnist_test or len(images), ncols, *bundle.image_shape[1:])
    img.check_output_size(2 * height + 4, width, scale, lower="the number of images or --scale")
    if mnist_test:
        from .data import mnist_test_head

        x, names = mnist_test_head(mnist_test).images, [f"test[{i}]" for i in range(mnist_test)]
    else:
        from .fileio import path_text

        x, names = bundle.load_images(images, invert=invert), [path_text(p) for p in images]
    grid, sse = reconstruction_figure(bundle, x, ncols)
    img.write_png(grid, output, scale=scale)
    if len(names) <= 64:
        for name, s in zip(names, sse):
            echo(f"  {name}: SSE {s:.3f}")
    echo(f"mean SSE per image {sse.mean():.3f} over {len(sse)} image(s)")
    echo(f"wrote {output}")
    return {"output": str(output), "mean_sse_per_image": float(sse.mean()),
            "images": [{"name": name, "sse": float(s)} for name, s in zip(names, sse)]}


@main.command(epilog=examples(
    "aetool interpolate a.png b.png -o walk.gif",
    "aetool interpolate a.png b.png -o walk.png --steps 10    # a strip",
    "aetool interpolate a.png b.png --bounce --fps 12 --bundle cnn-d2",
))
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@output_option("walk.gif", help=f"Output: .gif (animated), or {PICTURE_FORMATS} for a strip; at most 50 megapixels "
                                "(all frames together).")
@click.option("--steps", type=click.IntRange(min=2, max=1000), default=16, show_default=True, help="Frames, ends included.")
@click.option("--fps", type=click.FloatRange(min=0.1, max=100), default=8.0, show_default=True)
@click.option("--bounce/--no-bounce", default=False, show_default=True, help="GIF plays forth and back.")
@scale_option
@invert_option
@bundle_options
def interpolate(image_a, image_b, output, steps, fps, bounce, scale, invert, bundle, echo, quiet):
    """Walk the latent line g((1-a) f(A) + a f(B)): an animated GIF, or a PNG strip for -o *.png."""
    from . import images as img

    animated = output.suffix.lower() == ".gif"
    _, height, width = bundle.image_shape
    if animated:
        img.check_output_size(height, width, scale, frames=2 * steps - 2 if bounce else steps, lower="--steps or --scale")
    else:
        img.check_output_size(*img.grid_size(steps, steps, height, width), scale, lower="--steps or --scale")
    x = bundle.load_images([image_a, image_b], invert=invert)
    frames = bundle.interpolate(x[0], x[1], steps)
    if animated:
        img.write_gif([img.make_grid(f[None], 1, pad=0) for f in frames], output, fps=fps, scale=scale, bounce=bounce)
        echo(f"wrote {output} ({steps} frames{', forth and back' if bounce else ''}, {fps:g} fps)")
    else:
        img.write_png(img.make_grid(frames, ncols=steps), output, scale=scale)
        echo(f"wrote {output} ({steps} steps in a strip)")
    return {"output": str(output), "steps": steps, "animated": animated, "bounce": bounce and animated}


@main.command(epilog=examples(
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
    from . import images as img

    ncols = ncols or math.ceil(math.sqrt(n))
    img.check_output_size(*img.grid_size(n, ncols, *bundle.image_shape[1:]), scale, lower="-n or --scale")
    latent_density = bundle.density_named(density)
    x = bundle.sample(n, seed=seed, density=latent_density)
    img.write_png(img.make_grid(x, ncols), output, scale=scale)
    echo(f"wrote {output} ({n} samples from the {latent_density.kind} density)")
    return {"output": str(output), "n": n, "seed": seed, "density": latent_density.kind}


@main.command(epilog=examples(
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
    from .embed import encode_files

    report = encode_files(bundle, inputs, output, strict=strict, invert=invert, quiet=quiet)
    skipped = report["skipped"]
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]['path']}: {skipped[0]['error']}", err=True)
    echo(f"wrote {report['output']} ({report['rows']} x {report['d']})"
         + (f" and {report['paths']}" if report["paths"] else ""))
    return report


@main.command(epilog=examples(
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
    from .embed import decode_file

    report = decode_file(bundle, latents, output, ncols=ncols, scale=scale, quiet=quiet)
    echo(f"wrote {report['output']} ({report['images']} pictures)")
    return report


@main.command(epilog=examples(
    "aetool score part1.png part2.png       # SSE, latent NLL, anomaly score, flagged or not",
    "aetool score line-camera/ --csv scores.csv --fail-on-anomaly   # exit 3 when any image is flagged",
    "aetool score new-parts/ --figure why.png   # histogram vs calibration; flagged: image | recon | diff",
))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="IMAGES_OR_FOLDERS...")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write path, sse, nll, score, anomalous a row per image, in input order.")
@click.option("--figure", "figure_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              callback=lambda ctx, param, value: picture_path(value, param),
              help=f"Also draw the scores against the calibration set and the flagged images "
                   f"(original | reconstruction | difference) into this picture: {PICTURE_FORMATS}.")
@click.option("--fail-on-anomaly", is_flag=True, help="Exit with status 3 when any image is over the threshold.")
@click.option("--strict", is_flag=True, help="An unreadable file is an error (default: skipped, counted, named).")
@invert_option
@bundle_options
def score(inputs, csv_path, figure_path, fail_on_anomaly, strict, invert, bundle, echo, quiet):
    """Anomaly scores of pictures (files, or folders searched recursively) against the bundle's threshold.

    The score is the larger of the standardised log reconstruction error and latent negative
    log-likelihood; `aetool calibrate` sets its threshold for a false-positive rate on held-out
    normal images. A score that is not a finite number counts as anomalous. Rows stream to
    --csv, so a folder of any size is scored in the memory of one batch. A file that cannot be
    read is skipped and named, as encode does (--strict: an error). Paths are written as
    encode writes them: UTF-8, with a backslash, control characters (a newline) and bytes
    that are not UTF-8 escaped (\\\\, \\n, \\xff), one line per image.
    """
    import contextlib
    import csv
    import heapq

    import numpy as np

    from .anomaly import is_anomalous, score_files
    from .anomaly_figure import MAX_SHOWN
    from .embed import expand_inputs, refuse_input_as_output
    from .fileio import atomic_path, path_text
    from .progress import progress

    from .anomaly import no_threshold_reason, require_threshold

    skipped: list[tuple[str, str]] = []
    paths = expand_inputs(inputs, skipped)
    for target in (csv_path, figure_path):
        if target is not None:
            refuse_input_as_output(target, paths, "--csv" if target is csv_path else "--figure")
    cal = bundle.meta.anomaly
    for option, given in (("--fail-on-anomaly", fail_on_anomaly), ("--figure", figure_path is not None)):
        if given:  # one rule: an option that needs a verdict refuses a bundle without a threshold, before any work
            require_threshold(bundle, option)
    threshold = None if cal is None else cal.threshold
    if threshold is None and not click.get_current_context().params.get("quiet"):  # stderr: shown under --json too
        click.echo(f"note: bundle {bundle.name} has no anomaly threshold, so nothing is flagged"
                   f"{'' if cal is None else ' (scores only)'}: {no_threshold_reason(cal)}", err=True)
    keep_all = click.get_current_context().params.get("as_json")  # the JSON report lists every image
    shown, listed, scores_seen, flagged, seen = [], [], [], 0, 0
    worst = []  # a heap of the highest flagged (score, path) for the figure
    with contextlib.ExitStack() as stack:
        writer = None
        if csv_path is not None:
            f = stack.enter_context(open(stack.enter_context(atomic_path(csv_path)), "w", newline="", encoding="utf-8"))
            writer = csv.DictWriter(f, fieldnames=["path", "sse", "nll", "score", "anomalous"])
            writer.writeheader()
        for batch, sse, nll, scores in progress(score_files(bundle, paths, invert, strict=strict, skipped=skipped),
                                                quiet=quiet, desc="scoring", total=-(-len(paths) // 256)):
            flags = None if scores is None or threshold is None else is_anomalous(scores, threshold)
            rows = [{"path": path_text(path), "sse": float(sse[i]), "nll": float(nll[i]),
                     "score": None if scores is None or not math.isfinite(scores[i]) else float(scores[i]),
                     "anomalous": None if flags is None else bool(flags[i])} for i, path in enumerate(batch)]
            seen += len(rows)
            flagged += 0 if flags is None else int(flags.sum())
            shown += rows[: max(0, 1000 - len(shown))]
            if keep_all:
                listed += rows
            if writer is not None:
                writer.writerows(rows)
            if figure_path is not None:
                scores_seen.append(np.where(np.isfinite(scores), scores, np.inf))
                for path, r in zip(batch, rows):
                    if r["anomalous"]:
                        key = (math.inf if r["score"] is None else r["score"], path)
                        (heapq.heappush if len(worst) < MAX_SHOWN else heapq.heappushpop)(worst, key)
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0][0]}: {skipped[0][1]}", err=True)
    if not seen:
        raise AetoolError(f"none of the {len(paths)} files could be read (e.g. {skipped[0][0]}: {skipped[0][1]})")
    echo(f"{'path':<40} {'sse':>9} {'nll':>8} {'score':>8}  anomalous")
    for r in shown:
        echo(f"{r['path'][-40:]:<40} {r['sse']:>9.3f} {r['nll']:>8.3f} "
             f"{'-' if r['score'] is None else format(r['score'], '8.3f'):>8}  {'' if r['anomalous'] is None else r['anomalous']}")
    if seen > len(shown):
        echo(f"... {seen - len(shown)} more" + (f" in {csv_path}" if csv_path is not None else " (--csv FILE lists all)"))
    if threshold is not None:
        echo(f"{flagged} of {seen} flagged (threshold {threshold:.3f}, calibrated at {100 * cal.fpr:g} % "
             f"false positives on {cal.source})")
    report = {"threshold": threshold, "flagged": flagged if threshold is not None else None, "images": listed,
              "skipped": [{"path": p, "error": e} for p, e in skipped]}
    if figure_path is not None:
        from .anomaly import flagged_examples
        from .anomaly_figure import write_score_figure

        write_score_figure(figure_path, np.concatenate(scores_seen) if scores_seen else np.zeros(0), cal,
                           flagged_examples(bundle, [p for _, p in worst], [v for v, _ in worst], invert), flagged)
        echo(f"wrote {figure_path}")
        report["figure"] = str(figure_path)
    if fail_on_anomaly and flagged:
        report[EXIT_CODE] = 3  # after the report is printed
    return report


@main.command(epilog=examples(
    "aetool calibrate --bundle export/cnn-d8 --fpr 0.01   # an MNIST bundle: on MNIST's test set",
    "aetool calibrate --bundle export/parts --data good-parts/   # your own normal images, never trained on",
    "aetool calibrate --bundle cnn-d16 --out export/cnn-d16-calibrated   # a copy of a shipped bundle",
))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Normal images training never saw (a folder, searched recursively; the bundle's training folder "
                   "itself: its validation split). Needed for bundles trained on a folder; default for MNIST "
                   "bundles: MNIST's test set.")
@click.option("--fpr", type=click.FloatRange(min=0, max=0.5, min_open=True), default=0.01, show_default=True,
              help="False-positive rate the threshold keeps (at most) for new normal images like these.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the calibrated bundle here (a copy); default: the bundle in place (not a shipped one).")
@click.option("--force", is_flag=True, help="Replace --out even when it is a folder that is not a bundle.")
@invert_option
@bundle_options
def calibrate(data_dir, fpr, out, force, invert, bundle, echo, quiet):
    """Set the anomaly threshold of a bundle on held-out normal images; stored in its latent.json.

    A fifth of the images standardises the score, the threshold is the rank ceil((n+1)(1-fpr)) of
    n more (at most fpr false positives for new images like them), and the rest measure the rate,
    shown with its 95 % interval. Too few images for the rate: an error, and nothing is written.
    """
    import shutil

    from .anomaly import calibrate_set, calibration_set, summary, write_calibration
    from .bundle import shipped_root
    from .progress import progress

    from .fileio import check_replaceable_dir

    target = out or bundle.path
    if out is None and bundle.path.resolve().is_relative_to(shipped_root().resolve()):
        raise UsageError(f"{bundle.path} ships with aetool: write a calibrated copy with --out DIR")
    copy = out is not None and Path(out).resolve() != bundle.path.resolve()
    if copy:
        check_replaceable_dir(out, force=force)  # before the work: never swap away a folder of the user's
    images = calibration_set(bundle, data_dir)
    cal = calibrate_set(bundle, images, fpr, invert,
                        lambda it: progress(it, quiet=quiet, desc="calibrating", total=-(-len(images) // 256)))
    if copy:
        from .fileio import atomic_dir

        with atomic_dir(out, force=force) as staging:
            for f in bundle.path.iterdir():
                if f.is_file():
                    shutil.copy2(f, staging / f.name)
            write_calibration(staging, cal)
    else:
        write_calibration(target, cal)
    echo(f"calibrated {target}: {summary(cal)}")
    return {"output": str(target), **cal.to_dict()}


@main.command(epilog=examples(
    "aetool bench",
    "aetool bench --batch-sizes 1,64,1024 --seconds 2 --json > bench.json",
    "aetool bench --bundle cnn-d16-int8 --threads 1 --no-torch",
))
@click.option("--batch-sizes", default="1,256", show_default=True, help="Comma-separated batch sizes.")
@click.option("--seconds", type=click.FloatRange(min=0.01, max=600), default=1.0, show_default=True,
              help="Time budget per measurement cell.")
@click.option("--torch/--no-torch", "with_torch", default=None,
              help="Also time the same model in torch eager (default: when torch is installed).")
@bundle_options
def bench(batch_sizes, seconds, with_torch, bundle, echo, quiet):
    """Latency (p50/p90/p99) and images/s of encode, decode and round trip."""
    from .bench import format_table, run_bench, torch_available

    sizes = positive_ints(batch_sizes, "--batch-sizes", "1,256")
    if with_torch and not torch_available():
        raise AetoolError("--torch: PyTorch is not installed")
    report = run_bench(bundle, sizes, with_torch=with_torch, max_seconds=seconds, quiet=quiet)
    echo(format_table(report))
    return report


@main.command(epilog=examples(
    "aetool web -o site/ && python -m http.server -d site     # then open http://localhost:8000",
    "aetool web --bundle cnn-d2 --bundle cnn-d16 -o site/",
    "aetool web --bundle export/photos --images photos/ -o site/ --json",
    "aetool web -o site/ --runtime node_modules/onnxruntime-web/dist",
))
@click.option("--bundle", "bundle_args", multiple=True, metavar="PATH|NAME",
              help="A bundle for the page (repeat for several; fp32 only); default as for every runtime command.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("site"), show_default=True,
              help="The site folder (replaced whole when it is a previous aetool site).")
@click.option("--runtime", "runtime_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="onnxruntime-web's dist folder to copy (default: aetool's cache, filled by scripts/install.sh or fetched from npm once).")
@click.option("--runtime-url", default=None, metavar="URL",
              help="Copy no runtime: the page loads onnxruntime-web from this URL (e.g. a CDN's dist/ folder; needs a network).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Pictures for the map of bundles not trained on MNIST digits (default: no points for them).")
@click.option("--points", type=click.IntRange(min=1, max=10_000), default=2000, show_default=True,
              help="Points on the latent map (MNIST test digits, or pictures of --images).")
@click.option("--force", is_flag=True, help="Replace -o even when it is a folder that is not an aetool site.")
@click.option("--strict", is_flag=True, help="An unreadable file in --images is an error (default: skipped, counted, named).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout instead of text.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def web(bundle_args, out, runtime_dir, runtime_url, images_dir, points, force, strict, as_json, quiet):
    """Write a static page that runs bundles in the browser (onnxruntime-web): latent map, sliders,
    drawing, interpolation and sampling.  Serve the folder with any static server; it works offline."""
    from .web import build_site, check_site_target, find_runtime

    check_site_target(out, force)  # before the runtime is looked for or fetched
    echo = text_echo(quiet, as_json)
    runtime = find_runtime(runtime_dir, runtime_url, log=echo)
    report = build_site(bundle_args, out, runtime, images=images_dir, points=points, force=force, log=echo,
                        note=None if quiet else lambda line: click.echo(line, err=True), strict=strict)
    if as_json:
        emit_json(report)
        return
    names = ", ".join(b["name"] for b in report["bundles"])
    echo(f"wrote {out}/ ({report['bytes'] / 1e6:.1f} MB: {names}; onnxruntime-web "
         f"{'copied from ' + report['runtime'] if report['runtime_copied'] else 'loaded from ' + report['runtime']})")
    echo(f"serve it: python -m http.server -d {out}   (then open http://localhost:8000)")


@main.command(epilog=examples(
    "aetool compare -o compare/             # MNIST: the shipped (or ./export) cnn-d* and pca-d* bundles",
    "aetool compare --d 2,8 -o /tmp/cmp",
    "aetool compare --data photos/ --image-size 64 --channels 3          # d = 8, 32, 128; trains what is missing",
    "aetool compare --data photos/ --d 32 --epochs 30 --json > cmp.json",
    "aetool compare --data photos/ --runs models/cnn-d32-photos,models/pca-d32-photos",
))
@click.option("--d", "ds", default=None, help="Comma-separated latent sizes (default: 2,4,8,16,32 for MNIST; with --data "
              "8,32,128, or those of --runs).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="A folder of your images: PCA against the network on its own validation split, training the runs "
                   "missing from models/ (as aetool train names them).")
@click.option("--image-size", type=click.Choice([str(s) for s in IMAGE_SIZES]), default=None,
              help="With --data: the square the images are resized to (default: nearest to the data).")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="With --data: gray (1) or RGB (3) (default: 1 when every image is gray).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="With --data: epochs of the networks it trains.")
@click.option("--runs", default=None, metavar="RUN,RUN,...",
              help="With --data: compare these trained runs (folders) instead of finding or training them.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("compare"), show_default=True,
              help="Folder for the figures and the table.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed for the sample figures; with --data also of the validation split and the training.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout instead of the table.")
@scale_option
@quiet_option
@click.pass_context
def compare(ctx, ds, data_dir, image_size, channels, epochs, runs, out, seed, device, as_json, scale, quiet):
    """CNN vs PCA at several d: on MNIST the lecture's figures and a table of SSE, PSNR and identity kept;
    on a folder of your images (--data) validation SSE, PSNR and SSIM, and reconstructions side by side."""
    sizes = None if ds is None else positive_ints(ds, "--d", "2,4,8")
    log = logger(quiet or as_json)
    if data_dir is None:
        given = [f"--{name.replace('_', '-')}" for name in ("image_size", "channels", "epochs", "runs")
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise UsageError(f"{', '.join(given)} go with --data DIR (a folder of your images)")
        from .compare import compare as run_compare

        report = run_compare(sizes or (2, 4, 8, 16, 32), out, seed=seed, device=device, scale=scale, log=log)
    else:
        from .compare_folder import compare_folder

        run_list = [Path(r) for r in runs.split(",") if r] if runs else []
        report = compare_folder(data_dir, sizes, out, image_size=None if image_size is None else int(image_size),
                                channels=None if channels is None else int(channels), epochs=epochs, runs=run_list,
                                seed=seed, scale=scale, device=device, quiet=quiet or as_json, log=log)
    if as_json:
        emit_json({k: v for k, v in report.items() if k != "table"})
        return
    click.echo(report["table"])
    click.echo(f"wrote {len(report['figures'])} figures and table.md / table.json to {out}/")


@main.command(epilog=examples(
    "aetool evaluate                        # the default bundle on all 10,000 MNIST test digits",
    "aetool evaluate --bundle cnn-d16-int8 --images 1000 --json",
))
@click.option("--images", "n_images", type=click.IntRange(min=1, max=10_000), default=10_000, show_default=True,
              help="Evaluate on the first N MNIST test digits.")
@bundle_options
def evaluate(n_images, bundle, echo, quiet):
    """Score a bundle on the MNIST test set: SSE per image, PSNR and identity kept."""
    from .classify import DigitClassifier
    from .compare import evaluate as evaluate_bundle
    from .data import mnist_test_head

    if bundle.meta.image.preprocessing != "mnist_digit":
        raise UsageError(f"evaluate scores MNIST digits; bundle {bundle.name} was trained on other images "
                         f"(its validation numbers are in aetool info)")
    test = mnist_test_head(n_images)
    row, _ = evaluate_bundle(bundle, test.images, test.labels, DigitClassifier(device="cpu"), n_show=min(36, n_images))
    echo(f"{bundle.name} on {n_images} test digits: SSE/image {row['test_sse_per_image']:.3f}, "
         f"PSNR {row['psnr_db']:.2f} dB, identity kept {100 * row['identity_kept']:.2f} %")
    return {"images": n_images, **row}


@main.command(epilog=examples("aetool info", "aetool info cnn-d2", "aetool info export/mine --json"))
@click.argument("bundle_arg", metavar="[BUNDLE]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print latent.json's summary and records as JSON.")
def info(bundle_arg, as_json):
    """Describe a bundle (BUNDLE: a folder or a name; default as for every runtime command)."""
    from .bundle import resolve_bundle_path
    from .bundle_format import read_meta

    path = resolve_bundle_path(bundle_arg, note=lambda line: click.echo(line, err=True))
    m = read_meta(path)
    from .anomaly import no_threshold_reason, summary as anomaly_summary

    if as_json:
        emit_json({"path": str(path), **m.summary(),
                   "graphs": {part: {"parameters": g.parameters, "macs_per_image": g.macs, "form": g.form}
                              for part, g in (("encoder", m.encoder), ("decoder", m.decoder))},
                   "density_test_log_likelihood_per_dim": m.density_test_log_likelihood_per_dim,
                   "training": m.training, "variant": m.variant, "anomaly": None if m.anomaly is None else m.anomaly.to_dict(),
                   "no_threshold": None if m.anomaly is not None and m.anomaly.threshold is not None
                   else no_threshold_reason(m.anomaly)})
        return
    click.echo(f"{path}: {m.family}, d={m.d}, {m.precision}, image {'x'.join(map(str, m.image.shape))} in "
               f"{list(m.image.range)}, preprocessing {m.image.preprocessing}")
    click.echo("graphs: " + "; ".join(f"{part} {_count(g.parameters)} parameters, {_count(g.macs)} multiply-adds per image"
                                      for part, g in (("encoder", m.encoder), ("decoder", m.decoder))))
    scores = "".join(f", {k} {v:.3f}" for k, v in m.density_test_log_likelihood_per_dim.items())
    others = sorted(set(m.densities) - {m.default_density})
    click.echo(f"density {m.default_density} (default)" + "".join(f", {k}" for k in others)
               + (f"; test log-likelihood per latent dim{scores}" if scores else ""))
    t = m.training_record
    options = t.options
    chain = " <- ".join(_start(entry) for entry in t.started_from)
    click.echo(f"trained {_fmt(t.epochs, 'd')} epoch(s) on {t.train_images} images: "
               f"test SSE/image {_fmt(t.test_sse_per_image)}, "
               f"PSNR {_fmt(t.test_psnr_db)} dB"
               + (f"; started from {chain}: {_fmt(t.epochs_in_all, 'd')} epochs in all" if chain else "")
               + (f"; weights the mean of its last {options.average_last} epochs" if options.average_last else "")
               + (f"; {_shifted(options.shift)}" if options.shift else "")
               + (f"; denoising, input noise {options.denoise:g}" if options.denoise else "")
               + (f"; normal class {options.normal_class!r} only" if options.normal_class is not None else ""))
    click.echo(anomaly_summary(m.anomaly))
    if m.variant:
        v = m.variant
        click.echo(f"variant of {v.get('source')}: test SSE/image {_fmt(v.get('test_sse_per_image'))} "
                   f"(fp32 {_fmt(v.get('fp32_test_sse_per_image'))})")


def _count(n: int | None) -> str:
    """1.73 M, 105.2 M; "?" for a bundle exported before the counts were recorded."""
    return "?" if n is None else f"{n / 1e6:.2f} M" if n < 1e8 else f"{n / 1e9:.2f} G"


@main.command("list", epilog=examples("aetool list", "aetool list --json"))
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_cmd(as_json):
    """List the bundles found: the workspace's ./export (newest first), then those the package ships."""
    from .bundle import list_bundles, shipped_root
    from .bundle_format import read_meta

    rows = []
    for where, root in (("workspace", Path("export")), ("shipped", shipped_root())):
        for path in list_bundles(root):
            try:
                meta = read_meta(path)
            except AetoolError as e:
                rows.append({"where": where, "path": str(path), "name": path.name, "error": str(e)})
                continue
            size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
            rows.append({"where": where, "path": str(path), **meta.summary(), "bytes": size})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no bundles found")
    click.echo(f"{'name':<16} {'where':<9} {'family':<6} {'d':>3} {'precision':<9} {'density':<17} {'size':>8}")
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']:<16} {r['where']:<9} unreadable: {r['error']}")
            continue
        click.echo(f"{r['name']:<16} {r['where']:<9} {r['family']:<6} {r['d']:>3} {r['precision']:<9} "
                   f"{r['default_density']:<17} {r['bytes'] / 1e6:>6.2f} MB")


def _start(entry: StartRecord) -> str:
    """One start of a run's chain: its name, epochs, and how it differed (revived, moved digits)."""
    notes = [f"{entry.epochs} epochs"] + (["revived"] if entry.revived else [])
    notes += [_shifted(entry.shift)] if entry.shift else []
    return f"{entry.run} ({', '.join(notes)})"


def _shifted(pixels: int) -> str:
    return f"digits shifted by up to {pixels} pixel{'s' if pixels != 1 else ''}"


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "?" if value is None else format(value, spec)


if __name__ == "__main__":
    main()

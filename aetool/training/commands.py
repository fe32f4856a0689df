"""The commands that use PyTorch: train, export, train-classifier, compare (it trains what it
lacks) and bench (torch eager beside onnxruntime).  torch itself is imported when a command runs,
so ``aetool --help`` stays quick; the root group (aetool.cli) loads this module by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from ..commands.common import (SEED, Command, FloatRange, bundle_options, emit_json, examples, logger, positive_ints,
                               quiet_option, scale_option)
from ..errors import AetoolError, UsageError
from ..lecture import IMAGE_SIZES


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

    from .config import TrainConfig

    for fld in reversed(dataclasses.fields(TrainConfig)):
        spec = fld.metadata["option"]
        if "/" in spec.flags[0] or fld.type == "bool":
            kwargs: dict[str, Any] = {"default": None} if "/" in spec.flags[0] else {"is_flag": True, "default": None}
        elif spec.choices is not None:
            kwargs = {"type": click.Choice([str(c) for c in spec.choices]), "default": None}
        elif fld.type.startswith(("int", "float")):
            rng = click.IntRange if fld.type.startswith("int") else FloatRange
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

    from .config import TrainConfig

    out = {}
    for fld in dataclasses.fields(TrainConfig):
        value = options.get(fld.name)
        if value is not None:
            out[fld.name] = int(value) if fld.type.startswith("int") and isinstance(value, str) else value
    return out


@click.command(cls=TrainCommand, epilog=examples(
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
    from .config import TrainConfig, load_recipe

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
        from .train import train_recipe

        for stage in recipe.stages:
            stage.config.device, stage.config.cuda_graph = device, cuda_graph
        metrics = train_recipe(recipe, quiet=quiet, log=log)
        out = recipe.final.out
    else:
        config = TrainConfig(**given)
        config.validate()
        if not resume:  # before torch is imported: a refused option is answered at once
            config.refuse_unused(given)
        from .train import resume_config, train as run_training

        out = out or Path("models") / config.default_run_name()
        if resume:  # the device is this machine's, not the run's
            config = resume_config(out, given.get("epochs"), given.get("batch_size"), device, cuda_graph, given=given)
        metrics = run_training(config, out, resume=resume, force=force, quiet=quiet, stop_after=stop_after, log=log)
    from .distributed import launched_rank

    if launched_rank() != 0:  # under torchrun rank 0 alone reports
        return
    if not metrics["complete"]:
        click.echo(f"paused: {out} after epoch {metrics['epochs_done']} of {metrics['config']['epochs']}, held-out SSE/image "
                   f"{metrics['test_sse_per_image']:.3f}; continue with: aetool train --out {out} --resume")
        return
    heldout = (metrics.get("data") or {}).get("heldout", "test")
    click.echo(f"done: {out}  {heldout} SSE/image {metrics['test_sse_per_image']:.3f}, PSNR {metrics['test_psnr_db']:.2f} dB "
               f"after {metrics['epochs_done']} epoch(s); next: aetool export {out}")


@click.command(cls=Command, epilog=examples(
    "aetool export                          # newest run in models/ -> export/<its name>/",
    "aetool export models/cnn-d8 --int8     # also export/cnn-d8-int8/, for CPUs with VNNI",
    "aetool export cnn-d8 --out /tmp/b      # any folder",
))
@click.argument("run", required=False)
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
              show_default=True, help="Where runs live.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle folder (default: export/<run name>).")
@click.option("--tolerance", type=FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Largest allowed |onnxruntime - torch| in the self-check (times the largest output where that exceeds 1).")
@click.option("--int8", is_flag=True, help="Also write a static int8 variant, <out>-int8 (calibrated on training images).")
@click.option("--fp16", is_flag=True, help="Also write an fp16 variant for GPUs, <out>-fp16 (checked at fp16 tolerance).")
@click.option("--eval-images", type=click.IntRange(min=1, max=10_000), default=10_000, show_default=True,
              help="Test images on which the variants' error is measured.")
@click.option("--fpr", type=FloatRange(min=0, max=0.5), default=0.01, show_default=True,
              help="Calibrate the anomaly threshold for this false-positive rate on held-out images (0: none).")
@click.option("--last", is_flag=True, help="Export the last epoch's weights (default: the best held-out epoch's).")
@quiet_option
def export(run, models_dir, out, tolerance, int8, fp16, eval_images, fpr, last, quiet):
    """Export a run (RUN: a folder or a name in models/; default the newest) to an ONNX bundle.

    The bundle is checked against PyTorch before it replaces anything at --out.
    """
    from ..fileio import check_replaceable_dir
    from .export import export_run
    from .run import find_run

    log = logger(quiet)
    run_dir = find_run(models_dir, run)
    out = out or Path("export") / run_dir.name
    out = check_replaceable_dir(out)  # before the work: '.', a file, or a folder that is no bundle
    for variant, wanted in (("int8", int8), ("fp16", fp16)):
        if wanted:
            check_replaceable_dir(out.with_name(f"{out.name}-{variant}"))
    export_run(run_dir.path, out, tolerance=tolerance, fpr=fpr, last=last, log=log)
    if int8:
        from .variants import quantize_int8

        quantize_int8(out, out.with_name(f"{out.name}-int8"), eval_images=eval_images, log=log)
    if fp16:
        from .variants import convert_fp16

        convert_fp16(out, out.with_name(f"{out.name}-fp16"), eval_images=eval_images, log=log)


@click.command("train-classifier", cls=Command, epilog=examples("aetool train-classifier --epochs 10"))
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Train on the first N images only.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("models/digit-classifier"),
              show_default=True)
@quiet_option
def train_classifier_cmd(epochs, seed, limit, device, out, quiet):
    """Train the MNIST digit classifier that scores identity kept (ONNX in --out)."""
    from .classifier import train_classifier

    m = train_classifier(out, epochs=epochs, seed=seed, limit=limit, device=device, quiet=quiet, log=logger(quiet))
    click.echo(f"done: {out}/classifier.onnx, test accuracy {100 * m['test_accuracy']:.2f} %")


@click.command(cls=Command, epilog=examples(
    "aetool bench",
    "aetool bench --batch-sizes 1,64,1024 --seconds 2 --json > bench.json",
    "aetool bench --bundle cnn-d16-int8 --threads 1 --no-torch",
))
@click.option("--batch-sizes", default="1,256", show_default=True, help="Comma-separated batch sizes.")
@click.option("--seconds", type=FloatRange(min=0.01, max=600), default=1.0, show_default=True,
              help="Time budget per measurement cell.")
@click.option("--torch/--no-torch", "with_torch", default=None,
              help="Also time the same model in torch eager (default: when torch is installed).")
@bundle_options
def bench(batch_sizes, seconds, with_torch, bundle, echo, quiet):
    """Latency (p50/p90/p99) and images/s of encode, decode and round trip."""
    from ..bench import format_table, run_bench, torch_available

    sizes = positive_ints(batch_sizes, "--batch-sizes", "1,256")
    if with_torch and not torch_available():
        raise AetoolError("--torch: PyTorch is not installed")
    if with_torch is None:
        with_torch = torch_available()
    if with_torch:
        from .torch_from_onnx import torch_ops
    report = run_bench(bundle, sizes, torch_ops=torch_ops if with_torch else None, max_seconds=seconds, quiet=quiet)
    echo(format_table(report))
    return report


@click.command(cls=Command, epilog=examples(
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
        from ..compare import compare as run_compare

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

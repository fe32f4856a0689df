"""Turn a training run into a bundle, and prove the bundle computes what PyTorch does.

The check is the point: ``onnx.checker`` on both graphs, then onnxruntime
against PyTorch on real test images at batch sizes 1, 7 and 256 for encoder,
decoder and the round trip.  Past ``tolerance`` the export fails and nothing
is written to the destination.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import __version__
from ..bundle import DECODER, ENCODER, LATENT, SCHEMA_VERSION, sha256_file
from ..data import load_mnist
from ..errors import AetoolError
from ..fileio import atomic_dir, read_json, write_json
from ..lecture import IMAGE_SHAPE, NB_CHANNELS
from ..runtime import make_session
from ..density import DiagonalGaussian, GaussianMixture, density_from_dict
from .conv_form import conv_form
from .model import AutoEncoder
from .train import CHECKPOINT, DENSITY, METRICS, forward_all, load_checkpoint

DEFAULT_DENSITY = "gaussian_mixture"
CHECK_BATCHES = (1, 7, 256)
TOLERANCE = 1e-4
DECODER_FORM = "stride-1 ConvTranspose layers between feature maps exported as the equivalent Conv (aetool.training.conv_form)"


def build_model(config: dict) -> torch.nn.Module:
    if config.get("model", "cnn") == "pca":
        from .pca import PCAAutoEncoder

        return PCAAutoEncoder(config["d"])
    return AutoEncoder(config["d"], config.get("nb_channels", NB_CHANNELS))


def load_run_model(run_dir: Path) -> tuple[torch.nn.Module, dict]:
    state = load_checkpoint(run_dir)
    if "config" not in state or "model" not in state:
        raise AetoolError(f"{run_dir}: {CHECKPOINT} is not an aetool autoencoder run")
    model = build_model(state["config"])
    model.load_state_dict(state["model"])
    return model.eval(), state


def find_run(models_dir: Path, run: str | None = None) -> Path:
    """A run by path or by name under ``models_dir``; else the newest one there."""
    if run is not None:
        for path in (Path(run), Path(models_dir) / run):
            if (path / CHECKPOINT).is_file():
                return path
        raise AetoolError(f"run {run}: not found (no {CHECKPOINT} at {run} or {Path(models_dir) / run})")
    runs = [p for p in Path(models_dir).glob(f"*/{CHECKPOINT}") if (p.parent / METRICS).is_file()] if Path(models_dir).is_dir() else []
    if not runs:
        raise AetoolError(f"no training run in {models_dir}/: run `aetool train` first, or name one")
    return max(runs, key=lambda p: p.stat().st_mtime).parent


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints progress and logs warnings; a CLI summary is enough."""
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_graph(module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> None:
    """One self-contained .onnx file with a dynamic batch axis."""
    with _quiet_exporter():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1)}},
        )


def check_graphs(model: torch.nn.Module, folder: Path, images: np.ndarray, tolerance: float = TOLERANCE) -> dict:
    """onnx.checker, then onnxruntime vs PyTorch; returns the largest differences seen."""
    import onnx

    for name in (ENCODER, DECODER):
        try:
            onnx.checker.check_model(str(folder / name), full_check=True)
        except Exception as e:
            raise AetoolError(f"export check failed: onnx.checker rejects {name} ({str(e).splitlines()[0]})") from None
    enc, _ = make_session(folder / ENCODER, "cpu")
    dec, _ = make_session(folder / DECODER, "cpu")
    worst = {"encoder": 0.0, "decoder": 0.0, "roundtrip": 0.0}
    with torch.no_grad():
        for n in CHECK_BATCHES:
            x = np.ascontiguousarray(images[:n], dtype=np.float32)
            z_ref = model.encoder(torch.from_numpy(x))
            x_ref = model.decoder(z_ref).numpy()
            z_ref = z_ref.numpy()
            z = enc.run(None, {"image": x})[0]
            diffs = {
                "encoder": np.abs(z - z_ref).max(),
                "decoder": np.abs(dec.run(None, {"latent": z_ref})[0] - x_ref).max(),
                "roundtrip": np.abs(dec.run(None, {"latent": z})[0] - x_ref).max(),
            }
            for part, diff in diffs.items():
                if not diff <= tolerance:  # also catches NaN
                    raise AetoolError(f"export check failed: {part} differs from PyTorch by {diff:.3g} > {tolerance:g} at batch {n}")
                worst[part] = max(worst[part], float(diff))
    return worst


def export_run(run_dir: Path, out_dir: Path, *, tolerance: float = TOLERANCE, log: Callable[[str], None] = print) -> dict:
    """Export ``run_dir`` to the bundle folder ``out_dir``, replaced only once fully checked."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, state = load_run_model(run_dir)
    config = state["config"]
    metrics = read_json(run_dir / METRICS)
    if not (run_dir / DENSITY).is_file():
        raise AetoolError(f"run {run_dir}: no {DENSITY} yet (training has not finished; resume it with --resume)")
    density = read_json(run_dir / DENSITY)
    d = int(config["d"])
    test = load_mnist("test", config.get("data"))
    images = test.images[: max(CHECK_BATCHES)]
    densities, test_ll = fit_densities(model, density, config, test.images)
    lineage = run_lineage(run_dir, config)

    with atomic_dir(out_dir) as staging:
        export_graph(model.encoder, torch.from_numpy(images[:2]), staging / ENCODER, "image", "latent")
        with torch.no_grad():
            z = model.encoder(torch.from_numpy(images[:2]))
        family = config.get("model", "cnn")
        # the CNN decoder ships in its conv form: same function, faster and quantizable in onnxruntime
        export_graph(conv_form(model.decoder) if family == "cnn" else model.decoder, z, staging / DECODER, "latent", "image")
        diffs = check_graphs(model, staging, images, tolerance)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "name": out_dir.name,
            "family": family,
            "d": d,
            "image": {"shape": list(IMAGE_SHAPE), "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW",
                      "foreground": "white digit on black, as MNIST"},
            "density": densities[DEFAULT_DENSITY],  # what `aetool sample` draws from unless told otherwise
            "densities": densities,
            "density_test_log_likelihood_per_dim": test_ll,
            "graphs": {
                "encoder": {"file": ENCODER, "input": "image", "output": "latent", "sha256": sha256_file(staging / ENCODER)},
                "decoder": {"file": DECODER, "input": "latent", "output": "image", "sha256": sha256_file(staging / DECODER),
                            "form": DECODER_FORM if family == "cnn" else "as trained"},
                "opset": _opset(staging / ENCODER),
                "batch_axis": "dynamic",
            },
            "training": {
                "data": metrics.get("data"),
                "epochs": metrics.get("epochs_done"),
                "started_from": lineage,
                "epochs_in_all": epochs_in_all(metrics.get("epochs_done"), lineage),
                "config": config,
                "parameters": metrics.get("parameters"),
                "test_sse_per_image": metrics.get("test_sse_per_image"),
                "test_psnr_db": metrics.get("test_psnr_db"),
            },
            "export": {
                "aetool": __version__,
                "torch": torch.__version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "check": {"batches": list(CHECK_BATCHES), "tolerance": tolerance, "max_abs_diff": diffs},
            },
        }
        write_json(staging / LATENT, meta)
    log(f"exported {run_dir} -> {out_dir}  ({meta['family']}, d={d}, "
        f"max |onnxruntime - torch| {max(diffs.values()):.2g} over batches {', '.join(map(str, CHECK_BATCHES))})")
    return meta


def run_lineage(run_dir: Path, config: dict) -> list[dict]:
    """The chain of runs this one was started from (--init-from), nearest first, each with its own epochs
    and the --shift it trained with (None where the start is gone).

    A restarted run's own epoch count hides what its starts cost; the bundle keeps the chain so a
    table can report the training in all. A start is looked for beside the run, then at the stored
    path; where it is gone its epochs are None and the chain ends there.
    """
    lineage: list[dict] = []
    seen = {Path(run_dir).resolve()}
    while config.get("init_from"):
        stored = Path(config["init_from"])
        start = next((p for p in (Path(run_dir).parent / stored.name, stored) if (p / METRICS).is_file()), None)
        entry = {"run": stored.name, "epochs": None, "revived": bool(config.get("revive_dead")), "shift": None}
        lineage.append(entry)
        if start is None or start.resolve() in seen:
            break
        seen.add(start.resolve())
        start_metrics = read_json(start / METRICS)
        entry["epochs"] = start_metrics.get("epochs_done")
        config, run_dir = start_metrics.get("config", {}), start
        entry["shift"] = config.get("shift", 0)  # a start trained on moved digits is a different recipe
    return lineage


def epochs_in_all(own: int | None, lineage: list[dict]) -> int | None:
    """A run's epochs plus those of every start before it; None where any is unknown."""
    counts = [own, *(entry["epochs"] for entry in lineage)]
    return None if any(c is None for c in counts) else sum(counts)


def fit_densities(model: torch.nn.Module, diagonal: dict, config: dict, test_images: np.ndarray, *, components: int = 10,
                  fit_size: int = 20_000, seed: int = 0) -> tuple[dict, dict]:
    """The run's diagonal Gaussian (the lecture's) and a Gaussian mixture fitted here on f(train).

    Each is scored by the mean log-likelihood per latent dimension of f(test),
    held-out latents, so "the mixture fits better" is a number in latent.json.
    """
    train = load_mnist("train", config.get("data"))
    if config.get("limit"):
        train = train.head(int(config["limit"]))
    cpu = torch.device("cpu")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(train))[:fit_size]  # EM on 20,000 latents: seconds, and as good as 60,000
    z_train = forward_all(model.encoder, train.images[np.sort(pick)], cpu)
    z_test = forward_all(model.encoder, test_images, cpu)
    fitted = {DiagonalGaussian.kind: density_from_dict(diagonal),
              GaussianMixture.kind: GaussianMixture(min(components, len(z_train))).fit(z_train, seed=seed)}
    d = z_test.reshape(len(z_test), -1).shape[1]
    test_ll = {kind: float(p.log_prob(z_test).mean() / d) for kind, p in fitted.items()}
    return {kind: p.to_dict() for kind, p in fitted.items()}, test_ll


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))

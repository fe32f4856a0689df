"""Export to ONNX and prove the graphs compute what their reference does.

Shaped like Optimum's exporter: a :class:`GraphConfig` says what a graph is
(module, input and output names, file), :func:`export_graph` writes it, and
:func:`validate_graph` runs it in onnxruntime against a reference on real
inputs at several batch sizes, failing past one tolerance.  The autoencoder's
two graphs, the digit classifier and the int8/fp16 variants all go through
that one validator.

:func:`export_run` turns a training run into a bundle: config -> graphs ->
validation -> ``latent.json`` (aetool.bundle_format), written into a staging
folder that replaces the destination only once everything passed.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .. import __version__
from ..bundle_format import (DECODER, ENCODER, ENCODER_INPUT, ENCODER_OUTPUT, BundleMeta, GraphInfo, StartRecord,
                             TrainingRecord, sha256_file, write_meta)
from ..density import DiagonalGaussian, GaussianMixture, density_from_dict
from ..errors import AetoolError
from ..metrics import psnr_from_sse
from ..fileio import atomic_dir
from ..runtime import make_session
from .config import config_from_dict
from ..datasets import TrainingData, as_float, load_training_data
from .families import ArchConfig, Family, get_family
from .model import count_macs, count_parameters, forward_all
from .run import RunFolder, epochs_in_all

DEFAULT_DENSITY = GaussianMixture.kind
CHECK_BATCHES = (1, 7, 256)
TOLERANCE = 1e-4

@dataclass
class GraphConfig:
    """One graph to export: the module, the file, and its single input and output.

    ``checked_against`` is the module the graph must match where the exported
    one is a rewrite of it (the decoder's conv form against the lecture's decoder);
    ``rewrite`` edits the written file in place before it is validated (the
    decoder's DepthToSpace order, which PyTorch cannot express).
    """

    module: torch.nn.Module
    file: str
    input_name: str
    output_name: str
    checked_against: torch.nn.Module | None = None
    rewrite: Callable[[Path], object] | None = None

    def reference(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (self.checked_against or self.module).eval()(torch.from_numpy(x)).numpy()


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


def export_graph(graph: GraphConfig, folder: Path, example: np.ndarray) -> Path:
    """One self-contained .onnx file with a dynamic batch axis."""
    path = Path(folder) / graph.file
    with _quiet_exporter():
        torch.onnx.export(
            graph.module.eval(),
            (torch.from_numpy(np.ascontiguousarray(example[:2])),),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=[graph.input_name],
            output_names=[graph.output_name],
            dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1)}},
        )
    if graph.rewrite is not None:
        graph.rewrite(path)
    return path


def validate_graph(path: Path, input_name: str, reference: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray,
                   tolerance: float, *, what: str | None = None, batches: Sequence[int] = CHECK_BATCHES,
                   checker: bool = True) -> float:
    """onnx.checker, then onnxruntime against ``reference`` on the first 1, 7, 256 ``inputs``.

    Returns the largest absolute difference seen; past ``tolerance`` (or NaN) it
    raises, naming the graph and the batch size.  The tolerance is absolute for
    outputs within [-1, 1] (pictures) and scales with the largest one beyond that:
    a latent coordinate sums tens of thousands of pixels, and float32 sums in
    another order differ by more than 1e-4 once the sum is in the tens.
    ``checker=False`` skips onnx.checker for graphs that onnxruntime's own tools
    rewrote (the variants: its fp16 converter leaves nodes out of topological
    order, which the checker rejects and onnxruntime runs).
    """
    import onnx

    what = what or Path(path).stem
    try:
        if checker:
            onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # the checker raises several types
        raise AetoolError(f"export check failed: onnx.checker rejects {Path(path).name} ({str(e).splitlines()[0]})") from None
    session, _ = make_session(path, "cpu")
    worst = 0.0
    for n in batches:
        x = np.ascontiguousarray(inputs[:n], dtype=np.float32)
        expected = reference(x)
        diff = float(np.abs(session.run(None, {input_name: x})[0] - expected).max())
        allowed = tolerance * max(1.0, float(np.abs(expected).max()))
        if not diff <= allowed:  # also catches NaN
            raise AetoolError(f"export check failed: {what} differs from its reference by {diff:.3g} > {allowed:.3g} "
                              f"at batch {n}")
        worst = max(worst, diff)
    return worst


def autoencoder_graphs(model: torch.nn.Module, family: Family) -> tuple[GraphConfig, GraphConfig, str]:
    """The bundle's two graphs in the family's export form (the lecture's decoder in its conv form,
    the photo network with BatchNorm folded), each checked against the module as trained; and the
    decoder's form in words."""
    encoder, decoder, rewrite, form = family.export_modules(model)
    return (GraphConfig(encoder, ENCODER, ENCODER_INPUT, ENCODER_OUTPUT, checked_against=model.encoder),
            GraphConfig(decoder, DECODER, ENCODER_OUTPUT, ENCODER_INPUT, checked_against=model.decoder, rewrite=rewrite),
            form)


def export_run(run_dir: Path, out_dir: Path, *, tolerance: float = TOLERANCE, fpr: float = 0.01, last: bool = False,
               log: Callable[[str], None] = print) -> BundleMeta:
    """Export the run in ``run_dir`` to the bundle folder ``out_dir``, replaced only once fully checked.

    The weights are those of the run's best held-out epoch (a run that got worse at its end ships
    what it was at its best), or with ``last`` those of its last epoch."""
    run, out_dir = RunFolder(run_dir), Path(out_dir)
    model, state = run.load_model(best=not last)
    config = state["config"]
    arch = ArchConfig.from_stored(state, str(run.path))
    family = get_family(arch.family)
    metrics = run.read_metrics()
    diagonal = run.read_density()
    data = load_training_data(config_from_dict(config, run.path).selection(), quiet=True)  # a folder's from its cache
    weights = state.get("weights", "last")
    if weights != "last":  # the run's density was fitted on its last weights: these need their own
        diagonal = DiagonalGaussian().fit(forward_all(model.encoder, data.train)).to_dict()
    images = as_float(data.heldout[: max(CHECK_BATCHES)])
    t0 = time.perf_counter()
    densities, test_ll = fit_densities(model, diagonal, data)
    log(f"fitted the latent densities in {time.perf_counter() - t0:.1f} s")

    encoder, decoder, decoder_form = autoencoder_graphs(model, family)
    with atomic_dir(out_dir) as staging:
        latents = encoder.reference(images)
        export_graph(encoder, staging, images)
        export_graph(decoder, staging, latents)
        diffs = {
            "encoder": validate_graph(staging / ENCODER, ENCODER_INPUT, encoder.reference, images, tolerance),
            "decoder": validate_graph(staging / DECODER, ENCODER_OUTPUT, decoder.reference, latents, tolerance),
        }
        # the round trip: onnxruntime's own latents through the decoder, against PyTorch's reconstruction
        enc_session, _ = make_session(staging / ENCODER, "cpu")
        diffs["roundtrip"] = validate_graph(
            staging / DECODER, ENCODER_OUTPUT, lambda z: decoder.reference(latents[: len(z)]),
            enc_session.run(None, {ENCODER_INPUT: images})[0], tolerance, what="round trip")
        meta = BundleMeta(
            name=out_dir.name,
            family=family.name,
            d=arch.d,
            image=data.image,
            encoder=GraphInfo(ENCODER, ENCODER_INPUT, ENCODER_OUTPUT, sha256_file(staging / ENCODER),
                              parameters=count_parameters(encoder.module), macs=count_macs(encoder.module, torch.from_numpy(images))),
            decoder=GraphInfo(DECODER, ENCODER_OUTPUT, ENCODER_INPUT, sha256_file(staging / DECODER), form=decoder_form,
                              parameters=count_parameters(decoder.module), macs=count_macs(decoder.module, torch.from_numpy(latents))),
            densities=densities,
            default_density=DEFAULT_DENSITY,
            density_test_log_likelihood_per_dim=test_ll,
            opset=_opset(staging / ENCODER),
            training=TrainingRecord(
                arch=arch.to_dict(),
                weights=weights,
                best_epoch=metrics.get("best_epoch"),
                data=metrics.get("data"),
                epochs=metrics.get("epochs_done"),
                started_from=tuple(StartRecord.from_dict(e) for e in metrics.get("started_from", [])),
                epochs_in_all=epochs_in_all(metrics.get("epochs_done"), metrics.get("started_from", [])),
                config=config,
                parameters=metrics.get("parameters"),
                layers=metrics.get("layers"),
                speed=metrics.get("speed"),
                test_sse_per_image=state.get("sse", metrics.get("test_sse_per_image")),
                test_psnr_db=psnr_from_sse(state["sse"], data.image.pixels) if "sse" in state else metrics.get("test_psnr_db"),
            ).to_dict(),
            export={
                "aetool": __version__,
                "torch": torch.__version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "check": {"batches": list(CHECK_BATCHES), "tolerance": tolerance, "max_abs_diff": diffs},
            },
        )
        write_meta(staging, meta)
        from ..anomaly import export_calibration
        from ..bundle import load_bundle

        calibrated = None
        if fpr:  # the anomaly threshold, on the held-out images (aetool calibrate --data DIR can redo it)
            calibrated = export_calibration(load_bundle(staging, device="cpu"), as_float(data.heldout[:]), fpr,
                                            f"{data.heldout_name} images ({data.info.get('name')})")
            meta.anomaly = calibrated.calibration
            if meta.anomaly is not None:
                write_meta(staging, meta)
    log(f"exported {run} -> {out_dir}  ({family.name}, d={meta.d}, {weights} weights, "
        f"max |onnxruntime - torch| {max(diffs.values()):.2g} over batches {', '.join(map(str, CHECK_BATCHES))})")
    if calibrated is not None:
        log(calibrated.line)
    return meta


def fit_densities(model: torch.nn.Module, diagonal: dict, data: TrainingData, *, components: int = 10,
                  fit_size: int = 20_000, seed: int = 0) -> tuple[dict, dict]:
    """The run's diagonal Gaussian (the lecture's) and a Gaussian mixture fitted here on f(train).

    Each is scored by the mean log-likelihood per latent dimension of f(held out),
    so "the mixture fits better" is a number in latent.json.
    """
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(data.train))[:fit_size]  # EM on 20,000 latents: as good as on 60,000
    z_train = forward_all(model.encoder, data.train[np.sort(pick)])
    z_test = forward_all(model.encoder, data.heldout)
    fitted = {DiagonalGaussian.kind: density_from_dict(diagonal),
              GaussianMixture.kind: GaussianMixture(min(components, len(z_train)), random_state=seed).fit(z_train)}
    d = z_test.reshape(len(z_test), -1).shape[1]
    test_ll = {kind: float(p.score_samples(z_test).mean() / d) for kind, p in fitted.items()}
    return {kind: p.to_dict() for kind, p in fitted.items()}, test_ll


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))

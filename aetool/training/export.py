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
from typing import Any, Callable, Sequence

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
from ..anomaly import CHANGED_SPLIT
from ..datasets import TrainingData, as_float, check_same_split, load_training_data
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


def export_graph(graph: GraphConfig, folder: Path, example: np.ndarray, scale: int | None = None) -> Path:
    """One self-contained .onnx file with a dynamic batch axis; with ``scale`` (a map family's
    factor, or 1 for its decoder) dynamic height and width too, multiples of ``scale``."""
    path = Path(folder) / graph.file
    axes: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if scale is not None:
        h, w = torch.export.Dim("height", min=1, max=1 << 14), torch.export.Dim("width", min=1, max=1 << 14)
        axes.update({2: h * scale, 3: w * scale} if scale > 1 else {2: h, 3: w})
    with _quiet_exporter():
        torch.onnx.export(
            graph.module.eval(),
            (torch.from_numpy(np.ascontiguousarray(example[:2])),),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=[graph.input_name],
            output_names=[graph.output_name],
            dynamic_shapes={"input": axes},
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
    _, metrics = run.check_whole()  # before any work: the run's files, each and together
    if metrics is None:
        raise AetoolError(f"{run.path}: no metrics.json (training has not finished an epoch; resume it with --resume)")
    model, state = run.load_model(best=not last)
    config = state["config"]
    arch = ArchConfig.from_stored(state, str(run.path))
    family = get_family(arch.family)
    diagonal = run.read_density()
    data = load_training_data(config_from_dict(config, run.path).selection(), quiet=True)  # a folder's from its cache
    check_same_split(metrics.get("data"), data, f"export {run.path}", CHANGED_SPLIT)
    weights = state.get("weights", "last")
    codes = _codes(model, arch, data)
    if weights != "last":  # the run's density was fitted on its last weights: these need their own
        diagonal = DiagonalGaussian().fit(codes.of(data.train)).to_dict()
    t0 = time.perf_counter()
    densities, test_ll, default_density = fit_densities(diagonal, codes, log=log)
    log(f"fitted the latent densities in {time.perf_counter() - t0:.1f} s")

    encoder, decoder, decoder_form = autoencoder_graphs(model, family)
    shapes = map_check_shapes(data.heldout, arch) if arch.is_map else None
    images = shapes[0] if shapes else as_float(data.heldout[: max(CHECK_BATCHES)])
    with atomic_dir(out_dir) as staging:
        latents = encoder.reference(images)
        export_graph(encoder, staging, images, scale=arch.factor)
        export_graph(decoder, staging, latents, scale=1 if arch.is_map else None)
        diffs = _check_graphs(staging, encoder, decoder, shapes or [images], tolerance,
                              MAP_CHECK_BATCHES if arch.is_map else CHECK_BATCHES)
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
            default_density=default_density,
            density_test_log_likelihood_per_dim=test_ll,
            latent=family.latent_layout(arch),
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
                test_psnr_db=_test_psnr(state, metrics, data),
            ).to_dict(),
            export={
                "aetool": __version__,
                "torch": torch.__version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "check": {"batches": list(MAP_CHECK_BATCHES if arch.is_map else CHECK_BATCHES),
                          **({"sizes": [list(x.shape[2:]) for x in shapes]} if shapes else {}),
                          "tolerance": tolerance, "max_abs_diff": diffs},
            },
        )
        write_meta(staging, meta)
        from ..anomaly import export_calibration
        from ..bundle import load_bundle

        calibrated = None
        if fpr:  # the anomaly threshold, on the held-out images (aetool calibrate --data DIR can redo it)
            heldout = data.heldout.floats() if arch.is_map else as_float(data.heldout[:])
            calibrated = export_calibration(load_bundle(staging, device="cpu"), heldout, fpr,
                                            f"{data.heldout_name} {'pictures' if arch.is_map else 'images'} "
                                            f"({data.info.get('name')})")
            meta.anomaly = calibrated.calibration
            if meta.anomaly is not None:
                write_meta(staging, meta)
    log(f"exported {run} -> {out_dir}  ({family.name}, d={meta.d}"
        + (f" per {arch.factor}x{arch.factor} block" if arch.is_map else "") + f", {weights} weights, "
        f"max |onnxruntime - torch| {max(diffs.values()):.2g} over "
        + (f"sizes {', '.join('x'.join(map(str, x.shape[2:])) for x in shapes)}" if shapes else
           f"batches {', '.join(map(str, CHECK_BATCHES))}") + ")")
    if calibrated is not None:
        log(calibrated.line)
    return meta


MIXTURE_MAX_D = 256  # latent values a mixture is fitted over, at most (see fit_densities)
MAP_CHECK_BATCHES = (1, 3)
MAP_CHECK_SIDES = ((1, 1), (2, 3), (5, 4))  # blocks down and across: square, wide and tall, each at a few sizes


def map_check_shapes(pictures: Any, arch: ArchConfig) -> list[np.ndarray]:
    """Inputs for a map's export check: crops of the held-out pictures at several sizes, square and
    not (in blocks of the factor, from the crop's size up), MAP_CHECK_BATCHES[-1] of each; a picture
    smaller than a size is mirrored out to it first, so every size is checked on real content."""
    f, n = arch.factor, max(MAP_CHECK_BATCHES)
    base = max(1, arch.image_size // f)
    rng = np.random.default_rng(0)
    out = []
    for a, b in MAP_CHECK_SIDES:
        h, w = f * base * a, f * base * b
        batch = np.empty((n, pictures.channels, h, w), np.float32)
        for k in range(n):
            p = pictures.picture(int(rng.integers(len(pictures))))
            p = np.pad(p, ((0, 0), (0, max(0, h - p.shape[1])), (0, max(0, w - p.shape[2]))), mode="symmetric")
            top, left = int(rng.integers(0, p.shape[1] - h + 1)), int(rng.integers(0, p.shape[2] - w + 1))
            batch[k] = p[:, top : top + h, left : left + w] / np.float32(255)
        out.append(batch)
    return out


def _check_graphs(staging: Path, encoder: GraphConfig, decoder: GraphConfig, inputs: list[np.ndarray],
                  tolerance: float, batches: Sequence[int]) -> dict[str, float]:
    """Both graphs and the round trip (onnxruntime's own latents through the decoder, against
    PyTorch's reconstruction) against PyTorch, on each array of ``inputs`` (one shape each)."""
    diffs = {"encoder": 0.0, "decoder": 0.0, "roundtrip": 0.0}
    enc_session, _ = make_session(staging / ENCODER, "cpu")
    for images in inputs:
        size = "x".join(map(str, images.shape[2:]))
        latents = encoder.reference(images)
        found = {
            "encoder": validate_graph(staging / ENCODER, ENCODER_INPUT, encoder.reference, images, tolerance,
                                      batches=batches, what=f"encoder at {size}"),
            "decoder": validate_graph(staging / DECODER, ENCODER_OUTPUT, decoder.reference, latents, tolerance,
                                      batches=batches, what=f"decoder at {size}"),
            "roundtrip": validate_graph(staging / DECODER, ENCODER_OUTPUT, lambda z: decoder.reference(latents[: len(z)]),
                                        enc_session.run(None, {ENCODER_INPUT: images})[0], tolerance,
                                        batches=batches, what=f"round trip at {size}", checker=False),
        }
        diffs = {k: max(v, found[k]) for k, v in diffs.items()}
    return diffs


def _test_psnr(state: dict, metrics: dict, data: TrainingData) -> float | None:
    """The PSNR of the exported weights on the held-out images: the best epoch's where those are shipped."""
    if "sse" not in state:
        return metrics.get("test_psnr_db")
    best = next((row for row in metrics.get("history", []) if isinstance(row, dict)
                 and row.get("epoch") == state.get("best", {}).get("epoch")), None)
    if best is not None and "test_psnr_db" in best:
        return best["test_psnr_db"]
    return psnr_from_sse(state["sse"], data.image.pixels)


class _codes:
    """The latents a run's densities are fitted and scored on: f(images), or for a map every code
    vector of the pictures' maps (sub-sampled), computed once each."""

    def __init__(self, model: torch.nn.Module, arch: ArchConfig, data: TrainingData, fit_size: int = 20_000,
                 seed: int = 0) -> None:
        self.model, self.arch, self.data, self.fit_size, self.seed = model, arch, data, fit_size, seed
        self._train: np.ndarray | None = None
        self._heldout: np.ndarray | None = None

    def of(self, images: Any, limit: int | None = None) -> np.ndarray:
        if self.arch.is_map:
            from .crops import map_codes

            return map_codes(self.model.encoder, images, self.arch.factor, "cpu", max_codes=limit or 50_000,
                             seed=self.seed)
        if limit is not None:  # EM on 20,000 latents: as good as on 60,000
            images = images[np.sort(np.random.default_rng(self.seed).permutation(len(images))[:limit])]
        return forward_all(self.model.encoder, images)

    def train(self) -> np.ndarray:
        if self._train is None:
            self._train = self.of(self.data.train, self.fit_size)
        return self._train

    def heldout(self) -> np.ndarray:
        if self._heldout is None:
            self._heldout = self.of(self.data.heldout, None)
        return self._heldout


def fit_densities(diagonal: dict, codes: "_codes", *, components: int = 10, seed: int = 0,
                  log: Callable[[str], None] = print) -> tuple[dict, dict, str]:
    """The run's diagonal Gaussian (the lecture's) and a Gaussian mixture fitted here on f(train).

    Each is scored by the mean log-likelihood per latent dimension of f(held out),
    so "the mixture fits better" is a number in latent.json.  The mixture's K full d x d covariances
    cost K d^2 numbers in latent.json and K d^3 work per EM round: at d = 4096 that is 1.3 GB of
    JSON and minutes per round, from fewer latents than dimensions (a covariance they cannot
    determine).  Past the cap the bundle has the diagonal Gaussian alone, and says so.
    """
    z_train, z_test = codes.train(), codes.heldout()
    d = z_test.reshape(len(z_test), -1).shape[1]
    fitted = {DiagonalGaussian.kind: density_from_dict(diagonal)}
    if d <= MIXTURE_MAX_D:
        fitted[GaussianMixture.kind] = GaussianMixture(min(components, len(z_train)), random_state=seed).fit(z_train)
        default = DEFAULT_DENSITY
    else:
        default = DiagonalGaussian.kind
        log(f"latent of {d} values: no mixture (fitted up to {MIXTURE_MAX_D}); the diagonal Gaussian is the density")
    test_ll = {kind: float(p.score_samples(z_test).mean() / d) for kind, p in fitted.items()}
    return {kind: p.to_dict() for kind, p in fitted.items()}, test_ll, default


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))

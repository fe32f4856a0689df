"""Reduced-precision variants of a bundle: int8 for CPUs, fp16 for GPUs.

Both are ordinary bundles (same inputs, outputs and latent.json schema), so
every runtime command takes them with ``--bundle``.  int8 uses onnxruntime's
static QDQ quantization calibrated on training images; on x86 CPUs with VNNI
onnxruntime fuses it into integer convolutions (Conv only: the decoder's
ConvTranspose layers stay float, which is why the decoder ships in conv form).
Layers that quantize badly can be kept in float (``keep_float``).  Each variant
goes through the export's validator against the fp32 bundle (pixels of the
round trip, at a tolerance fitting its precision) and records its own test SSE,
so the cost of the precision is never a guess.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..bundle import Bundle, load_bundle
from ..bundle_format import DECODER, ENCODER, ENCODER_INPUT, ENCODER_OUTPUT, BundleMeta, read_meta, sha256_file, write_meta
from ..errors import AetoolError, UsageError
from ..fileio import atomic_dir
from ..metrics import psnr_from_sse, sse_per_image
from ..mnist import Dataset, load_mnist
from ..runtime import make_session
from .export import validate_graph

TOLERANCE = {"int8": 0.5, "fp16": 1e-2}  # largest |variant - fp32| of a reconstructed pixel in [0, 1]
class _Batches:
    """onnxruntime.quantization's CalibrationDataReader over an array."""

    def __init__(self, name: str, data: np.ndarray, batch: int = 100) -> None:
        self.items = iter([{name: np.ascontiguousarray(data[i : i + batch])} for i in range(0, len(data), batch)])

    def get_next(self):
        return next(self.items, None)


def quantize_graph(src: Path, dst: Path, input_name: str, calibration: np.ndarray, keep_float: Sequence[str]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Batches, CalibrationDataReader):
        pass

    prepared = dst.with_suffix(".prep.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(dst), Reader(input_name, calibration),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=list(keep_float),
    )
    prepared.unlink()


def node_names(path: Path, op_types: Sequence[str]) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in op_types]


def _identity_scorer(labels: np.ndarray | None) -> Callable[[np.ndarray], float | None]:
    """Identity kept of reconstructions by the digit classifier (loaded once), or None where there is none
    (no classifier, or images that are no MNIST digits)."""
    from ..classify import DigitClassifier, identity_kept

    if labels is None:
        return lambda recon: None
    try:
        classifier = DigitClassifier(device="cpu")
    except AetoolError:
        return lambda recon: None
    return lambda recon: float(identity_kept(classifier, recon, labels).mean())


def _finish_variant(src: BundleMeta, staging: Path, out_dir: Path, variant: dict, test, fp32: Bundle) -> BundleMeta:
    """Check the variant against the fp32 bundle, then write its latent.json: new hashes, and its SSE
    and identity kept beside the fp32 bundle's, measured on the same test images."""
    precision = variant["precision"]
    x = test.images[:256]
    encoder, _ = make_session(staging / ENCODER, "cpu")
    variant["max_abs_diff_vs_fp32"] = {
        # the encoder's latents have no fixed scale: checked for validity, its difference recorded
        "encoder": validate_graph(staging / ENCODER, ENCODER_INPUT, fp32.encode, x, math.inf, checker=False),
        "decoder": validate_graph(staging / DECODER, ENCODER_OUTPUT, fp32.decode, fp32.encode(x), TOLERANCE[precision],
                                  checker=False),
        "roundtrip": validate_graph(staging / DECODER, ENCODER_OUTPUT, lambda z: fp32.reconstruct(x[: len(z)]),
                                    encoder.run(None, {ENCODER_INPUT: x})[0], TOLERANCE[precision],
                                    what=f"{precision} round trip", checker=False),
    }
    variant["tolerance"] = TOLERANCE[precision]
    identity = _identity_scorer(test.labels if (test.labels >= 0).all() else None)
    fp32_recon = fp32.reconstruct(test.images)
    variant["fp32_test_sse_per_image"] = float(sse_per_image(test.images, fp32_recon).mean())
    variant["fp32_identity_kept"] = identity(fp32_recon)
    meta = copy.deepcopy(src)
    meta.name = out_dir.name
    meta.encoder.sha256 = sha256_file(staging / ENCODER)
    meta.decoder.sha256 = sha256_file(staging / DECODER)
    meta.variant = variant
    write_meta(staging, meta)
    recon = load_bundle(staging, device="cpu").reconstruct(test.images)
    sse = float(sse_per_image(test.images, recon).mean())
    variant.update(test_sse_per_image=sse, identity_kept=identity(recon), test_images=len(test.images),
                   test_psnr_db=psnr_from_sse(sse))
    if src.anomaly is not None:  # the variant's own scores differ a little: its own threshold
        from ..anomaly import calibrate

        meta.anomaly = calibrate(load_bundle(staging, device="cpu"), test.images, src.anomaly.fpr, src.anomaly.source)
    write_meta(staging, meta)
    return meta


def _refuse_maps(meta: BundleMeta, bundle_dir: Path) -> None:
    """The variants' calibration and parity checks run over pictures of the bundle's one size: a map
    bundle's pictures have their own, so it is refused in one line rather than checked wrongly."""
    if meta.latent.is_map:
        raise UsageError(f"bundle {bundle_dir.name}: a latent map; its int8 and fp16 variants are not made yet "
                         f"(the fp32 bundle runs on CPUs and GPUs)")


def _data(meta: BundleMeta, bundle_dir: Path, calibration_images: int, eval_images: int) -> tuple[np.ndarray, Dataset]:
    """Calibration images (training) and evaluation images with their labels (held out; MNIST's test digits
    have labels, a folder's validation images are scored without) of the bundle's own training data."""
    from .config import config_from_dict
    from ..datasets import as_float, load_training_data

    selection = config_from_dict(meta.training_record.config, bundle_dir).selection()
    data = load_training_data(selection, quiet=True)
    heldout = as_float(data.heldout[:eval_images])
    labels = selection.of_normal_class(load_mnist("test", selection.data)).labels[:eval_images] \
        if data.info.get("name") == "mnist" else np.full(len(heldout), -1)
    return as_float(data.train[:calibration_images]), Dataset(heldout, labels)


def quantize_int8(bundle_dir: Path, out_dir: Path, *, calibration_images: int = 1000, keep_float: Sequence[str] = ("decoder:last",),
                  eval_images: int = 10_000, log: Callable[[str], None] = print) -> BundleMeta:
    """Static int8 (QDQ, per-channel weights) variant of a bundle, calibrated on training images.

    ``keep_float`` names node groups kept in float: ``decoder:last`` keeps the
    decoder's last layer (the one that writes pixels) in fp32, which costs
    little time and keeps the image error near fp32.
    """
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    src = read_meta(bundle_dir)
    _refuse_maps(src, bundle_dir)
    fp32 = load_bundle(bundle_dir, device="cpu")
    calib, test = _data(src, bundle_dir, calibration_images, eval_images)
    with atomic_dir(out_dir) as staging:
        quantize_graph(bundle_dir / ENCODER, staging / ENCODER, ENCODER_INPUT, calib, [])
        dec_convs = node_names(bundle_dir / DECODER, ("Conv", "ConvTranspose", "Gemm", "MatMul"))
        excluded = dec_convs[-1:] if "decoder:last" in keep_float and dec_convs else []
        quantize_graph(bundle_dir / DECODER, staging / DECODER, ENCODER_OUTPUT, fp32.encode(calib), excluded)
        meta = _finish_variant(src, staging, out_dir, {
            "precision": "int8",
            "source": bundle_dir.name,
            "method": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations, MinMax calibration",
            "calibration_images": calibration_images,
            "kept_in_float": excluded,
        }, test, fp32)
    v = meta.variant
    fp32_sse = v["fp32_test_sse_per_image"]
    kept = "" if v["identity_kept"] is None else (
        f"; identity kept {100 * v['identity_kept']:.2f} % (fp32 {100 * v['fp32_identity_kept']:.2f} %)")
    log(f"int8 {bundle_dir.name} -> {out_dir}: test SSE/image {v['test_sse_per_image']:.3f} "
        f"(fp32 {fp32_sse:.3f}, {100 * (v['test_sse_per_image'] / fp32_sse - 1):+.1f} %){kept}")
    return meta


def convert_fp16(bundle_dir: Path, out_dir: Path, *, eval_images: int = 10_000,
                 log: Callable[[str], None] = print) -> BundleMeta:
    """fp16 weights and arithmetic with fp32 inputs and outputs, for GPUs; parity checked at fp16 tolerance."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    src = read_meta(bundle_dir)
    _refuse_maps(src, bundle_dir)
    fp32 = load_bundle(bundle_dir, device="cpu")
    _, test = _data(src, bundle_dir, 0, eval_images)
    with atomic_dir(out_dir) as staging:
        for name in (ENCODER, DECODER):
            model = convert_float_to_float16(onnx.load(str(bundle_dir / name)), keep_io_types=True)
            onnx.save(model, str(staging / name))
        meta = _finish_variant(src, staging, out_dir, {
            "precision": "fp16", "source": bundle_dir.name,
            "method": "onnxruntime float16 conversion, fp32 inputs/outputs",
        }, test, fp32)
    diff = meta.variant["max_abs_diff_vs_fp32"]["roundtrip"]
    log(f"fp16 {bundle_dir.name} -> {out_dir}: max |fp16 - fp32| {diff:.2g}, test SSE/image {meta.variant['test_sse_per_image']:.3f}")
    return meta

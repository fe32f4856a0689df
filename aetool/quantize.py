"""Reduced-precision variants of a bundle: int8 for CPUs, fp16 for GPUs.

Both are ordinary bundles (same inputs, outputs and latent.json schema), so
every runtime command takes them with ``--bundle``.  int8 uses onnxruntime's
static QDQ quantization calibrated on training images; on x86 CPUs with VNNI
onnxruntime fuses it into integer convolutions (Conv only: the decoder's
ConvTranspose layers stay float, which is why the decoder ships in conv form).  Layers that quantize badly
can be kept in float (``keep_float``), and the variant's own test SSE is
measured and recorded so the cost of the precision is never a guess.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bundle import DECODER, ENCODER, LATENT, load_bundle, read_meta, sha256_file
from .data import load_mnist
from .errors import AetoolError
from .fileio import atomic_dir, write_json
from .metrics import psnr_from_sse, sse_per_image


class _Batches:
    """onnxruntime.quantization's CalibrationDataReader over an array."""

    def __init__(self, name: str, data: np.ndarray, batch: int = 100) -> None:
        self.items = iter([{name: np.ascontiguousarray(data[i : i + batch])} for i in range(0, len(data), batch)])

    def get_next(self):
        return next(self.items, None)


def _quantize_graph(src: Path, dst: Path, input_name: str, calibration: np.ndarray, keep_float: Sequence[str]) -> None:
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


def _node_names(path: Path, op_types: Sequence[str]) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in op_types]


def _identity_scorer(labels: np.ndarray) -> Callable[[np.ndarray], float | None]:
    """Identity kept of reconstructions by the digit classifier (loaded once), or None where there is none."""
    from .classify import DigitClassifier, identity_kept

    try:
        classifier = DigitClassifier(device="cpu")
    except AetoolError:
        return lambda recon: None
    return lambda recon: float(identity_kept(classifier, recon, labels).mean())


def _finish_variant(src_meta: dict, staging: Path, out_dir: Path, variant: dict, test, fp32) -> dict:
    """latent.json for the variant: new hashes, and its SSE and identity kept beside the fp32
    bundle's, measured on the same test images."""
    test_images = test.images
    identity = _identity_scorer(test.labels)
    fp32_recon = fp32.reconstruct(test_images)
    variant["fp32_test_sse_per_image"] = float(sse_per_image(test_images, fp32_recon).mean())
    variant["fp32_identity_kept"] = identity(fp32_recon)
    meta = copy.deepcopy(src_meta)
    meta["name"] = out_dir.name
    meta["graphs"]["encoder"]["sha256"] = sha256_file(staging / ENCODER)
    meta["graphs"]["decoder"]["sha256"] = sha256_file(staging / DECODER)
    meta["variant"] = variant
    write_json(staging / LATENT, meta)
    b = load_bundle(staging, device="cpu")
    recon = b.reconstruct(test_images)
    sse = float(sse_per_image(test_images, recon).mean())
    meta["variant"]["test_sse_per_image"] = sse
    meta["variant"]["identity_kept"] = identity(recon)
    meta["variant"]["test_images"] = len(test_images)
    meta["variant"]["test_psnr_db"] = psnr_from_sse(sse)
    write_json(staging / LATENT, meta)
    return meta


def quantize_int8(bundle_dir: Path, out_dir: Path, *, calibration_images: int = 1000, keep_float: Sequence[str] = ("decoder:last",),
                  eval_images: int = 10_000, log: Callable[[str], None] = print) -> dict:
    """Static int8 (QDQ, per-channel weights) variant of a bundle, calibrated on training images.

    ``keep_float`` names node groups kept in float: ``decoder:last`` keeps the
    decoder's last layer (the one that writes pixels) in fp32, which costs
    little time and keeps the image error near fp32.
    """
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    src = read_meta(bundle_dir)
    fp32 = load_bundle(bundle_dir, device="cpu")
    calib = load_mnist("train").images[:calibration_images]
    test = load_mnist("test").head(eval_images)
    with atomic_dir(out_dir) as staging:
        _quantize_graph(bundle_dir / ENCODER, staging / ENCODER, "image", calib, [])
        dec_convs = _node_names(bundle_dir / DECODER, ("Conv", "ConvTranspose", "Gemm", "MatMul"))
        excluded = dec_convs[-1:] if "decoder:last" in keep_float and dec_convs else []
        _quantize_graph(bundle_dir / DECODER, staging / DECODER, "latent", fp32.encode(calib), excluded)
        meta = _finish_variant(src, staging, out_dir, {
            "precision": "int8",
            "source": bundle_dir.name,
            "method": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations, MinMax calibration",
            "calibration_images": calibration_images,
            "kept_in_float": excluded,
        }, test, fp32)
    v = meta["variant"]
    fp32_sse = v["fp32_test_sse_per_image"]
    kept = "" if v["identity_kept"] is None else (
        f"; identity kept {100 * v['identity_kept']:.2f} % (fp32 {100 * v['fp32_identity_kept']:.2f} %)")
    log(f"int8 {bundle_dir.name} -> {out_dir}: test SSE/image {v['test_sse_per_image']:.3f} "
        f"(fp32 {fp32_sse:.3f}, {100 * (v['test_sse_per_image'] / fp32_sse - 1):+.1f} %){kept}")
    return meta


def convert_fp16(bundle_dir: Path, out_dir: Path, *, tolerance: float = 1e-2, eval_images: int = 10_000,
                 log: Callable[[str], None] = print) -> dict:
    """fp16 weights and arithmetic with fp32 inputs and outputs, for GPUs; parity checked at fp16 tolerance."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    src = read_meta(bundle_dir)
    fp32 = load_bundle(bundle_dir, device="cpu")
    test = load_mnist("test").head(eval_images)
    with atomic_dir(out_dir) as staging:
        for name in (ENCODER, DECODER):
            model = convert_float_to_float16(onnx.load(str(bundle_dir / name)), keep_io_types=True)
            onnx.save(model, str(staging / name))
        meta = _finish_variant(src, staging, out_dir, {
            "precision": "fp16", "source": bundle_dir.name,
            "method": "onnxruntime float16 conversion, fp32 inputs/outputs",
        }, test, fp32)
        half = load_bundle(staging, device="cpu")
        x = test.images[:256]
        diff = float(np.abs(half.reconstruct(x) - fp32.reconstruct(x)).max())
        if not diff <= tolerance:
            raise AetoolError(f"fp16 check failed: round trip differs from fp32 by {diff:.3g} > {tolerance:g}")
        meta["variant"]["max_abs_diff_vs_fp32"] = diff
        write_json(staging / LATENT, meta)
    log(f"fp16 {bundle_dir.name} -> {out_dir}: max |fp16 - fp32| {diff:.2g}, test SSE/image {meta['variant']['test_sse_per_image']:.3f}")
    return meta

"""Latency benchmarks of a bundle: onnxruntime, and torch eager beside it when installed.

Numbers on shared machines are noisy, so every engine is measured in the same
run on the same inputs, and the table is meant to be read as ratios.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Callable

import numpy as np

from .bundle import Bundle
from .progress import progress

OPS = ("encode", "decode", "roundtrip")


def time_calls(fn: Callable[[], object], *, min_repeats: int = 20, max_seconds: float = 1.0, warmup: int = 3) -> np.ndarray:
    """Seconds per call: at least ``min_repeats`` calls, more while under ``max_seconds``."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < max_seconds and len(times) < 10_000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def summarize(times: np.ndarray, batch: int) -> dict[str, float]:
    p50, p90, p99 = np.percentile(times, [50, 90, 99]) * 1e3
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "images_per_s": float(batch / times.mean()), "calls": int(len(times))}


def onnx_ops(bundle: Bundle, x: np.ndarray) -> dict[str, Callable[[], object]]:
    enc, dec = bundle.encoder, bundle.decoder
    z = enc.run(None, {"image": x})[0]
    return {
        "encode": lambda: enc.run(None, {"image": x}),
        "decode": lambda: dec.run(None, {"latent": z}),
        "roundtrip": lambda: bundle.reconstruct(x),  # what users get: I/O-bound under CUDA
    }


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def torch_ops(bundle: Bundle, x: np.ndarray) -> tuple[dict[str, Callable[[], object]], str]:
    """The bundle's model in torch eager, weights copied from the ONNX graphs."""
    from .training.torch_from_onnx import model_from_bundle  # imports torch: only when asked
    import torch

    model, weights = model_from_bundle(bundle)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        zt = model.encoder(xt)

    def wrap(f):
        def call():
            with torch.inference_mode():
                return f()
        return call

    return {
        "encode": wrap(lambda: model.encoder(xt)),
        "decode": wrap(lambda: model.decoder(zt)),
        "roundtrip": wrap(lambda: model.decoder(model.encoder(xt))),
    }, weights


def run_bench(bundle: Bundle, batch_sizes: tuple[int, ...] = (1, 256), *, with_torch: bool | None = None,
              max_seconds: float = 1.0, quiet: bool = False, seed: int = 0) -> dict[str, Any]:
    """Measure encode / decode / round trip per engine and batch size."""
    if with_torch is None:
        with_torch = torch_available()
    rng = np.random.default_rng(seed)
    engines: list[str] = ["onnxruntime"] + (["torch"] if with_torch else [])
    rows: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    cells = [(b, e) for b in batch_sizes for e in engines]
    for batch, engine in progress(cells, quiet=quiet, desc="bench"):
        x = rng.random((batch, *bundle.image_shape), dtype=np.float32)
        if engine == "onnxruntime":
            ops = onnx_ops(bundle, x)
        else:
            ops, notes["torch_weights"] = torch_ops(bundle, x)
        for op in OPS:
            stats = summarize(time_calls(ops[op], max_seconds=max_seconds), batch)
            rows.append({"engine": engine, "op": op, "batch": batch, **stats})
    return {
        "bundle": str(bundle.path),
        "family": bundle.family,
        "d": bundle.d,
        "provider": bundle.provider,
        "inputs": "uniform random images (latency does not depend on pixel values)",
        **notes,
        "results": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    head = f"{'engine':<12} {'op':<10} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'images/s':>11}"
    lines = [f"bundle {report['bundle']} ({report['family']}, d={report['d']}), onnxruntime on {report['provider']}", head]
    for r in report["results"]:
        engine = r["engine"] if r["engine"] != "onnxruntime" else f"ort-{report['provider']}"
        lines.append(f"{engine:<12} {r['op']:<10} {r['batch']:>5} {r['p50_ms']:>9.3f} {r['p90_ms']:>9.3f} "
                     f"{r['p99_ms']:>9.3f} {r['images_per_s']:>11.0f}")
    return "\n".join(lines)

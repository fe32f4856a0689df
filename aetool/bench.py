"""Latency benchmarks of a bundle: onnxruntime, and torch eager beside it when the caller has it.

Numbers on shared machines are noisy, so every engine is measured in the same
run on the same inputs, and the table is meant to be read as ratios.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .bundle import Bundle
from .progress import progress

OPS = ("encode", "decode", "roundtrip")
MAP_SIZES = ((512, 512), (768, 1024))  # (height, width) a map bundle is timed at: a square and a 1024x768 photograph


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
    """What users get: the bundle's own calls (a large CPU batch in slices, I/O binding under CUDA)."""
    z = bundle.encode(x)
    return {
        "encode": lambda: bundle.encode(x),
        "decode": lambda: bundle.decode(z),
        "roundtrip": lambda: bundle.reconstruct(x),
    }


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


EngineOps = Callable[[np.ndarray], Mapping[str, Callable[[], object]]]


def measure(engines: Mapping[str, EngineOps], batch_sizes: Sequence[int], image_shape: tuple[int, ...], *,
            min_repeats: int = 20, max_seconds: float = 1.0, seed: int = 0, quiet: bool = False,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Time every op of every engine at every batch size, all engines on the same inputs.

    An engine maps an input batch to its ops (``encode``, ``decode``, ``roundtrip``);
    building the ops inside the loop lets each engine prepare per-batch state
    (the latent to decode) outside the timed calls.
    """
    rng = np.random.default_rng(seed)
    inputs = {b: rng.random((b, *image_shape), dtype=np.float32) for b in batch_sizes}
    rows: list[dict[str, Any]] = []
    cells = [(b, e) for b in batch_sizes for e in engines]
    for batch, engine in progress(cells, quiet=quiet, desc="bench"):
        ops = engines[engine](inputs[batch])
        for op in OPS:
            stats = summarize(time_calls(ops[op], min_repeats=min_repeats, max_seconds=max_seconds), batch)
            rows.append({"engine": engine, "op": op, "batch": batch, **stats})
            if on_row is not None:
                on_row(rows[-1])
    return rows


TorchOps = Callable[[Bundle, np.ndarray], tuple[Mapping[str, Callable[[], object]], str]]


def _engines(bundle: Bundle, torch_ops: TorchOps | None, notes: dict[str, str]) -> dict[str, EngineOps]:
    """onnxruntime, and torch eager beside it where ``torch_ops`` is given (its weights' note into ``notes``)."""
    engines: dict[str, EngineOps] = {"onnxruntime": lambda x: onnx_ops(bundle, x)}
    if torch_ops is not None:
        def torch_engine(x: np.ndarray) -> Mapping[str, Callable[[], object]]:
            ops, notes["torch_weights"] = torch_ops(bundle, x)
            return ops
        engines["torch"] = torch_engine
    return engines


def run_bench(bundle: Bundle, batch_sizes: tuple[int, ...] = (1, 256), *, torch_ops: TorchOps | None = None,
              max_seconds: float = 1.0, quiet: bool = False, seed: int = 0,
              sizes: Sequence[tuple[int, int]] = MAP_SIZES) -> dict[str, Any]:
    """Measure encode / decode / round trip per engine and batch size; with ``torch_ops``
    (aetool.training.torch_from_onnx.torch_ops: the training stage's) torch eager beside onnxruntime.

    A map bundle is timed one picture a call at each of ``sizes`` (height, width) instead of at
    ``batch_sizes``, and each row also says megapixels per second: a photograph's throughput."""
    if bundle.is_map:
        return run_map_bench(bundle, sizes, torch_ops=torch_ops, max_seconds=max_seconds, quiet=quiet, seed=seed)
    notes: dict[str, str] = {}
    engines = _engines(bundle, torch_ops, notes)
    rows = measure(engines, batch_sizes, bundle.image_shape, max_seconds=max_seconds, quiet=quiet, seed=seed)
    return {
        "bundle": str(bundle.path),
        "family": bundle.family,
        "d": bundle.d,
        "provider": bundle.provider,
        "inputs": "uniform random images (latency does not depend on pixel values)",
        **notes,
        "results": rows,
    }


def run_map_bench(bundle: Bundle, sizes: Sequence[tuple[int, int]] = MAP_SIZES, *, torch_ops: TorchOps | None = None,
                  max_seconds: float = 1.0, quiet: bool = False, seed: int = 0) -> dict[str, Any]:
    """A map bundle's encode / decode / round trip of one picture per call at each size, in
    megapixels per second (of the picture, for the decoder too); torch eager beside onnxruntime
    where ``torch_ops`` is given and can run the graphs."""
    notes: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    channels = bundle.meta.image.channels
    for height, width in sizes:
        height, width = bundle.layout.padded_size(height, width)
        engines = _engines(bundle, torch_ops, notes)

        def on_row(row: dict[str, Any], height: int = height, width: int = width) -> None:
            row.update(height=height, width=width, megapixels_per_s=row["images_per_s"] * height * width / 1e6)

        rows += measure(engines, (1,), (channels, height, width), max_seconds=max_seconds, quiet=quiet, seed=seed,
                        on_row=on_row)
    return {"bundle": str(bundle.path), "family": bundle.family, "d": bundle.d, "provider": bundle.provider,
            "latent": "map", "factor": bundle.layout.factor,
            "inputs": "uniform random pictures, one per call (latency does not depend on pixel values)",
            **notes, "results": rows}


def format_table(report: dict[str, Any]) -> str:
    if report.get("latent") == "map":
        return _format_map_table(report)
    head = f"{'engine':<12} {'op':<10} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'images/s':>11}"
    lines = [f"bundle {report['bundle']} ({report['family']}, d={report['d']}), onnxruntime on {report['provider']}", head]
    for r in report["results"]:
        engine = r["engine"] if r["engine"] != "onnxruntime" else f"ort-{report['provider']}"
        lines.append(f"{engine:<12} {r['op']:<10} {r['batch']:>5} {r['p50_ms']:>9.3f} {r['p90_ms']:>9.3f} "
                     f"{r['p99_ms']:>9.3f} {r['images_per_s']:>11.0f}")
    return "\n".join(lines)


def _format_map_table(report: dict[str, Any]) -> str:
    head = f"{'engine':<12} {'op':<10} {'size':>10} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'MP/s':>8}"
    lines = [f"bundle {report['bundle']} ({report['family']}, map f={report['factor']}, d={report['d']}), "
             f"onnxruntime on {report['provider']}; one picture a call", head]
    for r in report["results"]:
        engine = r["engine"] if r["engine"] != "onnxruntime" else f"ort-{report['provider']}"
        size = f"{r['width']}x{r['height']}"
        lines.append(f"{engine:<12} {r['op']:<10} {size:>10} {r['p50_ms']:>9.3f} {r['p90_ms']:>9.3f} "
                     f"{r['p99_ms']:>9.3f} {r['megapixels_per_s']:>8.2f}")
    return "\n".join(lines)

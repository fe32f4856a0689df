"""aetool's benchmark suite: every engine measured side by side, in one run.

    python benchmarks/run.py              # full suite, results into benchmarks/results/
    python benchmarks/run.py --quick      # a smoke run with short timings

Measures, on the shipped d=16 bundle and the same weights in PyTorch:
  * inference: torch eager, onnxruntime fp32 (default threads and 1 thread),
    onnxruntime int8 (the shipped cnn-d16-int8 bundle); encode, decode, round
    trip; batch 1, 64, 1024; p50/p90/p99 latency and images/s; with a usable
    GPU also onnxruntime CUDA fp32 and fp16 (results then go to cuda-DATE.*);
  * the model's FLOPs and the fraction of this machine's measured fp32 matmul
    peak that each engine reaches;
  * training throughput: aetool's training step (bf16 autocast + channels_last)
    against the lecture's plain fp32 loop, batch 100;
  * `aetool sample -n 64` as a whole process, start to PNG written;
  * the decoder's export forms side by side (stride-2 layers as ConvTranspose, or the
    last one in sub-pixel form as shipped), fp32 and int8: decode vs encode images/s at
    batch 1024, round-trip latency at batch 1 (bench_decoder_forms);
  * a batch of 1024 as one slice per core (what Bundle.encode/decode run on a CPU) against one
    call of the multi-threaded session, fp32 and int8 (bench_slices; alone: --slices).
Claims are ratios between rows of the same run: the machines are shared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from aetool import load_bundle
from aetool.bench import measure, onnx_ops
from aetool.training.torch_from_onnx import torch_ops
from aetool.training.model import AutoEncoder, reconstruction_loss
from aetool.training.torch_from_onnx import model_from_bundle
from machine import cpu_model, cpu_name  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ machine
def matmul_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 2.0) -> float:
    """The best FLOP rate of a large square matmul: a practical ceiling for this CPU and library."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def model_flops(model: AutoEncoder) -> dict[str, float]:
    """FLOPs per image (2 per multiply-add) of encoder and decoder, counted from the layers' shapes."""
    counts = {"encoder": 0, "decoder": 0}

    def hook(part):
        def count(module, inputs, output):
            if isinstance(module, torch.nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
                counts[part] += 2 * output[0].numel() * k
            elif isinstance(module, torch.nn.ConvTranspose2d):
                k = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                counts[part] += 2 * inputs[0][0].numel() * k
        return count

    handles = [m.register_forward_hook(hook(part)) for part in counts for m in getattr(model, part).modules()]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in handles:
        h.remove()
    return {"encode": counts["encoder"], "decode": counts["decoder"], "roundtrip": counts["encoder"] + counts["decoder"]}


# ------------------------------------------------------------------ inference
def bench_inference(engines: dict, batches, seconds: float, flops: dict, peak: float) -> list[dict]:
    """aetool's own timing loop, plus the FLOP rate of each row and its share of the CPU's matmul peak."""
    def report(row: dict) -> None:
        row["gflop_per_s"] = row["images_per_s"] * flops[row["op"]] / 1e9
        on_cpu = "cuda" not in row["engine"]  # the peak is the CPU's: no share for GPU rows
        row["fraction_of_peak"] = row["gflop_per_s"] / peak if on_cpu else None
        print(f"  {row['engine']:<22} {row['op']:<9} batch {row['batch']:>4}: p50 {row['p50_ms']:8.3f} ms  "
              f"{row['images_per_s']:9.0f} img/s", flush=True)

    return measure(engines, batches, (1, 28, 28), min_repeats=10, max_seconds=seconds, quiet=True, on_row=report)


# ------------------------------------------------------------------ training
def bench_training(steps: int, batch: int = 100) -> dict:
    """images/s of the lecture's plain loop (fp32) and of aetool's own training step, same batches."""
    from aetool.mnist import load_mnist
    from aetool.training.config import TrainConfig
    from aetool.training.train import Trainer

    x_all = torch.from_numpy(load_mnist("train").images[: batch * (steps + 3)])
    torch.manual_seed(0)
    model = AutoEncoder(16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def lecture_step(x):  # the lecture's loop body, verbatim in spirit: fp32, NCHW
        loss = reconstruction_loss(x, model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(d=16, batch_size=batch, device="cpu"), Path(tmp), quiet=True)
    out = {}
    for name, step in (("lecture_fp32", lecture_step), (f"aetool_{trainer.precision}", trainer.step)):
        times = []
        for i in range(steps + 3):
            x = x_all[i * batch : (i + 1) * batch]
            t0 = time.perf_counter()
            step(x)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        out[name] = {"images_per_s": batch * len(times) / sum(times), "steps": len(times), "batch": batch}
        print(f"  training {name}: {out[name]['images_per_s']:.0f} img/s", flush=True)
    out["aetool_mode"] = f"{trainer.precision}" + (" autocast + channels_last" if trainer.precision == "bf16" else "")
    out["speedup"] = out[f"aetool_{trainer.precision}"]["images_per_s"] / out["lecture_fp32"]["images_per_s"]
    return out


def interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, np.ndarray]:
    """Seconds per call of each of ``calls``, timed in turn ``repeats`` times after one warm-up call each, so a
    busy moment on a shared machine costs every row alike."""
    for f in calls.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, f in calls.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: np.asarray(v) for k, v in times.items()}


def bench_decoder_forms(model: AutoEncoder, repeats: int, batches=(1024, 1)) -> dict:
    """The decoder exported in its earlier form (stride-2 layers as ConvTranspose) and in the shipped one
    (the last stride-2 layer in sub-pixel form, conv_form.py), fp32 and int8, timed interleaved with the
    encoder: encode and decode images/s, and decode / encode, at batch 1024; round-trip latency at batch 1.

    Both int8 decoders are quantized here the same way (variants.py: static QDQ, 1000 training images,
    last layer kept float), so the forms differ in nothing else.  Medians of interleaved single calls.
    """
    from aetool.mnist import load_mnist
    from aetool.runtime import make_session
    from aetool.training.conv_form import conv_form, depth_to_space_dcr
    from aetool.training.export import GraphConfig, export_graph
    from aetool.training.variants import node_names, quantize_graph

    calib_images = load_mnist("train").images[:1000]
    tmp = Path(tempfile.mkdtemp())
    enc = {"fp32": load_bundle("cnn-d16", device="cpu").path / "encoder.onnx",
           "int8": load_bundle("cnn-d16-int8", device="cpu").path / "encoder.onnx"}
    enc_fp32, _ = make_session(enc["fp32"], "cpu")
    calib = enc_fp32.run(None, {"image": calib_images})[0]
    graphs = {}
    for form, sub_pixel in (("convtranspose", False), ("subpixel", True)):
        fp32 = export_graph(GraphConfig(conv_form(model.decoder, sub_pixel=sub_pixel), f"{form}.onnx", "latent", "image",
                                        rewrite=depth_to_space_dcr), tmp, calib)
        int8 = tmp / f"{form}-int8.onnx"
        quantize_graph(fp32, int8, "latent", calib, node_names(fp32, ("Conv", "ConvTranspose", "Gemm", "MatMul"))[-1:])
        graphs[form] = {"fp32": fp32, "int8": int8}
    out: dict = {"repeats": repeats, "rows": []}
    rng = np.random.default_rng(0)
    for precision in ("fp32", "int8"):
        e, _ = make_session(enc[precision], "cpu")
        d = {form: make_session(g[precision], "cpu")[0] for form, g in graphs.items()}
        for batch in batches:
            x = rng.random((batch, 1, 28, 28), dtype=np.float32)
            z = e.run(None, {"image": x})[0]
            calls = {"encode": lambda: e.run(None, {"image": x})}
            for form, s in d.items():
                calls[f"decode-{form}"] = lambda s=s: s.run(None, {"latent": z})
                calls[f"roundtrip-{form}"] = lambda s=s: s.run(None, {"latent": e.run(None, {"image": x})[0]})
            times = interleaved(calls, repeats if batch > 64 else repeats * 50)
            for k, ts in times.items():
                row = {"precision": precision, "batch": batch, "op": k, "p50_ms": float(np.median(ts) * 1e3),
                       "images_per_s": float(batch / np.median(ts)),
                       "time_over_encode": float(np.median(ts / times["encode"]))}
                out["rows"].append(row)
                print(f"  {precision} batch {batch:>4} {k:<24} p50 {row['p50_ms']:9.3f} ms {row['images_per_s']:8.0f} img/s "
                      f"(time / encode {row['time_over_encode']:.2f})", flush=True)
    return out


def bench_slices(repeats: int, batch: int = 1024) -> dict:
    """Encode and decode of a large batch two ways, interleaved: one call of the bundle's multi-threaded
    session ("plain", as onnxruntime runs it), and the bundle's own path, one single-threaded slice per
    core side by side ("sliced").  Reports images/s and decode / encode images/s for each way; outputs
    are checked equal.  The batch-1 round trip (which never slices) is timed beside them."""
    rng = np.random.default_rng(0)
    out: dict = {"batch": batch, "repeats": repeats, "rows": [], "ratios": []}
    for name in ("cnn-d16", "cnn-d16-int8"):
        b = load_bundle(name, device="cpu")
        x = rng.random((batch, 1, 28, 28), dtype=np.float32)
        z = b.encode(x)
        assert np.array_equal(z, b.encoder.run(None, {"image": x})[0])
        assert np.array_equal(b.decode(z), b.decoder.run(None, {"latent": z})[0])
        calls = {"encode plain": lambda: b.encoder.run(None, {"image": x}),
                 "decode plain": lambda: b.decoder.run(None, {"latent": z}),
                 "encode sliced": lambda: b.encode(x), "decode sliced": lambda: b.decode(z)}
        times = interleaved(calls, repeats)
        t1 = interleaved({"roundtrip": lambda: b.reconstruct(x[:1])}, repeats * 50)["roundtrip"]
        p50 = {k: float(np.median(v)) for k, v in times.items()}
        for k, v in p50.items():
            out["rows"].append({"bundle": name, "op": k, "batch": batch, "p50_ms": v * 1e3, "images_per_s": batch / v})
        out["rows"].append({"bundle": name, "op": "roundtrip", "batch": 1, "p50_ms": float(np.median(t1)) * 1e3,
                            "images_per_s": 1 / float(np.median(t1))})
        for way in ("plain", "sliced"):
            out["ratios"].append({"bundle": name, "way": way,
                                  "decode_over_encode": p50[f"encode {way}"] / p50[f"decode {way}"]})
        for r in out["rows"][-5:]:
            print(f"  {name:<13} {r['op']:<14} batch {r['batch']:>4}: p50 {r['p50_ms']:9.3f} ms {r['images_per_s']:8.0f} img/s", flush=True)
        for r in out["ratios"][-2:]:
            print(f"  {name:<13} decode / encode images/s, {r['way']}: {r['decode_over_encode']:.2f}", flush=True)
    return out


def slices_table(report: dict) -> list[str]:
    s = report["slices"]
    return ["| bundle | op | batch | p50 ms | images/s |", "|---|---|---:|---:|---:|",
            *(f"| {r['bundle']} | {r['op']} | {r['batch']} | {r['p50_ms']:.3f} | {r['images_per_s']:.0f} |" for r in s["rows"]),
            "", "| bundle | way | decode / encode images/s |", "|---|---|---:|",
            *(f"| {r['bundle']} | {r['way']} | {r['decode_over_encode']:.2f} |" for r in s["ratios"])]


def bench_sample_process(repeats: int) -> dict:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "aetool", "sample", "-n", "64", "--bundle", "cnn-d16", "-o", "s.png", "-q"],
                           cwd=tmp, check=True)
            times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "max_s": float(max(times)), "runs": repeats}


# ------------------------------------------------------------------ report
def ratio(rows, engine_a, engine_b, op, batch, key):
    a = next(r for r in rows if r["engine"] == engine_a and r["op"] == op and r["batch"] == batch)
    b = next(r for r in rows if r["engine"] == engine_b and r["op"] == op and r["batch"] == batch)
    return a[key] / b[key]


def targets(rows, training, sample) -> list[dict]:
    t = []

    def add(claim, value, goal, higher_is_better=True):
        met = value >= goal if higher_is_better else value <= goal
        t.append({"target": claim, "measured": round(value, 3), "goal": goal, "met": bool(met)})

    # both with their default thread pools (what `aetool` runs), and onnxruntime held to one thread
    add("ort fp32 round trip batch 1: torch p50 / ort p50", ratio(rows, "torch-eager", "ort-fp32", "roundtrip", 1, "p50_ms"), 3.0)
    add("same, onnxruntime on 1 thread: torch p50 / ort-1thread p50",
        ratio(rows, "torch-eager", "ort-fp32-1thread", "roundtrip", 1, "p50_ms"), 3.0)
    add("ort fp32 round trip batch 1024: ort img/s / torch img/s", ratio(rows, "ort-fp32", "torch-eager", "roundtrip", 1024, "images_per_s"), 1.3)
    if any(r["engine"] == "ort-int8" for r in rows):
        add("ort int8 round trip batch 1024: int8 img/s / fp32 img/s", ratio(rows, "ort-int8", "ort-fp32", "roundtrip", 1024, "images_per_s"), 1.5)
    add("training: aetool step img/s / lecture loop img/s", training["speedup"], 2.0)
    add("`aetool sample -n 64` whole process, median seconds", sample["median_s"], 1.0, higher_is_better=False)
    return t


def markdown(report) -> str:
    lines = [f"# aetool benchmarks, {report['date']}", "",
             f"CPU: {report['machine']['cpu']}, {report['machine']['cores']} cores; torch {report['machine']['torch']}, "
             f"onnxruntime {report['machine']['onnxruntime']}.",
             f"Model: cnn-d16, {report['flops']['encode'] / 1e6:.1f} MFLOP encode, {report['flops']['decode'] / 1e6:.1f} MFLOP decode per image.",
             f"Peak: {report['peak_gflops_fp32']:.0f} GFLOP/s, the best fp32 2048x2048 matmul of torch on this machine in this run "
             "(a practical ceiling, not a datasheet figure).", "",
             "## Targets", "", "| target | measured | goal | met |", "|---|---:|---:|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {'yes' if t['met'] else 'no'} |")
    lines += ["", "## Inference", "", "| engine | op | batch | p50 ms | p90 ms | p99 ms | images/s | % of peak |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["inference"]:
        share = "-" if r["fraction_of_peak"] is None else f"{100 * r['fraction_of_peak']:.1f}"
        lines.append(f"| {r['engine']} | {r['op']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['images_per_s']:.0f} | {share} |")
    tr = report["training"]
    lines += ["", "## Training (batch 100)", "",
              f"lecture loop fp32: {tr['lecture_fp32']['images_per_s']:.0f} img/s; aetool's training step ({tr['aetool_mode']}): "
              f"{tr['lecture_fp32']['images_per_s'] * tr['speedup']:.0f} img/s; speed-up {tr['speedup']:.2f}x.", "",
              f"`aetool sample -n 64` as a process: median {report['sample_process']['median_s']:.2f} s over {report['sample_process']['runs']} runs."]
    if report.get("slices"):
        lines += ["", "## Large batches as one slice per core (interleaved)", "", *slices_table(report)]
    if report.get("decoder_forms"):
        lines += ["", "## Decoder forms (interleaved; time / encode is the median of paired ratios)", "",
                  *forms_table(report["decoder_forms"]["rows"])]
    return "\n".join(lines) + "\n"


def forms_table(rows: list[dict]) -> list[str]:
    """The decoder-form rows as a markdown table (the suite's report and --decoder-forms share it)."""
    return ["| precision | batch | op | p50 ms | images/s | time / encode |", "|---|---:|---|---:|---:|---:|",
            *(f"| {r['precision']} | {r['batch']} | {r['op']} | {r['p50_ms']:.3f} | {r['images_per_s']:.0f} | "
              f"{r['time_over_encode']:.2f} |" for r in rows)]


def plot(report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["inference"] if r["op"] == "roundtrip"]
    engines = sorted({r["engine"] for r in rows}, key=lambda e: [r["engine"] for r in rows].index(e))
    batches = sorted({r["batch"] for r in rows})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(engines)
    for i, e in enumerate(engines):
        vals = [next((r["images_per_s"] for r in rows if r["engine"] == e and r["batch"] == b), 0) for b in batches]
        ax.bar(np.arange(len(batches)) + i * width, vals, width, label=e)
    ax.set_xticks(np.arange(len(batches)) + width * (len(engines) - 1) / 2, [f"batch {b}" for b in batches])
    ax.set_ylabel("round trips / s (higher is better)")
    ax.set_title(f"cnn-d16 round trip, {report['machine']['cpu']}, {report['date']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def add_cuda_engines(engines: dict, fp32) -> str | None:
    """onnxruntime on CUDA, fp32 and fp16, when a usable GPU is present; returns its name.

    The fp16 variant is made here (convert_fp16, parity-checked) rather than
    shipped: it is for GPUs, and the CPU provider runs fp16 slower than fp32.
    """
    from aetool.training.variants import convert_fp16
    from aetool.runtime import cuda_unusable_reason

    if cuda_unusable_reason() is not None:
        return None
    gpu = load_bundle(fp32.path, device="cuda")  # fails loudly if the CUDA provider does not start
    engines["ort-cuda-fp32"] = lambda x: onnx_ops(gpu, x)
    fp16_dir = Path(tempfile.mkdtemp()) / "cnn-d16-fp16"
    convert_fp16(fp32.path, fp16_dir, eval_images=1000)
    gpu16 = load_bundle(fp16_dir, device="cuda")
    engines["ort-cuda-fp16"] = lambda x: onnx_ops(gpu16, x)
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA GPU"


def write_report(report: dict, stem: Path) -> None:
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    plot(report, stem.with_suffix(".png"))


def forms_only(out: Path, quick: bool) -> None:
    """The decoder-form rows alone (minutes, not the whole suite), with the machine they ran on."""
    import onnxruntime

    model, _ = model_from_bundle(load_bundle("cnn-d16", device="cpu"))
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__,
                          "torch": torch.__version__},
              "decoder_forms": bench_decoder_forms(model, repeats=3 if quick else 9)}
    stem = out / f"decoder-forms-{report['date']}"
    out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Decoder export forms, {report['date']}", "",
             f"CPU: {report['machine']['cpu']}, {report['machine']['cores']} cores (shared with other jobs: read the ratios); "
             f"onnxruntime {report['machine']['onnxruntime']}, default threads. cnn-d16's weights; `convtranspose` is the "
             "earlier export form, `subpixel` the shipped one (aetool/training/conv_form.py).", "",
             *forms_table(report["decoder_forms"]["rows"])]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(stem.with_suffix(".md").read_text())


def slices_only(out: Path, quick: bool) -> None:
    """The sliced-batch rows alone (a minute), with the machine they ran on."""
    import onnxruntime

    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
              "machine": {"cpu": cpu_name(), "onnxruntime": onnxruntime.__version__},
              "slices": bench_slices(repeats=3 if quick else 15)}
    stem = out / f"slices-{report['date']}" if not quick else out / "slices-quick"
    out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Large batches as one slice per core, {report['date']}", "",
             f"CPU: {report['machine']['cpu']}; onnxruntime {report['machine']['onnxruntime']}. "
             "plain: one call of the bundle's session at onnxruntime's default threads; sliced: what "
             "`Bundle.encode`/`decode` run, one single-threaded slice per core side by side (aetool/bundle.py). "
             "Medians of interleaved calls.", "", *slices_table(report)]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(stem.with_suffix(".md").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short timings, for a smoke test")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--retarget", type=Path, metavar="JSON",
                   help="recompute the targets and tables of a saved run (no new measurements)")
    p.add_argument("--decoder-forms", action="store_true",
                   help="only the decoder-form comparison, into results/decoder-forms-DATE.{json,md}")
    p.add_argument("--slices", action="store_true",
                   help="only the sliced-batch comparison, into results/slices-DATE.{json,md}")
    args = p.parse_args()
    if args.decoder_forms:
        forms_only(args.out, args.quick)
        return
    if args.slices:
        slices_only(args.out, args.quick)
        return
    if args.retarget:
        report = json.loads(args.retarget.read_text())
        report["targets"] = targets(report["inference"], report["training"], report["sample_process"])
        write_report(report, args.retarget.with_suffix(""))
        print(markdown(report))
        return
    seconds, train_steps, sample_runs = (0.2, 5, 2) if args.quick else (2.0, 40, 7)
    batches = (1, 64, 1024)

    import onnxruntime

    fp32 = load_bundle("cnn-d16", device="cpu")
    fp32_1 = load_bundle("cnn-d16", device="cpu", threads=1)
    model, weights = model_from_bundle(fp32)
    assert weights == "bundle"
    engines = {"torch-eager": lambda x: torch_ops(fp32, x)[0],
               "ort-fp32": lambda x: onnx_ops(fp32, x), "ort-fp32-1thread": lambda x: onnx_ops(fp32_1, x)}
    try:
        int8 = load_bundle("cnn-d16-int8", device="cpu")
        engines["ort-int8"] = lambda x: onnx_ops(int8, x)
    except Exception as e:  # the int8 bundle is optional for a dev checkout
        print(f"  (no int8 bundle: {e})")
    gpu = add_cuda_engines(engines, fp32)
    print("peak...", flush=True)
    peak = matmul_peak_gflops(seconds=seconds)
    flops = model_flops(model)
    print("inference...", flush=True)
    rows = bench_inference(engines, batches, seconds, flops, peak)
    print("training...", flush=True)
    training = bench_training(train_steps)
    sample = bench_sample_process(sample_runs)
    print("decoder forms...", flush=True)
    forms = bench_decoder_forms(model, repeats=3 if args.quick else 9)
    print("sliced batches...", flush=True)
    slices = bench_slices(repeats=3 if args.quick else 9)
    now = datetime.datetime.now(datetime.timezone.utc)
    report = {
        "date": now.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "gpu": gpu, "cores": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
                    "python": platform.python_version()},
        "quick": args.quick,
        "flops": flops,
        "peak_gflops_fp32": peak,
        "inference": rows,
        "training": training,
        "sample_process": sample,
        "decoder_forms": forms,
        "slices": slices,
    }
    report["targets"] = targets(rows, training, sample)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / ("quick" if args.quick else f"{'cuda' if gpu else 'cpu'}-{report['date']}")
    write_report(report, stem)
    print(markdown(report))
    print(f"wrote {stem}.json, .md, .png")


if __name__ == "__main__":
    main()

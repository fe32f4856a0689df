"""Real photographs: aetool's photo network against PCA at the same d, on patches of colour photographs.

    pip install -e ".[bench]"                   # scikit-image (the photos, SSIM), scikit-learn (the PCA check)
    python benchmarks/photos.py                 # the table; about two hours on 2 cores (CPU named in the results)
    python benchmarks/photos.py --quick         # a smoke run: tiny folders, 2 epochs

The photographs are those inside scikit-image's wheel (benchmarks/photo_patches.py cuts them).
Two splits:
  * random: random patches of all photographs, aetool's own seeded 90/10 validation split;
  * held-out photos: training patches from seven photographs, validation patches from two others
    that no model sees in training (the CNN picks its best epoch on its own split of the seven).
For each row the CNN is trained and exported by the aetool CLI, as a user would, and scored through
the exported bundle (onnxruntime); PCA is fitted on the same training images (aetool's PCA where it
takes the size, scikit-learn's as the check) and scored on the same validation images.  Scores: SSE
per image, PSNR, SSIM (scikit-image's, Gaussian window) and CNN/PCA SSE.  Then the bundle's encoder
and decoder speed, images/s side by side.  Results: benchmarks/results/photos-<date>.{md,json}; a run
with --rows adds its rows to that day's file (the table can be built over several sittings), and
photos-<date>.png shows validation patches over the CNN's and PCA's reconstructions at d=32.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name  # noqa: E402
from photo_patches import make_folders  # noqa: E402

from aetool.folder import load_folder, split  # noqa: E402
from aetool.metrics import psnr_from_sse  # noqa: E402

# (split, image size, d); the goal rows: every d at 64 px on both splits, d=32 at 32 and 128 px
ROWS = [("random", 64, 8), ("random", 64, 32), ("random", 64, 128), ("held-out photos", 64, 8),
        ("held-out photos", 64, 32), ("held-out photos", 64, 128), ("random", 32, 32), ("random", 128, 32)]


def aetool(*args: str, cwd: Path) -> float:
    """Run the aetool CLI as a user would; returns its wall time."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aetool", *args], cwd=cwd, check=True)
    return time.perf_counter() - t0


def images_of(folder: Path, size: int, part: str) -> np.ndarray:
    """A folder's images as float32 (N, 3, S, S): all of them, or aetool's training or validation part."""
    data = load_folder(folder, channels=3, size=size, quiet=True)
    x = np.asarray(data.images[:])
    if part != "all":
        train, val = split(len(data), 0.1, 0)
        x = x[train if part == "train" else val]
    return x.astype(np.float32) / 255


def scores(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    from skimage.metrics import structural_similarity

    x_hat = np.clip(x_hat, 0, 1)  # as every picture aetool writes
    sse = ((x_hat - x) ** 2).reshape(len(x), -1).sum(1)
    ssim = [structural_similarity(a, b, channel_axis=0, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False) for a, b in zip(x, x_hat)]
    return {"sse": float(sse.mean()), "psnr": psnr_from_sse(float(sse.mean()), x[0].size), "ssim": float(np.mean(ssim))}


def pca_reconstruct(fit, x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.float64)
    return ((flat - fit.mean) @ fit.components @ fit.components.T + fit.mean).reshape(x.shape).astype(np.float32)


def pca_scores(train: np.ndarray, val: np.ndarray, d: int) -> tuple[dict, float, object]:
    """aetool's PCA (training.pca, any size) fitted on ``train`` and scored on ``val``, with its fit
    seconds; scikit-learn's randomized PCA on the same images is the check (its SSE beside ours)."""
    from sklearn.decomposition import PCA

    from aetool.training.pca import fit_pca_streaming

    t0 = time.perf_counter()
    fit = fit_pca_streaming(train, d)
    seconds = time.perf_counter() - t0
    recon = pca_reconstruct(fit, val)
    check = PCA(d, svd_solver="randomized", random_state=0).fit(train.reshape(len(train), -1))
    check_sse = float(((check.inverse_transform(check.transform(val.reshape(len(val), -1))) - val.reshape(len(val), -1)) ** 2)
                      .sum(1).mean())
    return {**scores(val, recon), "pca": "aetool", "scikit_learn_sse": check_sse}, seconds, fit


def cnn_row(work: Path, folder: Path, size: int, d: int, epochs: int, val: np.ndarray, name: str,
            reuse: bool = False) -> dict:
    from aetool.bundle import load_bundle

    metrics_path, bundle = work / "models" / name / "metrics.json", work / "export" / name
    metrics = json.loads(metrics_path.read_text()) if reuse and metrics_path.exists() else None
    done = metrics is not None and len(metrics["history"]) == epochs
    wall = None if done else aetool(
        "train", "--data", str(folder), "--image-size", str(size), "--channels", "3", "--d", str(d),
        "--epochs", str(epochs), "--out", f"models/{name}", "--force", "--quiet", cwd=work)
    if not (done and (bundle / "latent.json").exists()):
        aetool("export", f"models/{name}", "--out", f"export/{name}", "--quiet", cwd=work)
    if not done:
        metrics = json.loads(metrics_path.read_text())
    b = load_bundle(bundle, device="cpu")
    history = metrics["history"]
    seconds = sum(h["seconds"] for h in history)
    last, best = history[-1]["test_sse_per_image"], min(h["test_sse_per_image"] for h in history)
    return {**scores(val, b.reconstruct(val)), "train_seconds": seconds, "wall_seconds": wall,
            "images_per_s": metrics["data"]["train_images"] * len(history) / seconds,
            "best_epoch": metrics["best_epoch"], "last_over_best": last / best,
            "parameters": b.meta.encoder.parameters + b.meta.decoder.parameters,
            "macs": b.meta.encoder.macs + b.meta.decoder.macs, "precision": metrics["precision"],
            "bundle": str(bundle)}


def speed(bundle_dir: str, batch: int = 256, repeats: int = 7) -> dict:
    """The bundle's encoder and decoder, images/s, interleaved so both see the same machine."""
    from aetool.bundle import load_bundle

    b = load_bundle(bundle_dir, device="cpu")
    x = np.random.default_rng(0).random((batch, *b.meta.image.shape), dtype=np.float32)
    z = b.encode(x)
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        b.encode(x)
        enc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b.decode(z)
        dec.append(time.perf_counter() - t0)
    e, g = batch / np.median(enc), batch / np.median(dec)
    return {"batch": batch, "encode_images_per_s": e, "decode_images_per_s": g, "decode_over_encode": g / e}


def figure(val: np.ndarray, bundle_dir: str, fit, path: Path, n: int = 12) -> None:
    """Validation patches (top) over the CNN's (middle) and PCA's (bottom) reconstructions: patches
    spread over the most detailed half (by the mean step between neighbouring pixels), as smooth ones
    look alike in all three."""
    from aetool.bundle import load_bundle
    from aetool.image_output import make_grid, stack_rows, write_png

    detail = np.abs(np.diff(val, axis=-1)).mean((1, 2, 3)) + np.abs(np.diff(val, axis=-2)).mean((1, 2, 3))
    x = val[np.argsort(detail)[np.linspace(len(val) // 2, len(val) - 1, n).astype(int)]]
    cnn = np.clip(load_bundle(bundle_dir, device="cpu").reconstruct(x), 0, 1)
    pca = np.clip(pca_reconstruct(fit, x), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(stack_rows([make_grid(part, n) for part in (x, cnn, pca)]), path, scale=2)


def merged(path: Path, rows: list[dict], info: dict) -> list[dict]:
    """This run's rows added to those already in ``path`` (same day, same settings), in ROWS order."""
    key = lambda r: (r["split"], r["size"], r["d"])  # noqa: E731
    if path.exists():
        old = json.loads(path.read_text())
        if all(old["info"].get(k) == info[k] for k in ("cpu", "epochs", "quick")):
            info["counts"] = {**{int(k): v for k, v in old["info"]["counts"].items()}, **info["counts"]}
            info["speed"] = old["info"].get("speed")
            new = {key(r) for r in rows}
            rows = [r for r in old["rows"] if key(r) not in new] + rows
    order = {row: i for i, row in enumerate(ROWS)}
    return sorted(rows, key=lambda r: order.get(key(r), len(order)))


def markdown(rows: list[dict], info: dict) -> str:
    lines = [f"# Photo network vs PCA ({info['date']})", "",
             f"CPU: {info['cpu']}; {info['epochs']} epochs; patches: {info['counts']}", "",
             "| split | size | d | CNN SSE | PCA SSE | CNN/PCA | CNN PSNR | PCA PSNR | CNN SSIM | PCA SSIM | "
             "best epoch | last/best | train s | img/s | parameters | multiply-adds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c, p = r["cnn"], r["pca"]
        lines.append(f"| {r['split']} | {r['size']} | {r['d']} | {c['sse']:.2f} | {p['sse']:.2f} | {r['ratio']:.3f} | "
                     f"{c['psnr']:.2f} | {p['psnr']:.2f} | {c['ssim']:.3f} | {p['ssim']:.3f} | {c['best_epoch']} | "
                     f"{c['last_over_best']:.3f} | {c['train_seconds']:.0f} | {c['images_per_s']:.0f} | "
                     f"{c['parameters'] / 1e6:.2f} M | {c['macs'] / 1e6:.0f} M |")
    goals = [f"- CNN/PCA < 1 on every row: {'met' if all(r['ratio'] < 1 for r in rows) else 'MISSED'}"]
    for r in rows:
        if r["split"] == "random" and r["size"] == 64 and r["d"] == 32:
            goals.append(f"- CNN/PCA <= 0.85 at d=32, 64 px, random split: {r['ratio']:.3f} "
                         f"({'met' if r['ratio'] <= 0.85 else 'MISSED'})")
    goals.append(f"- last epoch within 2 % of the best on every row: "
                 f"{'met' if all(r['cnn']['last_over_best'] <= 1.02 for r in rows) else 'MISSED'}")
    s = info.get("speed")
    if s:
        goals.append(f"\nExported encoder/decoder ({s['bundle']}, batch {s['batch']}, onnxruntime CPU): encode "
                     f"{s['encode_images_per_s']:.0f} img/s, decode {s['decode_images_per_s']:.0f} img/s, "
                     f"decode/encode {s['decode_over_encode']:.2f}")
    return "\n".join(lines + ["", "Goals:", *goals, "",
                              f"PCA: {', '.join(sorted({r['pca']['pca'] for r in rows}))}. The CNN's training seconds are "
                              "the epochs' own (validation and checkpoints aside); scikit-learn's PCA SSE, the check, is in the JSON."]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny folders and 2 epochs: a smoke run")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--count", type=int, default=12000, help="patches at 32 and 64 px (128 px: a third)")
    ap.add_argument("--rows", default="all", help="comma-separated row numbers (0-based) of ROWS, or all")
    ap.add_argument("--work", type=Path, default=None, help="keep folders, runs and bundles here")
    ap.add_argument("--reuse", action="store_true",
                    help="score runs and bundles already complete under --work instead of training them again")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--speed-only", action="store_true",
                    help="train nothing: measure the speed line again on today's 64-px d=32 bundle (still under --work)")
    a = ap.parse_args()
    if a.speed_only:
        path = a.out / f"photos-{datetime.date.today().isoformat()}.json"
        if not path.exists():
            sys.exit(f"--speed-only: no results to update at {path}")
        old = json.loads(path.read_text())
        write_results(path, old["rows"], old["info"])
        return
    epochs, count = (2, 300) if a.quick else (a.epochs, a.count)
    rows = ROWS if a.rows == "all" else [ROWS[int(i)] for i in a.rows.split(",")]
    work = a.work or Path(tempfile.mkdtemp(prefix="aetool-photos-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AETOOL_CACHE", str(work / "cache"))
    counts = {size: count if size <= 64 else max(count // 3, 100) for size in {r[1] for r in rows}}
    info = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "epochs": epochs, "counts": counts,
            "quick": a.quick}
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / ("photos-quick.json" if a.quick else f"photos-{info['date']}.json")
    for split_name, size, d in rows:
        held = split_name != "random"
        root = work / f"patches-{size}-{'heldout' if held else 'random'}"
        folders = {"train": root / "train", "heldout": root / "heldout"} if held else {"all": root}
        if not root.exists():
            folders = make_folders(root, size, counts[size], hold_out=held)
        train_folder = folders["train"] if held else folders["all"]
        train = images_of(train_folder, size, "train")
        val = images_of(folders["heldout"], size, "all") if held else images_of(train_folder, size, "val")
        name = f"photo-{size}-d{d}-{'heldout' if held else 'random'}"
        cnn = cnn_row(work, train_folder, size, d, epochs, val, name, reuse=a.reuse)
        pca, pca_seconds, fit = pca_scores(train, val, d)
        if (split_name, size, d) == ("random", 64, 32):
            figure(val, cnn["bundle"], fit, a.out / ("photos-quick.png" if a.quick else f"photos-{datetime.date.today().isoformat()}.png"))
        row = {"split": split_name, "size": size, "d": d, "train_images": len(train), "val_images": len(val),
               "cnn": cnn, "pca": {**pca, "fit_seconds": pca_seconds}, "ratio": cnn["sse"] / pca["sse"]}
        write_results(path, merged(path, [row], info), info, measure=False)  # kept should a later row fail
        print(f"{split_name:>15} {size:>3}px d={d:<3}  CNN SSE {cnn['sse']:8.2f}  PCA SSE {pca['sse']:8.2f}  "
              f"ratio {row['ratio']:.3f}  SSIM {cnn['ssim']:.3f}/{pca['ssim']:.3f}  last/best {cnn['last_over_best']:.3f}  "
              f"{cnn['images_per_s']:.0f} img/s", flush=True)
    write_results(path, merged(path, [], info), info)


def write_results(path: Path, rows: list[dict], info: dict, measure: bool = True) -> None:
    """The day's JSON and table; the speed line measured again on a 64-px d=32 bundle that still exists
    (the random split's first), else kept from the day's file."""
    at_64_d32 = sorted((r for r in rows if measure and r["size"] == 64 and r["d"] == 32
                        and Path(r["cnn"]["bundle"]).exists()), key=lambda r: r["split"] != "random")
    if at_64_d32:
        bundle = at_64_d32[0]["cnn"]["bundle"]
        info["speed"] = {"bundle": Path(bundle).name, **speed(bundle)}
    path.write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(rows, info))
    if measure:
        print(markdown(rows, info))


if __name__ == "__main__":
    main()

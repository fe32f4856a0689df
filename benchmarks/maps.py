"""Photographs at their own size: the map family against block PCA, on two photographs no run trains on.

    pip install -e ".[bench]"                  # scikit-image: the photographs and SSIM
    python benchmarks/maps.py                  # the four rows of the table (CPU named in the results)
    python benchmarks/maps.py --rows 8:4       # one row (factor:d); that day's file then holds it alone
    python benchmarks/maps.py --quick          # a smoke run: a few hundred crops a row

The seven colour photographs of scikit-image's wheel other than ``coffee`` and ``motorcycle_right``
form the training folder, at their own size (aetool splits one of them off whole, for its best
epoch); the two others are scored at full size, through the exported bundles (onnxruntime), as a user
would run ``aetool reconstruct``.  Each row trains the map network and fits block PCA at the same
factor f and d, both by the aetool CLI.  Columns: PSNR and SSIM per photograph (scikit-image's SSIM,
Gaussian window), values per pixel, training time and crops/s, encoder and decoder megapixels/s
through onnxruntime and torch eager side by side, and, for scale, the PSNR of JPEG and WebP (Pillow)
at no more bytes than the latent map quantised to 8 bits and zlib-packed.  A codec is not the goal:
these rows say how far a small autoencoder trained on seven photographs is from one.  Results:
benchmarks/results/maps-<date>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name  # noqa: E402
from photo_patches import HELD_OUT  # noqa: E402

ROWS = [(8, 4), (8, 16), (4, 4), (16, 16)]  # (factor, d): 48x, 12x, 12x, 48x fewer values
MINUTES = 20  # the budget of training per row on 2 AVX-512 cores
CROPS_PER_EPOCH = 4096


def photographs() -> dict[str, np.ndarray]:
    """scikit-image's colour photographs, (H, W, 3) uint8, by name."""
    from skimage import data

    names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
    photos = {name: getattr(data, name)()[..., :3] for name in names}
    photos["motorcycle_left"], photos["motorcycle_right"] = data.stereo_motorcycle()[:2]
    return photos


def aetool(*args: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aetool", *args], cwd=cwd, check=True)
    return time.perf_counter() - t0


def psnr_ssim(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """x, y: (C, H, W) in [0, 1]."""
    from skimage.metrics import structural_similarity

    mse = float(((x - y) ** 2).mean())
    ssim = structural_similarity(x, y, channel_axis=0, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    return 10 * np.log10(1 / mse), float(ssim)


def codec_at(x: np.ndarray, budget: int, fmt: str) -> tuple[float, int]:
    """The PSNR of ``fmt`` (JPEG, WEBP) at the highest quality whose file is at most ``budget`` bytes."""
    picture = Image.fromarray((x.transpose(1, 2, 0) * 255).round().astype(np.uint8))
    best = None
    for quality in range(1, 101):
        buf = io.BytesIO()
        picture.save(buf, fmt, quality=quality)
        if buf.tell() > budget:
            break
        best = (buf.getvalue(), quality)
    if best is None:
        return float("nan"), 0
    y = np.asarray(Image.open(io.BytesIO(best[0])).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
    return psnr_ssim(x, y)[0], len(best[0])


def packed_bytes(z: np.ndarray) -> int:
    """The latent map quantised to 8 bits (per-channel min/max, stored as float32) and zlib-packed."""
    low, high = z.min(axis=(1, 2), keepdims=True), z.max(axis=(1, 2), keepdims=True)
    q = np.round((z - low) / np.maximum(high - low, 1e-12) * 255).astype(np.uint8)
    return len(zlib.compress(q.tobytes(), 9)) + 8 * z.shape[0]


def speed(bundle_path: Path, run: Path, side: tuple[int, int] = (512, 768), repeats: int = 5) -> dict[str, float]:
    """Encoder and decoder megapixels/s at one picture of ``side`` through onnxruntime (the bundle)
    and torch eager (the run's model, fp32), interleaved."""
    import torch

    from aetool import load_bundle
    from aetool.training.run import RunFolder

    bundle = load_bundle(bundle_path, device="cpu")
    model, _ = RunFolder(run).load_model(best=True)
    x = np.random.default_rng(0).random((1, 3, *side), dtype=np.float32)
    z = bundle.encode(x)
    mp = side[0] * side[1] / 1e6
    fns = {"onnx encoder": lambda: bundle.encode(x), "onnx decoder": lambda: bundle.decode(z),
           "torch encoder": lambda: model.encoder(torch.from_numpy(x)),
           "torch decoder": lambda: model.decoder(torch.from_numpy(z))}
    times = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():
            fn()
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: mp / float(np.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=None, help="factor:d pairs, comma-separated (default: all four)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of 4096 crops (default: what --minutes allows)")
    ap.add_argument("--crops", type=int, default=CROPS_PER_EPOCH, help="crops an epoch (default 4096)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--note", default="", help="a line for the results' header (e.g. that the machine was shared)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--extra", default="", help="more train options for the network, e.g. '--zoom 2'")
    ap.add_argument("--reuse", action="store_true", help="keep a row's network run where --workdir holds it complete "
                                                          "(its training time is then the sum of its epochs')")
    a = ap.parse_args()
    rows = [tuple(map(int, r.split(":"))) for r in a.rows.split(",")] if a.rows else ROWS
    work = a.workdir or Path(tempfile.mkdtemp(prefix="aetool-maps-"))
    photos = photographs()
    train_dir = work / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    for name, p in photos.items():
        if name not in HELD_OUT and not (train_dir / f"{name}.png").is_file():  # kept: its runs' cache stays valid
            Image.fromarray(p).save(train_dir / f"{name}.png")
    heldout = {name: photos[name].transpose(2, 0, 1).astype(np.float32) / 255 for name in HELD_OUT}
    epochs = 1 if a.quick else (a.epochs or 20)
    crops = 256 if a.quick else a.crops

    from aetool import load_bundle

    results = []
    for f, d in rows:
        net, pca = f"map-f{f}-d{d}", f"pca-f{f}-d{d}"
        done = work / "models" / net / "metrics.json"
        if a.reuse and done.is_file() and json.loads(done.read_text()).get("complete"):
            seconds = sum(h["seconds"] for h in json.loads(done.read_text())["history"])
        else:
            seconds = aetool("train", "--data", str(train_dir), "--arch", "map", "--factor", str(f), "--d", str(d),
                             "--epochs", str(epochs), "--crops-per-epoch", str(crops), "--out", f"models/{net}",
                             "--force", "--quiet", *a.extra.split(), cwd=work)
        for run, fit in ((net, None), (pca, ["--arch", "pca", "--factor", str(f), "--d", str(d)])):
            bundle, metrics_file = work / "export" / run / "latent.json", work / "models" / run / "metrics.json"
            if a.reuse and bundle.is_file() and metrics_file.is_file() and \
                    bundle.stat().st_mtime > metrics_file.stat().st_mtime:
                continue  # exported after its run last changed
            if fit is not None:
                aetool("train", "--data", str(train_dir), *fit, "--out", f"models/{run}", "--force", "--quiet", cwd=work)
            aetool("export", f"models/{run}", "--out", f"export/{run}", "--quiet", cwd=work)
        metrics = json.loads((work / "models" / net / "metrics.json").read_text())
        row = {"factor": f, "d": d, "values_per_pixel": d / (f * f * 3), "train_seconds": seconds,
               "crops_per_s": float(np.median([h["train_images_per_s"] for h in metrics["history"]])),
               "epochs": metrics["epochs_done"], "crops": sum(metrics["config"]["crops_per_epoch"] for _ in metrics["history"]),
               "best_epoch": metrics.get("best_epoch"),
               "last_over_best": metrics["history"][-1]["test_sse_per_image"] / metrics["best_test_sse_per_image"],
               "photos": {}}
        bundles = {"network": load_bundle(work / "export" / net, device="cpu"),
                   "block PCA": load_bundle(work / "export" / pca, device="cpu")}
        for name, x in heldout.items():
            entry = {}
            for label, b in bundles.items():
                y = np.clip(b.reconstruct_picture(x), 0, 1)
                entry[label] = dict(zip(("psnr", "ssim"), psnr_ssim(x, y)))
            z = bundles["network"].encode(x[None, :, : x.shape[1] // f * f, : x.shape[2] // f * f])[0]
            budget = packed_bytes(z)
            entry["latent_bytes"] = budget
            for fmt in ("JPEG", "WEBP"):
                entry[fmt.lower()] = dict(zip(("psnr", "bytes"), codec_at(x, budget, fmt)))
            row["photos"][name] = entry
        row["speed_mp_per_s"] = speed(work / "export" / net, work / "models" / net)
        if (f, d) == FIGURE_ROW:
            figure(heldout[FIGURE_PHOTO], bundles, f, d, "-quick" if a.quick else "")
        results.append(row)
        print(json.dumps(row, indent=1), flush=True)
    report(results, work, a.quick, a.note)


FIGURE_ROW, FIGURE_PHOTO = (8, 4), "motorcycle_right"
ZOOM = (slice(150, 270), slice(250, 430))  # rows, columns of the zoomed region (the engine's detail)


def figure(x: np.ndarray, bundles: dict, f: int, d: int, suffix: str = "") -> None:
    """The photograph, the network's and block PCA's reconstructions at full size side by side, and the
    same region of each enlarged 3x below them."""
    from aetool.image_output import to_uint8, write_png

    pictures = [x] + [np.clip(b.reconstruct_picture(x), 0, 1) for b in bundles.values()]
    gap = 8
    top = np.concatenate([np.pad(p, ((0, 0), (0, 0), (0, gap)), constant_values=1) for p in pictures], axis=2)
    zooms = [np.repeat(np.repeat(p[:, ZOOM[0], ZOOM[1]], 3, axis=1), 3, axis=2) for p in pictures]
    bottom = np.concatenate([np.pad(z, ((0, 0), (0, 0), (0, gap)), constant_values=1) for z in zooms], axis=2)
    width = max(top.shape[2], bottom.shape[2])
    rows = [np.pad(r, ((0, 0), (0, gap), (0, width - r.shape[2])), constant_values=1) for r in (top, bottom)]
    day = datetime.date.today().isoformat()
    write_png(to_uint8(np.concatenate(rows, axis=1)).transpose(1, 2, 0), ROOT / "benchmarks" / "results" / f"maps-{day}{suffix}.png", scale=1)


def report(results: list[dict], work: Path, quick: bool, note: str = "") -> None:
    day = datetime.date.today().isoformat()
    out = ROOT / "benchmarks" / "results" / (f"maps-{day}" + ("-quick" if quick else ""))
    machine = cpu_name()
    lines = [f"# Map family vs block PCA on held-out photographs at full size ({day})", "",
             f"CPU: {machine}. Training: random crops of 7 photographs (one held out whole for the best epoch); "
             f"scored on {' and '.join(HELD_OUT)} at full size through the exported bundles. {note}", "",
             "| f | d | values/pixel | photo | network PSNR / SSIM | block PCA PSNR / SSIM | gain dB | JPEG / WebP PSNR "
             "at the latent's bytes | crops; training min (median crops/s); last/best | enc / dec MP/s onnx (torch) |",
             "|---:|---:|---:|---|---|---|---:|---|---|---|"]
    for r in results:
        s = r["speed_mp_per_s"]
        for name, e in r["photos"].items():
            n, p = e["network"], e["block PCA"]
            lines.append(f"| {r['factor']} | {r['d']} | {r['values_per_pixel']:.4f} | {name} | {n['psnr']:.2f} / "
                         f"{n['ssim']:.3f} | {p['psnr']:.2f} / {p['ssim']:.3f} | {n['psnr'] - p['psnr']:+.2f} | "
                         f"{e['jpeg']['psnr']:.2f} / {e['webp']['psnr']:.2f} ({e['latent_bytes']} B) | "
                         f"{r['crops']:,}; {r['train_seconds'] / 60:.1f} ({r['crops_per_s']:.0f}); "
                         f"{r['last_over_best']:.3f} | {s['onnx encoder']:.2f} / "
                         f"{s['onnx decoder']:.2f} ({s['torch encoder']:.2f} / {s['torch decoder']:.2f}) |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"cpu": machine, "date": day, "rows": results}, indent=1))
    print("\n".join(lines))
    print(f"-> {out}.md")


if __name__ == "__main__":
    main()

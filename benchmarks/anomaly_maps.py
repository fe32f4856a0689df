"""Where is the defect: anomaly maps against synthetic defects with known masks.

    pip install -e ".[bench]"                 # scikit-image: the textures and photographs
    python benchmarks/anomaly_maps.py         # four sources, 20 epochs each (CPU named in the results)
    python benchmarks/anomaly_maps.py --quick # a smoke run: 1 epoch, fewer tiles

For each source of benchmarks/defects.py (scikit-image's ``brick``, ``grass`` and ``gravel``, grey,
and tiles of its colour photographs): 64-px tiles from the left two thirds of the picture train the
``map`` family (f=8, the family's defaults) and block PCA at the same f and d, and the global
``photo`` family, all by the aetool CLI as a user would; normal tiles from the right third calibrate
each bundle's threshold at 1 % (``aetool calibrate``); other tiles of the right third, half of them
with a defect painted on (scratch, hole, pasted patch, stain, blur, in rotation), are scored.

Reported per source and model: image-level AUROC, pixel-level AUROC, and the area under the
per-region overlap curve up to 30 % false-positive rate (PRO, as MVTec AD reports it); for the
calibrated threshold, its false-positive rate on the normal test tiles with a 95 % interval. The
maps are aetool's own (aetool.anomaly_maps: the appearance model that ``aetool calibrate`` fits on
the normal tiles); a second table compares them with what they were chosen over, on the same
reconstructions (the reconstruction map of calibrations without an appearance model, the plain
smoothed squared error at several widths, and 1 - SSIM).
Results: benchmarks/results/anomaly-maps-<date>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anomaly_metrics import image_auroc, pixel_auroc, pro_auc  # noqa: E402
from defects import defect_kinds, defect_set, sources, split_tiles, tiles  # noqa: E402
from machine import cpu_name  # noqa: E402

from aetool.anomaly import combine, map_parts, parts  # noqa: E402
from aetool.anomaly_maps import error_map, heat_overlay, reconstruction_map  # noqa: E402
from aetool.bundle import load_bundle  # noqa: E402
from aetool.stats import clopper_pearson  # noqa: E402

SIZE, FACTOR = 64, 8
TRAIN, CALIBRATE, TEST = 300, 300, 200
SIGMAS = (0.0, 2.0, 4.0, 8.0)
KINDS = ("aetool's map", "reconstruction map")  # the shipped map first; the others are what it was chosen against
FPR = 0.01


def aetool(*args: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aetool", *args], cwd=cwd, check=True)
    return time.perf_counter() - t0


def save_tiles(folder: Path, pictures: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, x in enumerate(pictures):
        u8 = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
        path = folder / f"t{i:04d}.png"
        Image.fromarray(u8[0] if len(u8) == 1 else u8.transpose(1, 2, 0)).save(path)
        paths.append(path)
    return paths


def as_read(pictures: np.ndarray) -> np.ndarray:
    """The tiles as the bundles read them back from their PNGs: 8-bit levels."""
    return (np.clip(pictures, 0, 1) * 255).round().astype(np.float32) / 255


def ssim_map(x: np.ndarray, y: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """1 - SSIM per pixel (Gaussian windows of ``sigma``, the channels' mean): a structural error,
    the alternative to the smoothed squared error that the table compares."""
    from aetool.anomaly_maps import gaussian_blur

    c1, c2 = 0.01**2, 0.03**2
    out = np.zeros(x.shape[1:], np.float32)
    for a, b in zip(x, y):
        mx, my = gaussian_blur(a, sigma), gaussian_blur(b, sigma)
        vx = gaussian_blur(a * a, sigma) - mx * mx
        vy = gaussian_blur(b * b, sigma) - my * my
        cxy = gaussian_blur(a * b, sigma) - mx * my
        out += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return 1 - out / len(x)


def source_row(name: str, picture: np.ndarray, donors: list[np.ndarray], work: Path, epochs: int,
               n: tuple[int, int, int], reuse: bool = False) -> dict:
    n_train, n_cal, n_test = n
    train, test_pool = split_tiles(picture, SIZE, n_train, n_cal + n_test, seed=1)
    calibration, test = test_pool[:n_cal], test_pool[n_cal:]
    pictures, masks, labels = defect_set(test, np.random.default_rng(2), donors)
    pictures = as_read(pictures)
    save_tiles(work / "train", train)
    save_tiles(work / "calibrate", calibration)
    d = "4"  # the map family's default: 4 codes per 8x8 block, for grey tiles as for colour
    runs = {"map": ["--arch", "map", "--factor", str(FACTOR), "--d", d, "--epochs", str(epochs)],
            "block PCA": ["--arch", "pca", "--factor", str(FACTOR), "--d", d],
            "photo (global)": ["--arch", "photo", "--d", "16", "--epochs", str(epochs)]}
    row: dict = {"source": name, "channels": int(picture.shape[0]), "models": {}}
    for label, options in runs.items():
        run = label.split()[0].lower()
        if reuse and (work / "export" / run / "latent.json").is_file():  # trained and exported by an earlier run
            seconds = sum(h["seconds"] for h in json.loads((work / "models" / run / "metrics.json").read_text())["history"])
        else:
            seconds = aetool("train", "--data", "train", *options, "--out", f"models/{run}", "--force", "--quiet", cwd=work)
            aetool("export", f"models/{run}", "--out", f"export/{run}", "--fpr", "0", "--quiet", cwd=work)
        aetool("calibrate", "--bundle", f"export/{run}", "--data", "calibrate", "--fpr", str(FPR), "--quiet", cwd=work)
        b = load_bundle(work / "export" / run, device="cpu")
        cal = b.meta.anomaly
        entry: dict = {"train_seconds": seconds, "heldout_fpr": cal.heldout_fpr, "heldout_images": cal.heldout_images,
                       "heldout_interval": cal.heldout_interval}
        if b.is_map:
            maps: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
            maps.update({f"error, sigma {s:g}": [] for s in SIGMAS})
            maps["1 - SSIM"] = []

            def seen(i: int, x: np.ndarray, y: np.ndarray, amap: np.ndarray) -> None:
                """The scoring's own reconstruction and map, and the maps compared with it, on the same y."""
                maps[KINDS[0]].append(amap)
                maps[KINDS[1]].append(reconstruction_map(x, y))
                for s in SIGMAS:
                    maps[f"error, sigma {s:g}"].append(error_map(x, y, s))
                maps["1 - SSIM"].append(ssim_map(x, y))

            sse, nll = map_parts(b, list(pictures), on_map=seen)
            entry["by_kind"] = {k: {"pixel_auroc": pixel_auroc(v, list(masks)),
                                    "pro": pro_auc(v, list(masks), thresholds=None)} for k, v in maps.items()}
            entry.update(entry["by_kind"][KINDS[0]])
            if run == "map":  # the figure's tiles (not written to the JSON)
                row["examples"] = [(pictures[i], maps[KINDS[0]][i], masks[i], cal.pixel_threshold)
                                   for i in np.flatnonzero(labels)[:5]]
        else:
            sse, nll = parts(b, pictures)
        scores = combine(sse, nll, cal)
        entry["image_auroc"] = image_auroc(scores, labels)
        normal = labels == 0
        flagged = int(np.sum(~(scores[normal] <= cal.threshold)))
        entry["test_fpr"] = flagged / int(normal.sum())
        entry["test_fpr_interval"] = clopper_pearson(flagged, int(normal.sum()), 0.95)
        kinds = np.array(defect_kinds(labels), dtype=object)
        entry["kinds_auroc"] = {}
        for k in sorted({k for k in kinds if k}):
            these = kinds == k
            entry["kinds_auroc"][k] = image_auroc(np.concatenate([scores[normal], scores[these]]),
                                                  np.concatenate([np.zeros(normal.sum()), np.ones(these.sum())]))
        row["models"][label] = entry
    return row


def figure(rows: list[dict], path: Path) -> None:
    """Per source, a row of defective tiles: the tile, the map family's heat map, the true mask."""
    from aetool.image_output import write_png

    gap = 4
    lines = []
    for r in rows:
        cells = []
        for x, amap, mask, threshold in r.pop("examples"):
            rgb = np.repeat(x, 3, 0) if len(x) == 1 else x
            tile = (rgb.transpose(1, 2, 0) * 255).round().astype(np.uint8)
            heat = heat_overlay(x, amap, threshold)
            truth = np.where(mask[..., None], np.array([250, 200, 40], np.uint8), (tile * 0.4).astype(np.uint8))
            for a in (tile, heat, truth):
                cells += [a, np.full((SIZE, gap, 3), 255, np.uint8)]
            cells.append(np.full((SIZE, 3 * gap, 3), 255, np.uint8))
        lines += [np.concatenate(cells, 1), np.full((gap, sum(c.shape[1] for c in cells), 3), 255, np.uint8)]
    width = max(line.shape[1] for line in lines)
    grid = np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255)
                           for line in lines])
    write_png(grid, path, scale=2)


def report(rows: list[dict], quick: bool, epochs: int, note: str) -> None:
    day = datetime.date.today().isoformat()
    out = ROOT / "benchmarks" / "results" / (f"anomaly-maps-{day}" + ("-quick" if quick else ""))
    figure(rows, out.with_suffix(".png"))
    lines = [f"# Anomaly maps on synthetic defects ({day})", "",
             f"CPU: {cpu_name()}. {epochs} epochs; 64-px tiles; threshold calibrated at {100 * FPR:g} % on normal tiles "
             f"of the test columns. {note}", "",
             "| source | model | image AUROC | pixel AUROC | PRO (30 % FPR) | FPR of the 1 % threshold: calibration check / "
             "normal test tiles (95 % interval) | training s |", "|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        for label, e in r["models"].items():
            pix = f"{e['pixel_auroc']:.3f}" if "pixel_auroc" in e else "-"
            pro = f"{e['pro']:.3f}" if "pro" in e else "-"
            lo, hi = e["test_fpr_interval"]
            check = "-" if e["heldout_fpr"] is None else f"{100 * e['heldout_fpr']:.1f} % of {e['heldout_images']}"
            lines.append(f"| {r['source']} | {label} | {e['image_auroc']:.3f} | {pix} | {pro} | {check} / "
                         f"{100 * e['test_fpr']:.1f} % ({100 * lo:.1f}-{100 * hi:.1f} %) | {e['train_seconds']:.0f} |")
    mean = {label: {k: float(np.mean([r["models"][label][k] for r in rows])) for k in ("image_auroc", "pixel_auroc", "pro")
                    if all(k in r["models"][label] for r in rows)} for label in rows[0]["models"]}
    lines += ["", "Mean over the sources: " + "; ".join(
        f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()) for label, m in mean.items()), "",
        "The map family's map against what it was chosen over: aetool's (the distance of each pixel's local statistics "
        "from the nearest normal neighbourhood of the calibration's appearance model), and, on the same reconstructions, the "
        "reconstruction map (the smoothed squared error over the lesser smoothed texture energy of picture and reconstruction "
        "plus the picture's mean error, the map of calibrations without an appearance model), the plain squared error "
        "smoothed by a Gaussian of sigma pixels, and 1 − SSIM: pixel AUROC / PRO per source", ""]
    kinds = list(rows[0]["models"]["map"]["by_kind"])
    lines += ["| source | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for r in rows:
        by = r["models"]["map"]["by_kind"]
        lines.append(f"| {r['source']} | " + " | ".join(f"{by[k]['pixel_auroc']:.3f} / {by[k]['pro']:.3f}" for k in kinds) + " |")
    lines += ["", "Image AUROC per defect kind (map family): " + "; ".join(
        f"{r['source']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["models"]["map"]["kinds_auroc"].items()) for r in rows)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"cpu": cpu_name(), "date": day, "epochs": epochs, "rows": rows},
                                                   indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else float(o)))
    print("\n".join(lines))
    print(f"-> {out}.md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="1 epoch and fewer tiles: a smoke run")
    ap.add_argument("--only", default="", help="sources, comma-separated (brick, grass, gravel, colour)")
    ap.add_argument("--note", default="")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="keep the bundles an earlier run left in --workdir")
    a = ap.parse_args()
    epochs, n = (1, (60, 170, 40)) if a.quick else (a.epochs, (TRAIN, CALIBRATE, TEST))
    pictures = sources()
    names = [s for s in a.only.split(",") if s] or list(pictures)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="aetool-anomaly-maps-"))
    rows = []
    for name in names:
        donors = [tiles(p, SIZE, np.random.default_rng(3), 8)[0] for k, p in pictures.items() if k != name]
        rows.append(source_row(name, pictures[name], donors, work / name, epochs, n, a.reuse))
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("models", "examples")}), flush=True)
    report(rows, a.quick, epochs, a.note)


if __name__ == "__main__":
    main()

"""The lecture's experiments, reproduced from bundles: CNN vs PCA at several d.

For each latent size: reconstructions of the first test digits (the lecture's
figure), and on all 10,000 test images the SSE per image, PSNR, and the
identity kept (the shipped classifier reads the reconstruction as the true
digit).  Then interpolations (PCA d=32, CNN d=8 and d=32) and samples from the
diagonal Gaussian (d = 8, 16, 32) for both families, beside samples from the
Gaussian mixture the bundles also carry, each scored by how many samples the
classifier reads confidently as some digit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bundle import Bundle, load_bundle
from .classify import DigitClassifier, confidently_read, identity_kept
from .errors import AetoolError
from .fileio import write_bytes, write_json
from .image_output import make_grid, stack_rows, write_gif, write_png
from .lecture import IMAGE_SHAPE, NB_CHANNELS
from .metrics import psnr_from_sse, sse_per_image
from .mnist import load_mnist

FAMILIES = ("cnn", "pca")
INTERPOLATION_MODELS = (("pca", 32), ("cnn", 8), ("cnn", 32))
SAMPLING_DS = (8, 16, 32)
SCORED_SAMPLES = 2000
PAIRS = ((0, 1), (2, 3), (4, 7), (8, 11), (17, 18))  # first test digits: 7-2, 1-0, 4-9, 5-6, 3-4


def started_from(bundle: Bundle) -> str:
    """How the bundle's training began, for the table: random, or the run it started from and how it differed."""
    record = bundle.meta.training_record
    options = record.options
    if bundle.family != "cnn":
        return "closed form"
    parts = [Path(options.init_from).name if options.init_from else "random"]
    starts = record.started_from
    if starts and starts[0].shift:
        parts[0] += f" (trained on digits shifted up to {starts[0].shift} px)"
    width = options.width or NB_CHANNELS
    if width != NB_CHANNELS:
        parts.append(f"{width} channels")
    if options.revive_dead:
        parts.append("revived")
    if options.shift:
        parts.append(f"shifts up to {options.shift} px")
    if options.average_last:
        parts.append(f"mean of last {options.average_last} epochs")
    return ", ".join(parts)


def evaluate(bundle: Bundle, images: np.ndarray, labels: np.ndarray, classifier: DigitClassifier, n_show: int) -> tuple[dict, np.ndarray]:
    recon = bundle.reconstruct(images)
    sse = sse_per_image(images, recon)
    kept = identity_kept(classifier, recon, labels)
    row = {
        "family": bundle.family, "d": bundle.d, "bundle": bundle.name,
        "test_sse_per_image": float(sse.mean()), "psnr_db": psnr_from_sse(float(sse.mean())),
        "identity_kept": float(kept.mean()), f"kept_first_{n_show}": int(kept[:n_show].sum()),
        "epochs": bundle.meta.training_record.epochs,
        # a run started from another (aetool train --init-from) inherits its training too
        "epochs_in_all": bundle.meta.training_record.epochs_in_all,
        "started_from": started_from(bundle),
    }
    return row, recon


def markdown_table(rows: Sequence[dict], n_show: int, classifier_accuracy: float) -> str:
    lines = [
        f"| d | family | test SSE / image | PSNR (dB) | identity kept (10,000) | kept of first {n_show} | epochs (with starts) | started from |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['d']} | {r['family']} | {r['test_sse_per_image']:.2f} | {r['psnr_db']:.2f} | "
                     f"{100 * r['identity_kept']:.2f} % | {r[f'kept_first_{n_show}']}/{n_show} | {epochs_cell(r)} | "
                     f"{r['started_from']} |")
    lines.append(f"\nThe classifier reads {100 * classifier_accuracy:.2f} % of the original test images correctly.")
    return "\n".join(lines)


def epochs_cell(row: dict) -> str:
    """The run's own epochs, then in brackets with those of the runs it started from: "30 (97)"."""
    own, in_all = row["epochs"], row.get("epochs_in_all")
    return f"{own} ({in_all})" if in_all is not None and in_all != own else str(own)


def density_table(rows: Sequence[dict]) -> str:
    lines = [f"| d | family | density | samples read as a digit (p >= 0.9, {SCORED_SAMPLES:,}) | test log-likelihood / dim |",
             "|---:|---|---|---:|---:|"]
    for r in rows:
        ll = "-" if r["test_log_likelihood_per_dim"] is None else f"{r['test_log_likelihood_per_dim']:.3f}"
        lines.append(f"| {r['d']} | {r['family']} | {r['density']} | {100 * r['read_as_a_digit']:.1f} % | {ll} |")
    return "\n".join(lines)


def compare(ds: Sequence[int] = (2, 4, 8, 16, 32), out_dir: Path = Path("compare"), *, n_show: int = 36, steps: int = 10,
            n_samples: int = 64, seed: int = 0, device: str = "auto", scale: int = 3,
            log: Callable[[str], None] = print) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{f}-d{d}" for d in ds for f in FAMILIES]
    bundles: dict[tuple[str, int], Bundle] = {}
    missing = []
    for name in names:
        try:
            b = load_bundle(name, device=device)
        except AetoolError:
            missing.append(name)
            continue
        bundles[(b.family, b.d)] = b
    if missing:
        raise AetoolError(f"compare: no bundle {', '.join(missing)} in ./export or shipped (bash scripts/train_zoo.sh trains them)")
    test = load_mnist("test")
    classifier = DigitClassifier(device=device)
    clf_acc = float((classifier.predict(test.images) == test.labels).mean())
    shown = test.images[:n_show]
    rows, written = [], []
    for d in ds:
        grids = [make_grid(shown, 12)]
        for family in FAMILIES:
            row, recon = evaluate(bundles[(family, d)], test.images, test.labels, classifier, n_show)
            rows.append(row)
            grids.append(make_grid(recon[:n_show], 12))
            log(f"d={d:<3} {family}: SSE/image {row['test_sse_per_image']:.2f}  PSNR {row['psnr_db']:.2f} dB  "
                f"identity kept {100 * row['identity_kept']:.2f} %  ({row[f'kept_first_{n_show}']}/{n_show} of the first)")
        path = out_dir / f"recon-d{d}.png"
        write_png(stack_rows(grids, gap=8), path, scale=scale)
        written.append(path)

    starts = np.stack([test.images[a] for a, _ in PAIRS])
    ends = np.stack([test.images[b] for _, b in PAIRS])
    for family, d in INTERPOLATION_MODELS:
        if (family, d) not in bundles:
            continue
        walks = np.stack([bundles[(family, d)].interpolate(a, b, steps) for a, b in zip(starts, ends)])  # (pairs, steps, 1, 28, 28)
        strip = make_grid(walks.reshape(-1, *IMAGE_SHAPE), ncols=steps)
        path = out_dir / f"interp-{family}-d{d}.png"
        write_png(strip, path, scale=scale)
        gif = out_dir / f"interp-{family}-d{d}.gif"
        write_gif([make_grid(walks[:, t], ncols=len(PAIRS)) for t in range(steps)], gif, fps=6, scale=scale, bounce=True)
        written += [path, gif]

    density_rows = []
    for d in SAMPLING_DS:
        for family in FAMILIES:
            if (family, d) not in bundles:
                continue
            b = bundles[(family, d)]
            for density in ("diagonal", "mixture"):
                try:
                    kind = b.density_named(density).kind
                except AetoolError:  # a bundle exported before mixtures existed
                    continue
                # the lecture's figure keeps its name; the mixture's sits beside it
                path = out_dir / (f"samples-{family}-d{d}.png" if density == "diagonal" else f"samples-{density}-{family}-d{d}.png")
                write_png(make_grid(b.sample(n_samples, seed=seed, density=density), 8), path, scale=scale)
                written.append(path)
                read = confidently_read(classifier, b.sample(SCORED_SAMPLES, seed=seed + 1, density=density))
                density_rows.append({"family": family, "d": d, "density": density, "read_as_a_digit": float(read.mean()),
                                     "test_log_likelihood_per_dim": b.meta.density_test_log_likelihood_per_dim.get(kind)})

    table = markdown_table(rows, n_show, clf_acc) + ("\n\n" + density_table(density_rows) if density_rows else "")
    report = {"rows": rows, "classifier_accuracy": clf_acc, "n_show": n_show, "pairs": [list(p) for p in PAIRS],
              "densities": density_rows, "seed": seed, "figures": [p.name for p in written]}
    write_bytes(out_dir / "table.md", (table + "\n").encode())
    write_json(out_dir / "table.json", report)
    report["table"] = table
    return report

"""One-class MNIST: for each digit c, train on c alone and tell the other nine digits apart.

    python benchmarks/oneclass.py                        # all ten digits; results in benchmarks/results/
    python benchmarks/oneclass.py --digits 8 --epochs 3  # a quick look at one digit

The standard protocol: train on the training images of digit c only, score all 10,000 test images,
report the AUROC of "not c".  Per digit, side by side on the same images:
  * PCA reconstruction error (d=16, fitted on digit c): the linear baseline;
  * the CNN's reconstruction error (SSE), its latent negative log-likelihood (NLL, the bundle's
    default density), their standardised sum (the first rule), and aetool's score (the larger of
    the two standardised parts);
  * the false-positive rate at the threshold ``aetool calibrate`` sets for 1 %, twice, with 95 %
    Clopper-Pearson intervals: on held-out *training-set* images of c (``--calibration`` of them are
    left out of training; a fifth standardises the score, 2/5 set the threshold and the last 2/5
    measure it: exchangeable with the calibration images, so the promise of at most 1 % applies),
    and on c's *test* images (other writers: what a shift in the data does to the rate).
Every model goes through the product's own path: ``train`` with ``normal_class``, ``export``,
``calibrate``, and the torch-free bundle for scoring.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from aetool.anomaly import calibrate, combine  # noqa: E402
from aetool.bundle import load_bundle  # noqa: E402
from aetool.bundle_format import AnomalyCalibration  # noqa: E402
from aetool.metrics import auroc, sse_per_image  # noqa: E402
from aetool.mnist import load_mnist  # noqa: E402
from aetool.stats import clopper_pearson  # noqa: E402
from aetool.training.config import TrainConfig  # noqa: E402
from aetool.training.export import export_run  # noqa: E402
from aetool.training.train import train  # noqa: E402
from machine import cpu_name  # noqa: E402

SCORES = ("pca_sse", "cnn_sse", "cnn_nll", "sum", "combined")


def quiet(_line: str) -> None:
    pass


def fit(config: TrainConfig, work: Path, name: str) -> tuple[object, float]:
    """Train and export one run; its bundle and the training seconds."""
    t0 = time.perf_counter()
    train(config, work / name, force=True, quiet=True, log=quiet)
    seconds = time.perf_counter() - t0
    export_run(work / name, work / f"{name}-bundle", fpr=0, log=quiet)
    return load_bundle(work / f"{name}-bundle", device="cpu"), seconds


def one_digit(c: int, args: argparse.Namespace, work: Path, test, normal_train: np.ndarray) -> dict:
    shared = dict(normal_class=str(c), holdout=args.calibration, seed=args.seed)
    pca, pca_seconds = fit(TrainConfig(model="pca", d=args.pca_d, **shared), work, f"pca-{c}")
    cnn, seconds = fit(TrainConfig(d=args.d, width=args.nb_channels, epochs=args.epochs, schedule=args.schedule,
                                   precision=args.precision, shift=args.shift, denoise=args.denoise, **shared), work, f"cnn-{c}")
    # the threshold from training images of c that training left out (the first --calibration of them)
    cal = calibrate(cnn, normal_train[: args.calibration], 0.01, f"{args.calibration} held-out training images")
    z = cnn.encode(test.images)
    sse = sse_per_image(test.images, cnn.decode(z))
    nll = -cnn.density.score_samples(z.reshape(len(z), -1)) / cnn.d
    summed = AnomalyCalibration(**{**cal.to_dict(), "rule": "sum"})  # the first rule, for the record
    scores = {"pca_sse": sse_per_image(test.images, pca.reconstruct(test.images)), "cnn_sse": sse, "cnn_nll": nll,
              "sum": combine(sse, nll, summed), "combined": combine(sse, nll, cal)}
    other = test.labels != c
    flagged_test = int(np.sum(scores["combined"][~other] > cal.threshold))
    row = {"digit": c, **{f"auroc_{k}": auroc(v, other) for k, v in scores.items()},
           "fpr_heldout_train": cal.heldout_fpr, "fpr_heldout_train_interval": list(cal.heldout_interval),
           "heldout_train_images": cal.heldout_images, "calibration_images": cal.images,
           "fpr_at_1pct": flagged_test / int((~other).sum()),
           "fpr_test_interval": list(clopper_pearson(flagged_test, int((~other).sum()))),
           "normal_test_images": int((~other).sum()), "train_seconds": seconds, "pca_seconds": pca_seconds,
           "normal_test_sse": float(sse[~other].mean()), "threshold": cal.threshold}
    print(f"digit {c}: AUROC PCA {100 * row['auroc_pca_sse']:.1f}  CNN SSE {100 * row['auroc_cnn_sse']:.1f}  "
          f"NLL {100 * row['auroc_cnn_nll']:.1f}  sum {100 * row['auroc_sum']:.1f}  score {100 * row['auroc_combined']:.1f} %;  "
          f"FPR at 1 %: held-out training {_rate(row['fpr_heldout_train'], row['fpr_heldout_train_interval'])}, "
          f"test {_rate(row['fpr_at_1pct'], row['fpr_test_interval'])};  training {seconds:.0f} s", flush=True)
    return row


def _rate(rate: float, interval: list[float]) -> str:
    return f"{100 * rate:.2f} ({100 * interval[0]:.2f}-{100 * interval[1]:.2f})"


def table(rows: list[dict]) -> str:
    lines = ["| digit | PCA(16) SSE | CNN SSE | CNN latent NLL | sum rule | **aetool score** "
             "| FPR at 1 %, held-out training (95 % CI) | FPR at 1 %, test (95 % CI) | training s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['digit']} | " + " | ".join(f"{100 * r[f'auroc_{k}']:.1f}" for k in SCORES)
                     + f" | {_rate(r['fpr_heldout_train'], r['fpr_heldout_train_interval'])}"
                     + f" | {_rate(r['fpr_at_1pct'], r['fpr_test_interval'])} | {r['train_seconds']:.0f} |")
    mean = {k: np.mean([r[f"auroc_{k}"] for r in rows]) for k in SCORES}
    lines.append("| **mean** | " + " | ".join(f"**{100 * mean[k]:.1f}**" for k in SCORES)
                 + f" | {100 * np.mean([r['fpr_heldout_train'] for r in rows]):.2f}"
                 + f" | {100 * np.mean([r['fpr_at_1pct'] for r in rows]):.2f} | "
                   f"{np.mean([r['train_seconds'] for r in rows]):.0f} |")
    inside = sum(r["fpr_heldout_train_interval"][0] <= 0.01 for r in rows)
    lines.append(f"\nHeld-out training images: {inside} of {len(rows)} intervals reach down to 1 %; test digits: "
                 f"{sum(r['fpr_test_interval'][0] <= 0.01 for r in rows)} of {len(rows)}.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--nb-channels", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--precision", default="auto")
    p.add_argument("--shift", type=int, default=0)
    p.add_argument("--denoise", type=float, default=0.0)
    p.add_argument("--pca-d", type=int, default=16)
    p.add_argument("--calibration", type=int, default=1000, help="training images of c held out for the threshold")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: benchmarks/results/oneclass-DATE.json)")
    p.add_argument("--work", type=Path, default=None, help="keep the runs and bundles here (default: a temporary folder)")
    args = p.parse_args()
    digits = [int(s) for s in args.digits.split(",")]
    train_set, test = load_mnist("train"), load_mnist("test")
    rows, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aetool-oneclass-") as tmp:
        work = args.work or Path(tmp)
        for c in digits:
            rows.append(one_digit(c, args, work, test, train_set.images[train_set.labels == c]))
    import torch

    report = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "torch": torch.__version__,
              "config": {k: v for k, v in vars(args).items() if k not in ("out", "work")}, "seconds": time.perf_counter() - t0,
              "rows": rows, "mean": {k: float(np.mean([r[f"auroc_{k}"] for r in rows])) for k in SCORES}}
    text = table(rows)
    print(text)
    out = args.out or ROOT / "benchmarks" / "results" / f"oneclass-{report['date']}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(
        f"# One-class MNIST, {report['date']}\n\nCPU: {report['cpu']}; torch {report['torch']}; "
        f"{report['seconds'] / 60:.1f} min in all.\nConfig: {json.dumps(report['config'])}\n\n"
        f"AUROC (%) of \"not digit c\" on the 10,000 test images:\n\n{text}\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

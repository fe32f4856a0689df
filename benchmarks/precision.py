"""Does aetool's fast training mode reach the same model as exact fp32?

Trains the d=16 CNN twice from the same seed, with the lecture's settings
(Adam 1e-3 constant, batch 100, same data order): once in exact fp32, once in
aetool's default mode (bf16 autocast + channels_last where the CPU has BF16),
and compares test SSE per image after the same number of epochs, and the
wall-clock images/s of each whole run.

    python benchmarks/precision.py --epochs 3      # about 6 minutes on 2 cores

Writes benchmarks/results/precision-<date>.{json,md}.  The claim is the ratio
of the two SSEs (goal: within 3 %), not either absolute number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aetool.training.config import TrainConfig  # noqa: E402
from aetool.training.train import train  # noqa: E402

GOAL = 0.03


def run(precision: str, epochs: int, d: int, seed: int, limit: int | None, folder: Path) -> dict:
    config = TrainConfig(d=d, epochs=epochs, batch_size=100, lr=1e-3, schedule="constant", seed=seed,
                         device="cpu", precision=precision, limit=limit)
    metrics = train(config, folder / precision, quiet=True, log=lambda line: print(f"[{precision}] {line}", flush=True))
    hist = metrics["history"]
    return {
        "precision": metrics["precision"],
        "test_sse_per_image": metrics["test_sse_per_image"],
        "sse_by_epoch": [h["test_sse_per_image"] for h in hist],
        "train_images_per_s": sum(h["train_images_per_s"] for h in hist) / len(hist),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images (smoke runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = run("fp32", args.epochs, args.d, args.seed, args.limit, Path(tmp))
        fast = run("auto", args.epochs, args.d, args.seed, args.limit, Path(tmp))
    ratio = fast["test_sse_per_image"] / fp32["test_sse_per_image"]
    report = {
        "date": datetime.date.today().isoformat(),
        "setup": {"d": args.d, "epochs": args.epochs, "seed": args.seed, "batch_size": 100, "lr": 1e-3,
                  "schedule": "constant", "train_images": args.limit or 60000},
        "fp32": fp32, "fast": fast,
        "sse_ratio_fast_over_fp32": ratio,
        "speedup_images_per_s": fast["train_images_per_s"] / fp32["train_images_per_s"],
        "goal": f"|ratio - 1| <= {GOAL}",
        "met": abs(ratio - 1) <= GOAL,
    }
    stem = f"precision-{report['date']}" if args.limit is None else "precision-quick"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Training precision check, {report['date']}", "",
          f"d={args.d}, {args.epochs} epochs, seed {args.seed}, Adam 1e-3 constant, batch 100, "
          f"{report['setup']['train_images']} training images, 10,000 test images.", "",
          "| mode | test SSE / image by epoch | final | whole-run img/s |", "|---|---|---:|---:|"]
    for name, r in (("exact fp32", fp32), (f"aetool default ({fast['precision']})", fast)):
        md.append(f"| {name} | {', '.join(f'{v:.3f}' for v in r['sse_by_epoch'])} | {r['test_sse_per_image']:.3f} "
                  f"| {r['train_images_per_s']:.0f} |")
    md += ["", f"SSE ratio default / fp32: {ratio:.4f} (goal within {GOAL:.0%}: {'met' if report['met'] else 'missed'}); "
               f"training speed-up {report['speedup_images_per_s']:.2f}x."]
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

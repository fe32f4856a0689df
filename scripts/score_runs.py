"""Score trained runs on training images 0-9,999, to choose between them without the test labels.

The zoo's runs train on all 60,000 training images, so these 10,000 were seen
(without labels) in training: the score ranks restarts of one chain, it is not
an estimate of test numbers (at d=8 and d=16 its gains were about twice the
test gains), and it rewards a run that memorises them, so each line also gives
the test SSE per image the run logged when it finished (its metrics.json): a
candidate replaces a shipped run only if it is higher in ``identity_kept`` and
lower in ``logged_test_sse_per_image``.  Runs trained with ``--holdout 10000``
(and ``scripts/pilot_recipe.py``) hold the images out for real.

    python scripts/score_runs.py models/cnn-d8-r2 models/cnn-d8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aetool.classify import DigitClassifier, identity_kept
from aetool.data import Dataset, load_mnist
from aetool.lecture import NB_CHANNELS
from aetool.metrics import sse_per_image
from aetool.training.export import load_run_model
from aetool.training.train import METRICS, forward_all
from aetool.training.warm_start import dead_channels

SCORED = 10_000


def score_model(model: torch.nn.Module, images: Dataset, classifier: DigitClassifier) -> dict:
    """SSE per image, identity kept (%) and dead ReLU channels of ``model`` on ``images``."""
    recon = forward_all(model, images.images, torch.device("cpu"))
    dead = sum(int(mask.sum()) for mask in dead_channels(model, images.images).values())
    return {"sse_per_image": round(float(sse_per_image(images.images, recon).mean()), 3),
            "identity_kept": round(100 * float(identity_kept(classifier, recon, images.labels).mean()), 2),
            "dead_channels": dead}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (models/<name>)")
    args = p.parse_args()
    images = load_mnist("train").head(SCORED)
    classifier = DigitClassifier()
    for run in args.runs:
        model, state = load_run_model(run)
        config = state["config"]
        logged = json.loads((Path(run) / METRICS).read_text())["test_sse_per_image"]
        print(json.dumps({"run": run, "d": config["d"], "nb_channels": config.get("nb_channels", NB_CHANNELS),
                          "epochs_done": state.get("epoch"), **score_model(model, images, classifier),
                          "logged_test_sse_per_image": round(logged, 3),
                          "trained_on_scored_images": config.get("holdout", 0) < SCORED}))


if __name__ == "__main__":
    main()

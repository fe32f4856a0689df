"""Pick a training recipe without looking at the test set.

Trains the lecture's autoencoder on training images 10,000-59,999 with a short
cosine schedule, then scores it on training images 0-9,999, which it never saw:
SSE per image and identity kept (the shipped digit classifier reads the
reconstruction as the true digit).  Short runs rank recipes, they do not
predict final numbers; compare recipes at equal wall-clock time.

    python scripts/pilot_recipe.py --d 8 --epochs 3 --batch-size 50 --lr 2e-3 --threads 1
    python scripts/pilot_recipe.py --d 2 --epochs 3 --init-from models/cnn-d16 --threads 1
    python scripts/pilot_recipe.py --d 16 --epochs 6 --batch-size 50 --lr 5e-4 --init-from models/cnn-d16 --revive-dead

A run given to --init-from has seen the held-out images (without labels) in its own training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from score_runs import score_model  # beside this script

from aetool.classify import DigitClassifier
from aetool.data import Dataset, load_mnist
from aetool.training.train import Trainer, TrainConfig

HELD_OUT = 10_000


class HeldOutTrainer(Trainer):
    """A Trainer (its config with ``holdout=HELD_OUT``) whose per-epoch "test" split is the held-out head."""

    def load_data(self) -> tuple[Dataset, Dataset]:
        train = load_mnist("train", self.config.data)
        return self.config.training_part(train), train.head(HELD_OUT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--nb-channels", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-from", default=None, metavar="RUN", help="start from a larger-latent run (aetool train --init-from)")
    p.add_argument("--revive-dead", action="store_true", help="with --init-from: revive the start's dead channels")
    p.add_argument("--shift", type=int, default=0, metavar="PIXELS", help="random moves of the training digits (aetool train --shift)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 lets two pilots share 2 cores fairly)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(d=args.d, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule="cosine",
                         seed=args.seed, nb_channels=args.nb_channels, init_from=args.init_from,
                         revive_dead=args.revive_dead, shift=args.shift, holdout=HELD_OUT)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = HeldOutTrainer(config, Path(tmp), quiet=True, log=lambda s: None)
        t0 = time.perf_counter()
        trainer.run()
        seconds = time.perf_counter() - t0
    _, held_out = trainer.load_data()
    scores = score_model(trainer.model, held_out, DigitClassifier())
    print(json.dumps({**{k: v for k, v in vars(args).items() if k != "threads"}, "held_out_sse_per_image": scores["sse_per_image"],
                      "held_out_identity_kept": scores["identity_kept"], "dead_channels": scores["dead_channels"],
                      "seconds": round(seconds)}))


if __name__ == "__main__":
    main()

"""Train one run for as many epochs of a cosine schedule as fit in a wall-clock budget.

A lent GPU comes for minutes, not hours, and several runs share it, so their
speed is known only once they run.  This trains two epochs of a
``--max-epochs`` schedule, times the second (the first pays for start-up), and
sets the schedule's length to what the rest of the budget holds; the run then
trains to that end and records it (``config.epochs`` in metrics.json; each
epoch's rate in its history: the first two differ from those of
``aetool train --epochs <that> --schedule cosine`` by under 0.1 %).

    python scripts/train_for.py --seconds 420 --out models/cnn-d16-w64 --d 16 --nb-channels 64 --device cuda

Two more uses, both for judging a recipe on images it never trained on
(the README's held-out protocol):

* ``--epochs-from RUN`` takes the schedule's length from another budget run
  instead of fitting it: a ``--holdout 10000`` candidate trained beside its twin
  on all 60,000 images then trains exactly as many epochs as the twin, which
  fits its slower epochs to the budget.
* ``--then-epochs N`` adds a second phase after the schedule, into
  ``OUT-then``: N epochs from the schedule's end at a constant ``--then-lr``
  on unmoved digits (no ``--shift``), shipping the mean of the last
  ``--then-average`` (a ``--shift`` run, then a few epochs without it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from aetool.errors import AetoolError
from aetool.fileio import write_json
from aetool.training.train import TrainConfig, resume_config, train

FITTED = "fitted-epochs.json"  # written into the run folder once its schedule's length is known
SLACK = 1.1  # an epoch is budgeted at 10 % more than epoch 2 took


def epochs_that_fit(epoch_seconds: float, seconds_left: float, max_epochs: int, done: int, slack: float = SLACK) -> int:
    """Epochs in all, ``done`` of them trained: as many more as ``seconds_left`` holds at ``epoch_seconds`` each."""
    more = int(max(0.0, seconds_left) // (epoch_seconds * slack))
    return max(done, min(max_epochs, done + more))


def write_fitted(out: Path, epochs: int) -> None:
    """Publish the schedule's length for a twin polling this folder (written atomically: never read half-written)."""
    write_json(out / FITTED, {"epochs": epochs})


def wait_for_fitted(twin: Path, seconds: float, poll: float = 0.5) -> int:
    """The schedule length ``twin`` fitted, once it has; an error if it has not within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return int(json.loads((twin / FITTED).read_text())["epochs"])
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise AetoolError(f"--epochs-from {twin}: no schedule length after {seconds:.0f} s") from None
            time.sleep(poll)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, required=True, help="wall-clock budget from the start of this script")
    p.add_argument("--reserve", type=float, default=20.0, help="seconds kept back for the density fit and slack")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-epochs", type=int, default=400)
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--nb-channels", type=int, default=TrainConfig.nb_channels)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--init-from", default=None)
    p.add_argument("--revive-dead", action="store_true")
    p.add_argument("--shift", type=int, default=0, help="random moves of the training digits, in pixels (aetool train --shift)")
    p.add_argument("--holdout", type=int, default=0, help="leave training images 0..N-1 out (aetool train --holdout)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images (for a quick check)")
    p.add_argument("--epochs-from", type=Path, default=None, metavar="RUN",
                   help="train as many epochs as this budget run (a twin started alongside) fitted")
    p.add_argument("--wait", type=float, default=180.0, help="seconds to wait for --epochs-from's length")
    p.add_argument("--then-epochs", type=int, default=0, help="then this many unshifted epochs at --then-lr, into OUT-then")
    p.add_argument("--then-lr", type=float, default=1e-4)
    p.add_argument("--then-average", type=int, default=0, help="the second phase ships the mean of its last K epochs")
    args = p.parse_args()
    if args.max_epochs < 2:
        p.error("--max-epochs must be at least 2: the schedule is fitted from the time of epoch 2")
    if args.then_epochs < 0:
        p.error("--then-epochs must be at least 0")
    deadline = time.monotonic() + args.seconds
    config = TrainConfig(d=args.d, epochs=args.max_epochs, batch_size=args.batch_size, lr=args.lr, schedule="cosine",
                         seed=args.seed, device=args.device, precision=args.precision, nb_channels=args.nb_channels,
                         init_from=args.init_from, revive_dead=args.revive_dead, limit=args.limit,
                         holdout=args.holdout, shift=args.shift)
    name = args.out.name
    then, then_out = None, args.out.with_name(args.out.name + "-then")
    if args.then_epochs:
        # the same run settings, from the schedule's end: a constant rate on unmoved digits, a weight mean
        then = dataclasses.replace(config, epochs=args.then_epochs, lr=args.then_lr, schedule="constant",
                                   init_from=str(args.out), revive_dead=False, shift=0, average_last=args.then_average)
    logged_at: list[float] = []

    def log(line: str) -> None:
        logged_at.append(time.monotonic())
        print(f"[{name}] {line}", flush=True)

    try:
        for run in (config, then):
            if run is not None:
                run.validate()  # before any training: a bad second phase must not cost the first
        train(config, args.out, stop_after=1, quiet=True, log=log)
        # epoch 1 pays for start-up (cuDNN timing its algorithms, other runs starting beside it): time epoch 2,
        # from the "training ..." line to the "epoch 2 ..." line: the loop, the test-set score and the checkpoint
        train(resume_config(args.out), args.out, resume=True, stop_after=2, quiet=True, log=log)
        second_epoch = logged_at[-1] - logged_at[-2]
        if args.epochs_from is not None:
            epochs = max(2, min(args.max_epochs, wait_for_fitted(args.epochs_from, args.wait)))
            log(f"epoch 2 took {second_epoch:.1f} s in all: the schedule ends at epoch {epochs}, as {args.epochs_from.name}'s")
        else:
            # the second phase's epochs cost about as much as these: keep their time back
            left = deadline - time.monotonic() - args.reserve - args.then_epochs * second_epoch * SLACK
            epochs = epochs_that_fit(second_epoch, left, args.max_epochs, done=2)
            log(f"epoch 2 took {second_epoch:.1f} s in all: the schedule ends at epoch {epochs}")
        write_fitted(args.out, epochs)
        train(resume_config(args.out, epochs=epochs), args.out, resume=True, quiet=True, log=log)
        if then is not None:
            name = then_out.name
            train(then, then_out, quiet=True, log=log)
    except AetoolError as e:
        sys.exit(f"[{name}] error: {e}")


if __name__ == "__main__":
    main()

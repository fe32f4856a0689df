"""The run folder (``models/<name>/``), owned here: train, PCA, warm starts and export go through it.

A run holds everything export and ``--resume`` need:

- ``checkpoint.pt``: config, epoch, weights, optimiser state, history (and the
  running weight average where one is kept): enough to resume exactly;
- ``metrics.json``: config, per-epoch loss / test SSE / PSNR / timings, the chain
  of runs it was started from, and whether it has finished;
- ``density.json``: the lecture's diagonal Gaussian fitted on f(train) when it finishes.

Every file is written atomically, so an interrupted run loses at most the epoch in progress.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..errors import AetoolError, UsageError
from ..fileio import read_json, write_bytes, write_json
from .config import TrainConfig, config_from_dict
from .families import ArchConfig, build_model

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
DENSITY = "density.json"


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    def __str__(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        """Whether a run has been started here (it has a checkpoint)."""
        return (self.path / CHECKPOINT).is_file()

    # ---- checkpoint ------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        save_torch(self.path / CHECKPOINT, state)

    def load_checkpoint(self) -> dict[str, Any]:
        path = self.path / CHECKPOINT
        if not path.is_file():
            raise AetoolError(f"{self.path}: no {CHECKPOINT} (not a training run, or it has not finished an epoch)")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: torch raises many types
            raise AetoolError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None

    def config(self) -> TrainConfig:
        return config_from_dict(self.load_checkpoint()["config"], self.path)

    def load_model(self, best: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The run's model (eval mode) with its last weights, or with ``best`` those of its best held-out
        epoch where the run recorded one; and the whole checkpoint, with ``weights`` ("last" or
        "best (epoch N)") and, for the best, its held-out ``sse``."""
        state = self.load_checkpoint()
        if "config" not in state or "model" not in state:
            raise AetoolError(f"{self.path}: {CHECKPOINT} is not an aetool autoencoder run")
        model = build_model(ArchConfig.from_stored(state, str(self.path)))
        kept = state.get("best") if best else None
        if kept is not None and kept["epoch"] != state.get("epoch"):
            model.load_state_dict(kept["model"])
            state["weights"], state["sse"] = f"best (epoch {kept['epoch']})", float(kept["sse"])
        else:
            model.load_state_dict(state["model"])
            state["weights"] = "last"
        return model.eval(), state

    def arch(self) -> ArchConfig:
        return ArchConfig.from_stored(self.load_checkpoint(), str(self.path))

    # ---- metrics and density ---------------------------------------------
    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.path / METRICS, metrics)

    def has_metrics(self) -> bool:
        return (self.path / METRICS).is_file()

    def read_metrics(self) -> dict[str, Any]:
        return read_json(self.path / METRICS)

    def write_density(self, density: dict[str, Any]) -> None:
        write_json(self.path / DENSITY, density)

    def read_density(self) -> dict[str, Any]:
        if not (self.path / DENSITY).is_file():
            raise AetoolError(f"run {self.path}: no {DENSITY} yet (training has not finished; resume it with --resume)")
        return read_json(self.path / DENSITY)

    def forget_density(self) -> None:
        """A replaced run's density belongs to the old weights: never let export pair it with new ones."""
        (self.path / DENSITY).unlink(missing_ok=True)

    # ---- lineage ---------------------------------------------------------
    def started_from(self) -> list[dict[str, Any]]:
        """The chain of runs this one was started from, as its metrics recorded it."""
        return self.read_metrics().get("started_from", []) if self.has_metrics() else []

    def chain_as_start(self, revived: bool) -> list[dict[str, Any]]:
        """This run as the start of another (``--init-from``), nearest first, followed by its own starts.

        Each entry: the run's name, its epochs, whether the run started from it revived
        its dead channels, and the ``--shift`` it trained with.  Recorded in the new
        run's metrics at its start, so a bundle can report its whole training even
        when the starts are no longer on disk.
        """
        metrics = self.read_metrics() if self.has_metrics() else {}
        entry = {"run": self.name, "epochs": metrics.get("epochs_done"), "revived": revived,
                 "shift": (metrics.get("config") or {}).get("shift", 0) if metrics else None}
        return [entry, *metrics.get("started_from", [])]


def save_torch(path: Path, obj: Any) -> None:
    """torch.save, atomically: serialised in memory first, so a full disk is a one-line error
    from the write and the file it replaces stays whole."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def epochs_in_all(own: int | None, chain: list[dict[str, Any]]) -> int | None:
    """A run's epochs plus those of every start before it; None where any is unknown."""
    counts = [own, *(entry.get("epochs") for entry in chain)]
    return None if any(c is None for c in counts) else sum(counts)


def find_run(models_dir: Path, run: str | None = None) -> RunFolder:
    """A run by path or by name under ``models_dir``; else the newest one there."""
    if run is not None:
        for path in (Path(run), Path(models_dir) / run):
            if (path / CHECKPOINT).is_file():
                return RunFolder(path)
        raise UsageError(f"run {run}: not found (no {CHECKPOINT} at {run} or {Path(models_dir) / run})")
    runs = [p for p in Path(models_dir).glob(f"*/{CHECKPOINT}") if (p.parent / METRICS).is_file()] \
        if Path(models_dir).is_dir() else []
    if not runs:
        raise AetoolError(f"no training run in {models_dir}/: run `aetool train` first, or name one")
    return RunFolder(max(runs, key=lambda p: p.stat().st_mtime).parent)

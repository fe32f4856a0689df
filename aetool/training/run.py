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
import math
from pathlib import Path
from typing import Any, Callable

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
        """The checkpoint, every record in it checked (:func:`checked_checkpoint`)."""
        path = self.path / CHECKPOINT
        if not path.is_file():
            raise AetoolError(f"{self.path}: no {CHECKPOINT} (not a training run, or it has not finished an epoch)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: torch raises many types
            raise AetoolError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None
        return checked_checkpoint(state, path)

    def config(self) -> TrainConfig:
        return config_from_dict(self.load_checkpoint()["config"], f"{self.path / CHECKPOINT}: config")

    def load_model(self, best: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The run's model (eval mode) with its last weights, or with ``best`` those of its best held-out
        epoch where the run recorded one; and the whole checkpoint, with ``weights`` ("last" or
        "best (epoch N)") and, for the best, its held-out ``sse``."""
        state = self.load_checkpoint()
        where = self.path / CHECKPOINT
        model = build_model(ArchConfig.from_stored(state, str(where)))
        kept = state.get("best") if best else None
        if kept is not None and kept["epoch"] != state.get("epoch"):
            load_weights(model, kept["model"], f"{where}: best.model")
            state["weights"], state["sse"] = f"best (epoch {kept['epoch']})", float(kept["sse"])
        else:
            load_weights(model, state["model"], f"{where}: model")
            state["weights"] = "last"
        return model.eval(), state

    def arch(self) -> ArchConfig:
        return ArchConfig.from_stored(self.load_checkpoint(), str(self.path / CHECKPOINT))

    def check_whole(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The checkpoint and metrics (None where there are none yet), each checked, and checked
        against each other: the model the checkpoint holds is the one the metrics describe.  Called
        before anything in the folder is written or reported, so an edited or mixed-up run is refused
        whole instead of failing half-way (or reporting one model's numbers under another's name)."""
        state = self.load_checkpoint()
        metrics = self.read_metrics() if self.has_metrics() else None
        arch = ArchConfig.from_stored(state, str(self.path / CHECKPOINT))
        if metrics is not None and ("arch" in metrics or "config" in metrics):
            described = ArchConfig.from_stored(metrics, str(self.path / METRICS))
            if described != arch:
                raise AetoolError(f"{self.path}: {CHECKPOINT} holds a {arch.words()} model but {METRICS} describes a "
                                  f"{described.words()} one: the files are from different runs")
        return state, metrics

    # ---- metrics and density ---------------------------------------------
    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.path / METRICS, metrics)

    def has_metrics(self) -> bool:
        return (self.path / METRICS).is_file()

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json, every record in it checked (:func:`checked_metrics`)."""
        return checked_metrics(read_json(self.path / METRICS), self.path / METRICS)

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


# ---- checking what is read back: a run folder is a user's to edit, and its files a downloaded run's
def _problem(path: Path, field: str, expected: str, value: Any) -> AetoolError:
    return AetoolError(f"{path}: {field} must be {expected}, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list, torch.Tensor)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_weights(weights: Any, path: Path, field: str, like: dict[str, torch.Size]) -> None:
    """A state dict: names to tensors, not empty, with the names and shapes of the model's (``like``)."""
    if not isinstance(weights, dict) or not weights:
        raise _problem(path, field, "a non-empty set of weights", weights)
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise _problem(path, f"{field}.{name}", "a tensor", tensor)
    if set(weights) != set(like):
        odd = sorted(set(like) ^ set(weights))
        raise AetoolError(f"{path}: {field} does not hold the model's weights ({len(odd)} missing or extra: "
                          f"{', '.join(odd[:3])})")
    for name, tensor in weights.items():
        if tensor.shape != like[name]:
            raise AetoolError(f"{path}: {field}.{name} has shape {tuple(tensor.shape)}, the model's is {tuple(like[name])}")


def checked_checkpoint(state: Any, path: Path) -> dict[str, Any]:
    """A checkpoint whose records are what resume and export read: a dict with a valid config and
    architecture, a count of epochs, the weights (and the best epoch's, of the same names and shapes),
    history and optimiser state of the right kinds.  A problem is one line naming the file and field."""
    if not isinstance(state, dict):
        raise _problem(path, "the checkpoint", "a dict of records", state)
    for field in ("config", "model"):
        if field not in state:
            raise AetoolError(f"{path}: no {field!r} record: not an aetool autoencoder run")
    if not isinstance(state["config"], dict):
        raise _problem(path, "config", "a dict of options", state["config"])
    config_from_dict(state["config"], f"{path}: config")
    arch = ArchConfig.from_stored(state, str(path))
    if not _is_count(state.get("epoch", 0)):
        raise _problem(path, "epoch", "a whole number of epochs", state.get("epoch"))
    shapes = {name: tensor.shape for name, tensor in build_model(arch).state_dict().items()}
    _check_weights(state["model"], path, "model", like=shapes)
    for field, kind in (("history", list), ("optimizer", dict), ("average", dict)):
        if field in state and not isinstance(state[field], kind):
            raise _problem(path, field, f"a {kind.__name__}", state[field])
    if any(not isinstance(row, dict) for row in state.get("history", [])):
        raise _problem(path, "history", "a list of per-epoch records", state["history"])
    best = state.get("best")
    if best is not None:
        if not isinstance(best, dict):
            raise _problem(path, "best", "the best epoch's record", best)
        if not _is_count(best.get("epoch")):
            raise _problem(path, "best.epoch", "a whole number of epochs", best.get("epoch"))
        if not _is_number(best.get("sse")):
            raise _problem(path, "best.sse", "a finite number", best.get("sse"))
        _check_weights(best.get("model"), path, "best.model", like=shapes)
    return state


# metrics.json's records that the tools read, and what each must be where present
_METRICS_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "family": ("a family name", lambda v: isinstance(v, str)),
    "arch": ("an architecture record", lambda v: isinstance(v, dict)),
    "config": ("a dict of options", lambda v: isinstance(v, dict)),
    "data": ("a record of the data", lambda v: v is None or isinstance(v, dict)),
    "started_from": ("a list of run records", lambda v: isinstance(v, list) and all(
        isinstance(e, dict) and (e.get("epochs") is None or _is_count(e.get("epochs"))) for e in v)),
    "epochs_done": ("a whole number of epochs", _is_count),
    "complete": ("true or false", lambda v: isinstance(v, bool)),
    "best_epoch": ("an epoch or null", lambda v: v is None or _is_count(v)),
    "test_sse_per_image": ("a finite number", _is_number),
    "test_psnr_db": ("a number or null", lambda v: v is None or isinstance(v, (int, float)) and not isinstance(v, bool)),
    "history": ("a list of per-epoch records", lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v)),
    "parameters": ("a record of parameter counts", lambda v: v is None or isinstance(v, dict)),
    "layers": ("a record of layers", lambda v: v is None or isinstance(v, (list, dict))),
}


def checked_metrics(metrics: Any, path: Path) -> dict[str, Any]:
    """metrics.json with every record the tools read of the right kind, its config and architecture valid."""
    if not isinstance(metrics, dict):
        raise _problem(path, "the file", "a JSON object", metrics)
    for field, (expected, ok) in _METRICS_FIELDS.items():
        if field in metrics and not ok(metrics[field]):
            raise _problem(path, field, expected, metrics[field])
    if "config" in metrics:
        config_from_dict(metrics["config"], f"{path}: config")
    if "arch" in metrics:
        ArchConfig.from_stored(metrics, str(path))
    return metrics


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    """``module.load_state_dict``, its size-mismatch report made one line naming the record."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as e:
        detail = " ".join(str(e).split())
        raise AetoolError(f"{where}: does not fit the model ({detail[:160]})") from None


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

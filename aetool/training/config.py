"""What a training run is asked to do: :class:`TrainConfig`, and recipes that chain runs.

A recipe is a TOML file of plain values, one ``[[stage]]`` table per run of a
chain, in order (``recipes/cnn-d16.toml``)::

    name = "cnn-d16"          # the bundle the last stage becomes
    int8 = true               # also ship an int8 variant

    [[stage]]                 # every TrainConfig field may be set; the rest keep their defaults
    out = "models/cnn-d16-r7"
    d = 16
    nb_channels = 64
    epochs = 162
    schedule = "cosine"

    [[stage]]
    out = "models/cnn-d16"
    init_from = "models/cnn-d16-r7"
    ...

A stage may name the same ``out`` as the one before it with a larger ``epochs``:
it resumes that run (a warm restart of its schedule).  ``stop_after`` pauses a
stage's schedule at an earlier epoch.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, is_image_folder
from ..errors import AetoolError, UsageError
from ..lecture import IMAGE_SIZES, NB_CHANNELS

MAX_SHIFT = 4  # pixels: a larger move pushes the 20x20 MNIST digit box off its 28x28 image
MAX_D = 4096  # latent sizes beyond this are a typo, not a model


@dataclass
class TrainConfig:
    d: int = 16
    model: str = "cnn"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    schedule: str = "constant"  # the lecture's constant rate, or "cosine" decay to lr/100
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast + channels_last)
    cuda_graph: bool = True  # on one GPU, replay each training step as a CUDA graph (graph_step.py)
    limit: int | None = None  # train on the first N training images only
    nb_channels: int = NB_CHANNELS
    data: str | None = None  # MNIST source: None (offline package), a folder of IDX files, "download"
    init_from: str | None = None  # start from this run's weights, latent shrunk to d, widened (warm_start.py)
    revive_dead: bool = False  # with init_from: revive the start's dead ReLU channels (warm_start.py)
    average_last: int = 0  # average the weights of the last K epochs (stochastic weight averaging); 0: off
    holdout: int = 0  # leave the first N training images out, so runs can be compared on images none trained on
    shift: int = 0  # move each training digit by up to this many pixels per axis, anew every epoch (augment.py)
    denoise: float = 0.0  # train on x + N(0, denoise^2) noise to reconstruct the clean x (augment.py); 0: off
    # a folder of images (data = its path): the image shape (None: from the data) and how pictures are fitted
    channels: int | None = None  # 1 (grey) or 3 (RGB)
    image_size: int | None = None  # square side, one of lecture.IMAGE_SIZES
    fit: str = "pad"  # keep the aspect and pad, or centre-crop
    val_split: float = 0.1  # held out of training, seeded by seed: the folder's per-epoch validation images
    workers: int | None = None  # processes decoding the folder the first time (None: every core)
    strict: bool = False  # an unreadable file in the folder is an error, not a skipped file
    normal_class: str | None = None  # train (and validate) on one class only: an MNIST digit or a sub-folder's name

    def validate(self) -> None:
        """Bad values are usage errors: the CLI answers them with exit status 2."""
        checks = [
            (1 <= self.d <= MAX_D, f"--d must be a latent size between 1 and {MAX_D}, got {self.d}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (0 <= self.seed < 2**32, f"--seed must be between 0 and 2**32 - 1, got {self.seed}"),
            (1 <= self.nb_channels <= 1024, f"--nb-channels must be between 1 and 1024, got {self.nb_channels}"),
            (self.limit is None or self.limit >= 1, f"--limit must be at least 1, got {self.limit}"),
            (0 <= self.average_last <= self.epochs,
             f"--average-last must be between 0 and --epochs ({self.epochs}), got {self.average_last}"),
            (self.holdout >= 0, f"--holdout must be at least 0, got {self.holdout}"),
            (0 <= self.shift <= MAX_SHIFT, f"--shift must be between 0 and {MAX_SHIFT} pixels, got {self.shift}"),
            (0 <= self.denoise <= 1, f"--denoise must be a noise level between 0 and 1, got {self.denoise}"),
            (not self.revive_dead or bool(self.init_from), "--revive-dead works on a start: pass --init-from RUN with it"),
            (self.schedule in ("constant", "cosine"), f"unknown schedule {self.schedule!r} (use constant or cosine)"),
            (self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}"),
            (self.image_size is None or self.image_size in IMAGE_SIZES,
             f"--image-size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {self.image_size}"),
            (self.fit in ("pad", "crop"), f"--fit must be pad or crop, got {self.fit!r}"),
            (0 < self.val_split <= 0.5, f"--val-split must be above 0 and at most 0.5, got {self.val_split}"),
            (self.workers is None or 1 <= self.workers <= 256, f"--workers must be between 1 and 256, got {self.workers}"),
            (self.model in ("cnn", "pca"), f"unknown model family {self.model!r} (use cnn or pca)"),
            (self.normal_class is None or self.normal_class.strip() != "", "--normal-class must name a class, got ''"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def training_part(self, train: Dataset) -> Dataset:
        """What this run trains on: the training set (of --normal-class alone, if given) without its
        held-out head, then the first --limit."""
        train = self.of_normal_class(train)
        if self.holdout >= len(train):
            raise UsageError(f"--holdout {self.holdout} leaves none of the {len(train)} training images")
        kept = Dataset(train.images[self.holdout :], train.labels[self.holdout :])
        return kept if self.limit is None else kept.head(self.limit)

    def of_normal_class(self, data: Dataset) -> Dataset:
        """The images of --normal-class (all of them without it): the one class a one-class detector learns."""
        if self.normal_class is None:
            return data
        present = sorted({int(v) for v in np.unique(data.labels)})
        try:
            label = int(self.normal_class)
        except ValueError:
            label = None
        if label not in present:
            raise UsageError(f"--normal-class {self.normal_class!r} is not a label of this data set "
                             f"(labels: {', '.join(map(str, present))})")
        keep = np.flatnonzero(data.labels == label)
        return Dataset(data.images[keep], data.labels[keep])

    def default_run_name(self) -> str:
        """``cnn-d16``; a CNN wider than the lecture's 32 channels says so (``cnn-d16-w64``), and a run on a
        folder of images names it (``cnn-d32-photos``)."""
        wide = self.model == "cnn" and self.nb_channels != NB_CHANNELS
        return (f"{self.model}-d{self.d}" + (f"-w{self.nb_channels}" if wide else "")
                + (f"-{Path(self.data).resolve().name}" if is_image_folder(self.data) else "")
                + (f"-class-{self.normal_class}" if self.normal_class is not None else ""))


# options that earlier versions stored and later dropped, with the value that meant "off"
RETIRED_OPTIONS = {"latent_noise": 0.0}
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def config_from_dict(stored: dict[str, Any], where: str | Path) -> TrainConfig:
    """A stored config, read leniently only where nothing changes: a retired option at its "off" value."""
    for key, value in stored.items():
        if key not in FIELDS and RETIRED_OPTIONS.get(key, object()) != value:
            raise AetoolError(f"{where}: option {key}={value!r} is not one this aetool has")
    return TrainConfig(**{k: v for k, v in stored.items() if k in FIELDS})


@dataclass
class Stage:
    """One run of a recipe: its config, its folder, and where its schedule pauses (None: at the end)."""

    config: TrainConfig
    out: Path
    stop_after: int | None = None


@dataclass
class Recipe:
    name: str
    stages: list[Stage]
    int8: bool = False

    @property
    def final(self) -> Stage:
        return self.stages[-1]


MAX_RECIPE_BYTES = 1 << 20  # recipes are a few hundred bytes; anything this large is not one
MAX_RECIPE_DEPTH = 16  # a recipe nests two levels; tomllib recurses once per bracket


def _read_toml(path: Path) -> dict[str, Any]:
    """The recipe's TOML, bounded before parsing: a regular file (a FIFO would block, /dev/zero never
    end) of at most MAX_RECIPE_BYTES, nested no deeper than MAX_RECIPE_DEPTH."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - older Pythons install tomli (pyproject.toml)
        import tomli as tomllib
    from ..fileio import _nesting, read_regular

    try:
        text = read_regular(path, MAX_RECIPE_BYTES, "--config").decode()
    except AetoolError as e:
        raise UsageError(str(e)) from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--config {path}: not a valid TOML recipe ({e})") from None
    if _nesting(text) > MAX_RECIPE_DEPTH:
        raise UsageError(f"--config {path}: nested deeper than {MAX_RECIPE_DEPTH} levels, not a recipe")
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise UsageError(f"--config {path}: not a valid TOML recipe ({' '.join(str(e).split())[:160]})") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (see the module docstring)."""
    path = Path(path)
    doc = _read_toml(path)
    stages_raw = doc.get("stage")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise UsageError(f"--config {path}: a recipe needs at least one [[stage]] table")
    unknown = set(doc) - {"name", "int8", "stage"}
    if unknown:
        raise UsageError(f"--config {path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    stages = []
    for i, raw in enumerate(stages_raw, 1):
        if not isinstance(raw, dict):
            raise UsageError(f"--config {path}: stage {i} must be a [[stage]] table, got {raw!r}"[:200])
        raw = dict(raw)
        out = raw.pop("out", None)
        stop_after = raw.pop("stop_after", None)
        if out is not None and (not isinstance(out, str) or not out.strip()):
            raise UsageError(f"--config {path}: stage {i}: 'out' must be a folder name, got {out!r}"[:200])
        if stop_after is not None and (not isinstance(stop_after, int) or isinstance(stop_after, bool) or stop_after < 1):
            raise UsageError(f"--config {path}: stage {i}: 'stop_after' must be an epoch >= 1, got {stop_after!r}"[:200])
        bad = set(raw) - FIELDS
        if bad:
            raise UsageError(f"--config {path}: stage {i} has unknown key(s) {', '.join(sorted(bad))}")
        try:
            config = TrainConfig(**raw)
        except TypeError as e:
            raise UsageError(f"--config {path}: stage {i}: {e}") from None
        _check_types(config, f"--config {path}: stage {i}")
        config.validate()
        stages.append(Stage(config, Path(out) if out else Path("models") / config.default_run_name(), stop_after))
    name = doc.get("name", stages[-1].out.name)
    if not isinstance(name, str) or not name:
        raise UsageError(f"--config {path}: 'name' must be a bundle name")
    int8 = doc.get("int8", False)
    if not isinstance(int8, bool):
        raise UsageError(f"--config {path}: 'int8' must be true or false, got {int8!r}"[:200])
    return Recipe(name=name, stages=stages, int8=int8)


def _check_types(config: TrainConfig, where: str) -> None:
    """TOML has types; a recipe value of the wrong one is an error, not a surprise later."""
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        expected = type(f.default) if f.default is not None else (int if f.name in ("limit", "channels", "image_size", "workers") else str)
        if value is None and f.default is None:
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(f"{where}: '{f.name}' must be {expected.__name__}, got {value!r}")

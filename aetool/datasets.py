"""What a run trains and is measured on: MNIST (the offline copy, IDX files, a download) or a folder of images.

A :class:`DataSelection` names the images (source, split, class, holdout, limit, shape) and
:func:`load_training_data` loads them.  Training, export and calibration all go through it, so they
see the same images: MNIST keeps its own test set as the held-out images; a folder is decoded once
into a uint8 memory map (aetool.folder) and split into training and validation images by a seeded
permutation.  A folder's images stay in the memory map: :class:`Rows` reads the rows a batch asks
for, so a data set larger than RAM trains without loading it whole.

It lives below both stages (numpy only): calibration rebuilds a run's held-out images from a bundle
without PyTorch, and training reads the same selection from its sel.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .bundle_format import OWN_SIZE, ImageSpec, Preprocessing
from .errors import AetoolError, UsageError
from .lecture import IMAGE_SHAPE

if TYPE_CHECKING:
    from .picture_store import PictureSet
from .mnist import Dataset, load_mnist


def as_float(images: np.ndarray) -> np.ndarray:
    """A batch of images as float32 in [0, 1]: uint8 arrays (a folder's cache) are divided by 255."""
    if images.dtype == np.uint8:
        return np.divide(images, np.float32(255), dtype=np.float32)
    return np.ascontiguousarray(images, dtype=np.float32)


class Rows:
    """Rows ``index`` of an image array, read only when asked for.

    From a memory-mapped cache the rows are read with ``pread`` into a fresh array rather than
    through the map: pages read that way stay in the page cache instead of the process's resident
    memory, so an epoch over a cache larger than RAM does not grow the process.
    """

    def __init__(self, images: np.ndarray, index: np.ndarray | None = None) -> None:
        self.images = images
        self.index = np.arange(len(images)) if index is None else np.asarray(index, dtype=np.int64)
        self.file = getattr(images, "filename", None) if isinstance(images, np.memmap) else None
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key) -> np.ndarray:
        rows = np.atleast_1d(self.index[key])
        out = np.empty((len(rows), *self.images.shape[1:]), dtype=self.images.dtype)
        if self.file is None:
            out[:] = self.images[rows]
        else:
            self._pread(rows, out)
        return out if np.ndim(self.index[key]) else out[0]

    def _pread(self, rows: np.ndarray, out: np.ndarray) -> None:
        if self._fd is None:
            self._fd = os.open(self.file, os.O_RDONLY)
        row_bytes = out[0].nbytes if len(out) else 0
        flat = out.reshape(len(out), -1).view(np.uint8)
        # runs of consecutive rows are read in one call (a slice is one run)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            view = memoryview(flat[start:stop]).cast("B")
            offset, done = self.images.offset + int(rows[start]) * row_bytes, 0
            while done < len(view):
                n = os.preadv(self._fd, [view[done:]], offset + done)
                if n <= 0:
                    raise OSError(f"{self.file}: the image cache is shorter than its header says")
                done += n

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)

    @property
    def dtype(self) -> np.dtype:
        return self.images.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.images.shape[1:])

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.images.shape[1:])) * self.images.dtype.itemsize


@dataclass(frozen=True)
class DataSelection:
    """Which images a run trains and is measured on; ``channels`` and ``image_size`` None: the data's own."""

    data: str | None = None  # None: MNIST's offline copy; else a folder of pictures, an IDX folder or "download"
    channels: int | None = None
    image_size: int | None = None
    fit: str = "pad"
    val_split: float = 0.1
    seed: int = 0
    normal_class: str | None = None
    holdout: int = 0
    limit: int | None = None
    workers: int | None = None
    strict: bool = False
    own_size: bool = False  # pictures kept at their own size (the map families), not resized to a square
    max_side: int = 1024  # own_size: a picture's longer side is capped at this
    crop: int | None = None  # own_size: the training crop's side (the image spec's height and width)

    def training_part(self, train: Dataset) -> Dataset:
        """What the run trains on: the training set (of --normal-class alone, if given) without its
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


@dataclass
class TrainingData:
    train: np.ndarray | Rows | PictureSet  # float32 in [0, 1] (MNIST), uint8 rows of a folder's memory map,
    heldout: np.ndarray | Rows | PictureSet  # or a folder's pictures at their own size (own_size)
    heldout_name: str  # "test" (MNIST) or "validation" (a folder's split)
    image: ImageSpec
    info: dict[str, Any] = field(default_factory=dict)  # for metrics.json's "data"


def load_training_data(sel: DataSelection, *, quiet: bool = True, log: Callable[[str], None] = print) -> TrainingData:
    """The selected training and held-out images; their shape (``.image``) is the data's where the
    selection leaves it open."""
    from .folder import is_image_folder

    source = sel.data
    if source not in (None, "hub", "download") and not Path(source).expanduser().is_dir():
        # without this a run trained on a folder that has since gone would be read as MNIST
        raise AetoolError(f"data folder {source}: not found (moved or deleted?); the run was trained on it")
    if sel.own_size and not is_image_folder(sel.data):
        raise UsageError("this family trains on pictures at their own size: give a folder of pictures with --data")
    data = (_picture_data(sel, quiet, log) if sel.own_size else _folder_data(sel, quiet, log)) \
        if is_image_folder(sel.data) else _mnist_data(sel)
    if sel.normal_class is not None:
        data.info["normal_class"] = sel.normal_class
    return data


def split_digest(paths: list[str]) -> str:
    """The SHA-256 of a list of relative paths: names a run's validation images in metrics.json."""
    h = hashlib.sha256()
    for p in paths:
        h.update(os.fsencode(p) + b"\0")
    return h.hexdigest()


def check_same_split(stored: dict[str, Any] | None, data: TrainingData, where: str,
                     why: str = "resuming would train on them; restore the folder or start a new run") -> None:
    """Refuse to resume a folder run whose validation images are no longer the ones it began with.

    The split is a seeded permutation of the folder's files by index, so a file added or removed
    moves images between the two parts: resuming would then train on images the earlier epochs
    were validated on, and the validation numbers would no longer compare.  Runs that predate the
    recorded digest are compared by their image counts."""
    if not stored or stored.get("name") != "folder" or data.info.get("name") != "folder":
        return
    then, now = stored.get("validation_sha256"), data.info.get("validation_sha256")
    same = then == now if then is not None else (
        (stored.get("train_images"), stored.get("test_images")) == (data.info["train_images"], data.info["test_images"]))
    if not same:
        raise AetoolError(f"{where}: the folder {data.info['root']} changed since this run began (its validation "
                          f"images differ): {why}")


def _mnist_data(sel: DataSelection) -> TrainingData:
    if (sel.channels or IMAGE_SHAPE[0]) != IMAGE_SHAPE[0] or (sel.image_size or IMAGE_SHAPE[-1]) != IMAGE_SHAPE[-1]:
        raise UsageError("--channels and --image-size are for folders of images; MNIST is 1x28x28")
    train = sel.training_part(load_mnist("train", sel.data))
    test = sel.of_normal_class(load_mnist("test", sel.data))
    return TrainingData(train.images, test.images, "test", ImageSpec(),
                        {"name": "mnist", "train_images": len(train), "test_images": len(test), "heldout": "test"})


def _folder_data(sel: DataSelection, quiet: bool, log: Callable[[str], None]) -> TrainingData:
    from .folder import load_folder, skipped_summary, split

    data = load_folder(sel.data, channels=sel.channels, size=sel.image_size, fit=sel.fit,
                       workers=sel.workers, strict=sel.strict, quiet=quiet)
    summary = skipped_summary(data)
    if summary:
        log(summary)
    train_idx, val_idx = split(len(data), sel.val_split, sel.seed)
    if sel.normal_class is not None:
        if sel.normal_class not in data.class_names:
            raise UsageError(f"--normal-class {sel.normal_class!r} is not a sub-folder of {sel.data} with images "
                             f"(classes: {', '.join(data.class_names) or 'none'})")
        label = data.class_names.index(sel.normal_class)
        train_idx, val_idx = train_idx[data.labels[train_idx] == label], val_idx[data.labels[val_idx] == label]
        if len(val_idx) == 0:
            raise UsageError(f"--normal-class {sel.normal_class!r}: none of its images fell in the validation "
                             f"split; raise --val-split or add images")
    train_idx = train_idx[sel.holdout :]
    if sel.limit is not None:
        train_idx = train_idx[: sel.limit]
    if len(train_idx) == 0:
        raise UsageError(f"--holdout {sel.holdout} leaves none of the folder's training images")
    info = {"name": "folder", "root": str(Path(sel.data).resolve()), "train_images": len(train_idx),
            "test_images": len(val_idx), "heldout": "validation", "val_split": sel.val_split,
            "classes": data.class_names, "skipped": len(data.skipped), "fit": data.fit,
            "validation_sha256": split_digest([data.paths[i] for i in val_idx])}
    return TrainingData(Rows(data.images, train_idx), Rows(data.images, val_idx), "validation",
                        ImageSpec(channels=data.channels, height=data.size, width=data.size,
                                  preprocessing=Preprocessing.resize(data.fit).name), info)


def _picture_data(sel: DataSelection, quiet: bool, log: Callable[[str], None]) -> TrainingData:
    """A folder's pictures at their own size (aetool.picture_store): whole pictures are held out, and
    the image spec is the training crop (``sel.crop``) with the own-size preprocessing."""
    from .folder import split
    from .picture_store import load_pictures

    if sel.normal_class is not None or sel.holdout:
        raise UsageError("--normal-class and --holdout are for families with a code vector, not for maps")
    pictures, skipped = load_pictures(sel.data, channels=sel.channels, max_side=sel.max_side, workers=sel.workers,
                                      strict=sel.strict, quiet=quiet, log=log)
    if skipped:
        log(f"skipped {len(skipped)} of {len(pictures) + len(skipped)} files (e.g. {skipped[0][0]}: {skipped[0][1]})")
    if len(pictures) < 2:
        raise UsageError(f"{sel.data}: {len(pictures)} readable picture; a map family holds whole pictures out for "
                         f"validation, so it needs at least 2")
    n_val = max(1, round(len(pictures) * sel.val_split))
    train_idx, val_idx = split(len(pictures), n_val / len(pictures), sel.seed)
    if sel.limit is not None:
        train_idx = train_idx[: sel.limit]
    train, heldout = pictures.subset(train_idx), pictures.subset(val_idx)
    crop = sel.crop or 64
    info = {"name": "folder", "root": str(Path(sel.data).resolve()), "train_images": len(train),
            "test_images": len(heldout), "heldout": "validation", "val_split": sel.val_split, "own_size": True,
            "max_side": sel.max_side, "skipped": len(skipped), "train_megapixels": float(train.pixels.sum() / 1e6),
            "validation_megapixels": float(heldout.pixels.sum() / 1e6),
            "validation_sha256": split_digest(heldout.paths)}
    return TrainingData(train, heldout, "validation",
                        ImageSpec(channels=pictures.channels, height=crop, width=crop, preprocessing=OWN_SIZE), info)

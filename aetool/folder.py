"""A folder of the user's own images as a training set, decoded once.

Decoding is the slow part of training on pictures: a JPEG photo takes tens of
milliseconds to decode and resample, the autoencoder a fraction of that per
image.  So a folder is decoded once, by several processes, into a uint8 array
of shape (N, C, S, S) written straight into a ``.npy`` file in aetool's cache
folder, and every later epoch (and every later run on the same files) reads
that file as a memory map: no image is ever decoded twice, and a data set larger
than RAM trains from the page cache instead of from memory.

This module is the entry point (:func:`load_folder`, :class:`FolderData`, the seeded
:func:`split`); each step lives in a module of its own:

- finding the image files, and which ``--data`` names a folder: :mod:`aetool.folder_scan`
- channels and size from the files' headers: :mod:`aetool.folder_headers`
- the ``.npy`` cache (key, trust, temporary files, eviction): :mod:`aetool.folder_cache`
- the decoding processes and their parent-watching: :mod:`aetool.decode_workers`

Their public names are importable from here too.

numpy, Pillow and the standard library only: the runtime imports this without torch.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import image_input
from .decode_workers import chunk_ranges, cpu_count, decode_into
from .errors import AetoolError
from .fileio import path_text
from .folder_cache import FORMAT_VERSION, cache_folder, cache_key, new_array, read_cached, record, shrink_npy, unlink
from .folder_headers import infer_channels, infer_shape, infer_size
from .folder_scan import SUFFIXES, is_image_folder, scan, scan_files
from .lecture import IMAGE_SIZES

__all__ = [
    "SUFFIXES",
    "FolderData",
    "is_image_folder",
    "scan",
    "infer_channels",
    "infer_size",
    "load_folder",
    "skipped_summary",
    "split",
]


# --------------------------------------------------------------------------
# the decoded folder


@dataclass(eq=False)  # eq=False: comparing arrays with == is ambiguous
class FolderData:
    """A folder's decoded images with what is needed to use and report them."""

    images: np.ndarray  # (N, C, S, S) uint8; a read-only np.memmap when cached
    labels: np.ndarray  # (N,) int64; -1 where an image is in no class folder
    class_names: list[str]
    paths: list[str]  # relative to root, "/"-separated, in row order
    skipped: list[tuple[str, str]]  # (relative path, reason) of files that could not be decoded
    channels: int
    size: int
    fit: str
    root: str
    cache_file: Path | None = None  # the .npy behind ``images``; None when decoded into memory

    def __len__(self) -> int:
        return len(self.labels)


def skipped_summary(data: FolderData) -> str | None:
    """One line for the caller to print about the files that could not be used, or None."""
    if not data.skipped:
        return None
    total = len(data) + len(data.skipped)
    name, reason = data.skipped[0]
    return f"skipped {len(data.skipped)} of {total} files (e.g. {path_text(name)}: {reason})"


def _check_options(channels: int | None, size: int | None, fit: str, workers: int | None) -> None:
    """Refuse bad options before any file is looked at (None: to be inferred / the default)."""
    def whole(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if channels is not None and not (whole(channels) and channels in (1, 3)):
        raise AetoolError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if size is not None and not (whole(size) and size in IMAGE_SIZES):
        raise AetoolError(f"image size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {size!r}")
    if fit not in image_input.FITS:
        raise AetoolError(f"unknown fit {fit!r}; use {' or '.join(image_input.FITS)}")
    if workers is not None and not (whole(workers) and workers >= 1):
        raise AetoolError(f"workers must be a whole number >= 1, got {workers!r}")


def load_folder(
    root: str | os.PathLike,
    channels: int | None = None,
    size: int | None = None,
    fit: str = "pad",
    workers: int | None = None,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    quiet: bool = False,
) -> FolderData:
    """Every image under ``root`` as a (N, C, S, S) uint8 array, decoded once and cached.

    ``channels`` and ``size`` left None are inferred from the files' headers (:func:`infer_channels`,
    :func:`infer_size`).  Files that cannot be decoded are skipped and listed in ``skipped`` (see
    :func:`skipped_summary`), or with ``strict`` the first is an error.  A cache hit (same files,
    sizes, modification times and options) opens the array as a read-only memory map and decodes
    nothing; otherwise ``workers`` processes (default: one per CPU; 1 decodes in this process)
    decode chunks of files that are written, in order, into a new cache file.
    """
    _check_options(channels, size, fit, workers)
    root_path, paths, rels, labels, class_names, unreadable = scan_files(root, strict)

    folder = Path(cache_dir).expanduser() if cache_dir is not None else cache_folder()
    key = cache_key(root_path, rels, paths, channels, size, fit)
    npy, meta_file = folder / f"folder-{key}.npy", folder / f"folder-{key}.json"
    fields = read_cached(npy, meta_file, key, len(paths))
    if fields is not None:
        hit = FolderData(**fields)
        if strict and hit.skipped:  # the cache remembers what it could not read
            name, reason = hit.skipped[0]
            raise AetoolError(f"{name}: {reason} (strict: no file may be skipped)")
        hit.skipped += unreadable  # said every time: the folder may hold images this run cannot see
        return hit

    requested = {"channels": channels, "size": size}
    channels, size = infer_shape(paths, channels, size)

    n = len(paths)
    workers = max(1, min(workers or cpu_count(), n))
    ranges = chunk_ranges(n, channels * size * size, workers)
    workers = min(workers, len(ranges))
    array, tmp = new_array(npy, (n, channels, size, size))
    try:
        kept, skipped = decode_into(array, paths, rels, ranges, channels, size, fit, workers, strict, quiet,
                                     f"decoding {root_path}")
        if not kept:
            name, reason = skipped[0]
            raise AetoolError(f"no readable image in {root_path}: {len(skipped)} files skipped, "
                              f"e.g. {name}: {reason}")
        if tmp is not None:
            array.flush()
            del array  # closes the memory map (nothing else refers to it) before the file is cut
            if len(kept) < n:
                shrink_npy(tmp, len(kept))
            os.replace(tmp, npy)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(NameError):
                del array
            unlink(tmp)
        raise

    shape = (len(kept), channels, size, size)
    meta = {
        "version": FORMAT_VERSION,
        "key": key,
        "root": str(root_path.resolve()),
        "requested": requested,
        "channels": channels,
        "size": size,
        "fit": fit,
        "shape": list(shape),
        "class_names": class_names,
        "skipped": [list(s) for s in skipped],
        "labels": [int(labels[i]) for i in kept],
        "paths": [rels[i] for i in kept],
    }
    if tmp is not None:
        record(npy, meta_file, meta)
        images: np.ndarray = np.load(npy, mmap_mode="r", allow_pickle=False)
        cache_file: Path | None = npy
    else:
        images, cache_file = array[: len(kept)], None
    return FolderData(images=images, labels=np.asarray(meta["labels"], dtype=np.int64), class_names=class_names,
                      paths=meta["paths"], skipped=skipped + unreadable, channels=channels, size=size, fit=fit,
                      root=meta["root"], cache_file=cache_file)


# --------------------------------------------------------------------------
# splitting


def split(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), each sorted: the validation images are the first
    ``round(n * val_fraction)`` of a permutation drawn with ``seed``.

    A seeded PCG64 permutation is the same on every machine and numpy version, so a run's
    validation images can be named by (n, fraction, seed) alone; sorted indices read a memory map
    front to back.
    """
    try:
        fraction = float(val_fraction)
    except (TypeError, ValueError):
        raise AetoolError(f"--val-split must be a number in [0, 0.9], got {val_fraction!r}") from None
    if not (0.0 <= fraction <= 0.9):  # also refuses NaN
        raise AetoolError(f"--val-split must be in [0, 0.9], got {val_fraction!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise AetoolError(f"number of images must be a whole number >= 0, got {n!r}")
    n = int(n)
    n_val = round(n * fraction)
    if n - n_val < 1 or (fraction > 0 and n_val < 1):
        raise AetoolError(f"folder too small for --val-split {fraction:g}: {n} image{'' if n == 1 else 's'}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)

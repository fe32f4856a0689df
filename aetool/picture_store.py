"""A folder's pictures at their own size, decoded once: the training data of the map families.

The families with a code vector see every picture resized into one square, so a
folder becomes one (N, C, S, S) array (aetool.folder).  The map families train on
crops of pictures kept at their own size, so here every picture keeps its own H x W
(its longer side capped at ``max_side``, aspect ratio kept) and the decoded bytes of
all of them are laid end to end in one flat uint8 file, with an index of where each
starts and its shape.  Training reads crops from that file as a memory map: only the
pages of the crops it draws are touched, so a folder larger than RAM still trains,
and a process holds one batch of crops, not the pictures.

The cache is keyed like aetool.folder's (the files' names, sizes and modification
times, the options, the format, Pillow's version), written under a temporary name and
renamed, with its ``.json`` index written last: a half-written cache is never trusted.

numpy, Pillow and the standard library only: the runtime imports this without torch.
"""

from __future__ import annotations

import concurrent.futures
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from . import image_input
from .errors import AetoolError
from .fileio import read_json, write_json
from .folder import split  # noqa: F401 (split: the seeded split of pictures, as of images)
from .folder_cache import cache_key
from .folder_scan import scan_files
from .progress import progress

FORMAT_VERSION = 1
DEFAULT_MAX_SIDE = 1024
MIN_MAX_SIDE, MAX_MAX_SIDE = 16, 8192


@dataclass(eq=False)
class PictureSet:
    """Pictures of different sizes in one flat uint8 array: picture i is
    ``data[offsets[i] : offsets[i] + C*H*W]`` as (C, H, W) with (H, W) = ``sizes[i]``."""

    data: np.ndarray  # flat uint8 (a read-only memory map when cached)
    offsets: np.ndarray  # (N,) int64
    sizes: np.ndarray  # (N, 2) int64: H, W
    channels: int
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def picture(self, i: int) -> np.ndarray:
        """Picture ``i`` as a (C, H, W) uint8 view (no copy)."""
        h, w = (int(v) for v in self.sizes[i])
        start = int(self.offsets[i])
        return self.data[start : start + self.channels * h * w].reshape(self.channels, h, w)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.picture(i) for i in range(len(self)))

    def subset(self, index: Sequence[int] | np.ndarray) -> "PictureSet":
        index = np.asarray(index, dtype=np.int64)
        return PictureSet(self.data, self.offsets[index], self.sizes[index], self.channels,
                          [self.paths[i] for i in index] if self.paths else [])

    @property
    def pixels(self) -> np.ndarray:
        """Pixels (H x W) of each picture."""
        return self.sizes[:, 0] * self.sizes[:, 1]

    @property
    def nbytes(self) -> int:
        return int((self.pixels * self.channels).sum())

    def crop(self, i: int, top: int, left: int, size: int) -> np.ndarray:
        """A size x size crop of picture ``i`` (a view of the memory map)."""
        return self.picture(i)[:, top : top + size, left : left + size]

    def random_crops(self, n: int, size: int, rng: np.random.Generator,
                     eligible: np.ndarray | None = None) -> np.ndarray:
        """``n`` crops of size x size from pictures at least that large, a picture drawn with
        probability proportional to its area (so every pixel is about equally likely), the crop's
        place uniform; (n, C, size, size) uint8.  ``eligible``: the pictures large enough
        (:meth:`large_enough`), computed once by the caller."""
        eligible = self.large_enough(size) if eligible is None else eligible
        if not len(eligible):
            raise AetoolError(f"--crop {size}: no picture is that large")
        area = self.pixels[eligible].astype(np.float64)
        pick = eligible[rng.choice(len(eligible), size=n, p=area / area.sum())]
        out = np.empty((n, self.channels, size, size), dtype=np.uint8)
        for k, i in enumerate(pick):
            h, w = (int(v) for v in self.sizes[i])
            top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            out[k] = self.crop(int(i), top, left, size)
        return out

    def floats(self) -> "FloatPictures":
        """The pictures as float32 in [0, 1], each made when it is read: a list-like view that
        calibration and export walk a slice at a time, never holding the whole set as floats."""
        return FloatPictures(self)

    def large_enough(self, size: int) -> np.ndarray:
        return np.flatnonzero((self.sizes[:, 0] >= size) & (self.sizes[:, 1] >= size))


def _default_cache_dir() -> Path:
    from .fileio import default_cache_dir  # late, so that a test can patch it

    return default_cache_dir() / "pictures"


def _decode(path: str, channels: int, max_side: int) -> np.ndarray | str:
    """One picture's bytes, or the one-line reason it cannot be read."""
    try:
        return image_input.own_size_uint8(path, channels, max_side)
    except AetoolError as e:
        return str(e).replace(f"{path}: ", "", 1)


def _read_cached(raw: Path, index: Path, key: str) -> tuple[PictureSet, list[tuple[str, str]]] | None:
    if not (raw.is_file() and index.is_file()):
        return None
    try:
        meta = read_json(index, max_bytes=1 << 30)
        if meta.get("version") != FORMAT_VERSION or meta.get("key") != key:
            return None
        offsets = np.asarray(meta["offsets"], dtype=np.int64)
        sizes = np.asarray(meta["sizes"], dtype=np.int64).reshape(-1, 2)
        channels = int(meta["channels"])
        total = int((sizes[:, 0] * sizes[:, 1]).sum()) * channels
        if raw.stat().st_size != total or len(offsets) != len(sizes) or not len(offsets):
            return None
        data = np.memmap(raw, dtype=np.uint8, mode="r", shape=(total,))
        return (PictureSet(data, offsets, sizes, channels, list(meta["paths"])),
                [tuple(s) for s in meta["skipped"]])
    except (AetoolError, OSError, KeyError, TypeError, ValueError):
        return None


def load_pictures(root: str | os.PathLike, channels: int | None = None, max_side: int = DEFAULT_MAX_SIDE, *,
                  workers: int | None = None, strict: bool = False, cache_dir: str | os.PathLike | None = None,
                  quiet: bool = True, log: Callable[[str], None] = print) -> tuple[PictureSet, list[tuple[str, str]]]:
    """Every picture under ``root`` at its own size (longer side capped at ``max_side``), decoded
    once into the cache; returns the pictures and the files skipped (relative path, reason).
    ``channels`` None: 1 when every picture is grey, else 3 (aetool.folder.infer_channels)."""
    from .folder import infer_channels

    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or \
            not MIN_MAX_SIDE <= max_side <= MAX_MAX_SIDE:
        raise AetoolError(f"--max-side must be a whole number in [{MIN_MAX_SIDE}, {MAX_MAX_SIDE}], got {max_side!r}")
    root_path, paths, rels, _, _, unreadable = scan_files(root, strict)
    channels = channels or infer_channels(paths)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    # keyed as a folder's cache is, with this cache's own format in place of the square's fit
    key = cache_key(root_path, rels, paths, channels, int(max_side), f"own-size-{FORMAT_VERSION}")
    raw, index = folder / f"pictures-{key}.u8", folder / f"pictures-{key}.json"
    hit = _read_cached(raw, index, key)
    if hit is not None:
        pictures, skipped = hit
        if strict and skipped:
            raise AetoolError(f"{skipped[0][0]}: {skipped[0][1]} (strict: no file may be skipped)")
        return pictures, skipped + unreadable

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".pictures-{key}.{os.getpid()}.tmp"
    offsets, sizes, kept, skipped = [], [], [], []
    done = 0
    workers = max(1, min(workers or os.cpu_count() or 1, len(paths)))
    try:
        with open(tmp, "wb") as out, concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 else \
                _InProcess() as pool:
            results = pool.map(_decode, [str(p) for p in paths], [channels] * len(paths), [int(max_side)] * len(paths))
            for rel, result in progress(zip(rels, results), quiet=quiet, total=len(paths),
                                        desc=f"decoding {root_path}", unit="picture"):
                if isinstance(result, str):
                    if strict:
                        raise AetoolError(f"{rel}: {result} (strict: no file may be skipped)")
                    skipped.append((rel, result))
                    continue
                offsets.append(done)
                sizes.append(result.shape[1:])
                kept.append(rel)
                out.write(result.tobytes())
                done += result.size
        if not kept:
            raise AetoolError(f"no readable picture in {root_path}" + (f": e.g. {skipped[0][0]}: {skipped[0][1]}"
                                                                        if skipped else ""))
        os.replace(tmp, raw)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_json(index, {"version": FORMAT_VERSION, "key": key, "root": str(root_path.resolve()), "channels": channels,
                       "max_side": int(max_side), "offsets": offsets, "sizes": [list(map(int, s)) for s in sizes],
                       "paths": kept, "skipped": [list(s) for s in skipped]})
    data = np.memmap(raw, dtype=np.uint8, mode="r", shape=(done,))
    return PictureSet(data, np.asarray(offsets, np.int64), np.asarray(sizes, np.int64).reshape(-1, 2), channels,
                      kept), skipped + unreadable


class FloatPictures(Sequence):
    """:meth:`PictureSet.floats`: picture i, or a list of them for a slice, as float32 (C, H, W)."""

    def __init__(self, pictures: PictureSet) -> None:
        self.pictures = pictures

    def __len__(self) -> int:
        return len(self.pictures)

    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return image_input.from_uint8(self.pictures.picture(i))


class _InProcess:
    """A stand-in for a process pool of one: decode here."""

    def __enter__(self) -> "_InProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(fn: Callable, *iterables: Sequence) -> Iterator:
        return map(fn, *iterables)

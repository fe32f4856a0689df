"""A folder of the user's own images as a training set, decoded once.

Decoding is the slow part of training on pictures: a JPEG photo takes tens of
milliseconds to decode and resample, the autoencoder a fraction of that per
image.  So a folder is decoded once, by several processes, into a uint8 array
of shape (N, C, S, S) written straight into a ``.npy`` file in aetool's cache
folder, and every later epoch (and every later run on the same files) reads
that file as a memory map: no image is ever decoded twice, and a data set larger
than RAM trains from the page cache instead of from memory.

The cache is keyed by the folder's files (relative path, size, modification
time) and the decoding options, so adding, removing or touching a file builds
a new one; the array's SHA-256 is recorded, so a cache written over later is
decoded again rather than trusted.  It is written under a temporary name and renamed, with its
``.json`` description written last: a run killed half way leaves nothing that
a later load would trust.

Which ``--data`` values name such a folder (:func:`is_image_folder`: a folder without IDX files) is
decided here too, so that every command tells a folder of pictures from MNIST's sources the same way.

numpy, Pillow and the standard library only: the runtime imports this without torch.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import ctypes
import errno
import hashlib
import math
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import PIL
from PIL import Image

from . import image_input
from .errors import AetoolError
from .fileio import STALE_SECONDS, path_text, read_json, sha256_file, write_json
from .idx import is_idx_folder
from .lecture import IMAGE_SIZES
from .progress import progress

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

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FORMAT_VERSION = 2  # of the cache files; a change here rebuilds every cache (2: the .npy's SHA-256 recorded)
CHUNK_BYTES = 32 << 20  # decoded bytes a worker returns at once: bounds the parent's memory
MAX_CHUNK = 256  # images a chunk holds at most
MEMORY_FALLBACK_BYTES = 1 << 30  # no writable cache: decode into memory up to this size, else fail
MAX_CACHE_JSON_BYTES = 1 << 30  # the .json lists every path: allow more than read_json's default


# --------------------------------------------------------------------------
# finding the images


def is_image_folder(source: str | Path | None) -> bool:
    """A --data value naming a folder of a user's images: a folder that holds no IDX files."""
    if source in (None, "hub", "download"):
        return False
    folder = Path(source).expanduser()
    return folder.is_dir() and not is_idx_folder(folder)


def _walk(root: Path, unreadable: list[tuple[str, str]] | None = None) -> Iterator[tuple[Path, bool]]:
    """(path relative to root, is an image file) for every non-hidden file under ``root``.

    Symbolic links are followed, but a folder already visited (by its device and inode) is not
    entered again, so a link loop ends instead of recursing forever.  A folder that cannot be read
    is passed over and added to ``unreadable`` as (relative path, reason), so the caller can say so.
    """
    seen: set[tuple[int, int]] = set()
    stack = [Path()]
    while stack:
        rel = stack.pop()
        folder = root / rel
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if unreadable is not None:
                unreadable.append(((rel.as_posix() + "/") if rel.parts else "./",
                                   f"folder not readable ({e.strerror or e})"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows symbolic links
            except OSError:
                is_dir = False
            if is_dir:
                subfolders.append(rel / entry.name)
            else:
                yield rel / entry.name, entry.name.lower().endswith(SUFFIXES)
        stack.extend(reversed(subfolders))


def scan(root: str | os.PathLike, unreadable: list[tuple[str, str]] | None = None
         ) -> tuple[list[Path], np.ndarray, list[str]]:
    """The image files under ``root`` (recursively, sorted, hidden names skipped), their labels and
    the class names.

    The usual layout of a labelled image set is one sub-folder per class, so when ``root``'s direct
    sub-folders hold images each of them is a class (label = index in the sorted names); images
    directly in ``root``, and all images when no sub-folder holds any, get label -1.  The labels
    are only reported (an autoencoder needs none); the order is fixed so that a split by index is
    the same on every machine.  Sub-folders that cannot be read go into ``unreadable``.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise AetoolError(f"{root}: folder not found" + (" (a broken symbolic link)" if root.is_symlink() else ""))
    if not root.is_dir():
        raise AetoolError(f"{root}: not a folder")
    found: list[Path] = []
    looked_at = 0
    for rel, is_image in _walk(root, unreadable):
        looked_at += 1
        if is_image:
            found.append(rel)
    if not found:
        files = "file" if looked_at == 1 else "files"
        why = f"; {len(unreadable)} folder(s) not readable, e.g. {unreadable[0][0]}" if unreadable else ""
        raise AetoolError(f"{root}: no image files found (looked at {looked_at} {files}; aetool reads "
                          f"{', '.join(SUFFIXES)}{why})")
    found.sort(key=lambda p: p.parts)
    class_names = sorted({rel.parts[0] for rel in found if len(rel.parts) > 1})
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[rel.parts[0]] if len(rel.parts) > 1 else -1 for rel in found], dtype=np.int64)
    return [root / rel for rel in found], labels, class_names


# --------------------------------------------------------------------------
# inferring channels and size from the headers


def _grey_palette(im: Image.Image) -> bool:
    """Whether a palette image's palette, as read from the header, holds only greys."""
    palette = getattr(im, "palette", None)
    if palette is None:
        return False
    data = np.frombuffer(bytes(palette.palette), dtype=np.uint8)
    rawmode = getattr(palette, "rawmode", None)
    layout = rawmode or palette.mode
    if layout == "RGB;L":  # planar (TIFF): all reds, then all greens, then all blues
        n = len(data) // 3
        r, g, b = data[:n], data[n : 2 * n], data[2 * n : 3 * n]
    elif layout in ("RGB", "BGR", "RGBA", "RGBX", "BGRA", "BGRX"):
        k = len(layout)
        triples = data[: len(data) // k * k].reshape(-1, k)
        r, g, b = triples[:, 0], triples[:, 1], triples[:, 2]
    else:  # a layout we do not know: call it colour, the safe side
        return False
    return bool(np.array_equal(r, g) and np.array_equal(g, b))


def _header(path: Path) -> tuple[bool, int, int] | None:
    """(is grey, width, height) from the file's header, without decoding pixels; None if unreadable.

    Only a regular file is opened: opening a FIFO blocks until something writes to it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                mode = im.mode
                grey = image_input.is_grey_mode(mode) or mode in ("LA", "La") or (
                    mode in ("P", "PA") and _grey_palette(im))
                return grey, int(im.width), int(im.height)
    except Exception:  # noqa: BLE001 - unreadable files are load_folder's to report, not ours
        return None


def _headers(paths: Sequence[str | os.PathLike]) -> list[tuple[bool, int, int]]:
    return [h for h in (_header(Path(p)) for p in paths) if h is not None]


def _channels_of(headers: list[tuple[bool, int, int]]) -> int:
    return 1 if all(grey for grey, _, _ in headers) else 3


def _size_of(headers: list[tuple[bool, int, int]], channels: int) -> int:
    if not headers or (channels == 1 and all((w, h) == (28, 28) for _, w, h in headers)):
        return 28
    median = float(np.median([max(w, h) for _, w, h in headers]))
    # nearest; on a tie the larger, since detail lost to a smaller size cannot be learnt back
    return min(IMAGE_SIZES, key=lambda s: (abs(s - median), -s))


def infer_channels(paths: Sequence[str | os.PathLike]) -> int:
    """1 when every readable image is grey, else 3.

    Grey means a grey mode ("1", "L", "LA", "I", "I;16", "F") or a palette of greys only, so a
    grey data set stored as palette GIFs or PNGs is not tripled in size and training time.  Only
    headers are read, which keeps this fast on any folder; the price is that an RGB file whose
    pixels happen to be grey counts as colour.  Unreadable files are ignored (load_folder reports
    them).
    """
    return _channels_of(_headers(paths))


def infer_size(paths: Sequence[str | os.PathLike], channels: int) -> int:
    """The square size to train at: 28 for a grey set of 28x28 images (MNIST-like), else the size
    in IMAGE_SIZES nearest the median longer side (ties: the larger).  Headers only."""
    return _size_of(_headers(paths), channels)


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


def _cpu_count() -> int:
    """CPUs this process may use (a container's or taskset's share, not the whole machine's)."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _stat_key(path: Path) -> str:
    try:
        st = path.stat()
        return f"{st.st_size}\0{st.st_mtime_ns}"
    except OSError:
        return "missing"


def _cache_key(root: Path, rels: list[str], paths: list[Path], channels: int | None, size: int | None,
               fit: str) -> str:
    """What the decoded array depends on: the files (name, size, mtime), the options, the format and
    Pillow's version (its resampling could change).  ``None`` options are keyed as "auto": what they
    resolve to is a function of the same files, so a hit needs no header read at all."""
    h = hashlib.sha256()
    for part in (str(root.resolve()), channels or "auto", size or "auto", fit, FORMAT_VERSION, PIL.__version__):
        h.update(os.fsencode(f"{part}\0"))  # a name's bytes as they are: not every name is UTF-8
    for rel, path in zip(rels, paths):
        h.update(os.fsencode(f"{rel}\0{_stat_key(path)}\n"))
    return h.hexdigest()[:24]


def _read_cached(npy: Path, meta_file: Path, key: str, n_files: int) -> FolderData | None:
    """The cached folder if both files are there and agree with each other, else None."""
    if not (npy.is_file() and meta_file.is_file()):
        return None
    try:
        meta = read_json(meta_file, max_bytes=MAX_CACHE_JSON_BYTES)
        if meta.get("version") != FORMAT_VERSION or meta.get("key") != key:
            return None
        images = np.load(npy, mmap_mode="r", allow_pickle=False)
        n = len(meta["paths"])
        shape = (n, int(meta["channels"]), int(meta["size"]), int(meta["size"]))
        if (images.dtype != np.uint8 or images.shape != shape or list(meta["shape"]) != list(shape)
                or len(meta["labels"]) != n or n + len(meta["skipped"]) != n_files or n == 0):
            return None
        if _fingerprint(npy) != meta.get("fingerprint") and sha256_file(npy) != meta.get("sha256"):
            return None  # written to since: same size or not, its bytes are not the ones decoded
        return FolderData(
            images=images,
            labels=np.asarray(meta["labels"], dtype=np.int64),
            class_names=[str(c) for c in meta["class_names"]],
            paths=[str(p) for p in meta["paths"]],
            skipped=[(str(a), str(b)) for a, b in meta["skipped"]],
            channels=shape[1],
            size=shape[2],
            fit=str(meta["fit"]),
            root=str(meta["root"]),
            cache_file=npy,
        )
    except (AetoolError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _fingerprint(npy: Path) -> str:
    """The cache file's identity as the file system keeps it: inode, size, modification and change
    times.  Any write changes the change time (``touch`` cannot set it back), so a match means the
    bytes are the ones hashed when it was written, and a load skips the hash (seconds per GB on a
    busy machine); a mismatch (a copy, a restore, or garbage written over it) checks the SHA-256."""
    st = npy.stat()
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _reason(message: str, path: Path) -> str:
    """A decoding error without the path in front (the caller names the file itself)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _decode_chunk(paths: list[str], channels: int, size: int, fit: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode one chunk (in a worker process, or in-process): (rows, [(index, error) of failures]).

    Rows of failed files are left zero; the parent leaves them out.  Only aetool's own one-line
    errors count as a bad file; anything else is a bug and propagates.
    """
    out = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    failed: list[tuple[int, str]] = []
    for i, p in enumerate(paths):
        try:
            out[i] = image_input.picture_to_uint8(p, channels, size, fit)
        except AetoolError as e:
            failed.append((i, str(e)))
    return out, failed


def _chunks(n: int, per_image: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) ranges: small enough to bound memory, enough of them to keep workers busy."""
    size = max(1, min(MAX_CHUNK, CHUNK_BYTES // per_image, math.ceil(n / (4 * workers))))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def _decoded_chunks(paths: list[str], ranges: list[tuple[int, int]], channels: int, size: int, fit: str,
                    workers: int) -> Iterator[tuple[int, np.ndarray, list[tuple[int, str]]]]:
    """Each chunk's (first row, rows, failures), in order.  With a pool, at most 2 x workers chunks are in flight, so
    finished chunks waiting behind a slow one stay few (memory bounded whatever the folder)."""
    if workers <= 1:
        for a, b in ranges:
            yield (a, *_decode_chunk(paths[a:b], channels, size, fit))
        return
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, initializer=_end_with_parent,
                                                initargs=(os.getpid(),)) as pool:
        pending: list[tuple[int, concurrent.futures.Future]] = []
        todo = iter(ranges)
        try:
            for a, b in todo:
                pending.append((a, pool.submit(_decode_chunk, paths[a:b], channels, size, fit)))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                a, future = pending.pop(0)
                try:
                    rows, failed = future.result()
                except concurrent.futures.process.BrokenProcessPool:
                    raise AetoolError("a process decoding images died (killed, or out of memory?); try fewer "
                                      "workers (1 decodes in this process)") from None
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt[0], pool.submit(_decode_chunk, paths[nxt[0]:nxt[1]], channels, size, fit)))
                yield a, rows, failed
        finally:
            for _, f in pending:
                f.cancel()
            if pending:  # stopped early (an error, Ctrl-C, SIGTERM): the chunks in flight are wasted work
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    with contextlib.suppress(OSError, AttributeError):
                        process.terminate()


PARENT_POLL_SECONDS = 0.5


def _end_with_parent(parent: int) -> None:
    """Initializer of every decoding worker: die with the process that started it, however it ends.

    Ctrl-C reaches the workers too, but SIGTERM and SIGKILL reach the parent alone: a worker that
    outlived it would go on decoding for nobody, holding the cache's temporary file and the
    caller's stdout.  On Linux the kernel sends the worker SIGKILL when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread also checks ``os.getppid()`` twice
    a second and ends the worker once it has been handed to another parent.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="aetool-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _shrink_npy(path: Path, rows: int) -> None:
    """Make the .npy at ``path`` hold only its first ``rows`` rows: rewrite the shape in its header
    (padded with spaces to the same length, as the format allows) and cut the file.  Skipped files
    are only known after decoding, and this avoids copying a possibly huge array to drop them."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            prefix = 10
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            prefix = 12
        offset = f.tell()
        new_shape = (rows, *shape[1:])
        header = "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (
            np.lib.format.dtype_to_descr(dtype), fortran, new_shape)
        room = offset - prefix - 1  # the header text ends in a newline
        if len(header) > room:  # cannot happen: fewer rows never need more digits
            raise AetoolError(f"{path}: cannot rewrite the array header")
        f.seek(prefix)
        f.write((header + " " * (room - len(header)) + "\n").encode("latin1"))
        f.truncate(offset + rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


def _new_array(npy: Path | None, shape: tuple[int, ...]) -> tuple[np.ndarray, Path | None]:
    """A writable (N, C, S, S) uint8 array: a memory map in a temporary file beside ``npy``, or, where
    the cache cannot be written and the set is small, plain memory (temporary file None)."""
    tmp: Path | None = None
    reason = "no cache folder"
    if npy is not None:
        try:
            npy.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(npy.parent)
            fd, name = tempfile.mkstemp(prefix=f".{npy.name}.", suffix=".tmp", dir=npy.parent)
            os.close(fd)
            tmp = Path(name)
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            _reserve(tmp)
            return array, tmp
        except OSError as e:
            reason = e.strerror or str(e)
            _unlink(tmp)
    nbytes = int(np.prod(shape, dtype=np.int64))
    if nbytes > MEMORY_FALLBACK_BYTES:
        where = npy.parent if npy is not None else "the cache folder"
        raise AetoolError(f"cannot write the decoded images to {where} ({reason}): they need "
                          f"{nbytes / 2**30:.1f} GiB; free space there or set $AETOOL_CACHE to another folder")
    return np.zeros(shape, dtype=np.uint8), None


def _reserve(path: Path) -> None:
    """Allocate the file's blocks now: a full disk found while writing through a memory map kills the
    process (SIGBUS) instead of raising.  File systems without fallocate just go without."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise


def _unlink(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


_TEMPORARY = re.compile(r"\.folder-[0-9a-f]+\.npy\.[a-z0-9_]{8}\.tmp")


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporary arrays of killed runs (ours by their exact names, and over an hour old,
    so a decode in progress in another process is never touched): they can be gigabytes."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if _TEMPORARY.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                        os.unlink(entry.path)


def _evict_superseded(folder: Path, meta: dict) -> None:
    """Remove the caches of the same folder loaded with the same options before its files changed:
    they will never be hit again, and each is a full copy of the data set.  (A process still
    reading one keeps its memory map: POSIX unlinks the name, not the open file.)"""
    for other in folder.glob("folder-*.json"):
        if other.name == f"folder-{meta['key']}.json":
            continue
        try:
            theirs = read_json(other, max_bytes=MAX_CACHE_JSON_BYTES)
            same = all(theirs.get(k) == meta[k] for k in ("version", "root", "requested", "fit"))
        except (AetoolError, AttributeError):
            continue
        if same:
            _unlink(other.with_suffix(".npy"))
            _unlink(other)


def _decode_into(array: np.ndarray, paths: list[Path], rels: list[str], ranges: list[tuple[int, int]],
                 channels: int, size: int, fit: str, workers: int, strict: bool, quiet: bool,
                 desc: str) -> tuple[list[int], list[tuple[str, str]]]:
    """Decode every file into ``array``'s first rows, in order, leaving out the failures:
    (indices of the files kept, (relative path, reason) of those skipped)."""
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    chunks = _decoded_chunks([str(p) for p in paths], ranges, channels, size, fit, workers)
    try:
        for a, rows, failed in progress(chunks, quiet=quiet, total=len(ranges), desc=desc):
            bad = dict(failed)
            if bad and strict:
                raise AetoolError(f"{bad[min(bad)]} (strict: no file may be skipped)")
            for i in range(len(rows)):
                if i in bad:
                    skipped.append((rels[a + i], _reason(bad[i], paths[a + i])))
                else:
                    array[len(kept)] = rows[i]
                    kept.append(a + i)
    finally:
        chunks.close()  # on a failure, stop the pool now rather than when garbage-collected
    return kept, skipped


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
    root_path = Path(root).expanduser()
    unreadable: list[tuple[str, str]] = []
    paths, labels, class_names = scan(root_path, unreadable)
    if unreadable and strict:
        where, reason = unreadable[0]
        raise AetoolError(f"{path_text(os.path.join(root_path, where))}: {reason} (strict: no file may be skipped)")
    rels = [p.relative_to(root_path).as_posix() for p in paths]

    folder = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    key = _cache_key(root_path, rels, paths, channels, size, fit)
    npy, meta_file = folder / f"folder-{key}.npy", folder / f"folder-{key}.json"
    hit = _read_cached(npy, meta_file, key, len(paths))
    if hit is not None:
        if strict and hit.skipped:  # the cache remembers what it could not read
            name, reason = hit.skipped[0]
            raise AetoolError(f"{name}: {reason} (strict: no file may be skipped)")
        hit.skipped += unreadable  # said every time: the folder may hold images this run cannot see
        return hit

    requested = {"channels": channels, "size": size}
    if channels is None or size is None:
        headers = _headers(paths)
        channels = channels or _channels_of(headers)
        size = size or _size_of(headers, channels)
    channels, size = int(channels), int(size)

    n = len(paths)
    workers = max(1, min(workers or _cpu_count(), n))
    ranges = _chunks(n, channels * size * size, workers)
    workers = min(workers, len(ranges))
    array, tmp = _new_array(npy, (n, channels, size, size))
    try:
        kept, skipped = _decode_into(array, paths, rels, ranges, channels, size, fit, workers, strict, quiet,
                                     f"decoding {root_path}")
        if not kept:
            name, reason = skipped[0]
            raise AetoolError(f"no readable image in {root_path}: {len(skipped)} files skipped, "
                              f"e.g. {name}: {reason}")
        if tmp is not None:
            array.flush()
            del array  # closes the memory map (nothing else refers to it) before the file is cut
            if len(kept) < n:
                _shrink_npy(tmp, len(kept))
            os.replace(tmp, npy)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(NameError):
                del array
            _unlink(tmp)
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
        try:
            meta["sha256"] = sha256_file(npy)  # a cache changed later (same size, new bytes) is not trusted
            meta["fingerprint"] = _fingerprint(npy)
            write_json(meta_file, meta)  # last: a .npy without its .json is never trusted
            _evict_superseded(folder, meta)
        except AetoolError:
            pass  # the images are decoded; only the next run will have to decode them again
        images: np.ndarray = np.load(npy, mmap_mode="r", allow_pickle=False)
        cache_file: Path | None = npy
    else:
        images, cache_file = array[: len(kept)], None
    return FolderData(images=images, labels=np.asarray(meta["labels"], dtype=np.int64), class_names=class_names,
                      paths=meta["paths"], skipped=skipped + unreadable, channels=channels, size=size, fit=fit,
                      root=meta["root"], cache_file=cache_file)


def _default_cache_dir() -> Path:
    from .fileio import default_cache_dir  # late, so that a test can patch it

    return default_cache_dir() / "folders"


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

"""The cache of decoded folders: one uint8 ``.npy`` array and its ``.json`` description.

A folder is decoded once into ``folder-<key>.npy`` in aetool's cache folder (``$AETOOL_CACHE/folders``),
and every later load with the same files and options opens it as a read-only memory map.

- **The key** (:func:`cache_key`) is what the array depends on: the files (relative path, size,
  modification time), the decoding options, the format version and Pillow's version.  Adding,
  removing or touching a file gives a new key.
- **Trust** (:func:`read_cached`): the ``.json`` records the array's SHA-256 and a file-system
  fingerprint (inode, size, mtime, ctime); a cache written over later is decoded again, not trusted.
- **Writing**: the array is a memory map in a temporary file (:func:`new_array`, its blocks reserved so
  a full disk raises instead of killing the process), cut to the rows kept (:func:`shrink_npy`),
  renamed, and described last (:func:`record`): a run killed half way leaves nothing trusted.
- **Eviction**: the caches of the same folder before its files changed are removed once a new one is
  written, and temporaries of killed runs over an hour old are removed before a new one is made.

numpy and the standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL

from .errors import AetoolError
from .fileio import STALE_SECONDS, read_json, sha256_file, write_json

__all__ = ["FORMAT_VERSION", "cache_key", "read_cached", "new_array", "shrink_npy", "record", "unlink",
           "cache_folder"]

FORMAT_VERSION = 2  # of the cache files; a change here rebuilds every cache (2: the .npy's SHA-256 recorded)
MEMORY_FALLBACK_BYTES = 1 << 30  # no writable cache: decode into memory up to this size, else fail
MAX_CACHE_JSON_BYTES = 1 << 30  # the .json lists every path: allow more than read_json's default


def _stat_key(path: Path) -> str:
    try:
        st = path.stat()
        return f"{st.st_size}\0{st.st_mtime_ns}"
    except OSError:
        return "missing"


def cache_key(root: Path, rels: list[str], paths: list[Path], channels: int | None, size: int | None,
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


def read_cached(npy: Path, meta_file: Path, key: str, n_files: int) -> dict | None:
    """The cached folder, as the fields of an ``aetool.folder.FolderData``, if both files are there
    and agree with each other, else None."""
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
        return dict(
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


def shrink_npy(path: Path, rows: int) -> None:
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


def new_array(npy: Path | None, shape: tuple[int, ...]) -> tuple[np.ndarray, Path | None]:
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
            unlink(tmp)
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


def unlink(path: Path | None) -> None:
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
            unlink(other.with_suffix(".npy"))
            unlink(other)


def record(npy: Path, meta_file: Path, meta: dict) -> None:
    """Describe the renamed cache file ``npy`` in ``meta_file``: ``meta`` with the array's SHA-256 and
    :func:`_fingerprint` added, written last (a .npy without its .json is never trusted); then remove
    the caches it supersedes.  A failure here is passed over: the images are decoded, only the next
    run will have to decode them again."""
    try:
        meta["sha256"] = sha256_file(npy)  # a cache changed later (same size, new bytes) is not trusted
        meta["fingerprint"] = _fingerprint(npy)
        write_json(meta_file, meta)  # last: a .npy without its .json is never trusted
        _evict_superseded(meta_file.parent, meta)
    except AetoolError:
        pass


def cache_folder() -> Path:
    """Where decoded folders are cached unless the caller names a folder: $AETOOL_CACHE/folders."""
    from .fileio import default_cache_dir  # late, so that a test can patch it

    return default_cache_dir() / "folders"

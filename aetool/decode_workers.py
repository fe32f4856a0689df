"""Decoding a folder's files into one uint8 array, in worker processes.

Decoding is the slow part of training on pictures (tens of milliseconds a JPEG), so files are
decoded in chunks by a pool of processes (one per CPU this process may use), at most 2 x workers
chunks in flight so that the parent's memory stays bounded whatever the folder, and each chunk
written in order into the caller's array (a memory map of the cache file, see
:mod:`aetool.folder_cache`).  Every worker dies with the process that started it, however that
one ends (:func:`_end_with_parent`), so a killed run leaves no decoding behind.

numpy, Pillow and the standard library only.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import ctypes
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from . import image_input
from .errors import AetoolError
from .progress import progress

__all__ = ["cpu_count", "chunk_ranges", "decode_into"]

CHUNK_BYTES = 32 << 20  # decoded bytes a worker returns at once: bounds the parent's memory
MAX_CHUNK = 256  # images a chunk holds at most


def cpu_count() -> int:
    """CPUs this process may use (a container's or taskset's share, not the whole machine's)."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1



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


def chunk_ranges(n: int, per_image: int, workers: int) -> list[tuple[int, int]]:
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


def decode_into(array: np.ndarray, paths: list[Path], rels: list[str], ranges: list[tuple[int, int]],
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

"""Atomic file writes: a reader never sees half a file, and a failed write
never destroys what was on disk before."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import AetoolError

STALE_SECONDS = 3600  # a temporary file or staging folder of ours this old belongs to a killed process
_TEMP_NAME = r"\.{name}\.[a-z0-9_]{{8}}"  # tempfile's names: ".NAME." + 8 random characters (+ ".tmp" for files)


def remove_stale(path: Path) -> None:
    """Remove what a killed earlier write of ``path`` left beside it: our own temporary files
    (``.NAME.XXXXXXXX.tmp``), staging folders (``.NAME.XXXXXXXX``) and the old copy of a swapped
    folder (``.NAME.old``), by their exact names and only when older than an hour, so a write in
    progress in another process is never touched."""
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(_TEMP_NAME.format(name=re.escape(path.name)) + r"(\.tmp)?|\." + re.escape(path.name) + r"\.old")
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):
            info = entry.lstat()
            if now - info.st_mtime < STALE_SECONDS:
                continue
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry)
            elif stat.S_ISREG(info.st_mode):
                entry.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same folder so the final ``os.replace`` is
    atomic.  On any exception the temporary file is removed and the original
    ``path`` (if any) is left untouched.  A file replaced keeps its permissions.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise AetoolError(f"cannot write {path}: folder {folder} does not exist")
    if path.is_dir():
        raise AetoolError(f"cannot write {path}: it is a folder")
    if path.exists() and not path.is_file():  # renaming onto a device or FIFO would replace it
        raise AetoolError(f"cannot write {path}: not a regular file (a device, FIFO or socket)")
    remove_stale(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise AetoolError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` into ``path`` atomically; a full disk is one line and leaves the old file whole."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise AetoolError(f"cannot write {path}: {e.strerror or e}") from None


# a list json.dumps spread over lines (so never inside a string, where newlines are escaped)
_NUMBER_LIST = re.compile(r"\[\n([-+0-9.eE,\s]*)\n\s*\]")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Indented JSON with lists of numbers on one line: a covariance matrix stays readable and small."""
    text = json.dumps(obj, indent=2)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",") if v.strip()) + "]", text)
    write_bytes(path, (text + "\n").encode())


MAX_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = 64


def read_json(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read JSON, turning a missing, malformed, huge or absurdly nested file into a one-line error.

    Size and nesting are bounded before parsing: the files aetool reads are
    small and shallow, and a hostile one must not exhaust memory or the stack.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise AetoolError(f"{path}: file not found") from None
    except OSError as e:
        raise AetoolError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise AetoolError(f"{path}: larger than {max_bytes >> 20} MiB, not a file aetool wrote")
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise AetoolError(f"{path}: not valid JSON ({e})") from None
    if _nesting(text) > max_depth:
        raise AetoolError(f"{path}: nested deeper than {max_depth} levels, not a file aetool wrote")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise AetoolError(f"{path}: not valid JSON ({e})") from None


_BRACKETS_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _nesting(text: str) -> int:
    """The deepest nesting of brackets outside strings (without parsing)."""
    depth = deepest = 0
    for m in _BRACKETS_OR_STRING.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; swap it in for ``path`` on success.

    A reader sees the old folder or the new one, never a mix; on any exception
    the staging folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; these folders are meant to be shared
    try:
        yield staging
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        staging.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read a megabyte at a time (graphs and runtimes can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

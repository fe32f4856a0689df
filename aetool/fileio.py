"""Atomic file writes: a reader never sees half a file, and a failed write
never destroys what was on disk before."""

from __future__ import annotations

import contextlib
import json
import re
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import AetoolError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same folder so the final ``os.replace`` is
    atomic.  On any exception the temporary file is removed and the original
    ``path`` (if any) is left untouched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise AetoolError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise AetoolError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# a list json.dumps spread over lines (so never inside a string, where newlines are escaped)
_NUMBER_LIST = re.compile(r"\[\n([-+0-9.eE,\s]*)\n\s*\]")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Indented JSON with lists of numbers on one line: a covariance matrix stays readable and small."""
    text = json.dumps(obj, indent=2)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",") if v.strip()) + "]", text)
    write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, turning a missing or malformed file into a one-line error."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AetoolError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AetoolError(f"{path}: not valid JSON ({e})") from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; swap it in for ``path`` on success.

    A reader sees the old folder or the new one, never a mix; on any exception
    the staging folder is removed and ``path`` is left as it was.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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

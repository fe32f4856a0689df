"""Atomic file writes: a reader never sees half a file, and a failed write
never destroys what was on disk before.

Also where aetool keeps what it can rebuild (:func:`default_cache_dir`): MNIST's arrays,
decoded folders of pictures and the web page's runtime share that one folder."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import re
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import AetoolError, UsageError

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
    if bracket_depth(text) > max_depth:
        raise AetoolError(f"{path}: nested deeper than {max_depth} levels, not a file aetool wrote")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise AetoolError(f"{path}: not valid JSON ({e})") from None


_BRACKETS_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def bracket_depth(text: str) -> int:
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


def _is_own_folder(folder: Path) -> bool:
    """Whether a folder holds what aetool writes as a folder: a bundle (latent.json) or a site (site.json)."""
    return (folder / "latent.json").is_file() or (folder / "site.json").is_file()


def check_replaceable_dir(path: str | os.PathLike, *, force: bool = False,
                          ours: Callable[[Path], bool] | None = None, what: str = "--out") -> Path:
    """Refuse, before any work, a folder that writing ``path`` whole would wrongly replace.

    The current folder or one above it is never replaced (the swap would take the user's own files
    with it, and ``Path('.')`` has no name to stage beside); a folder that is there, not empty and
    not aetool's own output (by ``ours``: a bundle or a site unless told otherwise) only with
    ``force``.  Returns the path to write, made absolute where it was relative to nothing.
    """
    path = Path(path)
    text = os.fspath(path)
    absolute = Path(os.path.abspath(text))
    cwd = Path(os.path.abspath(os.curdir))
    if not absolute.name or absolute == cwd or absolute in cwd.parents:
        raise UsageError(f"{what} {text}: the current folder (or one above it) cannot be replaced; name a new folder")
    if path.is_symlink():  # the swap would replace the link, not the folder it points to
        raise AetoolError(f"{what} {text}: a symbolic link; name the folder it points to, or a new one")
    if path.exists() and not path.is_dir():
        raise AetoolError(f"{what} {text}: exists and is not a folder")
    if path.is_dir() and not force:
        try:
            empty = not any(path.iterdir())
        except OSError as e:
            raise AetoolError(f"{what} {text}: cannot read it ({e.strerror or e})") from None
        if not empty and not (ours or _is_own_folder)(path):
            raise AetoolError(f"{what} {text}: a folder that aetool did not write is there; choose another folder, "
                              f"or --force to replace it whole")
    return path if path.name else absolute


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, force: bool = False,
               ours: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; swap it in for ``path`` on success.

    A reader sees the old folder or the new one, never a mix; on any exception
    the staging folder is removed and ``path`` is left as it was.  What is at
    ``path`` is checked first (:func:`check_replaceable_dir`), so no caller can
    swap away the user's own folder by accident.
    """
    path = check_replaceable_dir(path, force=force, ours=ours)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AetoolError(f"cannot write {path}: {e.strerror or e}") from None
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


def read_regular(path: str | os.PathLike, max_bytes: int, what: str = "") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, or one line saying why not.

    Checked before a byte is read: a FIFO would block forever and /dev/zero never ends, so
    only regular files are opened, and no more than ``max_bytes + 1`` is ever read.
    """
    path = Path(path)
    label = f"{what} {path}".strip()
    info = stat_regular(path, what)
    if info.st_size > max_bytes:
        raise AetoolError(f"{label}: {info.st_size} bytes, more than the {_size(max_bytes)} aetool reads from such a file")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise AetoolError(f"{label}: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise AetoolError(f"{label}: more than the {_size(max_bytes)} aetool reads from such a file")
    return data


def _article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def stat_regular(path: str | os.PathLike, what: str = "", noun: str = "file") -> os.stat_result:
    """``os.stat`` of a file that must be a regular one (links followed): FIFOs, devices, sockets,
    folders and loops of links are one line (naming it a ``noun``), before anything opens them."""
    path = Path(path)
    label = f"{what} {path}".strip()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AetoolError(f"{label}: file not found" + (" (a broken symbolic link)" if path.is_symlink() else "")) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise AetoolError(f"{label}: a loop of symbolic links, not {_article(noun)}") from None
        raise AetoolError(f"{label}: cannot read ({one_line(e.strerror or str(e))})") from None
    if stat.S_ISDIR(info.st_mode):
        raise AetoolError(f"{label}: is a directory, not {_article(noun)}")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device"
        raise AetoolError(f"{label}: {kind}, not a regular {noun}")
    return info


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} bytes"


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def path_text(path: str | os.PathLike) -> str:
    """A path as aetool writes it in any text output: one line, valid UTF-8, and reversible.

    File names are bytes: a Latin-1 0xFF cannot be written as UTF-8 and a newline in a name
    would split a one-path-a-line listing and pair every later path with the wrong row.  So a
    backslash becomes ``\\\\``, a newline, carriage return and tab ``\\n``, ``\\r``, ``\\t``,
    any other control character and every byte that is not UTF-8 ``\\xHH``; everything else is
    kept.  :func:`path_from_text` reverses it.  A name without these characters is written as is.
    """
    raw = os.fsencode(path)
    text = raw.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as surrogateescape holds it
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not ch.isprintable():  # control characters, line separators: their UTF-8 bytes
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def one_line(message: str) -> str:
    """A message made one printable line: what :func:`path_text` escapes in paths (control characters,
    undecodable bytes) is escaped the same way, backslashes kept; an error naming a file called
    ``a\\nb`` stays one line on any terminal."""
    if message.isprintable():
        return message
    return "".join(ch if ch.isprintable() else path_text(ch) for ch in message)


_UNESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[\\nrt])")


def path_from_text(text: str) -> str:
    """The path (as ``os.fsdecode`` would give it) that :func:`path_text` wrote as ``text``."""
    raw = bytearray()
    pos = 0
    for m in _UNESCAPE.finditer(text):
        raw += text[pos : m.start()].encode("utf-8", "surrogateescape")
        token = m.group(1)
        raw += bytes([int(token[1:], 16)]) if token[0] == "x" else {"\\": b"\\", "n": b"\n", "r": b"\r", "t": b"\t"}[token]
        pos = m.end()
    raw += text[pos:].encode("utf-8", "surrogateescape")
    return os.fsdecode(bytes(raw))


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read a megabyte at a time (graphs and runtimes can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$AETOOL_CACHE``, else ``$XDG_CACHE_HOME/aetool``, else ``~/.cache/aetool``."""
    env = os.environ.get("AETOOL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "aetool"
    return Path.home() / ".cache" / "aetool"

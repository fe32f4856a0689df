"""Which files of a folder are images, and which ``--data`` values name such a folder.

:func:`scan` walks a folder (recursively, symbolic links followed, loops ended, hidden names
skipped) and returns its image files in a fixed order, with the class each belongs to when the
folder has one sub-folder per class.  :func:`is_image_folder` tells a folder of pictures from
MNIST's sources (a folder without IDX files), so that every command decides it the same way.

The standard library and numpy only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import AetoolError
from .idx import is_idx_folder

__all__ = ["SUFFIXES", "is_image_folder", "scan"]

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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


def scan_files(root: str | os.PathLike, strict: bool = False
               ) -> tuple[Path, list[Path], list[str], np.ndarray, list[str], list[tuple[str, str]]]:
    """:func:`scan` as a loader needs it: the root, the files, their "/"-separated paths relative to
    it, labels, class names, and the entries that could not be read (with ``strict``, the first of
    those is an error naming it)."""
    from .fileio import path_text  # late: fileio is not needed to tell a folder of pictures

    root_path = Path(root).expanduser()
    unreadable: list[tuple[str, str]] = []
    paths, labels, class_names = scan(root_path, unreadable)
    if unreadable and strict:
        where, reason = unreadable[0]
        raise AetoolError(f"{path_text(os.path.join(root_path, where))}: {reason} (strict: no file may be skipped)")
    rels = [p.relative_to(root_path).as_posix() for p in paths]
    return root_path, paths, rels, labels, class_names, unreadable

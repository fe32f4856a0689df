"""IDX files, the format of MNIST and of the data sets made to replace it (Fashion-MNIST,
KMNIST, EMNIST): a folder of them is a ``--data`` source like any other.

The format is its own idea, apart from MNIST: any folder of IDX files is read the same way,
while where MNIST comes from (offline copy, download) and how it is cached is
``aetool.mnist``'s; and ``aetool.folder`` needs only :func:`is_idx_folder` to tell an IDX
folder from a folder of pictures.  Every malformed file (bad magic number, wrong type or
dimensions, truncated, corrupt gzip) is refused in one line before any array is built.

numpy only, no torch.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import AetoolError

__all__ = ["IDX_STEMS", "is_idx_folder", "idx_split_files", "read_idx_split"]

# IDX file stems per split: (images, labels).  Each may end in ".gz", and the
# dotted variant ("train-images.idx3-ubyte") some archives use is accepted too.
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _find_idx(folder: Path, stem: str) -> Path:
    """The file for ``stem`` in ``folder``: plain or .gz, dashed or dotted name."""
    dotted = stem.replace("-idx", ".idx", 1)
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        p = folder / name
        if p.is_file():
            return p
    raise AetoolError(f"MNIST folder {folder}: missing {stem} (or {stem}.gz)")


def is_idx_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds MNIST-format training images (MNIST, Fashion-MNIST, KMNIST, EMNIST)."""
    try:
        _find_idx(Path(folder), IDX_STEMS["train"][0])
        return True
    except AetoolError:
        return False


def idx_split_files(folder: Path, split: str) -> tuple[Path, Path]:
    """The (images, labels) IDX files of ``split`` ("train" or "test") in ``folder``."""
    images, labels = IDX_STEMS[split]
    return _find_idx(folder, images), _find_idx(folder, labels)


def _one_line(x: object) -> str:
    return " ".join(str(x).split())


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file (big-endian header: 0, 0, type, ndim, then dims)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic; IDX files start with two zero bytes
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError; corrupt data is zlib.error
        raise AetoolError(f"{path}: cannot read ({_one_line(e)})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise AetoolError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty)'}")
    if raw[2] != 0x08 or raw[3] != ndim:
        raise AetoolError(
            f"{path}: expected uint8 IDX with {ndim} dims, got type 0x{raw[2]:02x} with {raw[3]} dims"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise AetoolError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != size:
        raise AetoolError(f"{path}: holds {len(raw) - header} data bytes, header says {size} {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 (N, 28, 28) images and (N,) labels in 0..9 of ``split`` in ``folder``."""
    img_path, lab_path = idx_split_files(folder, split)
    images = _read_idx(img_path, 3)
    labels = _read_idx(lab_path, 1)
    if images.shape[1:] != (28, 28):
        raise AetoolError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise AetoolError(f"{img_path}: {len(images)} images but {lab_path.name} has {len(labels)} labels")
    if len(labels) == 0:
        raise AetoolError(f"{img_path}: holds no images")
    if int(labels.max()) > 9:
        raise AetoolError(f"{lab_path}: labels outside 0..9")
    return images, labels

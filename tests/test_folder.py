"""Tests for aetool.folder: a folder of images as a training set, decoded once into a cached
memory map.  Tiny synthetic folders built with Pillow; no torch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aetool.folder_headers as folder_headers
import aetool.image_input as image_input
from aetool.errors import AetoolError
from aetool.folder import (
    SUFFIXES,
    infer_channels,
    infer_size,
    load_folder,
    scan,
    skipped_summary,
    split,
)
from aetool.image_input import picture_to_uint8


def rgb(path: Path, w: int = 40, h: int = 30, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)).save(path)
    return path


def grey(path: Path, w: int = 28, h: int = 28, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w), np.uint8)).save(path)
    return path


def classes(root: Path, per_class: int = 3) -> Path:
    """root/cat/*.png, root/dog/*.jpg (one of them nested), a picture in root itself."""
    for i in range(per_class):
        rgb(root / "cat" / f"c{i}.png", seed=i)
        rgb(root / "dog" / ("deep" if i == 0 else "") / f"d{i}.jpg", w=30, h=40, seed=10 + i)
    rgb(root / "top.png", seed=99)
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no images here")
    return root


def cached_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture()
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


# ---------------------------------------------------------------------------
# scan


def test_scan_with_class_folders(tmp_path):
    root = classes(tmp_path / "data")
    paths, labels, names = scan(root)
    rel = [p.relative_to(root).as_posix() for p in paths]
    assert names == ["cat", "dog"]  # "notes" holds no image: not a class
    assert rel == ["cat/c0.png", "cat/c1.png", "cat/c2.png", "dog/d1.jpg", "dog/d2.jpg", "dog/deep/d0.jpg", "top.png"]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 0, 1, 1, 1, -1]
    assert scan(root)[0] == paths  # deterministic


def test_scan_without_class_folders_and_case_insensitive_suffixes(tmp_path):
    root = tmp_path / "flat"
    for i, name in enumerate(["b.PNG", "a.JpEg", "c.webp", "d.tiff", "e.bmp", "f.gif"]):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i, 0, 0)).save(p, format={".png": "PNG", ".jpeg": "JPEG", ".webp": "WEBP",
                                                             ".tiff": "TIFF", ".bmp": "BMP", ".gif": "GIF"}[p.suffix.lower()])
    (root / "x.txt").write_text("x")
    paths, labels, names = scan(root)
    assert [p.name for p in paths] == ["a.JpEg", "b.PNG", "c.webp", "d.tiff", "e.bmp", "f.gif"]
    assert names == [] and labels.tolist() == [-1] * 6
    assert set(SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def test_scan_skips_hidden_files_and_folders(tmp_path):
    root = tmp_path / "data"
    grey(root / "a.png")
    grey(root / ".hidden.png")
    grey(root / ".git" / "b.png")
    grey(root / "cls" / ".thumbs" / "c.png")
    paths, labels, names = scan(root)
    assert [p.name for p in paths] == ["a.png"] and names == [] and labels.tolist() == [-1]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_scan_survives_symlink_loops(tmp_path):
    root = tmp_path / "data"
    grey(root / "cls" / "a.png")
    os.symlink(root, root / "cls" / "loop")  # cls/loop -> root: a cycle
    os.symlink(root / "cls", root / "cls" / "self")
    paths, labels, names = scan(root)
    assert [p.relative_to(root).as_posix() for p in paths] == ["cls/a.png"]


def test_scan_errors_are_one_line(tmp_path):
    with pytest.raises(AetoolError, match="folder not found"):
        scan(tmp_path / "nope")
    f = grey(tmp_path / "file.png")
    with pytest.raises(AetoolError, match="not a folder"):
        scan(f)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AetoolError, match="looked at 0 files"):
        scan(empty)
    (empty / "a.txt").write_text("a")
    (empty / "sub").mkdir()
    (empty / "sub" / "b.csv").write_text("b")
    with pytest.raises(AetoolError) as e:
        scan(empty)
    assert "no image files found (looked at 2 files" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------
# inference from headers


def test_infer_channels(tmp_path):
    g = [grey(tmp_path / "g.png")]
    la = tmp_path / "la.png"
    Image.new("LA", (8, 8), (100, 200)).save(la)
    g16 = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(g16)
    grey_palette = tmp_path / "gp.png"
    p = Image.new("P", (8, 8))
    p.putpalette([v for c in range(256) for v in (c, c, c)])
    p.save(grey_palette)
    colour_palette = tmp_path / "cp.png"
    p.putpalette([v for c in range(256) for v in (c, 0, 255 - c)])
    p.save(colour_palette)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert infer_channels(g + [la, g16, grey_palette, junk]) == 1
    assert infer_channels(g + [colour_palette]) == 3
    assert infer_channels(g + [rgb(tmp_path / "c.png")]) == 3


def test_infer_size(tmp_path):
    mnist_like = [grey(tmp_path / f"m{i}.png") for i in range(3)]
    assert infer_size(mnist_like, 1) == 28
    assert infer_size(mnist_like + [grey(tmp_path / "b.png", 30, 30)], 1) == 28  # median 28
    assert infer_size(mnist_like + [rgb(tmp_path / "c.png", 28, 28)], 3) == 28  # colour 28x28: nearest
    assert infer_size([grey(tmp_path / f"b{i}.png", 30, 30) for i in range(3)] + mnist_like[:1], 1) == 32  # 30: tie
    assert infer_size([grey(tmp_path / "w.png", 45, 20)], 1) == 32  # 45: nearer 32 than 64
    assert infer_size([grey(tmp_path / "t.png", 10, 48)], 3) == 64  # 48: a tie, the larger
    assert infer_size([rgb(tmp_path / f"r{i}.png", w, 20) for i, w in enumerate([100, 130, 2000])], 3) == 128
    assert infer_size([rgb(tmp_path / "huge.png", 1500, 900)], 3) == 256


# ---------------------------------------------------------------------------
# load_folder


def test_load_folder_end_to_end(tmp_path, cache):
    root = classes(tmp_path / "data")
    d = load_folder(root, cache_dir=cache, workers=1, quiet=True)
    assert (d.channels, d.size, d.fit) == (3, 32, "pad")  # colour; longer sides 40: nearest 32
    assert d.images.shape == (7, 3, 32, 32) and d.images.dtype == np.uint8 and len(d) == 7
    assert d.paths == ["cat/c0.png", "cat/c1.png", "cat/c2.png", "dog/d1.jpg", "dog/d2.jpg", "dog/deep/d0.jpg", "top.png"]
    assert d.labels.tolist() == [0, 0, 0, 1, 1, 1, -1] and d.class_names == ["cat", "dog"]
    assert d.skipped == [] and skipped_summary(d) is None
    assert d.root == str(root.resolve())
    for i, rel in enumerate(d.paths):
        np.testing.assert_array_equal(d.images[i], picture_to_uint8(root / rel, 3, 32, "pad"))
    assert isinstance(d.images, np.memmap) and d.cache_file is not None and d.cache_file.parent == cache
    assert d.cache_file.name.startswith("folder-") and d.cache_file.suffix == ".npy"
    assert cached_files(cache) == [d.cache_file.with_suffix(".json").name, d.cache_file.name]
    with pytest.raises(ValueError):
        d.images[0, 0, 0, 0] = 1  # read-only


def test_load_folder_options(tmp_path, cache):
    root = classes(tmp_path / "data")
    d = load_folder(root, channels=1, size=64, fit="crop", cache_dir=cache, workers=1, quiet=True)
    assert d.images.shape == (7, 1, 64, 64) and (d.channels, d.size, d.fit) == (1, 64, "crop")
    np.testing.assert_array_equal(d.images[6], picture_to_uint8(root / "top.png", 1, 64, "crop"))
    mnist = tmp_path / "mnist"
    for i in range(3):
        grey(mnist / f"{i}.png", seed=i)
    m = load_folder(mnist, cache_dir=cache, workers=1, quiet=True)
    assert (m.channels, m.size) == (1, 28) and m.images.shape == (3, 1, 28, 28)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"channels": 2}, "channels must be 1"),
    ({"size": 100}, "28, 32, 64, 128, 256"),
    ({"size": True}, "image size"),
    ({"fit": "stretch"}, "unknown fit"),
    ({"workers": 0}, "workers"),
])
def test_load_folder_rejects_bad_options(tmp_path, cache, kwargs, fragment):
    root = classes(tmp_path / "data")
    with pytest.raises(AetoolError, match=fragment):
        load_folder(root, cache_dir=cache, quiet=True, **kwargs)
    assert cached_files(cache) == []


def _forbid_decoding(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded an image on a cache hit")

    monkeypatch.setattr(image_input, "picture_to_uint8", fail)
    monkeypatch.setattr(folder_headers, "_headers", fail)  # read by infer_shape on a cache miss


def test_cache_hit_decodes_nothing(tmp_path, cache, monkeypatch):
    root = classes(tmp_path / "data")
    first = load_folder(root, cache_dir=cache, workers=1, quiet=True)
    want = np.array(first.images)
    _forbid_decoding(monkeypatch)
    again = load_folder(root, cache_dir=cache, workers=1, quiet=True)
    np.testing.assert_array_equal(again.images, want)
    assert isinstance(again.images, np.memmap) and not again.images.flags.writeable
    assert (again.paths, again.labels.tolist(), again.class_names) == (first.paths, first.labels.tolist(), first.class_names)
    assert (again.channels, again.size, again.fit, again.root, again.cache_file) == (3, 32, "pad", first.root, first.cache_file)


def test_default_cache_dir_follows_aetool_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AETOOL_CACHE", str(tmp_path / "env-cache"))
    root = classes(tmp_path / "data")
    d = load_folder(root, workers=1, quiet=True)
    assert d.cache_file.parent == tmp_path / "env-cache" / "folders"


def test_cache_invalidated_by_touching_or_adding_a_file(tmp_path, cache, monkeypatch):
    root = classes(tmp_path / "data")
    first = load_folder(root, cache_dir=cache, workers=1, quiet=True)

    rgb(root / "cat" / "c0.png", seed=50)  # new pixels, same name and size
    st = (root / "cat" / "c0.png").stat()
    os.utime(root / "cat" / "c0.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = load_folder(root, cache_dir=cache, workers=1, quiet=True)
    assert touched.cache_file != first.cache_file
    np.testing.assert_array_equal(touched.images[0], picture_to_uint8(root / "cat" / "c0.png", 3, 32))
    assert not np.array_equal(touched.images[0], first.images[0])

    rgb(root / "cat" / "c9.png", seed=51)
    added = load_folder(root, cache_dir=cache, workers=1, quiet=True)
    assert len(added) == 8 and added.paths[3] == "cat/c9.png" and added.labels[3] == 0
    # the superseded caches of the same folder and options are gone: one cache, not three copies
    assert cached_files(cache) == sorted([added.cache_file.name, added.cache_file.with_suffix(".json").name])
    other = load_folder(root, channels=1, cache_dir=cache, workers=1, quiet=True)  # other options: kept apart
    assert len(cached_files(cache)) == 4 and other.images.shape[1] == 1


def test_workers_give_byte_identical_arrays(tmp_path):
    root = tmp_path / "data"
    for i in range(13):
        rgb(root / f"{i:02d}.png", w=30 + i, h=50 - i, seed=i)
    (root / "05.png").write_bytes(b"broken")
    one = load_folder(root, cache_dir=tmp_path / "c1", workers=1, quiet=True)
    two = load_folder(root, cache_dir=tmp_path / "c2", workers=2, quiet=True)
    assert one.images.shape == two.images.shape == (12, 3, 32, 32)
    assert np.array_equal(np.asarray(one.images), np.asarray(two.images))
    assert one.paths == two.paths and one.skipped == two.skipped
    assert one.cache_file.read_bytes() == two.cache_file.read_bytes()


def test_bad_files_skipped_and_summarised(tmp_path, cache):
    root = classes(tmp_path / "data")
    good = rgb(tmp_path / "full.png", 200, 150, seed=7)
    data = good.read_bytes()
    (root / "cat" / "cut.png").write_bytes(data[: len(data) // 2])  # truncated
    (root / "dog" / "text.jpg").write_text("this is a text file\n" * 10)
    (root / "dog" / "zero.png").write_bytes(b"")
    d = load_folder(root, cache_dir=cache, workers=1, quiet=True)
    assert len(d) == 7 and [s[0] for s in d.skipped] == ["cat/cut.png", "dog/text.jpg", "dog/zero.png"]
    assert "cut.png" not in " ".join(d.paths) and d.labels.tolist() == [0, 0, 0, 1, 1, 1, -1]
    assert all(str(root) not in reason and "\n" not in reason for _, reason in d.skipped)
    summary = skipped_summary(d)
    assert summary.startswith("skipped 3 of 10 files (e.g. cat/cut.png: corrupt or truncated image")
    assert "\n" not in summary
    assert np.load(d.cache_file, mmap_mode="r").shape == (7, 3, 32, 32)  # the .npy itself holds 7 rows
    hit = load_folder(root, cache_dir=cache, workers=1, quiet=True)  # the skipped list is cached too
    assert hit.skipped == d.skipped and hit.images.shape == d.images.shape

    with pytest.raises(AetoolError) as e:
        load_folder(root, cache_dir=tmp_path / "strict", workers=1, strict=True, quiet=True)
    assert str(root / "cat" / "cut.png") in str(e.value) and "\n" not in str(e.value)
    assert cached_files(tmp_path / "strict") == []


def test_strict_with_workers(tmp_path):
    root = tmp_path / "data"
    for i in range(9):
        rgb(root / f"{i}.png", seed=i)
    (root / "7.png").write_bytes(b"nope")
    with pytest.raises(AetoolError, match="7.png"):
        load_folder(root, cache_dir=tmp_path / "c", workers=2, strict=True, quiet=True)
    assert cached_files(tmp_path / "c") == []


def test_no_readable_image(tmp_path, cache):
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.png").write_bytes(b"garbage")
    (root / "b.jpg").write_bytes(b"")
    with pytest.raises(AetoolError) as e:
        load_folder(root, cache_dir=cache, workers=1, quiet=True)
    msg = str(e.value)
    assert msg.startswith(f"no readable image in {root}: 2 files skipped, e.g. a.png: not an image file")
    assert "\n" not in msg
    assert cached_files(cache) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AetoolError, match="no image files found"):
        load_folder(empty, cache_dir=cache, quiet=True)


def test_killed_write_leaves_nothing_trusted(tmp_path, cache, monkeypatch):
    root = classes(tmp_path / "data")
    real = image_input.picture_to_uint8
    calls = []

    def dies_on_third(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C'd half way
        return real(*args, **kwargs)

    monkeypatch.setattr(image_input, "picture_to_uint8", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        load_folder(root, cache_dir=cache, workers=1, quiet=True)
    assert cached_files(cache) == []  # the temporary array is gone, no .npy, no .json
    monkeypatch.setattr(image_input, "picture_to_uint8", real)

    # what a SIGKILL could leave: a temporary array, or the .npy renamed but its .json not yet written
    d = load_folder(root, cache_dir=cache, workers=1, quiet=True)
    want = np.array(d.images)
    npy, meta = d.cache_file, d.cache_file.with_suffix(".json")
    meta.unlink()
    npy.write_bytes(npy.read_bytes()[:200])  # and a half-written array under the final name
    stale = cache / f".{npy.name}.abcd1234.tmp"
    stale.write_bytes(b"x" * 100)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    fresh = cache / f".{npy.name}.efgh5678.tmp"  # another run's decode in progress: left alone
    fresh.write_bytes(b"y")
    again = load_folder(root, cache_dir=cache, workers=1, quiet=True)
    np.testing.assert_array_equal(again.images, want)
    assert not stale.exists() and fresh.exists()
    # a .json that does not match its .npy is not trusted either
    np.save(npy, np.zeros((2, 3, 32, 32), np.uint8))
    np.testing.assert_array_equal(load_folder(root, cache_dir=cache, workers=1, quiet=True).images, want)
    npy.write_bytes(npy.read_bytes()[:-100])  # nor a .npy cut short under a good .json
    np.testing.assert_array_equal(load_folder(root, cache_dir=cache, workers=1, quiet=True).images, want)


def test_unwritable_cache_decodes_into_memory(tmp_path):
    root = classes(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    d = load_folder(root, cache_dir=blocker / "cache", workers=1, quiet=True)
    assert d.cache_file is None and not isinstance(d.images, np.memmap) and d.images.shape == (7, 3, 32, 32)
    np.testing.assert_array_equal(d.images[6], picture_to_uint8(root / "top.png", 3, 32))


def test_progress_lines_name_the_folder(tmp_path, cache, capsys, monkeypatch):
    monkeypatch.setattr("aetool.progress.LINE_MIN_SECONDS", 0.0)
    root = classes(tmp_path / "data")
    load_folder(root, cache_dir=cache, workers=1)
    assert f"decoding {root}: 100%" in capsys.readouterr().err
    load_folder(root, cache_dir=tmp_path / "quiet", workers=1, quiet=True)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------
# split


def test_split_is_deterministic_and_partitions():
    train, val = split(100, 0.1, seed=0)
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert len(val) == 10 and len(train) == 90
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    again = split(100, 0.1, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    assert not np.array_equal(split(100, 0.1, seed=1)[1], val)
    expected = np.sort(np.random.default_rng(0).permutation(100)[:10])  # the documented recipe
    assert np.array_equal(val, expected)
    t0, v0 = split(5, 0.0)
    assert t0.tolist() == [0, 1, 2, 3, 4] and v0.tolist() == []
    assert [len(x) for x in split(10, 0.9)] == [1, 9]


def test_split_same_in_another_process():
    code = "from aetool.folder import split; print(split(50, 0.2, seed=3)[1].tolist())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(split(50, 0.2, seed=3)[1].tolist())


@pytest.mark.parametrize("n,fraction,fragment", [
    (100, -0.1, "[0, 0.9]"),
    (100, 0.95, "[0, 0.9]"),
    (100, float("nan"), "[0, 0.9]"),
    (1, 0.1, "folder too small for --val-split 0.1: 1 image"),
    (4, 0.1, "folder too small for --val-split 0.1: 4 images"),
    (0, 0.0, "folder too small"),
])
def test_split_errors(n, fraction, fragment):
    with pytest.raises(AetoolError) as e:
        split(n, fraction)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_module_does_not_import_torch():
    code = "import sys, aetool.folder; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0

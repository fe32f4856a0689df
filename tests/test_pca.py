"""PCA at any image size: the streaming fit against an exact eigendecomposition, its memory bound,
and `train --model pca` on a folder of colour photographs through export and reconstruct."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from aetool.datasets import Rows
from aetool.training.pca import chunk_rows, fit_pca, fit_pca_streaming, pca_memory_bytes, project_stats
from conftest import run_cli
from photos import photo_crops, photo_folder


@pytest.fixture(scope="module")
def crops() -> tuple[np.ndarray, np.ndarray]:
    """1,200 training and 300 held-out 16x16 colour crops of real photographs."""
    x = photo_crops(1500, 16, seed=3)
    return x[:1200], x[1200:]


@pytest.mark.parametrize("d", [8, 32])
def test_randomized_pca_is_within_a_percent_of_the_exact_eigendecomposition(crops, d):
    train, heldout = crops
    mean, exact = fit_pca(np.divide(train, np.float32(255), dtype=np.float32), d)
    # forced onto the randomized path, in chunks much smaller than the data
    fit = fit_pca_streaming(train, d, exact_max_pixels=0, chunk_bytes=100_000, seed=1)
    assert fit.method == "randomized" and fit.passes >= 3
    best = project_stats(heldout, mean, exact)[0].mean()
    ours = project_stats(heldout, fit.mean, fit.components)[0].mean()
    assert ours == pytest.approx(best, rel=0.01)
    np.testing.assert_allclose(fit.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(fit.components.T @ fit.components, np.eye(d), atol=1e-10)
    # the leading directions themselves agree, signs fixed alike
    np.testing.assert_allclose((fit.components[:, :4] * exact[:, :4]).sum(axis=0), 1, atol=1e-3)
    again = fit_pca_streaming(train, d, exact_max_pixels=0, chunk_bytes=100_000, seed=1)
    np.testing.assert_array_equal(again.components, fit.components)  # deterministic


def test_exact_streaming_pca_is_the_closed_form(crops):
    train = np.divide(crops[0][:, :, :8, :8], np.float32(255), dtype=np.float32)  # 192 values: the exact path
    mean, components = fit_pca(train, 6)
    fit = fit_pca_streaming(train, 6, chunk_bytes=20_000)
    assert fit.method == "exact"
    np.testing.assert_allclose(fit.mean, mean, atol=1e-12)
    np.testing.assert_allclose(fit.components, components, atol=1e-9)
    few = np.divide(crops[0][:300], np.float32(255), dtype=np.float32)  # 300 images of 768 values: the Gram matrix
    mean, components = fit_pca(few, 6)
    fit = fit_pca_streaming(few, 6)
    assert fit.method == "exact" and fit.passes == 2
    np.testing.assert_allclose(fit.components, components, atol=1e-8)


class CountingRows:
    """Rows that remember the largest read and how many rows were read in all."""

    def __init__(self, rows: Rows) -> None:
        self.rows, self.largest, self.read = rows, 0, 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        out = self.rows[key]
        self.largest = max(self.largest, len(out))
        self.read += len(out)
        return out


def test_memory_is_bounded_on_a_cache_larger_than_a_chunk(tmp_path):
    n, shape = 1500, (3, 32, 32)  # 3,072 values: 4.6 MB of bytes, 18 MB as floats
    cache = np.lib.format.open_memmap(tmp_path / "cache.npy", mode="w+", dtype=np.uint8, shape=(n, *shape))
    cache[:] = np.random.default_rng(0).integers(0, 256, cache.shape, dtype=np.uint8)
    cache.flush()
    del cache
    rows = CountingRows(Rows(np.load(tmp_path / "cache.npy", mmap_mode="r"), np.arange(0, n, 1)))
    chunk = 200_000  # bytes of floats: 16 images a chunk
    tracemalloc.start()
    try:
        fit = fit_pca_streaming(rows, 8, exact_max_pixels=0, chunk_bytes=chunk, max_passes=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pixels = int(np.prod(shape))
    assert rows.largest == chunk_rows(pixels, chunk) == 16
    assert rows.read == (1 + fit.passes - 1) * n + 1  # the mean's pass, each iteration's, and the first row's shape
    bound = pca_memory_bytes(pixels, 8, images=n, chunk_bytes=chunk, exact_max_pixels=0)
    assert peak <= bound < n * pixels  # less than the images take as bytes, let alone as floats
    assert pca_memory_bytes(pixels, 8, images=100 * n, chunk_bytes=chunk, exact_max_pixels=0) == bound


def test_d_larger_than_the_pixels_is_a_usage_error(crops):
    from aetool.errors import UsageError

    with pytest.raises(UsageError, match="at most 768 directions"):
        fit_pca_streaming(crops[0], 769)


@pytest.mark.slow
def test_train_pca_on_a_colour_folder_exports_and_reconstructs(tmp_path):
    photo_folder(tmp_path / "photos", 60, 64, seed=5)
    env = {"AETOOL_CACHE": str(tmp_path / "cache")}
    run_cli("train", "--model", "pca", "--d", "8", "--data", "photos", "--image-size", "64", "--channels", "3",
            "--quiet", cwd=tmp_path, env=env)
    metrics = json.loads((tmp_path / "models" / "pca-d8-photos" / "metrics.json").read_text())
    # 54 training images of 12,288 values, in one chunk: the exact fit through their Gram matrix
    assert metrics["family"] == "pca" and metrics["fit"]["method"] == "exact"
    assert (metrics["data"]["train_images"], metrics["data"]["test_images"]) == (54, 6)
    run_cli("export", "--quiet", cwd=tmp_path, env=env)
    meta = json.loads((tmp_path / "export" / "pca-d8-photos" / "latent.json").read_text())
    assert meta["family"] == "pca" and (meta["image"]["channels"], meta["image"]["height"]) == (3, 64)
    photo = tmp_path / "photos" / "photo0001.png"
    report = json.loads(run_cli("reconstruct", str(photo), "-o", str(tmp_path / "r.png"), "--json",
                                cwd=tmp_path, env=env).stdout)
    assert report["bundle"].endswith("pca-d8-photos") and Image.open(tmp_path / "r.png").mode == "RGB"
    # the bundle's reconstruction is the numpy projection onto the run's fit
    from aetool import load_bundle

    b = load_bundle(tmp_path / "export" / "pca-d8-photos", device="cpu")
    x = np.asarray(Image.open(photo)).transpose(2, 0, 1)[None].astype(np.float32) / 255
    w = b.encode(x).reshape(1, 8)
    assert np.isfinite(w).all()
    recon = b.reconstruct(x)
    sse = float(((recon - x) ** 2).sum())
    assert report["images"][0]["sse"] == pytest.approx(sse, rel=1e-4)
    # the directions are orthonormal: projecting the reconstruction again changes nothing
    np.testing.assert_allclose(b.reconstruct(recon), recon, atol=1e-4)
    # more directions than the images have: the randomized fit, every image reproduced
    run_cli("train", "--model", "pca", "--d", "60", "--data", "photos", "--image-size", "64", "--channels", "3",
            "--quiet", cwd=tmp_path, env=env)
    wide = json.loads((tmp_path / "models" / "pca-d60-photos" / "metrics.json").read_text())
    assert wide["fit"]["method"] == "randomized" and wide["history"][0]["train_loss"] < 1e-6
    assert wide["test_sse_per_image"] < metrics["test_sse_per_image"]

"""`aetool compare --data DIR`: PCA against the network on a folder's own validation images, and the SSIM it
reports, checked against scikit-image's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from aetool.metrics import ssim_per_image
from conftest import run_cli, usage_error
from photos import photo_crops, photo_folder


def skimage_ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    metrics = pytest.importorskip("skimage.metrics")
    return np.array([metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                   data_range=1, channel_axis=0) for a, b in zip(x, y)])


@pytest.mark.parametrize("shape", [(3, 3, 32, 32), (2, 1, 28, 28), (2, 3, 11, 17)])
def test_ssim_is_scikit_images(shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    y = np.clip(x + 0.2 * rng.standard_normal(shape), -0.1, 1.1)  # reconstructions may leave [0, 1]
    np.testing.assert_allclose(ssim_per_image(x, y, batch=2), skimage_ssim(x, y), atol=1e-12)
    np.testing.assert_allclose(ssim_per_image(x, x), 1.0, atol=1e-12)


def test_ssim_of_photographs_and_float32():
    x = photo_crops(4, 64, seed=1).astype(np.float32) / 255
    y = np.clip(x + np.float32(0.05) * np.random.default_rng(1).standard_normal(x.shape, dtype=np.float32), 0, 1)
    ours = ssim_per_image(x, y)
    np.testing.assert_allclose(ours, skimage_ssim(x.astype(np.float64), y.astype(np.float64)), atol=1e-12)
    np.testing.assert_allclose(ours, skimage_ssim(x, y), atol=1e-4)  # scikit-image computes float32 in float32
    assert ((0 < ours) & (ours < 1)).all()


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11 pixels"):
        ssim_per_image(np.zeros((1, 1, 10, 10)), np.zeros((1, 1, 10, 10)))


@pytest.mark.slow
def test_compare_a_folder_trains_tables_and_draws(tmp_path):
    photo_folder(tmp_path / "photos", 40, 32, seed=7)
    env = {"AETOOL_CACHE": str(tmp_path / "cache")}
    proc = run_cli("compare", "--data", "photos", "--d", "2,4", "--epochs", "1", "-o", "cmp", "--scale", "1",
                   cwd=tmp_path, env=env)
    assert "| d | PCA SSE / image | photo SSE / image | photo / PCA |" in proc.stdout
    assert "\n| 2 | " in proc.stdout and "\n| 4 | " in proc.stdout
    runs = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert runs == ["pca-d2-photos", "pca-d4-photos", "photo-d2-photos", "photo-d4-photos"]  # as aetool train names them
    report = json.loads((tmp_path / "cmp" / "table.json").read_text())
    assert report["validation_images"] == 4 and report["train_images"] == 36 and report["image"] == [3, 32, 32]
    rows = {(r["d"], r["family"]): r for r in report["rows"]}
    assert set(rows) == {(2, "pca"), (4, "pca"), (2, "photo"), (4, "photo")}
    for (d, family), r in rows.items():
        assert r["psnr_db"] == pytest.approx(10 * np.log10(3 * 32 * 32 / r["validation_sse_per_image"]))
        assert -1 <= r["ssim"] <= 1
        assert report["sse_ratio_net_over_pca"][str(d)] == pytest.approx(
            rows[(d, "photo")]["validation_sse_per_image"] / rows[(d, "pca")]["validation_sse_per_image"])
    # PCA's validation SSE is its training run's own, computed there in numpy
    pca = json.loads((tmp_path / "models" / "pca-d4-photos" / "metrics.json").read_text())
    assert rows[(4, "pca")]["validation_sse_per_image"] == pytest.approx(pca["test_sse_per_image"], rel=1e-4)
    assert rows[(4, "pca")]["validation_sse_per_image"] < rows[(2, "pca")]["validation_sse_per_image"]
    # originals, PCA, network: one row of the 4 validation images each
    fig = Image.open(tmp_path / "cmp" / "recon-d4.png")
    assert fig.mode == "RGB" and fig.size[1] == 3 * 36 + 2 * 8 and 4 * 34 + 2 < fig.size[0] < 4 * 34 + 2 + 100
    # the originals' row, right of its label, holds validation images as the folder has them
    from aetool.folder import split

    _, val = split(40, 0.1, 0)
    cell = np.asarray(fig)[2:34, fig.size[0] - (4 * 34) : fig.size[0] - (4 * 34) + 32]
    assert (cell == np.asarray(Image.open(tmp_path / "photos" / f"photo{val[0]:04d}.png"))).all()

    # a second comparison finds the runs instead of training them; --json is the report
    again = run_cli("compare", "--data", "photos", "--runs", "models/photo-d4-photos,models/pca-d4-photos", "--json",
                    "-o", "cmp2", cwd=tmp_path, env=env)
    j = json.loads(again.stdout)
    assert [(r["d"], r["family"]) for r in j["rows"]] == [(4, "pca"), (4, "photo")] and j["figures"] == ["recon-d4.png"]
    assert j["rows"][1]["validation_sse_per_image"] == pytest.approx(rows[(4, "photo")]["validation_sse_per_image"])

    other = run_cli("compare", "--data", "photos", "--d", "2", "--seed", "1", "--epochs", "1", "--runs",
                    "models/pca-d2-photos", cwd=tmp_path, env=env, check=False)
    usage_error(other, "models/pca-d2-photos was trained with seed=0, this comparison has seed=1")
    usage_error(run_cli("compare", "--image-size", "32", cwd=tmp_path, check=False), "--image-size go with --data")
    usage_error(run_cli("compare", "--data", "nowhere", cwd=tmp_path, check=False), "nowhere")

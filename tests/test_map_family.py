"""The map families' training side: the network and block PCA at every factor and at any size, the
crops, the own-size picture cache, and a tiny run exported with graphs that take any size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aetool.errors import AetoolError, UsageError
from aetool.picture_store import load_pictures
from aetool.training.config import TrainConfig
from aetool.training.crops import CropImages, map_codes, pad_to_multiple
from aetool.training.families import ArchConfig, build_model, get_family
from aetool.training.maps import BlockPCA, MapAutoEncoder, blocks_of, fit_block_pca
from conftest import run_cli, usage_error
from photos import photo_crops


@pytest.mark.parametrize("factor", [4, 8, 16])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", ["map", "pca"])
def test_map_families_take_any_multiple_of_the_factor(family, factor, channels):
    arch = ArchConfig(family, d=5, width=None if family == "pca" else 4, channels=channels, image_size=32,
                      factor=factor)
    model = build_model(arch).eval()
    for h, w in [(factor, factor), (2 * factor, 5 * factor), (7 * factor, 3 * factor)]:
        x = torch.rand(2, channels, h, w)
        with torch.no_grad():
            z = model.encoder(x)
            assert z.shape == (2, 5, h // factor, w // factor)
            assert model.decoder(z).shape == (2, channels, h, w)


def test_block_pca_is_the_exact_eigendecomposition_of_the_blocks():
    rng = np.random.default_rng(0)
    pictures = [rng.random((3, 24, 40)).astype(np.float32) ** 2, rng.random((3, 16, 16)).astype(np.float32)]
    mean, components, info = fit_block_pca(pictures, 8, 6)
    blocks = np.concatenate([blocks_of(p, 8) for p in pictures]).astype(np.float64)
    assert info["blocks"] == len(blocks) == 15 + 4
    centred = blocks - blocks.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)  # another route to the same subspace
    np.testing.assert_allclose(mean, blocks.mean(0), atol=1e-6)
    np.testing.assert_allclose(np.abs(components.T @ vt[:6].T), np.eye(6), atol=1e-4)
    assert info["explained_variance"] == pytest.approx((s[:6] ** 2).sum() / (s**2).sum(), rel=1e-6)
    # and the graphs' block PCA reconstructs each block as the projection on those directions
    model = BlockPCA(6, 3, 8).start_at_pca(mean, components).eval()
    with torch.no_grad():
        y = model(torch.from_numpy(pictures[0][None]))[0].numpy()
    expected = (blocks_of(pictures[0], 8) - mean) @ components @ components.T + mean
    np.testing.assert_allclose(blocks_of(y, 8), expected, atol=1e-5)


def test_a_fresh_map_network_is_block_pca():
    """Its convolutional paths start at zero: before the first step it computes block PCA exactly."""
    x = torch.from_numpy(photo_crops(3, 48).astype(np.float32) / 255)
    mean, components, _ = fit_block_pca(list(x.numpy()), 8, 4)
    net = MapAutoEncoder(4, 8, 3, 8).start_at_pca(mean, components).eval()
    pca = BlockPCA(4, 3, 8).start_at_pca(mean, components).eval()
    with torch.no_grad():
        torch.testing.assert_close(net.encoder(x), pca.encoder(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(net(x), pca(x), atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in net.encoder.linear.parameters())


def test_padding_mirrors_up_to_the_multiple_even_for_pictures_smaller_than_it():
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    y = pad_to_multiple(x, 8)
    assert y.shape == (1, 2, 8, 8)
    torch.testing.assert_close(y[..., :3, :5], x)
    torch.testing.assert_close(y[..., :3, 5], x[..., :3, 3])  # mirrored, not repeated
    assert pad_to_multiple(torch.zeros(1, 1, 16, 24), 8).shape == (1, 1, 16, 24)


@pytest.fixture(scope="module")
def picture_folder(tmp_path_factory):
    """Five photographs' crops of different sizes and aspect ratios, one grey-looking, as PNG files."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("pictures")
    crops = photo_crops(5, 96, seed=3)
    for i, (h, w) in enumerate([(96, 96), (72, 96), (96, 56), (40, 88), (64, 64)]):
        Image.fromarray(crops[i, :, :h, :w].transpose(1, 2, 0)).save(folder / f"p{i}.png")
    (folder / "notes.txt").write_text("not a picture")
    return folder


def test_pictures_keep_their_own_size_and_are_cached(picture_folder, tmp_path):
    pictures, skipped = load_pictures(picture_folder, cache_dir=tmp_path, max_side=80)
    assert len(pictures) == 5 and pictures.channels == 3
    sizes = {tuple(map(int, s)) for s in pictures.sizes}
    assert sizes == {(80, 80), (60, 80), (80, 47), (36, 80), (64, 64)}  # longer side capped, aspect kept
    again, _ = load_pictures(picture_folder, cache_dir=tmp_path, max_side=80)
    assert isinstance(again.data, np.memmap)
    for i in range(5):
        np.testing.assert_array_equal(again.picture(i), pictures.picture(i))
    with pytest.raises(AetoolError, match="--max-side"):
        load_pictures(picture_folder, cache_dir=tmp_path, max_side=4)


def test_crops_are_seeded_by_their_batch_and_augmented_in_shape(picture_folder, tmp_path):
    pictures, _ = load_pictures(picture_folder, cache_dir=tmp_path)
    crops = CropImages(pictures, 32, 100, seed=1, device=torch.device("cpu"), zoom=2, turns=True, colours=True)
    idx = torch.tensor([5, 9, 2, 7])
    a, b = crops.batch(idx), crops.batch(idx)
    assert a.shape == (4, 3, 32, 32) and 0 <= float(a.min()) and float(a.max()) <= 1
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, crops.batch(torch.tensor([6, 9, 2, 7])))
    with pytest.raises(UsageError, match="no training picture is that large"):
        CropImages(pictures, 128, 100, seed=1, device=torch.device("cpu"))


def test_map_options_are_refused_where_they_do_not_apply(tmp_path, picture_folder):
    with pytest.raises(UsageError, match="--factor"):
        TrainConfig(data=str(picture_folder), model="photo", factor=8).selection()
    with pytest.raises(UsageError, match="--crop"):
        TrainConfig(data=str(picture_folder), model="pca", factor=8, crop=32).selection()
    with pytest.raises(UsageError, match="multiple of --factor"):
        TrainConfig(data=str(picture_folder), model="map", factor=16, crop=40).validate()
    assert get_family("map").takes_maps(None) and not get_family("pca").takes_maps(None)


@pytest.fixture(scope="module")
def map_workspace(tmp_path_factory, picture_folder):
    """A tiny map run and block PCA, both exported."""
    ws = tmp_path_factory.mktemp("mapws")
    run_cli("train", "--data", str(picture_folder), "--arch", "map", "--factor", "8", "--d", "4", "--width", "8",
            "--epochs", "2", "--crops-per-epoch", "32", "--crop", "32", "--val-split", "0.2", "--quiet", "--out",
            "models/map", cwd=ws)
    run_cli("export", "models/map", "--quiet", cwd=ws)
    run_cli("train", "--data", str(picture_folder), "--arch", "pca", "--factor", "8", "--d", "4", "--val-split",
            "0.2", "--quiet", "--out", "models/pca", cwd=ws)
    run_cli("export", "models/pca", "--quiet", cwd=ws)
    return ws


@pytest.mark.slow
@pytest.mark.parametrize("run", ["map", "pca"])
def test_a_map_run_exports_graphs_that_take_any_size(map_workspace, run):
    import onnxruntime as ort

    metrics = json.loads((map_workspace / "models" / run / "metrics.json").read_text())
    assert metrics["arch"]["factor"] == 8 and metrics["data"]["own_size"] is True
    assert metrics["data"]["test_images"] == 1 and 0 < metrics["test_ssim"] <= 1
    meta = json.loads((map_workspace / "export" / run / "latent.json").read_text())
    assert meta["schema_version"] == 3 and meta["latent"] == {"kind": "map", "factor": 8, "multiple": 8, "min_side": 8}
    assert meta["image"]["preprocessing"] == "own_size"
    side = meta["image"]["height"]  # the crop: the checks start there, then go non-square and larger
    assert [tuple(s) for s in meta["export"]["check"]["sizes"]] == [(side, side), (2 * side, 3 * side), (5 * side, 4 * side)]
    enc = ort.InferenceSession(str(map_workspace / "export" / run / "encoder.onnx"))
    dec = ort.InferenceSession(str(map_workspace / "export" / run / "decoder.onnx"))
    x = np.random.default_rng(0).random((2, 3, 40, 72), dtype=np.float32)
    z = enc.run(None, {"image": x})[0]
    assert z.shape == (2, 4, 5, 9)
    assert dec.run(None, {"latent": z})[0].shape == (2, 3, 40, 72)
    # the densities are over the d numbers of one position
    assert len(meta["densities"]["diagonal_gaussian"]["mean"]) == 4


@pytest.mark.slow
def test_map_training_refuses_what_it_cannot_do(tmp_path, picture_folder):
    usage_error(run_cli("train", "--data", str(picture_folder), "--arch", "map", "--crop", "512", "--epochs", "1",
                        "--quiet", cwd=tmp_path, check=False), "no training picture is that large")
    usage_error(run_cli("train", "--arch", "map", "--epochs", "1", "--quiet", cwd=tmp_path, check=False),
                "folder of pictures")
    usage_error(run_cli("train", "--data", str(picture_folder), "--arch", "cnn", "--factor", "8", "--quiet",
                        cwd=tmp_path, check=False), "--factor")
    usage_error(run_cli("train", "--data", str(picture_folder), "--arch", "pca", "--factor", "8", "--d", "500",
                        "--quiet", cwd=tmp_path, check=False), "at most 192")


@pytest.mark.slow
def test_calibrate_on_the_training_folder_uses_its_validation_pictures(tmp_path):
    """calibrate --data <the training folder> on a map bundle sets the threshold on the whole held-out
    pictures training validated on, at their capped size: the same threshold export set on them."""
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    crops = photo_crops(16, 64, seed=5)
    for i in range(16):
        h, w = 40 + 8 * (i % 3), 64 - 8 * (i % 2)
        Image.fromarray(crops[i, :, :h, :w].transpose(1, 2, 0)).save(folder / f"p{i:02d}.png")
    run_cli("train", "--data", "pictures", "--arch", "map", "--d", "4", "--width", "4", "--epochs", "1",
            "--crops-per-epoch", "16", "--crop", "32", "--val-split", "0.5", "--max-side", "56", "--quiet",
            "--out", "m", cwd=tmp_path)
    run_cli("export", "m", "--out", "b", "--fpr", "0.25", "--quiet", cwd=tmp_path)
    exported = json.loads((tmp_path / "b" / "latent.json").read_text())["anomaly"]
    run_cli("calibrate", "--bundle", "b", "--data", "pictures", "--fpr", "0.25", "--out", "c", cwd=tmp_path)
    redone = json.loads((tmp_path / "c" / "latent.json").read_text())["anomaly"]
    assert exported["threshold"] is not None and "8 validation pictures" in redone["source"]
    assert redone["threshold"] == pytest.approx(exported["threshold"], rel=1e-9)

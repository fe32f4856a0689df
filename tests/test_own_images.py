"""A user's own folder of colour images, end to end: train, export, every runtime command, encode/decode,
torchrun against one process, and the folder's bad cases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, usage_error

pytestmark = pytest.mark.slow

def coloured_digits(folder: Path, n: int = 400) -> Path:
    from aetool.coloured_digits import write_coloured_digits

    return write_coloured_digits(folder, n=n)


@pytest.fixture(scope="module")
def colour_ws(tmp_path_factory) -> Path:
    """A workspace with a colour folder, a 1-epoch run on it and its bundle."""
    ws = tmp_path_factory.mktemp("colour")
    coloured_digits(ws / "photos")
    env = {"AETOOL_CACHE": str(ws / "cache")}
    # coloured digits: the lecture's network (the photo family's flips would mirror digits)
    run_cli("train", "--data", "photos", "--arch", "cnn", "--d", "8", "--epochs", "2", "--batch-size", "50", "--quiet",
            cwd=ws, env=env)
    run_cli("export", "--quiet", cwd=ws, env=env)
    return ws


def test_a_colour_folder_trains_with_a_validation_split_and_exports(colour_ws):
    metrics = json.loads((colour_ws / "models" / "cnn-d8-photos" / "metrics.json").read_text())
    assert metrics["config"]["channels"] == 3 and metrics["config"]["image_size"] == 32
    data = metrics["data"]
    assert data["name"] == "folder" and data["heldout"] == "validation"
    assert (data["train_images"], data["test_images"]) == (360, 40)
    assert data["classes"] == [f"digit-{i}" for i in range(10)]
    assert metrics["history"][1]["test_sse_per_image"] < metrics["history"][0]["test_sse_per_image"]
    meta = json.loads((colour_ws / "export" / "cnn-d8-photos" / "latent.json").read_text())
    image = meta["image"]
    assert (image["channels"], image["height"], image["width"], image["preprocessing"]) == (3, 32, 32, "resize_pad")
    assert max(meta["export"]["check"]["max_abs_diff"].values()) <= 1e-4


def test_runtime_commands_write_colour_pictures(colour_ws, tmp_path):
    photos = sorted((colour_ws / "photos" / "digit-3").glob("*.png"))[:2]
    big = tmp_path / "big.jpg"  # another size and format: the bundle's own preprocessing converts it
    Image.open(photos[0]).resize((100, 60)).save(big)
    report = json.loads(run_cli("reconstruct", str(photos[0]), str(big), "-o", str(tmp_path / "r.png"), "--json",
                                cwd=colour_ws).stdout)
    assert len(report["images"]) == 2 and all(i["sse"] > 0 for i in report["images"])
    recon = Image.open(tmp_path / "r.png")
    assert recon.mode == "RGB" and recon.size == (4 * (2 * 32 + 3 * 2), 4 * (2 * (32 + 2 * 2) + 4))
    run_cli("interpolate", *map(str, photos), "-o", str(tmp_path / "w.gif"), "--steps", "4", cwd=colour_ws)
    gif = Image.open(tmp_path / "w.gif")
    assert gif.n_frames == 4 and np.asarray(gif.convert("RGB")).std(axis=2).max() > 0  # colour frames
    run_cli("sample", "-n", "9", "-o", str(tmp_path / "s.png"), "--seed", "0", cwd=colour_ws)
    assert Image.open(tmp_path / "s.png").mode == "RGB"
    usage_error(run_cli("reconstruct", "--mnist-test", "4", cwd=colour_ws, check=False), "not trained on MNIST")
    usage_error(run_cli("evaluate", cwd=colour_ws, check=False), "evaluate scores MNIST digits")
    info = run_cli("info", cwd=colour_ws).stdout
    assert "cnn, d=8, fp32, image 3x32x32" in info and "preprocessing resize_pad" in info


def test_encode_a_folder_and_decode_the_latents(colour_ws, tmp_path):
    out = tmp_path / "z.npy"
    report = json.loads(run_cli("encode", "photos", "-o", str(out), "--json", cwd=colour_ws).stdout)
    z = np.load(out)
    paths = (tmp_path / "z.paths.txt").read_text().splitlines()
    assert z.shape == (400, 8) and z.dtype == np.float32 and len(paths) == 400 and report["rows"] == 400
    assert paths[0].endswith("digit-0/00001.png") and np.isfinite(z).all()
    from aetool import load_bundle

    b = load_bundle(colour_ws / "export" / "cnn-d8-photos", device="cpu")
    np.testing.assert_allclose(z[:3], b.encode(b.load_images([colour_ws / p for p in paths[:3]])).reshape(3, 8),
                               atol=1e-5)
    run_cli("encode", "photos/digit-1", "photos/digit-2/00005.png", "-o", str(tmp_path / "z.csv"), cwd=colour_ws)
    rows = (tmp_path / "z.csv").read_text().splitlines()
    assert rows[0] == "path," + ",".join(f"z{i}" for i in range(8)) and len(rows) == 1 + 1 + len(list((colour_ws / "photos" / "digit-1").iterdir()))
    run_cli("decode", str(out), "-o", str(tmp_path / "grid.png"), "--scale", "1", cwd=colour_ws)
    assert Image.open(tmp_path / "grid.png").size == (20 * 34 + 2, 20 * 34 + 2)
    run_cli("decode", str(tmp_path / "z.csv"), "-o", str(tmp_path / "pictures") + "/", "--scale", "1", cwd=colour_ws)
    pictures = sorted((tmp_path / "pictures").iterdir())
    assert len(pictures) == len(rows) - 1 and Image.open(pictures[0]).size == (32, 32)


def test_bad_files_in_a_folder_are_skipped_and_named(colour_ws, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(colour_ws / "photos" / "digit-4", folder / "a")
    (folder / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    proc = run_cli("train", "--data", str(folder), "--d", "2", "--epochs", "1", "--out", "m", cwd=tmp_path,
                   env={"AETOOL_CACHE": str(tmp_path / "cache")})
    assert "skipped 1 of" in proc.stdout + proc.stderr and "broken.png" in proc.stdout + proc.stderr
    proc = run_cli("train", "--data", str(folder), "--d", "2", "--epochs", "1", "--out", "n", "--strict", cwd=tmp_path,
                   env={"AETOOL_CACHE": str(tmp_path / "cache")}, check=False)
    assert proc.returncode == 1 and "broken.png" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["empty", "no-readable-image", "one-image", "size-not-supported"])
def test_folders_that_cannot_train(tmp_path, case):
    folder = tmp_path / "f"
    folder.mkdir()
    args = ["train", "--data", str(folder), "--d", "2", "--epochs", "1"]
    env = {"AETOOL_CACHE": str(tmp_path / "cache")}
    if case == "no-readable-image":
        (folder / "x.png").write_text("text")
    if case == "one-image":
        Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / "x.png")
    if case == "size-not-supported":
        Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / "x.png")
        usage_error(run_cli(*args, "--image-size", "48", cwd=tmp_path, env=env, check=False), "'--image-size'")
        return
    proc = run_cli(*args, cwd=tmp_path, env=env, check=False)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "models").exists()


def test_torchrun_two_processes_match_one(tmp_path):
    """Two CPU processes (gloo), each with half of every global batch, give the losses of one process."""
    coloured_digits(tmp_path / "photos", n=200)
    env = {**os.environ, "AETOOL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    # the lecture's network: BatchNorm (the photo family's) normalises each process's half batch on its own
    args = ["train", "--data", "photos", "--arch", "cnn", "--latent-dim", "4", "--epochs", "2", "--batch-size", "40",
            "--precision", "fp32", "--quiet"]
    run_cli(*args, "--out", "one", cwd=tmp_path, env=env)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "aetool", *args,
                           "--out", "two"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["history"]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["history"]
    for a, b in zip(one, two):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["test_sse_per_image"] == pytest.approx(a["test_sse_per_image"], rel=1e-4)

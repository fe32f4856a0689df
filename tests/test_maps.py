"""Map bundles in the runtime: pictures at their own size through every command, tiles, hostile input.

The bundles are made by tests/mapbundles.py (small convolutional graphs exported with torch.onnx),
not by the trained map family; the CLI tests run ``python -m aetool`` with torch hidden.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aetool.bundle import load_bundle
from aetool.errors import AetoolError, UsageError
from aetool.tiling import run_tiled

from conftest import run_cli, usage_error
from mapbundles import make_map_bundle, photo, save_photo


TILED_TOLERANCE = 1e-5  # tiled against untiled, largest absolute difference on [0, 1] pictures


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> Path:
    """A colour map bundle, f = 8, d = 4, with a receptive field one pixel beyond each block."""
    return make_map_bundle(tmp_path_factory.mktemp("maps") / "maps")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pics")
    save_photo(folder / "wide.png", 60, 100)
    save_photo(folder / "tall.jpg", 75, 41, seed=1)
    save_photo(folder / "tiny.png", 3, 5, seed=2)
    return folder


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> dict:
    """An environment where ``import torch`` fails, as on a runtime-only install."""
    folder = tmp_path_factory.mktemp("notorch")
    (folder / "torch").mkdir()
    (folder / "torch" / "__init__.py").write_text("raise ImportError('torch is hidden in this test')\n")
    return {"PYTHONPATH": str(folder)}


def test_layout_and_shapes(maps):
    b = load_bundle(maps)
    assert b.is_map and b.layout.factor == 8
    x = photo(45, 70)  # not multiples of 8, not square
    z = b.encode_picture(x)
    assert z.shape == (4, 6, 9)
    assert b.encode(b.pad_picture(x)[None]).shape == (1, 4, 6, 9)
    assert b.decode(z[None]).shape == (1, 3, 48, 72)
    y = b.reconstruct_picture(x)
    assert y.shape == x.shape and np.isfinite(y).all()
    # the API the end-to-end tests use: load_images gives pictures at their own size
    assert b.decode_picture(z, x.shape[1:]).shape == x.shape


def test_load_images_own_size(maps, pictures):
    b = load_bundle(maps)
    pics = b.load_images([pictures / "wide.png", pictures / "tall.jpg"])
    assert [p.shape for p in pics] == [(3, 60, 100), (3, 75, 41)]
    assert b.reconstruct_picture(pics[1]).shape == (3, 75, 41)


def test_padding_is_reflection_and_cropped_back(maps):
    b = load_bundle(maps)
    x = photo(10, 13)
    p = b.pad_picture(x)
    assert p.shape == (3, 16, 16)
    np.testing.assert_array_equal(p[:, :10, :13], x)
    np.testing.assert_array_equal(p[:, 10, :13], x[:, 8])  # numpy 'reflect': the edge row is not repeated
    tiny = b.pad_picture(photo(1, 2))  # smaller than f: works, one row reflected as itself
    assert tiny.shape == (3, 8, 8) and np.isfinite(tiny).all()
    assert b.reconstruct_picture(photo(3, 5)).shape == (3, 3, 5)


def test_tiled_equals_untiled(maps):
    """A small forced tile: tiled within TILED_TOLERANCE of one untiled call, both directions."""
    whole, tiled = load_bundle(maps), load_bundle(maps)
    tiled.max_tile_pixels = 64 * 64  # tiles of 4 x 4 positions with 4 positions of margin each side
    x = photo(203, 333, seed=3)
    z_whole, z_tiled = whole.encode_picture(x), tiled.encode_picture(x)
    assert np.abs(z_whole - z_tiled).max() < TILED_TOLERANCE * max(1.0, np.abs(z_whole).max())
    y_whole, y_tiled = whole.reconstruct_picture(x), tiled.reconstruct_picture(x)
    assert np.abs(y_whole - y_tiled).max() < TILED_TOLERANCE


def test_tiles_blend_without_seams():
    """A graph that sees its tile's edge (a per-tile mean) is still continuous across tiles: the
    feathered weights leave no step at a tile border larger than the picture's own steps."""
    def run(piece: np.ndarray) -> np.ndarray:  # (1, 1, H, W) -> same, shifted by the tile's own mean
        return piece + piece.mean()

    x = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (256, 1))[None]
    y = run_tiled(run, x, scale_in=8, scale_out=8, out_channels=1, tile=6)
    steps = np.abs(np.diff(y[0], axis=1))
    assert steps.max() < 0.05, steps.max()  # the ramp's own step is 1/255; a hard seam would be ~0.1


def test_sample_size_and_refusals(maps, bundle_dir):
    b = load_bundle(maps)
    s = b.sample(3, seed=0, size=(20, 30))
    assert s.shape == (3, 3, 20, 30)
    assert b.sample(1, seed=0).shape == (1, 3, 32, 32)  # the training crop
    with pytest.raises(UsageError):
        load_bundle(bundle_dir).sample(2, size=(32, 32))


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros((1, 3, 4, 4), np.float32), "shape (N, 4, h, w)"),
    (np.zeros((4, 4), np.float32), "shape (N, 4, h, w)"),
    (np.full((1, 4, 2, 2), np.nan, np.float32), "NaN"),
    (np.full((1, 4, 2, 2), np.inf, np.float32), "NaN or infinite"),
])
def test_decode_refuses_bad_maps(maps, bad, fragment):
    with pytest.raises(AetoolError, match="decode:.*") as e:
        load_bundle(maps).decode(bad)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_encode_refuses_sizes_not_multiples(maps):
    with pytest.raises(AetoolError, match="multiples of 8"):
        load_bundle(maps).encode(np.zeros((1, 3, 12, 16), np.float32))


def test_commands_without_torch(maps, pictures, tmp_path, no_torch):
    """Every picture command on a map bundle, torch absent, non-square pictures, sizes kept."""
    from PIL import Image

    ws = tmp_path
    b = ["--bundle", str(maps)]
    out = run_cli("reconstruct", str(pictures / "wide.png"), "-o", "back.png", *b, "--json", cwd=ws, env=no_torch)
    report = json.loads(out.stdout)
    assert Image.open(ws / "back.png").size == (100, 60)
    row = report["images"][0]
    assert row["psnr_db"] > 0 and 0 < row["ssim"] <= 1 and row["sse_per_pixel"] > 0
    many = [str(pictures / n) for n in ("wide.png", "tall.jpg", "tiny.png")]
    run_cli("reconstruct", *many, "-o", "back/", *b, cwd=ws, env=no_torch)
    assert Image.open(ws / "back" / "tall.png").size == (41, 75)
    assert Image.open(ws / "back" / "tiny.png").size == (5, 3)
    usage_error(run_cli("reconstruct", *many, "-o", "one.png", *b, cwd=ws, env=no_torch, check=False), "-o DIR/")
    # encode: one size -> one array; any sizes -> a folder of maps; decode reads both back
    run_cli("encode", str(pictures / "wide.png"), str(pictures / "wide.png"), "-o", "m.npy", *b, cwd=ws, env=no_torch)
    assert np.load(ws / "m.npy").shape == (2, 4, 8, 13)
    assert (ws / "m.paths.txt").read_text().count("\n") == 2
    usage_error(run_cli("encode", *many, "-o", "m2.npy", *b, cwd=ws, env=no_torch, check=False), "-o DIR/")
    run_cli("encode", *many, "-o", "maps/", *b, cwd=ws, env=no_torch)
    assert np.load(ws / "maps" / "1-tall.npy").shape == (4, 10, 6)
    run_cli("decode", "maps/1-tall.npy", "-o", "tall.png", *b, cwd=ws, env=no_torch)
    assert Image.open(ws / "tall.png").size == (48, 80)  # the padded size
    run_cli("decode", "m.npy", "-o", "dec/", *b, cwd=ws, env=no_torch)
    assert Image.open(ws / "dec" / "1.png").size == (104, 64)
    # interpolate: both centre-cropped to the common size (75 x 41 and 60 x 100 -> 60 x 41)
    run_cli("interpolate", str(pictures / "wide.png"), str(pictures / "tall.jpg"), "-o", "walk.gif", "--steps", "3",
            *b, cwd=ws, env=no_torch)
    assert Image.open(ws / "walk.gif").size == (41, 60)
    run_cli("sample", "-n", "4", "--size", "40x24", "--ncols", "2", "-o", "s.png", *b, cwd=ws, env=no_torch)
    assert Image.open(ws / "s.png").size == (2 * 42 + 2, 2 * 26 + 2)
    info = run_cli("info", str(maps), cwd=ws, env=no_torch).stdout
    assert "f=8, d=4: 0.02083 values per pixel value, 48x fewer" in info


def test_hostile_maps_one_line(maps, tmp_path, no_torch):
    ws = tmp_path
    b = ["--bundle", str(maps)]
    np.save(ws / "wrong_d.npy", np.zeros((1, 3, 4, 4), np.float32))
    bad = np.zeros((1, 4, 4, 4), np.float32)
    bad[0, 1, 2, 3] = np.nan
    np.save(ws / "nan.npy", bad)
    for name, fragment in (("wrong_d.npy", "expected latent maps of shape"), ("nan.npy", "NaN")):
        proc = run_cli("decode", name, *b, cwd=ws, env=no_torch, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: ") and fragment in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    proc = run_cli("decode", "x.csv", *b, cwd=ws, env=no_torch, check=False)
    usage_error(proc, ".npy")
    # a vector bundle refuses --size as a usage error
    usage_error(run_cli("sample", "--size", "64", cwd=ws, env=no_torch, check=False), "--size")
    usage_error(run_cli("sample", "--size", "0x3", *b, cwd=ws, env=no_torch, check=False), "--size")


def test_over_40_megapixels_refused(maps, tmp_path):
    """The input limit of image_input holds for map bundles: one line, before decoding the pixels."""
    from PIL import Image

    path = tmp_path / "huge.png"
    Image.new("L", (8000, 5100)).save(path)  # 40.8 megapixels, a small file
    proc = run_cli("reconstruct", str(path), "-o", "out.png", "--bundle", str(maps), cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "megapixels" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_score_and_calibrate(maps, tmp_path, no_torch):
    """Pictures of many sizes get one score each under one conformal threshold."""
    normal = tmp_path / "normal"
    normal.mkdir()
    for i in range(24):
        save_photo(normal / f"p{i:02d}.png", 30 + 3 * i, 70 - i, seed=10 + i)
    run_cli("calibrate", "--bundle", str(maps), "--data", str(normal), "--fpr", "0.2", "--out", "cal",
            cwd=tmp_path, env=no_torch)
    noise = tmp_path / "noise.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)).save(noise)
    proc = run_cli("score", str(normal / "p00.png"), str(noise), "--bundle", "cal", "--json", cwd=tmp_path, env=no_torch)
    rows = json.loads(proc.stdout)["images"]
    assert len(rows) == 2 and all(r["score"] is not None for r in rows)
    assert rows[1]["score"] > rows[0]["score"]  # white noise is far from the smooth pictures


def test_bench_megapixels(maps, tmp_path):
    from aetool.bench import format_table, run_bench

    report = run_bench(load_bundle(maps), max_seconds=0.01, quiet=True, sizes=((64, 48),))
    assert {r["op"] for r in report["results"]} == {"encode", "decode", "roundtrip"}
    assert all(r["megapixels_per_s"] > 0 and (r["height"], r["width"]) == (64, 48) for r in report["results"])
    assert "MP/s" in format_table(report)


def test_vector_bundle_unchanged(bundle_dir):
    """A code vector bundle still loads as one, takes its one size, and refuses pictures of others."""
    b = load_bundle(bundle_dir)
    assert not b.is_map
    x = np.random.default_rng(0).random((2, *b.image_shape), dtype=np.float32)
    assert b.encode(x).shape == (2, b.d, 1, 1)
    assert b.reconstruct_picture(x[0]).shape == b.image_shape
    with pytest.raises(AetoolError):
        b.encode(np.zeros((1, 1, 32, 32), np.float32))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak from /proc/self/status")
def test_twelve_megapixels_within_two_gigabytes(tmp_path):
    """A 4000 x 3000 photograph through a network the size of the issue's sketch: reconstructed at its
    own size, in tiles, with the peak resident memory of the whole command under 2 GB (measured
    here at about 0.77 GB and 17 s on 2 shared cores, SSIM and the PNG included; a 38-megapixel one,
    near the 40-megapixel input limit, at 1.75 GB and 60 s)."""
    from mapbundles import make_deep_map_bundle

    from PIL import Image

    deep = make_deep_map_bundle(tmp_path / "deep")
    save_photo(tmp_path / "big.jpg", 3000, 4000)
    # the peak of this process's own memory (VmHWM): ru_maxrss would be pytest's, carried across exec
    script = ("import runpy, sys; sys.argv = ['aetool'] + sys.argv[1:]\n"
              "try:\n    runpy.run_module('aetool', run_name='__main__')\nexcept SystemExit:\n    pass\n"
              "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
              "print('maxrss_kb', hwm, file=sys.stderr)\n")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", script, "reconstruct", "big.jpg", "-o", "back.png", "--bundle", str(deep)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    peak_kb = int(proc.stderr.split("maxrss_kb")[1].split()[0])
    assert peak_kb < 2 * 1024 * 1024, peak_kb
    assert Image.open(tmp_path / "back.png").size == (4000, 3000)


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("L", 1)])
def test_own_size_bytes_read_without_floats_are_the_same(tmp_path, mode, channels):
    """own_size_uint8 keeps 8-bit RGB and grey bytes as they are (no float copies of a photograph):
    exactly what the float path gives, which rounds v / 255 * 255 back to v."""
    from PIL import Image

    from aetool.image_input import _planes, own_size_uint8
    from aetool.image_output import to_uint8

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (37, 53, 3) if mode == "RGB" else (37, 53), dtype=np.uint8)
    path = tmp_path / "p.png"
    Image.fromarray(a).save(path)
    np.testing.assert_array_equal(own_size_uint8(path, channels), to_uint8(_planes(Image.open(path), path, channels)))


# ---------------------------------------------------------------- where is the defect (anomaly maps)
@pytest.fixture(scope="module")
def calibrated_maps(tmp_path_factory) -> tuple[Path, Path]:
    """Block PCA (f=8, d=8) fitted on 16 smooth pictures, calibrated on 24 others at 20 %: a map
    bundle that reconstructs smooth pictures well, so that a scratch is what it gets wrong."""
    ws = tmp_path_factory.mktemp("anomaly")
    for folder, n, seed in (("train", 16, 200), ("normal", 24, 10)):
        (ws / folder).mkdir()
        for i in range(n):
            save_photo(ws / folder / f"p{i:02d}.png", 40 + 3 * i, 72 - i, seed=seed + i)
    run_cli("train", "--data", "train", "--arch", "pca", "--factor", "8", "--d", "8", "--quiet", "--out", "pca", cwd=ws)
    run_cli("export", "pca", "--out", "b", "--fpr", "0", "--quiet", cwd=ws)
    run_cli("calibrate", "--bundle", "b", "--data", "normal", "--fpr", "0.2", "--out", "cal", cwd=ws)
    return ws / "cal", ws


def _with_scratch(tmp_path: Path, h: int, w: int) -> tuple[Path, Path, np.ndarray]:
    """A smooth picture of an odd size, and the same with a bright scratch; the scratch's mask."""
    from PIL import Image

    save_photo(tmp_path / "clean.png", h, w, seed=99)
    x = np.asarray(Image.open(tmp_path / "clean.png").convert("RGB")).copy()
    mask = np.zeros((h, w), bool)
    rows = np.arange(12, 26)
    mask[rows, rows + 10] = mask[rows, rows + 11] = True
    x[mask] = [255, 0, 255]
    Image.fromarray(x).save(tmp_path / "scratched.png")
    return tmp_path / "clean.png", tmp_path / "scratched.png", mask


def test_anomaly_maps_show_where(calibrated_maps, tmp_path, no_torch):
    """A planted scratch scores above the same picture without it, and its map, of the picture's own
    odd size, peaks inside the scratch; --maps writes .npy and heat .png named after each picture,
    --json lists them, and the CSV keeps one row a picture with its score."""
    from PIL import Image

    cal, _ = calibrated_maps
    meta = json.loads((cal / "latent.json").read_text())["anomaly"]
    assert meta["pixel_threshold"] > 0 and meta["rule"] == "map" and "appearance" in meta
    clean, scratched, mask = _with_scratch(tmp_path, 57, 83)
    proc = run_cli("score", str(clean), str(scratched), "--bundle", str(cal), "--maps", "m", "--csv", "s.csv",
                   "--json", cwd=tmp_path, env=no_torch)
    report = json.loads(proc.stdout)
    rows = report["images"]
    assert rows[1]["score"] > rows[0]["score"] and report["maps"] == "m"
    amaps = [np.load(tmp_path / r["map"]) for r in rows]
    assert all(a.shape == (57, 83) and a.dtype == np.float32 for a in amaps)
    assert mask[np.unravel_index(np.argmax(amaps[1]), mask.shape)] or \
        np.argwhere(mask).min(0)[0] - 4 <= np.unravel_index(np.argmax(amaps[1]), mask.shape)[0]  # in or at it
    peak = np.unravel_index(np.argmax(amaps[1]), mask.shape)
    assert np.min(np.abs(np.argwhere(mask) - np.array(peak)).sum(1)) <= 2  # at the scratch, within 2 px
    assert amaps[1][mask].mean() > 3 * amaps[0][mask].mean()
    assert [p.name for p in sorted((tmp_path / "m").iterdir())] == ["0-clean.npy", "0-clean.png", "1-scratched.npy",
                                                                     "1-scratched.png", "maps.json"]
    assert Image.open(tmp_path / rows[1]["heatmap"]).size == (83, 57)
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "path,sse,nll,score,anomalous,map,heatmap" and len(lines) == 3
    # again over its own earlier output: replaced whole
    run_cli("score", str(clean), "--bundle", str(cal), "--maps", "m", "--quiet", cwd=tmp_path, env=no_torch)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["0-clean.npy", "0-clean.png", "maps.json"]


def test_anomaly_figure_of_a_map_bundle(calibrated_maps, tmp_path, no_torch):
    from PIL import Image

    cal, _ = calibrated_maps
    _, scratched, _ = _with_scratch(tmp_path, 40, 64)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)).save(noise)
    run_cli("score", str(scratched), str(noise), "--bundle", str(cal), "--figure", "why.png", cwd=tmp_path,
            env=no_torch)
    assert Image.open(tmp_path / "why.png").size[0] > 0


def test_anomaly_maps_refuse_what_they_cannot_do(calibrated_maps, bundle_dir, tmp_path):
    """A maps folder of the user's own files is never replaced; a code-vector bundle has no map; nor
    may the maps go inside an input folder; nothing is written on a refusal."""
    from test_hostile import one_line_error

    cal, _ = calibrated_maps
    clean, _, _ = _with_scratch(tmp_path, 40, 48)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = run_cli("score", str(clean), "--bundle", str(cal), "--maps", "mine", cwd=tmp_path, check=False)
    one_line_error(proc, "did not write")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    usage_error(run_cli("score", str(clean), "--bundle", str(bundle_dir), "--maps", "m2", cwd=tmp_path, check=False),
                "--maps")
    usage_error(run_cli("score", str(tmp_path), "--bundle", str(cal), "--maps", str(tmp_path / "inside"),
                        cwd=tmp_path, check=False), "--maps")
    assert not (tmp_path / "m2").exists() and not (tmp_path / "inside").exists()
    # a colour picture through a grey bundle: read as the bundle reads it, one map of its size
    grey = make_map_bundle(tmp_path / "grey", channels=1)
    run_cli("score", str(clean), "--bundle", str(grey), "--maps", "m3", "--quiet", cwd=tmp_path)
    assert np.load(tmp_path / "m3" / "0-clean.npy").shape == (40, 48)


def test_appearance_model_finds_what_a_texture_lacks():
    """A smooth hole in a stochastic texture, which a model that cannot reconstruct the texture
    reconstructs better than the texture around it: the appearance model's map peaks inside it, and
    the picture's score is above the same picture without it."""
    from aetool.anomaly_maps import AppearanceModel, image_score

    rng = np.random.default_rng(0)

    def texture(h: int, w: int) -> np.ndarray:
        return np.clip(0.5 + 0.2 * rng.standard_normal((1, h, w)), 0, 1).astype(np.float32)

    model = AppearanceModel(size=256).fit([texture(40 + i, 50) for i in range(6)])
    clean = texture(45, 61)
    holed = clean.copy()
    yy, xx = np.mgrid[:45, :61]
    hole = (yy - 20) ** 2 + (xx - 35) ** 2 < 8**2
    holed[0][hole] = 0.5  # the texture's mean level, without its detail
    before, after = model.distance(clean), model.distance(holed)
    assert after.shape == (45, 61) and after.dtype == np.float32
    assert hole[np.unravel_index(np.argmax(after), hole.shape)]
    assert after[hole].mean() > 3 * after[~hole].mean()
    assert image_score(after) > 2 * image_score(before)
    # a picture fitted on is not its own evidence: without its neighbourhoods it is further away
    assert model.distance(texture(40, 50), exclude=0).mean() > 0


def test_calibration_stores_the_appearance_model(calibrated_maps):
    """calibrate fits the appearance model on the standardisation part and stores it in latent.json:
    statistics of the bundle's channels, a whitening, a bank of normal neighbourhoods."""
    from aetool.anomaly_maps import BANDS, STAT_SIGMAS
    from aetool.bundle import load_bundle

    cal, _ = calibrated_maps
    app = load_bundle(cal, device="cpu").meta.anomaly.appearance
    dim = len(STAT_SIGMAS) * (3 + len(BANDS))
    assert app.sigmas == STAT_SIGMAS and app.bands == BANDS
    assert app.mean.shape == (dim,) and app.whiten.shape == (dim, dim) and app.bank.shape[1] == dim
    assert 1 <= len(app.bank) <= 4096 and np.all(np.isfinite(app.bank))
    # info --json gives the model's settings and sizes, not its numbers
    shown = json.loads(run_cli("info", str(cal), "--json", cwd=cal.parent).stdout)["anomaly"]["appearance"]
    assert shown == {"sigmas": list(STAT_SIGMAS), "bands": list(BANDS), "statistics": dim, "neighbourhoods": len(app.bank)}


def _appearance(key: str, value):
    def tamper(meta: dict) -> None:
        meta["anomaly"]["appearance"][key] = value
    return tamper


APPEARANCE_TAMPERED = {
    "nan-in-bank": (lambda m: m["anomaly"]["appearance"]["bank"][0].__setitem__(0, float("nan")), "finite numbers"),
    "whiten-upper": (lambda m: m["anomaly"]["appearance"]["whiten"][0].__setitem__(1, 1.0), "lower triangular"),
    "grey-model": (lambda m: m["anomaly"]["appearance"].update(
        mean=[0.0] * 8, whiten=np.eye(8).tolist(), bank=[[0.0] * 8]), "fitted on 1-channel pictures"),
    "bank-a-word": (_appearance("bank", "many"), "bad parameters"),
    "bank-ragged": (_appearance("bank", [[0.0] * 16, [0.0]]), "bad parameters"),
    "sigmas-missing": (lambda m: m["anomaly"]["appearance"].pop("sigmas"), "lacks 'sigmas'"),
    "sigmas-negative": (_appearance("sigmas", [-2.0, 6.0]), "'sigmas' must be"),
}


@pytest.mark.parametrize("case", sorted(APPEARANCE_TAMPERED))
def test_tampered_appearance_model_is_one_line(calibrated_maps, tmp_path, case):
    import shutil

    from test_hostile import one_line_error

    cal, _ = calibrated_maps
    bundle = tmp_path / "b"
    shutil.copytree(cal, bundle)
    meta = json.loads((bundle / "latent.json").read_text())
    change, fragment = APPEARANCE_TAMPERED[case]
    change(meta)
    (bundle / "latent.json").write_text(json.dumps(meta))
    save_photo(tmp_path / "p.png", 40, 48, seed=1)
    one_line_error(run_cli("score", "p.png", "--bundle", str(bundle), cwd=tmp_path, check=False), fragment)

"""Every runtime command run as a user would, its output files opened and checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from aetool.runtime import cuda_unusable_reason
from conftest import run_cli, usage_error

pytestmark = pytest.mark.slow


def test_reconstruct_files(workspace, digit_pngs, tmp_path):
    out = tmp_path / "recon.png"
    proc = run_cli("reconstruct", *map(str, digit_pngs), "-o", str(out), "--scale", "3", cwd=workspace)
    assert "bundle" in proc.stderr and "ran on cpu" in proc.stderr
    assert "mean SSE per image" in proc.stdout
    sse = [float(line.rsplit(" ", 1)[1]) for line in proc.stdout.splitlines() if ": SSE " in line]
    assert len(sse) == 2 and all(np.isfinite(sse)) and all(s > 0 for s in sse)
    im = Image.open(out)
    assert im.format == "PNG"
    # 2 columns of 28 px + padding; two grids stacked: 2 * (28 + 2*2) + gap 4, times scale 3
    assert im.size == (3 * (2 * 28 + 3 * 2), 3 * (2 * (28 + 2 * 2) + 4))


def test_reconstruct_mnist_test_reports_mean_sse(workspace, tmp_path):
    out = tmp_path / "r.png"
    proc = run_cli("reconstruct", "--mnist-test", "36", "-o", str(out), cwd=workspace)
    lines = [line for line in proc.stdout.splitlines() if ": SSE " in line]
    assert len(lines) == 36
    mean = float(proc.stdout.split("mean SSE per image ")[1].split()[0])
    assert mean == pytest.approx(np.mean([float(line.rsplit(" ", 1)[1]) for line in lines]), abs=2e-3)
    a = np.asarray(Image.open(out))
    assert a.dtype == np.uint8 and a.shape == (4 * (2 * (3 * 28 + 4 * 2) + 4), 4 * (12 * 28 + 13 * 2))
    assert a.max() > 200 and a.min() == 0


def test_interpolate_gif_and_strip(workspace, digit_pngs, tmp_path):
    gif = tmp_path / "walk.gif"
    run_cli("interpolate", *map(str, digit_pngs), "-o", str(gif), "--steps", "5", "--no-bounce", "--fps", "10", cwd=workspace)
    im = Image.open(gif)
    assert im.format == "GIF" and im.n_frames == 5 and im.size == (112, 112)
    assert im.info["duration"] == 100
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("L"), dtype=np.float32))
    assert not np.array_equal(frames[0], frames[-1])  # the walk moves

    bounce = tmp_path / "bounce.gif"
    run_cli("interpolate", *map(str, digit_pngs), "-o", str(bounce), "--steps", "5", "--bounce", cwd=workspace)
    assert Image.open(bounce).n_frames == 8

    strip = tmp_path / "walk.png"
    run_cli("interpolate", *map(str, digit_pngs), "-o", str(strip), "--steps", "6", "--scale", "1", cwd=workspace)
    assert Image.open(strip).size == (6 * 28 + 7 * 2, 28 + 2 * 2)


def test_interpolation_endpoints_are_the_reconstructions(bundle_dir, digit_pngs):
    from aetool import load_bundle
    from aetool.image_input import load_images

    b = load_bundle(bundle_dir, device="cpu")
    x = load_images(digit_pngs)
    frames = b.interpolate(x[0], x[1], steps=4)
    np.testing.assert_allclose(frames[[0, -1]], b.reconstruct(x), atol=1e-5)


def test_bound_round_trip_is_encode_then_decode(bundle_dir):
    import dataclasses

    from aetool import load_bundle
    from aetool.mnist import mnist_test_head
    from aetool.errors import AetoolError

    b = load_bundle(bundle_dir, device="cpu")
    x = mnist_test_head(20).images
    # the CUDA path's I/O binding, run here on the CPU provider: same numbers as two plain runs
    np.testing.assert_allclose(b.roundtrip_bound(x), b.decode(b.encode(x)), atol=1e-6)
    b = dataclasses.replace(b, batch_size=7)  # chunks of 7, 7, 6
    np.testing.assert_allclose(b.reconstruct(x), b.roundtrip_bound(x), atol=1e-6)
    assert b.reconstruct(x[:0]).shape == (0, 1, 28, 28)
    with pytest.raises(AetoolError, match=r"reconstruct: expected images of shape \(N, 1, 28, 28\), got \(20, 28, 28\)"):
        b.reconstruct(x[:, 0])


def test_large_cpu_batches_run_in_slices_with_the_same_numbers(bundle_dir):
    import dataclasses

    from aetool import load_bundle
    from aetool.bundle_format import DECODER, ENCODER
    from aetool.mnist import mnist_test_head

    x = mnist_test_head(37).images
    one = load_bundle(bundle_dir, device="cpu", threads=1)
    z = one.encode(x)
    images = one.decode(z)
    assert one._single == {}  # one thread: never sliced
    # three workers over blocks of 10: slices of 4, 4, 2 per block, in order
    b = dataclasses.replace(load_bundle(bundle_dir, device="cpu", threads=3), batch_size=10)
    np.testing.assert_allclose(b.encode(x), z, atol=1e-6)
    np.testing.assert_allclose(b.decode(z), images, atol=1e-6)
    np.testing.assert_allclose(b.reconstruct(x), images, atol=1e-6)
    assert set(b._single) == {ENCODER, DECODER}
    small = load_bundle(bundle_dir, device="cpu", threads=3)
    np.testing.assert_allclose(small.decode(z[:5]), images[:5], atol=1e-6)  # under 2 images a core: not sliced
    assert small._single == {}


def test_cpu_calls_are_cut_to_cache_sized_slices_with_the_same_numbers(bundle_dir, monkeypatch):
    import aetool.bundle
    from aetool import load_bundle
    from aetool.mnist import mnist_test_head

    x = mnist_test_head(37).images
    whole = load_bundle(bundle_dir, device="cpu", threads=1)
    assert whole.cpu_slice == min(whole.batch_size, aetool.bundle.CPU_SLICE_VALUES // 784)
    z, images = whole.encode(x), whole.decode(whole.encode(x))
    monkeypatch.setattr(aetool.bundle, "CPU_SLICE_VALUES", 3 * 784 + 5)  # at most 3 pictures a call
    for threads in (1, 2):  # one session in calls of 3; two workers taking calls of 3 in turn
        b = load_bundle(bundle_dir, device="cpu", threads=threads)
        assert b.cpu_slice == 3
        np.testing.assert_allclose(b.encode(x), z, atol=1e-6)
        np.testing.assert_allclose(b.reconstruct(x), images, atol=1e-6)
    monkeypatch.setattr(aetool.bundle, "CPU_SLICE_VALUES", 10)  # under one picture: still one a call
    assert load_bundle(bundle_dir, device="cpu").cpu_slice == 1


def test_sample_grid_is_seeded(workspace, tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    run_cli("sample", "-n", "64", "--seed", "3", "-o", str(a), "--scale", "2", cwd=workspace)
    run_cli("sample", "-n", "64", "--seed", "3", "-o", str(b), "--scale", "2", cwd=workspace)
    run_cli("sample", "-n", "64", "--seed", "4", "-o", str(c), "--scale", "2", cwd=workspace)
    assert Image.open(a).size == (2 * (8 * 28 + 9 * 2),) * 2
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()


def test_sample_draws_from_the_mixture_by_default_and_the_lecture_diagonal_on_request(workspace, bundle_dir, tmp_path):
    from aetool import load_bundle

    meta = json.loads((bundle_dir / "latent.json").read_text())
    assert meta["default_density"] == "gaussian_mixture"
    assert set(meta["densities"]) == {"gaussian_mixture", "diagonal_gaussian"}
    run_dir = workspace / "models" / "cnn-d4"
    assert meta["densities"]["diagonal_gaussian"] == json.loads((run_dir / "density.json").read_text())
    assert set(meta["density_test_log_likelihood_per_dim"]) == {"gaussian_mixture", "diagonal_gaussian"}
    out = {}
    for density in ("mixture", "diagonal"):
        out[density] = tmp_path / f"{density}.png"
        proc = run_cli("sample", "-n", "9", "--seed", "1", "--density", density, "-o", str(out[density]), cwd=workspace)
        assert f"from the {density}" in proc.stdout.replace("gaussian_mixture", "mixture").replace("diagonal_gaussian", "diagonal")
    default = tmp_path / "default.png"
    run_cli("sample", "-n", "9", "--seed", "1", "-o", str(default), cwd=workspace)
    assert default.read_bytes() == out["mixture"].read_bytes() != out["diagonal"].read_bytes()
    b = load_bundle(bundle_dir, device="cpu")
    z = b.density_named("diagonal").sample(9, rng=1)
    np.testing.assert_allclose(b.sample(9, seed=1, density="diagonal"), b.decode(z), atol=1e-6)
    np.testing.assert_array_equal(b.sample(9, seed=1, density=b.density_named("diagonal")), b.sample(9, seed=1, density="diagonal"))
    proc = run_cli("sample", "--density", "flow", "-o", str(tmp_path / "x.png"), cwd=workspace, check=False)
    usage_error(proc, "has no such density (it has: diagonal, mixture)")
    assert not (tmp_path / "x.png").exists()
    assert "test log-likelihood per latent dim" in run_cli("info", cwd=workspace).stdout


def test_bench_json(workspace):
    proc = run_cli("bench", "--json", "--batch-sizes", "1,8", "--seconds", "0.05", "--quiet", cwd=workspace)
    report = json.loads(proc.stdout)
    rows = report["results"]
    assert {(r["engine"], r["op"], r["batch"]) for r in rows} >= {("onnxruntime", op, b) for op in ("encode", "decode", "roundtrip") for b in (1, 8)}
    assert any(r["engine"] == "torch" for r in rows)  # torch is installed in the test environment
    assert report["torch_weights"] == "bundle"
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["images_per_s"] > 0


def test_info_and_python_api(workspace, bundle_dir):
    proc = run_cli("info", str(bundle_dir), cwd=workspace.parent)
    assert f"{bundle_dir}: cnn, d=4, fp32, image 1x28x28" in proc.stdout
    info = json.loads(run_cli("info", "cnn-d4", "--json", cwd=workspace).stdout)
    assert info["name"] == "cnn-d4" and info["d"] == 4 and info["training"]["epochs"] == 1
    assert info["densities"] == ["diagonal_gaussian", "gaussian_mixture"]
    from aetool import load_bundle

    b = load_bundle(bundle_dir)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    z = b.encode(x)
    assert z.shape == (3, 4, 1, 1)
    assert b.decode(z).shape == (3, 1, 28, 28)
    assert b.decode(z.reshape(3, 4)).shape == (3, 1, 28, 28)


def test_runtime_commands_never_import_torch(workspace, digit_pngs, tmp_path):
    """With torch made unimportable, every runtime command still works."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None  # any import of torch now fails\n")
    env = {"PYTHONPATH": str(blocker)}
    out = tmp_path / "o"
    out.mkdir()
    run_cli("sample", "-n", "4", "-o", str(out / "s.png"), cwd=workspace, env=env)
    run_cli("reconstruct", *map(str, digit_pngs), "-o", str(out / "r.png"), cwd=workspace, env=env)
    run_cli("reconstruct", "--mnist-test", "3", "-o", str(out / "r3.png"), cwd=workspace, env=env)
    run_cli("interpolate", *map(str, digit_pngs), "-o", str(out / "w.gif"), "--steps", "3", cwd=workspace, env=env)
    run_cli("info", cwd=workspace, env=env)
    run_cli("list", cwd=workspace, env=env)
    evaluated = json.loads(run_cli("evaluate", "--images", "50", "--json", cwd=workspace, env=env).stdout)
    assert evaluated["images"] == 50 and 0 <= evaluated["identity_kept"] <= 1 and evaluated["test_sse_per_image"] > 0
    report = json.loads(run_cli("bench", "--json", "--batch-sizes", "1", "--seconds", "0.02", cwd=workspace, env=env).stdout)
    assert {r["engine"] for r in report["results"]} == {"onnxruntime"}
    # the blocker really blocks: training needs torch and must fail
    proc = run_cli("train", "--d", "2", "--limit", "10", cwd=tmp_path, env=env, check=False)
    assert proc.returncode != 0


def test_default_bundle_is_newest_in_export_else_shipped(workspace, tmp_path):
    proc = run_cli("info", cwd=workspace)
    assert "export/cnn-d4: cnn, d=4" in proc.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("info", cwd=empty)
    assert "pretrained/cnn-d16: cnn, d=16" in proc.stdout
    # the shipped d=16 run's start trained on moved digits, and its chain says so
    assert "started from cnn-d16-r7 (162 epochs, shifted by up to 1 pixel): 174 epochs in all" in proc.stdout


def test_device_cuda_is_clear_when_unusable(workspace):
    proc = run_cli("sample", "-n", "2", "-o", "x.png", "--device", "cuda", cwd=workspace, check=False)
    if cuda_unusable_reason() is None:
        assert proc.returncode == 0 and "ran on cuda" in proc.stderr
    else:
        assert proc.returncode == 1
        assert proc.stderr.startswith("error: --device cuda:") and len(proc.stderr.strip().splitlines()) == 1
        auto = run_cli("sample", "-n", "2", "-o", "x.png", "--device", "auto", cwd=workspace)
        # auto falls back to the CPU quietly: the bundle line is all there is on stderr
        assert auto.stderr.strip().splitlines() == [line for line in auto.stderr.strip().splitlines() if line.startswith("bundle ")]
        assert "ran on cpu" in auto.stderr


def test_list_shows_workspace_then_shipped_bundles(workspace):
    rows = json.loads(run_cli("list", "--json", cwd=workspace).stdout)
    assert rows[0]["where"] == "workspace" and rows[0]["name"] == "cnn-d4" and rows[0]["d"] == 4
    shipped = {r["name"]: r for r in rows if r["where"] == "shipped"}
    assert {"cnn-d2", "cnn-d16", "cnn-d16-int8", "pca-d32"} <= set(shipped)
    assert shipped["cnn-d16-int8"]["precision"] == "int8" and shipped["cnn-d16"]["bytes"] > 1e6
    table = run_cli("list", cwd=workspace).stdout.splitlines()
    assert table[0].split()[:4] == ["name", "where", "family", "d"] and len(table) == len(rows) + 1


def test_runtime_commands_speak_json(workspace, digit_pngs, tmp_path):
    report = json.loads(run_cli("reconstruct", *map(str, digit_pngs), "-o", str(tmp_path / "r.png"), "--json",
                                cwd=workspace).stdout)
    assert len(report["images"]) == 2 and report["mean_sse_per_image"] == pytest.approx(
        np.mean([i["sse"] for i in report["images"]]))
    assert report["bundle"].endswith("cnn-d4") and report["provider"] == "cpu"
    report = json.loads(run_cli("sample", "-n", "4", "--seed", "1", "-o", str(tmp_path / "s.png"), "--json",
                                cwd=workspace).stdout)
    assert report["n"] == 4 and report["density"] == "gaussian_mixture" and report["seed"] == 1
    report = json.loads(run_cli("interpolate", *map(str, digit_pngs), "-o", str(tmp_path / "w.gif"), "--steps", "3",
                                "--json", cwd=workspace).stdout)
    assert report["steps"] == 3 and report["animated"] and (tmp_path / "w.gif").is_file()


def test_every_command_shows_examples_and_train_hides_its_advanced_options(tmp_path):
    for command in ("train", "export", "reconstruct", "interpolate", "sample", "bench", "compare", "info", "list",
                    "evaluate", "train-classifier"):
        assert "  Examples:\n    aetool " in run_cli(command, "--help", cwd=tmp_path).stdout, command
    short = run_cli("train", "--help", cwd=tmp_path).stdout
    options = [line for line in short.split("Options:")[1].split("Examples:")[0].splitlines() if line.startswith("  -")]
    assert len(options) <= 13 and "--init-from" not in short
    full = run_cli("train", "--help-all", cwd=tmp_path).stdout
    for option in ("--init-from", "--revive-dead", "--average-last", "--shift", "--holdout", "--stop-after", "--seed"):
        assert option in full

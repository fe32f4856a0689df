"""Anomaly scores and their calibrated threshold: aetool score, aetool calibrate, export's default calibration."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, usage_error

pytestmark = pytest.mark.slow


def test_calibration_on_fresh_held_out_images_meets_its_false_positive_rate():
    """At 1 %, the rate measured on the second half of MNIST's test set is within half a point."""
    from aetool import load_bundle
    from aetool.anomaly import calibrate, combine, heldout_images, parts

    b = load_bundle("pca-d8", device="cpu")
    images, source = heldout_images(b)
    assert len(images) == 10_000 and source == "test images (mnist)"
    cal = calibrate(b, images, 0.01, source)
    assert cal.images == cal.heldout_images == 5_000 and abs(cal.heldout_fpr - 0.01) <= 0.005
    sse, nll = parts(b, images[:5_000])
    assert np.mean(combine(sse, nll, cal) > cal.threshold) == pytest.approx(0.01, abs=0.0005)
    q = [cal.quantiles[k] for k in ("0.5", "0.9", "0.99", "0.999")]
    assert q == sorted(q) and cal.quantiles["0.99"] == pytest.approx(cal.threshold)
    h = cal.histogram  # the calibration scores' shape, for score --figure
    assert sum(h["counts"]) == 5_000 and len(h["edges"]) == len(h["counts"]) + 1
    assert h["edges"][0] == pytest.approx(combine(sse, nll, cal).min())


def test_export_calibrates_and_info_shows_it(workspace, bundle_dir):
    meta = json.loads((bundle_dir / "latent.json").read_text())
    a = meta["anomaly"]
    assert a["fpr"] == 0.01 and a["images"] == 5_000 and a["heldout_images"] == 5_000
    assert np.isfinite(a["threshold"]) and 0 <= a["heldout_fpr"] <= 0.05
    assert "anomaly threshold" in run_cli("info", cwd=workspace).stdout


def test_score_files_csv_json_and_failing_on_an_anomaly(workspace, digit_pngs, tmp_path):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(noise)
    files = [str(digit_pngs[0]), str(noise), str(digit_pngs[1])]
    out = tmp_path / "scores.csv"
    proc = run_cli("score", *files, "--csv", str(out), cwd=workspace)
    assert "flagged (threshold" in proc.stdout
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == files and list(rows[0]) == ["path", "sse", "nll", "score", "anomalous"]
    assert rows[1]["anomalous"] == "True" and float(rows[1]["score"]) > float(rows[0]["score"])
    report = json.loads(run_cli("score", *files, "--json", cwd=workspace).stdout)
    assert report["flagged"] >= 1 and len(report["images"]) == 3 and report["threshold"] is not None
    proc = run_cli("score", *files, "--fail-on-anomaly", "--json", cwd=workspace, check=False)
    assert proc.returncode == 3 and json.loads(proc.stdout)["flagged"] >= 1
    assert run_cli("score", str(digit_pngs[0]), "--fail-on-anomaly", cwd=workspace, check=False).returncode in (0, 3)


def test_calibrate_in_place_keeps_the_graphs_and_refuses_shipped_bundles(ws_copy, tmp_path):
    bundle = ws_copy / "export" / "cnn-d4"
    graphs = {name: (bundle / name).read_bytes() for name in ("encoder.onnx", "decoder.onnx")}
    report = json.loads(run_cli("calibrate", "--bundle", str(bundle), "--fpr", "0.05", "--json", cwd=ws_copy).stdout)
    assert report["fpr"] == 0.05 and json.loads((bundle / "latent.json").read_text())["anomaly"]["fpr"] == 0.05
    assert all((bundle / name).read_bytes() == data for name, data in graphs.items())
    run_cli("sample", "-n", "2", "--bundle", str(bundle), "-o", str(tmp_path / "s.png"), cwd=ws_copy)  # hashes hold
    usage_error(run_cli("calibrate", "--bundle", "pca-d2", cwd=ws_copy, check=False), "ships with aetool")
    run_cli("calibrate", "--bundle", "pca-d2", "--out", str(tmp_path / "pca"), cwd=ws_copy)
    assert json.loads((tmp_path / "pca" / "latent.json").read_text())["anomaly"]["fpr"] == 0.01
    usage_error(run_cli("calibrate", "--bundle", str(bundle), "--fpr", "0.7", cwd=ws_copy, check=False), "'--fpr'")


def test_a_bundle_without_a_threshold_still_scores(ws_copy, digit_pngs):
    bundle = ws_copy / "export" / "cnn-d4"
    meta = json.loads((bundle / "latent.json").read_text())
    meta.pop("anomaly")
    (bundle / "latent.json").write_text(json.dumps(meta))
    proc = run_cli("score", str(digit_pngs[0]), "--bundle", str(bundle), cwd=ws_copy)
    assert "has no threshold" in proc.stderr and proc.stdout.splitlines()[1].split()[-1] == "-"


def test_score_figure_shows_the_histogram_and_the_flagged_images(ws_copy, digit_pngs, tmp_path):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)).save(noise)
    figure = tmp_path / "why.png"
    report = json.loads(run_cli("score", str(digit_pngs[0]), str(noise), "--figure", str(figure), "--json",
                                cwd=ws_copy).stdout)
    assert report["figure"] == str(figure) and report["images"][1]["anomalous"]
    with Image.open(figure) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    assert im.width == 640 and im.height > 300
    red = (a[..., 0] > 180) & (a[..., 1] < 80) & (a[..., 2] < 80)
    grey_bars = (np.abs(a - 170).max(axis=2) <= 2)
    assert red.sum() > 100 and grey_bars.sum() > 500  # the threshold line and the calibration histogram
    # the flagged noise image appears as original | reconstruction | difference tiles of 84 x 84
    assert (np.abs(a[300:, 48:132] - 255).sum(axis=2) > 0).any()
    usage_error(run_cli("score", str(noise), "--figure", str(tmp_path / "why.txt"), cwd=ws_copy, check=False),
                "'--figure'")
    bundle = ws_copy / "export" / "cnn-d4"
    meta = json.loads((bundle / "latent.json").read_text())
    meta.pop("anomaly")
    (bundle / "latent.json").write_text(json.dumps(meta))
    usage_error(run_cli("score", str(noise), "--bundle", str(bundle), "--figure", str(figure), cwd=ws_copy,
                        check=False), "has none")


def test_normal_class_trains_a_one_class_detector(tmp_path):
    proc = run_cli("train", "--normal-class", "3", "--d", "2", "--limit", "150", "--epochs", "1", "--quiet", cwd=tmp_path)
    run = tmp_path / "models" / "cnn-d2-class-3"
    data = json.loads((run / "metrics.json").read_text())["data"]
    assert "done: models/cnn-d2-class-3" in proc.stdout
    assert data["normal_class"] == "3" and data["train_images"] == 150 and data["test_images"] == 1010  # 3s only
    run_cli("export", str(run), "--quiet", cwd=tmp_path)
    meta = json.loads((tmp_path / "export" / "cnn-d2-class-3" / "latent.json").read_text())
    assert meta["anomaly"]["images"] == 505  # calibrated on half of the test set's 3s
    usage_error(run_cli("train", "--normal-class", "12", "--epochs", "1", cwd=tmp_path, check=False),
                "not a label of this data set (labels: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)")
    usage_error(run_cli("train", "--normal-class", "", "--epochs", "1", cwd=tmp_path, check=False), "must name a class")


def test_normal_class_of_a_folder_is_a_sub_folder(tmp_path):
    from aetool.data import write_coloured_digits

    write_coloured_digits(tmp_path / "photos", n=120)
    env = {"AETOOL_CACHE": str(tmp_path / "cache")}
    run_cli("train", "--data", "photos", "--normal-class", "digit-1", "--val-split", "0.3", "--d", "2", "--epochs", "1",
            "--quiet", "--out", "m", cwd=tmp_path, env=env)
    data = json.loads((tmp_path / "m" / "metrics.json").read_text())["data"]
    ones = len(list((tmp_path / "photos" / "digit-1").glob("*.png")))
    assert data["normal_class"] == "digit-1" and data["train_images"] + data["test_images"] == ones
    usage_error(run_cli("train", "--data", "photos", "--normal-class", "cats", "--epochs", "1", "--out", "n",
                        cwd=tmp_path, env=env, check=False), "classes: digit-0, digit-1")


def test_a_too_small_validation_split_exports_without_a_threshold(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("good", "bad"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / "data" / cls / f"{i}.png")
    env = {"AETOOL_CACHE": str(tmp_path / "cache")}
    run_cli("train", "--data", "data", "--normal-class", "good", "--d", "2", "--epochs", "1", "--out", "m", "--quiet",
            cwd=tmp_path, env=env)
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["data"]["test_images"] == 1
    proc = run_cli("export", "m", "--out", "b", cwd=tmp_path, env=env)
    assert "not calibrated for anomaly scores: 1 held-out images, 4 needed" in proc.stdout
    assert "anomaly" not in json.loads((tmp_path / "b" / "latent.json").read_text())
    proc = run_cli("calibrate", "--bundle", "b", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 1 and "at least 4 held-out normal images, got 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_score_streams_a_large_folder_to_csv_and_shows_the_first_thousand(tmp_path):
    from aetool.data import mnist_test_head

    folder = tmp_path / "many"
    folder.mkdir()
    for i, x in enumerate(mnist_test_head(1005).images):
        Image.fromarray((x[0] * 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    out = tmp_path / "s.csv"
    proc = run_cli("score", str(folder), "--csv", str(out), "--bundle", "pca-d8", cwd=tmp_path)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1005 and rows[-1]["path"].endswith("1004.png")
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 + 1000 + 1 and lines[-1] == f"... 5 more in {out}"

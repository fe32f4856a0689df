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

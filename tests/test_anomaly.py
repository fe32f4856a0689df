"""Anomaly scores and their calibrated threshold: aetool score, aetool calibrate, export's default calibration."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, usage_error

pytestmark = pytest.mark.slow


def test_calibration_on_fresh_held_out_images_meets_its_false_positive_rate():
    """At 1 % on MNIST's test set: 1000 images standardise, 4500 set the threshold, and the rate on the
    other 4500 is consistent with at most 1 % (its 95 % interval reaches down to it)."""
    from aetool import load_bundle
    from aetool.anomaly import calibrate, heldout_images

    b = load_bundle("pca-d8", device="cpu")
    images, source = heldout_images(b)
    assert len(images) == 10_000 and source == "test images (mnist)"
    cal = calibrate(b, images, 0.01, source)
    assert (cal.standardisation_images, cal.images, cal.heldout_images) == (1_000, 4_500, 4_500)
    assert cal.method == "conformal" and cal.rank == 4_456  # ceil(4501 * 0.99)
    lo, hi = cal.heldout_interval
    assert lo <= 0.01 and lo <= cal.heldout_fpr <= hi and cal.heldout_flagged == round(cal.heldout_fpr * 4_500)
    q = [cal.quantiles[k] for k in ("0.5", "0.9", "0.99", "0.999")]
    assert q == sorted(q) and q[2] <= cal.threshold <= q[3]
    h = cal.histogram  # the calibration scores' shape, for score --figure
    assert sum(h["counts"]) == 4_500 and len(h["edges"]) == len(h["counts"]) + 1


def test_export_calibrates_and_info_shows_it(workspace, bundle_dir):
    meta = json.loads((bundle_dir / "latent.json").read_text())
    a = meta["anomaly"]
    assert a["fpr"] == 0.01 and a["images"] == 4_500 and a["heldout_images"] == 4_500 and a["rank"] == 4_456
    assert np.isfinite(a["threshold"]) and 0 <= a["heldout_fpr"] <= 0.05 and a["method"] == "conformal"
    lo, hi = a["heldout_interval"]
    assert lo <= a["heldout_fpr"] <= hi
    text = run_cli("info", cwd=workspace).stdout
    assert "rank 4456 of 4500 calibration scores" in text and "on 4500 fresh held-out images (95 % interval" in text
    report = json.loads(run_cli("info", "--json", cwd=workspace).stdout)
    assert report["anomaly"]["heldout_interval"] == [lo, hi] and report["no_threshold"] is None


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
    assert "has no anomaly threshold" in proc.stderr and proc.stdout.splitlines()[1].split()[-1] == "-"
    usage_error(run_cli("score", str(digit_pngs[0]), "--bundle", str(bundle), "--fail-on-anomaly", cwd=ws_copy,
                        check=False), "--fail-on-anomaly needs an anomaly threshold; bundle cnn-d4 has none")


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
    assert meta["anomaly"]["images"] == 404  # of the test set's 1010 3s: 202 standardise, 404 set, 404 check
    usage_error(run_cli("train", "--normal-class", "12", "--epochs", "1", cwd=tmp_path, check=False),
                "not a label of this data set (labels: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)")
    usage_error(run_cli("train", "--normal-class", "", "--epochs", "1", cwd=tmp_path, check=False), "must name a class")


def test_normal_class_of_a_folder_is_a_sub_folder(tmp_path):
    from aetool.coloured_digits import write_coloured_digits

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
    assert "not calibrated for anomaly scores: calibration needs at least 4 held-out normal images, got 1" in proc.stdout
    assert "anomaly" not in json.loads((tmp_path / "b" / "latent.json").read_text())
    proc = run_cli("calibrate", "--bundle", "b", "--data", "data", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == ("error: a 1 % threshold needs at least 164 held-out normal images (99 to set "
                                           "it), and the run's validation images are 1: give --data a folder of more "
                                           "normal images training never saw")


def test_score_streams_a_large_folder_to_csv_and_shows_the_first_thousand(tmp_path):
    from aetool.mnist import mnist_test_head

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


def _squares(folder, n: int, seed: int) -> None:
    """The issue's pictures: 32 x 32 grey, a white 8 x 8 square at a random place on black."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        a = np.zeros((32, 32), np.uint8)
        y, x = rng.integers(0, 25, 2)
        a[y : y + 8, x : x + 8] = 255
        Image.fromarray(a).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """Three 40-picture folders trained and exported as a new user would; plus 200 new pictures."""
    root = tmp_path_factory.mktemp("squares")
    env = {"AETOOL_CACHE": str(root / "cache")}
    exports = []
    for seed in range(3):
        _squares(root / f"imgs{seed}", 40, seed)
        run_cli("train", "--data", f"imgs{seed}", "--d", "4", "--epochs", "1", "--image-size", "32", "--channels", "1",
                "-q", "--out", f"run{seed}", "--seed", str(seed), cwd=root, env=env)
        exports.append(run_cli("export", f"run{seed}", "--out", f"b{seed}", cwd=root, env=env, check=False))
    _squares(root / "new", 200, 100)
    return root, env, exports


def test_export_of_a_small_folder_succeeds_and_stores_no_threshold(squares):
    """4 validation images cannot set a 1 % threshold: export says so in one line and stores none."""
    root, _, exports = squares
    for seed, proc in enumerate(exports):
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        notes = [line for line in proc.stdout.splitlines() if line.startswith("note: anomaly threshold: none")]
        assert len(notes) == 1 and "needs at least 99 calibration images" in notes[0]
        assert "aetool calibrate --data DIR with at least 164 normal images" in notes[0]
        a = json.loads((root / f"b{seed}" / "latent.json").read_text())["anomaly"]
        assert a["threshold"] is None and a["images"] == 1 and a["method"] == "conformal" and "rank" not in a
        assert a["log_sse_std"] >= 1e-3  # a relative floor, not 1e-9


def test_a_bundle_without_a_threshold_is_refused_alike_by_every_verdict(squares, tmp_path):
    root, env, _ = squares
    for option in (["--fail-on-anomaly"], ["--figure", str(tmp_path / "f.png")]):
        proc = run_cli("score", "imgs0", "--bundle", "b0", *option, cwd=root, env=env, check=False)
        usage_error(proc, f"{option[0]} needs an anomaly threshold; bundle b0 has none: a 1 % false-positive rate")
    assert not (tmp_path / "f.png").exists()
    proc = run_cli("score", "imgs0", "--bundle", "b0", "--csv", str(tmp_path / "s.csv"), "--json", cwd=root, env=env)
    report = json.loads(proc.stdout)
    assert report["threshold"] is None and report["flagged"] is None and "nothing is flagged" in proc.stderr
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == 40 and all(r["anomalous"] == "" and r["score"] != "" for r in rows)  # scores, no verdicts
    assert "anomaly threshold: none (a 1 % false-positive rate" in run_cli("info", "b0", cwd=root).stdout
    info = json.loads(run_cli("info", "b0", "--json", cwd=root).stdout)
    assert info["anomaly"]["threshold"] is None and "99 calibration images" in info["no_threshold"]
    from aetool.web import Runtime, build_site

    report = build_site([str(root / "b0"), "cnn-d2"], tmp_path / "site", Runtime(url="https://example.invalid/d/",
                        source="test"), points=10)
    assert [b["anomaly"] for b in report["bundles"]] == [False, False]


def test_calibrate_on_a_folder_of_the_users_own_normal_images(squares, tmp_path):
    root, env, _ = squares
    bundle = tmp_path / "b"
    blocker = tmp_path / "block"  # a runtime command: torch made unimportable
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    proc = run_cli("calibrate", "--bundle", str(root / "b1"), "--out", str(bundle), "--data", "new", "--json",
                   cwd=root, env={**env, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])})
    report = json.loads(proc.stdout)
    assert (report["standardisation_images"], report["images"], report["heldout_images"]) == (40, 99, 61)
    assert report["rank"] == 99 and report["source"] == "200 images of new" and report["threshold"] is not None
    lo, hi = report["heldout_interval"]
    assert lo <= report["heldout_fpr"] <= hi and report["heldout_flagged"] == round(61 * report["heldout_fpr"])
    assert "on 61 fresh held-out images (95 % interval" in run_cli("info", str(bundle), cwd=root).stdout
    proc = run_cli("score", "new", "--bundle", str(bundle), "--fail-on-anomaly", "--json", cwd=root, env=env, check=False)
    assert proc.returncode in (0, 3) and (proc.returncode == 3) == (json.loads(proc.stdout)["flagged"] > 0)
    proc = run_cli("score", "new/000.png", "--bundle", str(bundle), "--figure", str(tmp_path / "f.png"), cwd=root)
    assert (tmp_path / "f.png").is_file()
    # a set too small for the rate: one line, and the bundle's calibration is left as it was
    before = (bundle / "latent.json").read_bytes()
    proc = run_cli("calibrate", "--bundle", str(bundle), "--data", "imgs1", cwd=root, env=env, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: a 1 % threshold needs at least 164 held-out")
    assert "the run's validation images are 4" in proc.stderr and (bundle / "latent.json").read_bytes() == before
    assert "or --fpr 0.5 (the lowest rate these support)" in proc.stderr
    proc = run_cli("calibrate", "--bundle", str(bundle), "--data", "imgs0", "--fpr", "0.01", cwd=root, env=env,
                   check=False)  # another folder: all its 40 pictures, still too few for 1 %
    assert proc.returncode == 1 and "and --data imgs0 holds 40: give --data" in proc.stderr
    assert "or --fpr 0.04 (the lowest rate these support)" in proc.stderr
    # the training folder itself: its validation split (4 images), never its training images
    report = json.loads(run_cli("calibrate", "--bundle", str(bundle), "--data", "imgs1", "--fpr", "0.5", "--json",
                                cwd=root, env=env).stdout)
    assert report["source"] == "validation images (folder)" and report["images"] + report["heldout_images"] == 2


def test_calibrate_reads_no_path_from_a_bundle(squares, tmp_path):
    """latent.json is not hashed: its recorded folder is a hint shown to the user, never walked unasked,
    and its training options pass the schema."""
    root, env, _ = squares
    usage_error(run_cli("calibrate", "--bundle", "b0", cwd=root, env=env, check=False),
                f"bundle b0 was trained on {root / 'imgs0'} (as its latent.json records): give --data DIR")
    usage_error(run_cli("calibrate", "--bundle", "b0", "--data", str(root), cwd=root, env=env, check=False),
                "overlaps")  # a folder holding the training folder holds its training images
    usage_error(run_cli("calibrate", "--bundle", "b0", "--data", "nowhere", cwd=root, env=env, check=False),
                "--data nowhere: not a folder of pictures")
    for change, expected in ((("config", "data", "/usr"), "was trained on /usr"),
                             (("config", "holdout", "x"), "'holdout' must be an integer >= 0, got 'x'"),
                             (("config", "limit", "x"), "'limit' must be an integer >= 1, got 'x'")):
        bundle = tmp_path / change[1]
        bundle.mkdir()
        for f in (root / "b0").iterdir():
            (bundle / f.name).write_bytes(f.read_bytes())
        meta = json.loads((bundle / "latent.json").read_text())
        meta["training"][change[0]][change[1]] = change[2]
        meta["training"]["data"].pop("root") if change[2] == "/usr" else None
        (bundle / "latent.json").write_text(json.dumps(meta))
        proc = run_cli("calibrate", "--bundle", str(bundle), *([] if change[2] == "/usr" else ["--data", "imgs0"]),
                       cwd=root, env=env, check=False)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr and expected in proc.stderr, proc.stderr
        assert len([line for line in proc.stderr.splitlines() if "rror: " in line]) == 1

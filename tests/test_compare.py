"""PCA as a model family, the digit classifier, and `aetool compare` on tiny real models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from aetool.mnist import load_mnist
from aetool.training.pca import fit_pca, reconstruct_numpy
from conftest import run_cli


def test_pca_reaches_the_svd_optimum():
    x = load_mnist("train").images[:2000].reshape(2000, -1).astype(np.float64)
    d = 8
    mean, components = fit_pca(x.reshape(-1, 1, 28, 28), d)
    ours = ((reconstruct_numpy(x.reshape(-1, 1, 28, 28), mean, components).reshape(2000, -1) - x) ** 2).sum()
    # Eckart-Young: the best rank-d fit of the centred data leaves the tail of the singular values
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    assert ours == pytest.approx((s[d:] ** 2).sum(), rel=1e-9)
    np.testing.assert_allclose(components.T @ components, np.eye(d), atol=1e-10)


@pytest.fixture(scope="session")
def zoo(workspace):  # its tests are end to end: marked slow where they use it
    """A PCA bundle and a tiny classifier beside the tiny CNN run."""
    run_cli("train", "--model", "pca", "--d", "4", "--limit", "1000", "--quiet", cwd=workspace)
    run_cli("export", "models/pca-d4", "--quiet", cwd=workspace)
    run_cli("train-classifier", "--limit", "5000", "--epochs", "2", "--quiet", cwd=workspace)
    return workspace


def test_pca_bundle_is_the_numpy_projection(zoo):
    from aetool import load_bundle

    meta = json.loads((zoo / "models" / "pca-d4" / "metrics.json").read_text())
    assert meta["family"] == "pca" and meta["config"]["d"] == 4
    b = load_bundle(zoo / "export" / "pca-d4", device="cpu")
    assert b.family == "pca" and b.d == 4
    train = load_mnist("train").images[:1000]
    mean, components = fit_pca(train, 4)
    x = load_mnist("test").images[:50]
    np.testing.assert_allclose(b.reconstruct(x), reconstruct_numpy(x, mean, components), atol=1e-4)
    z = b.encode(x).reshape(50, 4)
    np.testing.assert_allclose(z, (x.reshape(50, -1) - mean) @ components, atol=1e-4)


def test_runtime_commands_work_on_a_pca_bundle(zoo, tmp_path):
    run_cli("sample", "-n", "9", "--bundle", "pca-d4", "-o", str(tmp_path / "s.png"), cwd=zoo)
    run_cli("reconstruct", "--mnist-test", "5", "--bundle", "pca-d4", "-o", str(tmp_path / "r.png"), cwd=zoo)
    assert Image.open(tmp_path / "s.png").size == (4 * (3 * 28 + 4 * 2),) * 2


def test_classifier_exported_and_scored(zoo):
    from aetool.classify import DigitClassifier

    m = json.loads((zoo / "models" / "digit-classifier" / "metrics.json").read_text())
    clf = DigitClassifier(zoo / "models" / "digit-classifier" / "classifier.onnx", device="cpu")
    test = load_mnist("test")
    acc = float((clf.predict(test.images) == test.labels).mean())
    assert acc == pytest.approx(m["test_accuracy"], abs=1e-3)  # onnxruntime agrees with torch's score
    assert acc > 0.8  # two short epochs on 5000 images already learn digits


def test_compare_writes_figures_and_table(zoo, tmp_path):
    out = tmp_path / "cmp"
    proc = run_cli("compare", "--d", "4", "-o", str(out), "--scale", "1", cwd=zoo)
    assert "| 4 | cnn |" in proc.stdout and "| 4 | pca |" in proc.stdout
    report = json.loads((out / "table.json").read_text())
    rows = {r["family"]: r for r in report["rows"]}
    assert set(rows) == {"cnn", "pca"}
    assert rows["cnn"]["started_from"] == "random" and rows["pca"]["started_from"] == "closed form"
    for r in rows.values():
        assert 0 <= r["identity_kept"] <= 1 and 0 <= r["kept_first_36"] <= 36
        assert r["test_sse_per_image"] > 0 and r["psnr_db"] == pytest.approx(10 * np.log10(784 / r["test_sse_per_image"]))
    # the PCA row's SSE is the training run's own test SSE, computed independently in numpy
    pca_metrics = json.loads((zoo / "models" / "pca-d4" / "metrics.json").read_text())
    assert rows["pca"]["test_sse_per_image"] == pytest.approx(pca_metrics["test_sse_per_image"], rel=1e-4)
    fig = Image.open(out / "recon-d4.png")
    assert fig.size == (12 * 28 + 13 * 2, 3 * (3 * 28 + 4 * 2) + 2 * 8)  # originals, CNN, PCA
    assert (out / "table.md").read_text().startswith("| d | family |")


def test_compare_names_missing_bundles(zoo, tmp_path):
    proc = run_cli("compare", "--d", "3", "-o", str(tmp_path / "c"), cwd=zoo, check=False)
    assert proc.returncode == 1 and "cnn-d3" in proc.stderr and "Traceback" not in proc.stderr


def test_started_from_names_the_start_its_width_revival_and_averaging():
    from types import SimpleNamespace

    from aetool.bundle_format import BundleMeta, GraphInfo, ImageSpec
    from aetool.compare import started_from

    graph = GraphInfo("g.onnx", "in", "out", "0" * 64)

    def bundle(family: str, **config) -> SimpleNamespace:
        return SimpleNamespace(family=family, meta=BundleMeta(
            name="x", family=family, d=2, image=ImageSpec(), encoder=graph, decoder=graph, densities={},
            default_density="none", training={"config": config}))

    widened = bundle("cnn", init_from="models/cnn-d8-r1", nb_channels=48, revive_dead=True)
    assert started_from(widened) == "cnn-d8-r1, 48 channels, revived"
    assert started_from(bundle("cnn", nb_channels=32, revive_dead=False)) == "random"
    averaged = bundle("cnn", init_from="models/cnn-d2", revive_dead=True, average_last=40)
    assert started_from(averaged) == "cnn-d2, revived, mean of last 40 epochs"
    assert started_from(bundle("pca", d=4)) == "closed form"
    moved = bundle("cnn", init_from="models/cnn-d16-r4", nb_channels=64, average_last=7)
    moved.meta.training["started_from"] = [{"run": "cnn-d16-r4", "epochs": 40, "revived": False, "shift": 1}]
    assert started_from(moved) == "cnn-d16-r4 (trained on digits shifted up to 1 px), 64 channels, mean of last 7 epochs"

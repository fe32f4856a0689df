"""The bundle contract's typed parts: preprocessing names, the graphs' shapes, densities, the training record."""

from __future__ import annotations

import pytest

from aetool.bundle_format import PREPROCESSING, ImageSpec, Preprocessing, check_graph_shapes, graph_shapes
from aetool.errors import AetoolError


def test_preprocessing_names_round_trip():
    for name in PREPROCESSING:
        assert Preprocessing.parse(name).name == name
    assert Preprocessing.parse("resize_crop") == Preprocessing.resize("crop") == Preprocessing("resize", "crop")
    assert Preprocessing.parse("mnist_digit").is_digit and not Preprocessing.resize("pad").is_digit
    assert ImageSpec(3, 32, 32, (0.0, 1.0), "resize_pad").preprocessing_spec.fit == "pad"
    for bad in ("resize_stretch", "resize_", "mnist", "", None, 3):
        with pytest.raises(AetoolError, match="unknown image preprocessing"):
            Preprocessing.parse(bad)
    with pytest.raises(AetoolError, match="unknown fit"):
        Preprocessing.resize("stretch")
    with pytest.raises(AetoolError):
        Preprocessing("mnist_digit", "pad")


def test_graph_shapes_follow_from_d_and_the_image():
    image = ImageSpec(3, 8, 8)
    assert graph_shapes(4, image) == {"encoder input": (3, 8, 8), "encoder output": (4, 1, 1),
                                      "decoder input": (4, 1, 1), "decoder output": (3, 8, 8)}
    found = {"encoder input": ["N", 3, 8, 8], "encoder output": ["N", 4, 1, 1], "decoder input": ["batch", 4, 1, 1],
             "decoder output": ["N", 3, "h", None]}  # image axes may be symbolic
    check_graph_shapes(4, image, found, "b")
    for end, shape, fragment in (("encoder output", ["N", "d", 1, 1], "d=4"), ("decoder input", ["N", 5, 1, 1], "d=4"),
                                 ("encoder input", ["N", 1, 8, 8], "image 3x8x8"),
                                 ("decoder output", ["N", 3, 8], "image 3x8x8")):
        with pytest.raises(AetoolError, match=f"b: graph shapes .* disagree with .*{fragment}"):
            check_graph_shapes(4, image, {**found, end: shape}, "b")


def test_density_params_are_the_schema_of_latent_json():
    from aetool.bundle import shipped_root
    from aetool.bundle_format import (DiagonalGaussianParams, GaussianMixtureParams, density_params_from_dict,
                                      read_meta)
    from aetool.density import GaussianMixture, density_from_params

    meta = read_meta(shipped_root() / "cnn-d4")  # a shipped bundle, read as it is
    mixture, diagonal = meta.density_params("gaussian_mixture"), meta.density_params("diagonal_gaussian")
    assert isinstance(mixture, GaussianMixtureParams) and isinstance(diagonal, DiagonalGaussianParams)
    assert mixture.dim == diagonal.dim == 4 and mixture.covs.shape == (mixture.n_components, 4, 4)
    assert mixture.to_dict() == meta.densities["gaussian_mixture"]  # the JSON round-trips unchanged
    fitted = density_from_params(mixture)
    assert isinstance(fitted, GaussianMixture) and fitted.n_components == mixture.n_components
    assert fitted.to_params().to_dict() == mixture.to_dict()
    for bad, fragment in (({"kind": "diagonal_gaussian", "mean": [0.0], "var": [0.0]}, "var > 0"),
                          ({"kind": "diagonal_gaussian", "mean": [float("nan")], "var": [1.0]}, "NaN or infinite"),
                          ({"kind": "gaussian_mixture", "weights": [1.0], "means": [[0.0]]}, "bad gaussian_mixture"),
                          ({"kind": "gaussian_mixture", "weights": [1.0], "means": [[0.0, 0.0]],
                            "covs": [[[1.0, 2.0], [2.0, 1.0]]]}, "not positive definite"),
                          ({"kind": "flow"}, "unknown kind 'flow'"), ([], "unknown kind None")):
        with pytest.raises(AetoolError, match=fragment):
            density_params_from_dict(bad)


def test_training_record_reads_old_and_new_bundles():
    from aetool.bundle import shipped_root
    from aetool.bundle_format import StartRecord, TrainingRecord, read_meta

    old = read_meta(shipped_root() / "pca-d8").training_record  # shipped before arch, weights, started_from
    assert old.arch is None and old.weights is None and old.started_from == () and old.epochs_in_all is None
    assert old.epochs == 1 and old.train_images == 60000 and old.test_psnr_db is not None
    assert old.options.width == 32  # recorded as the lecture's nb_channels
    chain = read_meta(shipped_root() / "cnn-d2").training_record
    assert chain.started_from[0] == StartRecord("cnn-d2-r7", 20, True, None) and chain.options.average_last == 75

    written = {"arch": {"family": "cnn", "d": 4}, "weights": "best (epoch 3)", "best_epoch": 3,
               "data": {"name": "mnist", "train_images": 300, "test_images": 10000}, "epochs": 4,
               "started_from": [{"run": "a", "epochs": 2, "revived": True, "shift": 1}], "epochs_in_all": 6,
               "config": {"width": 48, "shift": 2, "denoise": 0.1, "normal_class": "3", "init_from": "runs/a"},
               "parameters": {"encoder": 10, "decoder": 12}, "layers": None, "test_sse_per_image": 3.5,
               "test_psnr_db": 20.1}
    record = TrainingRecord.from_dict(written)
    assert record.to_dict() == written  # what the exporter writes reads back the same
    assert (record.options.width, record.options.shift, record.options.denoise, record.options.normal_class,
            record.options.init_from, record.options.revive_dead) == (48, 2, 0.1, "3", "runs/a", False)
    # a record for people, not hashed: mistyped keys read as unknown rather than failing a bundle
    odd = TrainingRecord.from_dict({"epochs": "many", "started_from": [5, {"run": 3}], "config": [], "data": "x"})
    assert odd.epochs is None and odd.started_from == (StartRecord(None, None),) and odd.config == {}
    assert odd.train_images is None and TrainingRecord.from_dict("oops") == TrainingRecord()


def test_the_contract_imports_neither_torch_nor_the_trainer():
    import subprocess
    import sys

    code = ("import sys, aetool.bundle_format, aetool.density; "
            "print([m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('aetool.training')])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"

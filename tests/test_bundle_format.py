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

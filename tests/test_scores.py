"""The numbers behind anomaly scoring: AUROC, the flagging rule, the calibration histogram's checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aetool.anomaly import is_anomalous
from aetool.bundle_format import AnomalyCalibration
from aetool.errors import AetoolError
from aetool.metrics import auroc


def test_auroc_is_the_chance_a_positive_outscores_a_negative():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 6, 40).astype(float)  # many ties
        pos = rng.random(40) < 0.3
        if pos.all() or not pos.any():
            continue
        brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[pos] for b in s[~pos]])
        assert auroc(s, pos) == pytest.approx(brute, abs=1e-12)
    assert auroc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert auroc([np.nan, 0.0], [True, False]) == 1.0  # a score that cannot be computed ranks highest
    with pytest.raises(ValueError):
        auroc([1, 2], [True, True])


def test_a_score_that_is_not_a_number_is_flagged():
    assert is_anomalous(np.array([np.nan, 1.0, 5.0, np.inf, -np.inf]), 3.0).tolist() == [True, False, True, True, False]


CAL = {"log_sse_mean": 1.0, "log_sse_std": 0.5, "nll_mean": 0.2, "nll_std": 0.3, "threshold": 3.0, "fpr": 0.01,
       "images": 10, "quantiles": {"0.5": 0.1}, "source": "test"}


@pytest.mark.parametrize("histogram", [
    {"edges": [0, 1], "counts": [1, 2]},  # one edge too few
    {"edges": [1, 0, 2], "counts": [1, 2]},  # not increasing
    {"edges": [0, 1, float("nan")], "counts": [1, 2]},
    {"edges": [0, 1, 2], "counts": [1, -2]},
    {"edges": [0, 1, 2], "counts": [1, 2.5]},
    [0, 1],
])
def test_a_bad_calibration_histogram_is_one_clear_error(histogram):
    with pytest.raises(AetoolError, match="'histogram' must be"):
        AnomalyCalibration.from_dict(json.loads(json.dumps({**CAL, "histogram": histogram})), "latent.json: anomaly")


def test_the_calibration_histogram_is_optional_and_round_trips():
    assert AnomalyCalibration.from_dict(CAL, "x").histogram is None and "histogram" not in \
        AnomalyCalibration.from_dict(CAL, "x").to_dict()
    with_h = {**CAL, "histogram": {"edges": [0.0, 1.5, 2.0], "counts": [3, 7]}}
    assert AnomalyCalibration.from_dict(with_h, "x").to_dict()["histogram"] == with_h["histogram"]


def test_the_score_is_the_larger_standardised_part_and_old_files_keep_the_sum():
    from aetool.anomaly import combine

    sse, nll = np.exp(np.array([1.0, 2.0])), np.array([0.5, 0.2])  # a = (log sse - 1) / 0.5, b = (nll - 0.2) / 0.3
    a, b = np.array([0.0, 2.0]), np.array([1.0, 0.0])
    old = AnomalyCalibration.from_dict(CAL, "x")
    assert old.rule == "sum" and np.allclose(combine(sse, nll, old), a + b)
    new = AnomalyCalibration.from_dict({**CAL, "rule": "max"}, "x")
    assert np.allclose(combine(sse, nll, new), np.maximum(a, b)) and new.to_dict()["rule"] == "max"
    with pytest.raises(AetoolError, match="'rule' must be"):
        AnomalyCalibration.from_dict({**CAL, "rule": "mean"}, "x")


def test_calibration_needs_held_out_images_and_finite_scores():
    from aetool import load_bundle
    from aetool.anomaly import calibrate
    from aetool.mnist import mnist_test_head

    b = load_bundle("pca-d2", device="cpu")
    images = mnist_test_head(40).images
    with pytest.raises(AetoolError, match="at least 4 held-out normal images, got 0"):
        calibrate(b, images[:0])
    with pytest.raises(AetoolError, match="got 3"):
        calibrate(b, images[:3])
    cal = calibrate(b, images, 0.5)  # 8 standardise, 16 set the threshold, 16 check it
    assert (cal.standardisation_images, cal.images, cal.heldout_images) == (8, 16, 16) and cal.rule == "max"
    assert cal.method == "conformal" and cal.rank == 9 and cal.threshold is not None
    with pytest.raises(Exception, match="--fpr must be above 0 and at most 0.5"):
        calibrate(b, images, 0.6)
    bad = images.copy()
    bad[0] = np.nan  # a picture that cannot be scored cannot set a threshold
    with pytest.raises(AetoolError, match="not finite"):
        calibrate(b, bad)


def test_an_older_calibration_still_loads_and_gets_its_interval():
    """Files from before the conformal threshold: the plain quantile, a rate without its count."""
    from aetool.anomaly import summary

    old = AnomalyCalibration.from_dict({**CAL, "rule": "max", "heldout_fpr": 0.0074, "heldout_images": 5000}, "x")
    assert old.method == "quantile" and old.rank is None and old.heldout_flagged == 37
    lo, hi = old.heldout_interval
    assert lo < 0.0074 < hi and hi - lo < 0.01
    line = summary(old)
    assert "an older calibration" in line and "0.74 % on 5000 fresh held-out images (95 % interval" in line
    assert "heldout_interval" in old.to_dict() and "rank" not in old.to_dict()
    with pytest.raises(AetoolError, match="only a conformal calibration may lack one"):
        AnomalyCalibration.from_dict({**CAL, "threshold": None}, "x")

"""The anomaly threshold's promise, checked on numbers: split-conformal ranks, degenerate score sets,
relative standardisation floors, and the Clopper-Pearson interval against scipy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aetool.anomaly import (MIN_IMAGES, calibrate_parts, combine, conformal_threshold, images_needed, smallest_fpr,
                            split_sizes, std_floor)
from aetool.bundle_format import AnomalyCalibration, TrainingDataRecord, conformal_minimum, conformal_rank
from aetool.errors import AetoolError
from aetool.stats import betainc, clopper_pearson

scipy_stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")

RATES = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
FIXED = settings(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- Clopper-Pearson without scipy
@pytest.mark.parametrize("n", [1, 2, 3, 10, 33, 99, 400, 4500, 100_000])
def test_clopper_pearson_matches_scipy(n):
    for k in sorted({0, 1, 2, n // 100, n // 3, n // 2, n - 1, n} & set(range(n + 1))):
        lo, hi = clopper_pearson(k, n)
        want_lo = 0.0 if k == 0 else scipy_stats.beta.ppf(0.025, k, n - k + 1)
        want_hi = 1.0 if k == n else scipy_stats.beta.ppf(0.975, k + 1, n - k)
        assert lo == pytest.approx(want_lo, rel=1e-8, abs=1e-300) and hi == pytest.approx(want_hi, rel=1e-8)


@FIXED
@given(n=st.integers(1, 20_000), data=st.data(), confidence=st.sampled_from([0.5, 0.9, 0.95, 0.999]))
def test_clopper_pearson_matches_scipy_anywhere(n, data, confidence):
    k = data.draw(st.integers(0, n))
    lo, hi = clopper_pearson(k, n, confidence)
    tail = (1 - confidence) / 2
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    if k > 0:
        assert lo == pytest.approx(scipy_stats.beta.ppf(tail, k, n - k + 1), rel=1e-8)
    if k < n:
        assert hi == pytest.approx(scipy_stats.beta.ppf(1 - tail, k + 1, n - k), rel=1e-8)


@FIXED
@given(a=st.floats(0.01, 1e5), b=st.floats(0.01, 1e5), x=st.floats(0.0, 1.0))
def test_the_incomplete_beta_matches_scipy(a, b, x):
    assert betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-7, abs=1e-14)


def test_clopper_pearson_refuses_nonsense():
    for k, n in ((-1, 5), (6, 5), (0, 0)):
        with pytest.raises(ValueError):
            clopper_pearson(k, n)


# ---------------------------------------------------------------- ranks and splits
def test_the_conformal_rank_is_exact_for_the_rate_a_user_typed():
    assert conformal_rank(99, 0.01) == 99 and conformal_rank(98, 0.01) is None  # n + 1 < 1 / fpr: no rank
    assert conformal_rank(9, 0.3) == 7  # 10 * 0.7 = 7, although 0.3's double is slightly below 0.3
    assert conformal_rank(4500, 0.01) == 4456 and conformal_rank(1, 0.5) == 1
    assert [conformal_minimum(f) for f in RATES] == [1, 4, 9, 19, 49, 99]
    assert conformal_threshold(np.arange(99.0)[::-1], 0.01) == 98.0 and conformal_threshold(np.ones(98), 0.01) is None


@given(n=st.integers(MIN_IMAGES, 30_000), fpr=st.sampled_from(RATES + (0.003, 0.37)))
@FIXED
def test_the_split_uses_every_image_and_gives_a_threshold_from_images_needed_on(n, fpr):
    s, c, h = split_sizes(n, fpr)
    assert s + c + h == n and s >= 2 and c >= 1 and h >= 1
    need = images_needed(fpr)
    assert (conformal_rank(c, fpr) is not None) == (n >= need)
    lowest = smallest_fpr(n)
    assert conformal_rank(split_sizes(n, lowest)[1], lowest) is not None


# ---------------------------------------------------------------- any score set: a calibration or aetool's one error
def _part(draw, n: int, kind: str, positive: bool) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = draw(st.floats(1e-300 if positive else -1e300, 1e300, allow_nan=False, allow_infinity=False))
    if kind == "identical":
        return np.full(n, base)
    if kind == "ulp":  # identical but for the last bit, in any pattern
        return np.where(rng.random(n) < 0.5, base, np.nextafter(base, np.inf))
    if kind == "huge":
        v = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(250, 308, n)
        return np.abs(v) if positive else v
    if kind == "extreme":  # the largest doubles, both signs
        v = rng.choice([-1.0, 1.0], n) * np.finfo(np.float64).max * rng.uniform(0.5, 1.0, n)
        return np.abs(v) if positive else v
    if kind == "two":  # two values: a part's standardised value is a constant away from 0 in most sets
        return rng.choice([base, base * 2 + 1 if positive else base + 1.0], n)
    if kind == "clustered":  # near-ties plus outliers: the standardisation moves the tied scores away from 0
        far = min(base * 1e3 + 1.0, 1e307) if positive else base + 10.0 ** rng.uniform(-3, 3)
        return rng.choice([base, np.nextafter(base, np.inf), far], n, p=[0.45, 0.45, 0.1])
    v = rng.normal(0, draw(st.sampled_from([1e-9, 1.0, 1e6])), n)
    return np.exp(np.clip(v, -700, 700)) if positive else v


@st.composite
def score_sets(draw):
    n = draw(st.integers(1, 500))
    kinds = st.sampled_from(["identical", "ulp", "two", "clustered", "huge", "extreme", "normal"])
    return _part(draw, n, draw(kinds), True), _part(draw, n, draw(kinds), False)


# the crash: SSEs 1 ulp apart and a two-valued NLL leave calibration scores a few ulps apart, away from 0
ULP_APART = (np.array([float.fromhex(h) for h in ["0x1.102ac2f3c2601p+1", "0x1.102ac2f3c2602p+1", "0x1.102ac2f3c2602p+1",
                                                  "0x1.102ac2f3c2601p+1", "0x1.102ac2f3c2602p+1", "0x1.102ac2f3c2601p+1",
                                                  "0x1.102ac2f3c2602p+1"]]),
             np.array([float.fromhex(h) for h in ["-0x1.a136f06ea5cd0p-1"] * 3 + ["-0x1.d09b783752e68p+0",
                                                  "-0x1.a136f06ea5cd0p-1"] + ["-0x1.d09b783752e68p+0"] * 2]))


@FIXED
@given(parts=score_sets(), fpr=st.sampled_from(RATES), rule=st.sampled_from(["max", "sum"]))
@example(parts=ULP_APART, fpr=0.5, rule="sum")
def test_calibration_never_fails_on_degenerate_scores(parts, fpr, rule):
    """Ties, 1-ulp differences, constant parts, huge values, for the max and the sum: a calibration
    that survives the bundle schema, or (under MIN_IMAGES) aetool's own one-line error."""
    sse, nll = parts
    n = len(sse)
    assert np.all(np.isfinite(sse)) and np.all(np.isfinite(nll))
    if n < MIN_IMAGES:
        with pytest.raises(AetoolError, match="at least 4 held-out normal images"):
            calibrate_parts(sse, nll, fpr, rule=rule)
        return
    cal = calibrate_parts(sse, nll, fpr, rule=rule)
    again = AnomalyCalibration.from_dict(json.loads(json.dumps(cal.to_dict(), allow_nan=False)), "latent.json: anomaly")
    assert again == cal
    s, c, h = split_sizes(n, fpr)
    assert (cal.standardisation_images, cal.images, cal.heldout_images) == (s, c, h)
    assert (cal.threshold is None) == (conformal_rank(c, fpr) is None)
    assert all(math.isfinite(v) and v > 0 for v in (cal.log_sse_std, cal.nll_std))
    if cal.histogram is not None:
        assert sum(cal.histogram["counts"]) == c
    if cal.threshold is not None:
        assert cal.heldout_flagged == round(cal.heldout_fpr * h)
        assert cal.heldout_interval[0] <= cal.heldout_fpr <= cal.heldout_interval[1]


def test_parts_that_are_not_numbers_are_one_error():
    for bad in (np.inf, np.nan):
        with pytest.raises(AetoolError, match="^calibration: the scores of some held-out images are not finite$"):
            calibrate_parts(np.array([1.0, 2.0, bad, 3.0]), np.zeros(4), 0.5)


def test_a_histogram_of_scores_one_ulp_apart():
    """The reported crash: two scores of 1.0, one of them 1 ulp lower; numpy cannot cut 40 bins from that."""
    from aetool.anomaly import _histogram

    for scores in ([1.0, np.nextafter(1.0, 0)], [5.0] * 7, [-1e308, 1e308], [np.finfo(float).max] * 2, [0.0]):
        h = _histogram(np.array(scores))
        assert sum(h["counts"]) == len(scores) and np.all(np.diff(h["edges"]) > 0)


def test_the_reported_crash_a_near_tie_of_two_scores_exports_without_a_threshold():
    """4 held-out images: 2 standardise, 1 calibrates, 1 checks; no 1 % threshold, and no crash."""
    cal = calibrate_parts(np.array([2.0, 2.0000000000000004, 2.0, 2.0]), np.array([1.0, 1.0, 1.0 + 2e-16, 1.0]), 0.01)
    assert cal.threshold is None and cal.histogram is not None and cal.heldout_fpr is None


def test_standardisation_floors_follow_the_data_s_scale():
    assert std_floor(np.full(5, 1e6)) == pytest.approx(1e3) and std_floor(np.zeros(5)) == pytest.approx(1e-3)
    sse = np.exp(np.full(40, 3.0) + np.arange(40) * 1e-12)  # log SSE all but constant
    cal = calibrate_parts(sse, np.random.default_rng(0).normal(size=40), 0.1)
    assert cal.log_sse_std == pytest.approx(3e-3)  # not 1e-12: a rounding difference stays a rounding difference
    a = (np.log(sse * 1.0001) - cal.log_sse_mean) / cal.log_sse_std
    assert np.all(np.abs(a) < 1)  # a 0.01 % larger error is not a thousand standard deviations away


def test_the_training_record_is_read_through_the_schema():
    from aetool.bundle_format import BundleMeta

    meta = BundleMeta.__new__(BundleMeta)
    for bad, fragment in (({"holdout": "x"}, "'holdout' must be an integer >= 0"),
                          ({"limit": "x"}, "'limit' must be an integer >= 1"),
                          ({"val_split": 2}, "'val_split' must be a number in (0, 0.5]"),
                          ({"data": 5}, "'data' must be a string"), ({"channels": 2}, "'channels' must be 1 or 3")):
        meta.training = {"config": bad}
        with pytest.raises(AetoolError, match=r"latent.json: training.config: " + fragment.replace("(", r"\(")
                           .replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
            TrainingDataRecord.from_meta(meta, "latent.json")
    meta.training = {"config": {"data": "/usr", "holdout": 3}, "data": {"root": "/usr"}}
    record = TrainingDataRecord.from_meta(meta, "latent.json")
    assert not record.is_mnist and record.root == "/usr" and record.holdout == 3
    meta.training = {}
    assert TrainingDataRecord.from_meta(meta, "latent.json").is_mnist


# ---------------------------------------------------------------- the promise: at most fpr false positives
def _false_positives(draw_scores, n: int, fpr: float, trials: int, threshold=conformal_threshold) -> int:
    """Marginal false positives: each trial a fresh calibration set and one fresh normal score."""
    calibration, fresh = draw_scores((trials, n)), draw_scores(trials)
    return sum(int(not fresh[t] <= threshold(calibration[t], fpr)) for t in range(trials))


DISTRIBUTIONS = {
    "normal": lambda rng: rng.standard_normal,
    "exponential": lambda rng: rng.standard_exponential,
    "cauchy": lambda rng: rng.standard_cauchy,
    "ties": lambda rng: (lambda size: rng.integers(0, 4, size).astype(float)),  # many equal scores
}
TRIALS, SURE = 4000, 1 - 1e-4


@FIXED
@given(fpr=st.sampled_from(RATES), extra=st.integers(0, 400), kind=st.sampled_from(sorted(DISTRIBUTIONS)),
       seed=st.integers(0, 2**32 - 1))
def test_the_threshold_keeps_its_false_positive_rate_on_exchangeable_scores(fpr, extra, kind, seed):
    """For n >= 1/fpr - 1 calibration scores, a new score exchangeable with them is over the threshold
    with probability at most fpr (exactly (n + 1 - rank) / (n + 1) for continuous scores)."""
    n = min(conformal_minimum(fpr) + extra, 500)
    flagged = _false_positives(DISTRIBUTIONS[kind](np.random.default_rng(seed)), n, fpr, TRIALS)
    lo, hi = clopper_pearson(flagged, TRIALS, SURE)
    assert lo <= fpr
    if kind != "ties":
        exact = (n + 1 - conformal_rank(n, fpr)) / (n + 1)
        assert lo <= exact <= hi


def test_the_check_catches_the_plain_quantile():
    """The check above can fail: the (1 - fpr) quantile that calibrations used to set flags about
    twice the rate at n = 99."""
    plain = lambda scores, fpr: float(np.quantile(scores, 1 - fpr))  # noqa: E731
    flagged = _false_positives(np.random.default_rng(0).standard_normal, 99, 0.01, TRIALS, plain)
    assert clopper_pearson(flagged, TRIALS, SURE)[0] > 0.01


def test_the_whole_calibration_keeps_its_rate_on_exchangeable_images():
    """Through calibrate_parts (standardisation on its own part, then the rank): the rate new normal
    images see matches (c + 1 - rank) / (c + 1), and so, on average, does each calibration's own check."""
    rng = np.random.default_rng(1)
    n, fpr, trials = 60, 0.1, 1500
    flagged, checked = 0, []
    for _ in range(trials):
        sse, nll = np.exp(rng.normal(3, 0.4, n + 1)), rng.gamma(2.0, 1.0, n + 1)  # the last is the new image
        cal = calibrate_parts(sse[:n], nll[:n], fpr)
        flagged += int(combine(sse[n:], nll[n:], cal)[0] > cal.threshold)
        checked.append(cal.heldout_fpr)
    c, rank = cal.images, cal.rank
    exact = (c + 1 - rank) / (c + 1)
    lo, hi = clopper_pearson(flagged, trials, SURE)
    assert exact <= fpr and lo <= exact <= hi
    assert abs(np.mean(checked) - exact) < 0.01  # 5 standard errors: the check measures the same rate

"""Anomaly scores with a calibrated threshold (``aetool score``, ``aetool calibrate``), torch-free.

An autoencoder says a picture is unusual in two ways: it reconstructs it badly (a high SSE), or
it maps it where the latent density puts little mass (a high negative log-likelihood).  Each is
standardised on held-out normal images (log SSE, because reconstruction errors are skewed), so
neither dominates by its units, and the score is the larger of the two: a picture is unusual if
it is unusual either way.  (The sum, the first rule, let the weaker of the two drag the stronger
down: on one-class MNIST the latent NLL alone often separates far better than the SSE, and the
sum lost most of that margin; the maximum keeps it.)  The threshold is the score's (1 - fpr)
quantile on those images: the false-positive rate a user asks for, measured rather than assumed,
and checked on a second, fresh half of the held-out images.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .bundle import Bundle
from .bundle_format import AnomalyCalibration, read_meta, write_meta
from .errors import AetoolError, UsageError
from .metrics import sse_per_image

BATCH = 256
QUANTILES = (0.5, 0.9, 0.99, 0.999)
HISTOGRAM_BINS = 40
MIN_IMAGES = 4  # two to set the threshold, two to measure it: the least that means anything


def parts(bundle: Bundle, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: reconstruction SSE, and latent NLL per dimension under the bundle's default density."""
    z = bundle.encode(images)
    sse = sse_per_image(images, bundle.decode(z))
    nll = -bundle.density.log_prob(z.reshape(len(z), -1)) / bundle.d
    return sse, nll


def is_anomalous(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Over the threshold, or not a number at all: a score that cannot be computed is not evidence
    that the picture is normal."""
    return ~(np.asarray(scores) <= threshold)


def combine(sse: np.ndarray, nll: np.ndarray, cal: AnomalyCalibration) -> np.ndarray:
    """The anomaly score (see AnomalyCalibration): the larger of the two standardised parts, or their sum."""
    a = (np.log(sse + 1e-12) - cal.log_sse_mean) / cal.log_sse_std
    b = (nll - cal.nll_mean) / cal.nll_std
    return np.maximum(a, b) if cal.rule == "max" else a + b


def calibrate(bundle: Bundle, images: np.ndarray, fpr: float = 0.01, source: str = "held-out images",
              rule: str = "max") -> AnomalyCalibration:
    """Fit the score's standardisation and threshold on the first half of ``images`` (normal, unseen in
    training) and measure the false-positive rate on the second half."""
    if not 0 < fpr <= 0.5:
        raise UsageError(f"--fpr must be above 0 and at most 0.5, got {fpr}")
    if len(images) < MIN_IMAGES:
        raise AetoolError(f"calibration needs at least {MIN_IMAGES} held-out normal images, got {len(images)} "
                          f"(raise --val-split or add images)")
    half = (len(images) + 1) // 2
    sse, nll = parts(bundle, images[:half])
    log_sse = np.log(sse + 1e-12)
    if not (np.all(np.isfinite(log_sse)) and np.all(np.isfinite(nll))):
        raise AetoolError("calibration: the scores of some held-out images are not finite")
    cal = AnomalyCalibration(float(log_sse.mean()), float(max(log_sse.std(), 1e-9)), float(nll.mean()),
                             float(max(nll.std(), 1e-9)), 0.0, float(fpr), half, {}, source, rule=rule)
    scores = combine(sse, nll, cal)
    cal.threshold = float(np.quantile(scores, 1 - fpr))
    cal.quantiles = {str(q): float(np.quantile(scores, q)) for q in QUANTILES}
    counts, edges = np.histogram(scores, bins=HISTOGRAM_BINS)
    cal.histogram = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
    fresh_sse, fresh_nll = parts(bundle, images[half:])
    cal.heldout_fpr = float(np.mean(combine(fresh_sse, fresh_nll, cal) > cal.threshold))
    cal.heldout_images = len(images) - half
    return cal


def calibration_note(cal: AnomalyCalibration) -> str | None:
    """A warning where too few images set the threshold: at a 1 % rate, 10 images put none above it."""
    if cal.images * cal.fpr >= 5:
        return None
    return (f"note: {cal.images} held-out images set this threshold, so fewer than 5 of them lie above it and the "
            f"rate is rough; {math.ceil(10 / cal.fpr)} or more normal images set a {100 * cal.fpr:g} % threshold well")


def heldout_images(bundle: Bundle) -> tuple[np.ndarray, str]:
    """Normal images the bundle's model did not train on: MNIST's test set for MNIST runs, a folder's
    validation split for folder runs (the same seeded split training used)."""
    from .training.config import config_from_dict  # numpy only: no torch in these modules
    from .training.datasets import as_float, load_training_data

    data = load_training_data(config_from_dict(bundle.meta.training_config, bundle.path), quiet=True)
    return as_float(data.heldout[:]), f"{data.heldout_name} images ({data.info.get('name')})"


def write_calibration(folder: Path, cal: AnomalyCalibration) -> None:
    """latent.json with the calibration, atomically; the graphs (and so their hashes) are untouched."""
    meta = read_meta(folder)
    meta.anomaly = cal
    write_meta(folder, meta)


def score_files(bundle: Bundle, paths: Sequence[str | os.PathLike], invert: bool | None = None, *,
                strict: bool = False, skipped: list[tuple[str, str]] | None = None
                ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray, np.ndarray | None]]:
    """(paths, sse, nll, score or None without a calibration) a batch at a time.

    A file that cannot be read is left out and added to ``skipped`` as (path as written, reason),
    as ``aetool encode`` does, so one corrupt picture does not cost the scores of all the others;
    with ``strict`` it is the error."""
    from .embed import _without_path
    from .fileio import path_text

    cal = bundle.meta.anomaly
    for start in range(0, len(paths), BATCH):
        batch, arrays = [], []
        for p in paths[start : start + BATCH]:
            try:
                arrays.append(bundle.load_images([p], invert=invert)[0])
                batch.append(str(p))
            except AetoolError as e:
                if strict:
                    raise
                if skipped is not None:
                    skipped.append((path_text(p), _without_path(str(e), p)))
        if not batch:
            continue
        sse, nll = parts(bundle, np.stack(arrays))
        yield batch, sse, nll, None if cal is None else combine(sse, nll, cal)


def flagged_examples(bundle: Bundle, paths: Sequence[str], scores: Sequence[float],
                     invert: bool | None = None) -> list:
    """The flagged pictures with their reconstructions, for ``aetool score --figure``."""
    from .anomaly_figure import Flagged

    if not paths:
        return []
    images = bundle.load_images(list(paths), invert=invert)
    recon = bundle.decode(bundle.encode(images))
    return [Flagged(str(p), float(s), images[i], recon[i]) for i, (p, s) in enumerate(zip(paths, scores))]

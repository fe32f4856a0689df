"""Anomaly scores with a calibrated threshold (``aetool score``, ``aetool calibrate``), torch-free.

An autoencoder says a picture is unusual in two ways: it reconstructs it badly (a high SSE), or
it maps it where the latent density puts little mass (a high negative log-likelihood).  Each is
standardised on held-out normal images (log SSE, because reconstruction errors are skewed), so
neither dominates by its units, and the score is the larger of the two: a picture is unusual if
it is unusual either way.  (The sum, the first rule, let the weaker of the two drag the stronger
down: on one-class MNIST the latent NLL alone often separates far better than the SSE, and the
sum lost most of that margin; the maximum keeps it.)

The held-out normal images are split three ways, in a seeded random order: the standardisation is
fitted on the first part, the threshold is set on the second, and the third measures the rate.
The threshold is a split-conformal one: the ceil((n + 1)(1 - fpr))-th smallest of n calibration
scores.  Because the score's function is fixed before those n images are scored, a new normal
image exchangeable with them lies above it with probability at most fpr, whatever the scores'
distribution, for any n; where n is too small for that rank to exist, no threshold is stored
rather than one that cannot mean what it says.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .bundle import Bundle
from .bundle_format import (CONFIDENCE, AnomalyCalibration, TrainingDataRecord, conformal_minimum,
                            conformal_rank, read_meta, write_meta)
from .errors import AetoolError, UsageError
from .anomaly_maps import AppearanceModel, anomaly_map, image_score
from .metrics import sse_per_image
from .stats import clopper_pearson

BATCH = 256
QUANTILES = (0.5, 0.9, 0.99, 0.999)
HISTOGRAM_BINS = 40
MIN_IMAGES = 4  # two to standardise (a spread needs two), one to set a threshold, one to check it
STANDARDISE_SHARE, STANDARDISE_MAX = 5, 1000  # a fifth of the images, at most 1000: a mean and a spread
STD_FLOOR = 1e-3
SPLIT_SEED = 0


def parts(bundle: Bundle, images: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per image: reconstruction SSE, and latent NLL per dimension under the bundle's default density.
    A map bundle takes (C, H, W) pictures of any sizes and gives each its map's two parts
    (:func:`map_parts`), so that pictures of different sizes compare."""
    if bundle.is_map:
        return map_parts(bundle, images)
    z = bundle.encode(images)
    sse = sse_per_image(images, bundle.decode(z))
    nll = -bundle.density.score_samples(z.reshape(len(z), -1)) / bundle.d
    return sse, nll


class PixelStats:
    """What calibration learns of normal pictures' anomaly maps beyond the image scores: a seeded
    sample of their values, a bounded number a picture (so a folder of any size is summarised in
    little memory), of which the pixel threshold is a high quantile."""

    SAMPLE = 4096
    QUANTILE = 0.999

    def __init__(self) -> None:
        self.samples: list[np.ndarray] = []
        self.rng = np.random.default_rng(SPLIT_SEED)

    def add(self, amap: np.ndarray) -> None:
        flat = amap.ravel()
        self.samples.append(flat if flat.size <= self.SAMPLE else self.rng.choice(flat, self.SAMPLE, replace=False))

    def finish(self, cal: AnomalyCalibration) -> AnomalyCalibration:
        if self.samples:
            cal.pixel_threshold = max(float(np.quantile(np.concatenate(self.samples), self.QUANTILE)), 1e-12)
        return cal


@dataclass
class Appearance:
    """The appearance model a map is drawn with, and, while a calibration scores the pictures it was
    fitted on, which of them each picture of the batch is (None: not one of them), so that a picture
    is not compared with its own neighbourhoods."""

    model: AppearanceModel | None
    owners: Sequence[int | None] | None = None

    @classmethod
    def of(cls, bundle: Bundle) -> "Appearance":
        """The bundle's own (its calibration's), or none: the reconstruction's map."""
        cal = bundle.meta.anomaly
        params = None if cal is None else cal.appearance
        return cls(None if params is None else AppearanceModel.from_params(params))

    def map(self, i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return anomaly_map(x, y, self.model, None if self.owners is None else self.owners[i])


def map_parts(bundle: Bundle, pictures: Sequence[np.ndarray], *, pixels: PixelStats | None = None,
              on_map: "Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None" = None,
              appearance: Appearance | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A map bundle's two parts, per picture: the mean of the highest 1 % of its anomaly map
    (aetool.anomaly_maps, at its own size, with ``appearance`` or the bundle's own), and the mean
    over the latent map's positions of each code's NLL per dimension under the default density.
    Both are per pixel or per position, so the calibration holds for pictures of any size.
    ``on_map(i, picture, reconstruction, map)`` sees each map as it is made, so a caller can write
    it without holding a batch of them."""
    density = bundle.density
    appearance = appearance or Appearance.of(bundle)
    peak, nll = np.zeros(len(pictures)), np.zeros(len(pictures))
    for i, x in enumerate(pictures):
        z = bundle.encode_picture(x)
        y = bundle.decode_picture(z, x.shape[1:])
        amap = appearance.map(i, x, y)
        peak[i] = image_score(amap)
        codes = z.reshape(bundle.d, -1).T
        nll[i] = float(np.mean(-density.score_samples(codes))) / bundle.d
        if pixels is not None:
            pixels.add(amap)
        if on_map is not None:
            on_map(i, x, y, amap)
    return peak, nll


def is_anomalous(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Over the threshold, or not a number at all: a score that cannot be computed is not evidence
    that the picture is normal."""
    return ~(np.asarray(scores) <= threshold)


def combine(sse: np.ndarray, nll: np.ndarray, cal: AnomalyCalibration) -> np.ndarray:
    """The anomaly score (see AnomalyCalibration): the larger of the two standardised parts, or their sum.
    In float64, as the web page computes it, so a float32 part cannot overflow on its way."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = (np.log(np.asarray(sse, np.float64) + 1e-12) - cal.log_sse_mean) / cal.log_sse_std
        b = (np.asarray(nll, np.float64) - cal.nll_mean) / cal.nll_std
        return a if cal.rule == "map" else np.maximum(a, b) if cal.rule == "max" else a + b


# ---------------------------------------------------------------- the calibration, on numbers alone
def split_sizes(n: int, fpr: float) -> tuple[int, int, int]:
    """(standardise, calibrate, check) out of n held-out images.  A fifth (2 to 1000) fits the
    standardisation; of the rest, the threshold gets half, or as many as ``fpr`` needs where that
    still leaves a quarter of the rest to check it: a threshold that exists beats a tighter check."""
    standardise = min(max(n // STANDARDISE_SHARE, 2), STANDARDISE_MAX)
    rest = n - standardise
    calibrate_n = max(-(-rest // 2), min(conformal_minimum(fpr), rest - -(-rest // 4)))
    return standardise, calibrate_n, rest - calibrate_n


def split_parts(n: int, fpr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The indices of the three parts of n held-out images (split_sizes), in a seeded order: a
    folder's name order must not decide the parts."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_std, n_cal, _ = split_sizes(n, fpr)
    return order[:n_std], order[n_std : n_std + n_cal], order[n_std + n_cal :]


def images_needed(fpr: float) -> int:
    """The fewest held-out images whose split gives a threshold at ``fpr`` (split_sizes is monotone in n)."""
    need = conformal_minimum(fpr)
    lo, hi = MIN_IMAGES, 2 * need + STANDARDISE_MAX + 8
    while lo < hi:
        mid = (lo + hi) // 2
        if split_sizes(mid, fpr)[1] >= need:
            hi = mid
        else:
            lo = mid + 1
    return lo


def smallest_fpr(n: int) -> float | None:
    """The smallest rate (rounded up to 3 significant digits) that n held-out images can set a
    threshold for, or None where n is under MIN_IMAGES."""
    if n < MIN_IMAGES:
        return None
    rest = n - split_sizes(n, 0.5)[0]
    most = rest - -(-rest // 4) if rest > 1 else 1  # the calibration part at its largest
    rate = 1 / (most + 1)
    digits = 2 - math.floor(math.log10(rate))
    rate = math.ceil(rate * 10**digits) / 10**digits
    return rate if conformal_rank(split_sizes(n, rate)[1], rate) is not None else min(0.5, 2 * rate)


def std_floor(values: np.ndarray) -> float:
    """The least spread a part is divided by: STD_FLOOR of the part's own magnitude (its root mean
    square), and at least of one log unit (both parts are logarithms, so that is a 0.1 % change of
    the SSE or of the density per dimension).  A part nearly constant on the held-out images would
    otherwise be stretched without bound and decide every verdict by its rounding noise."""
    scale = max(float(np.max(np.abs(values))), 1.0)  # scaled first: the square of a huge value overflows
    rms = float(np.sqrt(np.mean(np.square(values / scale)))) * scale
    return STD_FLOOR * max(rms, 1.0)


def _standardisation(log_sse: np.ndarray, nll: np.ndarray) -> tuple[float, float, float, float]:
    def mean_std(v: np.ndarray) -> tuple[float, float]:
        scale = max(float(np.max(np.abs(v))), 1.0)  # scaled first: a square of a huge value overflows
        u = v / scale
        return float(np.mean(u) * scale), max(float(np.std(u) * scale), std_floor(v))

    return (*mean_std(log_sse), *mean_std(nll))


def _histogram(scores: np.ndarray) -> dict[str, list] | None:
    """HISTOGRAM_BINS bins over the scores' range, or fewer where the range holds fewer distinct
    doubles; a range of one value is widened around it.  Never fails on ties or huge values."""
    lo, hi = float(scores.min()), float(scores.max())
    width = 1e-6 * max(abs(lo), abs(hi), 1.0)
    if not hi - lo >= width:  # all equal, 1 ulp apart, or too close for 40 finite bins
        lo, hi = (v if math.isfinite(v) else w for v, w in ((lo - width, lo), (hi + width, hi)))
    t = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        edges = lo * (1 - t) + hi * t  # no hi - lo: that overflows for scores of opposite signs near the limit
    edges[0], edges[-1] = lo, hi
    edges = np.unique(edges[np.isfinite(edges)])
    if len(edges) < 2:
        return None
    counts, _ = np.histogram(np.clip(scores, edges[0], edges[-1]), bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def conformal_threshold(scores: np.ndarray, fpr: float) -> float | None:
    """The conformal_rank-th smallest of ``scores``, or None where they are too few for ``fpr``."""
    rank = conformal_rank(len(scores), fpr)
    return None if rank is None else float(np.partition(np.asarray(scores, np.float64), rank - 1)[rank - 1])


def calibrate_parts(sse: np.ndarray, nll: np.ndarray, fpr: float = 0.01, source: str = "held-out images",
                    rule: str = "max") -> AnomalyCalibration:
    """The calibration from the two parts of n held-out normal images (module docstring).  The only
    error it raises is aetool's own: too few images, or parts that are not finite numbers."""
    if not 0 < fpr <= 0.5:
        raise UsageError(f"--fpr must be above 0 and at most 0.5, got {fpr}")
    sse, nll = np.asarray(sse, np.float64).ravel(), np.asarray(nll, np.float64).ravel()
    n = len(sse)
    if n < MIN_IMAGES or len(nll) != n:
        raise AetoolError(f"calibration needs at least {MIN_IMAGES} held-out normal images, got {min(n, len(nll))} "
                          f"(a {100 * fpr:g} % threshold needs {images_needed(fpr)})")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_sse = np.log(sse + 1e-12)
    if not (np.all(np.isfinite(log_sse)) and np.all(np.isfinite(nll))):
        raise AetoolError("calibration: the scores of some held-out images are not finite")
    first, second, third = split_parts(n, fpr)
    n_std, n_cal, n_check = len(first), len(second), len(third)
    cal = AnomalyCalibration(*_standardisation(log_sse[first], nll[first]), None, float(fpr), n_cal, {}, source,
                             rule=rule, method="conformal", standardisation_images=n_std)
    limit = np.finfo(np.float64).max  # an overflowing score is still the largest: ranks and verdicts hold
    scores = np.sort(np.clip(combine(sse[second], nll[second], cal), -limit, limit))
    cal.rank, cal.threshold = conformal_rank(n_cal, fpr), conformal_threshold(scores, fpr)
    cal.quantiles = {str(q): float(scores[max(0, math.ceil(q * n_cal) - 1)]) for q in QUANTILES}  # order statistics
    cal.histogram = _histogram(scores)
    cal.heldout_images = n_check
    if cal.threshold is not None:
        flagged = int(np.sum(is_anomalous(combine(sse[third], nll[third], cal), cal.threshold)))
        cal.heldout_flagged, cal.heldout_fpr = flagged, flagged / n_check
        cal.heldout_interval = clopper_pearson(flagged, n_check, CONFIDENCE)
    return cal


def calibrate(bundle: Bundle, images: np.ndarray | Sequence[np.ndarray], fpr: float = 0.01,
              source: str = "held-out images", rule: str = "max") -> AnomalyCalibration:
    """calibrate_parts on ``images``: normal pictures the bundle's model never trained on (for a map
    bundle a list of (C, H, W) pictures at their own sizes, as Bundle.load_images gives them)."""
    if not 0 < fpr <= 0.5:
        raise UsageError(f"--fpr must be above 0 and at most 0.5, got {fpr}")
    if len(images) < MIN_IMAGES:
        raise AetoolError(f"calibration needs at least {MIN_IMAGES} held-out normal images, got {len(images)} "
                          f"(a {100 * fpr:g} % threshold needs {images_needed(fpr)})")
    if bundle.is_map:
        def read(indices: Sequence[int]) -> Iterator[list[np.ndarray]]:
            indices = list(indices)
            for start in range(0, len(indices), BATCH):
                yield [images[i] for i in indices[start : start + BATCH]]

        return _calibrate_map(bundle, len(images), read, fpr, source)
    sse, nll = [], []
    for start in range(0, len(images), BATCH * 4):
        s, v = parts(bundle, images[start : start + BATCH * 4])
        sse.append(s)
        nll.append(v)
    return calibrate_parts(np.concatenate(sse), np.concatenate(nll), fpr, source, rule)


def _calibrate_map(bundle: Bundle, n: int, read: "Callable[[Sequence[int]], Iterator[Sequence[np.ndarray]]]",
                   fpr: float, source: str, rule: str = "map") -> AnomalyCalibration:
    """A map bundle's calibration: the appearance model is fitted on the standardisation part's
    pictures (``read(indices)`` gives them a batch at a time), then every picture is scored with it
    (those of the standardisation part without their own neighbourhoods), and calibrate_parts
    splits the scores the same seeded way, so the threshold is set on pictures the model never saw.
    The score is the map's part alone (rule "map"): a picture wrong everywhere is far from normal
    appearance everywhere, and the latent NLL, which the reconstruction map needed for that, only
    added its noise to the verdicts on local defects (benchmarks/anomaly_maps.py)."""
    fitted = sorted(int(i) for i in split_parts(n, fpr)[0])
    model = AppearanceModel().fit((x for batch in read(fitted) for x in batch), count=len(fitted))
    owner = {index: k for k, index in enumerate(fitted)}
    pixels, sse, nll, done = PixelStats(), [], [], 0
    for batch in read(range(n)):
        owners = [owner.get(done + i) for i in range(len(batch))]
        s, v = map_parts(bundle, batch, pixels=pixels, appearance=Appearance(model, owners))
        sse.append(s)
        nll.append(v)
        done += len(batch)
    cal = calibrate_parts(np.concatenate(sse), np.concatenate(nll), fpr, source, rule)
    cal.appearance = model.to_params()
    return pixels.finish(cal)


# ---------------------------------------------------------------- what a calibration says, one rule everywhere
def percent(rate: float) -> str:
    return f"{100 * rate:.2f} %"


def measured(cal: AnomalyCalibration) -> str:
    """The held-out rate with its interval and the images behind it, as calibrate, export and info say it."""
    if cal.heldout_fpr is None or not cal.heldout_images:
        return "not measured"
    interval = cal.heldout_interval or clopper_pearson(cal.heldout_flagged or 0, cal.heldout_images, CONFIDENCE)
    return (f"{percent(cal.heldout_fpr)} on {cal.heldout_images} fresh held-out images "
            f"({100 * CONFIDENCE:g} % interval {100 * interval[0]:.2f}-{100 * interval[1]:.2f} %)")


def no_threshold_reason(cal: AnomalyCalibration | None) -> str:
    """Why a bundle has no threshold, and what sets one."""
    if cal is None:
        return "it was never calibrated (aetool calibrate sets one)"
    total = cal.images + (cal.standardisation_images or 0) + (cal.heldout_images or 0)
    lowest = smallest_fpr(total)
    return (f"a {100 * cal.fpr:g} % false-positive rate needs at least {cal.needed_images} calibration images and "
            f"{total} held-out images gave {cal.images}: aetool calibrate --data DIR with at least "
            f"{images_needed(cal.fpr)} normal images training never saw sets one"
            + (f" (or --fpr {lowest:g}, the lowest rate these images support)" if lowest is not None else ""))


def require_threshold(bundle: Bundle, option: str) -> AnomalyCalibration:
    """The one rule for every option that needs a verdict (--fail-on-anomaly, --figure): no threshold,
    no run, before any work, as a usage error."""
    cal = bundle.meta.anomaly
    if cal is None or cal.threshold is None:
        raise UsageError(f"{option} needs an anomaly threshold; bundle {bundle.name} has none: {no_threshold_reason(cal)}")
    return cal


def summary(cal: AnomalyCalibration | None) -> str:
    """One line on a bundle's calibration, the same in info, calibrate and export."""
    if cal is None or cal.threshold is None:
        return f"anomaly threshold: none ({no_threshold_reason(cal)})"
    how = (f"rank {cal.rank} of {cal.images} calibration scores" if cal.method == "conformal" else
           f"the {1 - cal.fpr:g} quantile of {cal.images} scores, an older calibration: aetool calibrate redoes it")
    rule = "the anomaly map's part" if cal.rule == "map" else f"{cal.rule} of the two parts"
    return (f"anomaly threshold {cal.threshold:.3f} ({rule}; {how}) for {100 * cal.fpr:g} % "
            f"false positives, set on {cal.source}; measured {measured(cal)}")


@dataclass
class ExportCalibration:
    calibration: AnomalyCalibration | None
    line: str


def export_calibration(bundle: Bundle, images: np.ndarray, fpr: float, source: str) -> ExportCalibration:
    """Export's calibration: never an error (the export's own work is done by then), always one line."""
    try:
        cal = calibrate(bundle, images, fpr, source)
    except AetoolError as e:
        return ExportCalibration(None, f"note: not calibrated for anomaly scores: {e}")
    return ExportCalibration(cal, "note: " + summary(cal) if cal.threshold is None else summary(cal))


# ---------------------------------------------------------------- where calibration images come from
@dataclass
class CalibrationSet:
    """Held-out normal images, as an array or as picture files to stream (never all in memory)."""

    source: str
    images: np.ndarray | Sequence[np.ndarray] | None = None  # a map bundle's: pictures of any sizes
    paths: list[Path] | None = None
    holder: str = "the set"  # what a "too few" message names: the user's folder or the run's split

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.paths or [])


def _training_record(bundle: Bundle) -> TrainingDataRecord:
    return TrainingDataRecord.from_meta(bundle.meta, f"bundle {bundle.path}: latent.json")


def _recorded_folder(record: TrainingDataRecord) -> Path | None:
    """The training folder latent.json names (a hint: shown, compared, never walked unasked)."""
    if record.is_mnist:
        return None
    return Path(record.root or record.data).expanduser()


CHANGED_SPLIT = ("its validation split now holds pictures the model trained on, which would set the threshold too "
                 "low; restore the folder, or calibrate on a folder of other normal pictures training never saw")


def calibration_set(bundle: Bundle, data: str | os.PathLike | None = None) -> CalibrationSet:
    """The images ``aetool calibrate`` sets a threshold on.

    With ``data`` (``--data DIR``, named by the user): the pictures in DIR, by the bundle's own
    preprocessing; where DIR is the folder the bundle was trained on, its held-out validation
    split (the seeded split training used), never its training images.  Without it: MNIST's test
    set for bundles trained on MNIST; a folder bundle's recorded folder is only named in the
    error, since latent.json is not hashed and a path in it is not the user's word."""
    record = _training_record(bundle)
    recorded = _recorded_folder(record)
    if data is None:
        if recorded is None:
            return _training_heldout(bundle, record, None)
        state = "" if recorded.is_dir() else ", which is not a folder here now"
        raise UsageError(f"bundle {bundle.name} was trained on {recorded} (as its latent.json records"
                         f"{state}): give --data DIR, that folder to calibrate on its validation split, or a folder "
                         f"of other normal images training never saw")
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--data {data}: not a folder of pictures")
    here = folder.resolve()
    if recorded is not None:
        trained = recorded.resolve()
        if here == trained:
            return _training_heldout(bundle, record, folder)
        if trained.is_relative_to(here) or here.is_relative_to(trained):
            raise UsageError(f"--data {data} overlaps {trained}, the folder this bundle was trained on: its training "
                             f"images would set the threshold too low; give that folder itself (its validation split "
                             f"is used) or one training never saw")
    from .embed import expand_inputs

    paths = expand_inputs([folder])
    if not paths:
        raise UsageError(f"--data {data}: no pictures in it")
    return CalibrationSet(f"{len(paths)} images of {data}", paths=paths, holder=f"--data {data} holds")


def _training_heldout(bundle: Bundle, record: TrainingDataRecord, folder: Path | None) -> CalibrationSet:
    """The run's own held-out images: MNIST's test set (of the normal class), or the validation split
    of its folder rebuilt from the validated record."""
    from .datasets import DataSelection, as_float, check_same_split, load_training_data

    source = str(folder) if folder is not None else "download" if record.data == "download" else None
    if bundle.is_map:  # whole pictures at their own size, as training held them out
        selection = DataSelection(data=source, val_split=record.val_split, seed=record.seed, limit=record.limit,
                                  channels=bundle.image_shape[0], own_size=True, max_side=record.max_side,
                                  crop=bundle.image_shape[1])
    else:
        selection = DataSelection(data=source, val_split=record.val_split, seed=record.seed,
                                  normal_class=record.normal_class, holdout=record.holdout, limit=record.limit,
                                  channels=record.channels, image_size=record.image_size, fit=record.fit)
    data = load_training_data(selection, quiet=True, log=lambda line: None)
    if record.validation_sha256 is not None:  # files added or removed move pictures between the parts
        check_same_split({"name": "folder", "validation_sha256": record.validation_sha256}, data,
                         f"--data {folder}", CHANGED_SPLIT)
    if bundle.is_map:
        return CalibrationSet(f"{len(data.heldout)} {data.heldout_name} pictures ({data.info.get('name')})",
                              images=data.heldout.floats(), holder=f"the run's {data.heldout_name} pictures are")
    if tuple(data.image.shape) != tuple(bundle.image_shape):
        raise AetoolError(f"{folder or 'the training data'} gives {'x'.join(map(str, data.image.shape))} images; "
                          f"bundle {bundle.name} takes {'x'.join(map(str, bundle.image_shape))}")
    source = f"{data.heldout_name} images ({data.info.get('name')})"
    return CalibrationSet(source, images=as_float(data.heldout[:]), holder=f"the run's {data.heldout_name} images are")


def parts_of_files(bundle: Bundle, paths: Sequence[Path], invert: bool | None = None,
                   progress: Callable[[Iterator], Iterator] = lambda it: it) -> tuple[np.ndarray, np.ndarray]:
    """SSE and NLL of picture files a batch at a time: a folder of any size in the memory of one batch."""
    sse, nll = [np.zeros(0)], [np.zeros(0)]
    batches = (list(paths[i : i + BATCH]) for i in range(0, len(paths), BATCH))
    for batch in progress(batches):
        s, v = parts(bundle, bundle.load_images(batch, invert=invert))
        sse.append(s)
        nll.append(v)
    return np.concatenate(sse), np.concatenate(nll)


def calibrate_set(bundle: Bundle, images: CalibrationSet, fpr: float, invert: bool | None = None,
                  progress: Callable[[Iterator], Iterator] = lambda it: it) -> AnomalyCalibration:
    """``aetool calibrate``: refuses (one line, nothing written) where the set cannot give the asked
    rate a threshold, so a working calibration is never replaced by none."""
    if not 0 < fpr <= 0.5:
        raise UsageError(f"--fpr must be above 0 and at most 0.5, got {fpr}")
    n = len(images)
    n_cal = split_sizes(n, fpr)[1] if n >= MIN_IMAGES else 0
    if n < MIN_IMAGES or conformal_rank(n_cal, fpr) is None:
        lowest = smallest_fpr(n)
        raise AetoolError(f"a {100 * fpr:g} % threshold needs at least {images_needed(fpr)} held-out normal images "
                          f"({conformal_minimum(fpr)} to set it), and {images.holder} {n}: "
                          f"give --data a folder of more normal images training never saw"
                          + (f", or --fpr {lowest:g} (the lowest rate these support)" if lowest is not None else ""))
    if images.images is not None:
        return calibrate(bundle, images.images, fpr, images.source)
    if bundle.is_map:
        paths = images.paths

        def read(indices: Sequence[int]) -> Iterator[list[np.ndarray]]:
            chosen = [paths[i] for i in indices]
            batches = (chosen[i : i + BATCH] for i in range(0, len(chosen), BATCH))
            for batch in progress(batches) if len(chosen) == len(paths) else batches:
                yield bundle.load_images(batch, invert=invert)

        return _calibrate_map(bundle, n, read, fpr, images.source)
    sse, nll = parts_of_files(bundle, images.paths, invert, progress)
    return calibrate_parts(sse, nll, fpr, images.source)


def heldout_images(bundle: Bundle) -> tuple[np.ndarray, str]:
    """MNIST's test set for an MNIST bundle (the benchmarks' and tests' way in)."""
    found = calibration_set(bundle)
    return found.images, found.source


def write_calibration(folder: Path, cal: AnomalyCalibration) -> None:
    """latent.json with the calibration, atomically; the graphs (and so their hashes) are untouched."""
    meta = read_meta(folder)
    meta.anomaly = cal
    write_meta(folder, meta)


def score_files(bundle: Bundle, paths: Sequence[str | os.PathLike], invert: bool | None = None, *,
                strict: bool = False, skipped: list[tuple[str, str]] | None = None,
                on_map: Callable[[str, np.ndarray, np.ndarray, np.ndarray], None] | None = None
                ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray, np.ndarray | None]]:
    """(paths, sse, nll, score or None without a calibration) a batch at a time.

    A file that cannot be read is left out and added to ``skipped`` as (path as written, reason),
    as ``aetool encode`` does, so one corrupt picture does not cost the scores of all the others;
    with ``strict`` it is the error.  A map bundle's ``on_map(path, picture, reconstruction, map)``
    sees each picture's anomaly map (map_parts)."""
    from .embed import readable_pictures

    cal = bundle.meta.anomaly
    for start in range(0, len(paths), BATCH):
        read = list(readable_pictures(bundle, paths[start : start + BATCH], strict, skipped, invert))
        if not read:
            continue
        if bundle.is_map:
            names = [str(p) for p, _ in read]
            seen = None if on_map is None else lambda i, x, y, m: on_map(names[i], x, y, m)  # noqa: E731
            sse, nll = map_parts(bundle, [x for _, x in read], on_map=seen)
        else:
            sse, nll = parts(bundle, np.stack([x for _, x in read]))
        yield [str(p) for p, _ in read], sse, nll, None if cal is None else combine(sse, nll, cal)


def flagged_examples(bundle: Bundle, paths: Sequence[str], scores: Sequence[float],
                     invert: bool | None = None) -> list:
    """The flagged pictures with their reconstructions, for ``aetool score --figure``."""
    from .anomaly_figure import Flagged

    if not paths:
        return []
    images = bundle.load_images(list(paths), invert=invert)
    if not bundle.is_map:
        recon = bundle.decode(bundle.encode(images))
        return [Flagged(str(p), float(s), images[i], recon[i]) for i, (p, s) in enumerate(zip(paths, scores))]
    from .anomaly_maps import heat_overlay

    cal, appearance = bundle.meta.anomaly, Appearance.of(bundle)
    out = []
    for x, p, s in zip(images, paths, scores):
        y = bundle.reconstruct_picture(x)
        heat = heat_overlay(x, appearance.map(0, x, y), cal.pixel_threshold if cal else None)
        out.append(Flagged(str(p), float(s), x, y, heat))
    return out

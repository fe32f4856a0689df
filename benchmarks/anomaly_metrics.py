"""Pixel-level scores of anomaly maps, as MVTec AD judges them (Bergmann et al., "The MVTec Anomaly
Detection Dataset", IJCV 2021).

Pixel AUROC alone flatters a map that finds the one large defect of a set and misses the small
ones: the large defect holds most of the anomalous pixels.  The per-region overlap (PRO) counts every
connected defect region once, whatever its size, and integrates only up to a false-positive rate of
0.3, where a map is still of use to a person looking at it.  Both AUROCs are aetool's own
(:func:`aetool.metrics.auroc`), so the benchmark and ``aetool score`` rank by one definition.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aetool.metrics import auroc  # noqa: E402


def _pixels(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's score (float64) and whether it is anomalous, over all pictures in one order; a
    score that is not a number ranks above every other, as :func:`aetool.metrics.auroc` ranks it."""
    if len(maps) != len(masks) or not len(maps):
        raise ValueError(f"one mask per map, and at least one: got {len(maps)} maps and {len(masks)} masks")
    for i, (m, k) in enumerate(zip(maps, masks)):
        if np.shape(m) != np.shape(k) or np.ndim(m) != 2:
            raise ValueError(f"picture {i}: the map {np.shape(m)} and the mask {np.shape(k)} must be one (H, W) shape")
    scores = np.nan_to_num(np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps]), nan=np.inf)
    positive = np.concatenate([np.asarray(k, dtype=bool).ravel() for k in masks])
    return scores, positive


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """AUROC of telling anomalous pixels (True in ``masks``) from normal ones by the maps' scores, over
    every pixel of every picture at once, as MVTec AD's pixel-level ROC: (H, W) maps and bool masks
    of one shape per picture.  A few million pixels take a second or two."""
    return auroc(*_pixels(maps, masks))


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of telling defective pictures (label 1) from normal ones by one score per picture."""
    return auroc(np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool))


def _regions(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Each pixel's region number over all pictures (0 outside every mask): the 8-connected
    components of each mask, numbered on from the last picture's."""
    from scipy import ndimage

    out, total = [], 0
    for k in masks:
        labelled, count = ndimage.label(np.asarray(k, dtype=bool), structure=np.ones((3, 3), dtype=int))
        out.append(np.where(labelled > 0, labelled + total, 0).ravel())
        total += count
    return np.concatenate(out)


def pro_curve(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              thresholds: int | None = 200, max_fpr: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """The points (FPR, PRO) of the per-region-overlap curve, FPR ascending, from (0, 0) to (1, 1).

    A threshold t marks the pixels whose score is above t.  PRO(t) is the mean over all ground-truth
    regions (8-connected components of every mask) of the share of the region marked; FPR(t) the
    share of normal pixels (outside every mask, over all pictures) marked (Bergmann et al. 2021).
    ``thresholds`` None takes every distinct score, the exact curve that MVTec AD's evaluation code
    computes; a number takes that many scores of normal pixels, at ranks spaced evenly in FPR over
    [0, ``max_fpr``], and the next distinct score of any pixel below the last of them: the range that
    is integrated is sampled finely however the scores are spread, every point lies on the exact
    curve, and the segment that crosses ``max_fpr`` is one of the exact curve's.  Between two points
    the curve is a straight line, which is also how pixels of one score (ties) count: as if marked
    one by one in random order.
    """
    scores, positive = _pixels(maps, masks)
    region = _regions(masks)
    count = int(region.max())
    if count == 0 or positive.all():
        raise ValueError("the PRO curve needs at least one anomalous region and one normal pixel")
    area = np.bincount(region)  # area[0]: the normal pixels
    # a pixel of a region weighs 1 / (its area * the number of regions): each region counts alike
    weight = np.where(positive, 1.0 / (count * area[region].clip(1)), 0.0)
    if thresholds is None:
        order = np.argsort(-scores, kind="stable")
        s = scores[order]
        fpr = np.cumsum(~positive[order]) / area[0]
        pro = np.cumsum(weight[order])
        last = np.append(s[1:] != s[:-1], True)  # a point after each group of equal scores
        fpr, pro = fpr[last], pro[last]
    else:
        normal = np.sort(scores[~positive])[::-1]
        ranks = np.floor(np.linspace(0, max_fpr, max(int(thresholds), 1)) * len(normal)).astype(int)
        t = np.unique(normal[np.minimum(ranks, len(normal) - 1)])[::-1]
        below = scores[scores < t[-1]]
        if below.size:  # the next point of the exact curve, past max_fpr: the integral ends on its segment
            t = np.append(t, below.max())
        normal_up = normal[::-1]
        fpr = (len(normal) - np.searchsorted(normal_up, t, side="right")) / area[0]
        anomalous = scores[positive]
        order = np.argsort(anomalous)
        cum = np.concatenate([[0.0], np.cumsum(weight[positive][order])])
        pro = cum[-1] - cum[np.searchsorted(anomalous[order], t, side="right")]
    fpr = np.concatenate([[0.0], np.clip(fpr, 0, 1), [1.0]])
    pro = np.concatenate([[0.0], np.clip(pro, 0, 1), [1.0]])
    return fpr, pro


def area_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """The trapezoid area under the points (x, y), x ascending, from x[0] to ``x_max``, the curve
    interpolated linearly at ``x_max``."""
    inside = x <= x_max
    xs, ys = x[inside], y[inside]
    nxt = int(inside.sum())
    if nxt < len(x) and xs[-1] < x_max:
        frac = (x_max - xs[-1]) / (x[nxt] - xs[-1])
        xs, ys = np.append(xs, x_max), np.append(ys, ys[-1] + frac * (y[nxt] - ys[-1]))
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def pro_auc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_fpr: float = 0.3,
            thresholds: int | None = 200) -> float:
    """The area under the PRO curve (:func:`pro_curve`) from FPR 0 to ``max_fpr``, divided by
    ``max_fpr`` so that a perfect map scores 1: MVTec AD's AU-PRO (Bergmann et al. 2021, at their
    limit of 0.3).  ``thresholds`` None gives the exact curve, every distinct score a threshold."""
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    fpr, pro = pro_curve(maps, masks, thresholds, max_fpr)
    return area_to(fpr, pro, max_fpr) / max_fpr

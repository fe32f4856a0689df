"""The anomaly-map benchmark's data and scores: synthetic defects on scikit-image's textures
(benchmarks/defects.py) and MVTec AD's pixel metrics (benchmarks/anomaly_metrics.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage.data")
pytest.importorskip("scipy.ndimage")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from anomaly_metrics import image_auroc, pixel_auroc, pro_auc, pro_curve  # noqa: E402
from defects import (KINDS, MIN_AREA, MIN_CHANGE, add_defect, defect_kinds, defect_set, sources,  # noqa: E402
                     split_columns, split_tiles, tiles)

SIZE = 64
SEEDS = range(4)


@pytest.fixture(scope="module")
def pictures() -> dict[str, np.ndarray]:
    return sources()


@pytest.fixture(scope="module")
def brick(pictures) -> np.ndarray:
    """A textured grey tile, the busiest of a few: a blur on it changes enough to be seen."""
    some = tiles(pictures["brick"], SIZE, np.random.default_rng(0), 8)
    return some[np.argmax(np.abs(np.diff(some, axis=-1)).mean(axis=(1, 2, 3)))]


@pytest.fixture(scope="module")
def colour(pictures) -> np.ndarray:
    return tiles(pictures["colour"], SIZE, np.random.default_rng(0), 1)[0]


def test_sources(pictures):
    assert set(pictures) == {"brick", "grass", "gravel", "colour"}
    for name, x in pictures.items():
        assert x.dtype == np.float32 and x.ndim == 3 and 0 <= x.min() and x.max() <= 1
        assert x.shape[0] == (3 if name == "colour" else 1), name


def check_defect(tile: np.ndarray, kind: str, seed: int, donor: np.ndarray | None, visible: bool = True) -> None:
    out, mask = add_defect(tile, kind, np.random.default_rng(seed), donor)
    assert out.dtype == np.float32 and out.shape == tile.shape and 0 <= out.min() and out.max() <= 1
    assert mask.dtype == bool and mask.shape == tile.shape[1:]
    assert np.array_equal(out[:, ~mask], tile[:, ~mask]), f"{kind}: a pixel outside the mask changed"
    assert mask.sum() >= MIN_AREA[kind] * mask.size, f"{kind}: mask of {mask.sum()} pixels"
    change = float(np.abs(out[:, mask].astype(np.float64) - tile[:, mask]).mean())
    if visible:
        assert change >= MIN_CHANGE, f"{kind}: mean change {change:.3f} inside the mask"
        assert (out != tile).any(axis=0)[mask].mean() > 0.9, f"{kind}: most of the mask unchanged"


@pytest.mark.parametrize("kind", KINDS)
def test_defect_on_grey_texture(kind, brick, pictures):
    for seed in SEEDS:
        check_defect(brick, kind, seed, pictures["gravel"])


@pytest.mark.parametrize("kind", KINDS)
def test_defect_on_colour(kind, colour, pictures):
    """A grey donor is repeated to colour; a blur of a smooth stretch of photograph may not be seen."""
    for seed in SEEDS:
        check_defect(colour, kind, seed, pictures["grass"], visible=kind != "blur")


def test_colour_donor_on_grey(brick, pictures):
    out, mask = add_defect(brick, "patch", np.random.default_rng(0), pictures["colour"])
    assert out.shape == brick.shape
    check_defect(brick, "patch", 0, pictures["colour"])


def test_defects_are_seeded(brick, pictures):
    state = np.random.get_state()
    for kind in KINDS:
        a = add_defect(brick, kind, np.random.default_rng(5), pictures["gravel"])
        b = add_defect(brick, kind, np.random.default_rng(5), pictures["gravel"])
        c = add_defect(brick, kind, np.random.default_rng(6), pictures["gravel"])
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), kind
        assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])), kind
    assert all(np.array_equal(s, t) if isinstance(s, np.ndarray) else s == t
               for s, t in zip(state, np.random.get_state())), "global random state touched"


def test_unknown_kind_and_missing_donor(brick):
    with pytest.raises(ValueError, match="unknown defect kind"):
        add_defect(brick, "dent", np.random.default_rng(0))
    with pytest.raises(ValueError, match="donor"):
        add_defect(brick, "patch", np.random.default_rng(0))


def test_split_tiles_disjoint_columns():
    """Each pixel holds its own column number, so the tiles say where they were cut."""
    width = 300
    picture = np.broadcast_to(np.arange(width, dtype=np.float32), (1, 96, width)).copy()
    (a0, a1), (b0, b1) = split_columns(width, 32)
    assert a0 == 0 and a1 == b0 and b1 == width
    train, test = split_tiles(picture, 32, 40, 30, seed=3)
    assert train.shape == (40, 1, 32, 32) and test.shape == (30, 1, 32, 32)
    assert train.min() >= a0 and train.max() < a1
    assert test.min() >= b0 and test.max() < b1
    assert train.max() < test.min()
    again_train, again_test = split_tiles(picture, 32, 10, 30, seed=3)
    assert np.array_equal(again_test, test) and np.array_equal(again_train, train[:10])
    with pytest.raises(ValueError):
        split_columns(60, 32)


def test_split_tiles_colour(pictures):
    train, test = split_tiles(pictures["colour"], SIZE, 5, 5, seed=0)
    assert train.shape == test.shape == (5, 3, SIZE, SIZE)


def test_defect_set(pictures):
    base = tiles(pictures["grass"], SIZE, np.random.default_rng(1), 12)
    out, masks, labels = defect_set(base, np.random.default_rng(2), [pictures["brick"]])
    assert labels.sum() == 6 and set(np.unique(labels)) == {0, 1}
    kinds = defect_kinds(labels)
    assert [k for k in kinds if k] == [KINDS[i % len(KINDS)] for i in range(6)]
    for x, y, m, label in zip(base, out, masks, labels):
        assert m.any() == bool(label)
        assert np.array_equal(x[:, ~m], y[:, ~m])
    _, _, labels2 = defect_set(base, np.random.default_rng(2), [pictures["brick"]])
    assert np.array_equal(labels, labels2)
    _, _, plain = defect_set(base, np.random.default_rng(2), [])
    assert "patch" not in defect_kinds(plain, with_patch=False)


def masks_and_maps(seed: int = 0, n: int = 6, size: int = 32) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        m = np.zeros((size, size), dtype=bool)
        for _ in range(int(rng.integers(0, 3))):
            y, x, h, w = rng.integers(0, size - 6, 2).tolist() + rng.integers(2, 7, 2).tolist()
            m[y : y + h, x : x + w] = True
        masks.append(m)
    masks[0][:3, :3] = True
    return masks, [rng.random((size, size)) for _ in range(n)]


def test_auroc_perfect_inverted_random():
    masks, noise = masks_and_maps()
    perfect = [m.astype(float) for m in masks]
    assert pixel_auroc(perfect, masks) == 1.0
    assert pixel_auroc([1 - p for p in perfect], masks) == 0.0
    assert abs(pixel_auroc(noise, masks) - 0.5) < 0.05
    labels = np.array([0, 1] * 500)
    assert image_auroc(labels * 2.0, labels) == 1.0
    assert image_auroc(-labels, labels) == 0.0
    assert abs(image_auroc(np.random.default_rng(0).random(1000), labels) - 0.5) < 0.05
    with pytest.raises(ValueError):
        pixel_auroc(perfect, masks[:-1])


@pytest.mark.parametrize("thresholds", [200, None])
def test_pro_perfect_and_inverted(thresholds):
    masks, _ = masks_and_maps()
    perfect = [m.astype(float) for m in masks]
    assert abs(pro_auc(perfect, masks, thresholds=thresholds) - 1.0) < 1e-6
    assert abs(pro_auc([1 - p for p in perfect], masks, thresholds=thresholds)) < 1e-6


@pytest.mark.parametrize("thresholds", [200, None])
def test_pro_one_of_two_regions(thresholds):
    """Two equal regions, the map marks one: PRO is 0.5 from FPR 0 on.  Where the missed region ties
    with the normal pixels (a map of zeros elsewhere), lowering the threshold past that score marks
    it together with all normal pixels, a straight line from (0, 0.5) to (1, 1): 0.5 + 0.5 * 0.3 / 2
    of the area.  Scored below every normal pixel, it stays missed until FPR 1: exactly 0.5."""
    mask = np.zeros((32, 32), dtype=bool)
    mask[4:10, 4:10] = mask[20:26, 20:26] = True
    found = np.zeros((32, 32))
    found[4:10, 4:10] = 1.0
    assert abs(pro_auc([found], [mask], thresholds=thresholds) - (0.5 + 0.5 * 0.3 / 2)) < 1e-9
    below = found + 0.5
    below[20:26, 20:26] = 0.0
    assert abs(pro_auc([below], [mask], thresholds=thresholds) - 0.5) < 1e-9


def brute_pro_auc(maps, masks, thresholds, max_fpr: float = 0.3) -> float:
    """The definition, threshold by threshold: regions by scipy, points sorted by threshold, the
    curve from (0, 0) (above every score) to (1, 1), the area to max_fpr segment by segment."""
    from scipy import ndimage

    regions = []  # (picture, bool region)
    for i, m in enumerate(masks):
        labelled, count = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, labelled == r) for r in range(1, count + 1)]
    normals = sum(int((~m).sum()) for m in masks)
    points = [(0.0, 0.0)]
    for t in sorted(thresholds, reverse=True):
        fpr = sum(int(((mp > t) & ~m).sum()) for mp, m in zip(maps, masks)) / normals
        pro = np.mean([((maps[i] > t) & r).sum() / r.sum() for i, r in regions])
        points.append((fpr, pro))
    points.append((1.0, 1.0))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1, x1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0), max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def test_pro_against_brute_force():
    """A tiny case with ties, two regions touching only at a corner (one region under 8-connectivity)."""
    masks, _ = masks_and_maps(seed=1, n=4, size=12)
    masks[1][:] = False
    masks[1][2:4, 2:4] = masks[1][4:6, 4:6] = True
    rng = np.random.default_rng(7)
    maps = [np.round(rng.random(m.shape) * 8) / 8 + 0.3 * m for m in masks]
    every = np.unique(np.concatenate([m.ravel() for m in maps]))
    normal = np.sort(np.concatenate([mp[~m] for mp, m in zip(maps, masks)]))[::-1]
    last = normal[int(0.3 * len(normal))]  # the normal score at FPR rank 0.3: the last threshold sampled
    sampled_at = np.concatenate([np.unique(normal[normal >= last]), [every[every < last].max(), every[-1]]])
    exact = pro_auc(maps, masks, thresholds=None)
    assert abs(exact - brute_pro_auc(maps, masks, every)) < 1e-12
    # with under 200 normal pixels to FPR 0.3, 200 thresholds take every normal score to there, the
    # next score of any pixel below them, and (for the point (0, 0)) the top score
    sampled = pro_auc(maps, masks, thresholds=200)
    assert 0.3 * len(normal) < 199 and abs(sampled - brute_pro_auc(maps, masks, sampled_at)) < 1e-12
    assert abs(pro_auc(maps, masks, max_fpr=1.0, thresholds=None) - brute_pro_auc(maps, masks, every, 1.0)) < 1e-12


def test_pro_sampled_close_to_exact():
    masks, noise = masks_and_maps(seed=2, n=8, size=48)
    maps = [x + 0.6 * m for x, m in zip(noise, masks)]
    assert abs(pro_auc(maps, masks) - pro_auc(maps, masks, thresholds=None)) < 0.01
    fpr, pro = pro_curve(maps, masks)
    assert fpr[0] == pro[0] == 0 and fpr[-1] == pro[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)

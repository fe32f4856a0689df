"""Synthetic defects on real textures: the data of the anomaly-map benchmark, made offline.

An anomaly map is judged the way MVTec AD judges one: against a mask of the pixels that are wrong.
MVTec AD itself is a download of several gigabytes behind a registration form, and the benchmarks
must run on machines that reach nothing, so the pictures here are textures and photographs that ship
inside scikit-image's wheel, with defects painted on them whose masks are known to the pixel.  The
kinds mirror MVTec AD's: thin strokes (its scratches and cracks), filled holes, a square of another
texture (contamination), a soft colour or brightness shift (stains, colour defects) and a local
blur (a defect that removes texture instead of adding it, which a map of squared error finds
hardest).  Each defect must be visible to a person: one that changes a few grey levels would test
the noise floor of the map, not its sense of where the picture is wrong.

Training and test tiles come from disjoint columns of each picture, so a map that memorised its
training tiles gains nothing on the test pixels.  Every random choice comes from the generator
passed in; nothing reads global random state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KINDS = ("scratch", "blob", "patch", "stain", "blur")
MIN_AREA = {"scratch": 0.003, "blob": 0.01, "patch": 0.01, "stain": 0.01, "blur": 0.01}  # share of the tile
MIN_CHANGE = 0.05  # mean absolute change inside the mask, over its pixels and channels, on [0, 1]
TRIES = 50  # draws of a defect before add_defect settles for the most visible one
TRAIN_SHARE = 2 / 3  # of each picture's columns, from the left; the rest are test columns
GREY = ("brick", "grass", "gravel")
COLOUR = ("astronaut", "chelsea", "rocket")


def sources() -> dict[str, np.ndarray]:
    """The benchmark's pictures, float32 (C, H, W) in [0, 1], by name.

    ``brick``, ``grass`` and ``gravel`` are scikit-image's grey textures, kept grey (C = 1, 512 x 512).
    ``colour`` is RGB (C = 3): scikit-image's colour photographs astronaut, chelsea and rocket, each cut
    to chelsea's width (451 columns, centred) and stacked top to bottom (1239 rows), so that the
    left-to-right split of :func:`split_tiles` takes training and test tiles from every photograph.
    Tiles that straddle a seam between two photographs occur on both sides of the split alike.
    """
    from skimage import data

    out = {name: (getattr(data, name)()[None] / 255.0).astype(np.float32) for name in GREY}
    photos = [getattr(data, name)()[..., :3] for name in COLOUR]
    width = min(p.shape[1] for p in photos)
    cut = [p[:, (p.shape[1] - width) // 2 : (p.shape[1] - width) // 2 + width] for p in photos]
    out["colour"] = np.ascontiguousarray((np.concatenate(cut, axis=0) / 255.0).astype(np.float32).transpose(2, 0, 1))
    return out


def tiles(picture: np.ndarray, size: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, C, size, size) float32: crops of a (C, H, W) picture at places drawn from ``rng``, one
    after another, so the first tiles of a larger draw are those of a smaller one."""
    c, h, w = picture.shape
    if min(h, w) < size:
        raise ValueError(f"a picture of {h} x {w} has no {size} x {size} tile")
    corners = rng.integers(0, (h - size + 1, w - size + 1), (n, 2))  # one (top, left) after another
    out = np.empty((n, c, size, size), dtype=np.float32)
    for i, (y, x) in enumerate(corners):
        out[i] = picture[:, y : y + size, x : x + size]
    return out


def split_columns(width: int, size: int, train_share: float = TRAIN_SHARE) -> tuple[tuple[int, int], tuple[int, int]]:
    """The column ranges [start, stop) of the training and the test region of a picture ``width``
    wide: the left ``train_share`` and the rest; each must hold a tile of ``size``."""
    cut = int(round(width * train_share))
    if cut < size or width - cut < size:
        raise ValueError(f"{width} columns split at {cut} leave no room for {size}-pixel tiles on both sides")
    return (0, cut), (cut, width)


def split_tiles(picture: np.ndarray, size: int, n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and test tiles of a (C, H, W) picture from disjoint columns (:func:`split_columns`),
    so no test pixel was seen in training.  The two draws use separate streams of ``seed``: asking for
    more training tiles does not change the test tiles."""
    (a0, a1), (b0, b1) = split_columns(picture.shape[2], size)
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return tiles(picture[:, :, a0:a1], size, train_rng, n_train), tiles(picture[:, :, b0:b1], size, test_rng, n_test)


def _to_channels(x: np.ndarray, c: int) -> np.ndarray:
    """A (C', H, W) picture with ``c`` channels: grey repeated to colour, colour averaged to grey."""
    if x.shape[0] == c:
        return x
    if x.shape[0] == 1:
        return np.repeat(x, c, axis=0)
    if c == 1:
        return x.mean(axis=0, keepdims=True)
    raise ValueError(f"cannot turn {x.shape[0]} channels into {c}")


def _region(h: int, w: int, rng: np.random.Generator, radius: tuple[float, float]) -> np.ndarray:
    """(H, W) float64: the normalised radius of an irregular ellipse, below 1 inside it.  Its semi-axes
    are ``radius`` shares of the tile's shorter side, its rim a wobble of three low harmonics, and its
    centre keeps it mostly inside the tile."""
    side = min(h, w)
    a, b = rng.uniform(*radius, 2) * side
    theta = rng.uniform(0, np.pi)
    r = max(a, b)
    cy = rng.uniform(min(r, h / 2), max(h - r, h / 2))
    cx = rng.uniform(min(r, w / 2), max(w - r, w / 2))
    dy, dx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = dy - cy, dx - cx
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
    phi = np.arctan2(v, u)
    rim = 1 + sum(amp * np.cos(k * phi + phase)
                  for k, amp, phase in zip((2, 3, 4), rng.uniform(0, 0.12, 3), rng.uniform(0, 2 * np.pi, 3)))
    return np.hypot(u, v) / rim


def _extreme(rng: np.random.Generator, bright: bool) -> float:
    return float(rng.uniform(0.85, 1.0) if bright else rng.uniform(0.0, 0.15))


def _scratch(tile: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A stroke 1 to 3 pixels wide along a line or a gentle quadratic curve, at least 0.4 of the tile long."""
    _, h, w = tile.shape
    side = min(h, w)
    while True:
        p0, p2 = rng.uniform((0, 0), (h - 1, w - 1), (2, 2))
        length = float(np.hypot(*(p2 - p0)))
        if length >= 0.4 * side:
            break
    normal = np.array([-(p2 - p0)[1], (p2 - p0)[0]]) / length
    bend = 0.0 if rng.random() < 0.5 else rng.uniform(-0.2, 0.2) * length
    p1 = (p0 + p2) / 2 + bend * normal
    t = np.linspace(0, 1, int(4 * length) + 2)[:, None]
    points = np.rint((1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t ** 2 * p2).astype(int)
    points = points[(points[:, 0] >= 0) & (points[:, 0] < h) & (points[:, 1] >= 0) & (points[:, 1] < w)]
    line = np.zeros((h, w), dtype=bool)
    line[points[:, 0], points[:, 1]] = True
    width = int(rng.integers(1, 4))
    mask = np.zeros_like(line)
    for dy in range(width):
        for dx in range(width):
            mask[dy:, dx:] |= line[: h - dy, : w - dx]
    new = np.full(tile.shape, _extreme(rng, rng.random() < 0.5))
    return new, mask


def _blob(tile: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A hole: an irregular ellipse filled with one dark or bright grey."""
    mask = _region(tile.shape[1], tile.shape[2], rng, (0.08, 0.2)) < 1
    return np.full(tile.shape, _extreme(rng, rng.random() < 0.5)), mask


def _patch(tile: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A square of the donor texture, 0.15 to 0.35 of the tile a side, pasted at a random place."""
    if donor is None:
        raise ValueError("a patch defect needs a donor picture of another texture")
    c, h, w = tile.shape
    side = min(h, w)
    s = int(rng.integers(max(int(np.ceil(np.sqrt(MIN_AREA["patch"] * h * w))), round(0.15 * side)), round(0.35 * side) + 1))
    s = min(s, donor.shape[1], donor.shape[2])
    y, x = int(rng.integers(0, donor.shape[1] - s + 1)), int(rng.integers(0, donor.shape[2] - s + 1))
    piece = _to_channels(np.asarray(donor[:, y : y + s, x : x + s], dtype=np.float64), c)
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    new = np.zeros(tile.shape)
    new[:, y : y + s, x : x + s] = piece
    mask = np.zeros((h, w), dtype=bool)
    mask[y : y + s, x : x + s] = True
    return new, mask


def _stain(tile: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A blend toward one colour (a grey tile: toward dark or bright), strongest at the centre of an
    irregular ellipse and fading toward its rim."""
    rho = _region(tile.shape[1], tile.shape[2], rng, (0.12, 0.3))
    mask = rho < 1
    alpha = np.where(mask, 0.2 + 0.8 * (1 - np.minimum(rho, 1) ** 2) ** 2, 0.0)
    mean = tile[:, mask].mean(axis=1) if mask.any() else tile.mean(axis=(1, 2))
    if tile.shape[0] == 1:
        target = np.array([_extreme(rng, bool(mean[0] < 0.5))])
    else:
        target = rng.uniform(0, 1, tile.shape[0])
        for _ in range(20):  # a colour that stands out from the region's own mean colour
            if np.abs(target - mean).mean() >= 0.3:
                break
            target = rng.uniform(0, 1, tile.shape[0])
    strength = rng.uniform(0.5, 0.8)
    return tile + strength * alpha * (target[:, None, None] - tile), mask


def _blur(tile: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The tile under a Gaussian blur of sigma 2 to 5 pixels, inside an irregular ellipse."""
    from skimage.filters import gaussian

    mask = _region(tile.shape[1], tile.shape[2], rng, (0.12, 0.3)) < 1
    blurred = gaussian(tile.astype(np.float64), sigma=float(rng.uniform(2.0, 5.0)), mode="reflect", channel_axis=0)
    return blurred, mask


_MAKERS = {"scratch": _scratch, "blob": _blob, "patch": _patch, "stain": _stain, "blur": _blur}


def add_defect(tile: np.ndarray, kind: str, rng: np.random.Generator,
               donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One defect of ``kind`` (one of :data:`KINDS`) on a (C, H, W) tile in [0, 1]: the defected tile,
    float32, and its (H, W) bool mask.

    The mask is the defect's region: every pixel outside it is bit-identical to the tile's, every
    pixel inside is the defect's (one that the defect happens to leave as it was, a blur over a flat
    patch, stays in the mask, as a person marking the defect would keep it).  A draw whose mask is
    under :data:`MIN_AREA` of the tile, or whose mean absolute change inside is under
    :data:`MIN_CHANGE`, is drawn again, up to :data:`TRIES` times; a tile where no draw is visible
    enough (a blur on a flat tile) gets the most visible one.  ``donor``, a (C', H', W') picture of
    another texture, is needed by "patch" only; its channels are made the tile's.
    """
    if kind not in _MAKERS:
        raise ValueError(f"unknown defect kind {kind!r}; the kinds are {', '.join(KINDS)}")
    tile = np.asarray(tile, dtype=np.float32)
    if tile.ndim != 3:
        raise ValueError(f"a tile is (C, H, W), got shape {tile.shape}")
    min_pixels = MIN_AREA[kind] * tile.shape[1] * tile.shape[2]
    best, best_change = None, -1.0
    for _ in range(TRIES):
        new, mask = _MAKERS[kind](tile, rng, donor)
        out = tile.copy()
        out[:, mask] = np.clip(new[:, mask], 0, 1)
        if mask.sum() < min_pixels:
            continue
        change = float(np.abs(out[:, mask].astype(np.float64) - tile[:, mask]).mean())
        if change >= MIN_CHANGE:
            return out, mask
        if change > best_change:
            best, best_change = (out, mask), change
    if best is None:
        raise ValueError(f"no {kind} defect of {MIN_AREA[kind]:.1%} of a {tile.shape[1]} x {tile.shape[2]} tile in {TRIES} draws")
    return best


def defect_set(tiles: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
               share: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A test set from (N, C, H, W) tiles: ``share`` of them, drawn from ``rng``, get one defect each,
    of a kind in rotation (:func:`defect_kinds` names them); the rest stay as they were.

    Returns the pictures (N, C, H, W) float32, the masks (N, H, W) bool (all False for a normal
    picture) and the labels (N,) int64, 1 for a defective picture.  A patch's donor is drawn from
    ``donors``, pictures of other textures than the tiles'; with no donors the rotation skips "patch".
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    n = len(tiles)
    kinds = KINDS if len(donors) else tuple(k for k in KINDS if k != "patch")
    chosen = np.sort(rng.permutation(n)[: int(round(share * n))])
    pictures = tiles.copy()
    masks = np.zeros((n, tiles.shape[2], tiles.shape[3]), dtype=bool)
    labels = np.zeros(n, dtype=np.int64)
    for i, j in enumerate(chosen):
        kind = kinds[i % len(kinds)]
        donor = donors[int(rng.integers(len(donors)))] if kind == "patch" else None
        pictures[j], masks[j] = add_defect(tiles[j], kind, rng, donor)
        labels[j] = 1
    return pictures, masks, labels


def defect_kinds(labels: np.ndarray, with_patch: bool = True) -> list[str | None]:
    """The kind of each picture's defect in a :func:`defect_set` (None for a normal one): the rotation
    over the defective pictures in order; ``with_patch`` False for a set made without donors."""
    kinds = KINDS if with_patch else tuple(k for k in KINDS if k != "patch")
    out: list[str | None] = []
    for label in np.asarray(labels):
        out.append(kinds[sum(k is not None for k in out) % len(kinds)] if label else None)
    return out

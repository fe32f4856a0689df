"""Folders of square patches cut from the colour photographs that ship inside scikit-image's wheel.

    python benchmarks/photo_patches.py OUT --size 64 --count 8000              # random patches of all photos
    python benchmarks/photo_patches.py OUT --size 64 --count 8000 --hold-out    # OUT/train and OUT/heldout

Real photographs, offline: scikit-image is a benchmark extra (``pip install -e ".[bench]"``),
never a dependency of aetool.  ``--hold-out`` keeps two photographs out of the training folder
entirely, so the held-out folder measures generalisation to pictures never seen, not to
neighbouring patches of the same picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HELD_OUT = ("coffee", "motorcycle_right")  # never in the training folder of the held-out split


def photographs() -> dict[str, np.ndarray]:
    """scikit-image's colour photographs, (H, W, 3) uint8."""
    import skimage.data as data

    left, right, _ = data.stereo_motorcycle()
    names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
    photos = {name: getattr(data, name)() for name in names}
    photos.update(motorcycle_left=left, motorcycle_right=right)
    return {k: np.ascontiguousarray(v[..., :3]) for k, v in photos.items()}


def cut(photos: dict[str, np.ndarray], size: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` patches at random places, each photograph drawn in proportion to its area."""
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    area = np.array([photos[n].shape[0] * photos[n].shape[1] for n in names], dtype=np.float64)
    which = rng.choice(len(names), size=count, p=area / area.sum())
    out = []
    for i in which:
        p = photos[names[i]]
        y, x = rng.integers(0, p.shape[0] - size + 1), rng.integers(0, p.shape[1] - size + 1)
        out.append(p[y : y + size, x : x + size])
    return out


def photo_crops(n: int, size: int, seed: int, names: tuple[str, ...]) -> np.ndarray:
    """(n, 3, size, size) uint8 crops of random side (size/2 to 4x size), place and mirror of the named
    photographs, resized with Pillow: more varied than same-size patches, for PCA's check at scale."""
    from PIL import Image

    photos = photographs()
    photos = [photos[name] for name in names]
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        im = photos[rng.integers(len(photos))]
        side = int(rng.integers(size // 2, min(4 * size, *im.shape[:2]) + 1))
        y, x = rng.integers(0, im.shape[0] - side + 1), rng.integers(0, im.shape[1] - side + 1)
        crop = Image.fromarray(im[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(crop).transpose(2, 0, 1)
    return out


def write(patches: list[np.ndarray], folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(patches):
        Image.fromarray(p).save(folder / f"{i:06d}.png")
    return folder


def make_folders(out: Path, size: int, count: int, *, hold_out: bool = False, seed: int = 0) -> dict[str, Path]:
    """The random split's one folder (aetool splits it), or the held-out split's two."""
    photos = photographs()
    if not hold_out:
        return {"all": write(cut(photos, size, count, seed), out)}
    seen = {k: v for k, v in photos.items() if k not in HELD_OUT}
    unseen = {k: v for k, v in photos.items() if k in HELD_OUT}
    return {"train": write(cut(seen, size, count, seed), out / "train"),
            "heldout": write(cut(unseen, size, max(count // 10, 1), seed + 1), out / "heldout")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--count", type=int, default=8000)
    ap.add_argument("--hold-out", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for name, folder in make_folders(a.out, a.size, a.count, hold_out=a.hold_out, seed=a.seed).items():
        print(f"{name}: {folder}")


if __name__ == "__main__":
    main()

"""Images to latent vectors on disk, and latent vectors back to pictures (``aetool encode`` / ``decode``).

Streaming by design: files are read, encoded and written a batch at a time, so a
million images never sit in memory at once.  ``.npy`` output is an N x d float32
array written through a memory map, with the image paths in row order in a
sidecar ``NAME.paths.txt``; ``.csv`` output has a ``path`` column and one column
per latent dimension.  Both appear under their final names only when complete.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import images as img
from .bundle import Bundle
from .errors import AetoolError, UsageError
from .fileio import atomic_path
from .progress import progress

BATCH = 256
LATENT_FORMATS = (".npy", ".csv")


def expand_inputs(items: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and the picture files inside folders, found as training finds them (folder.scan)."""
    from .folder import scan

    paths: list[Path] = []
    for item in map(Path, items):
        paths += scan(item)[0] if item.is_dir() else [item]
    return paths


def sidecar(out: Path) -> Path:
    """Where the image paths of an .npy of latents are listed, one a line, in row order."""
    return out.with_name(out.stem + ".paths.txt")


def _batches(bundle: Bundle, paths: Sequence[Path], strict: bool, invert: bool | None,
             skipped: list[tuple[str, str]]) -> Iterator[tuple[list[Path], np.ndarray]]:
    """(paths, latents) a batch at a time; unreadable files are skipped and recorded (or fatal with ``strict``)."""
    for start in range(0, len(paths), BATCH):
        ok, arrays = [], []
        for path in paths[start : start + BATCH]:
            try:
                arrays.append(bundle.load_images([path], invert=invert)[0])
                ok.append(path)
            except AetoolError as e:
                if strict:
                    raise
                skipped.append((str(path), str(e)))
        if ok:
            yield ok, bundle.encode(np.stack(arrays)).reshape(len(ok), bundle.d)


def encode_files(bundle: Bundle, items: Iterable[str | os.PathLike], out: str | os.PathLike, *, strict: bool = False,
                 invert: bool | None = None, quiet: bool = True) -> dict:
    """Encode every picture in ``items`` (files and folders) into ``out`` (.npy or .csv); returns a summary."""
    out = Path(out)
    if out.suffix.lower() not in LATENT_FORMATS:
        raise UsageError(f"{out}: latents are written as {' or '.join(LATENT_FORMATS)}")
    paths = expand_inputs(items)
    if not paths:
        raise UsageError("no images to encode")
    skipped: list[tuple[str, str]] = []
    batches = progress(_batches(bundle, paths, strict, invert, skipped), quiet=quiet, desc="encoding",
                       total=-(-len(paths) // BATCH), unit="batch")
    if out.suffix.lower() == ".npy":
        rows = _write_npy(out, len(paths), bundle.d, batches)
    else:
        rows = _write_csv(out, bundle.d, batches)
    if rows == 0:
        raise AetoolError(f"none of the {len(paths)} files could be read (e.g. {skipped[0][0]}: {skipped[0][1]})")
    return {"output": str(out), "rows": rows, "d": bundle.d, "skipped": [{"path": p, "error": e} for p, e in skipped],
            "paths": str(sidecar(out)) if out.suffix.lower() == ".npy" else None}


def _write_npy(out: Path, capacity: int, d: int, batches: Iterable[tuple[list[Path], np.ndarray]]) -> int:
    """Rows into a memory-mapped .npy (trimmed to the rows written where files were skipped) and their
    paths into the sidecar; both renamed into place only when complete."""
    with atomic_path(out) as tmp, atomic_path(sidecar(out)) as names:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(capacity, d))
        rows = 0
        with open(names, "w", encoding="utf-8", newline="\n") as listing:
            for batch_paths, z in batches:
                array[rows : rows + len(z)] = z
                rows += len(z)
                listing.writelines(f"{p}\n" for p in batch_paths)
        array.flush()
        if rows < capacity:  # some files were skipped: a file of exactly the rows written
            trimmed = np.array(array[:rows])
            del array
            with open(tmp, "wb") as f:
                np.save(f, trimmed)
        else:
            del array
    return rows


def _write_csv(out: Path, d: int, batches: Iterable[tuple[list[Path], np.ndarray]]) -> int:
    rows = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", *(f"z{i}" for i in range(d))])
        for batch_paths, z in batches:
            writer.writerows([str(p), *map(repr, map(float, row))] for p, row in zip(batch_paths, z))
            rows += len(z)
    return rows


def read_latents(path: str | os.PathLike, d: int) -> np.ndarray:
    """Latents from an .npy (N x d, or N x d x 1 x 1) or a .csv written by :func:`encode_files`."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            z = np.load(path, mmap_mode="r", allow_pickle=False)
        elif path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            z = np.asarray([[float(v) for v in row[1:]] for row in rows[1:]], dtype=np.float32)
        else:
            raise UsageError(f"{path}: latents are read from {' or '.join(LATENT_FORMATS)}")
    except FileNotFoundError:
        raise AetoolError(f"{path}: file not found") from None
    except (OSError, ValueError) as e:
        raise AetoolError(f"{path}: not a file of latents ({' '.join(str(e).split())[:120]})") from None
    if z.ndim < 2 or len(z) == 0 or int(np.prod(z.shape[1:])) != d:
        raise AetoolError(f"{path}: expected latents of size {d} (N x {d}), got shape {z.shape}")
    return z.reshape(len(z), d)


def decode_file(bundle: Bundle, latents: str | os.PathLike, out: str | os.PathLike, *, ncols: int | None = None,
                scale: int = 4, quiet: bool = True) -> dict:
    """Decode a file of latents into one grid picture, or into a folder of PNGs (``out`` ending in a slash
    or naming an existing folder)."""
    z = read_latents(latents, bundle.d)
    out_text = os.fspath(out)
    to_folder = out_text.endswith(("/", os.sep)) or Path(out_text).is_dir()
    out = Path(out_text)
    channels, height, width = bundle.image_shape
    if to_folder:
        img.check_output_size(height, width, scale, frames=len(z), lower="the number of latents or --scale")
        out.mkdir(parents=True, exist_ok=True)
        digits = len(str(len(z) - 1))
        for start in progress(range(0, len(z), BATCH), quiet=quiet, desc="decoding", unit="batch"):
            pictures = bundle.decode(np.asarray(z[start : start + BATCH]))
            for i, picture in enumerate(pictures, start):
                img.write_png(img.make_grid(picture[None], 1, pad=0), out / f"{i:0{digits}d}.png", scale=scale)
        return {"output": str(out), "images": len(z)}
    ncols = ncols or int(np.ceil(np.sqrt(len(z))))
    img.check_output_size(*img.grid_size(len(z), ncols, height, width), scale, lower="the number of latents or --scale")
    img.write_png(img.make_grid(bundle.decode(np.asarray(z)), ncols), out, scale=scale)
    return {"output": str(out), "images": len(z)}

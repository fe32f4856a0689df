"""Images to latent vectors on disk, and latent vectors back to pictures (``aetool encode`` / ``decode``).

Streaming by design: files are read, encoded and written a batch at a time, so a
million images never sit in memory at once.  ``.npy`` output is an N x d float32
array written through a memory map, with the image paths in row order in a
sidecar ``NAME.paths.txt``; ``.csv`` output has a ``path`` column and one column
per latent dimension.  Both appear under their final names only when complete.

Paths are written in one representation everywhere (sidecar, CSV, JSON, the terminal):
:func:`aetool.fileio.path_text`, UTF-8 with backslash escapes for a backslash, control
characters (a newline in a file name) and bytes that are not UTF-8, so a listing has
exactly one line per row; :func:`aetool.fileio.path_from_text` gives the file's name back.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .bundle import Bundle
from .errors import AetoolError, UsageError
from .fileio import atomic_path, path_text, stat_regular
from .image_output import OUTPUT_FORMATS, check_output_size, grid_size, make_grid, write_png
from .progress import progress

BATCH = 256
LATENT_FORMATS = (".npy", ".csv")
MAX_CSV_BYTES = 1 << 30  # a CSV of latents is parsed row by row, and refused past this size
NPY_MAGIC = b"\x93NUMPY"


def expand_inputs(items: Iterable[str | os.PathLike], skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Files as given, and the picture files inside folders, found as training finds them (folder.scan);
    sub-folders that cannot be read are added to ``skipped`` (path as written, reason)."""
    from .folder import scan

    paths: list[Path] = []
    for item in map(Path, items):
        unreadable: list[tuple[str, str]] = []
        paths += scan(item, unreadable)[0] if item.is_dir() else [item]
        if skipped is not None:
            skipped += [(path_text(os.path.join(item, rel)), reason) for rel, reason in unreadable]
    return paths


def without_path(message: str, path: str | os.PathLike) -> str:
    """A reading error without the file's name in front: the caller names the file itself."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def sidecar(out: Path) -> Path:
    """Where the image paths of an .npy of latents are listed, one a line, in row order."""
    return out.with_name(out.stem + ".paths.txt")


def readable_pictures(bundle: Bundle, paths: Iterable[Path], strict: bool, skipped: list[tuple[str, str]] | None,
                      invert: bool | None = None) -> Iterator[tuple[Path, np.ndarray]]:
    """Each path that reads, with its picture by the bundle's preprocessing.  A file that cannot be
    read is added to ``skipped`` as (path as written, reason), so one corrupt picture does not cost
    the others; with ``strict`` it is the error.  Lazy: files after the caller stops are not read."""
    for path in paths:
        try:
            picture = bundle.load_images([path], invert=invert)[0]
        except AetoolError as e:
            if strict:
                raise
            if skipped is not None:
                skipped.append((path_text(path), without_path(str(e), path)))
            continue
        yield path, picture


def _batches(bundle: Bundle, paths: Sequence[Path], strict: bool, invert: bool | None,
             skipped: list[tuple[str, str]]) -> Iterator[tuple[list[Path], np.ndarray]]:
    """(paths, latents) a batch at a time; unreadable files are skipped and recorded (or fatal with ``strict``)."""
    for start in range(0, len(paths), BATCH):
        read = list(readable_pictures(bundle, paths[start : start + BATCH], strict, skipped, invert))
        if read:
            yield [p for p, _ in read], bundle.encode(np.stack([x for _, x in read])).reshape(len(read), bundle.d)


def encode_files(bundle: Bundle, items: Iterable[str | os.PathLike], out: str | os.PathLike, *, strict: bool = False,
                 invert: bool | None = None, quiet: bool = True) -> dict:
    """Encode every picture in ``items`` (files and folders) into ``out`` (.npy or .csv); returns a summary.
    A map bundle writes latent maps instead (:func:`encode_maps`)."""
    if bundle.is_map:
        return encode_maps(bundle, items, out, strict=strict, quiet=quiet)
    out = Path(out)
    if out.suffix.lower() not in LATENT_FORMATS:
        raise UsageError(f"{out}: latents are written as {' or '.join(LATENT_FORMATS)}")
    skipped: list[tuple[str, str]] = []
    paths = expand_inputs(items, skipped)
    if not paths:
        raise UsageError("no images to encode")
    outputs = [out, sidecar(out)] if out.suffix.lower() == ".npy" else [out]
    for target in outputs:
        refuse_input_as_output(target, paths, "-o")
    batches = progress(_batches(bundle, paths, strict, invert, skipped), quiet=quiet, desc="encoding",
                       total=-(-len(paths) // BATCH), unit="batch")
    if out.suffix.lower() == ".npy":
        rows = _write_npy(out, len(paths), bundle.d, batches)
    else:
        rows = _write_csv(out, bundle.d, batches)
    if rows == 0:
        raise AetoolError(f"none of the {len(paths)} files could be read (e.g. {skipped[0][0]}: {skipped[0][1]})")
    return {"output": path_text(out), "rows": rows, "d": bundle.d, "skipped": [{"path": p, "error": e} for p, e in skipped],
            "paths": path_text(sidecar(out)) if out.suffix.lower() == ".npy" else None}


def _is_folder(out: str | os.PathLike) -> bool:
    text = os.fspath(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def map_file_names(paths: Sequence[Path]) -> list[str]:
    """One .npy name per picture in a folder of latent maps: its position, then its file's stem, so
    a listing sorted by name is in input order and two pictures named alike do not collide."""
    digits = len(str(max(len(paths) - 1, 0)))
    return [f"{i:0{digits}d}-{Path(p).stem or 'picture'}.npy" for i, p in enumerate(paths)]


def encode_maps(bundle: Bundle, items: Iterable[str | os.PathLike], out: str | os.PathLike, *, strict: bool = False,
                quiet: bool = True) -> dict:
    """A map bundle's ``aetool encode``: each picture at its own size (padded to a multiple of the
    factor) into a latent map.  ``out`` an .npy: one (N, d, h, w) float32 array, which needs every
    picture to have one padded size (a picture of another size is an error naming it), its paths
    in NAME.paths.txt; ``out`` a folder (ending in / or existing): one (d, h, w) .npy per picture,
    and the pictures' paths in DIR/paths.txt, one a line in the files' order.  Pictures are read and
    encoded one at a time; every file appears under its final name only when written whole."""
    to_folder = _is_folder(out)
    out = Path(out)
    if not to_folder and out.suffix.lower() != ".npy":
        raise UsageError(f"{path_text(out)}: a map bundle's latents are written as .npy, or into a folder DIR/ "
                         f"for one .npy per picture")
    skipped: list[tuple[str, str]] = []
    paths = expand_inputs(items, skipped)
    if not paths:
        raise UsageError("no images to encode")
    listing = out / "paths.txt" if to_folder else sidecar(out)
    for target in ([listing] if to_folder else [out, listing]):
        refuse_input_as_output(target, paths, "-o")
    pictures = progress(readable_pictures(bundle, paths, strict, skipped), quiet=quiet, desc="encoding",
                        total=len(paths), unit="picture")
    done: list[Path] = []
    shape: tuple[int, ...] | None = None
    if to_folder:
        out.mkdir(parents=True, exist_ok=True)
        names = dict(zip(paths, map_file_names(paths)))
        for path, x in pictures:
            z = bundle.encode_picture(x)
            with atomic_path(out / names[path]) as tmp, open(tmp, "wb") as f:
                np.save(f, z)
            done.append(path)
            shape = z.shape
        written = path_text(out)
    else:
        with atomic_path(out) as tmp:
            array = None
            for path, x in pictures:
                z = bundle.encode_picture(x)
                if array is None:
                    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(paths), *z.shape))
                elif z.shape != array.shape[1:]:
                    raise UsageError(f"{path_text(path)} gives a latent map of {tuple(z.shape)} (d, h, w), the "
                                     f"pictures before it {tuple(array.shape[1:])}: pictures of different sizes need "
                                     f"-o DIR/, one .npy each")
                array[len(done)] = z
                done.append(path)
            if array is not None:
                shape = (len(done), *array.shape[1:])
                array.flush()
                if len(done) < len(array):  # some files were skipped: a file of exactly the maps written
                    trimmed = np.array(array[: len(done)])
                    del array
                    with open(tmp, "wb") as f:
                        np.save(f, trimmed)
                else:
                    del array
        written = path_text(out)
    if not done:
        raise AetoolError(f"none of the {len(paths)} files could be read (e.g. {skipped[0][0]}: {skipped[0][1]})")
    with atomic_path(listing) as names_tmp, open(names_tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{path_text(p)}\n" for p in done)
    return {"output": written, "rows": len(done), "d": bundle.d, "shape": None if to_folder else list(shape or ()),
            "folder": to_folder, "skipped": [{"path": p, "error": e} for p, e in skipped], "paths": path_text(listing)}


def read_latent_map(path: str | os.PathLike, d: int) -> np.ndarray:
    """A map bundle's latents from an .npy: (N, d, h, w), or one (d, h, w) map as N = 1; any real
    number type; every value checked finite (a NaN decodes to a picture that looks like a result)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise UsageError(f"{path_text(path)}: a map bundle reads latent maps from .npy files (as aetool encode writes them)")
    stat_regular(path)
    z = _read_npy(path)
    if z.ndim == 3:
        z = z[None]
    if z.ndim != 4 or len(z) == 0 or z.shape[1] != d or min(z.shape[2:]) < 1:
        raise AetoolError(f"{path_text(path)}: expected latent maps of shape (N, {d}, h, w) or ({d}, h, w), "
                          f"got shape {z.shape}")
    for i in range(len(z)):
        if not np.isfinite(np.asarray(z[i])).all():
            raise AetoolError(f"{path_text(path)}: map {i + 1} holds a NaN or infinite latent value "
                              f"(or one beyond float32); nothing decoded")
    return z


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
                listing.writelines(f"{path_text(p)}\n" for p in batch_paths)
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
            writer.writerows([path_text(p), *map(repr, map(float, row))] for p, row in zip(batch_paths, z))
            rows += len(z)
    return rows


def refuse_input_as_output(out: Path, inputs: Sequence[str | os.PathLike], option: str) -> None:
    """An output file that is one of the inputs would be overwritten before (or while) it is read."""
    if not out.exists():
        return
    for p in inputs:
        try:
            if os.path.samefile(out, p):
                raise UsageError(f"{option} {path_text(out)} is one of the input files; aetool never writes over its input")
        except OSError:
            continue


def read_latents(path: str | os.PathLike, d: int) -> np.ndarray:
    """Latents from an .npy (N x d, or N x d x 1 x 1, any real number type) or a .csv written by
    :func:`encode_files`, every value checked finite: a NaN decodes to a black picture that looks
    like a result.  Only regular files are opened (a FIFO would block, /dev/zero never end), and a
    CSV is parsed a row at a time up to MAX_CSV_BYTES."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LATENT_FORMATS:
        raise UsageError(f"{path_text(path)}: latents are read from {' or '.join(LATENT_FORMATS)}")
    info = stat_regular(path)
    z = _read_npy(path) if suffix == ".npy" else _read_csv(path, d, info.st_size)
    if z.ndim < 2 or len(z) == 0 or int(np.prod(z.shape[1:])) != d:
        raise AetoolError(f"{path_text(path)}: expected latents of size {d} (N x {d}), got shape {z.shape}")
    z = z.reshape(len(z), d)
    _check_finite(path, z)
    return z


def _read_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
        if head[:2] == b"PK":
            raise AetoolError(f"{path_text(path)}: an .npz archive, not an .npy array (save one array with numpy.save)")
        if head != NPY_MAGIC:
            raise AetoolError(f"{path_text(path)}: not an .npy array (no NUMPY header)")
        z = np.load(path, mmap_mode="r", allow_pickle=False)
    except AetoolError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise AetoolError(f"{path_text(path)}: not a file of latents ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(z, np.ndarray) or z.dtype.fields is not None or z.dtype.kind not in "fiub":
        kind = "complex numbers" if getattr(z, "dtype", None) is not None and z.dtype.kind == "c" else f"dtype {z.dtype}"
        raise AetoolError(f"{path_text(path)}: latents must be real numbers, this array holds {kind}")
    if z.dtype == np.float32:
        return z  # stays a memory map: a folder of pictures is decoded a batch at a time
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(z, dtype=np.float32)  # values beyond float32 become inf: refused below


def _read_csv(path: Path, d: int, size: int) -> np.ndarray:
    if size > MAX_CSV_BYTES:
        raise AetoolError(f"{path_text(path)}: {size} bytes, more than the {MAX_CSV_BYTES >> 20} MiB of latents aetool "
                          f"reads from a CSV (write .npy for more)")
    blocks: list[np.ndarray] = []
    block: list[list[float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or header[0] != "path":
                raise AetoolError(f"{path_text(path)}: no header line 'path,z0,...' as aetool encode writes it")
            for row in reader:
                values = row[1:]
                if len(values) != d:
                    raise AetoolError(f"{path_text(path)}: row {sum(map(len, blocks)) + len(block) + 1} "
                                      f"(line {reader.line_num}) has {len(values)} latent values, expected {d}")
                try:
                    block.append([float(v) for v in values])
                except ValueError:
                    bad = next(v for v in values if not _is_number(v))
                    raise AetoolError(f"{path_text(path)}: line {reader.line_num}: {bad[:40]!r} is not a number") from None
                if len(block) == 4096:
                    blocks.append(_as_float32(block))
                    block = []
    except AetoolError:
        raise
    except UnicodeDecodeError:
        raise AetoolError(f"{path_text(path)}: not a CSV of latents (not UTF-8 text)") from None
    except csv.Error as e:
        raise AetoolError(f"{path_text(path)}: not a CSV of latents ({' '.join(str(e).split())[:120]})") from None
    except OSError as e:
        raise AetoolError(f"{path_text(path)}: cannot read ({e.strerror or e})") from None
    if block:
        blocks.append(_as_float32(block))
    return np.concatenate(blocks) if blocks else np.zeros((0, d), np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _as_float32(rows: list[list[float]]) -> np.ndarray:
    with np.errstate(over="ignore"):  # beyond float32: inf, refused by _check_finite
        return np.asarray(rows, dtype=np.float32)


def _check_finite(path: Path, z: np.ndarray) -> None:
    """Refuse NaN and infinite latents, naming the first row that holds one (1-based, as a reader counts)."""
    for start in range(0, len(z), 1 << 16):
        ok = np.isfinite(np.asarray(z[start : start + (1 << 16)])).all(axis=1)
        if not ok.all():
            row = start + int(np.argmin(ok))
            raise AetoolError(f"{path_text(path)}: row {row + 1} holds a NaN or infinite latent value "
                              f"(or one beyond float32); nothing decoded")


def decode_file(bundle: Bundle, latents: str | os.PathLike, out: str | os.PathLike, *, ncols: int | None = None,
                scale: int = 4, quiet: bool = True) -> dict:
    """Decode a file of latents into one grid picture, or into a folder of PNGs (``out`` ending in a slash
    or naming an existing folder)."""
    out_text = os.fspath(out)
    to_folder = out_text.endswith(("/", os.sep)) or Path(out_text).is_dir()
    out = Path(out_text)
    if not to_folder and out.suffix.lower() not in OUTPUT_FORMATS:
        raise UsageError(f"-o {path_text(out)}: use a picture name ending in one of "
                         f"{' '.join(sorted(OUTPUT_FORMATS))}, or a folder ending in /")
    if bundle.is_map:
        z = read_latent_map(latents, bundle.d)
        f = bundle.layout.factor
        height, width = z.shape[2] * f, z.shape[3] * f
    else:
        z = read_latents(latents, bundle.d)
        height, width = bundle.image_shape[1:]
    if to_folder:
        check_output_size(height, width, scale, frames=len(z), lower="the number of latents or --scale")
        out.mkdir(parents=True, exist_ok=True)
        digits = len(str(len(z) - 1))
        step = 1 if bundle.is_map else BATCH  # a map's picture may be large: one at a time
        for start in progress(range(0, len(z), step), quiet=quiet, desc="decoding", unit="batch"):
            pictures = bundle.decode(np.asarray(z[start : start + step]))
            for i, picture in enumerate(pictures, start):
                write_png(make_grid(picture[None], 1, pad=0), out / f"{i:0{digits}d}.png", scale=scale)
        return {"output": path_text(out), "images": len(z)}
    ncols = ncols or int(np.ceil(np.sqrt(len(z))))
    check_output_size(*grid_size(len(z), ncols, height, width), scale, lower="the number of latents or --scale")
    one = bundle.is_map and len(z) == 1  # one map: the picture itself, no grid border
    write_png(make_grid(bundle.decode(np.asarray(z)), ncols, pad=0 if one else 2), out, scale=scale)
    return {"output": path_text(out), "images": len(z)}

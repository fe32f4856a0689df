"""The lecture's comparison on a user's own folder of images: does the autoencoder beat PCA?

For each latent size d, a PCA run and a run of the default network family for
folders are found (``--runs``, or the runs ``aetool train`` would have written
to ``models/``) or trained, then scored on the folder's own validation split,
the images none of them trained on: SSE per image, PSNR, SSIM, and the
network's SSE over PCA's.  A figure per d shows originals, PCA's and the
network's reconstructions, one row each.

The models are evaluated as trained (PyTorch, from the run folders) rather than
exported, so a comparison costs no export; the numbers are of the raw outputs,
unclipped, as training reports them.  Every run compared must have seen the
same validation split (folder, image shape, fit, split and seed), else the
comparison would be of different images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UsageError
from ..fileio import write_bytes, write_json
from ..image_output import check_output_size, grid_size, make_grid, stack_rows, write_png
from ..metrics import psnr_from_sse, ssim_per_image
from .families import ArchConfig, get_family

PCA = "pca"
SPLIT_FIELDS = ("channels", "image_size", "fit", "val_split", "seed", "normal_class")  # what fixes the validation images
LABEL_WIDTH = 100  # pixels, at most, of the figure's row labels
EVAL_BATCH_BYTES = 32 << 20  # float32 bytes of validation images evaluated at once


@dataclasses.dataclass
class Candidate:
    path: Path
    family: str
    d: int
    config: dict[str, Any]
    metrics: dict[str, Any]


def _read_run(path: Path) -> Candidate:
    """A run to compare, checked whole: its family and d are those of the model its checkpoint holds
    (RunFolder.check_whole refuses a checkpoint that is not the model its metrics describe)."""
    from .run import CHECKPOINT, RunFolder

    run = RunFolder(path)
    if not run.has_metrics() or not run.exists():
        raise UsageError(f"--runs {path}: not a training run (no metrics.json and {CHECKPOINT})")
    state, metrics = run.check_whole()
    arch = ArchConfig.from_stored(state, str(path))
    if not metrics.get("complete"):
        raise UsageError(f"--runs {path}: training has not finished (aetool train --out {path} --resume)")
    return Candidate(Path(path), arch.family, arch.d, state["config"], metrics)


def _same_root(config: dict[str, Any], root: Path) -> bool:
    data = config.get("data")
    return data is not None and Path(data).expanduser().resolve() == root


def _check_split(c: Candidate, root: Path, split: dict[str, Any]) -> None:
    if not _same_root(c.config, root):
        raise UsageError(f"--runs {c.path}: trained on {c.config.get('data')!r}, not on {root}")
    differ = [k for k in SPLIT_FIELDS if c.config.get(k) != split[k]]
    if differ:
        raise UsageError(f"{c.path} was trained with {', '.join(f'{k}={c.config.get(k)!r}' for k in differ)}, this "
                         f"comparison has {', '.join(f'{k}={split[k]!r}' for k in differ)}: the runs compared must share "
                         f"the folder, image shape, --fit, --val-split and --seed")


def _train_config(root: Path, split: dict[str, Any], d: int, epochs: int, device: str, family: str | None):
    from .config import TrainConfig

    config = TrainConfig(d=d, data=str(root), epochs=epochs, device=device,
                         **{k: split[k] for k in SPLIT_FIELDS})
    if family is not None:
        config.model = family
    return config


def find_or_train(root: Path, split: dict[str, Any], ds: Sequence[int], *, runs: Sequence[Path] = (),
                  models_dir: Path = Path("models"), epochs: int = 10, device: str = "auto", quiet: bool = False,
                  log: Callable[[str], None] = print) -> dict[tuple[int, str], Candidate]:
    """{(d, "pca" | "net"): run}: the given runs first, then the runs ``aetool train`` would have written to
    ``models_dir`` for this folder when they match the split (and, for the network, the epochs), then the
    rest trained there (PCA, and the default family for folders)."""
    from .train import train

    found: dict[tuple[int, str], Candidate] = {}
    for path in runs:
        c = _read_run(path)
        _check_split(c, root, split)
        key = (c.d, PCA if get_family(c.family, f"--runs {path}").closed_form else "net")
        if key in found:
            raise UsageError(f"--runs names two {key[1]} runs of d={c.d}: {found[key].path} and {c.path}")
        found[key] = c
    for d in ds:
        for role in (PCA, "net"):
            if (d, role) in found:
                continue
            config = _train_config(root, split, d, epochs, device, PCA if role == PCA else None)
            config.validate()
            out = Path(models_dir) / config.default_run_name()
            if (out / "metrics.json").is_file():
                c = _read_run(out)
                try:
                    _check_split(c, root, split)
                except UsageError as e:
                    raise UsageError(f"{e} (give matching options, move the run away, or name runs with --runs)") from None
                if role != PCA and c.config.get("epochs") != epochs:
                    raise UsageError(f"{out} was trained for {c.config.get('epochs')} epochs, not --epochs {epochs}: "
                                     f"pass it with --runs to compare it as it is, or --epochs {c.config.get('epochs')}")
            else:
                log(f"training {config.model} d={d} on {root} -> {out}")
                train(config, out, quiet=quiet, log=(lambda s: None) if quiet else log)
                c = _read_run(out)
            found[(d, role)] = c
    return found


def evaluate_run(c: Candidate, heldout, n_show: int, device: str = "cpu") -> tuple[dict, np.ndarray]:
    """SSE, PSNR and SSIM of a run's reconstructions of the validation images (read a batch at a time),
    and its first ``n_show`` reconstructions."""
    from ..datasets import as_float
    from .model import forward_all
    from .run import RunFolder

    model, _ = RunFolder(c.path).load_model(best=True)  # the weights export ships
    pixels = int(np.prod(heldout.shape[1:]))
    batch = max(1, EVAL_BATCH_BYTES // (4 * pixels))
    sse, ssim, shown = [], [], []
    for start in range(0, len(heldout), batch):
        x = as_float(heldout[start : start + batch])
        recon = forward_all(model, x, device)
        sse.append(((recon.astype(np.float64) - x) ** 2).reshape(len(x), -1).sum(axis=1))
        ssim.append(ssim_per_image(x, recon))
        if sum(map(len, shown)) < n_show:
            shown.append(recon[: n_show - sum(map(len, shown))])
    sse_all, ssim_all = np.concatenate(sse), np.concatenate(ssim)
    row = {
        "d": c.d, "family": c.family, "run": str(c.path),
        "validation_sse_per_image": float(sse_all.mean()),
        "psnr_db": psnr_from_sse(float(sse_all.mean()), pixels),
        "ssim": float(ssim_all.mean()),
        "epochs": c.metrics.get("epochs_done"),
        "train_images": (c.metrics.get("data") or {}).get("train_images"),
    }
    return row, np.concatenate(shown)


def labelled(grids: Sequence[np.ndarray], labels: Sequence[str], gap: int = 8) -> np.ndarray:
    """The grids stacked, each with its label written to its left (Pillow's own small font)."""
    from PIL import Image, ImageDraw

    font_draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(int(font_draw.textlength(label)) for label in labels) + 8
    stacked = stack_rows(grids, gap=gap)
    if stacked.ndim == 2:
        stacked = np.repeat(stacked[:, :, None], 3, axis=2)
    canvas = Image.new("RGB", (width + stacked.shape[1], stacked.shape[0]), (64, 64, 64))
    canvas.paste(Image.fromarray(stacked), (width, 0))
    draw, y = ImageDraw.Draw(canvas), 0
    for grid, label in zip(grids, labels):
        draw.text((4, y + grid.shape[0] // 2), label, fill=(255, 255, 255), anchor="lm")
        y += grid.shape[0] + gap
    return np.asarray(canvas)


def markdown_table(rows: Sequence[dict], net: str) -> str:
    """One line per d: PCA's and the network's numbers side by side, and the network's SSE over PCA's."""
    by = {(r["d"], r["family"] == PCA): r for r in rows}
    lines = [f"| d | PCA SSE / image | {net} SSE / image | {net} / PCA | PCA PSNR (dB) | {net} PSNR (dB) | PCA SSIM | "
             f"{net} SSIM | {net} epochs |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in sorted({r["d"] for r in rows}):
        p, n = by[(d, True)], by[(d, False)]
        lines.append(f"| {d} | {p['validation_sse_per_image']:.2f} | {n['validation_sse_per_image']:.2f} | "
                     f"{n['validation_sse_per_image'] / p['validation_sse_per_image']:.3f} | {p['psnr_db']:.2f} | "
                     f"{n['psnr_db']:.2f} | {p['ssim']:.4f} | {n['ssim']:.4f} | {n['epochs']} |")
    return "\n".join(lines)


DEFAULT_DS = (8, 32, 128)


def compare_folder(data: str | Path, ds: Sequence[int] | None = None, out_dir: Path = Path("compare"), *,
                   image_size: int | None = None, channels: int | None = None, epochs: int = 10,
                   runs: Sequence[Path] = (), models_dir: Path = Path("models"), fit: str = "pad",
                   val_split: float = 0.1, seed: int = 0, n_show: int = 8, scale: int = 2, device: str = "auto",
                   quiet: bool = False, log: Callable[[str], None] = print) -> dict:
    """Compare PCA and the default network on ``data``'s validation images at each d in ``ds`` (default: the
    latent sizes of ``runs``, else :data:`DEFAULT_DS`): trains what ``runs`` and ``models_dir`` lack, writes
    ``recon-d<d>.png``, ``table.md`` and ``table.json`` to ``out_dir`` and returns the report (its
    ``table`` the markdown)."""
    from ..folder import is_image_folder
    from ..datasets import load_training_data
    from .device import torch_device

    if not is_image_folder(data):
        raise UsageError(f"--data {data}: not a folder of images")
    root = Path(data).expanduser().resolve()
    if (image_size is None or channels is None) and runs:  # the shape the given runs were trained at
        first = _read_run(Path(runs[0])).config
        image_size, channels = image_size or first.get("image_size"), channels or first.get("channels")
    config = _train_config(root, {"channels": channels, "image_size": image_size, "fit": fit, "val_split": val_split,
                                  "seed": seed, "normal_class": None}, 1, epochs, device, None)
    config.validate()
    heldout_data = load_training_data(config.selection(), quiet=quiet, log=log)
    image = heldout_data.image  # the shape the folder implies where none was asked for
    config = dataclasses.replace(config, channels=image.channels, image_size=image.height)
    split = {k: getattr(config, k) for k in SPLIT_FIELDS}
    heldout = heldout_data.heldout
    if len(heldout) == 0:
        raise UsageError(f"{root}: no validation images; raise --val-split or add images")
    shape = heldout_data.image.shape
    n_show = min(n_show, len(heldout))
    grid_h, grid_w = grid_size(n_show, n_show, shape[1], shape[2])
    check_output_size(3 * grid_h + 2 * 8, grid_w + LABEL_WIDTH, scale, lower="--scale")
    Path(out_dir).mkdir(parents=True, exist_ok=True)

    if ds is None:
        ds = sorted({_read_run(Path(r)).d for r in runs}) if runs else DEFAULT_DS
    found = find_or_train(root, split, ds, runs=runs, models_dir=models_dir, epochs=epochs, device=device,
                          quiet=quiet, log=log)
    eval_device = torch_device(device)
    originals = np.divide(heldout[:n_show], np.float32(255), dtype=np.float32)
    rows, figures = [], []
    for d in sorted({key[0] for key in found}):
        if (d, PCA) not in found or (d, "net") not in found:
            missing = "PCA" if (d, PCA) not in found else "network"
            raise UsageError(f"--runs gives d={d} without a {missing} run to compare it with")
        grids, labels = [make_grid(originals, n_show)], ["original"]
        for role in (PCA, "net"):
            row, recon = evaluate_run(found[(d, role)], heldout, n_show, eval_device)
            rows.append(row)
            grids.append(make_grid(recon, n_show))
            labels.append(f"{row['family']} d={d}")
            log(f"d={d:<4} {row['family']}: validation SSE/image {row['validation_sse_per_image']:.2f}  "
                f"PSNR {row['psnr_db']:.2f} dB  SSIM {row['ssim']:.4f}")
        path = Path(out_dir) / f"recon-d{d}.png"
        write_png(labelled(grids, labels), path, scale=scale)
        figures.append(path)
    nets = sorted({r["family"] for r in rows if r["family"] != PCA})
    net = "/".join(nets)
    ratios = {}
    for d in sorted({r["d"] for r in rows}):
        p, n = (next(r for r in rows if r["d"] == d and (r["family"] == PCA) == is_pca) for is_pca in (True, False))
        ratios[str(d)] = n["validation_sse_per_image"] / p["validation_sse_per_image"]
    table = markdown_table(rows, net)
    report = {"data": str(root), "image": list(shape), "validation_images": len(heldout),
              "train_images": heldout_data.info.get("train_images"), "split": split, "rows": rows,
              "sse_ratio_net_over_pca": ratios, "network_family": net, "n_show": n_show,
              "figures": [p.name for p in figures],
              "figure_rows": ["originals (validation images)", "PCA", net]}
    write_bytes(Path(out_dir) / "table.md", (table + "\n").encode())
    write_json(Path(out_dir) / "table.json", report)
    return {**report, "table": table}

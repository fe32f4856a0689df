"""Scoring and calibrating bundles on pictures on disk: what ``aetool score`` and ``aetool calibrate``
do, as functions a script can call.

The statistics (the score, the threshold's rank, the calibration record) are aetool.anomaly's;
this module walks the inputs, streams a CSV of any length in the memory of one batch, keeps the
most anomalous images for the figure, and writes a calibrated bundle in place or as a copy.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .anomaly import (calibrate_set, calibration_set, flagged_examples, is_anomalous, no_threshold_reason,
                      require_threshold, score_files, write_calibration)
from .anomaly_figure import MAX_SHOWN, write_score_figure
from .bundle import Bundle, shipped_root
from .bundle_format import AnomalyCalibration
from .embed import expand_inputs, refuse_input_as_output
from .errors import AetoolError, UsageError
from .fileio import atomic_dir, atomic_path, check_replaceable_dir, path_text

SHOWN_ROWS = 1000  # rows a report keeps for the terminal; the CSV (and --json) has them all
CSV_FIELDS = ["path", "sse", "nll", "score", "anomalous"]
MAP_FIELDS = ["map", "heatmap"]  # with --maps: where each picture's map and heat map are


@dataclass
class ScoreReport:
    """The outcome of :func:`score_pictures`: every row is in the CSV; ``shown`` holds the first
    :data:`SHOWN_ROWS`, ``rows`` all of them when asked for (``keep_all``)."""

    threshold: float | None
    calibration: AnomalyCalibration | None
    seen: int = 0
    flagged: int = 0
    shown: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    figure: Path | None = None
    maps: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report of ``aetool score --json``."""
        out = {"threshold": self.threshold, "flagged": self.flagged if self.threshold is not None else None,
               "images": self.rows, "skipped": [{"path": p, "error": e} for p, e in self.skipped]}
        if self.figure is not None:
            out["figure"] = str(self.figure)
        if self.maps is not None:
            out["maps"] = str(self.maps)
        return out


class MapWriter:
    """``score --maps``: each picture's map and heat map into the staging folder as it is made, under
    the name it will have in the final folder, and the manifest last."""

    def __init__(self, staging: Path, final: Path, paths: Sequence[Path], threshold: float | None) -> None:
        from .embed import map_file_names

        self.staging, self.final, self.threshold = staging, final, threshold
        self.names = {str(p): name[: -len(".npy")] for p, name in zip(paths, map_file_names(paths))}
        self.written: list[dict[str, str]] = []

    def files(self, path: str) -> dict[str, str]:
        stem = self.names[str(path)]
        return {"map": path_text(self.final / f"{stem}.npy"), "heatmap": path_text(self.final / f"{stem}.png")}

    def write(self, path: str, x: np.ndarray, y: np.ndarray, amap: np.ndarray) -> None:
        from .anomaly_maps import heat_overlay
        from .image_output import write_png

        stem = self.names[str(path)]
        with open(self.staging / f"{stem}.npy", "wb") as f:
            np.save(f, amap.astype(np.float32))
        write_png(heat_overlay(x, amap, self.threshold), self.staging / f"{stem}.png", scale=1)
        self.written.append({"path": path_text(Path(path)), **self.files(path)})

    def finish(self) -> None:
        from .fileio import write_json

        write_json(self.staging / MAPS_MANIFEST, {"pictures": self.written, "pixel_threshold": self.threshold})


MAPS_MANIFEST = "maps.json"  # what marks a folder as aetool score's maps, which a later --maps may replace


def _is_maps_folder(folder: Path) -> bool:
    return (folder / MAPS_MANIFEST).is_file()


def score_pictures(bundle: Bundle, inputs: Sequence[Path], *, csv_path: Path | None = None,
                   figure_path: Path | None = None, maps_dir: Path | None = None, needs_threshold: Sequence[str] = (),
                   strict: bool = False, invert: bool | None = None, keep_all: bool = False,
                   note: Callable[[str], None] | None = None,
                   progress: Callable[..., Iterator] = lambda it, **kw: it) -> ScoreReport:
    """Score the pictures of ``inputs`` (files, or folders searched recursively) against the bundle's
    threshold.  Outputs are checked before any work: none may be one of the inputs, and an output
    that needs a verdict (the figure, and the options named in ``needs_threshold``) refuses a bundle
    without a threshold.  ``note`` hears that nothing will be flagged when there is no threshold.

    ``maps_dir`` (a map bundle's): each picture's anomaly map as a float32 (H, W) ``.npy`` and a
    heat map over the picture as a ``.png``, named by position and file stem as ``encode -o DIR/``
    names latent maps, with maps.json listing them; the folder appears whole when every picture is
    scored, and replaces only a folder that was empty or an earlier --maps."""
    if maps_dir is not None and not bundle.is_map:
        raise UsageError(f"--maps: bundle {bundle.name} has one code per picture, not a latent map; "
                         f"its score has no per-pixel map (train with --arch map)")
    skipped: list[tuple[str, str]] = []
    paths = expand_inputs(inputs, skipped)
    for target, option in ((csv_path, "--csv"), (figure_path, "--figure"), (maps_dir, "--maps")):
        if target is not None:
            refuse_input_as_output(target, paths, option)
    if maps_dir is not None:
        check_replaceable_dir(maps_dir, ours=_is_maps_folder, what="--maps")
        where = Path(os.path.abspath(maps_dir))
        for p in [*paths, *(Path(i) for i in inputs if Path(i).is_dir())]:
            here = Path(os.path.abspath(p))
            if here.is_relative_to(where) or (here.is_dir() and where.is_relative_to(here)):
                raise UsageError(f"--maps {path_text(maps_dir)}: inside the input {path_text(p)} or holding it; "
                                 f"a later score would read its heat maps as pictures: name another folder")
    for option in (*needs_threshold, *(["--figure"] if figure_path is not None else [])):
        require_threshold(bundle, option)
    cal = bundle.meta.anomaly
    report = ScoreReport(threshold=None if cal is None else cal.threshold, calibration=cal, skipped=skipped)
    if report.threshold is None and note is not None:
        note(f"note: bundle {bundle.name} has no anomaly threshold, so nothing is flagged"
             f"{'' if cal is None else ' (scores only)'}: {no_threshold_reason(cal)}")
    scores_seen: list[np.ndarray] = []
    worst: list[tuple[float, Path]] = []  # a heap of the highest flagged (score, path) for the figure
    with contextlib.ExitStack() as stack:
        writer = None
        if csv_path is not None:
            f = stack.enter_context(open(stack.enter_context(atomic_path(csv_path)), "w", newline="", encoding="utf-8"))
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS + (MAP_FIELDS if maps_dir is not None else []))
            writer.writeheader()
        maps = None
        if maps_dir is not None:
            maps = MapWriter(stack.enter_context(atomic_dir(maps_dir, ours=_is_maps_folder)), Path(maps_dir), paths,
                             None if cal is None else cal.pixel_threshold)
        for batch, sse, nll, scores in progress(score_files(bundle, paths, invert, strict=strict, skipped=skipped,
                                                            on_map=None if maps is None else maps.write),
                                                desc="scoring", total=-(-len(paths) // 256)):
            flags = None if scores is None or report.threshold is None else is_anomalous(scores, report.threshold)
            rows = [{"path": path_text(path), "sse": float(sse[i]), "nll": float(nll[i]),
                     "score": None if scores is None or not math.isfinite(scores[i]) else float(scores[i]),
                     "anomalous": None if flags is None else bool(flags[i]),
                     **({} if maps is None else maps.files(path))} for i, path in enumerate(batch)]
            report.seen += len(rows)
            report.flagged += 0 if flags is None else int(flags.sum())
            report.shown += rows[: max(0, SHOWN_ROWS - len(report.shown))]
            if keep_all:
                report.rows += rows
            if writer is not None:
                writer.writerows(rows)
            if figure_path is not None:
                scores_seen.append(np.where(np.isfinite(scores), scores, np.inf))
                for path, r in zip(batch, rows):
                    if r["anomalous"]:
                        key = (math.inf if r["score"] is None else r["score"], path)
                        (heapq.heappush if len(worst) < MAX_SHOWN else heapq.heappushpop)(worst, key)
        if not report.seen:  # inside: no CSV or maps folder is left for a run that read nothing
            raise AetoolError(f"none of the {len(paths)} files could be read (e.g. {skipped[0][0]}: {skipped[0][1]})")
        if maps is not None:
            maps.finish()
    report.maps = None if maps_dir is None else Path(maps_dir)
    if figure_path is not None:
        write_score_figure(figure_path, np.concatenate(scores_seen) if scores_seen else np.zeros(0), cal,
                           flagged_examples(bundle, [p for _, p in worst], [v for v, _ in worst], invert),
                           report.flagged)
        report.figure = figure_path
    return report


def calibrate_bundle(bundle: Bundle, data: str | Path | None = None, fpr: float = 0.01, *, out: Path | None = None,
                     force: bool = False, invert: bool | None = None,
                     progress: Callable[..., Iterator] = lambda it, **kw: it) -> tuple[Path, AnomalyCalibration]:
    """Set the bundle's anomaly threshold on held-out normal images (``data``; default: the run's own
    held-out images) and store it in its latent.json, or in a copy at ``out``.  A shipped bundle is
    only ever copied; a folder of the user's is never swapped away unless it is a bundle (or ``force``)."""
    target = Path(out) if out is not None else bundle.path
    if out is None and bundle.path.resolve().is_relative_to(shipped_root().resolve()):
        raise UsageError(f"{bundle.path} ships with aetool: write a calibrated copy with --out DIR")
    copy = out is not None and target.resolve() != bundle.path.resolve()
    if copy:
        check_replaceable_dir(target, force=force)  # before the work
    images = calibration_set(bundle, data)
    cal = calibrate_set(bundle, images, fpr, invert,
                        lambda it: progress(it, desc="calibrating", total=-(-len(images) // 256)))
    if copy:
        with atomic_dir(target, force=force) as staging:
            for f in bundle.path.iterdir():
                if f.is_file():
                    shutil.copy2(f, staging / f.name)
            write_calibration(staging, cal)
    else:
        write_calibration(target, cal)
    return target, cal

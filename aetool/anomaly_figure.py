"""The picture behind ``aetool score --figure``: where the scores fall, and why images were flagged.

Top: the scored images' score histogram over the calibration images' (kept in latent.json, so no
training data is needed), the threshold marked.  Below: each flagged image (highest scores first) as
original | reconstruction | absolute difference (a map bundle: its anomaly map over the picture),
because a number alone does not tell a person whether the model missed a scratch or the whole picture.  Drawn with Pillow alone: the runtime
stays free of plotting libraries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .bundle_format import AnomalyCalibration
from .image_output import to_uint8, write_png

WIDTH, PLOT_H, MARGIN, TILE = 640, 200, 48, 84
GREY, BLUE, RED, INK = (170, 170, 170), (40, 110, 200), (210, 40, 40), (20, 20, 20)
MAX_SHOWN = 12


@dataclass
class Flagged:
    name: str
    score: float
    image: np.ndarray  # (C, H, W) float in [0, 1], as the model saw it
    reconstruction: np.ndarray
    heat: np.ndarray | None = None  # a map bundle's: the anomaly map over the picture, (H, W, 3) uint8


def _font(size: int = 13) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _tile(a: np.ndarray) -> Image.Image:
    """A (C, H, W) float picture, or an (H, W, 3) uint8 one, as a TILE-square thumbnail."""
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
        im = Image.fromarray(a)
    else:
        pixels = to_uint8(a)
        im = Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0))
    upscale = im.width < TILE
    return im.convert("RGB").resize((TILE, TILE), Image.NEAREST if upscale else Image.BILINEAR)


def _ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    step = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(step))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= step), default=step)
    return np.arange(np.ceil(lo / step) * step, hi + 1e-9, step)


def _histogram(draw: ImageDraw.ImageDraw, top: int, scores: np.ndarray, cal: AnomalyCalibration) -> None:
    font = _font()
    x0, x1, y0, y1 = MARGIN, WIDTH - 16, top, top + PLOT_H
    finite = scores[np.isfinite(scores)]
    edges_cal = np.asarray(cal.histogram["edges"]) if cal.histogram else None
    lo_hi = [cal.threshold]
    if len(finite):  # extreme scores are clipped into the end bins, not allowed to squash the plot
        lo_hi += [float(np.quantile(finite, 0.005)), float(np.quantile(finite, 0.995))]
    if edges_cal is not None:
        lo_hi += [edges_cal[0], edges_cal[-1]]
    lo, hi = min(lo_hi), max(lo_hi)
    if edges_cal is not None:  # at most twice the calibration's width past it: the normal scores stay readable
        width = edges_cal[-1] - edges_cal[0]
        lo, hi = max(lo, edges_cal[0] - 2 * width), min(hi, max(edges_cal[-1], cal.threshold) + 2 * width)
    pad = 0.05 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    beyond = int(np.sum(scores > hi))
    px = lambda v: x0 + (np.clip(v, lo, hi) - lo) / (hi - lo) * (x1 - x0)  # noqa: E731

    bins = np.linspace(lo, hi, 61)
    counts, _ = np.histogram(np.clip(finite, lo, hi), bins=bins)
    dens = counts / max(len(finite), 1) / np.diff(bins)
    cal_dens = (np.asarray(cal.histogram["counts"]) / max(sum(cal.histogram["counts"]), 1) / np.diff(edges_cal)
                if edges_cal is not None else np.zeros(0))
    top_dens = max(dens.max(initial=0), cal_dens.max(initial=0)) or 1.0
    py = lambda v: y1 - v / top_dens * (y1 - y0 - 14)  # noqa: E731

    for i, v in enumerate(cal_dens):
        if v > 0:
            draw.rectangle([px(edges_cal[i]), py(v), px(edges_cal[i + 1]), y1], fill=GREY)
    for i, v in enumerate(dens):  # the scored images as an outline over the grey calibration bars
        if v > 0:
            draw.rectangle([px(bins[i]), py(v), px(bins[i + 1]), y1], outline=BLUE, width=2)
    draw.line([x0, y1, x1, y1], fill=INK)
    for t in _ticks(lo, hi):
        draw.line([px(t), y1, px(t), y1 + 4], fill=INK)
        draw.text((px(t), y1 + 6), f"{t + 0.0:g}", fill=INK, font=font, anchor="mt")
    draw.text(((x0 + x1) / 2, y1 + 22), "anomaly score", fill=INK, font=font, anchor="mt")
    tx = px(cal.threshold)
    draw.line([tx, y0, tx, y1], fill=RED, width=2)
    draw.text((tx + 4, y0), f"threshold {cal.threshold:.3f}", fill=RED, font=font)
    legend = ([(GREY, None, f"calibration: {cal.images} normal images")] if edges_cal is not None else
              [(None, None, "(this bundle keeps no calibration histogram: recalibrate to see it)")])
    legend.append((None, BLUE, f"scored: {len(scores)} images"
                   + (f" ({beyond} beyond {hi:.3g}, counted in the last bin)" if beyond else "")))
    for i, (fill, outline, text) in enumerate(legend):  # on white, over whatever bars lie beneath
        y = y0 + 18 + 16 * i
        tx0 = x0 + 22 if (fill or outline) else x0 + 4
        draw.rectangle(draw.textbbox((tx0, y - 2), text, font=font), fill="white")
        if fill or outline:
            draw.rectangle([x0 + 4, y, x0 + 16, y + 10], fill=fill, outline=outline, width=2)
        draw.text((tx0, y - 2), text, fill=INK, font=font)


def write_score_figure(path: str | os.PathLike, scores: "np.ndarray | list[float]", cal: AnomalyCalibration,
                       flagged: list[Flagged], flagged_count: int) -> None:
    """Histogram of ``scores`` against the calibration and up to MAX_SHOWN ``flagged`` images, to ``path``."""
    scores = np.asarray(scores, dtype=np.float64)
    font = _font()
    shown = sorted(flagged, key=lambda f: -f.score)[:MAX_SHOWN]
    rows_top = 30 + PLOT_H + 44
    height = rows_top + 24 + max(len(shown), 1) * (TILE + 6) + 8
    canvas = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, 8), f"{flagged_count} of {len(scores)} images over the threshold "
              f"(calibrated at {100 * cal.fpr:g} % false positives)", fill=INK, font=_font(15))
    _histogram(draw, 30, scores, cal)
    if not shown:
        draw.text((MARGIN, rows_top), "no image is over the threshold", fill=INK, font=font)
    else:
        more = f" (the {len(shown)} highest of {flagged_count})" if flagged_count > len(shown) else ""
        third = "anomaly map (yellow: over the pixel threshold)" if shown[0].heat is not None else "absolute difference"
        draw.text((MARGIN, rows_top), f"flagged{more}: original | reconstruction | {third}", fill=INK, font=font)
    for i, f in enumerate(shown):
        y = rows_top + 24 + i * (TILE + 6)
        for j, a in enumerate((f.image, f.reconstruction,
                               np.abs(f.image - f.reconstruction) if f.heat is None else f.heat)):
            canvas.paste(_tile(a), (MARGIN + j * (TILE + 6), y))
        draw.text((MARGIN + 3 * (TILE + 6) + 8, y + TILE / 2 - 16), f"score {f.score:.3f}", fill=RED, font=font)
        draw.text((MARGIN + 3 * (TILE + 6) + 8, y + TILE / 2 + 2), f.name[-56:], fill=INK, font=font)
    write_png(np.asarray(canvas), path, scale=1)

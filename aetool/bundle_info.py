"""What ``aetool info`` and ``aetool list`` tell about bundles, as data a script can use and as
the lines a person reads.  Everything comes from latent.json through bundle_format's typed records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .anomaly import no_threshold_reason, summary as anomaly_summary
from .bundle import list_bundles, shipped_root
from .bundle_format import BundleMeta, StartRecord, finite_number, read_meta
from .errors import AetoolError


def layout_facts(m: BundleMeta) -> dict[str, Any]:
    """The latent's layout as numbers: kind, f, the multiple and least side pictures are padded to,
    latent values per picture value and the compression ratio (its inverse).  For a code vector,
    per picture of the image spec's size."""
    layout, image = m.latent, m.image
    per_value = layout.values_per_pixel(m.d, image.channels) if layout.is_map else m.d / math.prod(image.shape)
    return {"kind": layout.kind, "factor": layout.factor if layout.is_map else None,
            "multiple": layout.multiple if layout.is_map else None, "min_side": layout.min_side if layout.is_map else None,
            "values_per_pixel_value": per_value, "compression": 1 / per_value}


def layout_line(m: BundleMeta) -> str:
    """``latent: map, f=8, d=4: 0.0208 values per pixel value, 48x fewer; ...`` (or the code vector's)."""
    facts = layout_facts(m)
    ratio = f"{facts['values_per_pixel_value']:.4g} values per pixel value, {facts['compression']:.3g}x fewer"
    if m.latent.is_map:
        return (f"latent: map, f={facts['factor']}, d={m.d}: {ratio}; any picture size, padded by reflection to "
                f"multiples of {facts['multiple']} (at least {facts['min_side']}); the image size above is the "
                f"training crop")
    return f"latent: code vector, d={m.d} per {'x'.join(map(str, m.image.shape))} picture: {ratio}"


def describe(path: str | Path, meta: BundleMeta | None = None) -> dict[str, Any]:
    """latent.json's summary and records: the report of ``aetool info --json``."""
    m = meta or read_meta(Path(path))
    return {"path": str(path), **m.summary(), "layout": layout_facts(m),
            "graphs": {part: {"parameters": g.parameters, "macs_per_image": g.macs, "form": g.form}
                       for part, g in (("encoder", m.encoder), ("decoder", m.decoder))},
            "density_test_log_likelihood_per_dim": m.density_test_log_likelihood_per_dim,
            "training": m.training, "variant": m.variant, "anomaly": None if m.anomaly is None else m.anomaly.brief(),
            "no_threshold": None if m.anomaly is not None and m.anomaly.threshold is not None
            else no_threshold_reason(m.anomaly)}


def describe_lines(path: str | Path, meta: BundleMeta | None = None) -> list[str]:
    """The same as lines of text: shape, graphs' cost, densities, training, calibration, variant."""
    m = meta or read_meta(Path(path))
    lines = [f"{path}: {m.family}, d={m.d}, {m.precision}, image {'x'.join(map(str, m.image.shape))} in "
             f"{list(m.image.range)}, preprocessing {m.image.preprocessing}",
             layout_line(m),
             "graphs: " + "; ".join(f"{part} {_count(g.parameters)} parameters, {_count(g.macs)} multiply-adds per image"
                                    for part, g in (("encoder", m.encoder), ("decoder", m.decoder)))]
    scores = "".join(f", {k} {v:.3f}" for k, v in m.density_test_log_likelihood_per_dim.items())
    others = sorted(set(m.densities) - {m.default_density})
    lines.append(f"density {m.default_density} (default)" + "".join(f", {k}" for k in others)
                 + (f"; test log-likelihood per latent dim{scores}" if scores else ""))
    t = m.training_record
    options = t.options
    chain = " <- ".join(_start(entry) for entry in t.started_from)
    lines.append(f"trained {_fmt(t.epochs, 'd')} epoch(s) on {t.train_images} images: "
                 f"test SSE/image {_fmt(t.test_sse_per_image)}, PSNR {_fmt(t.test_psnr_db)} dB"
                 + (f"; started from {chain}: {_fmt(t.epochs_in_all, 'd')} epochs in all" if chain else "")
                 + (f"; weights the mean of its last {options.average_last} epochs" if options.average_last else "")
                 + (f"; {_shifted(options.shift)}" if options.shift else "")
                 + (f"; denoising, input noise {options.denoise:g}" if options.denoise else "")
                 + (f"; normal class {options.normal_class!r} only" if options.normal_class is not None else ""))
    if t.speed:
        lines.append(_speed(t.speed))
    lines.append(anomaly_summary(m.anomaly))
    if m.variant:
        v = m.variant
        lines.append(f"variant of {v.get('source')}: test SSE/image {_fmt(v.get('test_sse_per_image'))} "
                     f"(fp32 {_fmt(v.get('fp32_test_sse_per_image'))})")
    return lines


def list_rows(workspace: Path = Path("export")) -> list[dict[str, Any]]:
    """Every bundle found: the workspace's (newest first), then those the package ships; a bundle that
    cannot be read is a row with its ``error``."""
    rows = []
    for where, root in (("workspace", workspace), ("shipped", shipped_root())):
        for path in list_bundles(root):
            try:
                meta = read_meta(path)
            except AetoolError as e:
                rows.append({"where": where, "path": str(path), "name": path.name, "error": str(e)})
                continue
            size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
            rows.append({"where": where, "path": str(path), **meta.summary(), "bytes": size})
    return rows


def _count(n: int | None) -> str:
    """1.73 M, 105.2 M; "?" for a bundle exported before the counts were recorded."""
    return "?" if n is None else f"{n / 1e6:.2f} M" if n < 1e8 else f"{n / 1e9:.2f} G"


def _start(entry: StartRecord) -> str:
    """One start of a run's chain: its name, epochs, and how it differed (revived, moved pictures)."""
    notes = [f"{entry.epochs} epochs"] + (["revived"] if entry.revived else [])
    notes += [_shifted(entry.shift)] if entry.shift else []
    return f"{entry.run} ({', '.join(notes)})"


def _shifted(pixels: int) -> str:
    return f"shifted by up to {pixels} pixel{'s' if pixels != 1 else ''}"


def _speed(speed: dict[str, Any]) -> str:
    """How fast the training ran and on what: the CPU kind and the choices made for it."""
    rate, gflops = finite_number(speed.get("images_per_s")), finite_number(speed.get("gflop_per_s"))
    choices = ", ".join(str(speed[k]) for k in ("precision", "memory_format", "step") if speed.get(k))
    return (f"training speed: {_fmt(rate, '.0f')} images/s, {_fmt(gflops, '.1f')} GFLOP/s on {speed.get('cpu') or '?'}"
            + (f" ({choices})" if choices else ""))


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "?" if value is None else format(value, spec)

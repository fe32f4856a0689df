"""The bundle commands: describe (info), list, evaluate on MNIST, and the browser page (web)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import AetoolError, UsageError
from .common import Command, bundle_options, emit_json, examples, text_echo


@click.command(cls=Command, epilog=examples(
    "aetool web -o site/ && python -m http.server -d site     # then open http://localhost:8000",
    "aetool web --bundle cnn-d2 --bundle cnn-d16 -o site/",
    "aetool web --bundle export/photos --images photos/ -o site/ --json",
    "aetool web -o site/ --runtime node_modules/onnxruntime-web/dist",
))
@click.option("--bundle", "bundle_args", multiple=True, metavar="PATH|NAME",
              help="A bundle for the page (repeat for several; fp32 only); default as for every runtime command.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("site"), show_default=True,
              help="The site folder (replaced whole when it is a previous aetool site).")
@click.option("--runtime", "runtime_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="onnxruntime-web's dist folder to copy (default: aetool's cache, filled by scripts/install.sh or fetched from npm once).")
@click.option("--runtime-url", default=None, metavar="URL",
              help="Copy no runtime: the page loads onnxruntime-web from this URL (e.g. a CDN's dist/ folder; needs a network).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Pictures for the map of bundles not trained on MNIST digits (default: no points for them).")
@click.option("--points", type=click.IntRange(min=1, max=10_000), default=2000, show_default=True,
              help="Points on the latent map (MNIST test digits, or pictures of --images).")
@click.option("--force", is_flag=True, help="Replace -o even when it is a folder that is not an aetool site.")
@click.option("--strict", is_flag=True, help="An unreadable file in --images is an error (default: skipped, counted, named).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout instead of text.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def web(bundle_args, out, runtime_dir, runtime_url, images_dir, points, force, strict, as_json, quiet):
    """Write a static page that runs bundles in the browser (onnxruntime-web): latent map, sliders,
    drawing, interpolation and sampling.  Serve the folder with any static server; it works offline."""
    from ..web import build_site, check_site_target, find_runtime

    check_site_target(out, force)  # before the runtime is looked for or fetched
    echo = text_echo(quiet, as_json)
    runtime = find_runtime(runtime_dir, runtime_url, log=echo)
    report = build_site(bundle_args, out, runtime, images=images_dir, points=points, force=force, log=echo,
                        note=None if quiet else lambda line: click.echo(line, err=True), strict=strict)
    if as_json:
        emit_json(report)
        return
    names = ", ".join(b["name"] for b in report["bundles"])
    echo(f"wrote {out}/ ({report['bytes'] / 1e6:.1f} MB: {names}; onnxruntime-web "
         f"{'copied from ' + report['runtime'] if report['runtime_copied'] else 'loaded from ' + report['runtime']})")
    echo(f"serve it: python -m http.server -d {out}   (then open http://localhost:8000)")


@click.command(cls=Command, epilog=examples(
    "aetool evaluate                        # the default bundle on all 10,000 MNIST test digits",
    "aetool evaluate --bundle cnn-d16-int8 --images 1000 --json",
))
@click.option("--images", "n_images", type=click.IntRange(min=1, max=10_000), default=10_000, show_default=True,
              help="Evaluate on the first N MNIST test digits.")
@bundle_options
def evaluate(n_images, bundle, echo, quiet):
    """Score a bundle on the MNIST test set: SSE per image, PSNR and identity kept."""
    from ..classify import DigitClassifier
    from ..compare import evaluate as evaluate_bundle
    from ..mnist import mnist_test_head

    if bundle.meta.image.preprocessing != "mnist_digit":
        raise UsageError(f"evaluate scores MNIST digits; bundle {bundle.name} was trained on other images "
                         f"(its validation numbers are in aetool info)")
    test = mnist_test_head(n_images)
    row, _ = evaluate_bundle(bundle, test.images, test.labels, DigitClassifier(device="cpu"), n_show=min(36, n_images))
    echo(f"{bundle.name} on {n_images} test digits: SSE/image {row['test_sse_per_image']:.3f}, "
         f"PSNR {row['psnr_db']:.2f} dB, identity kept {100 * row['identity_kept']:.2f} %")
    return {"images": n_images, **row}


@click.command(cls=Command, epilog=examples("aetool info", "aetool info cnn-d2", "aetool info export/mine --json"))
@click.argument("bundle_arg", metavar="[BUNDLE]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print latent.json's summary and records as JSON.")
def info(bundle_arg, as_json):
    """Describe a bundle (BUNDLE: a folder or a name; default as for every runtime command)."""
    from ..bundle import resolve_bundle_path
    from ..bundle_format import read_meta

    path = resolve_bundle_path(bundle_arg, note=lambda line: click.echo(line, err=True))
    m = read_meta(path)
    from ..anomaly import no_threshold_reason, summary as anomaly_summary

    if as_json:
        emit_json({"path": str(path), **m.summary(),
                   "graphs": {part: {"parameters": g.parameters, "macs_per_image": g.macs, "form": g.form}
                              for part, g in (("encoder", m.encoder), ("decoder", m.decoder))},
                   "density_test_log_likelihood_per_dim": m.density_test_log_likelihood_per_dim,
                   "training": m.training, "variant": m.variant, "anomaly": None if m.anomaly is None else m.anomaly.to_dict(),
                   "no_threshold": None if m.anomaly is not None and m.anomaly.threshold is not None
                   else no_threshold_reason(m.anomaly)})
        return
    click.echo(f"{path}: {m.family}, d={m.d}, {m.precision}, image {'x'.join(map(str, m.image.shape))} in "
               f"{list(m.image.range)}, preprocessing {m.image.preprocessing}")
    click.echo("graphs: " + "; ".join(f"{part} {_count(g.parameters)} parameters, {_count(g.macs)} multiply-adds per image"
                                      for part, g in (("encoder", m.encoder), ("decoder", m.decoder))))
    scores = "".join(f", {k} {v:.3f}" for k, v in m.density_test_log_likelihood_per_dim.items())
    others = sorted(set(m.densities) - {m.default_density})
    click.echo(f"density {m.default_density} (default)" + "".join(f", {k}" for k in others)
               + (f"; test log-likelihood per latent dim{scores}" if scores else ""))
    config = m.training_config
    chain = " <- ".join(_start(entry) for entry in m.started_from)
    click.echo(f"trained {_fmt(m.training_number('epochs'), 'd')} epoch(s) on {m.train_images} images: "
               f"test SSE/image {_fmt(m.training_number('test_sse_per_image'))}, "
               f"PSNR {_fmt(m.training_number('test_psnr_db'))} dB"
               + (f"; started from {chain}: {_fmt(m.training_number('epochs_in_all'), 'd')} epochs in all" if chain else "")
               + (f"; weights the mean of its last {averaged} epochs" if (averaged := config.get("average_last")) else "")
               + (f"; {_shifted(shift)}" if (shift := config.get("shift")) else "")
               + (f"; denoising, input noise {noise:g}" if (noise := config.get("denoise")) else "")
               + (f"; normal class {normal!r} only" if (normal := config.get("normal_class")) is not None else ""))
    click.echo(anomaly_summary(m.anomaly))
    if m.variant:
        v = m.variant
        click.echo(f"variant of {v.get('source')}: test SSE/image {_fmt(v.get('test_sse_per_image'))} "
                   f"(fp32 {_fmt(v.get('fp32_test_sse_per_image'))})")


def _count(n: int | None) -> str:
    """1.73 M, 105.2 M; "?" for a bundle exported before the counts were recorded."""
    return "?" if n is None else f"{n / 1e6:.2f} M" if n < 1e8 else f"{n / 1e9:.2f} G"


@click.command("list", cls=Command, epilog=examples("aetool list", "aetool list --json"))
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_cmd(as_json):
    """List the bundles found: the workspace's ./export (newest first), then those the package ships."""
    from ..bundle import list_bundles, shipped_root
    from ..bundle_format import read_meta

    rows = []
    for where, root in (("workspace", Path("export")), ("shipped", shipped_root())):
        for path in list_bundles(root):
            try:
                meta = read_meta(path)
            except AetoolError as e:
                rows.append({"where": where, "path": str(path), "name": path.name, "error": str(e)})
                continue
            size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
            rows.append({"where": where, "path": str(path), **meta.summary(), "bytes": size})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no bundles found")
    click.echo(f"{'name':<16} {'where':<9} {'family':<6} {'d':>3} {'precision':<9} {'density':<17} {'size':>8}")
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']:<16} {r['where']:<9} unreadable: {r['error']}")
            continue
        click.echo(f"{r['name']:<16} {r['where']:<9} {r['family']:<6} {r['d']:>3} {r['precision']:<9} "
                   f"{r['default_density']:<17} {r['bytes'] / 1e6:>6.2f} MB")


def _start(entry: dict) -> str:
    """One start of a run's chain: its name, epochs, and how it differed (revived, moved digits)."""
    notes = [f"{entry.get('epochs')} epochs"] + (["revived"] if entry.get("revived") else [])
    notes += [_shifted(entry["shift"])] if entry.get("shift") else []
    return f"{entry.get('run')} ({', '.join(notes)})"


def _shifted(pixels: int) -> str:
    return f"shifted by up to {pixels} pixel{'s' if pixels != 1 else ''}"


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "?" if value is None else format(value, spec)


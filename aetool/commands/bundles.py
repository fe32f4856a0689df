"""The bundle commands: describe (info), list, evaluate on MNIST, and the browser page (web)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
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
    from ..bundle_info import describe, describe_lines

    path = resolve_bundle_path(bundle_arg, note=lambda line: click.echo(line, err=True))
    if as_json:
        emit_json(describe(path))
        return
    for line in describe_lines(path):
        click.echo(line)


@click.command("list", cls=Command, epilog=examples("aetool list", "aetool list --json"))
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_cmd(as_json):
    """List the bundles found: the workspace's ./export (newest first), then those the package ships."""
    from ..bundle_info import list_rows

    rows = list_rows()
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

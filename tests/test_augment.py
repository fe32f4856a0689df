"""``aetool train --shift``: random whole-pixel moves of the training digits; ``--denoise``: input noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aetool.training.augment import random_noise, random_shift, shift_images
from conftest import run_cli, usage_error


def shifted_reference(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """One H×W image moved, written out pixel by pixel."""
    h, w = image.shape
    out = np.zeros_like(image)
    for r in range(h):
        for c in range(w):
            if 0 <= r - down < h and 0 <= c - right < w:
                out[r, c] = image[r - down, c - right]
    return out


def test_shift_images_moves_each_image_by_its_own_offset():
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 7, 9), dtype=np.float32)
    offsets = np.array([[0, 0], [1, 0], [0, -2], [-3, 2], [2, 2], [-1, -1]])
    got = shift_images(torch.from_numpy(x), torch.from_numpy(offsets)).numpy()
    for i, (down, right) in enumerate(offsets):
        np.testing.assert_array_equal(got[i, 0], shifted_reference(x[i, 0], down, right))


def test_reflect_shift_fills_the_gap_with_the_pictures_mirrored_edge():
    """A photograph has no background: what a shift moves in is the picture's own edge, mirrored
    (numpy's "reflect" padding), not a black band."""
    rng = np.random.default_rng(1)
    x = rng.random((4, 3, 6, 8), dtype=np.float32)
    offsets = np.array([[0, 0], [2, 0], [0, -1], [-2, 2]])
    got = shift_images(torch.from_numpy(x), torch.from_numpy(offsets), fill="reflect").numpy()
    for i, (down, right) in enumerate(offsets):
        padded = np.pad(x[i], ((0, 0), (2, 2), (2, 2)), mode="reflect")
        np.testing.assert_array_equal(got[i], padded[:, 2 - down : 2 - down + 6, 2 - right : 2 - right + 8])
    assert got.min() > 0  # no zeros came in


def test_random_shift_draws_every_offset_in_range_and_keeps_inner_digits_whole():
    x = torch.zeros(400, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0  # a blob 10 pixels from every edge
    moved = random_shift(x, 3, torch.Generator().manual_seed(0))
    assert torch.equal(moved.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # nothing pushed off the image
    rows = moved[:, 0].sum(2).argmax(1) - 10  # first row of the blob, relative to where it was
    cols = moved[:, 0].sum(1).argmax(1) - 12
    assert set(rows.tolist()) == set(cols.tolist()) == set(range(-3, 4))
    again = random_shift(x, 3, torch.Generator().manual_seed(0))
    assert torch.equal(moved, again)
    assert random_shift(x, 0, torch.Generator()) is x


@pytest.mark.slow
def test_train_with_shift_differs_from_plain_and_resumes_to_the_same_weights(tmp_path):
    args = ["--d", "2", "--limit", "200", "--batch-size", "50", "--epochs", "2", "--quiet"]
    run_cli("train", *args, "--out", "plain", cwd=tmp_path)
    run_cli("train", *args, "--shift", "2", "--out", "shifted", cwd=tmp_path)
    run_cli("train", *args, "--shift", "2", "--stop-after", "1", "--out", "paused", cwd=tmp_path)
    run_cli("train", "--out", "paused", "--resume", "--quiet", cwd=tmp_path)
    load = lambda run: torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["model"]
    plain, shifted, paused = load("plain"), load("shifted"), load("paused")
    assert any(not torch.equal(plain[k], shifted[k]) for k in plain)
    for k in shifted:  # the shifts are drawn from the epoch's generator: a pause changes nothing
        torch.testing.assert_close(paused[k], shifted[k])
    m = json.loads((tmp_path / "shifted" / "metrics.json").read_text())
    assert m["config"]["shift"] == 2 and m["complete"]


@pytest.mark.parametrize("value", ["-1", "5"])
def test_shift_out_of_range_is_a_usage_error(tmp_path, value):
    usage_error(run_cli("train", "--d", "2", "--shift", value, cwd=tmp_path, check=False), "'--shift'")


def test_shift_past_the_digit_box_is_refused_in_a_recipe_too():
    from aetool.errors import UsageError
    from aetool.training.config import TrainConfig

    with pytest.raises(UsageError, match="--shift must be at least 0 and at most 4, got 5"):
        TrainConfig(shift=5).validate()


def test_random_noise_has_its_level_stays_in_range_and_repeats_with_the_generator():
    x = torch.full((200, 1, 28, 28), 0.5)
    noisy = random_noise(x, 0.1, torch.Generator().manual_seed(3))
    assert noisy.min() >= 0 and noisy.max() <= 1 and abs(float((noisy - x).std()) - 0.1) < 0.005
    assert torch.equal(noisy, random_noise(x, 0.1, torch.Generator().manual_seed(3)))
    assert random_noise(x, 0.0, torch.Generator()) is x
    edge = random_noise(torch.ones(10, 1, 4, 4), 0.5, torch.Generator().manual_seed(0))
    assert edge.max() == 1 and edge.min() >= 0  # clipped to the pixels' range


def test_denoising_training_differs_from_plain_and_is_recorded(tmp_path):
    args = ["train", "--d", "2", "--limit", "200", "--epochs", "1", "--batch-size", "50", "--quiet"]
    run_cli(*args, "--out", "plain", cwd=tmp_path)
    run_cli(*args, "--out", "noisy", "--denoise", "0.3", cwd=tmp_path)
    plain, noisy = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("plain", "noisy"))
    assert noisy["config"]["denoise"] == 0.3 and noisy["history"][0]["train_loss"] != plain["history"][0]["train_loss"]
    usage_error(run_cli(*args, "--out", "x", "--denoise", "1.5", cwd=tmp_path, check=False), "'--denoise'")

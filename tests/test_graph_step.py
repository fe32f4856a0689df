"""The training step as a CUDA graph (graph_step.py), checked on a CPU: the same warm-up, static
buffers, ragged-batch path and learning-rate tensor as on a GPU, with the step re-run instead of
replayed; and the fallback when capture fails.  The capture itself is checked on a GPU by
benchmarks/gpu_train.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aetool.training.config import TrainConfig
from aetool.datasets import as_float
from aetool.training.device import resolve_precision
from aetool.training.graph_step import GraphStep
from aetool.training.model import batch_on
from aetool.training.train import Trainer
from conftest import run_cli


class GraphedOnCpu(Trainer):
    """The graph path on a CPU: GraphStep re-runs its captured function instead of replaying a graph."""

    GRAPH_DEVICES = ("cuda", "cpu")


def tiny(**changes) -> TrainConfig:
    # 250 images in batches of 64: three full batches and a ragged one of 58 per epoch
    base = dict(d=3, width=8, limit=250, batch_size=64, epochs=2, schedule="cosine", precision="fp32", device="cpu")
    return TrainConfig(**{**base, **changes})


def trained(cls: type[Trainer], config: TrainConfig, out, **run) -> Trainer:
    trainer = cls(config, out, quiet=True, log=lambda s: None)
    trainer.metrics = trainer.run(**run)
    return trainer


def assert_same_run(a: Trainer, b: Trainer, rtol: float = 1e-5) -> None:
    for h, g in zip(a.metrics["history"], b.metrics["history"], strict=True):
        assert h["train_loss"] == pytest.approx(g["train_loss"], rel=rtol)
        assert h["test_sse_per_image"] == pytest.approx(g["test_sse_per_image"], rel=rtol)
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(v, b.model.state_dict()[k], rtol=rtol, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("changes", [{}, {"denoise": 0.3}, {"precision": "bf16"}], ids=["fp32", "denoise", "bf16"])
def test_graph_path_trains_like_the_eager_step(tmp_path, changes):
    config = tiny(**changes)
    eager = trained(Trainer, config, tmp_path / "eager")
    graphed = trained(GraphedOnCpu, config, tmp_path / "graph")
    assert eager.graph_step is None and graphed.lr_tensor is not None
    assert_same_run(eager, graphed)
    g = graphed.graph_step
    # epoch 1: three warm-up steps and the ragged batch eagerly; epoch 2: captured once, replayed three
    # times, the ragged batch again eager
    assert (g.captured, g.replays, g.eager_steps) == (True, 3, GraphStep.WARMUP + 2)
    assert g.aliased == ("denoise" not in changes)
    # the cosine schedule reached the captured step through the learning-rate tensor
    assert float(graphed.lr_tensor) == pytest.approx(graphed.lr_at(1))


@pytest.mark.slow
def test_graphed_checkpoints_resume_anywhere(tmp_path):
    """A paused graphed run resumes eagerly (as on a machine without a GPU) and the reverse, to the same weights."""
    config = tiny(epochs=3)
    straight = trained(Trainer, config, tmp_path / "straight")
    first = trained(GraphedOnCpu, config, tmp_path / "a", stop_after=1)
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    group = state["optimizer"]["param_groups"][0]
    assert type(group["lr"]) is float and group["capturable"] is False  # nothing of the graph in the file
    second = trained(Trainer, config, tmp_path / "a", resume=True, stop_after=2)
    third = trained(GraphedOnCpu, config, tmp_path / "a", resume=True)
    assert first.metrics["epochs_done"] == 1 and second.metrics["epochs_done"] == 2
    assert third.optimizer.param_groups[0]["lr"] is third.lr_tensor
    assert_same_run(straight, third)


@pytest.mark.slow
def test_a_failed_capture_goes_on_eagerly_and_says_so(tmp_path):
    lines: list[str] = []
    config = tiny()
    eager = trained(Trainer, config, tmp_path / "eager")
    trainer = GraphedOnCpu(config, tmp_path / "failed", quiet=True, log=lines.append)
    trainer.graph_step.capture = True  # ask for a real CUDA graph where this build has none
    trainer.metrics = trainer.run()
    assert trainer.graph_step.failed and not trainer.graph_step.captured
    assert sum("CUDA graph capture failed" in line for line in lines) == 1
    assert trainer.metrics["step"].startswith("eager (capture failed: ")
    assert_same_run(eager, trainer)


def test_auto_precision_follows_the_measured_path(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda, graphed=True) == "bf16"
    assert resolve_precision("auto", cuda, graphed=False) == "fp32"
    assert resolve_precision("fp32", cuda, graphed=True) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda, graphed=True) == "fp32"


def test_uint8_batches_are_scaled_on_the_device_exactly_as_on_the_host():
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 7, 7), dtype=np.uint8)
    np.testing.assert_array_equal(batch_on(images, "cpu").numpy(), as_float(images))
    floats = as_float(images)
    np.testing.assert_array_equal(batch_on(floats, "cpu").numpy(), floats)


@pytest.mark.slow
def test_cli_turns_the_graph_off_and_records_how_steps_ran(tmp_path):
    run_cli("train", "--d", "2", "--limit", "100", "--epochs", "1", "--quiet", "--no-cuda-graph", "--out", "r",
            cwd=tmp_path)
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["config"]["cuda_graph"] is False and m["step"] == "eager"
    assert "--no-cuda-graph" in run_cli("train", "--help-all", cwd=tmp_path).stdout

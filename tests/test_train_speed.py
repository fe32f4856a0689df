"""The training step's speed choices: precision and memory format per CPU kind (flags faked), the
compiled step against the eager one and its fallback, and the speed record in metrics.json and info."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from aetool.training import device
from aetool.training.compiled_step import CompiledStep, should_compile, speed_record
from aetool.training.device import AMX, AVX2, AVX512, AVX512_BF16, OTHER, channels_last_for, cpu_kind, resolve_precision
from aetool.training.model import reconstruction_loss

from conftest import run_cli

AVX2_FLAGS = {"sse4_2", "avx", "avx2", "fma"}
AVX512_FLAGS = AVX2_FLAGS | {"avx512f", "avx512bw", "avx512_vnni"}
BF16_FLAGS = AVX512_FLAGS | {"avx512_bf16"}
AMX_FLAGS = BF16_FLAGS | {"amx_bf16", "amx_tile"}
CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, capability, env, kind", [
    (AMX_FLAGS, "AVX512", {}, AMX),
    (BF16_FLAGS, "AVX512", {}, AVX512_BF16),
    (AVX512_FLAGS, "AVX512", {}, AVX512),
    (AVX2_FLAGS, "AVX2", {}, AVX2),
    (set(), "DEFAULT", {}, OTHER),
    # what PyTorch's kernels or oneDNN's are told to use caps the kind: an AVX2 machine, emulated
    (BF16_FLAGS, "AVX2", {}, AVX2),
    (BF16_FLAGS, "AVX512", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, AVX2),
    (AMX_FLAGS, "AVX512", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, AVX512_BF16),
])
def test_cpu_kind_from_flags(flags, capability, env, kind):
    assert cpu_kind(flags, capability, env) == kind


@pytest.mark.parametrize("kind, precision, channels_last", [
    (AMX, "bf16", True), (AVX512_BF16, "bf16", True), (AVX512, "fp32", False), (AVX2, "fp32", False), (OTHER, "fp32", False),
])
def test_auto_precision_and_memory_format_per_cpu_kind(monkeypatch, kind, precision, channels_last):
    """auto: bf16 with channels_last only where bf16 is native; contiguous fp32 everywhere else,
    even where the library claims bf16 support (it emulates it on AVX2)."""
    monkeypatch.setattr(device, "cpu_kind", lambda *a, **k: kind)
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    chosen = resolve_precision("auto", CPU)
    assert chosen == precision
    assert channels_last_for(CPU, chosen) is channels_last
    # an explicit bf16 on an AVX2 machine is honoured, but in plain NCHW
    assert channels_last_for(CPU, "bf16") is (kind in (AMX, AVX512_BF16))
    assert resolve_precision("fp32", CPU) == "fp32"


def test_trainer_builds_the_model_in_the_chosen_format(monkeypatch, tmp_path):
    from aetool.training.config import TrainConfig
    from aetool.training.train import Trainer

    for kind, layout in ((AVX2, torch.contiguous_format), (AVX512_BF16, torch.channels_last)):
        monkeypatch.setattr(device, "cpu_kind", lambda *a, k=kind, **kw: k)
        monkeypatch.setattr("aetool.training.train.cpu_kind", lambda *a, k=kind, **kw: k)
        monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
        trainer = Trainer(TrainConfig(d=4, epochs=1, limit=100, device="cpu"), tmp_path / kind, quiet=True, log=lambda s: None)
        conv = next(m for m in trainer.model.modules() if isinstance(m, nn.Conv2d))
        assert trainer.cpu_kind == kind
        assert conv.weight.is_contiguous(memory_format=layout)
        assert trainer.speed(100.0)["memory_format"] == ("channels_last" if layout is torch.channels_last else "contiguous")


def _tiny_step(seed: int = 0):
    """A Conv + BatchNorm + SiLU network and its forward-and-loss, as the Trainer's step has them."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.SiLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward_loss(x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(x, model(x_in))

    return model, forward_loss


def _losses_and_grads(step, model, batches):
    out = []
    for x in batches:
        model.zero_grad(set_to_none=True)
        loss = step(x, x)
        loss.backward()
        out.append((loss.detach().clone(), [p.grad.clone() for p in model.parameters()]))
    return out


@pytest.mark.slow  # inductor compiles C++: a minute or more on 2 shared cores
def test_compiled_step_matches_eager_and_runs_a_ragged_batch_eagerly():
    torch.manual_seed(1)
    batches = [torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8), torch.rand(3, 1, 8, 8)]
    eager_model, eager = _tiny_step()
    compiled_model, forward = _tiny_step()
    step = CompiledStep(forward, compile=True, log=lambda s: None)
    want = _losses_and_grads(eager, eager_model, batches)
    got = _losses_and_grads(step, compiled_model, batches)
    if step.failed:  # no C++ compiler here: the fallback ran, which is what a user would get
        pytest.skip(f"torch.compile unavailable here: {step.failed}")
    assert step.kind == "compiled" and step.compile_seconds is not None and step.compile_seconds > 0
    assert step.eager_steps == 1  # the ragged last batch, not a second compile
    for (loss_e, grads_e), (loss_c, grads_c) in zip(want, got):
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)
        for ge, gc in zip(grads_e, grads_c):
            torch.testing.assert_close(gc, ge, rtol=1e-3, atol=1e-5)
    # BatchNorm's running statistics move the same way in both
    torch.testing.assert_close(compiled_model[1].running_mean, eager_model[1].running_mean)


def test_compile_failure_falls_back_to_the_eager_step():
    def broken_compiler(fn, **kwargs):
        def run(*args):
            raise RuntimeError("inductor: no working C++ compiler\nmore detail")
        return run

    lines: list[str] = []
    model, forward = _tiny_step()
    step = CompiledStep(forward, compile=True, log=lines.append, compiler=broken_compiler)
    x = torch.rand(4, 1, 8, 8)
    first, second = step(x, x), step(x, x)
    reference_model, reference = _tiny_step()
    torch.testing.assert_close(first, reference(x, x))
    assert second.shape == () and step.eager_steps == 2 and step.compiled is None
    assert step.kind == "eager (compile failed: inductor: no working C++ compiler)"
    assert len(lines) == 1 and "training goes on with eager steps" in lines[0]


def test_compile_only_when_asked_and_only_on_a_cpu():
    assert should_compile(True, CPU) and not should_compile(False, CPU)
    assert not should_compile(True, torch.device("cuda"))  # a GPU replays a CUDA graph instead


def test_a_compiled_step_with_a_non_finite_first_loss_is_dropped():
    """A miscompiled step (seen as NaN from the first loss) must not train: the eager step takes over."""
    def nan_compiler(fn, **kwargs):
        return lambda x, x_in: fn(x, x_in) * float("nan")

    lines: list[str] = []
    model, forward = _tiny_step()
    step = CompiledStep(forward, compile=True, log=lines.append, compiler=nan_compiler)
    x = torch.rand(4, 1, 8, 8)
    assert torch.isfinite(step(x, x)) and torch.isfinite(step(x, x))
    assert step.kind == "eager (compile failed: the compiled step's first loss is not finite)" and len(lines) == 1


def test_speed_record_counts_six_flops_per_multiply_add():
    r = speed_record(AVX2, "fp32", False, "eager", None, 1_000_000, 500.0)
    assert r == {"cpu": AVX2, "precision": "fp32", "memory_format": "contiguous", "step": "eager", "compile_seconds": None,
                 "macs_per_image": 1_000_000, "images_per_s": 500.0, "gflop_per_s": 3.0}
    assert speed_record(AVX2, "fp32", False, "eager", None, None, 500.0)["gflop_per_s"] is None


def test_metrics_and_info_tell_the_training_speed(workspace, bundle_dir):
    metrics = json.loads((workspace / "models" / "cnn-d4" / "metrics.json").read_text())
    speed = metrics["speed"]
    assert speed["cpu"] == cpu_kind()
    assert speed["precision"] == metrics["precision"] and speed["memory_format"] in ("channels_last", "contiguous")
    assert speed["step"] == metrics["step"] == "eager"  # --compile is off by default
    assert speed["macs_per_image"] > 0 and speed["images_per_s"] == metrics["history"][-1]["train_images_per_s"]
    assert speed["gflop_per_s"] == pytest.approx(6 * speed["macs_per_image"] * speed["images_per_s"] / 1e9)
    latent = json.loads((bundle_dir / "latent.json").read_text())
    assert latent["training"]["speed"] == speed
    info = run_cli("info", str(bundle_dir), cwd=workspace).stdout
    line = next(s for s in info.splitlines() if s.startswith("training speed:"))
    assert f"{speed['images_per_s']:.0f} images/s" in line and speed["cpu"] in line and speed["memory_format"] in line

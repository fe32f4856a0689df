"""Model families: the registry builds each at every size, the photo network's export computes what it
trained, old runs still load, the best epoch is what ships, and a photo bundle runs through every command."""

from __future__ import annotations

import json
import math
import shutil
import sys

import numpy as np
import pytest
import torch

from aetool.bundle import load_bundle
from aetool.errors import UsageError
from aetool.lecture import IMAGE_SIZES
from aetool.training.config import TrainConfig
from aetool.training.families import ArchConfig, build_model, family_names, get_family
from aetool.training.model import count_macs, describe_layers
from aetool.training.photo import PhotoAutoEncoder, fold_batchnorm, sides
from conftest import TINY, run_cli, usage_error


@pytest.mark.parametrize("size", IMAGE_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", [f for f in family_names() if "vector" in get_family(f).layouts])
def test_registry_builds_every_family_at_every_size(family, channels, size):
    arch = ArchConfig(family, d=5, width=None if family == "pca" else 4, channels=channels, image_size=size)
    model = build_model(arch).eval()
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        z = model.encoder(x)
        assert z.shape == (2, 5, 1, 1)
        assert model.decoder(z).shape == (2, channels, size, size)
    layers = describe_layers(model)
    assert layers["encoder"] and layers["decoder"]
    assert count_macs(model.encoder, x) > 0


def test_lecture_is_the_lecture_at_28_and_has_another_name():
    assert get_family("lecture") is get_family("cnn")
    model = build_model(ArchConfig("cnn", 16, 32))
    assert describe_layers(model)["encoder"][0] == "Conv2d(1->32, k5, s1, p0)"
    # the lecture's counts by hand: 24x24x(25x32) + 20x20x(25x32x32) + 9x9x(16x32x32) + 4x4x(9x32x32) + 16x32x16
    assert count_macs(model.encoder, torch.rand(1, 1, 28, 28)) == \
        24 * 24 * 25 * 32 + 20 * 20 * 25 * 32 * 32 + 9 * 9 * 16 * 32 * 32 + 4 * 4 * 9 * 32 * 32 + 16 * 32 * 16


def test_photo_network_widths_grow_as_the_side_halves_and_stop():
    assert sides(64) == [64, 32, 16, 8, 4] and sides(28) == [28, 14, 7]
    model = PhotoAutoEncoder(8, width=16, channels=3, size=256)
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128, 128, 128]  # 16 doubling, capped at 8x
    residual = [m for m in model.encoder.modules() if type(m).__name__ == "ResBlock"]
    assert len(residual) == len(sides(256))  # one residual block per resolution


def test_unknown_family_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown model family"):
        get_family("transformer")
    with pytest.raises(UsageError, match="--arch must be one of"):
        TrainConfig(model="transformer").validate()


def test_default_family_is_the_lecture_on_mnist_and_photo_on_a_folder(tmp_path):
    (tmp_path / "pics").mkdir()
    assert TrainConfig().family().name == "cnn"
    assert TrainConfig(data=str(tmp_path / "pics")).family().name == "photo"
    assert TrainConfig(data=str(tmp_path / "pics"), model="lecture").family().name == "cnn"
    assert TrainConfig(data=str(tmp_path / "pics"), d=32).default_run_name() == "photo-d32-pics"
    assert TrainConfig(d=8, width=64).default_run_name() == "cnn-d8-w64"


def test_shifts_are_the_familys_default_and_a_given_value_wins():
    from aetool.bundle_format import ImageSpec

    photo = ImageSpec(channels=3, height=32, width=32, preprocessing="resize_pad")
    assert TrainConfig(model="photo").resolved(photo).shift == 2
    assert TrainConfig(model="photo", shift=0).resolved(photo).shift == 0
    assert TrainConfig().resolved(ImageSpec()).shift == 0  # the lecture's digits: never moved unless asked
    assert TrainConfig(model="pca").resolved(photo).shift == 0


def test_legacy_config_gives_the_architecture():
    old = {"config": {"d": 8, "model": "cnn", "nb_channels": 64, "channels": None, "image_size": None}}
    assert ArchConfig.from_stored(old) == ArchConfig("cnn", 8, 64, 1, 28)
    assert ArchConfig.from_stored({"config": {"d": 3, "model": "pca"}}).width is None
    new = {"arch": {"family": "photo", "d": 4, "width": 8, "channels": 3, "image_size": 32}, "config": {}}
    assert ArchConfig.from_stored(new) == ArchConfig("photo", 4, 8, 3, 32)


def test_folded_batchnorm_computes_what_was_trained():
    torch.manual_seed(0)
    model = PhotoAutoEncoder(6, width=8, channels=3, size=32)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(5):  # move the BatchNorm statistics and scales off their starting values
        x = torch.rand(16, 3, 32, 32)
        loss = (model(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = torch.rand(7, 3, 32, 32)
    with torch.no_grad():
        enc, dec = fold_batchnorm(model.encoder), fold_batchnorm(model.decoder)
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in [*enc.modules(), *dec.modules()])
        z = model.encoder(x)
        assert torch.allclose(enc(x), z, atol=1e-5)
        assert torch.allclose(dec(z), model.decoder(z), atol=1e-5)


def test_onecycle_schedule_warms_up_then_decays():
    from aetool.training.train import Trainer

    t = Trainer.__new__(Trainer)
    t.config = TrainConfig(lr=2e-3, schedule="onecycle", epochs=20)
    rates = [t.lr_at(e / 10) for e in range(0, 201)]
    peak = int(np.argmax(rates))
    assert rates[0] == pytest.approx(2e-3 * 0.04) and rates[peak] == pytest.approx(2e-3, rel=1e-3)
    assert peak == 10  # 5 % of 20 epochs
    assert all(a <= b for a, b in zip(rates[:peak], rates[1 : peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :]))
    assert rates[-1] == pytest.approx(2e-3 * 1e-4)
    t.config = TrainConfig(lr=1e-3, schedule="cosine", epochs=10)
    assert t.lr_at(3.7) == t.lr_at(3)  # the lecture's cosine stays per epoch


# ---------------------------------------------------------------- end to end, the photo network
@pytest.mark.slow
def test_photo_run_records_its_architecture_and_defaults(photo_workspace):
    metrics = json.loads((photo_workspace / "models" / "photo" / "metrics.json").read_text())
    assert metrics["arch"] == {"family": "photo", "d": 6, "width": 8, "channels": 3, "image_size": 32}
    c = metrics["config"]
    assert (c["model"], c["schedule"], c["flip"], c["weight_decay"] > 0, c["clip"] > 0) == ("photo", "onecycle", True, True, True)
    assert c["shift"] == 2  # moved pictures, the edge mirrored in (families.PhotoNet.shift_fill)
    best = min(metrics["history"], key=lambda h: h["test_sse_per_image"])
    assert metrics["best_epoch"] == best["epoch"] and metrics["best_test_sse_per_image"] == best["test_sse_per_image"]


@pytest.mark.slow
def test_photo_bundle_matches_its_run_and_reports_its_cost(photo_workspace, photo_bundle, monkeypatch):
    from aetool.datasets import as_float, load_training_data
    from aetool.training.run import RunFolder

    monkeypatch.chdir(photo_workspace)  # the run names its folder as it was given, relative to here
    b = load_bundle(photo_bundle, device="cpu")
    assert b.family == "photo" and b.meta.image.shape == (3, 32, 32)
    assert "BatchNorm folded" in b.meta.decoder.form
    assert b.meta.encoder.parameters > 0 and b.meta.decoder.macs > 0
    model, state = RunFolder(photo_workspace / "models" / "photo").load_model(best=True)
    heldout = as_float(load_training_data(TrainConfig(**state["config"]).selection()).heldout[:])
    with torch.no_grad():
        expected = model(torch.from_numpy(heldout)).numpy()
    assert np.abs(b.reconstruct(heldout) - expected).max() < 1e-4
    sse = ((b.reconstruct(heldout) - heldout) ** 2).reshape(len(heldout), -1).sum(1).mean()
    assert sse == pytest.approx(b.meta.training_number("test_sse_per_image"), rel=1e-3)  # what the run measured
    info = run_cli("info", str(photo_bundle), cwd=photo_workspace).stdout
    assert "multiply-adds per image" in info and "photo" in info
    report = json.loads(run_cli("info", str(photo_bundle), "--json", cwd=photo_workspace).stdout)
    assert report["graphs"]["encoder"]["macs_per_image"] == b.meta.encoder.macs


@pytest.mark.slow
def test_photo_bundle_through_every_runtime_command(photo_workspace, photo_bundle):
    ws, pics = photo_workspace, sorted((photo_workspace / "pictures").glob("*.png"))
    b = ["--bundle", str(photo_bundle)]
    rec = json.loads(run_cli("reconstruct", str(pics[0]), str(pics[1]), "-o", "r.png", "--json", *b, cwd=ws).stdout)
    assert len(rec["images"]) == 2 and all(math.isfinite(i["sse"]) for i in rec["images"])
    run_cli("interpolate", str(pics[0]), str(pics[1]), "-o", "walk.gif", "--steps", "5", "-q", *b, cwd=ws)
    run_cli("sample", "-n", "8", "-o", "s.png", "--seed", "1", "-q", *b, cwd=ws)
    run_cli("encode", "pictures", "-o", "z.npy", "-q", *b, cwd=ws)
    z = np.load(ws / "z.npy")
    assert z.shape[0] == len(pics) and z.reshape(len(z), -1).shape[1] == 6
    run_cli("decode", "z.npy", "-o", "back.png", "-q", *b, cwd=ws)
    score = json.loads(run_cli("score", "pictures", "--json", *b, cwd=ws).stdout)
    assert len(score["images"]) == len(pics)
    bench = json.loads(run_cli("bench", "--json", "--seconds", "0.05", "--batch-sizes", "1,8", *b, cwd=ws).stdout)
    assert bench["family"] == "photo"
    for name in ("r.png", "walk.gif", "s.png", "back.png"):
        assert (ws / name).stat().st_size > 0
    # the runtime never imported torch on the way
    probe = ("import sys, aetool; b = aetool.load_bundle(%r, device='cpu'); b.sample(2); "
             "print('torch' in sys.modules)" % str(photo_bundle))
    import subprocess

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_photo_bundle_int8_variant_or_a_clear_refusal(photo_workspace):
    proc = run_cli("export", "models/photo", "--out", "export/photo8", "--int8", "--eval-images", "20", "-q",
                   cwd=photo_workspace, check=False)
    if proc.returncode == 0:
        b = load_bundle(photo_workspace / "export" / "photo8-int8", device="cpu")
        assert b.meta.precision == "int8" and np.isfinite(b.sample(2)).all()
    else:
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------- best epoch, and old runs
@pytest.mark.slow
def test_export_takes_the_best_epoch_unless_told_last(workspace, tmp_path):
    """A run whose best epoch is not its last: export ships the best, --last the last."""
    from aetool.training.run import RunFolder, save_torch

    ws = tmp_path / "ws"
    ws.mkdir()
    run_cli("train", "--d", "3", "--seed", "2", *TINY[:2], "--epochs", "2", "--batch-size", "50", "--quiet",
            "--stop-after", "1", "--out", "run", cwd=ws)
    first = torch.load(ws / "run" / "checkpoint.pt", weights_only=True)["model"]
    run_cli("train", "--out", "run", "--resume", "--quiet", cwd=ws)
    state = torch.load(ws / "run" / "checkpoint.pt", weights_only=True)
    history = json.loads((ws / "run" / "metrics.json").read_text())["history"]
    assert state["best"]["epoch"] == min(history, key=lambda h: h["test_sse_per_image"])["epoch"]
    # make epoch 1 the best, whatever this CPU's rounding made of the two epochs
    state["best"] = {"epoch": 1, "sse": history[0]["test_sse_per_image"], "model": first}
    save_torch(ws / "run" / "checkpoint.pt", state)
    run_cli("export", "run", "--out", "best", "--fpr", "0", "-q", cwd=ws)
    run_cli("export", "run", "--out", "last", "--fpr", "0", "--last", "-q", cwd=ws)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    best, last = load_bundle(ws / "best", device="cpu"), load_bundle(ws / "last", device="cpu")
    assert best.meta.training["weights"] == "best (epoch 1)" and last.meta.training["weights"] == "last"
    model, _ = RunFolder(ws / "run").load_model(best=True)
    with torch.no_grad():
        assert np.abs(best.encode(x) - model.encoder(torch.from_numpy(x)).numpy()).max() < 1e-4
        model.load_state_dict(state["model"])
        assert np.abs(last.encode(x) - model.encoder(torch.from_numpy(x)).numpy()).max() < 1e-4
    assert best.meta.training_number("test_sse_per_image") == pytest.approx(history[0]["test_sse_per_image"])


@pytest.mark.slow
def test_a_run_from_before_families_resumes_and_exports(workspace, tmp_path):
    """A checkpoint as older aetool wrote it (no arch, nb_channels, no optimiser options) still
    resumes, exports and runs."""
    from aetool.training.run import save_torch

    ws = tmp_path / "ws"
    shutil.copytree(workspace / "models" / "cnn-d4", ws / "old")
    state = torch.load(ws / "old" / "checkpoint.pt", weights_only=True)
    state.pop("arch", None)
    state.pop("best", None)
    config = state["config"]
    config["nb_channels"] = config.pop("width")
    for key in ("weight_decay", "clip", "flip"):
        config.pop(key)
    config.update(model="cnn", lr=0.001, schedule="constant")
    save_torch(ws / "old" / "checkpoint.pt", state)
    metrics = json.loads((ws / "old" / "metrics.json").read_text())
    metrics.pop("arch", None)
    metrics["config"] = config
    (ws / "old" / "metrics.json").write_text(json.dumps(metrics))
    run_cli("train", "--out", "old", "--resume", "--epochs", "2", "--quiet", cwd=ws)
    resumed = torch.load(ws / "old" / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["arch"] == {"family": "cnn", "d": 4, "width": 32, "channels": 1, "image_size": 28}
    assert resumed["config"]["weight_decay"] == 0.0 and resumed["config"]["flip"] is False
    run_cli("export", "old", "--out", "b", "-q", cwd=ws)
    assert load_bundle(ws / "b", device="cpu").family == "cnn"


def test_bad_family_options_are_usage_errors(tmp_path):
    usage_error(run_cli("train", "--arch", "transformer", cwd=tmp_path, check=False), "--arch")
    usage_error(run_cli("train", "--width", "0", cwd=tmp_path, check=False), "--width")
    usage_error(run_cli("train", "--weight-decay", "1", cwd=tmp_path, check=False), "--weight-decay")
    usage_error(run_cli("train", "--clip", "-1", cwd=tmp_path, check=False), "--clip")

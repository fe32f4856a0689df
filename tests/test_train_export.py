"""A real (tiny) training run, its export, and onnxruntime-vs-PyTorch parity."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from aetool.bundle_format import sha256_file
from aetool.compare import epochs_cell
from aetool.mnist import mnist_test_head
from aetool.training.run import RunFolder, epochs_in_all
from conftest import TINY, run_cli, usage_error

pytestmark = pytest.mark.slow


def load_run_model(path):
    return RunFolder(path).load_model()


def test_run_folder_holds_checkpoint_metrics_density(workspace):
    run = workspace / "models" / "cnn-d4"
    assert (run / "checkpoint.pt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["complete"] and metrics["epochs_done"] == 1
    assert metrics["data"]["train_images"] == 300 and metrics["data"]["test_images"] == 10_000
    h = metrics["history"][0]
    assert np.isfinite(h["train_loss"]) and h["train_loss"] > 0
    # SSE per image and PSNR agree: PSNR = 10 log10(784 / SSE) for images in [0, 1]
    assert h["test_psnr_db"] == pytest.approx(10 * np.log10(784 / h["test_sse_per_image"]))
    density = json.loads((run / "density.json").read_text())
    assert density["kind"] == "diagonal_gaussian" and len(density["mean"]) == 4


def test_bundle_metadata_describes_itself(bundle_dir, workspace):
    meta = json.loads((bundle_dir / "latent.json").read_text())
    assert meta["schema_version"] == 2 and meta["d"] == 4 and meta["family"] == "cnn"
    image = meta["image"]
    assert (image["channels"], image["height"], image["width"]) == (1, 28, 28) and image["range"] == [0.0, 1.0]
    assert image["preprocessing"] == "mnist_digit" and meta["default_density"] == "gaussian_mixture"
    assert meta["graphs"]["encoder"]["sha256"] == sha256_file(bundle_dir / "encoder.onnx")
    assert meta["graphs"]["decoder"]["sha256"] == sha256_file(bundle_dir / "decoder.onnx")
    metrics = json.loads((workspace / "models" / "cnn-d4" / "metrics.json").read_text())
    assert meta["training"]["test_sse_per_image"] == metrics["test_sse_per_image"]
    assert meta["export"]["check"]["batches"] == [1, 7, 256]
    assert max(meta["export"]["check"]["max_abs_diff"].values()) <= 1e-4


def test_graphs_are_self_contained_with_dynamic_batch(bundle_dir):
    for name, shape_in, shape_out in (("encoder.onnx", [1, 28, 28], [4, 1, 1]), ("decoder.onnx", [4, 1, 1], [1, 28, 28])):
        model = onnx.load(str(bundle_dir / name))
        onnx.checker.check_model(model, full_check=True)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        dims_in = model.graph.input[0].type.tensor_type.shape.dim
        assert dims_in[0].dim_param and [d.dim_value for d in dims_in[1:]] == shape_in
        dims_out = model.graph.output[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in dims_out[1:]] == shape_out


@pytest.mark.parametrize("batch", [1, 7, 256, 300])
def test_onnxruntime_matches_pytorch(workspace, bundle_dir, batch):
    model, _ = load_run_model(workspace / "models" / "cnn-d4")
    x = mnist_test_head(300).images[-batch:]
    enc = ort.InferenceSession(str(bundle_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(bundle_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = enc.run(None, {"image": x})[0]
    x_hat = dec.run(None, {"latent": z})[0]
    with torch.no_grad():
        z_ref = model.encoder(torch.from_numpy(x)).numpy()
        x_ref = model.decoder(torch.from_numpy(z_ref)).numpy()
    assert z.shape == (batch, 4, 1, 1) and x_hat.shape == (batch, 1, 28, 28)
    np.testing.assert_allclose(z, z_ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(x_hat, x_ref, atol=1e-4, rtol=0)


def test_decoder_ships_in_conv_form_and_torch_gets_the_weights_back(workspace, bundle_dir):
    from aetool import load_bundle
    from aetool.training.torch_from_onnx import model_from_bundle

    ops = [n.op_type for n in onnx.load(str(bundle_dir / "decoder.onnx")).graph.node]
    # the stride-1 layer as a Conv, the last stride-2 one as Conv + DepthToSpace (sub-pixel form)
    assert ops.count("Conv") == 2 and ops.count("ConvTranspose") == 3 and ops.count("DepthToSpace") == 1
    assert "Conv" in json.loads((bundle_dir / "latent.json").read_text())["graphs"]["decoder"]["form"]
    rebuilt, source = model_from_bundle(load_bundle(bundle_dir, device="cpu"))
    trained, _ = load_run_model(workspace / "models" / "cnn-d4")
    assert source == "bundle"
    for key, value in trained.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


@pytest.mark.parametrize("name, width", [("cnn-d8", 64), ("cnn-d16", 64)])
def test_torch_rebuilds_wider_shipped_bundles_with_their_weights(name, width):
    """The zoo's d=8 and d=16 are wider than the lecture's 32 channels: the torch baseline must be that model."""
    from aetool import load_bundle
    from aetool.training.torch_from_onnx import model_from_bundle

    bundle = load_bundle(name, device="cpu")
    model, source = model_from_bundle(bundle)
    assert source == "bundle" and model.nb_channels == width
    x = mnist_test_head(8).images
    with torch.no_grad():
        x_torch = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(x_torch, bundle.reconstruct(x), atol=1e-4, rtol=0)


def test_resume_continues_from_checkpoint(ws_copy):
    run = ws_copy / "models" / "cnn-d4"
    before = json.loads((run / "metrics.json").read_text())
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["config"]["device"] = "cuda"  # as if trained on a GPU: resuming runs here, on the CPU
    torch.save(state, run / "checkpoint.pt")
    out = run_cli("train", "--out", "models/cnn-d4", "--resume", "--epochs", "2", "--batch-size", "25", "--quiet",
                  cwd=ws_copy).stdout
    after = json.loads((run / "metrics.json").read_text())
    assert "after 2 epoch(s)" in out
    assert [h["epoch"] for h in after["history"]] == [1, 2]
    assert after["history"][0] == before["history"][0]  # epoch 1 kept, not retrained
    assert after["config"]["d"] == 4 and after["config"]["limit"] == 300
    # a new batch size applies from the resumed epoch on; each epoch records its own
    assert after["config"]["batch_size"] == 25 and after["history"][1]["batch_size"] == 25


def test_resume_reads_retired_options_only_when_off(ws_copy):
    run = ws_copy / "models" / "cnn-d4"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["config"]["latent_noise"] = 0.0  # stored by earlier versions; 0 meant "off"
    torch.save(state, run / "checkpoint.pt")
    from aetool.training.train import resume_config

    assert resume_config(run).d == 4
    state["config"]["latent_noise"] = 0.25
    torch.save(state, run / "checkpoint.pt")
    proc = run_cli("train", "--out", "models/cnn-d4", "--resume", "--epochs", "2", "--quiet", cwd=ws_copy, check=False)
    assert proc.returncode == 1 and "option latent_noise=0.25 is not one" in proc.stderr and "Traceback" not in proc.stderr


def test_training_is_reproducible_with_seed(tmp_path, workspace):
    run_cli("train", "--d", "4", "--seed", "1", *TINY, "--out", "again", cwd=tmp_path)
    a = torch.load(tmp_path / "again" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(workspace / "models" / "cnn-d4" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_stop_after_pauses_and_resume_finishes_the_same_schedule(tmp_path):
    args = ["--d", "2", "--limit", "200", "--batch-size", "50", "--epochs", "3", "--schedule", "cosine", "--quiet"]
    out = run_cli("train", *args, "--stop-after", "1", "--out", "paused", cwd=tmp_path).stdout
    assert "paused: paused after epoch 1 of 3" in out
    m = json.loads((tmp_path / "paused" / "metrics.json").read_text())
    assert m["epochs_done"] == 1 and not m["complete"] and not (tmp_path / "paused" / "density.json").exists()
    run_cli("train", "--out", "paused", "--resume", "--quiet", cwd=tmp_path)
    run_cli("train", *args, "--out", "straight", cwd=tmp_path)
    paused = json.loads((tmp_path / "paused" / "metrics.json").read_text())
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert paused["complete"] and [h["lr"] for h in paused["history"]] == [h["lr"] for h in straight["history"]]
    a = torch.load(tmp_path / "paused" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_average_last_ships_the_mean_of_the_last_epochs_across_a_pause(tmp_path):
    """SWA: the run ends on the mean of the iterates at the end of its last K epochs, and a
    pause in the middle of the averaging window loses none of them."""
    args = ["--d", "2", "--limit", "200", "--batch-size", "50", "--epochs", "3", "--quiet"]
    run_cli("train", *args, "--stop-after", "2", "--out", "plain", cwd=tmp_path)
    second = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)["model"]
    run_cli("train", "--out", "plain", "--resume", "--quiet", cwd=tmp_path)
    third = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)["model"]

    run_cli("train", *args, "--average-last", "2", "--stop-after", "2", "--out", "swa", cwd=tmp_path)
    run_cli("train", "--out", "swa", "--resume", "--quiet", cwd=tmp_path)
    averaged = torch.load(tmp_path / "swa" / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.equal(second[k], third[k]) for k in averaged)  # two different iterates
    for k in averaged:
        torch.testing.assert_close(averaged[k], (second[k] + third[k]) / 2)
    m = json.loads((tmp_path / "swa" / "metrics.json").read_text())
    assert [h.get("averaged_epochs") for h in m["history"]] == [None, 1, 2]
    assert m["config"]["average_last"] == 2
    # the run reports what its shipped weights score, not the last iterate
    assert m["test_sse_per_image"] == m["history"][-1]["average_test_sse_per_image"]
    assert m["test_sse_per_image"] != m["history"][-1]["test_sse_per_image"]
    # more epochs would leave the stored mean holding epochs outside the last 2: refused, run untouched
    before = (tmp_path / "swa" / "checkpoint.pt").read_bytes()
    proc = run_cli("train", "--out", "swa", "--resume", "--epochs", "5", "--quiet", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "weight average starts at epoch 2, before the last 2 of 5" in proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "swa" / "checkpoint.pt").read_bytes() == before


def test_shrink_latent_is_exact():
    """The shrunk model is the big one with its latent squeezed through its top-d principal subspace."""
    from aetool.training.model import AutoEncoder
    from aetool.training.warm_start import principal_directions, shrink_latent

    torch.manual_seed(0)
    big = AutoEncoder(16).eval()
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        z = big.encoder(x).reshape(64, 16)
        small = shrink_latent(big, 4, z.numpy()).eval()
        p = torch.from_numpy(principal_directions(z.numpy(), 4)).float()
        expected = big.decoder((z @ p @ p.T).reshape(64, 16, 1, 1))
        assert small.encoder(x).shape == (64, 4, 1, 1)
        torch.testing.assert_close(small(x), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(p.T @ p, torch.eye(4), atol=1e-5, rtol=0)


def test_widen_channels_is_exact_and_trainable():
    """The widened model computes what the narrow one does, and its new channels do get gradients."""
    from aetool.training.model import AutoEncoder, reconstruction_loss
    from aetool.training.warm_start import widen_channels

    torch.manual_seed(0)
    narrow = AutoEncoder(8, 8).eval()
    wide = widen_channels(narrow, 12).eval()
    x = torch.rand(32, 1, 28, 28)
    assert wide.nb_channels == 12 and wide.encoder[0].weight.shape == (12, 1, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), narrow(x), atol=1e-6, rtol=0)
        assert wide.encoder[0].weight[8:].abs().sum() > 0  # the new channels compute something...
        assert wide.encoder[2].weight[:, 8:].abs().sum() == 0  # ...that nothing reads yet
    reconstruction_loss(x, wide(x)).backward()
    assert wide.encoder[2].weight.grad[:, 8:].abs().sum() > 0
    assert wide.decoder[2].weight.grad[8:].abs().sum() > 0  # ConvTranspose: (in, out, kh, kw)
    with pytest.raises(ValueError):
        widen_channels(wide, 8)


def test_revive_dead_channels_keeps_the_function():
    """Channels that no image turns on get fresh weights in and zero weights out: same output, none dead."""
    from aetool.training.model import AutoEncoder
    from aetool.training.warm_start import dead_channels, revive_dead_channels

    torch.manual_seed(0)
    model = AutoEncoder(4, 8).eval()
    with torch.no_grad():  # kill channels 1 and 5 after the encoder's second conv, 0 after the decoder's first
        model.encoder[2].bias[[1, 5]] = -1e3
        model.decoder[0].bias[0] = -1e3
    images = torch.rand(64, 1, 28, 28).numpy()
    x = torch.from_numpy(images)
    with torch.no_grad():
        before = model(x)
    dead = dead_channels(model, images)
    assert dead[("encoder", 2)][[1, 5]].all() and dead[("decoder", 0)][0]
    assert revive_dead_channels(model, images) == sum(int(mask.sum()) for mask in dead.values()) >= 3
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=1e-6, rtol=0)
        live = ~dead[("encoder", 4)]  # a revived channel of the next layer may read them: nothing reads it
        assert model.encoder[4].weight[live][:, [1, 5]].abs().sum() == 0 and live.any()
    assert not any(mask.any() for mask in dead_channels(model, images).values())


def test_init_from_starts_at_the_shrunk_run(ws_copy):
    from aetool.training.model import AutoEncoder
    from aetool.training.warm_start import shrink_latent
    from aetool.training.model import forward_all

    big, _ = load_run_model(ws_copy / "models" / "cnn-d4")
    # a learning rate of 1e-12 leaves the starting weights in place, to compare with
    out = run_cli("train", "--d", "2", "--init-from", "models/cnn-d4", "--lr", "1e-12", *TINY, "--out", "shrunk",
                  cwd=ws_copy).stdout
    assert "done: shrunk" in out
    metrics = json.loads((ws_copy / "shrunk" / "metrics.json").read_text())
    assert metrics["config"]["init_from"] == "models/cnn-d4" and metrics["config"]["d"] == 2
    from aetool.mnist import load_mnist

    images = load_mnist("train").head(300).images
    expected = shrink_latent(big, 2, forward_all(big.encoder, images, torch.device("cpu"))).eval()
    trained, _ = load_run_model(ws_copy / "shrunk")
    x = torch.from_numpy(images[:50])
    with torch.no_grad():
        torch.testing.assert_close(trained(x), expected(x), atol=1e-4, rtol=0)
    assert isinstance(trained, AutoEncoder)
    # only from a larger CNN latent; a refused start writes nothing
    proc = run_cli("train", "--d", "8", "--init-from", "models/cnn-d4", *TINY, "--out", "bigger", cwd=ws_copy, check=False)
    usage_error(proc, "needs a run with a larger latent")
    assert not (ws_copy / "bigger").exists()


def test_init_from_widens_a_run(ws_copy):
    """--nb-channels wider than the source (dead channels revived): the new run starts as exactly the
    source, in its own folder."""
    narrow, _ = load_run_model(ws_copy / "models" / "cnn-d4")
    out = run_cli("train", "--d", "4", "--nb-channels", "40", "--init-from", "models/cnn-d4", "--revive-dead",
                  "--lr", "1e-12", *TINY, cwd=ws_copy).stdout
    assert "done: models/cnn-d4-w40" in out
    wide, state = load_run_model(ws_copy / "models" / "cnn-d4-w40")
    assert wide.nb_channels == 40 and state["config"]["revive_dead"]
    from aetool.mnist import load_mnist

    # channels dead on the 300 training images seen were revived: the same function on those images
    x = torch.from_numpy(load_mnist("train").head(50).images)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), narrow(x), atol=1e-4, rtol=0)
    # the run's record of its starts: cnn-d4's one epoch beside this run's one
    metrics = json.loads((ws_copy / "models" / "cnn-d4-w40" / "metrics.json").read_text())
    assert metrics["started_from"] == [{"run": "cnn-d4", "epochs": 1, "revived": True, "shift": 0}]
    assert metrics["epochs_in_all"] == 2
    proc = run_cli("train", "--d", "4", "--nb-channels", "16", "--init-from", "models/cnn-d4", *TINY, "--out", "narrower",
                   cwd=ws_copy, check=False)
    usage_error(proc, "at most as wide")


def test_lineage_is_recorded_at_the_start_and_outlives_the_starts(tmp_path):
    """A run restarted twice reports every start's epochs and shift, read from the start's own record,
    so the chain stays known when the starts are deleted."""
    def run(name: str, epochs: int, started_from: list, **config) -> RunFolder:
        folder = RunFolder(tmp_path / "models" / name)
        folder.path.mkdir(parents=True)
        folder.write_metrics({"epochs_done": epochs, "config": config, "started_from": started_from})
        return folder

    a = run("a", 12, [])
    b = run("b", 25, a.chain_as_start(revived=False), init_from="models/a", shift=1)  # trained on moved digits
    chain = b.chain_as_start(revived=True)
    assert chain == [{"run": "b", "epochs": 25, "revived": True, "shift": 1},
                     {"run": "a", "epochs": 12, "revived": False, "shift": 0}]
    assert epochs_in_all(30, chain) == 67
    assert epochs_cell({"epochs": 30, "epochs_in_all": 67}) == "30 (67)" and epochs_cell({"epochs": 12, "epochs_in_all": 12}) == "12"
    shutil.rmtree(a.path)
    assert b.chain_as_start(revived=True) == chain
    assert epochs_in_all(30, [{"run": "gone", "epochs": None}]) is None


def test_train_refuses_to_clobber_a_run(ws_copy):
    ckpt = ws_copy / "models" / "cnn-d4" / "checkpoint.pt"
    before = ckpt.read_bytes()
    proc = run_cli("train", "--d", "4", *TINY, cwd=ws_copy, check=False)
    usage_error(proc, "already holds a run")
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--d", "0"], "Invalid value for '--d'"),
    (["--d", "100000"], "Invalid value for '--d'"),
    (["--d", "4", "--epochs", "0"], "Invalid value for '--epochs'"),
    (["--d", "4", "--limit", "0"], "Invalid value for '--limit'"),
    (["--d", "4", "--nb-channels", "0"], "Invalid value for '--width' / '--nb-channels'"),
    (["--d", "4", "--lr", "-1"], "Invalid value for '--lr'"),
    (["--d", "4", "--revive-dead"], "pass --init-from RUN with it"),
    (["--d", "4", "--resume"], "no checkpoint to resume"),
    (["--d", "4", "--stop-after", "0"], "Invalid value for '--stop-after'"),
    (["--d", "4", "--epochs", "2", "--average-last", "3"], "--average-last must be between 0 and --epochs (2)"),
    (["--d", "4", "--holdout", "-1"], "Invalid value for '--holdout'"),
    (["--d", "4", "--shift", "5"], "Invalid value for '--shift'"),
])
def test_train_bad_options_are_usage_errors(tmp_path, args, message):
    usage_error(run_cli("train", *args, cwd=tmp_path, check=False), message)
    assert not (tmp_path / "models").exists()


def test_train_from_a_missing_start_is_a_clear_error(tmp_path):
    proc = run_cli("train", "--d", "2", "--init-from", "nowhere", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "no checkpoint.pt" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_export_fails_loudly_past_tolerance_and_keeps_old_bundle(ws_copy):
    latent = ws_copy / "export" / "cnn-d4" / "latent.json"
    before = latent.read_bytes()
    names_before = sorted(p.name for p in (ws_copy / "export").iterdir())
    proc = run_cli("export", "models/cnn-d4", "--tolerance", "1e-30", cwd=ws_copy, check=False)
    assert proc.returncode == 1 and "export check failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert latent.read_bytes() == before
    assert sorted(p.name for p in (ws_copy / "export").iterdir()) == names_before  # no staging left behind


def test_export_without_runs_is_a_clear_error(tmp_path):
    proc = run_cli("export", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "no training run" in proc.stderr


def test_int8_and_fp16_variants_are_bundles(ws_copy, tmp_path):
    run_cli("export", "models/cnn-d4", "--int8", "--fp16", "--eval-images", "300", "--quiet", cwd=ws_copy)
    for variant, tolerance in (("int8", 0.5), ("fp16", 1e-2)):
        folder = ws_copy / "export" / f"cnn-d4-{variant}"
        meta = json.loads((folder / "latent.json").read_text())
        assert meta["variant"]["precision"] == variant and meta["d"] == 4 and meta["variant"]["test_images"] == 300
        # measured, not assumed: the variant's own test error is close to fp32's on the same images
        assert meta["variant"]["test_sse_per_image"] == pytest.approx(meta["variant"]["fp32_test_sse_per_image"], rel=0.1)
        diffs = meta["variant"]["max_abs_diff_vs_fp32"]
        assert meta["variant"]["tolerance"] == tolerance and diffs["roundtrip"] <= tolerance and diffs["decoder"] <= tolerance
        out = tmp_path / f"{variant}.png"
        run_cli("reconstruct", "--mnist-test", "4", "--bundle", str(folder), "-o", str(out), cwd=ws_copy)
        assert out.stat().st_size > 0
        # identity kept, read by the shipped classifier, for the variant and fp32 on the same images
        v = meta["variant"]
        assert 0 <= v["identity_kept"] <= 1 and abs(v["identity_kept"] - v["fp32_identity_kept"]) < 0.1
    ops = {n.op_type for n in onnx.load(str(ws_copy / "export" / "cnn-d4-int8" / "encoder.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the decoder's conv-form and sub-pixel layers are quantized (int8 weights, dequantized in the QDQ graph)
    decoder = onnx.load(str(ws_copy / "export" / "cnn-d4-int8" / "decoder.onnx")).graph.node
    producer = {out: n.op_type for n in decoder for out in n.output}
    convs = [n for n in decoder if n.op_type == "Conv"]
    assert len(convs) == 2 and all(producer[c.input[1]] == "DequantizeLinear" for c in convs)


def test_holdout_leaves_the_head_of_the_training_set_out(tmp_path):
    from aetool.mnist import Dataset
    from aetool.training.config import TrainConfig

    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    part = TrainConfig(holdout=4, limit=3).selection().training_part(Dataset(images, np.arange(10)))
    assert part.labels.tolist() == [4, 5, 6]  # --limit counts from the first image kept
    for family in ("cnn", "pca"):
        run_cli("train", "--model", family, "--d", "2", "--holdout", "59900", "--quiet", "--out", family,
                *(["--epochs", "1"] if family == "cnn" else []), cwd=tmp_path)  # PCA refuses options it has no use for
        m = json.loads((tmp_path / family / "metrics.json").read_text())
        assert m["data"]["train_images"] == 100 and m["config"]["holdout"] == 59900
    proc = run_cli("train", "--d", "2", "--holdout", "60000", "--quiet", cwd=tmp_path, check=False)
    usage_error(proc, "--holdout 60000 leaves none of the 60000 training images")

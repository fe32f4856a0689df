"""Bad input: one line on stderr, a non-zero exit, no traceback, nothing on disk harmed."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import TINY, run_cli, usage_error

pytestmark = pytest.mark.slow


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def bad_files(tmp_path, digit_pngs):
    good = digit_pngs[0].read_bytes()
    files = {
        "missing": tmp_path / "missing.png",
        "empty": tmp_path / "empty.png",
        "truncated": tmp_path / "truncated.png",
        "text": tmp_path / "notes.png",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["text"].write_text("not an image\n")
    return files


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "text"])
def test_bad_image_files(workspace, bad_files, digit_pngs, tmp_path, kind):
    out = tmp_path / "recon.png"
    out.write_bytes(b"previous result")
    proc = run_cli("reconstruct", str(digit_pngs[0]), str(bad_files[kind]), "-o", str(out), cwd=workspace, check=False)
    assert_one_line_error(proc, bad_files[kind].name)
    assert out.read_bytes() == b"previous result"
    proc = run_cli("interpolate", str(bad_files[kind]), str(digit_pngs[1]), "-o", str(tmp_path / "w.gif"), cwd=workspace, check=False)
    assert_one_line_error(proc, bad_files[kind].name)
    assert not (tmp_path / "w.gif").exists()


def test_unwritable_output(workspace, digit_pngs, tmp_path):
    proc = run_cli("sample", "-n", "4", "-o", str(tmp_path / "no" / "such" / "dir" / "s.png"), cwd=workspace, check=False)
    assert_one_line_error(proc, "s.png")
    proc = run_cli("sample", "-n", "4", "-o", str(tmp_path / "s.xyz"), cwd=workspace, check=False)
    assert_one_line_error(proc, "unsupported output format")
    assert list(tmp_path.iterdir()) == []  # no temp files left behind


@pytest.mark.parametrize("damage", ["missing_decoder", "corrupt_encoder", "mixed", "bad_json", "bad_density", "not_a_folder"])
def test_bad_bundles(ws_copy, tmp_path, damage):
    bundle = ws_copy / "export" / "cnn-d4"
    if damage == "missing_decoder":
        (bundle / "decoder.onnx").unlink()
        expect = "decoder.onnx is missing"
    elif damage == "corrupt_encoder":
        data = bytearray((bundle / "encoder.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (bundle / "encoder.onnx").write_bytes(bytes(data))
        expect = "encoder.onnx does not match"
    elif damage == "mixed":
        # a second training (other seed) exported beside: swap in its decoder
        run_cli("train", "--d", "4", "--seed", "2", *TINY, "--out", "models/other", cwd=ws_copy)
        run_cli("export", "models/other", "--quiet", cwd=ws_copy)
        shutil.copy(ws_copy / "export" / "other" / "decoder.onnx", bundle / "decoder.onnx")
        expect = "decoder.onnx does not match"
    elif damage == "bad_json":
        (bundle / "latent.json").write_text("{ not json")
        expect = "not valid JSON"
    elif damage == "bad_density":
        meta = json.loads((bundle / "latent.json").read_text())
        meta["densities"]["gaussian_mixture"] = {"kind": "mystery"}
        (bundle / "latent.json").write_text(json.dumps(meta))
        expect = "its kind is 'mystery'"
    else:
        bundle = tmp_path / "nothing-here"
        expect = "no such folder"
    proc = run_cli("sample", "-n", "4", "--bundle", str(bundle), "-o", str(tmp_path / "s.png"), cwd=ws_copy, check=False)
    assert_one_line_error(proc, expect)
    assert not (tmp_path / "s.png").exists()


def test_bad_option_values_are_usage_errors(workspace):
    usage_error(run_cli("reconstruct", cwd=workspace, check=False), "--mnist-test")
    usage_error(run_cli("bench", "--batch-sizes", "one", cwd=workspace, check=False), "'--batch-sizes'")
    usage_error(run_cli("bench", "--batch-sizes", "0,4", cwd=workspace, check=False), "'--batch-sizes'")
    usage_error(run_cli("compare", "--d", "2,x", cwd=workspace, check=False), "'--d'")
    usage_error(run_cli("sample", "-n", "0", cwd=workspace, check=False), "'-n'")
    usage_error(run_cli("sample", "--threads", "100000", cwd=workspace, check=False), "'--threads'")
    usage_error(run_cli("export", "nowhere", cwd=workspace, check=False), "run nowhere: not found")

"""aetool web: the site builds without torch, and its page runs the bundles in a real browser.

The browser tests open the generated site in headless Chromium (Debian's package, driven by
Playwright with ``executable_path``: no browser download) from a server on 127.0.0.1, and hold
the page to the Python runtime: the same decoded pixels, latents, densities and anomaly scores.
They skip, with the reason, where Chromium, Playwright or the onnxruntime-web files (which
scripts/install.sh fetches with npm) are missing.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import math
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from aetool.bundle import load_bundle, shipped_root
from aetool.errors import AetoolError
from aetool.web import RUNTIME_FILES, SITE_FILE, build_site, find_runtime, runtime_cache_dir, Runtime

from conftest import run_cli, usage_error

OFFLINE = Runtime(url="https://example.invalid/dist/", source="test")  # a site that copies no runtime


def _linear_colour_bundle(folder: Path, d: int = 3, side: int = 8) -> Path:
    """A tiny fp32 bundle of 3 x side x side RGB pictures (linear encoder and decoder, written with
    onnx.helper): the colour path of the page without training a model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from aetool.bundle_format import BundleMeta, GraphInfo, ImageSpec, sha256_file, write_meta

    rng = np.random.default_rng(0)
    pixels = 3 * side * side
    w = np.linalg.qr(rng.standard_normal((pixels, d)))[0].astype(np.float32)  # orthonormal columns
    bias = np.full(pixels, 0.5, np.float32)

    def graph(name, nodes, inits, inp, in_shape, out, out_shape):
        g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(inp, TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    enc = graph("enc", [helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("Sub", ["flat", "bias"], ["c"]),
                        helper.make_node("MatMul", ["c", "w"], ["z"]), helper.make_node("Reshape", ["z", "shape"], ["latent"])],
                {"bias": bias, "w": w, "shape": np.array([-1, d, 1, 1], np.int64)},
                "image", ["N", 3, side, side], "latent", ["N", d, 1, 1])
    dec = graph("dec", [helper.make_node("Flatten", ["latent"], ["flat"]), helper.make_node("MatMul", ["flat", "wt"], ["x"]),
                        helper.make_node("Add", ["x", "bias"], ["y"]), helper.make_node("Reshape", ["y", "shape"], ["image"])],
                {"wt": np.ascontiguousarray(w.T), "bias": bias, "shape": np.array([-1, 3, side, side], np.int64)},
                "latent", ["N", d, 1, 1], "image", ["N", 3, side, side])
    folder.mkdir(parents=True)
    onnx.save(enc, folder / "encoder.onnx")
    onnx.save(dec, folder / "decoder.onnx")
    cov = np.diag([0.5, 0.3, 0.2]) + 0.05
    densities = {"diagonal_gaussian": {"kind": "diagonal_gaussian", "mean": [0.1, -0.2, 0.0], "var": [0.5, 0.3, 0.2]},
                 "gaussian_mixture": {"kind": "gaussian_mixture", "weights": [0.3, 0.7], "means": [[1.0, 0.0, 0.0], [-0.5, 0.2, 0.1]],
                                      "covs": [cov.tolist(), (0.5 * cov).tolist()]}}
    meta = BundleMeta(name="colour", family="pca", d=d, image=ImageSpec(3, side, side, (0.0, 1.0), "resize_pad"),
                      encoder=GraphInfo("encoder.onnx", "image", "latent", sha256_file(folder / "encoder.onnx")),
                      decoder=GraphInfo("decoder.onnx", "latent", "image", sha256_file(folder / "decoder.onnx")),
                      densities=densities, default_density="gaussian_mixture", opset=17)
    write_meta(folder, meta)
    return folder


def _pictures(folder: Path, n: int = 6) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_colour_bundle_maps_the_pictures_given(tmp_path):
    bundle = _linear_colour_bundle(tmp_path / "colour")
    report = build_site([str(bundle)], tmp_path / "site", OFFLINE, images=_pictures(tmp_path / "pics"))
    m = json.loads((tmp_path / "site" / "bundles" / "colour" / "map.json").read_text())
    assert report["bundles"][0]["image"] == [3, 8, 8] and m["labels"] is None and len(m["points"]) == 6
    assert m["gallery"]["n"] == 6 and m["gallery"]["shape"] == [3, 8, 8]
    build_site([str(bundle)], tmp_path / "bare", OFFLINE)  # without --images: no points, the density's plane
    bare = json.loads((tmp_path / "bare" / "bundles" / "colour" / "map.json").read_text())
    assert bare["points"] == [] and "density" in bare["plane"]["how"]


# ---------------------------------------------------------------- building the site (no browser)
def test_site_holds_page_bundles_and_map(tmp_path):
    out = tmp_path / "site"
    report = build_site(["cnn-d2", "cnn-d16"], out, OFFLINE, points=300)
    assert {p.name for p in out.iterdir()} == {"index.html", "app.js", "style.css", SITE_FILE, "bundles"}
    for name in ("cnn-d2", "cnn-d16"):
        for file in ("encoder.onnx", "decoder.onnx", "latent.json"):  # byte for byte: the hashes still hold
            assert (out / "bundles" / name / file).read_bytes() == (shipped_root() / name / file).read_bytes()
    site = json.loads((out / SITE_FILE).read_text())
    assert site["generator"] == "aetool web" and site["runtime"]["url"] == OFFLINE.url
    assert [b["name"] for b in report["bundles"]] == ["cnn-d2", "cnn-d16"]
    m = json.loads((out / "bundles" / "cnn-d16" / "map.json").read_text())
    assert len(m["points"]) == len(m["labels"]) == 300 and set(m["labels"]) == set(range(10))
    axes = np.array(m["plane"]["axes"])
    assert axes.shape == (2, 16) and np.allclose(axes @ axes.T, np.eye(2), atol=1e-4)  # orthonormal directions
    # the map's points are the test digits' latents projected on that plane
    from aetool.mnist import mnist_test_head

    b = load_bundle("cnn-d16", device="cpu")
    z = b.encode(mnist_test_head(300).images).reshape(300, 16)
    assert np.allclose((z - np.array(m["plane"]["mean"])) @ axes.T, m["points"], atol=1e-3)
    d2 = json.loads((out / "bundles" / "cnn-d2" / "map.json").read_text())
    assert d2["plane"]["axes"] == [[1.0, 0.0], [0.0, 1.0]]  # d=2: the latent plane itself
    assert d2["gallery"]["n"] == 50


def test_site_replaces_its_own_folder_only(tmp_path):
    out = tmp_path / "site"
    build_site(["cnn-d2"], out, OFFLINE, points=20)
    build_site(["cnn-d4"], out, OFFLINE, points=20)  # a previous aetool site: replaced whole
    assert [p.name for p in (out / "bundles").iterdir()] == ["cnn-d4"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(AetoolError, match="not an aetool site"):
        build_site(["cnn-d2"], mine, OFFLINE, points=20)
    assert (mine / "notes.txt").read_text() == "keep me"
    build_site(["cnn-d2"], mine, OFFLINE, points=20, force=True)
    assert not (mine / "notes.txt").exists() and (mine / SITE_FILE).is_file()


def test_int8_bundles_are_refused(tmp_path):
    with pytest.raises(AetoolError, match="its graphs are int8, which onnxruntime-web does not match"):
        build_site(["cnn-d16-int8"], tmp_path / "site", OFFLINE)
    assert not (tmp_path / "site").exists()


def test_runtime_is_found_or_named_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AETOOL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(AetoolError, match="no onnxruntime-web runtime in .*install.sh.*--runtime DIR.*--runtime-url"):
        find_runtime(fetch=False)
    dist = tmp_path / "node_modules" / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in RUNTIME_FILES:
        (dist / name).write_bytes(b"x")
    with pytest.raises(AetoolError, match="ort.wasm.min.js is not onnxruntime-web 1.30.0's"):
        find_runtime(dist.parent)  # the right names are not enough: the same SHA-256 check as npm's files
    monkeypatch.setattr("aetool.web.RUNTIME_FILES", {name: hashlib.sha256(b"x").hexdigest() for name in RUNTIME_FILES})
    assert find_runtime(dist.parent).folder == dist  # the package folder or its dist/
    with pytest.raises(AetoolError, match="--runtime .*: no ort.wasm.min.js"):
        find_runtime(tmp_path)
    assert find_runtime(runtime_url="https://cdn.example/dist").url == "https://cdn.example/dist/"


@pytest.mark.slow
def test_web_command_is_torch_free_and_answers_bad_input_in_one_line(tmp_path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None  # any import of torch now fails\n")
    env = {"PYTHONPATH": str(blocker)}
    report = json.loads(run_cli("web", "--bundle", "cnn-d2", "-o", "site", "--points", "50", "--json",
                                "--runtime-url", "https://cdn.example/dist/", cwd=tmp_path, env=env).stdout)
    assert report["bundles"][0]["name"] == "cnn-d2" and (tmp_path / "site" / "index.html").is_file()
    usage_error(run_cli("web", "--bundle", "cnn-d16-int8", "-o", "s2", "--runtime-url", "https://x/", cwd=tmp_path,
                        check=False), "int8")
    usage_error(run_cli("web", "--runtime", str(tmp_path), "--runtime-url", "https://x/", cwd=tmp_path, check=False),
                "not both")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("a")
    proc = run_cli("web", "-o", "other", "--runtime-url", "https://x/", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "not an aetool site" in proc.stderr
    assert "Examples:" in run_cli("web", "--help", cwd=tmp_path).stdout


# ---------------------------------------------------------------- the page in a browser
def _browser_or_skip() -> tuple[str, Path]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (scripts/install.sh installs Debian's when it can)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')")
    try:
        runtime = find_runtime(fetch=False)
    except AetoolError:
        pytest.skip(f"no onnxruntime-web files in {runtime_cache_dir()} (scripts/install.sh fetches them with npm)")
    return chromium, runtime.folder


page_colour: list[Path] = []  # the colour bundle and its pictures, once the page fixture made them


# the page is all the browser may reach: no update checks, sync, QUIC or other background traffic
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def page(tmp_path_factory, photo_bundle):
    """The site for cnn-d2, cnn-d16 (which has an anomaly calibration), linear colour bundles and a photo
    network's bundle, open in headless Chromium."""
    chromium, runtime = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("web")
    site = root / "site"
    colour = _linear_colour_bundle(root / "colour")
    unsure = _linear_colour_bundle(root / "colour-unsure")  # calibrated on too few images for 1 %: no threshold
    from aetool.anomaly import calibrate_parts, write_calibration

    rng = np.random.default_rng(2)
    write_calibration(unsure, calibrate_parts(np.exp(rng.normal(2, 0.3, 20)), rng.normal(0, 1, 20), 0.01))
    from mapbundles import make_map_bundle

    maps = make_map_bundle(root / "maps")
    appearance = make_map_bundle(root / "maps-calibrated", name="maps-calibrated")  # its map: the appearance model's
    from aetool.anomaly import calibrate
    from mapbundles import photo

    write_calibration(appearance, calibrate(load_bundle(appearance, device="cpu"),
                                            [photo(40 + i, 56, seed=i) for i in range(12)], 0.2))
    build_site(["cnn-d2", "cnn-d16", str(colour), str(unsure), str(photo_bundle), str(maps), str(appearance)], site,
               Runtime(folder=runtime),
               points=500, images=_pictures(root / "pics"))
    page_colour[:] = [colour, root / "pics", maps, appearance]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    messages: list[tuple[str, str]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1500, "height": 1000})
            pg.on("console", lambda m: messages.append((m.type, m.text)))
            pg.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
            pg.goto(f"http://127.0.0.1:{server.server_port}/index.html")
            pg.evaluate("window.aetool.ready")
            pg.messages = messages
            yield pg
        finally:
            browser.close()
            server.shutdown()


def _use(page, name: str) -> None:
    page.evaluate("name => window.aetool.use(name).then(() => null)", name)


pytestmark_browser = pytest.mark.slow


@pytestmark_browser
def test_page_loads_without_console_errors(page):
    assert page.evaluate("window.aetool.errors") == []
    bad = [m for m in page.messages if m[0] in ("error", "pageerror")]
    assert bad == [], bad
    assert page.evaluate("window.aetool.meta().name") in ("cnn-d2", "cnn-d16", "colour")


@pytestmark_browser
@pytest.mark.parametrize("name", ["cnn-d2", "cnn-d16"])
def test_decode_and_encode_match_python_onnxruntime(page, name):
    _use(page, name)
    b = load_bundle(name, device="cpu")
    rng = np.random.default_rng(7)
    z = b.density.sample(3, rng=rng).astype(np.float64)
    in_page = np.array(page.evaluate("zs => window.aetool.decodeMany(zs)", z.tolist()))
    assert np.abs(in_page - b.decode(z).reshape(3, -1)).max() < 1e-4
    from aetool.mnist import mnist_test_head

    x = mnist_test_head(1).images[0]
    z_page = np.array(page.evaluate("x => window.aetool.encode(x)", x.ravel().tolist()))
    assert np.abs(z_page - b.encode(x[None]).ravel()).max() < 1e-4
    ends = z[:2].tolist()
    frames = np.array(page.evaluate("([a, b]) => window.aetool.interpolate(a, b, 5)", ends))
    alpha = np.linspace(0, 1, 5)[:, None]
    assert np.abs(frames - b.decode((1 - alpha) * z[0] + alpha * z[1]).reshape(5, -1)).max() < 1e-4


@pytestmark_browser
def test_drawn_stroke_is_reconstructed_placed_and_scored_like_python(page):
    _use(page, "cnn-d16")
    box = page.locator("#draw").bounding_box()
    at = lambda fx, fy: (box["x"] + fx * box["width"], box["y"] + fy * box["height"])  # noqa: E731
    page.mouse.move(*at(0.3, 0.25))
    page.mouse.down()
    for point in ((0.7, 0.25), (0.45, 0.8)):  # a 7
        page.mouse.move(*at(*point), steps=8)
    page.mouse.up()
    page.wait_for_function("window.aetool.drawn() !== null && !window.aetool.drawing()")
    drawn = page.evaluate("window.aetool.drawn()")
    x, recon = np.array(drawn["x"], np.float32).reshape(1, 1, 28, 28), np.array(drawn["recon"]).reshape(1, 1, 28, 28)
    assert x.max() > 0.9 and 20 < (x > 0.5).sum() < 400  # a stroke, fitted as a digit
    assert recon.max() > 0.3 and np.abs(recon - x).mean() < 0.2  # reconstructed, not blank
    # the page prepares the drawing as image_input.py prepares a picture of a digit
    from aetool.image_input import mnist_normalise

    grey = np.array(drawn["grey"], np.float32).reshape(drawn["h"], drawn["w"])
    assert np.abs(mnist_normalise(grey) - x[0, 0]).max() < 2e-3
    # its latent, place on the map and anomaly score are Python's
    b = load_bundle("cnn-d16", device="cpu")
    assert np.abs(np.array(drawn["z"]) - b.encode(x).ravel()).max() < 1e-4
    from aetool.anomaly import combine, parts

    sse, nll = parts(b, x)
    expected = float(combine(sse, nll, b.meta.anomaly)[0])
    assert drawn["score"]["score"] == pytest.approx(expected, abs=1e-3)
    assert drawn["score"]["flagged"] == (expected > b.meta.anomaly.threshold)


@pytestmark_browser
@pytest.mark.parametrize("kind", ["diagonal_gaussian", "gaussian_mixture"])
def test_sampler_matches_the_density_in_latent_json(page, kind):
    """Mean and covariance of 2,000 in-page samples within 5 standard errors of the density's own."""
    _use(page, "cnn-d16")
    b = load_bundle("cnn-d16", device="cpu")
    from aetool.web import _density_moments

    params = b.meta.densities[kind]
    b.meta.default_density = kind  # _density_moments reads the default
    mean, cov = _density_moments(b)
    n = 2000
    z = np.array(page.evaluate("([kind, n]) => window.aetool.sample(n, 123, kind)", [kind, n]))
    assert z.shape == (n, 16) and np.isfinite(z).all()
    assert np.all(np.abs(z.mean(axis=0) - mean) < 5 * np.sqrt(np.diag(cov) / n))
    c = z - z.mean(axis=0)
    sample_cov = c.T @ c / (n - 1)
    # the standard error of each covariance entry, from the samples' fourth moments
    se = np.sqrt(np.maximum((np.einsum("ni,nj->ij", c**2, c**2) / n - sample_cov**2) / n, 1e-30))
    assert np.all(np.abs(sample_cov - cov) < 5 * se + 1e-9)
    # a different seed gives different samples, the same seed the same
    again = np.array(page.evaluate("([kind]) => window.aetool.sample(3, 123, kind)", [kind]))
    assert np.array_equal(again, z[:3]) and not np.array_equal(
        np.array(page.evaluate("([kind]) => window.aetool.sample(3, 124, kind)", [kind])), again)
    # and the page's log-density (the anomaly score's NLL) is Python's
    from aetool.density import density_from_dict

    lp_page = [page.evaluate("([z, kind]) => window.aetool.logProb(z, kind)", [row.tolist(), kind]) for row in z[:5]]
    assert np.allclose(lp_page, density_from_dict(params).score_samples(z[:5]), rtol=1e-9, atol=1e-9)


@pytestmark_browser
def test_screenshot_is_not_blank(page, tmp_path):
    from PIL import Image

    _use(page, "cnn-d2")
    page.mouse.move(*(lambda b: (b["x"] + b["width"] / 2, b["y"] + b["height"] / 3))(page.locator("#map").bounding_box()))
    page.wait_for_timeout(200)
    path = tmp_path / "web.png"
    page.screenshot(path=str(path), full_page=True)
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert a.shape[0] > 500 and a.shape[1] > 800 and a.std() > 20
    assert len(np.unique(a.reshape(-1, 3)[::7], axis=0)) > 200  # scatter colours, digits, text
    assert page.evaluate("window.aetool.errors") == []
    assert not math.isnan(page.evaluate("window.aetool.timeDecode(5).then(t => t.median_ms)"))


@pytestmark_browser
def test_colour_bundle_runs_in_the_page(page):
    """An RGB bundle: decoding, and a picture prepared as image_input.py prepares it (resize_pad, 8 bits)."""
    from PIL import Image

    bundle_dir, pics = page_colour[:2]
    _use(page, "colour")
    b = load_bundle(bundle_dir, device="cpu")
    z = [[0.3, -0.2, 0.5]]
    assert np.abs(np.array(page.evaluate("zs => window.aetool.decodeMany(zs)", z)) - b.decode(np.array(z)).reshape(1, -1)).max() < 1e-4
    picture = pics / "p0.png"
    rgba = np.asarray(Image.open(picture).convert("RGBA"))
    got = page.evaluate("([a, w, h]) => window.aetool.analyse(a, w, h)", [rgba.ravel().tolist(), rgba.shape[1], rgba.shape[0]])
    expected = b.load_images([picture])
    assert np.abs(np.array(got["x"]) - expected.ravel()).max() <= 1.01 / 255  # at most one 8-bit level apart
    assert np.abs(np.array(got["z"]) - b.encode(np.array(got["x"], np.float32).reshape(1, 3, 8, 8)).ravel()).max() < 1e-4
    assert got["score"]["score"] is None  # no anomaly calibration in this bundle
    assert page.evaluate("window.aetool.map().points.length") == 6
    assert page.evaluate("window.aetool.errors") == []


def test_a_bundle_without_a_threshold_scores_but_gives_no_verdict_in_the_page(page):
    """The rule of aetool score: a calibration too small for its rate has a score and no threshold."""
    from PIL import Image

    from aetool import load_bundle
    from aetool.anomaly import combine, parts

    bundle_dir, pics = page_colour[:2]
    _use(page, "colour-unsure")
    assert "no anomaly threshold" in page.evaluate("document.getElementById('info').textContent")
    rgba = np.asarray(Image.open(pics / "p1.png").convert("RGBA"))
    got = page.evaluate("([a, w, h]) => window.aetool.analyse(a, w, h)", [rgba.ravel().tolist(), rgba.shape[1], rgba.shape[0]])
    b = load_bundle(bundle_dir.parent / "colour-unsure", device="cpu")
    sse, nll = parts(b, np.array(got["x"], np.float32).reshape(1, 3, 8, 8))
    assert got["score"]["score"] == pytest.approx(float(combine(sse, nll, b.meta.anomaly)[0]), rel=1e-4, abs=1e-4)
    assert got["score"]["threshold"] is None and got["score"]["flagged"] is None
    assert "no threshold in this bundle, so no verdict" in page.evaluate("document.getElementById('score').textContent")
    assert page.evaluate("window.aetool.errors") == []


@pytestmark_browser
def test_photo_network_bundle_runs_in_the_page(page, photo_bundle):
    """The photo family's graphs (folded BatchNorm, SiLU, DepthToSpace, its linear paths) give in
    onnxruntime-web what they give in Python."""
    _use(page, "photo")
    b = load_bundle(photo_bundle, device="cpu")
    z = b.density.sample(3, rng=np.random.default_rng(3)).astype(np.float64)
    in_page = np.array(page.evaluate("zs => window.aetool.decodeMany(zs)", z.tolist()))
    assert np.abs(in_page - b.decode(z.astype(np.float32)).reshape(3, -1)).max() < 1e-4
    rgb = np.random.default_rng(4).integers(0, 256, (32, 32, 3))
    rgba = np.concatenate([rgb, np.full((32, 32, 1), 255)], 2)
    got = page.evaluate("([a, w, h]) => window.aetool.analyse(a, w, h)", [rgba.ravel().tolist(), 32, 32])
    x = np.array(got["x"], np.float32).reshape(1, 3, 32, 32)
    assert np.abs(x - rgb.transpose(2, 0, 1)[None] / 255).max() <= 1.01 / 255  # a 32x32 picture stays as it is
    assert np.abs(np.array(got["z"]) - b.encode(x).ravel()).max() < 1e-4
    assert page.evaluate("window.aetool.errors") == []


@pytestmark_browser
def test_map_bundle_reconstructs_a_picture_at_its_own_size_in_the_page(page):
    """A map bundle: latent.json's layout read, the code-vector panels hidden, and a non-square
    picture padded by reflection, run and cropped back as Bundle.reconstruct_picture does it."""
    from aetool.anomaly import map_parts
    from aetool.bundle_format import graph_shapes

    from mapbundles import photo

    maps = page_colour[2]
    _use(page, "maps")
    b = load_bundle(maps, device="cpu")
    assert page.evaluate("window.aetool.isMap()") is True
    assert sorted(page.evaluate("window.aetool.hidden()")) == ["interp-panel", "map-panel", "slider-panel"]
    assert page.evaluate("window.aetool.graphShapes()") == {k: list(v) for k, v in graph_shapes(b.d, b.meta.image, b.layout).items()}
    x = np.round(photo(45, 70, seed=5) * 255).astype(np.uint8)
    rgba = np.concatenate([x.transpose(1, 2, 0), np.full((45, 70, 1), 255, np.uint8)], 2)
    got = page.evaluate("([a, w, h]) => window.aetool.analyse(a, w, h)", [rgba.ravel().tolist(), 70, 45])
    picture = x.astype(np.float32) / 255
    assert np.abs(np.array(got["x"]) - picture.ravel()).max() < 1e-6
    assert got["zShape"] == [b.d, 6, 9]
    assert np.abs(np.array(got["recon"]) - b.reconstruct_picture(picture).ravel()).max() < 1e-4
    sse, nll = map_parts(b, [picture])
    assert got["score"]["sse"] == pytest.approx(float(sse[0]), rel=1e-4)
    assert got["score"]["nll"] == pytest.approx(float(nll[0]), rel=1e-4, abs=1e-4)
    assert "at its own size" in page.evaluate("document.getElementById('score').textContent")
    assert page.evaluate("window.aetool.errors") == []


@pytestmark_browser
def test_appearance_map_is_pythons_in_the_page(page):
    """A calibrated map bundle's map is its appearance model's (local statistics against a bank of
    normal ones): the page's map peak and score are Python's."""
    from aetool.anomaly import combine, map_parts

    from mapbundles import photo

    _use(page, "maps-calibrated")
    b = load_bundle(page_colour[3], device="cpu")
    assert b.meta.anomaly.appearance is not None
    x = np.round(photo(37, 50, seed=9) * 255).astype(np.uint8)
    x[:, 10:20, 20:30] = 255  # a bright square the normal pictures never had
    rgba = np.concatenate([x.transpose(1, 2, 0), np.full((37, 50, 1), 255, np.uint8)], 2)
    got = page.evaluate("([a, w, h]) => window.aetool.analyse(a, w, h)", [rgba.ravel().tolist(), 50, 37])
    sse, nll = map_parts(b, [x.astype(np.float32) / 255])
    assert got["score"]["sse"] == pytest.approx(float(sse[0]), rel=1e-3)
    assert got["score"]["score"] == pytest.approx(float(combine(sse, nll, b.meta.anomaly)[0]), rel=1e-3, abs=1e-3)
    assert page.evaluate("window.aetool.errors") == []

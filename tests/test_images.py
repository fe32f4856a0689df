"""Tests for aetool.image_input, reading any user image as an MNIST digit, and
aetool.image_output, writing grids / GIFs atomically.  No model, no torch; every file is synthetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from aetool.errors import AetoolError
from aetool.image_input import load_image, load_images
from aetool.image_output import make_grid, stack_rows, to_uint8, write_gif, write_png

# ---------------------------------------------------------------------------
# synthetic digits


def digit(h: int = 28, w: int = 28) -> np.ndarray:
    """White 'circled plus' on black: bright centre, dark border, symmetric."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    r = np.hypot(yy - cy, xx - cx)
    ring = np.abs(r - 0.3 * min(h, w)) < 0.06 * min(h, w)
    cross = ((np.abs(yy - cy) < 2) | (np.abs(xx - cx) < 2)) & (r < 0.3 * min(h, w))
    return (ring | cross).astype(np.float32)


D = digit()
D8 = (D * 255).astype(np.uint8)  # white on black
D8_INV = 255 - D8  # black on white, like ink on paper


class _Stored:
    def __init__(self, mode: str, n_frames: int) -> None:
        self.mode, self.n_frames = mode, n_frames


def stored(p: Path) -> _Stored:
    """What Pillow wrote, read with the file closed again (no ResourceWarning)."""
    with Image.open(p) as im:
        return _Stored(im.mode, getattr(im, "n_frames", 1))


def assert_mnist_like(x: np.ndarray) -> None:
    assert x.shape == (1, 28, 28)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0


def border_mean(x: np.ndarray) -> float:
    a = x[0]
    return float(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).mean())


def assert_white_on_black(x: np.ndarray, exact: bool) -> None:
    assert_mnist_like(x)
    assert x[0, 13, 13] > 0.6 and x[0, 14, 14] > 0.6
    assert border_mean(x) < 0.15
    if exact:
        np.testing.assert_allclose(x[0], D, atol=1 / 255 + 1e-6)


# ---------------------------------------------------------------------------
# formats

LOSSLESS = {"PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}
LOSSY = {"JPEG": ".jpg", "WEBP": ".webp"}


@pytest.mark.parametrize("fmt,suffix", list(LOSSLESS.items()) + list(LOSSY.items()))
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("black_on_white", [False, True])
def test_round_trip_every_format(tmp_path, fmt, suffix, mode, black_on_white):
    src = D8_INV if black_on_white else D8
    p = tmp_path / f"d{suffix}"
    Image.fromarray(src).convert(mode).save(p, format=fmt)
    x = load_image(p)
    assert_white_on_black(x, exact=fmt in LOSSLESS)


def test_gif_uses_first_frame(tmp_path):
    p = tmp_path / "anim.gif"
    frames = [Image.fromarray(D8), Image.fromarray(np.zeros_like(D8))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100)
    assert stored(p).n_frames == 2
    assert_white_on_black(load_image(p), exact=True)


def test_webp_lossless(tmp_path):
    p = tmp_path / "d.webp"
    Image.fromarray(D8_INV).save(p, lossless=True)
    assert_white_on_black(load_image(p), exact=True)


# ---------------------------------------------------------------------------
# modes


def test_mode_1_bilevel(tmp_path):
    p = tmp_path / "bw.png"
    Image.fromarray(D8_INV).convert("1", dither=Image.Dither.NONE).save(p)
    assert stored(p).mode == "1"
    assert_white_on_black(load_image(p), exact=True)


def test_mode_i16_scaled_by_65535(tmp_path):
    p = tmp_path / "d16.png"
    Image.fromarray((D * 65535).astype(np.uint16)).save(p)
    assert stored(p).mode.startswith("I;16")
    assert_white_on_black(load_image(p), exact=True)
    # a mid-grey 16-bit value must map to ~0.5, not be clipped to 1
    q = tmp_path / "grey16.png"
    Image.fromarray(np.full((28, 28), 30000, np.uint16)).save(q)
    np.testing.assert_allclose(load_image(q, invert=False), 30000 / 65535, atol=1e-5)


@pytest.mark.parametrize("peak,expected", [(65535, 1.0), (40000, 40000 / 65535), (255, 1.0), (100, 100 / 255)])
def test_mode_i_range_guess(tmp_path, peak, expected):
    p = tmp_path / "d32.tif"
    Image.fromarray((D * peak).astype(np.int32)).save(p)
    assert stored(p).mode == "I"
    x = load_image(p, invert=False)
    assert_mnist_like(x)
    assert x[0].max() == pytest.approx(expected, abs=1e-5)
    assert border_mean(x) == 0.0


@pytest.mark.parametrize("peak", [1.0, 0.5, 1000.0])
def test_mode_f(tmp_path, peak):
    p = tmp_path / "df.tif"
    Image.fromarray((D * peak).astype(np.float32)).save(p)
    assert stored(p).mode == "F"
    x = load_image(p, invert=False)
    assert_mnist_like(x)
    # <= 1 is kept as is; larger data is divided by its max
    assert x[0].max() == pytest.approx(min(peak, 1.0) if peak <= 1 else 1.0)


def test_mode_f_out_of_range_values_are_clipped(tmp_path):
    p = tmp_path / "neg.tif"
    a = D.copy() - 0.5  # -0.5 .. 0.5
    Image.fromarray(a.astype(np.float32)).save(p)
    x = load_image(p, invert=False)
    assert_mnist_like(x)
    assert x.min() == 0.0 and x.max() == pytest.approx(0.5)


@pytest.mark.parametrize("ink", [0, 255])
@pytest.mark.parametrize("under", [0, 255])
def test_rgba_digit_on_transparent(tmp_path, ink, under):
    """Black or white digit on a transparent background, whatever colour the
    invisible pixels carry, ends up white on black."""
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = np.where(D8[..., None] > 0, ink, under)
    rgba[..., 3] = D8
    p = tmp_path / "t.png"
    Image.fromarray(rgba).save(p)
    assert stored(p).mode == "RGBA"
    assert_white_on_black(load_image(p), exact=True)


def test_la_mode(tmp_path):
    la = np.stack([np.zeros_like(D8), D8], axis=-1)  # black ink, alpha = digit
    p = tmp_path / "la.png"
    Image.fromarray(la).save(p)
    assert stored(p).mode == "LA"
    assert_white_on_black(load_image(p), exact=True)


def test_p_mode_without_transparency(tmp_path):
    p = tmp_path / "p.png"
    Image.fromarray(D8_INV).convert("P").save(p)
    assert stored(p).mode == "P"
    assert_white_on_black(load_image(p), exact=True)


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_p_mode_with_transparency(tmp_path, suffix):
    # palette: 0 = white (transparent background), 1 = black ink
    idx = np.where(D8 > 0, 1, 0).astype(np.uint8)
    im = Image.new("P", (28, 28))
    im.putpalette([255, 255, 255, 0, 0, 0] + [0] * (254 * 3))
    im.paste(Image.fromarray(idx), (0, 0))
    p = tmp_path / f"pt{suffix}"
    im.save(p, transparency=0)
    with Image.open(p) as check:
        assert check.mode == "P" and "transparency" in check.info
    assert_white_on_black(load_image(p), exact=True)


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "c.jpg"
    Image.fromarray(D8_INV).convert("RGB").convert("CMYK").save(p, quality=95)
    assert stored(p).mode == "CMYK"
    assert_white_on_black(load_image(p), exact=False)


# ---------------------------------------------------------------------------
# inversion


def test_white_on_black_not_inverted_and_black_on_white_inverted(tmp_path):
    a, b = tmp_path / "wob.png", tmp_path / "bow.png"
    Image.fromarray(D8).save(a)
    Image.fromarray(D8_INV).save(b)
    np.testing.assert_array_equal(load_image(a), load_image(b))
    assert_white_on_black(load_image(a), exact=True)


def test_invert_override(tmp_path):
    p = tmp_path / "wob.png"
    Image.fromarray(D8).save(p)
    forced = load_image(p, invert=True)
    np.testing.assert_allclose(forced[0], 1 - D, atol=1e-6)
    assert border_mean(forced) > 0.85
    np.testing.assert_allclose(load_image(p, invert=False)[0], D, atol=1e-6)
    q = tmp_path / "bow.png"
    Image.fromarray(D8_INV).save(q)
    np.testing.assert_allclose(load_image(q, invert=False)[0], 1 - D, atol=1e-6)


# ---------------------------------------------------------------------------
# size normalisation


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    t = a.sum()
    ys, xs = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    return float((a * ys).sum() / t), float((a * xs).sum() / t)


def test_large_image_is_cropped_scaled_and_centred(tmp_path):
    h, w = 120, 200
    page = np.full((h, w), 255, np.uint8)  # white paper
    # an off-centre, lopsided "7": top bar + diagonal, in the upper-left area
    page[10:18, 20:70] = 0
    for i in range(60):
        page[18 + i, 60 - i // 2 : 68 - i // 2] = 0
    p = tmp_path / "big.jpg"
    Image.fromarray(page).save(p, quality=95)
    x = load_image(p)
    assert_mnist_like(x)
    cy, cx = centre_of_mass(x[0])
    assert abs(cy - 13.5) <= 2 and abs(cx - 13.5) <= 2
    ink = x[0] > 0.1
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) in (19, 20, 21)
    assert border_mean(x) < 0.05


def test_tall_thin_digit_keeps_aspect(tmp_path):
    a = np.zeros((100, 100), np.uint8)
    a[10:90, 45:55] = 255  # a "1": 80 tall, 10 wide
    p = tmp_path / "one.png"
    Image.fromarray(a).save(p)
    x = load_image(p)
    ink = x[0] > 0.5
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    assert rows[-1] - rows[0] + 1 == 20
    assert 2 <= cols[-1] - cols[0] + 1 <= 4
    cy, cx = centre_of_mass(x[0])
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def test_blank_large_image_just_resized(tmp_path):
    p = tmp_path / "blank.png"
    Image.new("L", (64, 40), 255).save(p)
    x = load_image(p)
    assert_mnist_like(x)
    assert x.max() == 0.0  # white page inverted to empty black canvas


def test_load_images_batch(tmp_path):
    paths = []
    for i, src in enumerate([D8, D8_INV, D8]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(src).save(paths[-1])
    batch = load_images(paths)
    assert batch.shape == (3, 1, 28, 28) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], batch[1])
    assert load_images([]).shape == (0, 1, 28, 28)


# ---------------------------------------------------------------------------
# errors


def assert_one_line_error(excinfo, path: Path, *words: str) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert str(path) in msg
    for w in words:
        assert w in msg


def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(AetoolError) as e:
        load_image(p)
    assert_one_line_error(e, p, "not found")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(AetoolError) as e:
        load_image(p)
    assert_one_line_error(e, p, "empty")


def test_directory(tmp_path):
    d = tmp_path / "folder.png"
    d.mkdir()
    with pytest.raises(AetoolError) as e:
        load_image(d)
    assert_one_line_error(e, d, "directory")


def test_garbage_bytes(tmp_path):
    p = tmp_path / "junk.png"
    p.write_bytes(b"this is not an image\n" * 20)
    with pytest.raises(AetoolError) as e:
        load_image(p)
    assert_one_line_error(e, p, "not an image")


def _truncated(tmp_path: Path, fmt: str, suffix: str) -> Path:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (120, 200), dtype=np.uint8)  # incompressible
    full = tmp_path / f"full{suffix}"
    Image.fromarray(noise).save(full, format=fmt)
    data = full.read_bytes()
    p = tmp_path / f"cut{suffix}"
    p.write_bytes(data[: len(data) // 2])
    return p


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("BMP", ".bmp")])
def test_truncated_image(tmp_path, fmt, suffix):
    p = _truncated(tmp_path, fmt, suffix)
    with pytest.raises(AetoolError) as e:
        load_image(p)
    assert_one_line_error(e, p)


def test_truncated_detected_even_if_global_flag_set(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    p = _truncated(tmp_path, "PNG", ".png")
    with pytest.raises(AetoolError):
        load_image(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for its owner


def test_error_in_batch_names_the_bad_file(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(D8).save(good)
    bad = tmp_path / "bad.png"
    with pytest.raises(AetoolError) as e:
        load_images([good, bad])
    assert_one_line_error(e, bad)


# ---------------------------------------------------------------------------
# layout


def test_to_uint8_clips_and_rounds():
    out = to_uint8(np.array([-0.5, 0.0, 0.5, 1 / 255, 1.0, 2.0, np.nan], np.float32))
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 128, 1, 255, 255, 0]


def test_make_grid_shape_and_contents():
    rng = np.random.default_rng(1)
    imgs = rng.uniform(-0.2, 1.2, (5, 1, 28, 28)).astype(np.float32)
    g = make_grid(imgs, ncols=3, pad=2)
    assert g.dtype == np.uint8 and g.shape == (2 * 30 + 2, 3 * 30 + 2)
    np.testing.assert_array_equal(g[2:30, 2:30], to_uint8(imgs[0, 0]))
    np.testing.assert_array_equal(g[32:60, 32:60], to_uint8(imgs[4, 0]))  # row 1, col 1
    assert (g[32:60, 62:90] == 64).all()  # empty cell: pad colour (0.25 -> 64)
    assert (g[0:2, :] == 64).all() and (g[:, 0:2] == 64).all()


def test_make_grid_clamps_ncols_and_pad_zero():
    imgs = np.ones((2, 1, 4, 6), np.float32)
    assert make_grid(imgs, ncols=8, pad=1).shape == (1 * 5 + 1, 2 * 7 + 1)
    g = make_grid(imgs, ncols=1, pad=0, pad_value=0.0)
    assert g.shape == (8, 6) and (g == 255).all()


def test_make_grid_rejects_bad_input():
    with pytest.raises(AetoolError):
        make_grid(np.zeros((3, 1, 28, 28)), ncols=0)
    with pytest.raises(AetoolError):
        make_grid(np.zeros((0, 1, 28, 28)), ncols=4)


def test_stack_rows():
    a = np.full((10, 20), 200, np.uint8)
    b = np.full((5, 12), 100, np.uint8)
    s = stack_rows([a, b], gap=4, pad_value=0.0)
    assert s.shape == (10 + 4 + 5, 20) and s.dtype == np.uint8
    assert (s[:10] == 200).all()
    assert (s[10:14] == 0).all()  # gap
    assert (s[14:, :12] == 100).all() and (s[14:, 12:] == 0).all()  # right padding
    assert stack_rows([a]).shape == a.shape


# ---------------------------------------------------------------------------
# writing


def test_write_png_scale(tmp_path):
    g = np.arange(200, dtype=np.uint8).reshape(10, 20)
    p = tmp_path / "g.png"
    write_png(g, p, scale=3)
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (60, 30) and im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), np.repeat(np.repeat(g, 3, 0), 3, 1))
    write_png(g, p, scale=1)
    with Image.open(p) as im:
        np.testing.assert_array_equal(np.asarray(im), g)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["g.png"]  # no temp left


@pytest.mark.parametrize(
    "suffix,fmt",
    [(".jpg", "JPEG"), (".JPEG", "JPEG"), (".bmp", "BMP"), (".webp", "WEBP"), (".tif", "TIFF"), (".tiff", "TIFF")],
)
def test_write_png_format_from_suffix(tmp_path, suffix, fmt):
    p = tmp_path / f"g{suffix}"
    write_png(np.full((8, 8), 77, np.uint8), p, scale=2)
    with Image.open(p) as im:
        assert im.format == fmt and im.size == (16, 16)


def test_write_png_rejects_suffix_and_scale(tmp_path):
    g = np.zeros((4, 4), np.uint8)
    p = tmp_path / "g.xyz"
    with pytest.raises(AetoolError) as e:
        write_png(g, p)
    assert "'.xyz'" in str(e.value) and ".png" in str(e.value)
    assert not p.exists()
    for bad in (0, -1, 1.5):
        with pytest.raises(AetoolError):
            write_png(g, tmp_path / "g.png", scale=bad)
    assert list(tmp_path.iterdir()) == []


def frames(t: int, size: int = 6) -> list[np.ndarray]:
    return [np.full((size, size + 2), 30 * i, np.uint8) for i in range(t)]


def test_write_gif_frames_and_bounce(tmp_path):
    p = tmp_path / "a.gif"
    write_gif(frames(4), p, fps=8, scale=3)
    with Image.open(p) as im:
        assert im.format == "GIF" and im.n_frames == 4 and im.size == (24, 18)
        # 1000/8 = 125 ms; GIF stores delays in 1/100 s, so 120 or 130 comes back
        assert 120 <= im.info["duration"] <= 130 and im.info["loop"] == 0
    write_gif(frames(4), p, scale=1, bounce=True)
    with Image.open(p) as im:
        assert im.n_frames == 2 * 4 - 2
        seen = []
        for k in range(im.n_frames):
            im.seek(k)
            seen.append(int(np.asarray(im.convert("L"))[0, 0]))
        assert seen == [0, 30, 60, 90, 60, 30]


def test_write_gif_no_loop_and_single_frame(tmp_path):
    p = tmp_path / "once.gif"
    write_gif(frames(3), p, loop=False)
    with Image.open(p) as im:
        assert im.n_frames == 3 and "loop" not in im.info
    write_gif(frames(1), p, bounce=True)
    with Image.open(p) as im:
        assert im.n_frames == 1


def test_write_gif_rejects_bad_fps(tmp_path):
    for bad in (0, -2, float("nan")):
        with pytest.raises(AetoolError):
            write_gif(frames(2), tmp_path / "a.gif", fps=bad)
    with pytest.raises(AetoolError):
        write_gif([], tmp_path / "a.gif")
    assert list(tmp_path.iterdir()) == []


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(AetoolError):
        write_png(np.zeros((4, 4), np.uint8), tmp_path / "no" / "g.png")
    with pytest.raises(AetoolError):
        write_gif(frames(2), tmp_path / "no" / "a.gif")


@pytest.mark.parametrize("which", ["png", "gif"])
def test_failed_write_keeps_previous_file(tmp_path, monkeypatch, which):
    p = tmp_path / f"out.{which}"
    write = (lambda: write_png(np.zeros((4, 4), np.uint8), p)) if which == "png" else (
        lambda: write_gif(frames(2), p)
    )
    write()
    before = p.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(AetoolError) as e:
        write()
    assert str(p) in str(e.value) and "No space left" in str(e.value)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name]


def test_modules_do_not_import_torch():
    code = "import sys, aetool.image_input, aetool.image_output; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0

"""Tests for aetool.image_input's pictures (bundles trained on a folder: grey or RGB, any size) and
aetool.image_output's colour output; grey output must stay exactly what it was.  Synthetic files only, no torch."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aetool.errors import AetoolError
from aetool.image_input import (
    FITS,
    PREPROCESSINGS,
    _read_pillow,
    from_uint8,
    load_for,
    load_images,
    load_picture,
    load_pictures,
    picture_to_uint8,
)
from aetool.image_output import make_grid, stack_rows, to_uint8, write_gif, write_png

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(w: int, h: int, colour, mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (w, h), colour)


def save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


# ---------------------------------------------------------------------------
# geometry


def test_pad_wide_picture_gets_black_bars_above_and_below(tmp_path):
    p = save(solid(40, 20, RED), tmp_path / "wide.png")
    x = picture_to_uint8(p, 3, 32, "pad")
    assert x.shape == (3, 32, 32) and x.dtype == np.uint8
    # 40x20 -> 32x16, centred: 8 black rows, 16 red rows, 8 black rows
    assert (x[:, :8] == 0).all() and (x[:, 24:] == 0).all()
    assert (x[0, 8:24] == 255).all() and (x[1:, 8:24] == 0).all()


def test_pad_tall_picture_gets_black_bars_left_and_right(tmp_path):
    p = save(solid(20, 40, GREEN), tmp_path / "tall.png")
    x = picture_to_uint8(p, 3, 32)  # pad is the default
    assert (x[:, :, :8] == 0).all() and (x[:, :, 24:] == 0).all()
    assert (x[1, :, 8:24] == 255).all()


def test_crop_keeps_the_centre_and_nothing_else(tmp_path):
    a = np.zeros((40, 20, 3), np.uint8)  # 20 wide, 40 tall: blue top, green middle, red bottom
    a[:10] = BLUE
    a[10:30] = GREEN
    a[30:] = RED
    p = save(Image.fromarray(a), tmp_path / "tall.png")
    x = picture_to_uint8(p, 3, 32, "crop")
    assert x.shape == (3, 32, 32)
    assert (x[1] == 255).all() and (x[0] == 0).all() and (x[2] == 0).all()  # no blue or red bled in


def test_square_picture_same_size_is_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), np.uint8)
    p = save(Image.fromarray(a), tmp_path / "sq.png")
    for fit in FITS:
        np.testing.assert_array_equal(picture_to_uint8(p, 3, 32, fit), a.transpose(2, 0, 1))


def test_downscale_is_clipped_and_in_range(tmp_path):
    # a hard-edged pattern rings under LANCZOS; the result must still be valid bytes
    a = np.zeros((300, 300), np.uint8)
    a[::7] = 255
    p = save(Image.fromarray(a), tmp_path / "stripes.png")
    x = picture_to_uint8(p, 1, 64, "crop")
    assert x.shape == (1, 64, 64) and x.dtype == np.uint8
    assert 0.1 < x.mean() / 255 < 0.3  # about 1/7 of the area is white


def test_exif_orientation_is_honoured(tmp_path):
    im = solid(40, 20, RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated by 90 degrees: portrait
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif, quality=95)
    x = picture_to_uint8(p, 3, 32, "pad")
    assert (x[:, :, :6] < 10).all() and (x[:, :, 26:] < 10).all()  # bars left and right
    assert (x[0, 4:28, 10:22] > 240).all()


def test_crop_of_a_panorama_keeps_its_height(tmp_path):
    """Shrinking a big picture must not take its shorter side below what the crop needs."""
    p = save(solid(4000, 300, BLUE), tmp_path / "pano.png")
    im = _read_pillow(p, work_side=1024, min_short_side=1024)
    assert im.size == (4000, 300)
    assert _read_pillow(p).size[0] <= 1400  # the digit path still shrinks it
    assert picture_to_uint8(p, 3, 256, "crop").shape == (3, 256, 256)


# ---------------------------------------------------------------------------
# modes


def test_grey_picture_replicated_into_three_channels(tmp_path):
    rng = np.random.default_rng(1)
    p = save(Image.fromarray(rng.integers(0, 256, (30, 50), np.uint8)), tmp_path / "g.png")
    g = picture_to_uint8(p, 1, 32)
    rgb = picture_to_uint8(p, 3, 32)
    assert g.shape == (1, 32, 32) and rgb.shape == (3, 32, 32)
    for c in range(3):
        np.testing.assert_array_equal(rgb[c], g[0])


def test_colour_to_grey_is_luma(tmp_path):
    p = save(solid(8, 8, (200, 100, 50)), tmp_path / "c.png")
    x = picture_to_uint8(p, 1, 8)
    with Image.open(p) as im:
        expected = np.asarray(im.convert("L"))
    assert np.abs(x[0].astype(int) - expected).max() <= 1
    assert x[0, 0, 0] == round(200 * 0.299 + 100 * 0.587 + 50 * 0.114)


def test_rgba_composited_onto_black(tmp_path):
    a = np.zeros((16, 16, 4), np.uint8)
    a[..., :3] = (200, 100, 50)
    a[:8, :, 3] = 255  # top half opaque
    a[8:, :, 3] = 128  # bottom half half-transparent
    a[8:, 8:, 3] = 0  # bottom right transparent, whatever colour it carries
    p = save(Image.fromarray(a), tmp_path / "t.png")
    x = picture_to_uint8(p, 3, 16)
    np.testing.assert_array_equal(x[:, 0, 0], [200, 100, 50])
    np.testing.assert_array_equal(x[:, 12, 2], np.rint(np.array([200, 100, 50]) * 128 / 255))
    assert (x[:, 8:, 8:] == 0).all()
    g = picture_to_uint8(p, 1, 16)  # grey: the same compositing onto black
    assert (g[:, 8:, 8:] == 0).all() and g[0, 0, 0] > 100


def test_la_and_palette_transparency_onto_black(tmp_path):
    la = np.stack([np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8)], axis=-1)
    la[:4, :, 1] = 255
    p = save(Image.fromarray(la), tmp_path / "la.png")
    x = picture_to_uint8(p, 3, 8)
    assert (x[:, :4] == 255).all() and (x[:, 4:] == 0).all()
    im = Image.new("P", (8, 8))
    im.putpalette([255, 255, 255, 255, 0, 0] + [0] * 762)
    im.paste(1, (0, 0, 8, 4))
    q = tmp_path / "p.png"
    im.save(q, transparency=0)
    y = picture_to_uint8(q, 3, 8)
    assert (y[0, :4] == 255).all() and (y[1:, :4] == 0).all() and (y[:, 4:] == 0).all()


def test_sixteen_bit_grey_scaled_not_clipped(tmp_path):
    p = save(Image.fromarray(np.full((10, 10), 30000, np.uint16)), tmp_path / "g16.png")
    with Image.open(p) as im:
        assert im.mode.startswith("I;16")
    for channels in (1, 3):
        x = picture_to_uint8(p, channels, 28)
        # 10x10 fills the whole 28x28 square (the same aspect ratio): all of it mid-grey
        assert (x == round(30000 / 65535 * 255)).all()


def test_float_grey_scaled(tmp_path):
    p = save(Image.fromarray(np.full((8, 8), 0.25, np.float32)), tmp_path / "f.tif")
    assert (picture_to_uint8(p, 1, 8) == round(0.25 * 255)).all()
    q = save(Image.fromarray(np.full((8, 8), 1000.0, np.float32)), tmp_path / "big.tif")
    assert (picture_to_uint8(q, 3, 8) == 255).all()  # data above 1 is divided by its maximum
    r = save(Image.fromarray(np.full((8, 8), 40000, np.int32)), tmp_path / "i.tif")
    with Image.open(r) as im:
        assert im.mode == "I"
    assert (picture_to_uint8(r, 1, 8) == round(40000 / 65535 * 255)).all()


def test_cmyk_and_palette_colour(tmp_path):
    p = save(solid(8, 8, RED).convert("CMYK"), tmp_path / "c.jpg", quality=95)
    x = picture_to_uint8(p, 3, 8)
    assert x[0].min() > 230 and x[1:].max() < 25
    q = save(solid(8, 8, BLUE).convert("P"), tmp_path / "p.gif")
    np.testing.assert_array_equal(picture_to_uint8(q, 3, 8)[:, 0, 0], BLUE)


# ---------------------------------------------------------------------------
# floats, batches, dispatch


def test_load_picture_is_exactly_uint8_over_255(tmp_path):
    rng = np.random.default_rng(2)
    p = save(Image.fromarray(rng.integers(0, 256, (37, 53, 3), np.uint8)), tmp_path / "n.png")
    for channels in (1, 3):
        for fit in FITS:
            u8 = picture_to_uint8(p, channels, 32, fit)
            x = load_picture(p, channels, 32, fit)
            assert x.dtype == np.float32 and x.shape == (channels, 32, 32)
            assert np.array_equal(x, u8.astype(np.float32) / np.float32(255))
            assert np.array_equal(x, from_uint8(u8))
    # from_uint8 is the inverse of to_uint8 on bytes
    b = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(from_uint8(b)), b)


def test_load_pictures_batch_and_empty(tmp_path):
    paths = [save(solid(10 + i, 20, RED), tmp_path / f"{i}.png") for i in range(3)]
    batch = load_pictures(paths, 3, 32, "pad")
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], load_picture(paths[1], 3, 32, "pad"))
    assert load_pictures([], 1, 64).shape == (0, 1, 64, 64)


def test_picture_argument_errors(tmp_path):
    p = save(solid(8, 8, RED), tmp_path / "r.png")
    for kwargs in ({"channels": 2, "size": 32}, {"channels": 3, "size": 0}, {"channels": 3, "size": 32, "fit": "zoom"}):
        with pytest.raises(AetoolError):
            picture_to_uint8(p, **kwargs)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all" * 10)
    with pytest.raises(AetoolError) as e:
        picture_to_uint8(bad, 3, 32)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_load_for_dispatch(tmp_path):
    digit = np.zeros((56, 56), np.uint8)
    digit[10:46, 24:32] = 255
    d = save(Image.fromarray(digit), tmp_path / "one.png")
    c = save(solid(40, 20, RED), tmp_path / "wide.png")
    assert PREPROCESSINGS == ("mnist_digit", "resize_pad", "resize_crop", "own_size")

    x = load_for([d], 1, 28, 28, "mnist_digit")
    np.testing.assert_array_equal(x, load_images([d]))
    np.testing.assert_array_equal(load_for([d], 1, 28, 28, "mnist_digit", invert=True), load_images([d], invert=True))
    for fit in FITS:
        y = load_for([c, d], 3, 64, 64, f"resize_{fit}", invert=True)  # invert ignored for pictures
        np.testing.assert_array_equal(y, load_pictures([c, d], 3, 64, fit))
    g = load_for([d], 1, 28, 28, "resize_pad")
    np.testing.assert_array_equal(g, load_pictures([d], 1, 28, "pad"))
    assert not np.array_equal(g, x)  # a picture is not a normalised digit

    with pytest.raises(AetoolError, match="1x28x28"):
        load_for([d], 3, 32, 32, "mnist_digit")
    with pytest.raises(AetoolError, match="square"):
        load_for([c], 3, 32, 64, "resize_pad")
    # own_size: the pictures at their own size, one batch only where they share it
    assert load_for([c, c], 3, 32, 32, "own_size").shape == (2, 3, 20, 40)
    with pytest.raises(AetoolError, match="different sizes"):
        load_for([c, d], 3, 32, 32, "own_size")
    with pytest.raises(AetoolError, match="unknown image preprocessing"):
        load_for([c], 3, 32, 32, "resize_stretch")


# ---------------------------------------------------------------------------
# colour output


def colour_batch(n: int = 5, h: int = 8, w: int = 10) -> np.ndarray:
    return np.random.default_rng(3).uniform(-0.2, 1.2, (n, 3, h, w)).astype(np.float32)


def test_make_grid_colour():
    imgs = colour_batch()
    g = make_grid(imgs, ncols=3, pad=2)
    assert g.dtype == np.uint8 and g.shape == (2 * 10 + 2, 3 * 12 + 2, 3)
    np.testing.assert_array_equal(g[2:10, 2:12], to_uint8(imgs[0]).transpose(1, 2, 0))
    np.testing.assert_array_equal(g[12:20, 14:24], to_uint8(imgs[4]).transpose(1, 2, 0))  # row 1, col 1
    assert (g[12:20, 26:36] == 64).all() and (g[:2] == 64).all()  # empty cell and padding: grey
    u8 = make_grid(to_uint8(imgs), ncols=3, pad=2)
    np.testing.assert_array_equal(u8, g)
    with pytest.raises(ValueError):
        make_grid(np.zeros((2, 2, 8, 8)), ncols=2)


def test_stack_rows_colour_and_mixed():
    rgb = make_grid(colour_batch(), ncols=5)
    grey = make_grid(colour_batch()[:, :1], ncols=3)
    assert grey.ndim == 2
    s = stack_rows([rgb, rgb], gap=4)
    assert s.shape == (2 * rgb.shape[0] + 4, rgb.shape[1], 3)
    m = stack_rows([grey, rgb], gap=4, pad_value=0.0)
    assert m.shape == (grey.shape[0] + 4 + rgb.shape[0], max(grey.shape[1], rgb.shape[1]), 3)
    for c in range(3):
        np.testing.assert_array_equal(m[: grey.shape[0], : grey.shape[1], c], grey)
    np.testing.assert_array_equal(m[grey.shape[0] + 4 :, : rgb.shape[1]], rgb)
    assert (m[: grey.shape[0], grey.shape[1] :] == 0).all()
    assert stack_rows([grey, grey]).ndim == 2
    with pytest.raises(ValueError):
        stack_rows([np.zeros((4, 4, 2), np.uint8)])


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_write_png_colour(tmp_path, suffix):
    g = make_grid(colour_batch(), ncols=3)
    p = tmp_path / f"c{suffix}"
    write_png(g, p, scale=2)
    with Image.open(p) as im:
        assert im.mode == "RGB" and im.size == (g.shape[1] * 2, g.shape[0] * 2)
        np.testing.assert_array_equal(np.asarray(im), np.repeat(np.repeat(g, 2, 0), 2, 1))


def test_write_gif_colour(tmp_path):
    frames = [np.zeros((6, 8, 3), np.uint8) for _ in range(3)]
    for i, f in enumerate(frames):
        f[..., i] = 200  # red, green, blue frames
        f[0, 0] = (10, 20, 30)
    p = tmp_path / "c.gif"
    write_gif(frames, p, scale=2, bounce=True)
    with Image.open(p) as im:
        assert im.n_frames == 4 and im.size == (16, 12)
        seen = []
        for k in range(im.n_frames):
            im.seek(k)
            rgb = np.asarray(im.convert("RGB"))
            seen.append(tuple(int(v) for v in rgb[5, 5]))
            assert tuple(rgb[0, 0]) == (10, 20, 30)  # few colours: kept exactly
    assert seen == [(200, 0, 0), (0, 200, 0), (0, 0, 200), (0, 200, 0)]
    again = tmp_path / "again.gif"
    write_gif(frames, again, scale=2, bounce=True)
    assert again.read_bytes() == p.read_bytes()  # deterministic


def test_write_gif_rejects_mixed_frames(tmp_path):
    with pytest.raises(ValueError):
        write_gif([np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.uint8)], tmp_path / "m.gif")


# ---------------------------------------------------------------------------
# grey output exactly as before


def reference_grid(images: np.ndarray, ncols: int, pad: int = 2, pad_value: float = 0.25) -> np.ndarray:
    """What make_grid gave for grey images before colour existed, written out plainly."""
    n, _, h, w = images.shape
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), round(pad_value * 255), np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = \
            to_uint8(images[i, 0])
    return out


def test_grey_grid_stack_and_files_unchanged(tmp_path):
    rng = np.random.default_rng(4)
    imgs = rng.uniform(-0.2, 1.2, (7, 1, 28, 28)).astype(np.float32)
    g = make_grid(imgs, ncols=4)
    assert g.ndim == 2
    np.testing.assert_array_equal(g, reference_grid(imgs, 4))
    np.testing.assert_array_equal(make_grid(imgs[:, 0], ncols=4), g)  # (N, H, W) still accepted
    s = stack_rows([g, g[:20]], gap=3)
    assert s.ndim == 2 and s.shape == (g.shape[0] + 3 + 20, g.shape[1])

    p = tmp_path / "g.png"
    write_png(s, p, scale=3)
    buf = io.BytesIO()
    Image.fromarray(np.repeat(np.repeat(s, 3, 0), 3, 1)).save(buf, format="PNG")
    assert p.read_bytes() == buf.getvalue()
    with Image.open(p) as im:
        assert im.mode == "L"

    frames = [to_uint8(imgs[i, 0]) for i in range(3)]
    q = tmp_path / "g.gif"
    write_gif(frames, q, fps=10, scale=2)
    buf = io.BytesIO()
    ims = [Image.fromarray(np.repeat(np.repeat(f, 2, 0), 2, 1)) for f in frames]
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=100, loop=0)
    assert q.read_bytes() == buf.getvalue()

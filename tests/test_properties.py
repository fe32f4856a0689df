"""Property-based: whatever latent.json or a picture file holds, aetool answers with a value or an
AetoolError (one line for the CLI), never another exception."""

from __future__ import annotations

import copy
import io
import json
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aetool.bundle import shipped_root
from aetool.bundle_format import BundleMeta
from aetool.errors import AetoolError
from aetool.fileio import read_json
from aetool.image_input import load_image

VALID = json.loads((shipped_root() / "pca-d2" / "latent.json").read_text())
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _paths(obj, prefix=()):
    """Every place in a JSON value: dict keys and list indices, depth first."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(VALID) if p]


@SETTINGS
@given(path=st.sampled_from(PATHS), value=json_values, delete=st.booleans())
def test_any_latent_json_is_read_or_refused_in_one_line(path, value, delete):
    meta = copy.deepcopy(VALID)
    target = meta
    for key in path[:-1]:
        target = target[key]
    if delete and isinstance(target, dict):
        target.pop(path[-1])
    else:
        target[path[-1]] = value
    try:
        parsed = BundleMeta.from_dict(json.loads(json.dumps(meta)))
    except AetoolError as e:
        assert "\n" not in str(e)
        return
    # what is accepted is usable: sizes positive, densities finite
    assert parsed.d >= 1 and parsed.image.pixels >= 1
    for params in parsed.densities.values():
        for v in params.values():
            if isinstance(v, list):
                assert np.all(np.isfinite(np.asarray(v, dtype=float)))


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_any_bytes_as_json_are_read_or_refused(tmp_path, data):
    path = tmp_path / "x.json"
    path.write_bytes(data)
    try:
        read_json(path)
    except AetoolError as e:
        assert "\n" not in str(e)


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]


@SETTINGS
@given(magic=st.sampled_from(MAGIC), body=st.binary(min_size=1, max_size=2048))
def test_any_bytes_as_a_picture_are_decoded_or_refused(tmp_path, magic, body):
    path = tmp_path / "x.img"
    path.write_bytes(magic + body)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            x = load_image(path)
        except AetoolError as e:
            assert "\n" not in str(e)
            return
        finally:
            assert not seen, [str(w.message) for w in seen]
    assert x.shape == (1, 28, 28) and np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1


MODES = {"L": np.uint8, "RGB": np.uint8, "RGBA": np.uint8, "I;16": np.uint16, "I": np.int32, "F": np.float32}


@SETTINGS
@given(mode=st.sampled_from(sorted(MODES)), h=st.integers(1, 64), w=st.integers(1, 64),
       fmt=st.sampled_from(["PNG", "TIFF"]), seed=st.integers(0, 2**16))
def test_any_small_picture_becomes_a_digit_in_range(tmp_path, mode, h, w, fmt, seed):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (h, w, channels) if channels else (h, w)
    if MODES[mode] is np.float32:
        a = rng.normal(0, 1e3, shape).astype(np.float32)  # any floats, out of range included
    else:
        a = rng.integers(0, np.iinfo(MODES[mode]).max, shape, dtype=MODES[mode], endpoint=True)
    try:
        im = Image.fromarray(a, mode=mode) if mode in ("I;16",) else Image.fromarray(a)
        buffer = io.BytesIO()
        im.save(buffer, format=fmt)
    except (OSError, ValueError, TypeError, KeyError):
        return  # a mode this format cannot hold: nothing to decode
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    x = load_image(path)
    assert x.shape == (1, 28, 28) and np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1

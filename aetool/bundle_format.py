"""The bundle contract: what a bundle folder holds and what ``latent.json`` says, defined once.

A bundle is ``encoder.onnx`` + ``decoder.onnx`` + ``latent.json``.  The exporter
fills a :class:`BundleMeta` and writes it with :meth:`BundleMeta.to_dict`; every
reader (the runtime, the variants, ``aetool info``) gets one back from
:func:`read_meta`, which validates the file and checks both graphs' SHA-256.
No other module spells a key of ``latent.json``: docs/bundle-format.md
documents these classes field by field.  The parts other modules build on are
typed here as well: the image's :class:`Preprocessing`, the graphs' shapes
(:func:`graph_shapes`), the densities' parameters (:class:`DiagonalGaussianParams`,
:class:`GaussianMixtureParams`; aetool.density does their math) and the
training record (:class:`TrainingRecord`).  Only numpy is imported: the
runtime reads bundles without torch, and nothing here imports aetool.training.

Schema 1 (the first bundles) is read and upgraded in memory: its ``image.shape``
becomes channels/height/width with the MNIST-digit preprocessing it implied,
and its ``density`` (a copy of the default) becomes ``default_density``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence, Union

import numpy as np

from .errors import AetoolError
from .fileio import read_json, sha256_file, write_json  # noqa: F401 (sha256_file: part of the contract)

SCHEMA_VERSION = 3  # written by map bundles; code-vector bundles still write VECTOR_SCHEMA_VERSION
VECTOR_SCHEMA_VERSION = 2  # an older reader reads a code-vector bundle right, so it keeps version 2
READABLE_VERSIONS = (1, 2, 3)
ENCODER = "encoder.onnx"
DECODER = "decoder.onnx"
LATENT = "latent.json"
ENCODER_INPUT, ENCODER_OUTPUT = "image", "latent"  # the decoder's are the other way round
# how a user's picture becomes a model input: the runtime applies it before encoding.  The stored
# name of each (image.preprocessing) is parsed and formatted by Preprocessing alone.
PREPROCESSING = {
    "mnist_digit": "white ink on black: a light background is inverted, the ink cropped, fitted in 20x20 "
                   "and centred by mass in 28x28, as MNIST was made",
    "resize_pad": "converted to grey (1 channel) or RGB (3), transparency onto black, resized keeping its aspect "
                  "to fit inside height x width, centred, the rest black; 8 bits a channel, then / 255",
    "resize_crop": "converted to grey (1 channel) or RGB (3), transparency onto black, the largest centred square "
                   "cropped and resized to height x width; 8 bits a channel, then / 255",
    "own_size": "converted to grey (1 channel) or RGB (3), transparency onto black, kept at its own size; 8 bits a "
                "channel, then / 255; padded by reflection to a multiple of latent.multiple before encoding, and "
                "the reconstruction cropped back",
}


MNIST_DIGIT, RESIZE, OWN_SIZE = "mnist_digit", "resize", "own_size"
RESIZE_FITS = ("pad", "crop")  # how a picture of another aspect ratio becomes a square


@dataclass(frozen=True)
class Preprocessing:
    """``image.preprocessing`` typed: ``kind`` "mnist_digit", or "resize" with ``fit`` "pad" or "crop".

    The file stores one string ("mnist_digit", "resize_pad", "resize_crop"); training writes it
    (from a folder's fit) and the runtime reads it back to pick its loader, so the string is
    built by :attr:`name` and taken apart by :meth:`parse` here only, never by slicing elsewhere.
    """

    kind: str
    fit: str | None = None

    def __post_init__(self) -> None:
        if (self.kind, self.fit) not in [(MNIST_DIGIT, None), (OWN_SIZE, None)] + [(RESIZE, f) for f in RESIZE_FITS]:
            raise AetoolError(f"unknown image preprocessing kind {self.kind!r} with fit {self.fit!r}")

    @classmethod
    def resize(cls, fit: str) -> "Preprocessing":
        """A folder's pictures resized into the square by ``fit`` ("pad" or "crop")."""
        if fit not in RESIZE_FITS:
            raise AetoolError(f"unknown fit {fit!r}; use {' or '.join(RESIZE_FITS)}")
        return cls(RESIZE, fit)

    @classmethod
    def parse(cls, name: str) -> "Preprocessing":
        """The stored string as a Preprocessing; one error naming the known ones otherwise."""
        if name in (MNIST_DIGIT, OWN_SIZE):
            return cls(name)
        prefix = RESIZE + "_"
        if isinstance(name, str) and name.startswith(prefix) and name[len(prefix):] in RESIZE_FITS:
            return cls(RESIZE, name[len(prefix):])
        raise AetoolError(f"unknown image preprocessing {name!r}; aetool knows {', '.join(PREPROCESSING)}")

    @property
    def name(self) -> str:
        """The string latent.json stores."""
        return self.kind if self.fit is None else f"{self.kind}_{self.fit}"

    @property
    def is_digit(self) -> bool:
        """MNIST's digit normalisation (1x28x28), rather than a picture resized."""
        return self.kind == MNIST_DIGIT

    @property
    def is_own_size(self) -> bool:
        """Pictures kept at their own size (map bundles), rather than brought to one square."""
        return self.kind == OWN_SIZE

    @property
    def rule(self) -> str:
        """The preprocessing in words, as ``image.preprocessing_rule`` stores it."""
        return PREPROCESSING[self.name]


class _Reader:
    """Typed access to one JSON object, with one-line errors that name the key."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise AetoolError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        self.obj, self.where = obj, where

    def _get(self, key: str, optional: bool) -> Any:
        if key not in self.obj:
            if optional:
                return None
            raise AetoolError(f"{self.where} lacks '{key}'")
        return self.obj[key]

    def _bad(self, key: str, expected: str) -> AetoolError:
        return AetoolError(f"{self.where}: '{key}' must be {expected}, got {self.obj[key]!r:.60}")

    def int(self, key: str, low: int = 1, high: int | None = None) -> int:
        v = self._get(key, False)
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            raise self._bad(key, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""))
        return v

    def optional_int(self, key: str, low: int = 0, high: int | None = None) -> int | None:
        """An integer key that may be absent or null."""
        if self._get(key, True) is None:
            return None
        return self.int(key, low, high)

    def str(self, key: str, choices: tuple[str, ...] | None = None, optional: bool = False) -> str | None:
        v = self._get(key, optional)
        if v is None and optional:
            return None
        if not isinstance(v, str) or (choices is not None and v not in choices):
            raise self._bad(key, "one of " + ", ".join(choices) if choices else "a string")
        return v

    def mapping(self, key: str, optional: bool = False) -> dict | None:
        v = self._get(key, optional)
        if v is None and optional:
            return None
        if not isinstance(v, dict):
            raise self._bad(key, "a JSON object")
        return v

    def child(self, key: str) -> "_Reader":
        return _Reader(self.mapping(key), f"{self.where}.{key}")


@dataclass
class ImageSpec:
    """What the encoder takes and the decoder gives: float32 NCHW images in ``range``."""

    channels: int = 1
    height: int = 28
    width: int = 28
    range: tuple[float, float] = (0.0, 1.0)
    preprocessing: str = MNIST_DIGIT  # the stored name; typed: preprocessing_spec

    @property
    def preprocessing_spec(self) -> Preprocessing:
        """``preprocessing`` parsed: which loader the runtime uses and, for pictures, their fit."""
        return Preprocessing.parse(self.preprocessing)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def pixels(self) -> int:
        return self.channels * self.height * self.width

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "height": self.height, "width": self.width, "dtype": "float32",
                "layout": "NCHW", "range": list(self.range), "preprocessing": self.preprocessing,
                "preprocessing_rule": self.preprocessing_spec.rule}

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> "ImageSpec":
        r = _Reader(obj, where)
        low_high = r._get("range", False)
        if not (isinstance(low_high, list) and len(low_high) == 2 and all(_finite(v) for v in low_high)
                and low_high[0] < low_high[1]):
            raise r._bad("range", "[low, high] with low < high")
        return cls(channels=r.int("channels", 1, 4), height=r.int("height", 1, 4096), width=r.int("width", 1, 4096),
                   range=(float(low_high[0]), float(low_high[1])),
                   preprocessing=r.str("preprocessing", tuple(PREPROCESSING)))


VECTOR, MAP = "vector", "map"
MAP_FACTORS = (4, 8, 16)  # the map families' downsampling factors


@dataclass(frozen=True)
class LatentLayout:
    """latent.json's ``latent``: the shape of a code.

    ``vector``: one code per picture, (d, 1, 1), and the picture is the image spec's fixed
    C x H x W.  ``map``: d codes per ``factor`` x ``factor`` block, (d, H / factor, W / factor),
    from fully convolutional graphs that take any H and W that are multiples of ``multiple`` and
    at least ``min_side``; the image spec's height and width are then the size the network was
    trained on (its crops), a default for ``sample``, not a requirement.  Files without the key
    (schema 1 and 2) are vectors."""

    kind: str = VECTOR
    factor: int = 1
    multiple: int = 1
    min_side: int = 1

    def __post_init__(self) -> None:
        if self.kind == VECTOR:
            if (self.factor, self.multiple, self.min_side) != (1, 1, 1):
                raise AetoolError("latent: a code vector has no factor, multiple or min_side")
        elif self.kind == MAP:
            if self.factor < 1 or self.multiple < 1 or self.multiple % self.factor or self.min_side < self.multiple:
                raise AetoolError(f"latent: a map needs factor >= 1, a multiple of it, and min_side >= multiple; got "
                                  f"factor {self.factor}, multiple {self.multiple}, min_side {self.min_side}")
        else:
            raise AetoolError(f"latent: unknown layout {self.kind!r} (known: {VECTOR}, {MAP})")

    @classmethod
    def map(cls, factor: int, multiple: int | None = None, min_side: int | None = None) -> "LatentLayout":
        multiple = multiple or factor
        return cls(MAP, factor, multiple, min_side or multiple)

    @property
    def is_map(self) -> bool:
        return self.kind == MAP

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size a picture is padded to before encoding: each side up to a multiple of
        ``multiple``, and at least ``min_side`` (vectors: unchanged)."""
        def up(n: int) -> int:
            return max(-(-n // self.multiple) * self.multiple, self.min_side)

        return (up(height), up(width)) if self.is_map else (height, width)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """The latent map's (h, w) for a picture of ``height`` x ``width`` (before padding)."""
        if not self.is_map:
            return (1, 1)
        h, w = self.padded_size(height, width)
        return (h // self.factor, w // self.factor)

    def values_per_pixel(self, d: int, channels: int) -> float:
        """Latent values per picture value: a map's d / (factor^2 C), the inverse of its compression."""
        return d / (self.factor**2 * channels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> "LatentLayout":
        r = _Reader(obj, where)
        kind = r.str("kind", (VECTOR, MAP))
        if kind == VECTOR:
            return cls()
        return cls(MAP, r.int("factor", 1, 256), r.int("multiple", 1, 4096), r.int("min_side", 1, 4096))


GRAPH_ENDS = ("encoder input", "encoder output", "decoder input", "decoder output")


def graph_shapes(d: int, image: ImageSpec, latent: LatentLayout | None = None) -> dict[str, tuple[Any, ...]]:
    """The rule for the graphs' shapes after the batch axis: a code vector's encoder maps (C, H, W)
    images to (d, 1, 1) latents and the decoder back; a map's takes (C, "height", "width") with
    symbolic sides to (d, "height/f", "width/f").  One definition for the runtime's check
    (:func:`check_graph_shapes`), the docs and the web page (app.js ``graphShapes``), which
    all build their tensors from ``d``, ``image`` and ``latent`` alone."""
    if latent is not None and latent.is_map:
        f = latent.factor
        pictures, codes = (image.channels, "height", "width"), (d, f"height/{f}", f"width/{f}")
        return {"encoder input": pictures, "encoder output": codes, "decoder input": codes, "decoder output": pictures}
    code = (d, 1, 1)
    return {"encoder input": image.shape, "encoder output": code, "decoder input": code,
            "decoder output": image.shape}


def check_graph_shapes(d: int, image: ImageSpec, found: Mapping[str, Sequence[Any]], where: str,
                       latent: LatentLayout | None = None) -> None:
    """Refuse graphs whose declared shapes (``found``: GRAPH_ENDS -> the shape with its batch axis, as
    onnxruntime reports it) break :func:`graph_shapes`, before any of them runs.

    A code vector's axes must be exactly d, 1, 1: every reader reshapes latents by them.  An image
    axis may also be symbolic (a name, or None): a graph that takes any size runs at the bundle's.
    A map's spatial axes are checked where they are numbers only in the channel axes (d, C): its
    graphs are meant to take any size."""
    expected = graph_shapes(d, image, latent)
    is_map = latent is not None and latent.is_map

    def agrees(shape: Sequence[Any], want: Sequence[Any]) -> bool:
        if len(shape) != 4:
            return False
        if is_map:
            return not isinstance(shape[1], int) or shape[1] == want[0]
        return all(not isinstance(n, int) or n == w for n, w in zip(shape[1:], want))

    enc_out, dec_in = found["encoder output"], found["decoder input"]
    strict_code = (lambda shape: list(shape[1:]) == list(expected["encoder output"])) if not is_map else         (lambda shape: len(shape) == 4 and shape[1] == d)
    if not strict_code(enc_out) or not strict_code(dec_in):
        raise AetoolError(f"{where}: graph shapes {enc_out} / {dec_in} disagree with d={d} in {LATENT}")
    enc_in, dec_out = found["encoder input"], found["decoder output"]
    for shape in (enc_in, dec_out):
        if not agrees(shape, expected["encoder input"]):
            raise AetoolError(f"{where}: graph shapes {enc_in} / {dec_out} disagree with the image "
                              f"{'x'.join(map(str, image.shape))} in {LATENT}")


MAX_COUNT = 2**63 - 1  # parameters or multiply-adds of a graph: anything larger is not a count


@dataclass
class GraphInfo:
    """One ONNX graph of the bundle: its file, input and output names, and the SHA-256 that ties it to latent.json."""

    file: str
    input: str
    output: str
    sha256: str
    form: str = "as trained"
    parameters: int | None = None  # weights in the graph (None: not recorded, bundles before it was)
    macs: int | None = None  # multiply-adds per image (convolutions and matrix products)

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> "GraphInfo":
        r = _Reader(obj, where)
        # counts are bounded as they are read: a tampered 10**400 is no count, and overflows a float
        counts = {k: r.int(k, 0, MAX_COUNT) if r.obj.get(k) is not None else None for k in ("parameters", "macs")}
        return cls(file=r.str("file"), input=r.str("input"), output=r.str("output"), sha256=r.str("sha256"),
                   form=r.str("form", optional=True) or "as trained", **counts)


# ---- densities: what latent.json stores of each; aetool.density fits, scores and samples them
def _float_arrays(kind: str, obj: Any, keys: tuple[str, ...]) -> list[np.ndarray]:
    """``obj``'s ``keys`` as float64 arrays, or one error naming the kind."""
    try:
        return [np.asarray(obj[k], dtype=np.float64) for k in keys]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise AetoolError(f"latent density: bad {kind} parameters ({' '.join(str(e).split())[:200]})") from None


def _require_finite(kind: str, **arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise AetoolError(f"latent density: {kind} '{name}' holds NaN or infinite values")


@dataclass(frozen=True, eq=False)
class DiagonalGaussianParams:
    """``diagonal_gaussian``: N(``mean``, diag(``var``)) over the flattened latent, float64 (d,) each,
    var > 0.  :meth:`from_dict` validates what a file holds; the constructor takes a fit's arrays."""

    mean: np.ndarray
    var: np.ndarray
    kind: ClassVar[str] = "diagonal_gaussian"

    def __post_init__(self) -> None:
        for name in ("mean", "var"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))

    def check(self) -> "DiagonalGaussianParams":
        """These parameters, or one error saying what is wrong with them."""
        _require_finite(self.kind, mean=self.mean, var=self.var)
        if self.mean.ndim != 1 or self.mean.shape != self.var.shape or not np.all(self.var > 0):
            raise AetoolError("latent density: mean and var must be equal-length vectors with var > 0")
        return self

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": self.mean.tolist(), "var": self.var.tolist()}

    @classmethod
    def from_dict(cls, obj: Any) -> "DiagonalGaussianParams":
        return cls(*_float_arrays(cls.kind, obj, ("mean", "var"))).check()


@dataclass(frozen=True, eq=False)
class GaussianMixtureParams:
    """``gaussian_mixture``: K components with ``weights`` (K, > 0, summing to 1), ``means`` (K, d)
    and ``covs`` (K, d, d, symmetric positive definite), float64.  :meth:`from_dict` validates."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    kind: ClassVar[str] = "gaussian_mixture"

    def __post_init__(self) -> None:
        for name in ("weights", "means", "covs"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))

    def check(self) -> "GaussianMixtureParams":
        """These parameters, or one error saying what is wrong with them."""
        weights, means, covs = self.weights, self.means, self.covs
        _require_finite(self.kind, weights=weights, means=means, covs=covs)
        k = weights.shape[0] if weights.ndim == 1 else 0
        if k < 1 or means.ndim != 2 or means.shape[0] != k or covs.shape != (k, means.shape[1], means.shape[1]) \
                or not np.all(weights > 0) or not abs(weights.sum() - 1) < 1e-6:
            raise AetoolError("latent density: gaussian_mixture needs K weights summing to 1, K means and K dxd covariances")
        # a Cholesky factor reads one triangle only: an asymmetric matrix would be silently half-used
        if not np.allclose(covs, covs.transpose(0, 2, 1), rtol=1e-9, atol=1e-12 * float(np.abs(covs).max())):
            raise AetoolError("latent density: gaussian_mixture covariances must be symmetric")
        try:
            np.linalg.cholesky(covs)
        except np.linalg.LinAlgError:
            raise AetoolError("latent density: a mixture covariance is not positive definite") from None
        return self

    @property
    def n_components(self) -> int:
        return int(self.weights.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "weights": self.weights.tolist(), "means": self.means.tolist(),
                "covs": self.covs.tolist()}

    @classmethod
    def from_dict(cls, obj: Any) -> "GaussianMixtureParams":
        return cls(*_float_arrays(cls.kind, obj, ("weights", "means", "covs"))).check()


DensityParams = Union[DiagonalGaussianParams, GaussianMixtureParams]
DENSITY_KINDS: dict[str, type] = {DiagonalGaussianParams.kind: DiagonalGaussianParams,
                                  GaussianMixtureParams.kind: GaussianMixtureParams}


def density_params_from_dict(obj: Any) -> DensityParams:
    """Whichever density a ``densities`` entry holds, by its ``kind``, validated."""
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind not in DENSITY_KINDS:
        raise AetoolError(f"latent density: unknown kind {kind!r} (known: {', '.join(DENSITY_KINDS)})")
    return DENSITY_KINDS[kind].from_dict(obj)


@dataclass(frozen=True, eq=False)
class AppearanceParams:
    """A map bundle's appearance model (aetool.anomaly_maps.AppearanceModel), fitted by calibration
    on normal pictures: the local statistics' neighbourhoods ``sigmas`` and detail ``bands`` (pixels,
    > 0), and float64 ``mean`` (D,), ``whiten`` (D, D, lower triangular with a positive diagonal)
    and ``bank`` (N, D) of N >= 1 whitened normal neighbourhoods, D = len(sigmas) (C + len(bands))
    for pictures of C channels.  :meth:`from_dict` validates what a file holds."""

    sigmas: tuple[float, ...]
    bands: tuple[float, ...]
    mean: np.ndarray
    whiten: np.ndarray
    bank: np.ndarray

    def channels(self) -> int:
        return self.mean.shape[0] // len(self.sigmas) - len(self.bands)

    def check(self, channels: int | None = None, where: str = "appearance") -> "AppearanceParams":
        for name in ("sigmas", "bands"):
            v = getattr(self, name)
            if not (1 <= len(v) <= 8 and all(_finite(x) and 0 < x <= 64 for x in v)):
                raise AetoolError(f"{where}: '{name}' must be 1 to 8 numbers in (0, 64]")
        mean, whiten, bank = self.mean, self.whiten, self.bank
        d = mean.shape[0] if mean.ndim == 1 else 0
        if not (d and whiten.shape == (d, d) and bank.ndim == 2 and bank.shape[0] >= 1 and bank.shape[1] == d
                and d % len(self.sigmas) == 0 and self.channels() >= 1):
            raise AetoolError(f"{where}: 'mean' (D), 'whiten' (D x D) and 'bank' (N x D) must agree, with "
                              f"D = len(sigmas) (channels + len(bands))")
        if not all(np.all(np.isfinite(a)) for a in (mean, whiten, bank)):
            raise AetoolError(f"{where}: 'mean', 'whiten' and 'bank' must hold finite numbers")
        if not (np.all(np.triu(whiten, 1) == 0) and np.all(np.diagonal(whiten) > 0)):
            raise AetoolError(f"{where}: 'whiten' must be lower triangular with a positive diagonal")
        if channels is not None and self.channels() != channels:
            raise AetoolError(f"{where}: fitted on {self.channels()}-channel pictures; the bundle takes {channels}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"sigmas": list(self.sigmas), "bands": list(self.bands), "mean": self.mean.tolist(),
                "whiten": self.whiten.tolist(), "bank": np.round(np.asarray(self.bank, np.float64), 4).tolist()}

    @classmethod
    def from_dict(cls, obj: Any, where: str = "appearance") -> "AppearanceParams":
        r = _Reader(obj, where)
        try:
            sigmas, bands = (tuple(float(v) for v in r._get(k, False)) for k in ("sigmas", "bands"))
            arrays = [np.asarray(r._get(k, False), dtype=np.float64) for k in ("mean", "whiten", "bank")]
        except (TypeError, ValueError) as e:
            raise AetoolError(f"{where}: bad parameters ({' '.join(str(e).split())[:200]})") from None
        return cls(sigmas, bands, *arrays).check(where=where)


SCORE_RULES = ("max", "sum", "map")
THRESHOLD_METHODS = ("conformal", "quantile")
CONFIDENCE = 0.95  # of the held-out rate's interval


@dataclass
class AnomalyCalibration:
    """How ``aetool score`` turns a picture into one anomaly score, fitted on held-out normal images.

    Two standardised parts, a = (log SSE - log_sse_mean) / log_sse_std and b = (NLL - nll_mean) /
    nll_std, where SSE is the reconstruction's sum of squared errors and NLL the latent's negative
    log-likelihood per dimension under the default density (for a map bundle, SSE is its anomaly
    map's peak and NLL the mean over the map's positions); ``rule`` "max" (score = max(a, b):
    unusual in either way), "sum" (a + b, the first calibrations') or "map" (a alone: a map bundle
    calibrated with an appearance model, whose map sees a picture wrong everywhere too).  A picture is flagged above
    ``threshold``.  ``method`` "conformal": the threshold is the ``rank``-th smallest of ``images``
    calibration scores, rank = ceil((images + 1) (1 - fpr)), which keeps the rate at most ``fpr`` for
    new images exchangeable with them; where images + 1 < 1 / fpr no rank exists and ``threshold``
    is None: such a bundle scores but flags nothing, and every command that needs a verdict refuses
    it.  "quantile" (files without the key): the plain (1 - fpr) quantile of the older calibrations.
    ``heldout_flagged`` of ``heldout_images`` fresh images were over it: ``heldout_fpr``, with its
    Clopper-Pearson ``heldout_interval`` at CONFIDENCE.  ``histogram`` (``edges``, ``counts``) keeps
    the calibration scores' shape, so ``aetool score --figure`` can draw new scores against it.
    """

    log_sse_mean: float
    log_sse_std: float
    nll_mean: float
    nll_std: float
    threshold: float | None
    fpr: float
    images: int
    quantiles: dict[str, float]
    source: str
    heldout_fpr: float | None = None
    heldout_images: int | None = None
    histogram: dict[str, list] | None = None
    rule: str = "sum"  # files without the key were calibrated for the sum
    method: str = "quantile"  # files without the key set the plain quantile
    rank: int | None = None
    standardisation_images: int | None = None  # None: the calibration images themselves (older files)
    heldout_flagged: int | None = None
    heldout_interval: tuple[float, float] | None = None
    # a map bundle's: the anomaly map's value (aetool.anomaly_maps) above which a pixel is drawn as
    # flagged, the 0.999 quantile of the calibration pictures' maps
    pixel_threshold: float | None = None
    # a map bundle's: what normal pictures look like, neighbourhood by neighbourhood (the anomaly map's
    # model, fitted on the standardisation part); None: the map is the reconstruction's (older files)
    appearance: AppearanceParams | None = None

    @property
    def needed_images(self) -> int:
        """The fewest calibration images for which a conformal threshold at ``fpr`` exists."""
        return conformal_minimum(self.fpr)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(dataclasses.replace(self, appearance=None))  # not a deep copy of the bank
        for key in ("histogram", "rank", "standardisation_images", "heldout_flagged", "heldout_interval",
                    "pixel_threshold", "appearance"):
            if out[key] is None:
                del out[key]
        if self.appearance is not None:
            out["appearance"] = self.appearance.to_dict()
        if self.heldout_interval is not None:
            out["heldout_interval"] = list(self.heldout_interval)
        return out

    def brief(self) -> dict[str, Any]:
        """to_dict for people and scripts (``info --json``, ``calibrate --json``): the appearance model
        as its settings and sizes, not its thousands of numbers."""
        out = dataclasses.replace(self, appearance=None).to_dict()
        if self.appearance is not None:
            a = self.appearance
            out["appearance"] = {"sigmas": list(a.sigmas), "bands": list(a.bands), "statistics": int(a.bank.shape[1]),
                                 "neighbourhoods": int(a.bank.shape[0])}
        return out

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> "AnomalyCalibration":
        r = _Reader(obj, where)
        numbers = {}
        for key in ("log_sse_mean", "log_sse_std", "nll_mean", "nll_std", "threshold", "fpr"):
            v = r._get(key, False)
            if key == "threshold" and v is None:
                numbers[key] = None
                continue
            if not _finite(v) or (key.endswith("_std") and v <= 0) or (key == "fpr" and not 0 < v <= 0.5):
                raise r._bad(key, "a finite number" + (" > 0" if key.endswith("_std") else "")
                             + (" in (0, 0.5]" if key == "fpr" else "") + (" or null" if key == "threshold" else ""))
            numbers[key] = float(v)
        quantiles = r.mapping("quantiles")
        if not all(_finite(v) for v in quantiles.values()):
            raise r._bad("quantiles", "finite numbers")
        method = r.str("method", THRESHOLD_METHODS, optional=True) or "quantile"
        if numbers["threshold"] is None and method != "conformal":
            raise r._bad("threshold", "a finite number (only a conformal calibration may lack one)")
        images = r.int("images", 1)
        rank = r.optional_int("rank", 1, images)
        if method == "conformal" and rank != conformal_rank(images, numbers["fpr"]):
            raise r._bad("rank", f"ceil((images + 1) (1 - fpr)) = {conformal_rank(images, numbers['fpr'])}")
        fresh = r._get("heldout_fpr", True)
        heldout_images = r.obj.get("heldout_images") if isinstance(r.obj.get("heldout_images"), int) else None
        heldout_fpr = float(fresh) if _finite(fresh) and numbers["threshold"] is not None else None
        flagged = r.optional_int("heldout_flagged", 0, heldout_images)
        if flagged is None and heldout_fpr is not None and heldout_images:  # older files kept the rate alone
            flagged = min(heldout_images, max(0, round(heldout_fpr * heldout_images)))
        interval = r._get("heldout_interval", True)
        if interval is not None and not (isinstance(interval, list) and len(interval) == 2
                                         and all(_finite(v) and 0 <= v <= 1 for v in interval)
                                         and interval[0] <= interval[1]):
            raise r._bad("heldout_interval", "[low, high] with 0 <= low <= high <= 1")
        if interval is None and flagged is not None and heldout_images:
            from .stats import clopper_pearson

            interval = clopper_pearson(flagged, heldout_images, CONFIDENCE)
        return cls(**numbers, images=images, quantiles={k: float(v) for k, v in quantiles.items()},
                   source=r.str("source"), heldout_fpr=heldout_fpr, heldout_images=heldout_images,
                   histogram=cls._histogram(r), rule=cls._rule(r), method=method, rank=rank,
                   standardisation_images=r.optional_int("standardisation_images", 1),
                   heldout_flagged=flagged if heldout_fpr is not None else None,
                   heldout_interval=None if interval is None or heldout_fpr is None
                   else (float(interval[0]), float(interval[1])),
                   pixel_threshold=cls._positive(r, "pixel_threshold"),
                   appearance=None if r._get("appearance", True) is None
                   else AppearanceParams.from_dict(r._get("appearance", True), f"{where}.appearance"))

    @staticmethod
    def _positive(r: "_Reader", key: str) -> float | None:
        v = r._get(key, True)
        if v is None:
            return None
        if not (_finite(v) and v > 0):
            raise r._bad(key, "a finite number > 0")
        return float(v)

    @staticmethod
    def _rule(r: "_Reader") -> str:
        rule = r._get("rule", True)
        if rule is None:
            return "sum"
        if rule not in SCORE_RULES:
            raise r._bad("rule", " or ".join(f'"{k}"' for k in SCORE_RULES))
        return rule

    @staticmethod
    def _histogram(r: "_Reader") -> dict[str, list] | None:
        h = r._get("histogram", True)
        if h is None:
            return None
        edges, counts = (h.get("edges"), h.get("counts")) if isinstance(h, dict) else (None, None)
        if not (isinstance(edges, list) and isinstance(counts, list) and len(edges) == len(counts) + 1 >= 2
                and all(_finite(e) for e in edges) and all(a < b for a, b in zip(edges, edges[1:]))
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)):
            raise r._bad("histogram", "{edges: increasing finite numbers, counts: one count >= 0 per bin}")
        return {"edges": [float(e) for e in edges], "counts": list(counts)}


def _exact(fpr: float) -> Fraction:
    """The rate a user typed (0.01 is one hundredth, not the double nearest it), so ranks are exact."""
    return Fraction(repr(float(fpr)))


def conformal_rank(n: int, fpr: float) -> int | None:
    """ceil((n + 1) (1 - fpr)): the calibration score's rank (1 = smallest) that is the threshold, or
    None where n + 1 < 1 / fpr and even the largest of n scores cannot promise the rate."""
    rank = math.ceil((n + 1) * (1 - _exact(fpr)))
    return rank if rank <= n else None


def conformal_minimum(fpr: float) -> int:
    """The fewest calibration images for which conformal_rank exists: ceil(1 / fpr - 1)."""
    return max(1, math.ceil(1 / _exact(fpr) - 1))


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def finite_number(v: Any) -> float | None:
    """A record's value as a float where it is a finite number, else None (records are read leniently)."""
    return float(v) if _finite(v) else None


_number = finite_number


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _object(v: Any) -> dict[str, Any] | None:
    return v if isinstance(v, dict) else None


@dataclass(frozen=True)
class StartRecord:
    """One run a run was started from (``aetool train --init-from``): its name, its epochs, whether
    the new run revived its dead channels, and the ``--shift`` it trained with (None: not recorded)."""

    run: str | None
    epochs: int | None
    revived: bool = False
    shift: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "epochs": self.epochs, "revived": self.revived, "shift": self.shift}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> "StartRecord":
        return cls(run=_text(obj.get("run")), epochs=_int(obj.get("epochs")), revived=obj.get("revived") is True,
                   shift=_int(obj.get("shift")))


@dataclass(frozen=True)
class TrainingOptions:
    """The training options that ``aetool info`` and the comparison tables show, typed out of
    ``training.config`` (aetool.training.config.TrainConfig as a dict: rebuilding all of it is the
    trainer's business, config_from_dict).  Absent or mistyped keys read as the option's default."""

    init_from: str | None = None
    width: int | None = None  # "width", or the lecture's "nb_channels" in older records
    revive_dead: bool = False
    shift: int = 0
    average_last: int = 0
    denoise: float = 0.0
    normal_class: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TrainingOptions":
        return cls(init_from=_text(config.get("init_from")),
                   width=_int(config["width"] if "width" in config else config.get("nb_channels")),
                   revive_dead=config.get("revive_dead") is True, shift=_int(config.get("shift")) or 0,
                   average_last=_int(config.get("average_last")) or 0, denoise=_number(config.get("denoise")) or 0.0,
                   normal_class=_text(config.get("normal_class")))


@dataclass(frozen=True)
class TrainingRecord:
    """latent.json's ``training``: how the graphs were trained, for people and tables.

    The exporter fills one and writes :meth:`to_dict`; readers (``aetool info``, compare, the
    variants, torch_from_onnx) take one from :attr:`BundleMeta.training_record` and read its typed
    fields.  :meth:`from_dict` is lenient, as this record is not covered by the graphs' hashes and
    older bundles lack keys (``arch``, ``weights``, ``best_epoch``; PCA's ``started_from``): an
    absent or mistyped key reads as None (empty for ``config`` and ``started_from``).  ``arch``,
    ``data``, ``config``, ``parameters`` and ``layers`` are the trainer's own records, kept as
    their dicts (docs/bundle-format.md lists their keys)."""

    arch: dict[str, Any] | None = None  # aetool.training.families.ArchConfig as a dict
    weights: str | None = None  # "last" or "best (epoch N)"
    best_epoch: int | None = None
    data: dict[str, Any] | None = None  # the data set: name, train_images, test_images, heldout, root, ...
    epochs: int | None = None  # the run's own
    started_from: tuple[StartRecord, ...] = ()  # nearest first
    epochs_in_all: int | None = None  # with those of the starts
    config: dict[str, Any] = field(default_factory=dict)  # aetool.training.config.TrainConfig as a dict
    parameters: dict[str, Any] | None = None  # encoder, decoder
    layers: Any = None
    test_sse_per_image: float | None = None
    test_psnr_db: float | None = None
    speed: dict[str, Any] | None = None  # how fast training ran: cpu, precision, memory_format, step, images_per_s, gflop_per_s

    NUMBERS: ClassVar[tuple[str, ...]] = ("epochs", "epochs_in_all", "best_epoch", "test_sse_per_image", "test_psnr_db")

    @property
    def train_images(self) -> int | None:
        """How many images it was trained on (None: not recorded)."""
        return _int((self.data or {}).get("train_images"))

    @property
    def options(self) -> TrainingOptions:
        return TrainingOptions.from_config(self.config)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "weights": self.weights, "best_epoch": self.best_epoch, "data": self.data,
                "epochs": self.epochs, "started_from": [s.to_dict() for s in self.started_from],
                "epochs_in_all": self.epochs_in_all, "config": self.config, "parameters": self.parameters,
                "layers": self.layers, "test_sse_per_image": self.test_sse_per_image, "test_psnr_db": self.test_psnr_db,
                **({"speed": self.speed} if self.speed is not None else {})}

    @classmethod
    def from_dict(cls, obj: Any) -> "TrainingRecord":
        t = obj if isinstance(obj, dict) else {}
        chain = t.get("started_from")
        return cls(arch=_object(t.get("arch")), weights=_text(t.get("weights")), best_epoch=_int(t.get("best_epoch")),
                   data=_object(t.get("data")), epochs=_int(t.get("epochs")),
                   started_from=tuple(StartRecord.from_dict(e) for e in chain if isinstance(e, dict))
                   if isinstance(chain, list) else (),
                   epochs_in_all=_int(t.get("epochs_in_all")), config=_object(t.get("config")) or {},
                   parameters=_object(t.get("parameters")), layers=t.get("layers"),
                   test_sse_per_image=_number(t.get("test_sse_per_image")), test_psnr_db=_number(t.get("test_psnr_db")),
                   speed=_object(t.get("speed")))


@dataclass
class TrainingDataRecord:
    """The training record's data options that calibration reuses to rebuild a run's held-out split,
    read through the schema: a tampered latent.json (its graphs are hashed, its records are not)
    gives one clear error, and a recorded path is only a hint that a user must name (``--data``)."""

    data: str | None = None  # None: MNIST's offline copy; else a folder, an IDX folder or "download"
    root: str | None = None  # the folder's absolute path when training resolved one
    val_split: float = 0.1
    seed: int = 0
    normal_class: str | None = None
    holdout: int = 0
    limit: int | None = None
    channels: int | None = None
    image_size: int | None = None
    fit: str = RESIZE_FITS[0]
    validation_sha256: str | None = None  # the folder's validation files as training split them
    max_side: int = 1024  # a map bundle's pictures: their longer side as training capped it

    @classmethod
    def from_meta(cls, meta: "BundleMeta", where: str) -> "TrainingDataRecord":
        training = meta.training
        config = training.get("config", {})
        r = _Reader(config if config is not None else {}, f"{where}: training.config")
        d = _Reader(training.get("data") or {}, f"{where}: training.data")
        seed = r.optional_int("seed", 0, 2**32 - 1)
        split = r._get("val_split", True)
        if split is not None and not (_finite(split) and 0 < split <= 0.5):
            raise r._bad("val_split", "a number in (0, 0.5]")
        channels = r.optional_int("channels", 1, 3)
        if channels == 2:
            raise r._bad("channels", "1 or 3")
        return cls(data=r.str("data", optional=True), root=d.str("root", optional=True),
                   val_split=0.1 if split is None else float(split), seed=0 if seed is None else seed,
                   normal_class=r.str("normal_class", optional=True),
                   holdout=r.optional_int("holdout", 0) or 0, limit=r.optional_int("limit", 1),
                   channels=channels, image_size=r.optional_int("image_size", 1, 4096),
                   fit=r.str("fit", RESIZE_FITS, optional=True) or RESIZE_FITS[0],
                   validation_sha256=d.str("validation_sha256", optional=True),
                   max_side=r.optional_int("max_side", 1, 1 << 16) or 1024)

    @property
    def is_mnist(self) -> bool:
        """Trained on MNIST itself (the offline copy, or downloaded): no recorded path is walked."""
        return self.data in (None, "mnist", "download")


@dataclass
class BundleMeta:
    """Everything ``latent.json`` holds.  ``training``, ``export`` and ``variant`` are records
    for people and tables (their keys are listed in docs/bundle-format.md); the runtime reads
    only the typed fields above them.  ``training`` is kept as stored, so a bundle copied into a
    variant or printed by ``aetool info --json`` keeps every key; it is read through
    :attr:`training_record`."""

    name: str
    family: str
    d: int
    image: ImageSpec
    encoder: GraphInfo
    decoder: GraphInfo
    densities: dict[str, dict[str, Any]]  # kind -> parameters as stored (typed: density_params)
    default_density: str
    density_test_log_likelihood_per_dim: dict[str, float] = field(default_factory=dict)
    opset: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    variant: dict[str, Any] | None = None
    anomaly: AnomalyCalibration | None = None  # set by aetool calibrate (and export)
    latent: LatentLayout = field(default_factory=LatentLayout)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema_version": SCHEMA_VERSION if self.latent.is_map else VECTOR_SCHEMA_VERSION,
            "name": self.name,
            "family": self.family,
            "d": self.d,
            "latent": self.latent.to_dict(),
            "image": self.image.to_dict(),
            "graphs": {"encoder": dataclasses.asdict(self.encoder), "decoder": dataclasses.asdict(self.decoder),
                       "opset": self.opset, "batch_axis": "dynamic"},
            "default_density": self.default_density,
            "densities": self.densities,
            "density_test_log_likelihood_per_dim": self.density_test_log_likelihood_per_dim,
            "training": self.training,
            "export": self.export,
        }
        if self.variant is not None:
            out["variant"] = self.variant
        if self.anomaly is not None:
            out["anomaly"] = self.anomaly.to_dict()
        return out

    @classmethod
    def from_dict(cls, obj: Any, where: str = LATENT) -> "BundleMeta":
        r = _Reader(obj, where)
        version = r._get("schema_version", False)
        if version not in READABLE_VERSIONS:
            raise AetoolError(f"{where}: unsupported schema_version {version!r} "
                              f"(this aetool reads {', '.join(map(str, READABLE_VERSIONS))})")
        if version == 1:
            r = _Reader(_upgrade_v1(r), where)
        graphs = r.child("graphs")
        d = r.int("d", 1, 4096)
        densities = r.mapping("densities")
        for kind, params in densities.items():
            _check_density(kind, params, d, f"{where}.densities.{kind}")
        default = r.str("default_density", tuple(densities) or ("(none)",))
        scores = r.mapping("density_test_log_likelihood_per_dim", optional=True) or {}
        opset = graphs.obj.get("opset")
        variant = r.mapping("variant", optional=True)
        anomaly = r.mapping("anomaly", optional=True)
        latent = LatentLayout.from_dict(r.mapping("latent"), f"{where}.latent") if version >= 3 else LatentLayout()
        image = ImageSpec.from_dict(r.mapping("image"), f"{where}.image")
        calibration = None if anomaly is None else AnomalyCalibration.from_dict(anomaly, f"{where}.anomaly")
        if calibration is not None and calibration.appearance is not None:
            calibration.appearance.check(image.shape[0], f"{where}.anomaly.appearance")
        if latent.is_map != image.preprocessing_spec.is_own_size:
            raise AetoolError(f"{where}: a {latent.kind} latent with the image preprocessing {image.preprocessing!r} "
                              f"(maps take pictures at their own size, {OWN_SIZE}; code vectors the others)")
        return cls(latent=latent, image=image, name=r.str("name"), family=_family(r), d=d,
                   encoder=GraphInfo.from_dict(graphs.mapping("encoder"), f"{where}.graphs.encoder"),
                   decoder=GraphInfo.from_dict(graphs.mapping("decoder"), f"{where}.graphs.decoder"),
                   densities=densities, default_density=default,
                   density_test_log_likelihood_per_dim={k: float(v) for k, v in scores.items() if _finite(v)},
                   opset=opset if isinstance(opset, int) else None,
                   training=r.mapping("training", optional=True) or {}, export=r.mapping("export", optional=True) or {},
                   variant=variant,
                   anomaly=calibration)

    def density_params(self, kind: str) -> DensityParams:
        """The density stored under ``kind``, typed (KeyError where the bundle has none)."""
        return density_params_from_dict(self.densities[kind])

    @property
    def training_record(self) -> TrainingRecord:
        """``training`` typed (read afresh each time, so an edit to the stored dict shows)."""
        return TrainingRecord.from_dict(self.training)

    def training_number(self, key: str) -> float | None:
        """One of TrainingRecord.NUMBERS by name (``epochs``, ``test_sse_per_image``, ...), or None."""
        if key not in TrainingRecord.NUMBERS:
            raise KeyError(f"{key!r} is not a number of the training record ({', '.join(TrainingRecord.NUMBERS)})")
        return getattr(self.training_record, key)

    @property
    def precision(self) -> str:
        return (self.variant or {}).get("precision", "fp32")

    def summary(self) -> dict[str, Any]:
        """The few facts ``aetool list`` and ``aetool info --json`` lead with."""
        t = self.training_record
        return {"name": self.name, "family": self.family, "d": self.d, "latent": self.latent.kind,
                "factor": self.latent.factor if self.latent.is_map else None, "precision": self.precision,
                "image": list(self.image.shape), "preprocessing": self.image.preprocessing,
                "default_density": self.default_density, "densities": sorted(self.densities),
                "test_sse_per_image": t.test_sse_per_image, "epochs": t.epochs, "epochs_in_all": t.epochs_in_all}


def _check_density(kind: str, params: Any, d: int, where: str) -> None:
    """A density's parameters: the right kind under its key, finite, well-shaped (symmetric positive
    definite covariances, weights summing to 1) and d-dimensional."""
    r = _Reader(params, where)
    if kind not in DENSITY_KINDS:
        raise AetoolError(f"{where}: unknown kind {kind!r} (known: {', '.join(DENSITY_KINDS)})")
    if r.obj.get("kind") != kind:
        raise AetoolError(f"{where}: its kind is {r.obj.get('kind')!r}, not {kind!r}")
    try:
        density = density_params_from_dict(params)
    except AetoolError as e:
        raise AetoolError(f"{where}: {str(e).removeprefix('latent density: ')}") from None
    if density.dim != d:
        raise AetoolError(f"{where}: {density.dim}-dimensional, but d={d}")


def _family(r: _Reader) -> str:
    """A family is a label here (the runtime runs any graphs alike): a short lower-case name,
    the registry of aetool.training.families being the trainer's business."""
    name = r.str("family")
    if not (0 < len(name) <= 32 and name.replace("-", "").replace("_", "").isalnum() and name.islower()):
        raise r._bad("family", "a short lower-case name like cnn, photo or pca")
    return name


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _upgrade_v1(r: _Reader) -> dict[str, Any]:
    """A schema-1 latent.json as schema 2 (same graphs, same numbers, keys renamed)."""
    obj = dict(r.obj)
    image = r.child("image")
    shape = image._get("shape", False)
    if not (isinstance(shape, list) and len(shape) == 3):
        raise image._bad("shape", "[channels, height, width]")
    channels, height, width = shape
    obj["image"] = {"channels": channels, "height": height, "width": width, "range": image._get("range", False),
                    "preprocessing": MNIST_DIGIT}
    density = r.mapping("density")
    obj["default_density"] = density.get("kind")
    obj["densities"] = {**(r.mapping("densities", optional=True) or {}), density.get("kind"): density}
    obj.pop("density")
    return obj


def write_meta(folder: Path, meta: BundleMeta) -> None:
    """latent.json into a bundle folder (atomically)."""
    write_json(Path(folder) / LATENT, meta.to_dict())


def read_meta(folder: Path) -> BundleMeta:
    """Read and validate a bundle's latent.json and check both graphs' SHA-256 against it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AetoolError(f"bundle {folder}: no such folder")
    for name in (LATENT, ENCODER, DECODER):
        if not (folder / name).is_file():
            raise AetoolError(f"bundle {folder}: {name} is missing")
    meta = BundleMeta.from_dict(read_json(folder / LATENT), f"bundle {folder}: {LATENT}")
    for name, graph in ((ENCODER, meta.encoder), (DECODER, meta.decoder)):
        if sha256_file(folder / name) != graph.sha256:
            raise AetoolError(f"bundle {folder}: {name} does not match {LATENT} (SHA-256 differs: corrupt, or from another export)")
    return meta


def is_bundle(folder: Path) -> bool:
    return (Path(folder) / LATENT).is_file()

"""A loaded bundle and the numpy API over it: encode, decode, reconstruct, interpolate, sample.

What a bundle folder holds is defined in :mod:`aetool.bundle_format`; this
module finds bundles (``--bundle PATH|NAME``, the workspace's ``./export``, the
shipped ones) and runs them with onnxruntime.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .bundle_format import (DECODER, ENCODER, LATENT, BundleMeta, LatentLayout, check_graph_shapes, is_bundle,
                            read_meta)
from .density import Density, density_from_params
from .errors import AetoolError, UsageError
from .runtime import make_session, memory_refusal, provider_label, usable_cores
from .tiling import MAX_TILE_PIXELS, MARGIN_BLOCKS, run_tiled, tile_blocks

DEFAULT_SHIPPED = "cnn-d16"
DEFAULT_BATCH = 1024
DENSITY_ALIASES = {"mixture": "gaussian_mixture", "diagonal": "diagonal_gaussian"}
SPLIT_MIN = 2  # images per core from which a CPU batch is run as slices side by side
CPU_SLICE_VALUES = 1 << 17  # picture values (images x C x H x W) per onnxruntime call on a CPU


def shipped_root() -> Path:
    """Where the package keeps its pretrained bundles."""
    return Path(str(importlib.resources.files("aetool") / "pretrained"))


def list_bundles(root: Path) -> list[Path]:
    """Bundles directly under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and is_bundle(p)]
    return sorted(found, key=lambda p: (p / LATENT).stat().st_mtime, reverse=True)


def resolve_bundle_path(bundle: str | os.PathLike | None = None, workspace: Path | None = None,
                        note: Callable[[str], None] | None = None) -> Path:
    """Where ``--bundle`` points; without it the newest bundle in ./export, else the shipped ``cnn-d16``.

    The rule: a value with a slash, ``.`` or ``..``, or a folder here that holds a bundle, is a
    path; anything else is a name, looked up in ./export and then among the shipped bundles.
    Where a local bundle folder hides a bundle of the same name, ``note`` is told.
    """
    workspace = Path.cwd() if workspace is None else Path(workspace)
    if bundle is not None:
        text = os.fspath(bundle)
        if not text.strip():
            raise UsageError("--bundle is empty: give a bundle folder or a name (aetool list shows them)")
        path = Path(text)
        named = [root / text for root in (workspace / "export", shipped_root())
                 if "/" not in text and os.sep not in text and text not in (".", "..") and is_bundle(root / text)]
        if isinstance(bundle, Path) or "/" in text or os.sep in text or text in (".", "..") or is_bundle(path):
            if not path.is_dir():
                raise AetoolError(f"bundle {text}: no such folder")
            if named and note is not None:
                note(f"note: --bundle {text} is the folder ./{text}; the bundle of that name at {named[0]} is not used")
            return path
        if named:
            return named[0]
        here = " (./" + text + " is a folder without " + LATENT + ")" if path.is_dir() else ""
        raise AetoolError(f"bundle {text}: no bundle of that name in ./export or shipped{here}; aetool list shows them")
    newest = list_bundles(workspace / "export")
    if newest:
        return newest[0]
    shipped = shipped_root() / DEFAULT_SHIPPED
    if not is_bundle(shipped):
        raise AetoolError("no bundle found: train and export one, or pass --bundle PATH")
    return shipped


@dataclass
class Bundle:
    """A loaded bundle: encode / decode / reconstruct / interpolate / sample in numpy."""

    path: Path
    meta: BundleMeta
    encoder: Any = field(repr=False)
    decoder: Any = field(repr=False)
    provider: str = "cpu"
    batch_size: int = DEFAULT_BATCH
    threads: int | None = None  # the CPU threads asked for (None: one per usable core)
    max_tile_pixels: int = MAX_TILE_PIXELS  # a map bundle runs larger pictures in tiles (aetool.tiling)
    _single: dict[str, Any] = field(default_factory=dict, repr=False)  # graph file -> single-threaded session
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def d(self) -> int:
        return self.meta.d

    @property
    def family(self) -> str:
        return self.meta.family

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.meta.image.shape

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def layout(self) -> LatentLayout:
        """The latent's shape: a code vector per picture, or a map of d codes per f x f block."""
        return self.meta.latent

    @property
    def is_map(self) -> bool:
        return self.meta.latent.is_map

    @property
    def density(self) -> Density:
        """The default latent density (a mixture in bundles that ship one)."""
        return self.density_named(None)

    def density_named(self, name: str | None = None) -> Density:
        """A latent density by kind or short name (``mixture``, ``diagonal``); None: the default."""
        kind = self.meta.default_density if name is None else DENSITY_ALIASES.get(name, name)
        known = self.meta.densities
        if kind not in known:
            short = {v: k for k, v in DENSITY_ALIASES.items()}
            names = ", ".join(short.get(k, k) for k in sorted(known))
            raise UsageError(f"--density {name}: bundle {self.name} has no such density (it has: {names})")
        return density_from_params(self.meta.density_params(kind))

    def load_images(self, paths: Sequence[str | os.PathLike], invert: bool | None = None) -> np.ndarray | list[np.ndarray]:
        """Picture files as this bundle's inputs, by its own preprocessing: (N, C, H, W) for a code
        vector bundle (MNIST's digit normalisation for digit bundles, resized grey or RGB for bundles
        trained on a folder); for a map bundle a list of (C, H, W) pictures at their own sizes, which
        :meth:`reconstruct_picture` and :meth:`encode_picture` take.  ``invert`` is for digits only."""
        from . import image_input as img

        image = self.meta.image
        if self.is_map:
            return img.load_own_size(paths, image.channels)
        return img.load_for(paths, image.channels, image.height, image.width, image.preprocessing_spec, invert=invert)

    @property
    def workers(self) -> int:
        """CPU threads a large batch is spread over."""
        return self.threads or usable_cores()

    def _run(self, graph: str, x: np.ndarray) -> np.ndarray:
        """Run ``graph`` (ENCODER or DECODER) over ``x`` in batches of at most ``batch_size``.

        On a CPU a batch of at least SPLIT_MIN images per core runs as one slice per core, side by
        side, each in a single-threaded session: onnxruntime spreads a Conv over the cores, but runs
        ConvTranspose's col2im and DepthToSpace on one, so the decoder stopped scaling past a few
        cores.  Small batches keep the multi-threaded session, which is faster for one image."""
        try:
            return self._run_batches(graph, x)
        except AetoolError:
            raise
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types when a graph fails on its input
            text = " ".join(str(e).split())
            refused = memory_refusal(text)
            if refused is not None:
                raise AetoolError(f"bundle {self.path}: {graph} needs more memory than allowed: {refused}") from None
            raise AetoolError(f"bundle {self.path}: {graph} failed to run ({text[:200]}); the graph does not fit "
                              f"its {LATENT} or is broken") from None

    def _run_batches(self, graph: str, x: np.ndarray) -> np.ndarray:
        session = self.encoder if graph == ENCODER else self.decoder
        name = session.get_inputs()[0].name
        x = np.ascontiguousarray(x, dtype=np.float32)
        workers = self.workers
        if self.provider == "cpu" and workers > 1 and len(x) >= SPLIT_MIN * workers:
            share = -(-min(len(x), self.batch_size) // workers)  # a batch_size block split over the workers
            calls = -(-share // self._slice_for(self._picture_values(graph, x)))  # each share in calls of at most cpu_slice pictures,
            size = -(-share // calls)  # all of one size, so the workers finish together
            single = self._single_session(graph)
            pieces = (x[i : i + size] for i in range(0, len(x), size))
            outs = list(self._executor().map(lambda piece: np.array(single.run(None, {name: piece})[0]), pieces))
        else:
            step = self._slice_for(self._picture_values(graph, x)) if self.provider == "cpu" else self.batch_size
            outs = [np.array(session.run(None, {name: x[i : i + step]})[0]) for i in range(0, len(x), step)]
        # each output copied out as it comes (np.array): onnxruntime's own live in its capped arena
        if outs:
            return np.concatenate(outs)
        shape = session.get_outputs()[0].shape[1:]
        return np.zeros((0, *(n if isinstance(n, int) else 0 for n in shape)), np.float32)

    @property
    def cpu_slice(self) -> int:
        """Images per onnxruntime call on a CPU: few enough that a call's activations stay in the
        core's cache, since the graphs' elementwise steps (SiLU, residual adds, layout reorders
        around DepthToSpace) are bound by memory, not arithmetic; with hundreds of images a call
        each of them streams the whole batch through main memory."""
        return self._slice_for(math.prod(self.image_shape))

    def _picture_values(self, graph: str, x: np.ndarray) -> int:
        """Picture values (C x H x W) of one item of a call, which bound its activations: the bundle's
        image for a code vector, the picture in or out for a map."""
        if not self.is_map:
            return math.prod(self.image_shape)
        scale = 1 if graph == ENCODER else self.layout.factor
        return self.meta.image.channels * x.shape[2] * x.shape[3] * scale * scale

    def _slice_for(self, values: int) -> int:
        return max(1, min(self.batch_size, CPU_SLICE_VALUES // max(1, values)))

    def _single_session(self, graph: str) -> Any:
        if graph not in self._single:
            self._single[graph] = make_session(self.path / graph, "cpu", threads=1)[0]
        return self._single[graph]

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:  # onnxruntime lets go of the GIL while it runs, so threads are enough
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="aetool-slice")
        return self._pool

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(N, C, H, W) in [0, 1] -> latents: (N, d, 1, 1) for a code vector bundle; for a map bundle
        (N, d, H / f, W / f), where H and W must be multiples of ``layout.multiple`` and at least
        ``layout.min_side`` (:meth:`encode_picture` pads a picture of any size).  A picture above
        ``max_tile_pixels`` runs in blended tiles (aetool.tiling), so memory stays bounded."""
        images = self._checked_images(images, "encode")
        if not self.is_map:
            return self._run(ENCODER, images)
        return self._run_map(ENCODER, images, images.shape[2] * images.shape[3])

    def _checked_images(self, images: np.ndarray, what: str) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if self.is_map:
            c, layout = self.meta.image.channels, self.layout
            if images.ndim != 4 or images.shape[1] != c:
                raise AetoolError(f"{what}: expected pictures of shape (N, {c}, H, W), got {images.shape}")
            h, w = images.shape[2:]
            if (h, w) != layout.padded_size(h, w):
                raise AetoolError(f"{what}: a {w}x{h} picture; this bundle takes sides that are multiples of "
                                  f"{layout.multiple} and at least {layout.min_side} (encode_picture pads one)")
            return images
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise AetoolError(f"{what}: expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {images.shape}")
        return images

    def _checked_map(self, latents: np.ndarray, what: str = "decode") -> np.ndarray:
        """A latent map (N, d, h, w) of finite float32 values with h, w at least min_side / f."""
        z = np.asarray(latents)
        if z.dtype.kind not in "fiu":
            raise AetoolError(f"{what}: latent maps must be real numbers, got dtype {z.dtype}")
        z = np.ascontiguousarray(z, dtype=np.float32)
        f = self.layout.factor
        least = -(-self.layout.min_side // f)
        if z.ndim != 4 or z.shape[1] != self.d or min(z.shape[2:]) < least or (self.layout.multiple // f) > 1 and (
                z.shape[2] % (self.layout.multiple // f) or z.shape[3] % (self.layout.multiple // f)):
            raise AetoolError(f"{what}: expected latent maps of shape (N, {self.d}, h, w) with h, w at least {least}, "
                              f"got {z.shape}")
        if not np.isfinite(z).all():
            raise AetoolError(f"{what}: the latent map holds a NaN or infinite value (or one beyond float32); "
                              f"nothing decoded")
        return z

    def _run_map(self, graph: str, x: np.ndarray, picture_pixels: int) -> np.ndarray:
        """A map bundle's graph over a batch: whole where one picture is within ``max_tile_pixels``,
        else each picture in tiles (aetool.tiling)."""
        if picture_pixels <= self.max_tile_pixels:
            return self._run(graph, x)
        m, c = self.layout.multiple, self.meta.image.channels
        per = m // self.layout.factor  # latent positions per unit of ``multiple`` pixels: tiles align to both
        scale_in, scale_out, out_channels = (m, per, self.d) if graph == ENCODER else (per, m, c)
        tile = tile_blocks(self.max_tile_pixels, m, MARGIN_BLOCKS)
        return np.stack([run_tiled(lambda piece: self._run(graph, piece), picture, scale_in=scale_in,
                                   scale_out=scale_out, out_channels=out_channels, tile=tile)
                         for picture in x]) if len(x) else self._run(graph, x)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents -> pictures (N, C, H, W); not clipped.  A code vector bundle takes (N, d) or
        (N, d, 1, 1); a map bundle (N, d, h, w) and gives (N, C, h f, w f), in tiles above
        ``max_tile_pixels``.  NaN or infinite values are refused: they decode to a picture that looks
        like a result."""
        if self.is_map:
            z = self._checked_map(latents)
            f = self.layout.factor
            return self._run_map(DECODER, z, z.shape[2] * z.shape[3] * f * f)
        z = np.asarray(latents, dtype=np.float32)
        if z.ndim < 2 or int(np.prod(z.shape[1:])) != self.d:
            raise AetoolError(f"decode: expected latents of size {self.d}, got shape {z.shape}")
        return self._run(DECODER, z.reshape(len(z), self.d, 1, 1))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """g(f(x)); under CUDA the latent stays in GPU memory between the two graphs."""
        images = self._checked_images(images, "reconstruct")
        if self.provider != "cuda" or self.is_map:  # on CPU, binding costs more than the copy it saves (measured at batch 1)
            return self.decode(self.encode(images))
        outs = [self.roundtrip_bound(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return np.concatenate(outs) if outs else self.decode(self.encode(images))

    # ------------------------------------------------------------ one picture at its own size
    def _picture(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        c = self.meta.image.channels
        if x.ndim != 3 or x.shape[0] != c or min(x.shape[1:]) < 1:
            raise AetoolError(f"{what}: expected one picture of shape ({c}, H, W), got {x.shape}")
        return x

    def pad_picture(self, x: np.ndarray) -> np.ndarray:
        """A (C, H, W) picture padded at its bottom and right by reflection (numpy's 'reflect', which
        repeats the reflection for a picture smaller than the pad) to ``layout.padded_size``."""
        x = self._picture(x, "pad")
        ph, pw = self.layout.padded_size(*x.shape[1:])
        if (ph, pw) == x.shape[1:]:
            return x
        return np.pad(x, ((0, 0), (0, ph - x.shape[1]), (0, pw - x.shape[2])), mode="reflect")

    def encode_picture(self, x: np.ndarray) -> np.ndarray:
        """One (C, H, W) picture of any size -> its latent (d, h, w) (map bundles: padded first to
        ``layout.padded_size``; code vector bundles: (d, 1, 1) of a picture of the bundle's shape)."""
        if not self.is_map:
            return self.encode(np.asarray(x, np.float32)[None])[0]
        return self.encode(self.pad_picture(x)[None])[0]

    def decode_picture(self, z: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """One latent (d, h, w) -> a (C, H, W) picture, cropped to ``size`` (height, width) when given:
        the size of the picture it was encoded from."""
        y = self.decode(np.asarray(z)[None])[0]
        return y if size is None else y[:, : size[0], : size[1]]

    def reconstruct_picture(self, x: np.ndarray) -> np.ndarray:
        """g(f(x)) of one (C, H, W) picture at its own size: a map bundle pads it by reflection to a
        multiple of its factor, runs both graphs (in blended tiles above ``max_tile_pixels``) and
        crops back to H x W; a code vector bundle takes a picture of its own shape."""
        x = self._picture(x, "reconstruct")
        if not self.is_map:
            return self.reconstruct(x[None])[0]
        return self.decode_picture(self.encode_picture(x), x.shape[1:])

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int = 16) -> np.ndarray:
        """xi(x, x', alpha) = g((1 - alpha) f(x) + alpha f(x')) for alpha evenly in [0, 1].  A map
        bundle takes two (C, H, W) pictures of one size (any size: padded, and the frames cropped back)."""
        if steps < 2:
            raise UsageError(f"--steps must be at least 2, got {steps}")
        alpha = np.linspace(0.0, 1.0, steps, dtype=np.float32).reshape(-1, 1, 1, 1)
        if self.is_map:
            a, b = self._picture(a, "interpolate"), self._picture(b, "interpolate")
            if a.shape != b.shape:
                raise AetoolError(f"interpolate: the two pictures differ in size ({a.shape} and {b.shape})")
            za, zb = self.encode_picture(a), self.encode_picture(b)
            frames = [self.decode_picture((1 - t) * za + t * zb, a.shape[1:]) for t in alpha[:, 0, 0, 0]]
            return np.stack(frames)
        za, zb = self.encode(np.stack([np.asarray(a).reshape(self.image_shape), np.asarray(b).reshape(self.image_shape)]))
        return self.decode((1 - alpha) * za + alpha * zb)

    def sample(self, n: int, seed: int | None = None, density: str | Density | None = None,
               size: tuple[int, int] | None = None) -> np.ndarray:
        """Draw n latents from a density and decode them. ``density`` is a name for
        density_named (None: the bundle's default) or a density already resolved from it.

        A map bundle draws every position's code independently from the density (fitted on the
        training maps' code vectors) and decodes a (height, width) ``size`` (default: its training
        crop, the image spec's size), padded up to a multiple of the factor: textures, not scenes,
        since no position knows its neighbours."""
        if n < 1:
            raise UsageError(f"-n must be at least 1, got {n}")
        if density is None or isinstance(density, str):
            density = self.density_named(density)
        if not self.is_map:
            if size is not None:
                raise UsageError(f"--size: bundle {self.name} has one code per picture of "
                                 f"{'x'.join(map(str, self.image_shape[1:]))}; only map bundles draw other sizes")
            return self.decode(density.sample(n, rng=seed))
        height, width = size or (self.meta.image.height, self.meta.image.width)
        h, w = self.layout.latent_size(height, width)
        z = np.asarray(density.sample(n * h * w, rng=seed), np.float32).reshape(n, h, w, self.d)
        return self.decode(z.transpose(0, 3, 1, 2))[:, :, :height, :width]

    def roundtrip_bound(self, x: np.ndarray) -> np.ndarray:
        """One batch through both graphs with onnxruntime I/O binding: the latent is an
        OrtValue on the provider's device, so a GPU round trip copies once in and once out."""
        enc, dec = self.encoder.io_binding(), self.decoder.io_binding()
        enc.bind_cpu_input(self.encoder.get_inputs()[0].name, np.ascontiguousarray(x, dtype=np.float32))
        enc.bind_output(self.encoder.get_outputs()[0].name, self.provider)
        self.encoder.run_with_iobinding(enc)
        dec.bind_ortvalue_input(self.decoder.get_inputs()[0].name, enc.get_outputs()[0])
        dec.bind_output(self.decoder.get_outputs()[0].name, "cpu")
        self.decoder.run_with_iobinding(dec)
        return dec.copy_outputs_to_cpu()[0]


def load_bundle(bundle: str | os.PathLike | None = None, device: str = "auto", threads: int | None = None,
                batch_size: int = DEFAULT_BATCH, note: Callable[[str], None] | None = None) -> Bundle:
    """Load a bundle for inference: by path or name, else the default one (see resolve_bundle_path)."""
    path = resolve_bundle_path(bundle, note=note)
    meta = read_meta(path)  # validated whole, densities included
    encoder, provider = make_session(path / ENCODER, device, threads)
    decoder, _ = make_session(path / DECODER, device, threads)
    check_graph_shapes(meta.d, meta.image, {"encoder input": encoder.get_inputs()[0].shape,
                                            "encoder output": encoder.get_outputs()[0].shape,
                                            "decoder input": decoder.get_inputs()[0].shape,
                                            "decoder output": decoder.get_outputs()[0].shape}, f"bundle {path}",
                       latent=meta.latent)
    return Bundle(path=path, meta=meta, encoder=encoder, decoder=decoder, provider=provider_label(provider),
                  batch_size=batch_size, threads=threads)


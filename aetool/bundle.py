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

from .bundle_format import DECODER, ENCODER, LATENT, BundleMeta, check_graph_shapes, is_bundle, read_meta
from .density import Density, density_from_params
from .errors import AetoolError, UsageError
from .runtime import make_session, memory_refusal, provider_label, usable_cores

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

    def load_images(self, paths: Sequence[str | os.PathLike], invert: bool | None = None) -> np.ndarray:
        """Picture files as this bundle's inputs (N, C, H, W), by its own preprocessing: MNIST's digit
        normalisation for digit bundles, resized grey or RGB for bundles trained on a folder."""
        from . import image_input as img

        image = self.meta.image
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
            calls = -(-share // self.cpu_slice)  # each share in calls of at most cpu_slice pictures,
            size = -(-share // calls)  # all of one size, so the workers finish together
            single = self._single_session(graph)
            pieces = (x[i : i + size] for i in range(0, len(x), size))
            outs = list(self._executor().map(lambda piece: np.array(single.run(None, {name: piece})[0]), pieces))
        else:
            step = self.cpu_slice if self.provider == "cpu" else self.batch_size
            outs = [np.array(session.run(None, {name: x[i : i + step]})[0]) for i in range(0, len(x), step)]
        # each output copied out as it comes (np.array): onnxruntime's own live in its capped arena
        return np.concatenate(outs) if outs else np.zeros((0, *session.get_outputs()[0].shape[1:]), np.float32)

    @property
    def cpu_slice(self) -> int:
        """Images per onnxruntime call on a CPU: few enough that a call's activations stay in the
        core's cache, since the graphs' elementwise steps (SiLU, residual adds, layout reorders
        around DepthToSpace) are bound by memory, not arithmetic; with hundreds of images a call
        each of them streams the whole batch through main memory."""
        return max(1, min(self.batch_size, CPU_SLICE_VALUES // math.prod(self.image_shape)))

    def _single_session(self, graph: str) -> Any:
        if graph not in self._single:
            self._single[graph] = make_session(self.path / graph, "cpu", threads=1)[0]
        return self._single[graph]

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:  # onnxruntime lets go of the GIL while it runs, so threads are enough
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="aetool-slice")
        return self._pool

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(N, C, H, W) in [0, 1] -> latents (N, d, 1, 1)."""
        return self._run(ENCODER, self._checked_images(images, "encode"))

    def _checked_images(self, images: np.ndarray, what: str) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise AetoolError(f"{what}: expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {images.shape}")
        return images

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents (N, d) or (N, d, 1, 1) -> images (N, C, H, W); not clipped."""
        z = np.asarray(latents, dtype=np.float32)
        if z.ndim < 2 or int(np.prod(z.shape[1:])) != self.d:
            raise AetoolError(f"decode: expected latents of size {self.d}, got shape {z.shape}")
        return self._run(DECODER, z.reshape(len(z), self.d, 1, 1))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """g(f(x)); under CUDA the latent stays in GPU memory between the two graphs."""
        images = self._checked_images(images, "reconstruct")
        if self.provider != "cuda":  # on CPU, binding costs more than the copy it saves (measured at batch 1)
            return self.decode(self.encode(images))
        outs = [self.roundtrip_bound(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return np.concatenate(outs) if outs else self.decode(self.encode(images))

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

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int = 16) -> np.ndarray:
        """xi(x, x', alpha) = g((1 - alpha) f(x) + alpha f(x')) for alpha evenly in [0, 1]."""
        if steps < 2:
            raise UsageError(f"--steps must be at least 2, got {steps}")
        za, zb = self.encode(np.stack([np.asarray(a).reshape(self.image_shape), np.asarray(b).reshape(self.image_shape)]))
        alpha = np.linspace(0.0, 1.0, steps, dtype=np.float32).reshape(-1, 1, 1, 1)
        return self.decode((1 - alpha) * za + alpha * zb)

    def sample(self, n: int, seed: int | None = None, density: str | Density | None = None) -> np.ndarray:
        """Draw n latents from a density and decode them. ``density`` is a name for
        density_named (None: the bundle's default) or a density already resolved from it."""
        if n < 1:
            raise UsageError(f"-n must be at least 1, got {n}")
        if density is None or isinstance(density, str):
            density = self.density_named(density)
        return self.decode(density.sample(n, rng=seed))


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
                                            "decoder output": decoder.get_outputs()[0].shape}, f"bundle {path}")
    return Bundle(path=path, meta=meta, encoder=encoder, decoder=decoder, provider=provider_label(provider),
                  batch_size=batch_size, threads=threads)


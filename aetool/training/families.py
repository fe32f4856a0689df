"""Model families, each one unit: how to build it, train it, describe it and export it.

In the spirit of CompressAI's ``@register_model``: a family is a class registered
under a name, and everything that needs to know what a model is (train, the
Trainer, export, warm starts, ``torch_from_onnx``, ``compare``) asks the registry
instead of testing names.  :class:`ArchConfig` (nanoGPT's ``GPTConfig``) holds
the architecture alone: it is what a checkpoint and a bundle record, and all that
:meth:`Family.build` needs to rebuild the model.

Families:

- ``cnn``: the lecture's network (``lecture`` is another name for it); at 1x28x28 it is
  layer for layer the lecture's, at other sizes its constant-width plan (model.py).
- ``photo``: a network designed for natural images (photo.py), the default for folders.
- ``pca``: the linear baseline, fitted in closed form rather than trained (pca.py).

To add a family: a class with a ``name``, its training ``defaults`` and ``build``,
decorated with :func:`register_family`; export, info and every runtime command then
work on its bundles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..errors import AetoolError, UsageError
from ..lecture import IMAGE_SHAPE, NB_CHANNELS

if TYPE_CHECKING:  # torch is imported where a model is built: the registry itself is torch-free
    import torch
    from torch import nn

MAX_D = 4096  # latent sizes beyond this are a typo, not a model
MAX_WIDTH = 1024  # a family's width knob: cost grows with its square
CROP_OPTIONS = ("crop", "crops_per_epoch", "zoom", "turns", "colours")  # what the map family trains on
MAX_SIDE = 4096  # pixels on a side of a model's square input

_REGISTRY: dict[str, "Family"] = {}
_ALIASES: dict[str, str] = {}


@dataclass(frozen=True)
class ArchConfig:
    """The architecture alone: enough to rebuild the model, nothing about how it was trained."""

    family: str
    d: int
    width: int | None  # the family's width knob (None for PCA)
    channels: int = 1
    image_size: int = 28  # the picture's side; for a latent map, the side of its training crops
    factor: int | None = None  # a latent map's block side (None: one code vector)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def is_map(self) -> bool:
        return self.factor is not None

    def to_dict(self) -> dict[str, Any]:
        """As stored; a code vector's record has no ``factor`` (the records written before maps)."""
        out = dataclasses.asdict(self)
        if out["factor"] is None:
            del out["factor"]
        return out

    @classmethod
    def from_dict(cls, obj: Any, where: str = "arch") -> "ArchConfig":
        if not isinstance(obj, dict):
            raise AetoolError(f"{where}: expected an architecture record, got {type(obj).__name__}")
        try:
            arch = cls(**{f.name: obj[f.name] for f in dataclasses.fields(cls) if f.name in obj})
        except TypeError as e:
            raise AetoolError(f"{where}: {e}") from None
        ints = [arch.d, arch.channels, arch.image_size] + ([] if arch.width is None else [arch.width]) \
            + ([] if arch.factor is None else [arch.factor])
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in ints):
            raise AetoolError(f"{where}: d, width, channels and image_size must be positive integers")
        # bounded as train's options are: a record is rebuilt into a model, and width 10**6 is 36 TB of weights
        for name, high in (("d", MAX_D), ("width", MAX_WIDTH), ("image_size", MAX_SIDE), ("channels", 4)):
            if getattr(arch, name) is not None and getattr(arch, name) > high:
                raise AetoolError(f"{where}: {name} must be at most {high}, got {getattr(arch, name)}")
        get_family(arch.family, where)
        return arch

    def words(self) -> str:
        """"photo d=8 width 16 3x32x32": the architecture in a line, to name it in a message."""
        return f"{self.family} d={self.d}" + ("" if self.width is None else f" width {self.width}") + \
            f" {'x'.join(map(str, self.image_shape))}"

    @classmethod
    def from_stored(cls, state: dict[str, Any], where: str = "run") -> "ArchConfig":
        """The architecture of a checkpoint or training record: its ``arch``, or for runs made before
        architectures were recorded, the old flat config's ``model``, ``nb_channels`` and image shape."""
        if "arch" in state:
            return cls.from_dict(state["arch"], f"{where}: arch")
        config = state.get("config", state)
        family = get_family(config.get("model") or "cnn", where)
        width = config.get("width", config.get("nb_channels"))
        return cls.from_dict({"family": family.name, "d": config.get("d"),
                              "width": None if family.closed_form else (width or family.defaults.get("width")),
                              "channels": config.get("channels") or IMAGE_SHAPE[0],
                              "image_size": config.get("image_size") or IMAGE_SHAPE[-1]}, where)


class Family:
    """One model family.  ``defaults`` are the training settings a run of this family takes where
    the user gave none (TrainConfig fields left at None)."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str]
    closed_form: ClassVar[bool] = False  # fitted in closed form (fit), not trained by the Trainer
    defaults: ClassVar[dict[str, Any]] = {}
    shift_fill: ClassVar[str] = "zeros"  # what --shift moves in: zeros, or the picture's edge mirrored
    # the fewest pictures one training step may hold: BatchNorm in training mode needs two values per
    # channel, so a family with it takes batches of two or more (a last batch of one joins the one before)
    min_batch: ClassVar[int] = 1
    # TrainConfig fields this family does nothing with: given, they are refused (a usage error), and a
    # stored config holds them at their defaults, so no record claims what the family never did
    unused_options: ClassVar[tuple[str, ...]] = CROP_OPTIONS + ("max_side",)

    layouts: ClassVar[tuple[str, ...]] = ("vector",)  # latent layouts it builds: "vector", "map" (bundle_format)

    def takes_maps(self, factor: int | None) -> bool:
        """Whether a run of this family with ``--factor factor`` (None: not given) has a latent map, and
        so trains on pictures at their own size; --factor for a family without maps is a usage error."""
        if "map" not in self.layouts:
            if factor is not None:
                raise UsageError(f"--factor: the {self.name} family keeps one code vector (maps: --arch map, or pca)")
            return False
        return "vector" not in self.layouts or factor is not None

    def latent_layout(self, arch: ArchConfig) -> Any:
        """The bundle's latent layout (aetool.bundle_format.LatentLayout) for ``arch``."""
        from ..bundle_format import LatentLayout

        return LatentLayout.map(arch.factor) if arch.is_map else LatentLayout()

    def build(self, arch: ArchConfig) -> nn.Module:
        """A fresh model with ``.encoder`` (N,C,H,W)->(N,d,1,1) and ``.decoder`` back."""
        raise NotImplementedError

    def export_modules(self, model: nn.Module) -> tuple[nn.Module, nn.Module, Callable | None, str]:
        """The encoder and decoder as they go into the ONNX graphs, a rewrite of the decoder's file
        (or None) and the decoder's form in words.  Default: as trained."""
        return model.encoder, model.decoder, None, "as trained"

    def modules_from_onnx(self, model: nn.Module, encoder: dict[str, torch.Tensor], decoder: Any) -> None:
        """Load an exported bundle's weights back into ``model`` (torch_from_onnx); raises RuntimeError
        where the graphs' weights do not map back (then a benchmark uses random weights)."""
        import torch

        model.encoder.load_state_dict(encoder)
        model.decoder.load_state_dict({t.name: torch.from_numpy(_array(t)) for t in decoder.initializer})

    def prepare(self, model: nn.Module, images: Any) -> str | None:
        """Set up a fresh model from the training images before its first step (None: nothing to do);
        returns a line for the log."""
        return None

    def start_from(self, run: Any, arch: ArchConfig, images: Any, revive: bool) -> tuple[nn.Module, int]:
        """A warm start from another run of this family (``--init-from``)."""
        raise UsageError(f"--init-from: the {self.name} family has no warm start")

    def run_name(self, arch: ArchConfig) -> str:
        return f"{self.name}-d{arch.d}" + ("" if arch.width in (None, self.defaults.get("width")) else f"-w{arch.width}")


def register_family(cls: type[Family]) -> type[Family]:
    family = cls()
    _REGISTRY[cls.name] = family
    for alias in cls.aliases:
        _ALIASES[alias] = cls.name
    return cls


def get_family(name: str, where: str = "--arch") -> Family:
    family = _REGISTRY.get(_ALIASES.get(name, name)) if isinstance(name, str) else None
    if family is None:
        raise UsageError(f"{where}: unknown model family {name!r} (known: {', '.join(family_names())})")
    return family


def family_names(with_aliases: bool = False) -> list[str]:
    return list(_REGISTRY) + (list(_ALIASES) if with_aliases else [])


def build_model(arch: ArchConfig) -> nn.Module:
    return get_family(arch.family).build(arch)


def _array(tensor_proto: Any):
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor_proto).copy()


# ---------------------------------------------------------------- the families
@register_family
class LectureCNN(Family):
    name = "cnn"
    aliases = ("lecture",)
    summary = "the lecture's network (exactly, at 1x28x28); a constant-width plan at other sizes"
    defaults = {"width": NB_CHANNELS, "lr": 1e-3, "schedule": "constant", "weight_decay": 0.0, "clip": 0.0,
                "flip": False, "shift": 0}

    def build(self, arch: ArchConfig) -> nn.Module:
        from .model import AutoEncoder

        return AutoEncoder(arch.d, arch.width or NB_CHANNELS, arch.channels, arch.image_size)

    def export_modules(self, model):
        from .conv_form import DECODER_FORM, conv_form, depth_to_space_dcr

        return model.encoder, conv_form(model.decoder), depth_to_space_dcr, DECODER_FORM

    def modules_from_onnx(self, model, encoder, decoder):
        import torch

        from .conv_form import depth_to_space_mode, lecture_state

        model.encoder.load_state_dict(encoder)
        weights = {t.name: torch.from_numpy(_array(t)) for t in decoder.initializer}
        if any(n.op_type == "Conv" for n in decoder.node):  # conv form: flip kernels back
            weights = lecture_state(model.decoder, weights, depth_to_space_mode(decoder))
        model.decoder.load_state_dict(weights)

    def start_from(self, run, arch, images, revive):
        from .warm_start import start_from_run

        return start_from_run(run, arch.d, arch.width, images, revive=revive, model_shape=arch.image_shape)

    def run_name(self, arch: ArchConfig) -> str:  # the lecture's runs keep their names: cnn-d16, cnn-d16-w64
        return f"cnn-d{arch.d}" + ("" if arch.width == NB_CHANNELS else f"-w{arch.width}")


@register_family
class PhotoNet(Family):
    name = "photo"
    summary = "residual stages with widths doubling as the side halves, BatchNorm, SiLU, a Linear bottleneck"
    defaults = {"width": 16, "lr": 2e-3, "schedule": "onecycle", "weight_decay": 1e-4, "clip": 1.0, "flip": True,
                "shift": 2}
    shift_fill = "reflect"
    min_batch = 2  # BatchNorm after every convolution, and on the latent map

    def build(self, arch: ArchConfig) -> nn.Module:
        from .photo import PhotoAutoEncoder

        return PhotoAutoEncoder(arch.d, arch.width or self.defaults["width"], arch.channels, arch.image_size)

    def export_modules(self, model):
        from .photo import fold_batchnorm

        return (fold_batchnorm(model.encoder), fold_batchnorm(model.decoder), None,
                "BatchNorm folded into the convolution or Linear layer before it")

    def modules_from_onnx(self, model, encoder, decoder):
        raise RuntimeError("BatchNorm was folded at export: the trained modules cannot be recovered exactly")

    def prepare(self, model, images):
        from .photo import pca_start

        model.start_at_pca(*pca_start(images, model.embedding_dim))
        return "linear paths start as PCA of the training images"


@register_family
class MapNet(Family):
    name = "map"
    summary = "fully convolutional residual blocks: d codes per f x f block at any size, beside a fixed block PCA"
    layouts = ("map",)
    unused_options = ("shift", "denoise", "init_from", "revive_dead", "normal_class", "holdout", "fit", "image_size")
    defaults = {"width": 16, "lr": 1e-3, "schedule": "onecycle", "weight_decay": 0.0, "clip": 1.0, "flip": True,
                "shift": 0, "d": 4, "factor": 8, "crop": 64, "crops_per_epoch": 4096, "batch_size": 16, "zoom": 1.0,
                "turns": False, "colours": False}

    def build(self, arch: ArchConfig) -> nn.Module:
        from .maps import MapAutoEncoder

        return MapAutoEncoder(arch.d, arch.width or self.defaults["width"], arch.channels, arch.factor or 8)

    def modules_from_onnx(self, model, encoder, decoder):
        import torch

        model.encoder.load_state_dict(encoder)
        model.decoder.load_state_dict({t.name: torch.from_numpy(_array(t)) for t in decoder.initializer}, strict=False)

    def prepare(self, model, images):
        from .maps import fit_block_pca

        mean, components, info = fit_block_pca(images, model.factor, model.embedding_dim)
        model.start_at_pca(mean, components)
        return (f"linear paths start as block PCA of the training pictures ({info['blocks']} blocks of "
                f"{model.factor}x{model.factor}, {info['explained_variance']:.1%} of their variance kept)")

    def run_name(self, arch: ArchConfig) -> str:
        return f"map-f{arch.factor}-d{arch.d}" + ("" if arch.width in (None, self.defaults["width"]) else f"-w{arch.width}")


@register_family
class PCA(Family):
    name = "pca"
    summary = "the linear baseline: the top-d principal directions, fitted in closed form (--factor: per block)"
    closed_form = True
    layouts = ("vector", "map")
    defaults = {"flip": False, "shift": 0}
    unused_options = ("epochs", "width", "lr", "schedule", "weight_decay", "clip", "flip", "batch_size", "precision",
                      "cuda_graph", "init_from", "revive_dead", "average_last", "shift", "denoise", *CROP_OPTIONS)

    def build(self, arch: ArchConfig) -> nn.Module:
        if arch.is_map:
            from .maps import BlockPCA

            return BlockPCA(arch.d, arch.channels, arch.factor)
        from .model import PCAAutoEncoder

        return PCAAutoEncoder(arch.d, arch.image_shape)

    def run_name(self, arch: ArchConfig) -> str:
        return f"pca-f{arch.factor}-d{arch.d}" if arch.is_map else f"pca-d{arch.d}"

    def fit(self, config: Any, run: Any, data: Any, log: Callable[[str], None], quiet: bool = False) -> dict:
        from .pca import train_block_pca, train_pca

        return (train_block_pca if config.factor else train_pca)(config, run, data, log=log, quiet=quiet)

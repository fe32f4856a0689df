"""Train the lecture's autoencoder on MNIST into a run folder (training.run owns its layout).

Every epoch rewrites the checkpoint and metrics atomically, so an interrupted run
loses at most the epoch in progress and resumes with ``--resume``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from ..density import DiagonalGaussian
from ..errors import AetoolError, UsageError
from ..memory import fits, gigabytes
from ..metrics import psnr_from_sse
from ..progress import progress
from . import distributed
from .compiled_step import CompiledStep, should_compile, speed_record
from .device import channels_last_for, cpu_kind
from .model import activation_bytes, count_macs
from .augment import random_flip, random_noise, random_shift
from .crops import CropImages, map_codes, picture_errors
from .config import FLAGS, Recipe, TrainConfig
from ..datasets import Rows, check_same_split, load_training_data
from .device import resolve_precision, torch_device
from .families import Family, get_family
from .graph_step import GraphStep
from .model import count_parameters, describe_layers, forward_all, reconstruction_loss, sse_per_image
from .run import CHECKPOINT, RunFolder, epochs_in_all, load_weights


class TrainImages:
    """The training images as the loop reads them: a tensor on the device where they are in memory
    already (MNIST) or fit on a GPU (so it copies nothing per batch), else a folder's rows read from
    its cache batch by batch (on a CPU that is as fast, and a folder larger than RAM still trains)."""

    ON_GPU_BYTES = 2 << 30

    def __init__(self, images: np.ndarray | Rows, device: torch.device) -> None:
        self.device, self.uint8 = device, images.dtype == np.uint8
        self.on_device = not isinstance(images, Rows) or (device.type == "cuda" and images.nbytes <= self.ON_GPU_BYTES)
        self.images = torch.from_numpy(np.asarray(images[:])).to(device) if self.on_device else images
        self.length = len(images)

    def __len__(self) -> int:
        return self.length

    @property
    def index_device(self) -> torch.device:
        return self.device if self.on_device else torch.device("cpu")

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.images[idx] if self.on_device else torch.from_numpy(self.images[idx.numpy()]).to(self.device)
        return x.float().div_(255) if self.uint8 else x


def batch_bounds(n: int, size: int, least: int = 1) -> list[tuple[int, int]]:
    """The (start, stop) of each step's batch over ``n`` pictures, ``size`` at a time; a last batch
    smaller than ``least`` joins the one before it.  How many pictures are left over is an accident
    of a folder's size, and a family with BatchNorm cannot train on a batch of one."""
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < least:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def check_batches(family: Family, batch_size: int, pictures: int, where: str) -> None:
    """Refuse, before any step, a run whose every batch would be smaller than its family can train on."""
    least = family.min_batch
    if batch_size < least:
        raise UsageError(f"--batch-size {batch_size}: the {family.name} family trains on batches of at least {least} "
                         f"pictures (its BatchNorm needs more than one value per channel)")
    if pictures < least:
        raise UsageError(f"{where}: {pictures} training picture(s), and the {family.name} family needs at least {least} "
                         f"(its BatchNorm); add pictures or lower --val-split")


# a CPU step's memory per image over its leaf layers' outputs at fp32 (autograd keeps some of them,
# fused or in bf16 where autocast runs): measured on the photo family at 256 px, with a margin
STEP_MEMORY_FACTOR = {"fp32": 0.6, "bf16": 0.3}


def check_step_memory(batch_size: int, per_image: int, shape: tuple[int, ...], precision: str) -> None:
    """Refuse, before any step, a batch whose activations cannot fit in the memory free now: the
    kernel would kill the run part-way instead, with no word of why."""
    factor = STEP_MEMORY_FACTOR.get(precision, max(STEP_MEMORY_FACTOR.values()))
    needed = int(batch_size * per_image * factor)
    ok, available = fits(needed)
    if not ok:
        fitting = int(available / (per_image * factor))
        size = "x".join(str(n) for n in shape[1:])
        hint = f"use --batch-size {fitting} or less" if fitting >= 2 else "use a smaller --image-size or --crop"
        raise AetoolError(f"--batch-size {batch_size}: a training step on {size} pictures needs about "
                          f"{gigabytes(needed)} and this machine has {gigabytes(available)} free; {hint}")


class Trainer:
    """One training run: builds the model, loops over epochs, checkpoints, fits the density."""

    GRAPH_DEVICES = ("cuda",)  # where the step is replayed as a CUDA graph (graph_step.py; a CPU re-runs it)

    def __init__(self, config: TrainConfig, out_dir: Path, *, quiet: bool = False, log: Callable[[str], None] = print) -> None:
        config.validate()
        self.config = config
        self.run_folder = RunFolder(out_dir)
        self.out_dir = self.run_folder.path
        self.ranks, self.device = distributed.setup(torch_device(config.device))
        self.quiet = quiet or not self.ranks.main
        self.log = log if self.ranks.main else (lambda s: None)
        # one process on a GPU: the step becomes a CUDA graph (under torchrun DDP's hooks stay eager)
        self.graphed = config.cuda_graph and self.device.type in self.GRAPH_DEVICES and self.ranks.world == 1
        self.precision = resolve_precision(config.precision, self.device, graphed=self.graphed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: time the conv algorithms once, keep the fastest
        if not self.ranks.main:
            self.ranks.barrier()  # rank 0 decodes a folder into its cache first; the others then read the cache
        self.data = load_training_data(config.selection(), quiet=self.quiet, log=self.log)
        if self.ranks.main:
            self.ranks.barrier()
        # the family's defaults and the data's image shape, filled in: what the checkpoint stores
        self.config = config = config.resolved(self.data.image)
        self.family, self.arch = config.family(), config.arch()
        check_batches(self.family, config.batch_size, len(self.data.train), config.data or "MNIST")
        torch.manual_seed(config.seed)
        self.model = self.family.build(self.arch).to(self.device)
        # the CPU kind decides precision (above) and memory format, for every family (device.py)
        self.cpu_kind = cpu_kind() if self.device.type == "cpu" else None
        self.channels_last = channels_last_for(self.device, self.precision, self.cpu_kind)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        example = torch.zeros(1, *self.arch.image_shape, device=self.device)
        self.macs = count_macs(self.model, example)
        if self.device.type == "cpu":
            check_step_memory(config.batch_size, activation_bytes(self.model, example), self.arch.image_shape,
                              self.precision)
        self.step_model = self.ranks.wrap(self.model, self.device)  # what the training step calls
        # a captured step reads its learning rate from a device tensor, and Adam keeps its step count there
        self.capturable = self.graphed and self.device.type == "cuda"
        self.lr_tensor = torch.tensor(config.lr, device=self.device) if self.graphed else None
        self.optimizer = torch.optim.Adam(self.parameter_groups(), lr=config.lr if self.lr_tensor is None else self.lr_tensor,
                                          capturable=self.capturable, decoupled_weight_decay=config.weight_decay > 0)
        self.graph_step = GraphStep(self._update, self._zero_grad, capture=self.capturable,
                                    log=self.log) if self.graphed else None
        self.forward_loss = CompiledStep(self._forward_loss, compile=should_compile(config.compile, self.device), log=self.log)
        self.epoch = 0
        self.history: list[dict] = []
        self.best: dict | None = None  # the epoch with the lowest held-out SSE: {"epoch", "sse", "model"}
        self.started_from: list[dict] = []
        self.replacing = False  # --force over a run: its density goes when this run first saves, not before
        # stochastic weight averaging: an equal-weight mean of the weights at the end of
        # each of the last K epochs, which sits in a flatter, better-generalising spot than
        # any one of them; it replaces the weights when the run ends
        self.average = AveragedModel(self.model) if config.average_last else None

    def parameter_groups(self) -> list[dict]:
        """One group (the lecture's Adam); with weight decay, a second group without it for biases and
        normalisation scales, which decay only pulls towards a worse model."""
        params = [p for p in self.model.parameters() if p.requires_grad]  # a family's fixed layers stay out
        if not self.config.weight_decay:
            return [{"params": params}]
        return [{"params": [p for p in params if p.dim() > 1], "weight_decay": self.config.weight_decay},
                {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]

    # ---- checkpoints ----------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "arch": self.arch.to_dict(),
            "config": dataclasses.asdict(self.config),
            "epoch": self.epoch,
            "model": {k: v.contiguous() for k, v in self.model.state_dict().items()},
            "optimizer": self.portable_optimizer_state(),
            "history": self.history,
        }
        if self.average is not None:
            state["average"] = {k: v.contiguous() for k, v in self.average.state_dict().items()}
        if self.best is not None:
            state["best"] = self.best
        if not self.ranks.main:
            return
        if self.replacing:
            self.run_folder.forget_density()
            self.replacing = False
        self.run_folder.save_checkpoint(state)

    def load_checkpoint(self) -> None:
        """The run to resume, checked whole (checkpoint, metrics, and the two against each other and
        against this run's model) before any of it is taken: nothing is written until it passes."""
        state, metrics = self.run_folder.check_whole()
        where = self.run_folder.path / CHECKPOINT
        load_weights(self.model, state["model"], f"{where}: model")
        if "optimizer" not in state:
            raise AetoolError(f"{where}: no optimizer record: the run cannot be resumed exactly")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as e:
            raise AetoolError(f"{where}: optimizer does not fit the model ({' '.join(str(e).split())[:160]})") from None
        self.own_optimizer_settings()
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        self.best = state.get("best")
        self.started_from = list((metrics or {}).get("started_from", []))
        if metrics is not None:
            check_same_split(metrics.get("data"), self.data, f"--resume {self.out_dir}")
        if self.average is not None and "average" in state:
            load_weights(self.average, state["average"], f"{where}: average")
            first_averaged = self.epoch - int(self.average.n_averaged) + 1
            if self.average.n_averaged and not self.in_average_window(first_averaged):
                # the stored mean holds epochs outside the new window and cannot drop them
                raise AetoolError(f"this run's weight average starts at epoch {first_averaged}, before the last "
                                  f"{self.config.average_last} of {self.config.epochs}; start a new run with --init-from instead")

    def in_average_window(self, epoch: int) -> bool:
        """Whether the weights at the end of (1-based) ``epoch`` belong in the mean: the last K epochs."""
        return epoch > self.config.epochs - self.config.average_last

    # ---- the loop -------------------------------------------------------
    WARMUP = 0.05  # onecycle: the share of the steps over which the rate climbs to lr

    def lr_at(self, epoch: float) -> float:
        """Learning rate at a (0-based, fractional) epoch: constant; a cosine from lr down to lr/100,
        per epoch; or one cycle, per step: a linear warm-up from lr/25 over the first 5 % of the
        steps, then a cosine down to lr/10,000 (early steps of a fresh network with BatchNorm are
        where a full rate throws it off; the long decay is what lands it in a good minimum)."""
        c = self.config
        if c.schedule == "constant":
            return c.lr
        if c.schedule == "cosine":
            return c.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * int(epoch) / c.epochs)))
        t = min(max(epoch / c.epochs, 0.0), 1.0)
        if t < self.WARMUP:
            return c.lr * (0.04 + 0.96 * t / self.WARMUP)
        return c.lr * (1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (t - self.WARMUP) / (1 - self.WARMUP))))

    def portable_optimizer_state(self) -> dict:
        """Adam's state with a plain learning rate and no capture flag, so the checkpoint resumes on any device."""
        state = self.optimizer.state_dict()
        state["param_groups"] = [{**g, "lr": float(g["lr"]), "capturable": False} for g in state["param_groups"]]
        return state

    def own_optimizer_settings(self) -> None:
        """After loading a checkpoint: this run's learning-rate holder and capture flag, and Adam's step
        counts where a captured step reads them (on the GPU)."""
        for group in self.optimizer.param_groups:
            group["capturable"] = self.capturable
            if self.lr_tensor is not None:
                self.lr_tensor.fill_(float(group["lr"]))
                group["lr"] = self.lr_tensor
            else:
                group["lr"] = float(group["lr"])
        for values in self.optimizer.state.values():
            if "step" in values and torch.is_tensor(values["step"]):
                values["step"] = values["step"].to(self.device if self.capturable else "cpu", torch.float32)

    def set_lr(self, lr: float) -> None:
        """Change the learning rate in place, where a captured step reads it."""
        if self.lr_tensor is not None:
            self.lr_tensor.fill_(lr)
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def step(self, x: torch.Tensor, x_in: torch.Tensor | None = None) -> torch.Tensor:
        """One optimiser step on a batch: reconstruct ``x`` from ``x_in`` (default: ``x`` itself;
        a noisy copy for denoising); returns the loss.  The speed-ups live here (bf16 autocast
        and channels_last where the hardware has BF16, a CUDA graph on a GPU), so the benchmark
        times exactly what training runs.  On a GPU the loss returned is overwritten by the next step."""
        x = x.to(self.device, non_blocking=True)
        x_in = x if x_in is None else x_in.to(self.device, non_blocking=True)
        if self.graph_step is not None:
            return self.graph_step(x, x_in)
        self._zero_grad()
        return self._update(x, x_in)

    def _zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def _update(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward and Adam, with the gradients already reset: what a CUDA graph captures."""
        loss = self.forward_loss(x, x_in)
        loss.backward()
        if self.config.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.optimizer.step()
        return loss.detach()

    def _forward_loss(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """Forward and loss: the part a CPU step compiles (compiled_step.py)."""
        if self.channels_last:
            x_in = x_in.contiguous(memory_format=torch.channels_last)
        # no autocast cache: a captured step must recast the weights Adam has just changed
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16", cache_enabled=False):
            x_hat = self.step_model(x_in)
        return reconstruction_loss(x, x_hat)

    def train_epoch(self, x_train: TrainImages) -> tuple[float, float]:
        c = self.config
        self.model.train()
        self.set_lr(self.lr_at(self.epoch))
        g = torch.Generator().manual_seed(c.seed * 100_003 + self.epoch)
        order = torch.randperm(len(x_train), generator=g).to(x_train.index_device)  # the same order on every device
        batches = batch_bounds(len(x_train), c.batch_size, self.family.min_batch * self.ranks.world)
        per_step = c.schedule == "onecycle"
        bar = progress(batches, quiet=self.quiet, desc=f"epoch {self.epoch + 1}/{c.epochs}", unit="batch")
        # the loss is summed where it is computed: reading it every step would make a GPU wait for the host
        total, seen, t0 = torch.zeros((), dtype=torch.float64, device=self.device), 0, time.perf_counter()
        for i, (start, stop) in enumerate(bar):
            if per_step:
                self.set_lr(self.lr_at(self.epoch + i / len(batches)))
            x = random_shift(x_train.batch(self.ranks.my_part(order[start:stop])), c.shift, g, self.family.shift_fill)
            x = random_flip(x, g) if c.flip else x
            total += self.step(x, random_noise(x, c.denoise, g) if c.denoise else None) * len(x)
            seen += len(x)
            if hasattr(bar, "set_postfix") and i % 50 == 0:
                bar.set_postfix(loss=f"{total.item() / seen:.3f}", refresh=False)
        sums = self.ranks.sum(torch.stack([total, torch.tensor(float(seen), dtype=torch.float64, device=self.device)]))
        return sums[0].item() / sums[1].item(), time.perf_counter() - t0

    def run(self, resume: bool = False, stop_after: int | None = None) -> dict:
        """Train to ``config.epochs``, or pause after epoch ``stop_after`` of that schedule
        (the run resumes exactly where it stopped, learning-rate schedule included)."""
        c = self.config
        last_epoch = c.epochs if stop_after is None else min(stop_after, c.epochs)
        if resume:
            self.load_checkpoint()
        train = self.data.train
        x_train = self.train_images()
        if c.init_from and not resume:
            start, revived = self.family.start_from(RunFolder(c.init_from), self.arch, train, c.revive_dead)
            self.model.load_state_dict(start.state_dict())
            self.started_from = RunFolder(c.init_from).chain_as_start(c.revive_dead)
            self.log(f"starting from {c.init_from} (latent projected on its top {c.d} principal directions where smaller, "
                     f"{c.width} channels, {revived} dead channels revived)")
        elif not resume and (note := self.family.prepare(self.model, train)) is not None:
            self.log(note)  # every process makes the same start: from the same images, deterministically
        if self.ranks.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log(
            f"training {c.model} d={c.d} (width {c.width}) on {len(train)} "
            + (f"pictures ({self.data.info['train_megapixels']:.1f} megapixels), {len(x_train)} crops of "
               f"{c.crop}x{c.crop} an epoch, codes per {c.factor}x{c.factor} block" if self.arch.is_map else
               f"images of {'x'.join(map(str, self.data.image.shape))}")
            + f" ({self.device.type}, {self.precision}"
            + (", CUDA graph" if self.capturable else "") + "), "
            f"epochs {self.epoch + 1}..{c.epochs}, batch {c.batch_size}"
            + (f" over {self.ranks.world} processes" if self.ranks.world > 1 else "")
            + f", lr {c.lr:g} ({c.schedule})" + (f", weight decay {c.weight_decay:g}" if c.weight_decay else "")
            + (", flips" if c.flip else "") + f" -> {self.out_dir}"
        )
        while self.epoch < last_epoch:
            train_loss, seconds = self.train_epoch(x_train)
            held = self.heldout_numbers()
            self.epoch += 1
            row = {
                "epoch": self.epoch,
                "lr": self.lr_at(self.epoch - 1),
                "batch_size": self.config.batch_size,
                "train_loss": train_loss,
                **held,
                "seconds": seconds,
                "train_images_per_s": len(x_train) / seconds,
            }
            if self.average is not None and self.in_average_window(self.epoch):
                self.average.update_parameters(self.model)
                row["averaged_epochs"] = int(self.average.n_averaged)
                row["average_test_sse_per_image"] = self.heldout_numbers(self.average.module)["test_sse_per_image"]
            self.history.append(row)
            if self.best is None or row["test_sse_per_image"] < self.best["sse"]:
                self.best = {"epoch": self.epoch, "sse": row["test_sse_per_image"],
                             "model": {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}}
            self.save_checkpoint()
            self.write_metrics(final=False)
            self.log(
                f"epoch {self.epoch}/{c.epochs}: train loss {train_loss:.3f}  {self.data.heldout_name} "
                + (f"SSE/pixel {row['test_sse_per_pixel']:.5f}  SSIM {row['test_ssim']:.4f}  " if self.arch.is_map else
                   f"SSE/image {row['test_sse_per_image']:.3f}  ")
                + f"PSNR {row['test_psnr_db']:.2f} dB  ({seconds:.1f} s, {row['train_images_per_s']:.0f} "
                + ("crops/s)" if self.arch.is_map else "img/s)")
                + (f"  average of {row['averaged_epochs']}: {self.data.heldout_name} SSE/image "
                   f"{row['average_test_sse_per_image']:.3f}"
                   if "averaged_epochs" in row else "")
            )
        if self.history:
            self.log(self.speed_line())
        if self.epoch < c.epochs:
            return self.write_metrics(final=False)
        if self.average is not None:  # the run has ended, so its last epoch was averaged
            self.adopt_average()
        if self.ranks.main:
            density = DiagonalGaussian().fit(self.training_codes())
            self.run_folder.write_density(density.to_dict())
        metrics = self.write_metrics(final=True)
        self.ranks.barrier()
        return metrics

    # ---- what differs between a code vector and a map (crops.py) ---------
    def train_images(self) -> TrainImages | CropImages:
        """What a step's batch is drawn from: the training images, or random crops of the pictures."""
        c = self.config
        if self.arch.is_map:
            crops = CropImages(self.data.train, c.crop, c.crops_per_epoch, c.seed, self.device, zoom=c.zoom,
                               turns=c.turns, colours=c.colours)
            if crops.skipped:
                self.log(f"{crops.skipped} of {len(self.data.train)} training pictures are smaller than --crop {c.crop}: "
                         f"no crop is drawn from them")
            return crops
        return TrainImages(self.data.train, self.device)

    def heldout_numbers(self, model: torch.nn.Module | None = None) -> dict[str, float]:
        """The held-out error this epoch: SSE per image and PSNR; for a map, on whole pictures at their
        own size, with SSE per pixel and SSIM too."""
        model = self.model if model is None else model
        if self.arch.is_map:
            e = picture_errors(model, self.data.heldout, self.arch.factor, self.device)
            return {"test_sse_per_image": float(e.sse.mean()), "test_sse_per_pixel": e.sse_per_pixel,
                    "test_psnr_db": e.psnr_db, "test_ssim": float(e.ssim.mean())}
        sse = sse_per_image(model, self.data.heldout, self.device)
        return {"test_sse_per_image": float(sse.mean()),
                "test_psnr_db": psnr_from_sse(float(sse.mean()), self.data.image.pixels)}

    def training_codes(self) -> np.ndarray:
        """The training latents a density is fitted on: one per image, or one per map position."""
        if self.arch.is_map:
            return map_codes(self.model.encoder, self.data.train, self.arch.factor, self.device)
        return forward_all(self.model.encoder, self.data.train, self.device)

    def adopt_average(self) -> None:
        """The averaged weights become the run's weights (checkpoint, export, density), and what
        export takes as the best: the run asked to ship the mean."""
        self.model.load_state_dict(self.average.module.state_dict())
        last = self.history[-1]
        self.best = {"epoch": self.epoch, "sse": last.get("average_test_sse_per_image", last["test_sse_per_image"]),
                     "model": {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}}
        self.save_checkpoint()
        self.log(f"weights: the average of the last {int(self.average.n_averaged)} epochs")

    def step_kind(self) -> str:
        """How the training step ran, for the record: "cuda graph", "compiled", or "eager" (and why,
        where capture or compiling failed)."""
        g = self.graph_step
        if g is None or not g.capture:
            return self.forward_loss.kind
        return f"eager (capture failed: {g.failed})" if g.failed else "cuda graph"

    def speed(self, images_per_s: float) -> dict:
        """The speed record (metrics.json's ``speed``): CPU kind, the choices made for it, images/s, GFLOP/s."""
        return speed_record(self.cpu_kind or self.device.type, self.precision, self.channels_last, self.step_kind(),
                            self.forward_loss.compile_seconds, self.macs, images_per_s)

    def speed_line(self) -> str:
        """The last epoch's speed and what gave it, for the log (the same as metrics.json's ``speed``)."""
        s = self.speed(self.history[-1]["train_images_per_s"])
        return (f"speed: {s['images_per_s']:.0f} images/s, {s['gflop_per_s']:.1f} GFLOP/s on {s['cpu']} "
                f"({s['precision']}, {s['memory_format']}, {s['step']} step)")

    def write_metrics(self, final: bool) -> dict:
        last = self.history[-1]
        # once the average is adopted it is what the run's weights score
        sse = last["average_test_sse_per_image"] if final and "average_test_sse_per_image" in last else last["test_sse_per_image"]
        metrics = {
            "family": self.config.model,
            "arch": self.arch.to_dict(),
            "config": dataclasses.asdict(self.config),
            "precision": self.precision,
            "device": self.device.type,
            "step": self.step_kind(),
            "speed": self.speed(last["train_images_per_s"]),
            "torch": torch.__version__,
            "parameters": {"encoder": count_parameters(self.model.encoder), "decoder": count_parameters(self.model.decoder)},
            "layers": describe_layers(self.model),
            "best_epoch": None if self.best is None else self.best["epoch"],
            "best_test_sse_per_image": None if self.best is None else self.best["sse"],
            "data": self.data.info,
            "epochs_done": self.epoch,
            "started_from": self.started_from,
            "epochs_in_all": epochs_in_all(self.epoch, self.started_from),
            "complete": final,
            "test_sse_per_image": sse,
            "test_psnr_db": last["test_psnr_db"] if self.arch.is_map else psnr_from_sse(sse, self.data.image.pixels),
            **({k: last[k] for k in ("test_sse_per_pixel", "test_ssim")} if self.arch.is_map else {}),
            "history": self.history,
        }
        if self.ranks.main:
            self.run_folder.write_metrics(metrics)
        return metrics


RESUMABLE = ("epochs", "batch_size", "device", "cuda_graph")  # what --resume may change; the rest is the run's


def resume_config(out_dir: Path, epochs: int | None = None, batch_size: int | None = None,
                  device: str | None = None, cuda_graph: bool | None = None,
                  given: dict[str, Any] | None = None) -> TrainConfig:
    """The stored config of a run, optionally with a new total number of epochs or a new
    batch size from the next epoch on (each epoch's size stays in the history), or on
    another device: a run started on a lent GPU can go on where there is none.  ``given``: the
    other options the command named, refused where they differ from the run's own (a resumed run
    trains as it started; silently dropping them would leave the user believing they took)."""
    run = RunFolder(out_dir)
    if not run.exists():
        raise UsageError(f"--resume: {out_dir} holds no checkpoint to resume")
    config = run.config()
    changed = [f"{FLAGS[name]} (the run's: {getattr(config, name)!r})" for name, value in (given or {}).items()
               if name not in RESUMABLE and value != getattr(config, name)
               and not (name == "model" and get_family(value).name == config.model)]
    if changed:
        raise UsageError(f"--resume continues {out_dir} as it was set up and cannot change {', '.join(changed)}; "
                         f"only {', '.join(FLAGS[n] for n in RESUMABLE)} may be given (a new run: --init-from or --force)")
    if epochs is not None:
        config.epochs = epochs
    if batch_size is not None:
        config.batch_size = batch_size
    if device is not None:
        config.device = device
    if cuda_graph is not None:
        config.cuda_graph = cuda_graph
    config.validate()
    return config


def train(config: TrainConfig, out_dir: Path, *, resume: bool = False, force: bool = False, quiet: bool = False,
          stop_after: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Train a run into ``out_dir``; refuse to clobber an existing run unless asked.

    With ``resume`` the run continues from its last checkpoint; build ``config``
    with :func:`resume_config` so it matches what was trained so far.
    """
    run = RunFolder(out_dir)
    config.validate()
    exists = run.exists()
    if resume and not exists:
        raise UsageError(f"--resume: {out_dir} holds no checkpoint to resume")
    if exists and not resume and not force:
        raise UsageError(f"{out_dir} already holds a run: pass --resume to continue it, --force to replace it, or --out elsewhere")
    family = config.family()
    if family.closed_form:  # replaces an old run's density only once fitted
        data = load_training_data(config.selection(), quiet=quiet, log=log)
        return family.fit(config.resolved(data.image), run, data, log=log, quiet=quiet)
    if stop_after is not None and stop_after < 1:
        raise UsageError(f"--stop-after must be at least 1, got {stop_after}")
    trainer = Trainer(config, out_dir, quiet=quiet, log=log)
    trainer.replacing = exists and force
    return trainer.run(resume=resume, stop_after=stop_after)


def train_recipe(recipe: Recipe, *, quiet: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run a recipe's stages in order; a stage already done is skipped, one half done is resumed.

    So an interrupted chain picks up where it stopped when the same command runs again.
    """
    metrics: dict = {}
    for stage in recipe.stages:
        run, until = RunFolder(stage.out), stage.stop_after or stage.config.epochs
        done = run.read_metrics().get("epochs_done", 0) if run.exists() and run.has_metrics() else 0
        if done >= until:
            log(f"stage {run}: done ({done} epochs)")
            metrics = run.read_metrics()
            continue
        config = resume_config(run.path, stage.config.epochs, stage.config.batch_size, stage.config.device,
                               stage.config.cuda_graph) \
            if run.exists() else stage.config
        metrics = train(config, run.path, resume=run.exists(), quiet=quiet, stop_after=stage.stop_after, log=log)
    return metrics

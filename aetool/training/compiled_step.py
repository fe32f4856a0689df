"""The CPU training step compiled with ``torch.compile`` (inductor), with a clean fallback, and the
record of how fast the step ran.

Why compile: a step of the photo network is as much memory-bound elementwise work (BatchNorm, SiLU,
the residual adds, their backward passes, bf16 casts) as convolutions; inductor fuses those into a
few loops over memory, while the convolutions stay oneDNN's.  Why a fallback: inductor needs a C++
compiler and a supported Python, and a miscompiled step must not train: where compiling fails, or the
first compiled step's loss is not finite, the run goes on with the eager step and records why.  (A
first batch that the compiled step ran also updated BatchNorm's running statistics once before the
eager step runs it again.)  The compile time is spent in the first
step, so it is inside the first epoch's time and images/s, and recorded on its own as well.

A batch of another shape than the first (an epoch's ragged last batch) runs eagerly instead of
compiling a second graph, so the compile happens once per run.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (target x, input x_in) -> loss
TRAINING_FLOPS_PER_MAC = 6  # forward, and backward to the input and to the weights: 3 passes of 2 FLOPs per multiply-add


def should_compile(requested: bool, device: torch.device) -> bool:
    """``--compile`` on a CPU; never on a GPU, whose step is a CUDA graph (graph_step.py).  Off by
    default: the compile takes minutes on 2 cores, and the fused step was not faster enough to earn
    them back on the CPUs measured (benchmarks/train_speed.py)."""
    return requested and device.type == "cpu"


class CompiledStep:
    """``loss = step(x, x_in)``: forward and loss (backward is the caller's), compiled where it can be.

    ``compile=False`` runs ``forward`` as it is; the record then says "eager"."""

    def __init__(self, forward: Forward, *, compile: bool, log: Callable[[str], None] = print,
                 compiler: Callable[..., Forward] | None = None) -> None:
        self.forward, self.log = forward, log
        self.compile = compile
        self.compiler = compiler or torch.compile
        self.shape: torch.Size | None = None
        self.compiled: Forward | None = None
        self.failed: str | None = None  # why compiling failed; the run then goes on eagerly
        self.compile_seconds: float | None = None
        self.eager_steps = 0

    def __call__(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        if not self.compile or self.failed:
            return self._eager(x, x_in)
        if self.shape is None:
            self.shape = x.shape
        if x.shape != self.shape:
            return self._eager(x, x_in)
        if self.compiled is None:
            return self._first(x, x_in)
        return self.compiled(x, x_in)

    def _eager(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        self.eager_steps += 1
        return self.forward(x, x_in)

    def _first(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """Compile on the first batch, timing it; any failure falls back to the eager step."""
        t0 = time.perf_counter()
        try:
            compiled = self.compiler(self.forward, dynamic=False)
            loss = compiled(x, x_in)
            if not bool(torch.isfinite(loss.detach())):  # a miscompiled step, not a diverged run: it is the first
                raise FloatingPointError("the compiled step's first loss is not finite")
        except Exception as e:  # noqa: BLE001 - inductor and dynamo raise many types (no compiler, unsupported op)
            self.failed = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            self.log(f"note: compiling the training step failed ({self.failed}); training goes on with eager steps")
            torch._dynamo.reset()
            return self._eager(x, x_in)
        self.compile_seconds = time.perf_counter() - t0
        self.compiled = compiled
        return loss

    @property
    def kind(self) -> str:
        """How the step ran, for the record: "compiled", "eager", or "eager (compile failed: ...)"."""
        if self.failed:
            return f"eager (compile failed: {self.failed})"
        return "compiled" if self.compiled is not None else "eager"


def speed_record(kind: str, precision: str, channels_last: bool, step: str, compile_seconds: float | None,
                 macs_per_image: int | None, images_per_s: float | None) -> dict[str, Any]:
    """What metrics.json's ``speed`` holds: the CPU kind, the choices made for it, and what they gave.

    ``gflop_per_s``: the training step's arithmetic, 6 FLOPs per forward multiply-add (forward, and
    the two halves of backward), per second; None where either count is unknown."""
    gflops = None if not macs_per_image or not images_per_s else TRAINING_FLOPS_PER_MAC * macs_per_image * images_per_s / 1e9
    return {"cpu": kind, "precision": precision, "memory_format": "channels_last" if channels_last else "contiguous",
            "step": step, "compile_seconds": compile_seconds, "macs_per_image": macs_per_image,
            "images_per_s": images_per_s, "gflop_per_s": gflops}

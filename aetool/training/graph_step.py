"""The training step replayed as one CUDA graph.

At the lecture's batch of 100 a GPU training step is a few hundred small kernels, and launching
them one by one from Python keeps the GPU waiting for the host.  Captured once in a CUDA graph, the
whole step (forward, loss, backward, Adam) is relaunched by one call, so the GPU, not Python, sets
the pace.  PyTorch's "whole-network capture" recipe, and what it asks of the step:

* fixed shapes and addresses: each batch is copied into static input tensors.  The first batch sets
  the size; a batch of another size (an epoch's ragged last one) runs eagerly instead;
* no host reads inside the step: Adam runs with ``capturable=True`` and a learning rate held in a
  device tensor that the trainer changes in place (``Trainer.set_lr``), and autocast keeps no cache;
* a few eager steps first, on a side stream, so cuDNN has chosen its algorithms and Adam has
  created its state before capture;
* the gradients are allocated by the captured backward (they are None at capture), so a replay
  writes them afresh and nothing resets them between replays.

The parameters and Adam's state must keep their storage once captured: nothing may swap a
parameter's ``.data`` (a change of memory format would) or load an optimizer state after capture.

``GraphStep(..., capture=False)`` goes through exactly the same warm-up, static buffers and
ragged-batch path but re-runs the step's Python instead of replaying a graph; that is how the
tests check, on a CPU, everything here but the capture itself.
"""

from __future__ import annotations

from typing import Callable

import torch

Update = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (target x, input x_in) -> loss, grads reset


class GraphStep:
    """Call it like the eager step: ``loss = step(x, x_in)``.  The returned loss is a static tensor
    that the next call overwrites, so add or read it before then (on the same stream it is safe)."""

    WARMUP = 3  # eager steps before capture (PyTorch's recipe uses 3; DDP would need 11)

    def __init__(self, update: Update, zero_grad: Callable[[], None], *, capture: bool,
                 log: Callable[[str], None] = print) -> None:
        self.update, self.zero_grad, self.capture, self.log = update, zero_grad, capture, log
        self.shape: torch.Size | None = None
        self.aliased = True  # x_in is x (no denoising): one static buffer serves both
        self.warm = 0
        self.replays = 0
        self.eager_steps = 0
        self.failed: str | None = None  # why capture failed; the run then goes on eagerly
        self._replay: Callable[[], None] | None = None
        self._x = self._x_in = self._loss = None

    @property
    def captured(self) -> bool:
        return self._replay is not None

    def __call__(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            self.shape, self.aliased = x.shape, x_in is x
        if self.failed or x.shape != self.shape or (x_in is x) != self.aliased:
            return self._eager(x, x_in)
        if self._replay is None:
            if self.warm < self.WARMUP:
                self.warm += 1
                return self._warmup(x, x_in)
            self._record(x, x_in)
            if self._replay is None:  # capture failed
                return self._eager(x, x_in)
        else:
            self._x.copy_(x)
            if not self.aliased:
                self._x_in.copy_(x_in)
        self._replay()
        self.replays += 1
        return self._loss

    # ---- the three ways a step runs --------------------------------------
    def _eager(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        self.eager_steps += 1
        self.zero_grad()
        return self.update(x, x_in)

    def _warmup(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        if not (self.capture and x.is_cuda):
            return self._eager(x, x_in)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loss = self._eager(x, x_in)
        torch.cuda.current_stream().wait_stream(side)
        return loss

    def _record(self, x: torch.Tensor, x_in: torch.Tensor) -> None:
        """Make the static buffers from this batch and capture the step on them (it has not run yet)."""
        self._x = x.clone()
        self._x_in = self._x if self.aliased else x_in.clone()
        self.zero_grad()  # grads None: the captured backward allocates them in the graph's pool
        if not self.capture:
            self._loss = torch.zeros((), device=x.device)

            def rerun() -> None:
                self.zero_grad()
                self._loss.copy_(self.update(self._x, self._x_in))

            self._replay = rerun
            return
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._loss = self.update(self._x, self._x_in)
        except RuntimeError as e:  # an op that cannot be captured on this GPU, or a build without graphs
            self.failed = str(e).splitlines()[0][:200]
            self.log(f"note: CUDA graph capture failed ({self.failed}); training goes on with eager steps")
            self._x = self._x_in = self._loss = None
            self.zero_grad()
            return
        self._graph = graph
        self._replay = graph.replay

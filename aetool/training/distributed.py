"""Training on several processes with ``torchrun``: PyTorch's DistributedDataParallel, not an engine of our own.

``torchrun --nproc-per-node N -m aetool train ...`` starts N copies of the command;
each finds its rank in the environment torchrun sets.  Every rank builds the same
model from the same seed and walks the same seeded order of the training images;
each global batch is split between the ranks, and DDP averages their gradients,
which for the lecture's loss (a mean over the batch) is the gradient of the whole
batch.  Rank 0 alone writes the checkpoint, the metrics and the density and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import AetoolError

PEER_STOPPED = ("another process of this torchrun stopped (its error is above, from rank 0 or the first to fail); "
                "this one stops too")


def _collective(call, *args, **kwargs):
    """A collective call whose failure because another rank has gone (the usual cause: it stopped on
    an error of its own, already printed) is one line here too, not gloo's or NCCL's traceback."""
    try:
        return call(*args, **kwargs)
    except RuntimeError as e:  # torch.distributed.DistBackendError and gloo's errors are RuntimeErrors
        raise AetoolError(f"rank {dist.get_rank() if dist.is_initialized() else '?'}: {PEER_STOPPED} "
                          f"({' '.join(str(e).split())[:120]})") from None


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            _collective(dist.barrier)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over ranks (in place), e.g. of the training loss each rank saw."""
        if self.world > 1:
            _collective(dist.all_reduce, value, op=dist.ReduceOp.SUM)
        return value

    def my_part(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch of indices (equal sizes but for a ragged last batch)."""
        return batch if self.world == 1 else torch.tensor_split(batch, self.world)[self.rank]

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model that the training step calls: DDP over the ranks, or the model itself alone."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def setup(device: torch.device) -> tuple[Ranks, torch.device]:
    """The ranks of this process (one, without torchrun) and the device it trains on (its own GPU under torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def launched_rank() -> int:
    """This process's rank under torchrun (0 without it), before any process group exists."""
    return int(os.environ.get("RANK", "0"))

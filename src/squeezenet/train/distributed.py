"""torchrun helpers: which process this is, and the few collective operations the loop needs.

Launched by torchrun (WORLD_SIZE > 1), each process trains on its slice of every batch with
DistributedDataParallel (gloo on CPU, NCCL on CUDA); process 0 logs and writes the run folder. Alone, every
helper here is a no-op, so the loop reads the same either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import TrainingError


@dataclass(frozen=True)
class Processes:
    """This process's place among the torchrun-launched ones (rank 0 of 1 when run alone)."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device_name: str) -> Processes:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda: no CUDA device is available")
        device = torch.device("cuda", local_rank if world > 1 else torch.device(device_name).index or 0)
        torch.cuda.set_device(device)
    elif device_name == "cpu":
        device = torch.device("cpu")
    else:
        raise TrainingError(f"--device must be auto, cpu, cuda or cuda:N, got {device_name!r}")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world, device)


def all_sum(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    if processes.world > 1:
        dist.all_reduce(values)
    return values


def barrier(processes: Processes) -> None:
    if processes.world > 1:
        dist.barrier()


def share_buffers(model: nn.Module, processes: Processes) -> None:
    """Give every process process 0's batch-norm statistics. DDP copies them out at the start of each forward
    pass, but each process's own last batch then moved its copy; process 0's are the ones saved, so they are
    the ones to score."""
    if processes.world > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def gather(value: Any, processes: Processes) -> list[Any]:
    if processes.world == 1:
        return [value]
    gathered: list[Any] = [None] * processes.world
    dist.all_gather_object(gathered, value)
    return gathered




def wrap(model: nn.Module, processes: Processes) -> nn.Module:
    """The network the steps run: the model itself alone, DistributedDataParallel across processes."""
    if processes.world == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[processes.device.index]
                                               if processes.device.type == "cuda" else None)


def stop(processes: Processes) -> None:
    if processes.world > 1 and dist.is_initialized():
        dist.destroy_process_group()

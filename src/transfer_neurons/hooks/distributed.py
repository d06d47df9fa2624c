"""Data-parallel runs under torch.distributed (launched with torchrun): shard inputs, sum accumulators.

Every analysis that streams over sentences works the same way: each rank processes its
`shard(items)`, adds into its accumulators (sums, counts, sums of squares) and `all_reduce_sum`
gives every rank the totals. Without an initialised process group both are identities, so the
single-process code path is the same code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the rank that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of `items`: every world_size-th item from position rank (balanced lengths)."""
    return list(items[rank() :: world_size()])


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all ranks, on `tensor`'s device (may be `tensor` itself, updated in place)."""
    if world_size() == 1:
        return tensor
    nccl = dist.get_backend() == "nccl"
    buffer = tensor.to(torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu"))
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(tensor.device)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device(device: str) -> str:
    """Under torchrun, `auto`/`cuda` become this process's GPU `cuda:LOCAL_RANK`; anything else is kept."""
    if launched_by_torchrun() and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def init_from_env(device: str) -> bool:
    """Join the process group torchrun describes in the environment (nccl for CUDA, else gloo).

    Returns whether this run is distributed; a no-op outside torchrun or when already initialised.
    """
    if not launched_by_torchrun() or is_distributed():
        return is_distributed()
    resolved = local_device(device)
    cuda = resolved.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(torch.device(resolved).index or 0)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()

"""Which process this is, and the few collectives the trainer needs.

`torchrun` tells each process its place through `RANK`, `WORLD_SIZE` and `LOCAL_RANK`; this module (with
config.py, the only reader of os.environ) turns them into a `DistEnv` once, starts the process group
(NCCL on GPUs, gloo on CPU so a 2-process run can be tested anywhere) and offers collectives that are
no-ops in a single process, so the rest of the program has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from record.config import MICRO_BATCHES_PER_STEP
from record.errors import RecordError


@dataclass(frozen=True, slots=True)
class DistEnv:
    """This process's place in the job; `world_size == 1` means no process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs and files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def grad_accum_steps(self) -> int:
        """Micro-batches per optimizer step, so every world size sees the same 8 per step."""
        return MICRO_BATCHES_PER_STEP // self.world_size


def _dist_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise RecordError(name, f"expected an integer, got {raw!r}", "torchrun sets it; unset it otherwise") from None


def read_dist_env(env: Mapping[str, str] | None = None, use_cuda: bool | None = None) -> DistEnv:
    """The rank, world size and device torchrun (or nothing) asked for, validated, without side effects."""
    env = os.environ if env is None else env
    world_size = _dist_int(env, "WORLD_SIZE", 1) if "RANK" in env else 1
    rank = _dist_int(env, "RANK", 0) if world_size > 1 else 0
    local_rank = _dist_int(env, "LOCAL_RANK", rank) if world_size > 1 else 0
    if world_size < 1 or MICRO_BATCHES_PER_STEP % world_size:
        raise RecordError(
            "WORLD_SIZE",
            f"{world_size} processes cannot split {MICRO_BATCHES_PER_STEP} micro-batches evenly",
            "use 1, 2, 4 or 8",
        )
    if not 0 <= rank < world_size:
        raise RecordError("RANK", f"rank {rank} is outside 0..{world_size - 1}", "launch through torchrun")
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    if use_cuda and world_size > 1 and local_rank >= torch.cuda.device_count():
        raise RecordError(
            "LOCAL_RANK",
            f"process {local_rank} has no GPU ({torch.cuda.device_count()} visible)",
            "set --nproc_per_node to at most the GPU count",
        )
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def init_distributed(env: Mapping[str, str] | None = None, use_cuda: bool | None = None) -> DistEnv:
    """Read the place of this process and start the process group when there are several."""
    place = read_dist_env(env, use_cuda)
    if place.device.type == "cuda":
        torch.cuda.set_device(place.device)
    if place.distributed and not torch_dist.is_initialized():
        backend = "nccl" if place.device.type == "cuda" else "gloo"
        device_id = place.device if place.device.type == "cuda" else None
        torch_dist.init_process_group(
            backend=backend, rank=place.rank, world_size=place.world_size, device_id=device_id
        )
        torch_dist.barrier()
    return place


def shutdown_distributed(*, wait_for_peers: bool = False) -> None:
    """Tear the process group down so torchrun sees a clean exit. After a run that ended well, pass
    `wait_for_peers`: all ranks meet first, since a rank that destroys its group while another still
    talks to it can abort in gloo's threads at exit. After a failure, never wait (the peers may be
    stuck in a collective; torchrun stops them once this rank exits)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        if wait_for_peers and torch_dist.get_world_size() > 1:
            torch_dist.barrier()
        torch_dist.destroy_process_group()


def is_dist_active() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place (unchanged in a single process)."""
    if is_dist_active():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def all_reduce_avg_(tensor: torch.Tensor) -> torch.Tensor:
    """Average `tensor` over ranks in place (unchanged in a single process)."""
    if is_dist_active():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.AVG)
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on some rank: every rank must stop training at the same step."""
    if not is_dist_active():
        return flag
    value = torch.tensor(int(flag), device=device)
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if is_dist_active():
        torch_dist.barrier()

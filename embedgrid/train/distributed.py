"""Multi-process data parallel: process-group setup (torchrun / SLURM tasks), gather with gradient, grad all-reduce.

Every rank embeds its slice of the global batch; embeddings are all-gathered *with* gradient so each query is
scored against the whole global batch (every rank's positives and hard negatives), and the trainable gradients
(LoRA + pooling head, a few MB) are averaged with one all-reduce of a flat buffer after backward. A manual
all-reduce instead of DDP works unchanged with GradCache's per-chunk backward passes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from embedgrid.errors import RankFailed, RankZeroFailed

log = logging.getLogger(__name__)

# Rank 0 alone evaluates a cell (hours for the paper suite on a 7B model) while the other ranks wait for its
# outcome; the default collective timeout (10-30 min) would kill them, so cell-level hand-offs use their own group.
CONTROL_TIMEOUT = timedelta(hours=72)
_control_group = None


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.size > 1


def current_world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(backend: str | None = None) -> World:
    """Join the process group described by the environment, if any; a single process returns ``World()``.

    torchrun sets RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT; under ``srun`` with several SLURM tasks the same
    variables are exported from SLURM's by submitit's ``TorchDistributedEnvironment``.
    """
    if dist.is_initialized():
        return current_world()
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    world = current_world()
    log.info("data parallel: rank %d of %d (%s)", world.rank, world.size, backend)
    return world


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice (all_reduce: any backend)."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.contiguous()
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) over ranks in rank order, keeping the autograd graph."""
    return _GatherWithGrad.apply(tensor) if world.enabled else tensor


def average_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Average ``.grad`` over ranks with one all-reduce (parameters without a grad count as zero)."""
    if not world.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def _scalar(value, dtype) -> torch.Tensor:
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    return torch.tensor([value], dtype=dtype, device=device)


def all_sum(value: float, world: World) -> float:
    if not world.enabled:
        return value
    t = _scalar(value, torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def all_mean(value: float, world: World) -> float:
    return all_sum(value, world) / world.size


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank if it is true on any rank (so all ranks stop at the same step)."""
    if not world.enabled:
        return flag
    t = _scalar(int(flag), torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def broadcast_parameters(params: list[torch.nn.Parameter], world: World) -> None:
    """Give every rank rank 0's values (as DDP does at start), so ranks never train from different inits."""
    if not world.enabled:
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def _control():
    global _control_group
    if _control_group is None:  # collective: every rank reaches its first run_on_main at the same point
        _control_group = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return _control_group


def all_gather_objects(value, world: World) -> list:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank; over the control group, whose
    timeout allows one rank's share of a long evaluation to finish before the others'."""
    if not world.enabled:
        return [value]
    gathered = [None] * world.size
    dist.all_gather_object(gathered, value, group=_control())
    return gathered


def gather_from_all(work, world: World, what: str = "work") -> list:
    """Run ``work()`` on every rank and return every rank's result, in rank order, on every rank (over the
    control group, as ``all_gather_objects``).

    The outcome travels with the result, in the same gather: if ``work()`` raises on any rank, that rank
    re-raises its error and every other rank raises ``RankFailed`` naming the failed rank(s) and their errors,
    as soon as every rank has finished its own share, instead of waiting in a later collective that the failed
    rank never joins.
    """
    if not world.enabled:
        return [work()]
    failure = None
    try:
        message = ("ok", work())
    except BaseException as error:
        failure, message = error, ("error", f"{type(error).__name__}: {error}")
    gathered = all_gather_objects(message, world)
    failed = [(rank, value) for rank, (kind, value) in enumerate(gathered) if kind == "error"]
    if failure is not None:
        raise failure
    if failed:
        named = "; ".join(f"rank {rank}: {value}" for rank, value in failed)
        raise RankFailed(f"{what} failed on {'rank' if len(failed) == 1 else 'ranks'} "
                         f"{', '.join(str(rank) for rank, _ in failed)} of {world.size} ({named})")
    return [value for _, value in gathered]


def broadcast_from_main(value, world: World):
    """Rank 0's ``value`` on every rank (the others pass anything)."""
    if not world.enabled:
        return value
    message = [value]
    dist.broadcast_object_list(message, src=0, group=_control())
    return message[0]


def run_on_main(work, world: World):
    """Run ``work()`` on rank 0 only and return its result on every rank.

    If it raises, rank 0 re-raises the error and every other rank raises ``RankZeroFailed`` naming it, so no
    rank is left waiting in a collective that rank 0 will never join.
    """
    if not world.enabled:
        return work()
    message = [None]
    if world.is_main:
        try:
            message = [("ok", work())]
        except BaseException as error:
            dist.broadcast_object_list([("error", f"{type(error).__name__}: {error}")], src=0, group=_control())
            raise
    dist.broadcast_object_list(message, src=0, group=_control())
    kind, value = message[0]
    if kind == "error":
        raise RankZeroFailed(f"rank 0 failed: {value}")
    return value

"""DDP set-up from torchrun's environment: NCCL on GPUs, gloo on the CPU; rank 0 writes files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from dait_edge.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: bool = False  # a process group exists (torchrun started this process, even as its only one)

    @property
    def enabled(self) -> bool:
        return self.group or self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (its RANK / LOCAL_RANK / MASTER_ADDR, even for one
    process, so that a 1-process torchrun run takes the same DDP path as many); a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    launched = all(name in os.environ for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR"))
    if not launched and world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, group=True)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each process drives its own GPU (cuda:LOCAL_RANK)."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def check_stop_together(where: str, saved: str, info: DistInfo, device: torch.device) -> None:
    """`check_stop` on every rank at once: a signal any rank received stops them all here (one rank
    stopping alone would leave the others waiting in their next collective)."""
    from dait_edge.utils.signals import check_stop, stop_requested

    requested = all_reduce_sum([float(stop_requested())], info, device)[0] > 0
    check_stop(where, saved, elsewhere=requested)


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank.

    DDP syncs buffers at the start of each forward only, so after an epoch each rank holds the
    statistics of its own last batch; this makes every rank hold the ones rank 0 saves.
    """
    if not info.enabled:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def broadcast_object(obj, info: DistInfo):
    """Rank 0's value of `obj` on every rank (e.g. a run directory decided on rank 0)."""
    if not info.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_object(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def on_main(info: DistInfo, fn):
    """Run `fn` on rank 0 only; every rank returns its result, or raises the error it raised.

    Without this a rank-0 failure before a barrier (a run folder that exists, an unwritable cache) left the
    other ranks waiting there until torchrun killed them, with no message of their own."""
    if not info.enabled:
        return fn()
    result, error, message = None, None, None
    if info.is_main:
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 - re-raised on every rank below
            error = err
            # what the other ranks raise: a UserError keeps its one line, anything else becomes one
            message = (
                err
                if isinstance(err, UserError)
                else UserError(f"rank 0 failed: {type(err).__name__}: {err}")
            )
    result, message = broadcast_object((result, message), info)
    if error is not None:
        raise error  # rank 0: its own exception, traceback included
    if message is not None:
        raise message
    return result


def shutdown(info: DistInfo) -> None:
    """Leave the process group (torchrun warns about, and may hang on, groups left open at exit)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(method, device: torch.device, sync_bn: bool) -> DistributedDataParallel:
    """`method` (a `methods.Distiller`) in DDP over its trainable modules only: the frozen VLM and teacher
    are neither broadcast at start nor hooked for gradients (a 1.2 B-parameter VLM would otherwise be sent
    to every rank)."""
    if sync_bn:
        if device.type != "cuda":
            raise UserError("--sync-bn needs CUDA devices (NCCL); drop it on the CPU.", setting="sync_bn")
        method.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method.student)
    frozen = {id(t) for module in method.frozen_modules() for t in (*module.parameters(), *module.buffers())}
    ignored = [name for name, t in (*method.named_parameters(), *method.named_buffers()) if id(t) in frozen]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(method, ignored)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(method, device_ids=device_ids)

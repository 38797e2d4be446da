"""Process-group setup for ``torchrun``: gloo on CPU, NCCL on CUDA; one process without it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(*, device: str | torch.device | None = "auto") -> DistContext:
    """Initialise from the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Without those variables this is a plain single-process run. ``device`` is a ``--device``
    value (``auto``, ``cpu``, ``cuda``, ``cuda:N``); under torchrun with CUDA each process takes
    the GPU of its ``LOCAL_RANK``.
    """
    from medmoe.utils.device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        if world > 1:
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)


def wrap_model(
    model: nn.Module, ctx: DistContext, *, find_unused_parameters: bool = False
) -> nn.Module:
    """Move to the context's device and wrap in DDP when the run has several processes.

    ``find_unused_parameters`` is needed when routing skips some experts in a step.
    """
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=find_unused_parameters
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside a DDP wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_grads(module: nn.Module, ctx: DistContext) -> None:
    """Average, in place, the gradient of every trainable parameter over all processes (a
    parameter without a gradient on some rank counts as a zero gradient there). A parameter
    that no rank gave a gradient (an expert nobody's routing chose) ends with ``grad = None``
    on every rank, so the optimizer skips it, weight decay and momentum included, exactly as a
    single process does."""
    if not ctx.distributed:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    used = [p.grad is not None for p in params]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flags = torch.tensor(used, dtype=params[0].grad.dtype, device=params[0].grad.device)
    flat = torch.cat([p.grad.reshape(-1) for p in params] + [flags])  # one all_reduce for both
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for p, anyone in zip(params, flat[-len(params) :].tolist(), strict=True):
        n = p.numel()
        if anyone > 0:
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        else:
            p.grad = None
        offset += n


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step each rank holds
    statistics updated by its own last batch; this makes the ranks identical at epoch ends."""
    if ctx.distributed:
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def dump_rank_weights(module: nn.Module, out_dir, name: str, ctx: DistContext) -> None:
    """With ``MEDMOE_DUMP_RANK_WEIGHTS=1`` set, every rank writes ``<name>_rank<r>.safetensors``:
    the DDP tests compare them to prove that the ranks stayed in step."""
    if not os.environ.get("MEDMOE_DUMP_RANK_WEIGHTS"):
        return
    from pathlib import Path

    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(Path(out_dir) / f"{name}_rank{ctx.rank}.safetensors"))

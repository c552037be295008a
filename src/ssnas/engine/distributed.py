"""Multi-process training through ``torchrun``: process group, DDP, synchronized BatchNorm, reductions.

Under DDP only the weights are all-reduced by DDP itself; α and β are excluded from it and their gradients
are averaged explicitly in the architecture step, so the alternating updates of §3.2 stay exactly those
of one process with the whole batch and α, β stay identical on every rank. BatchNorm statistics are
synchronized: ``nn.SyncBatchNorm`` on CUDA; on CPU (gloo), where it refuses to run, :class:`GlobalBatchNorm2d`
all-reduces the per-channel sums with the autograd-aware ``torch.distributed.nn.functional.all_reduce``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ssnas.errors import UserError


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(spec: str, local_rank: int = 0, key: str = "run.device") -> torch.device:
    """The device ``spec`` names; a mistake is one line naming ``key`` (the config key or a command's flag)."""
    if spec == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"{key}: {spec!r}, expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key}: {spec!r} but CUDA is not available here, expected cpu or auto")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init(device_spec: str = "auto") -> Context:
    """Join the process group that torchrun describes in the environment (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_spec, local_rank)
    ctx = Context(rank, world, local_rank, device)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        ctx.initialized_here = True
    return ctx


def cleanup(ctx: Context | None) -> None:
    if ctx is not None and ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_flag(flag: bool, ctx: Context) -> bool:
    """Rank 0's boolean on every rank."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([int(flag)], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return bool(t.item())


def any_rank(flag: bool, ctx: Context) -> bool:
    """True on every rank when it is True on any (e.g. a signal that reached only some processes)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([int(flag)], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_scalar(value: float, ctx: Context) -> float:
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / ctx.world


def world_size() -> int:
    """Processes in the running group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """A detached copy of ``t`` summed over all processes (``t`` itself when running alone)."""
    if world_size() == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


def average_gradients(grads: list, ctx: Context) -> list:
    if not ctx.distributed:
        return grads
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world
    out, i = [], 0
    for g in grads:
        out.append(flat[i:i + g.numel()].view_as(g))
        i += g.numel()
    return out


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span all processes (SyncBN that also runs on CPU/gloo)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])
        stats = all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=m)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_batchnorm(model: nn.Module, ctx: Context) -> nn.Module:
    """Synchronized BatchNorm when running on several processes."""
    if not ctx.distributed:
        return model
    if ctx.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _swap_bn(model)


def _swap_bn(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            _swap_bn(child)
    return module


def wrap_ddp(model: nn.Module, ctx: Context) -> nn.Module:
    """DDP over the weights only (α, β are reduced by the architecture step)."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    arch = {id(p) for p in model.arch_parameters()}
    ignore = [n for n, p in model.named_parameters() if id(p) in arch]
    # DDP's reducer spells a root-level parameter ".alpha" (f"{module_name}.{name}" with module_name ""),
    # its parameter list "alpha": give both, or α, β stay in the reducer and the 2nd weight step fails.
    ignore += ["." + n for n in ignore if "." not in n]
    DDP._set_params_and_buffers_to_ignore_for_model(model, ignore)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DDP(model, device_ids=ids, broadcast_buffers=False)

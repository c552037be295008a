"""Folding for deployment: eval-mode BatchNorm into the preceding convolution, exactly.

    BN(conv(x)) = s·(W x) + (β − s·μ),   s = γ / √(σ² + ε)   (γ = 1, β = 0 without affine)

Folding runs in float64 (``FOLD_DTYPE``) and the result is stored in the source weights' dtype, so a fused
network reproduces its supernet to float rounding. Blocks use these helpers in their ``fuse()``.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

FOLD_DTYPE = torch.float64


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as y = s·x + t (running statistics, whatever ``bn.training`` is)."""
    var, mean = bn.running_var.to(FOLD_DTYPE), bn.running_mean.to(FOLD_DTYPE)
    gamma = bn.weight.to(FOLD_DTYPE) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.to(FOLD_DTYPE) if bn.bias is not None else torch.zeros_like(var)
    s = gamma / torch.sqrt(var + bn.eps)
    return s, beta - s * mean


def fold_bn(weight: Tensor, bn: nn.BatchNorm2d, scale: float | Tensor = 1.0,
            bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``scale · BN(conv(x))`` of a conv with ``weight`` (and ``bias``) as one conv: (weight, bias) in float64."""
    s, t = bn_scale_shift(bn)
    scale = torch.as_tensor(scale, dtype=FOLD_DTYPE)
    if bias is not None:
        t = t + s * bias.to(FOLD_DTYPE)
    return weight.to(FOLD_DTYPE) * (s * scale).view(-1, *([1] * (weight.dim() - 1))), t * scale


def conv_like(conv: nn.Conv2d, weight: Tensor, bias: Tensor, in_channels: int | None = None) -> nn.Conv2d:
    """A biased copy of ``conv``'s geometry (stride, padding, dilation, groups) holding ``weight``, ``bias``, in
    ``conv``'s dtype and device."""
    ref = conv.weight
    out = nn.Conv2d(in_channels or conv.in_channels, weight.shape[0], conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True, device=ref.device, dtype=ref.dtype)
    set_conv(out, weight, bias)
    return out


def set_conv(conv: nn.Conv2d, weight: Tensor, bias: Tensor) -> None:
    """Copy folded values into an existing conv (cast to its dtype)."""
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)


def copy_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A conv with the same geometry and values (nothing to fold: SE convs, a classifier)."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, bias=conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
    out.load_state_dict(conv.state_dict())
    return out


def permute_inputs(weight: Tensor, perm: Tensor) -> Tensor:
    """The weight of a conv reading its input in unpermuted channel order, where ``weight`` reads
    ``input[:, perm]``: W'[:, p[c]] = W[:, c] (a channel shuffle folded into its consumer)."""
    out = torch.empty_like(weight)
    out[:, perm] = weight
    return out


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, scale: float | Tensor = 1.0) -> nn.Conv2d:
    """One biased conv equal to ``scale · bn(conv(x))`` in eval mode."""
    return conv_like(conv, *fold_bn(conv.weight, bn, scale, conv.bias))


def bn_as_conv(bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Eval-mode BN alone (after a pooling) as a per-channel 1×1 depthwise conv."""
    s, t = bn_scale_shift(bn)
    c = s.numel()
    ref = bn.running_mean
    out = nn.Conv2d(c, c, 1, groups=c, bias=True, device=ref.device, dtype=ref.dtype)
    set_conv(out, s.view(c, 1, 1, 1), t)
    return out


def fuse_module(module: nn.Module) -> nn.Module:
    """``module.fuse()`` where the module folds itself; a Sequential folds child by child; anything else
    without state to fold (ReLU, pooling, Identity) is copied."""
    fuse = getattr(module, "fuse", None)
    if callable(fuse):
        return fuse()
    if isinstance(module, nn.Sequential):
        return fuse_sequential(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return bn_as_conv(module)
    return copy.deepcopy(module)


def fuse_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Fold every conv → BN pair of a Sequential into one conv, and every other child with :func:`fuse_module`."""
    children = list(seq)
    out, i = [], 0
    while i < len(children):
        child = children[i]
        nxt = children[i + 1] if i + 1 < len(children) else None
        if isinstance(child, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            out.append(fuse_conv_bn(child, nxt))
            i += 2
            continue
        out.append(fuse_module(child))
        i += 1
    return nn.Sequential(*out)

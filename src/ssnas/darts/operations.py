"""The candidate operations of DARTS's cell search space, plus RobustDARTS's ``noise`` op.

All BatchNorms are ``affine=False`` as in DARTS's search phase: a learnable scale after each op would let the
op rescale itself and blur what α measures. Every builder has the signature ``(C, stride) -> nn.Module`` and
maps ``(B, C, H, W)`` to ``(B, C, ceil(H / stride), ceil(W / stride))`` for even H, W.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

POOL_KERNEL = 3
NOISE_MEAN = 0.0
NOISE_STD = 1.0


class ReLUConvBN(nn.Sequential):
    """ReLU → conv → BN, DARTS's basic block (also the cell's 1×1 preprocessing)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = False):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU → depthwise (dilated) k×k conv → pointwise 1×1 conv → BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool = False):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C_in,
                      bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked separable convolutions (the first one strided), as DARTS's ``sep_conv_kxk``."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = False):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, dilation=1, affine=affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, dilation=1, affine=affine),
        )


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like the (strided) output, so the edge can be switched off."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset strided 1×1 convs (concatenated), DARTS's strided skip."""

    def __init__(self, C_in: int, C_out: int, affine: bool = False):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class NoiseOp(nn.Module):
    """RobustDARTS's ``noise`` op (space S4): fresh N(0, 1) samples shaped like the output, no input gradient.

    It is parameter-free and detached from its input, so α can only learn to *avoid* it; the samples come from
    torch's default generator, hence are reproducible under ``torch.manual_seed``.
    """

    def __init__(self, stride: int, mean: float = NOISE_MEAN, std: float = NOISE_STD):
        super().__init__()
        self.stride, self.mean, self.std = stride, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x[:, :, ::self.stride, ::self.stride].shape
        return torch.randn(shape, dtype=x.dtype, device=x.device) * self.std + self.mean


def _pool(pool: nn.Module, C: int) -> nn.Module:
    """Pooling followed by a non-affine BN, as in DARTS's search network (pooling outputs are not normalised)."""
    return nn.Sequential(pool, nn.BatchNorm2d(C, affine=False))


OPS: Dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda C, stride: Zero(stride),
    "noise": lambda C, stride: NoiseOp(stride),
    "max_pool_3x3": lambda C, stride: _pool(nn.MaxPool2d(POOL_KERNEL, stride=stride, padding=1), C),
    "avg_pool_3x3": lambda C, stride: _pool(
        nn.AvgPool2d(POOL_KERNEL, stride=stride, padding=1, count_include_pad=False), C),
    "skip_connect": lambda C, stride: Identity() if stride == 1 else FactorizedReduce(C, C),
    "sep_conv_3x3": lambda C, stride: SepConv(C, C, 3, stride, 1),
    "sep_conv_5x5": lambda C, stride: SepConv(C, C, 5, stride, 2),
    "dil_conv_3x3": lambda C, stride: DilConv(C, C, 3, stride, 2, dilation=2),
    "dil_conv_5x5": lambda C, stride: DilConv(C, C, 5, stride, 4, dilation=2),
}


def build_operation(name: str, C: int, stride: int) -> nn.Module:
    """Instantiate the op ``name`` on ``C`` channels with ``stride`` (1 or 2)."""
    if name not in OPS:
        raise KeyError(f"unknown DARTS operation {name!r}, expected one of {sorted(OPS)}")
    return OPS[name](C, stride)

"""The candidate operations of DARTS's cell search space, plus RobustDARTS's ``noise`` op (registered in ``OPS``).

All BatchNorms are ``affine=False`` by default as in DARTS's search phase: a learnable scale after each op would
let the op rescale itself and blur what α measures (``affine=True`` for spaces that want it). Every builder has
the signature ``(C, stride, affine=False) -> nn.Module`` and maps ``(B, C, H, W)`` to
``(B, C, ceil(H / stride), ceil(W / stride))`` for even H, W. Each op folds itself for export (``fuse()``).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ssnas.ops import register_op
from ssnas.ops.fold import fuse_conv_bn, fuse_sequential

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

    def fuse(self) -> nn.Sequential:
        """ReLU → conv with the BN folded in."""
        return fuse_sequential(self)


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

    def fuse(self) -> nn.Sequential:
        """ReLU → depthwise conv → pointwise conv with the BN folded in."""
        return fuse_sequential(self)


class SepConv(nn.Sequential):
    """Two stacked separable convolutions (the first one strided), as DARTS's ``sep_conv_kxk``."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = False):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, dilation=1, affine=affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, dilation=1, affine=affine),
        )

    def fuse(self) -> nn.Sequential:
        return fuse_sequential(self)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def fuse(self) -> nn.Module:
        return Identity()


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like the (strided) output, so the edge can be switched off."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)

    def fuse(self) -> nn.Module:
        return Zero(self.stride)


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

    def fuse(self) -> nn.Module:
        """The two halves' convs with their halves of the BN folded in."""
        return FusedFactorizedReduce(self)


class FusedFactorizedReduce(nn.Module):
    """:class:`FactorizedReduce` in eval mode, BN folded: relu → two offset strided biased 1×1 convs."""

    def __init__(self, src: FactorizedReduce):
        super().__init__()
        half = src.conv_1.out_channels
        bn1, bn2 = (_bn_slice(src.bn, slice(0, half)), _bn_slice(src.bn, slice(half, 2 * half)))
        self.conv_1, self.conv_2 = fuse_conv_bn(src.conv_1, bn1), fuse_conv_bn(src.conv_2, bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        return torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1)


def _bn_slice(bn: nn.BatchNorm2d, idx: slice) -> nn.BatchNorm2d:
    """The channels ``idx`` of an eval-mode BN, as a BN of their own (running statistics and affine)."""
    part = copy.deepcopy(bn)
    part.num_features = idx.stop - idx.start
    with torch.no_grad():
        part.running_mean = bn.running_mean[idx].clone()
        part.running_var = bn.running_var[idx].clone()
        if bn.affine:
            part.weight = nn.Parameter(bn.weight[idx].clone())
            part.bias = nn.Parameter(bn.bias[idx].clone())
    return part


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

    def fuse(self) -> nn.Module:
        return NoiseOp(self.stride, self.mean, self.std)


def _pool(pool: nn.Module, C: int, affine: bool = False) -> nn.Module:
    """Pooling followed by a BN, as in DARTS's search network (pooling outputs are not normalised)."""
    return nn.Sequential(pool, nn.BatchNorm2d(C, affine=affine))


register_op("none", lambda C, stride, affine=False: Zero(stride))
register_op("noise", lambda C, stride, affine=False: NoiseOp(stride))
register_op("max_pool_3x3", lambda C, stride, affine=False: _pool(
    nn.MaxPool2d(POOL_KERNEL, stride=stride, padding=1), C, affine))
register_op("avg_pool_3x3", lambda C, stride, affine=False: _pool(
    nn.AvgPool2d(POOL_KERNEL, stride=stride, padding=1, count_include_pad=False), C, affine))
register_op("skip_connect", lambda C, stride, affine=False: Identity() if stride == 1 else FactorizedReduce(C, C, affine))
register_op("sep_conv_3x3", lambda C, stride, affine=False: SepConv(C, C, 3, stride, 1, affine))
register_op("sep_conv_5x5", lambda C, stride, affine=False: SepConv(C, C, 5, stride, 2, affine))
register_op("dil_conv_3x3", lambda C, stride, affine=False: DilConv(C, C, 3, stride, 2, dilation=2, affine=affine))
register_op("dil_conv_5x5", lambda C, stride, affine=False: DilConv(C, C, 5, stride, 4, dilation=2, affine=affine))

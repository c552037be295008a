"""The grid's candidate operation as stand-alone ops: an inverted bottleneck (MobileNetV2/V3, with
squeeze-excitation) of one depthwise kernel size, ``mbconv_kxk`` (stride 1: the grid's cells keep their
resolution). The grid's cells mix the kernel sizes themselves (``space/cell.py``); these entries let other
spaces use the same block by name."""
from __future__ import annotations

from torch import Tensor, nn

from ssnas.ops import register_op
from ssnas.space.operations import FusedBlock, InvertedBottleneck

DEFAULT_EXPANSION = 6   # MobileNetV2's


class MBConv(InvertedBottleneck):
    """x + project(SE(dw_k(expand(x)))) with one kernel size k."""

    def __init__(self, C: int, stride: int, kernel: int, expansion: float = DEFAULT_EXPANSION,
                 squeeze_excite: bool = True):
        if stride != 1:
            raise ValueError(f"mbconv_{kernel}x{kernel} keeps the resolution, expected stride 1 (got {stride})")
        super().__init__(C, expansion, (kernel,), squeeze_excite)

    def forward(self, x: Tensor, mix: Tensor | None = None) -> Tensor:
        return super().forward(x, mix)

    def fuse(self, mix: Tensor | None = None, scale=1.0) -> nn.Module:
        return FusedResidual(super().fuse(mix, scale))


class FusedResidual(nn.Module):
    """x + block(x): a folded inverted bottleneck with its residual."""

    def __init__(self, block: FusedBlock):
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


for _k in (3, 5, 7):
    register_op(f"mbconv_{_k}x{_k}", lambda C, stride, k=_k, **options: MBConv(C, stride, k, **options), strides=(1,))

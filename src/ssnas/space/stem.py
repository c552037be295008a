"""Multi-scale stem: Auto-DeepLab's three 3×3 conv-BN-ReLU (strides 2, 1, 2) applied per level to the input
image interpolated to 1, 1/2, 1/4, 1/8 of its size, so layer 0 has all four levels (stride 4…32)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.space.operations import ConvBN


class MultiScaleStem(nn.Module):
    def __init__(self, widths: list[int], in_channels: int = 3):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                ConvBN(in_channels, max(1, c // 2), 3, 2),
                ConvBN(max(1, c // 2), max(1, c // 2), 3, 1),
                ConvBN(max(1, c // 2), c, 3, 2),
            )
            for c in widths
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, branch in enumerate(self.branches):
            xi = x if i == 0 else F.interpolate(x, scale_factor=0.5 ** i, mode="bilinear", align_corners=False)
            outs.append(branch(xi))
        return outs

    def fuse(self, level: int) -> nn.Sequential:
        """The branch of ``level`` with its BNs folded: conv, ReLU, conv, ReLU, conv, ReLU."""
        return nn.Sequential(*(m for conv_bn in self.branches[level] for m in conv_bn.fuse()))

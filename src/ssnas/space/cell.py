"""A cell of the backbone grid: Eq. 3, Y = Σ_k α̂_k o_k(X), with optional channel sampling.

Two mixture modes:
- ``kernel`` (default): one inverted bottleneck whose depthwise kernel is the α̂-weighted superkernel
  (exactly the weighted sum of the depthwise outputs; the surrounding layers are shared; with
  ``shared_kernels`` the k×k candidates are nested centres of one kmax×kmax weight).
- ``output``: the literal Eq. 3, one complete inverted bottleneck per kernel size, outputs α̂-weighted
  (about 3x the cost; its candidates share nothing).
With channel sampling S < 1 (PC-DARTS), only S·C channels go through the operation; the rest bypass it and
are concatenated back, followed by a channel shuffle.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ssnas.space.operations import InvertedBottleneck, channel_shuffle


class Cell(nn.Module):
    def __init__(self, channels: int, expansion: float, kernel_sizes: tuple[int, ...], mixture: str = "kernel",
                 sampling: float = 1.0, squeeze_excite: bool = True, shared_kernels: bool = True):
        super().__init__()
        self.channels = channels
        self.op_channels = int(round(channels * sampling))
        self.groups = channels // self.op_channels
        self.mixture = mixture
        if mixture == "kernel":
            self.ops = nn.ModuleList([InvertedBottleneck(self.op_channels, expansion, kernel_sizes, squeeze_excite,
                                                        shared_kernels)])
        else:
            self.ops = nn.ModuleList(
                InvertedBottleneck(self.op_channels, expansion, (k,), squeeze_excite) for k in kernel_sizes
            )

    def mixed_op(self, x: Tensor, alpha_hat: Tensor) -> Tensor:
        """Eq. 3 on the (sampled) channels."""
        if self.mixture == "kernel":
            return self.ops[0](x, alpha_hat)
        y = None
        for a, op in zip(alpha_hat, self.ops):
            term = a * op(x)
            y = term if y is None else y + term
        return y

    def forward(self, x: Tensor, alpha_hat: Tensor) -> Tensor:
        if self.op_channels == self.channels:
            return self.mixed_op(x, alpha_hat)
        sampled, bypass = x[:, : self.op_channels], x[:, self.op_channels:]
        y = self.mixed_op(sampled, alpha_hat)
        return channel_shuffle(torch.cat([y, bypass], 1), self.groups)


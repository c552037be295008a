"""A cell of the backbone grid: Eq. 3, Y = Σ_k α̂_k o_k(X), with optional channel sampling.

Two mixture modes (``model.mixture``, the ``MIXTURES`` registry: a new mode is one registered class here):
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

from ssnas.ops.fold import FOLD_DTYPE
from ssnas.registry import Registry
from ssnas.space.operations import InvertedBottleneck, channel_shuffle

MIXTURES = Registry("mixture mode", key="model.mixture", default="kernel")


@MIXTURES.register("kernel")
class KernelMixture:
    """One inverted bottleneck with the α̂-mixed superkernel."""

    @staticmethod
    def build(channels, expansion, kernel_sizes, squeeze_excite, shared_kernels) -> nn.ModuleList:
        return nn.ModuleList([InvertedBottleneck(channels, expansion, kernel_sizes, squeeze_excite, shared_kernels)])

    @staticmethod
    def forward(ops: nn.ModuleList, x: Tensor, alpha_hat: Tensor) -> Tensor:
        return ops[0](x, alpha_hat)

    @staticmethod
    def fuse(ops: nn.ModuleList, alpha_hat: Tensor) -> list:
        return [ops[0].fuse(alpha_hat)]


@MIXTURES.register("output")
class OutputMixture:
    """One inverted bottleneck per kernel size, outputs α̂-weighted (the literal Eq. 3)."""

    @staticmethod
    def build(channels, expansion, kernel_sizes, squeeze_excite, shared_kernels) -> nn.ModuleList:
        return nn.ModuleList(InvertedBottleneck(channels, expansion, (k,), squeeze_excite) for k in kernel_sizes)

    @staticmethod
    def forward(ops: nn.ModuleList, x: Tensor, alpha_hat: Tensor) -> Tensor:
        y = None
        for a, op in zip(alpha_hat, ops):
            term = a * op(x)
            y = term if y is None else y + term
        return y

    @staticmethod
    def fuse(ops: nn.ModuleList, alpha_hat: Tensor) -> list:
        """Σ_k α̂_k·o_k(x) with o_k(x) = x + r_k(x) and Σ_k α̂_k = 1 is x + Σ_k α̂_k·r_k(x); α̂_k = 0 drops o_k."""
        return [op.fuse(None, a.to(FOLD_DTYPE)) for op, a in zip(ops, alpha_hat) if a != 0]


class Cell(nn.Module):
    def __init__(self, channels: int, expansion: float, kernel_sizes: tuple[int, ...], mixture: str = "kernel",
                 sampling: float = 1.0, squeeze_excite: bool = True, shared_kernels: bool = True):
        super().__init__()
        self.channels = channels
        self.op_channels = int(round(channels * sampling))
        self.groups = channels // self.op_channels
        self.mixture = mixture
        self._mix = MIXTURES.get(mixture)
        self.ops = self._mix.build(self.op_channels, expansion, kernel_sizes, squeeze_excite, shared_kernels)

    def mixed_op(self, x: Tensor, alpha_hat: Tensor) -> Tensor:
        """Eq. 3 on the (sampled) channels."""
        return self._mix.forward(self.ops, x, alpha_hat)

    def forward(self, x: Tensor, alpha_hat: Tensor) -> Tensor:
        if self.op_channels == self.channels:
            return self.mixed_op(x, alpha_hat)
        sampled, bypass = x[:, : self.op_channels], x[:, self.op_channels:]
        y = self.mixed_op(sampled, alpha_hat)
        return channel_shuffle(torch.cat([y, bypass], 1), self.groups)

    # ----------------------------------------------------------------- export
    def fuse(self, alpha_hat: Tensor) -> nn.ModuleList:
        """The residual branches of Eq. 3 with α̂ folded in (``FusedBlock``s, summed onto the sampled input by
        the fused cell); the channel shuffle is left to the consumers (:meth:`output_permutation`)."""
        return nn.ModuleList(self._mix.fuse(self.ops, alpha_hat))

    def output_permutation(self) -> Tensor:
        """p with output[:, c] = unshuffled[:, p[c]] (the identity without channel sampling): consumers of the
        fused cell, which skips the shuffle, permute their input channels by it."""
        idx = torch.arange(self.channels, dtype=torch.float64).view(1, -1, 1, 1)
        if self.op_channels == self.channels:
            return idx.flatten().long()
        return channel_shuffle(idx, self.groups).flatten().long()

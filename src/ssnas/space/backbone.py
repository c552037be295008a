"""The backbone: a rectangular grid of cells, L layers × 4 levels (stride 4, 8, 16, 32).

Eq. 1: the input of the cell at layer l and stride s is a β̂-weighted sum of its predecessors,
    X_s^l = Σ_{t ∈ {s/2, s, 2s}} P(Y_t^{l-1}) · β̂_{t→s}^l,
Eq. 2: β̂ is a softmax over the cell's *incoming* edges (2 at the border levels, 3 inside).
P aligns shapes: resample to the target stride and a 1×1 ReLU-Conv-BN from C_t to C_s channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.arch import masked_softmax, unbind_rows
from ssnas.ops.fold import conv_like, fold_bn
from ssnas.space.cell import Cell
from ssnas.space.topology import EDGE_KINDS, EDGE_OFFSETS, EDGE_SLOTS, LEVELS, edge_source, slot_valid_mask  # noqa: F401 (re-exported)


def edge_valid_mask(layers: int, levels: int = LEVELS) -> Tensor:
    """(L, levels, EDGE_KINDS) bool: which incoming edges exist (none from outside the grid)."""
    return slot_valid_mask(layers, levels, EDGE_SLOTS)


def beta_hat(beta: Tensor, valid: Tensor) -> Tensor:
    """Eq. 2: edge weights normalized over each cell's incoming edges."""
    return masked_softmax(beta, valid)


class ShapeAlign(nn.Module):
    """P of Eq. 1: ReLU → 1×1 Conv → BN from level ``src`` to level ``dst``, with resampling.

    Down (finer → coarser) average-pools, then convolves; up (coarser → finer) upsamples bilinearly, then
    convolves at the target resolution, as the paper's network does (this is what Table 3's FLOPs count).
    A 1×1 conv and BN commute with bilinear interpolation (its weights sum to 1), so the fused export
    convolves before upsampling instead: same output, a quarter of the cost on those edges. Training does the
    same for the conv (BN keeps its place: its batch statistics are those of the upsampled map).
    """

    def __init__(self, cin: int, cout: int, src: int, dst: int):
        super().__init__()
        self.direction = dst - src  # +1: downsample ×2, -1: upsample ×2, 0: same stride
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, y: Tensor, size: tuple[int, int], activated: bool = False) -> Tensor:
        """P(y); ``activated``: y is already ReLU'd (the backbone applies the ReLU once per source, not once per
        outgoing edge). Called as a module, so that ``profile`` counts the edge's FLOPs under P."""
        return self.project(y if activated else F.relu(y), size)

    def project(self, y: Tensor, size: tuple[int, int]) -> Tensor:
        """P after its ReLU: the backbone applies the ReLU once per source, not once per outgoing edge."""
        if self.direction > 0:
            y = F.avg_pool2d(y, 2)
        elif self.direction < 0:
            if self.training:
                return self.bn(F.interpolate(self.conv(y), size=size, mode="bilinear", align_corners=False))
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.bn(self.conv(y))

    def fold(self, scale: float | Tensor = 1.0) -> tuple[Tensor, Tensor]:
        """``scale · BN(conv(·))`` as one 1×1 conv's (weight, bias) in float64, Eq. 1's β̂ folded in as ``scale``.
        The fused cell does the ReLU and the resampling (an up edge convolves before upsampling: exact, since
        a 1×1 conv and BN commute with bilinear interpolation)."""
        return fold_bn(self.conv.weight, self.bn, scale)

    def fuse(self, scale: float | Tensor = 1.0) -> nn.Conv2d:
        """:meth:`fold` as a biased 1×1 conv."""
        return conv_like(self.conv, *self.fold(scale))


class Backbone(nn.Module):
    """``cells[l][i]`` and ``edges[l][i][j]`` (j indexes EDGE_OFFSETS; None where the edge does not exist)."""

    def __init__(self, layers: int, widths: list[int], expansion: float, kernel_sizes, mixture: str,
                 sampling: float, squeeze_excite: bool, shared_kernels: bool = True):
        super().__init__()
        self.layers, self.widths = layers, list(widths)
        levels = len(widths)
        self.cells = nn.ModuleList()
        self.edges = nn.ModuleList()
        for _ in range(layers):
            self.cells.append(nn.ModuleList(
                Cell(widths[i], expansion, kernel_sizes, mixture, sampling, squeeze_excite, shared_kernels)
                for i in range(levels)
            ))
            layer_edges = nn.ModuleList()
            for i in range(levels):
                slots = nn.ModuleDict()
                for j in range(EDGE_KINDS):
                    src = edge_source(i, j, levels)
                    if src is not None:
                        slots[str(j)] = ShapeAlign(widths[src], widths[i], src, i)
                layer_edges.append(slots)
            self.edges.append(layer_edges)

    def forward(self, features: list[Tensor], alpha_hat: Tensor, beta_hat: Tensor) -> list[Tensor]:
        """features: the 4 outputs of layer 0 (the stem); returns the 4 outputs of the last layer."""
        prev = features
        alphas, betas = unbind_rows(alpha_hat, 2), unbind_rows(beta_hat, 3)
        for l in range(self.layers):
            out = []
            act = [F.relu(p) for p in prev]   # P's ReLU, shared by the (up to 3) edges leaving each cell
            for i, cell in enumerate(self.cells[l]):
                size = prev[i].shape[-2:]
                x = None
                for key, align in self.edges[l][i].items():
                    j = int(key)
                    term = align(act[edge_source(i, j)], size, activated=True) * betas[l][i][j]   # Eq. 1
                    x = term if x is None else x + term
                out.append(cell(x, alphas[l][i]))                                         # Eq. 3
            prev = out
        return prev

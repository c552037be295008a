"""The supernet: stem → backbone (Eq. 1-3) → head, with its architecture α, β kept apart from the weights.

α has shape (L, LEVELS, K) (one row of kernel logits per cell), β has shape (L, LEVELS, EDGE_KINDS) (one row of
incoming-edge logits per cell; slot order: from stride s/2, s, 2s — ``space/topology.py``). α̂ and β̂ are computed
once per forward pass. ``SuperNet`` implements the :class:`~ssnas.space.base.SearchSpace` protocol as the
registered space ``grid`` (``space/grid.py``).
Discretization is expressed with masks (``edge_mask``, ``op_mask``): a masked choice gets exactly zero
weight and the softmax renormalizes over what is kept — the trained supernet itself, not a decoded copy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.arch import masked_softmax
from ssnas.space.backbone import Backbone, beta_hat, edge_valid_mask
from ssnas.space.base import ArchitectureMixin
from ssnas.space.head import SegmentationHead
from ssnas.space.stem import MultiScaleStem
from ssnas.space.topology import EDGE_KINDS, EDGE_SLOTS, LEVELS, pad_to_stride

ARCH_INIT_STD = 1e-3    # DARTS / Auto-DeepLab initialize architecture logits near zero


@dataclass
class SpaceConfig:
    """Hyperparameters of one supernet (Table 3: L, F, Exp, S)."""
    layers: int
    filters: int
    expansion: float
    sampling: float = 1.0
    kernel_sizes: tuple = (3, 5, 7)
    mixture: str = "kernel"
    head_channels: int = 256
    squeeze_excite: bool = True
    shared_kernels: bool = True     # nested k×k centres of one kmax×kmax depthwise weight (kernel mixture)
    num_classes: int = 19
    in_channels: int = 3

    @property
    def widths(self) -> list[int]:
        """C_i = F · 2^i for levels i = 0 .. LEVELS-1 (stride 4, 8, 16, 32)."""
        return [self.filters * 2 ** i for i in range(LEVELS)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kernel_sizes"] = list(self.kernel_sizes)
        return d


class SuperNet(ArchitectureMixin, nn.Module):
    """The paper's grid supernet (the ``grid`` search space)."""

    space_name = "grid"
    slots = EDGE_SLOTS               # β's last axis: (layers back, level offset) of each incoming edge
    cost_metrics = ("flops", "params", "latency")   # what cost tables exist for (latency: measured, cost/latency.py)

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths
        self.stem = MultiScaleStem(widths, cfg.in_channels)
        self.backbone = Backbone(cfg.layers, widths, cfg.expansion, tuple(cfg.kernel_sizes), cfg.mixture,
                                 cfg.sampling, cfg.squeeze_excite, cfg.shared_kernels)
        self.head = SegmentationHead(widths, cfg.num_classes, cfg.head_channels)
        k = len(cfg.kernel_sizes)
        self.alpha = nn.Parameter(ARCH_INIT_STD * torch.randn(cfg.layers, LEVELS, k))
        self.beta = nn.Parameter(ARCH_INIT_STD * torch.randn(cfg.layers, LEVELS, EDGE_KINDS))
        self.register_buffer("edge_mask", edge_valid_mask(cfg.layers))
        self.register_buffer("op_mask", torch.ones(cfg.layers, LEVELS, k, dtype=torch.bool))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    # ----------------------------------------------------------------- architecture parameters
    def alpha_hat(self) -> Tensor:
        """Softmax of α over each cell's kernels (Eq. 3's α̂), masked."""
        return masked_softmax(self.alpha, self.op_mask)

    def beta_hat(self) -> Tensor:
        """Eq. 2, masked."""
        return beta_hat(self.beta, self.edge_mask)

    def arch_distributions(self) -> dict:
        L, K = self.cfg.layers, len(self.cfg.kernel_sizes)
        return {
            "alpha": (self.alpha_hat().reshape(L * LEVELS, K), self.op_mask.reshape(L * LEVELS, K)),
            "beta": (self.beta_hat().reshape(L * LEVELS, EDGE_KINDS), self.edge_mask.reshape(L * LEVELS, EDGE_KINDS)),
        }

    def arch_state_keys(self) -> tuple[str, ...]:
        return ("alpha", "beta", "edge_mask", "op_mask")

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pad_to_stride(x)
        a_hat, b_hat = self.alpha_hat(), self.beta_hat()   # once per forward
        features = self.backbone(self.stem(x), a_hat, b_hat)
        logits = self.head(features, x.shape[-2:])
        return logits[..., :h, :w] if x.shape[-2:] != (h, w) else logits

    # ----------------------------------------------------------------- export, cost, description
    def fuse(self, merge_edges: bool = True) -> nn.Module:
        """The deployable :class:`~ssnas.space.fused.FusedSegNet` (same eval-mode logits)."""
        from ssnas.space.fused import fuse_grid
        return fuse_grid(self, merge_edges=merge_edges)

    def cost_groups(self) -> dict:
        """Table 3's components: the stem and the head whole, each cell, each edge P (``profile``)."""
        groups = {"stem": "stem"}
        for l in range(self.cfg.layers):
            for i in range(LEVELS):
                groups[f"backbone.cells.{l}.{i}"] = "cells"
        for l in range(self.cfg.layers):
            for i in range(LEVELS):
                for j in self.backbone.edges[l][i]:
                    groups[f"backbone.edges.{l}.{i}.{j}"] = "P"
        groups["head"] = "head"
        return groups

    def cost_table(self, metric: str, input_size):
        """Cost-aware search (``CostAware``): each candidate's FLOPs or parameters (``cost/grid.py``)."""
        from ssnas.cost.grid import count_table
        return count_table(self, metric, input_size)

    def expected_cost(self, tensors: dict) -> Tensor:
        """E[cost] under α̂ and β̂, with every cell's chance of being live (``cost/expected.py``)."""
        from ssnas.cost.expected import expected_cost
        return expected_cost(tensors, self.alpha_hat(), self.beta_hat(), self.slots)

    def discrete_cost(self, table) -> float:
        from ssnas.cost.expected import discrete_cost, kept_choices
        return discrete_cost(table, *kept_choices(self), self.slots)

    def architecture_graph(self) -> dict:
        from ssnas.space.architecture import graph_grid
        return graph_grid(self)

    def describe_architecture(self) -> dict:
        from ssnas.space.architecture import describe_grid
        return describe_grid(self)

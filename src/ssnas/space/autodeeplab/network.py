"""The Auto-DeepLab supernet (Liu et al., CVPR 2019, §3.2): a trellis of L layers over strides 4, 8, 16, 32.

Nodes: the stem gives layer 0 at stride 4; layer l ≥ 1 has levels 0 … min(l, 3) (stride 4·2^i), as in
Auto-DeepLab's Fig. 1 (the network can at most halve the resolution once per layer). Block width at level i
is C_i = F·2^i, a node's output B·C_i.

Auto-DeepLab Eq. 6: a node is the β̂-weighted sum of one cell per incoming transition,
    ^sH^l = β̂_{s/2→s} Cell(^{s/2}H^{l-1}, ^sH^{l-2}; α) + β̂_{s→s} Cell(^sH^{l-1}, ^sH^{l-2}; α)
          + β̂_{2s→s} Cell(^{2s}H^{l-1}, ^sH^{l-2}; α),
each cell with its own weights and the one α of the network. Eq. 7 normalizes β over each node's
*outgoing* transitions (β_{s→s/2} + β_{s→s} + β_{s→2s} = 1): ``beta_normalization: outgoing`` (default).
``incoming`` normalizes over the transitions into a node instead (what ssnas's grid, Eq. 2 of the
single-stage paper, and one public port do). Where ^sH^{l-2} does not exist (early layers), the finest
existing node of layer l-2 takes its place (the stem's stride-2 output for l = 1), resampled.

β is stored like the grid's: (L, 4, 3), row (l, i) = the transitions into node (l+1, i) from levels i-1, i,
i+1 (strides s/2, s, 2s). α: (edges, 8), one row per cell edge (``cell_edges``). Discretization is by masks,
as in the grid: masked choices get weight exactly 0 and the softmax renormalizes over the rest.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ssnas.arch import arch_entropies
from ssnas.space.autodeeplab.cell import INPUTS_PER_BLOCK, SearchCell, cell_edges
from ssnas.space.autodeeplab.heads import SearchASPP, Stem, upsample_to
from ssnas.space.autodeeplab.topology import (EDGE_OFFSETS, LEVELS, OUTPUT_STRIDE, AutoDeepLabConfig, aspp_rate,
                                              levels_at, node_channels, outgoing_index, prev_prev_level, transitions)
from ssnas.space.base import ArchitectureMixin
from ssnas.space.topology import pad_to_stride, stride

ARCH_INIT_STD = 1e-3               # DARTS / Auto-DeepLab initialize architecture logits near zero


def safe_masked_softmax(logits: Tensor, valid: Tensor) -> Tensor:
    """Softmax over the valid entries of each row; 0 elsewhere, and rows without a valid entry are all 0 with a
    finite (zero) gradient. (A decoded cell drops whole edges, and a source node can lose every outgoing
    transition: ``ssnas.arch.masked_softmax`` would give such rows a NaN gradient.)"""
    any_valid = valid.any(-1, keepdim=True)
    lse = torch.logsumexp(logits.masked_fill(~valid, float("-inf")), -1, keepdim=True)
    lse = torch.where(any_valid, lse, torch.zeros_like(lse))
    return torch.where(valid, torch.exp(logits.masked_fill(~valid, 0.0) - lse), torch.zeros_like(logits))


class AutoDeepLab(ArchitectureMixin, nn.Module):
    """The supernet: stem → trellis of cells (Eq. 6) → one ASPP per level of the last layer, summed."""

    space_name = "autodeeplab"

    def __init__(self, cfg: AutoDeepLabConfig):
        super().__init__()
        if cfg.layers < LEVELS - 1:
            raise ValueError(f"layers={cfg.layers}: the last layer needs all {LEVELS} levels, so layers >= 3")
        self.cfg = cfg
        w = cfg.widths()
        B = cfg.blocks
        self.stem = Stem(cfg.in_channels, cfg.stem_channels)
        valid = transitions(cfg.layers)
        self.cells = nn.ModuleList()
        for t in range(cfg.layers):
            layer = nn.ModuleList()
            for i in range(LEVELS):
                slots = nn.ModuleDict()
                if i in levels_at(t + 1):
                    c_pp = node_channels(cfg, t - 1, prev_prev_level(t + 1, i))
                    for j, off in enumerate(EDGE_OFFSETS):
                        if valid[t][i][j]:
                            slots[str(j)] = SearchCell(c_pp, node_channels(cfg, t, i + off), w[i], B, cfg.primitives)
                layer.append(slots)
            self.cells.append(layer)
        self.heads = nn.ModuleList(SearchASPP(B * w[i], aspp_rate(cfg, i), cfg.num_classes)
                                   for i in range(LEVELS))
        n_edges, n_ops = len(cell_edges(B)), len(cfg.primitives)
        self.alpha = nn.Parameter(ARCH_INIT_STD * torch.randn(n_edges, n_ops))
        self.beta = nn.Parameter(ARCH_INIT_STD * torch.randn(cfg.layers, LEVELS, len(EDGE_OFFSETS)))
        self.register_buffer("edge_mask", torch.tensor(valid, dtype=torch.bool))
        self.register_buffer("op_mask", torch.ones(n_edges, n_ops, dtype=torch.bool))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        index, out_valid = outgoing_index(cfg.layers)
        self.register_buffer("_out_index", torch.tensor(index), persistent=False)
        self.register_buffer("_out_valid", torch.tensor(out_valid, dtype=torch.bool), persistent=False)
        groups = valid if cfg.beta_normalization == "incoming" else out_valid
        rows = [n for n, row in enumerate(r for layer in groups for r in layer) if sum(row) >= 2]   # 2-3 to weigh
        self.register_buffer("_beta_rows", torch.tensor(rows, dtype=torch.long), persistent=False)

    # ----------------------------------------------------------------- architecture parameters
    def alpha_hat(self) -> Tensor:
        """Softmax of α over each cell edge's operations (Auto-DeepLab Eq. 2), masked."""
        return safe_masked_softmax(self.alpha, self.op_mask)

    def _beta_groups(self) -> tuple[Tensor, Tensor]:
        """β's logits and mask arranged so that each row is one normalization group."""
        if self.cfg.beta_normalization == "incoming":
            return self.beta, self.edge_mask
        flat, mask = self.beta.reshape(-1), self.edge_mask.reshape(-1)
        return flat[self._out_index], mask[self._out_index] & self._out_valid

    def beta_hat(self) -> Tensor:
        """β̂ (L, 4, 3) in the destination-major layout, normalized per Eq. 7 (or per node's inputs)."""
        logits, mask = self._beta_groups()
        probs = safe_masked_softmax(logits, mask)
        if self.cfg.beta_normalization == "incoming":
            return probs
        # back to destination-major: each kept transition appears once in the source-major layout; the
        # invalid slots (index 0, probability exactly 0) add 0 (no boolean indexing: runs on ``meta`` too)
        out = torch.zeros(self.beta.numel(), dtype=probs.dtype, device=probs.device)
        out = out.scatter_add(0, self._out_index.reshape(-1), probs.reshape(-1))
        return out.reshape(self.beta.shape) * self.edge_mask

    def arch_distributions(self) -> dict:
        """One row per decision: a cell edge's operations (α), a node's outgoing (or incoming) transitions (β),
        for the nodes with 2 or 3 of them (not the levels a layer does not reach, nor a node with a single
        transition): rows without a choice would count as entropy 0 in the means."""
        logits, mask = self._beta_groups()
        probs = safe_masked_softmax(logits, mask)
        k = probs.shape[-1]
        return {"alpha": (self.alpha_hat(), self.op_mask),
                "beta": (probs.reshape(-1, k).index_select(0, self._beta_rows),
                         mask.reshape(-1, k).index_select(0, self._beta_rows))}


    # ----------------------------------------------------------------- discretization
    def _top_ops(self) -> Tensor:
        """``discretize``'s operations, decoded as Auto-DeepLab / DARTS do: each block keeps its 2 inputs whose
        strongest operation other than ``none`` has the largest α̂, with that operation; every other edge goes."""
        keep = torch.zeros_like(self.op_mask)
        edges = cell_edges(self.cfg.blocks)
        for b, block in enumerate(self.genotype()):
            for j, name in block:
                keep[edges.index((b, j)), self.cfg.primitives.index(name)] = True
        return keep

    # ----------------------------------------------------------------- deployment, cost, description
    def arch_state_keys(self) -> tuple[str, ...]:
        """What ``model.architecture_from`` copies: the architecture and its masks."""
        return ("alpha", "beta", "edge_mask", "op_mask")

    def fuse(self, **options) -> nn.Module:
        """The fused network (same eval-mode logits, BN folded, α/β gone): ``space.autodeeplab.fuse``."""
        from ssnas.space.autodeeplab.fuse import fuse
        if options:
            raise TypeError(f"the autodeeplab space's fuse() takes no options, got {sorted(options)}")
        return fuse(self)

    def cost_groups(self) -> dict[str, str]:
        """Module name → component, for ``profile``: the modules that are called (each cell, each head)."""
        groups = {"stem": "stem"}
        for t, layer in enumerate(self.cells):
            for i, slots in enumerate(layer):
                groups.update({f"cells.{t}.{i}.{key}": "cells" for key in slots})
        groups.update({f"heads.{i}": "head" for i in range(len(self.heads))})
        return groups

    def genotype(self) -> list[list[tuple[int, str]]]:
        """The decoded cell (Auto-DeepLab §3.3): per block, its 2 strongest inputs with their strongest op
        other than ``none``, from α̂ (the masks as they are; ``discretize`` applies the same rule)."""
        a = self.alpha_hat().detach().masked_fill(~self.op_mask, -1.0)
        prims = self.cfg.primitives
        if "none" in prims:
            a[:, prims.index("none")] = -1.0
        best, best_op = a.max(-1)
        edges = cell_edges(self.cfg.blocks)
        cell = []
        for b in range(self.cfg.blocks):
            rows = sorted((e for e, (blk, _) in enumerate(edges) if blk == b and best[e] >= 0),
                          key=lambda e: -float(best[e]))[:INPUTS_PER_BLOCK]
            cell.append([(edges[e][1], prims[int(best_op[e])]) for e in rows])
        return cell

    def strongest_path(self) -> list[int]:
        """Auto-DeepLab's network-level decoding (§3.3, Viterbi): the levels of layers 1 … L along the path
        from the stem with the largest product of β̂."""
        b_hat = self.beta_hat().detach().double()
        score = {0: 0.0}                              # best log-product reaching (layer, level)
        back = []
        for t in range(self.cfg.layers):
            new, ptr = {}, {}
            for i in levels_at(t + 1):
                for j, off in enumerate(EDGE_OFFSETS):
                    src = i + off
                    w = float(b_hat[t, i, j])
                    if src in score and w > 0:
                        s = score[src] + math.log(w)
                        if i not in new or s > new[i]:
                            new[i], ptr[i] = s, src
            score = new
            back.append(ptr)
        level = max(score, key=score.get)
        path = [level]
        for ptr in reversed(back[1:]):
            level = ptr[level]
            path.append(level)
        return path[::-1]

    def architecture_graph(self) -> dict:
        """The network level (β̂ per transition, the Viterbi path); the cell, shared by every node, as text."""
        b_hat, edge_mask = self.beta_hat().detach().cpu(), self.edge_mask.cpu()
        L = self.cfg.layers
        edges = [[t, i + off, t + 1, i, float(b_hat[t, i, j]), bool(edge_mask[t, i, j])]
                 for t in range(L) for i in range(LEVELS) for j, off in enumerate(EDGE_OFFSETS)
                 if i in levels_at(t + 1) and (i + off) in levels_at(t)]
        text = [f"  block {b}: " + ", ".join(f"{op}(input {k})" for k, op in block)
                for b, block in enumerate(self.genotype())]
        return {"layers": L, "levels": [f"stride {stride(i)}" for i in range(LEVELS)], "edges": edges,
                "path": [[0, 0]] + [[t + 1, lv] for t, lv in enumerate(self.strongest_path())],
                "text": ["the decoded cell (α̂), shared by every node; input 0: H(l-2), 1: H(l-1), 2 + k: block k",
                         *text]}

    def describe_architecture(self) -> dict:
        """architecture.json: α̂ per cell edge, β̂ per transition, the decoded cell and network path."""
        return {
            "format": "ssnas-architecture", "version": 1, "space": self.space_name,
            "primitives": list(self.cfg.primitives),
            "cell_edges": [list(e) for e in cell_edges(self.cfg.blocks)],
            "alpha_hat": self.alpha_hat().detach().cpu().tolist(),
            "beta_hat": self.beta_hat().detach().cpu().tolist(),
            "beta_normalization": self.cfg.beta_normalization,
            "genotype": [[list(op) for op in block] for block in self.genotype()],
            "strongest_path": self.strongest_path(),
            "entropy": arch_entropies(self),
        }

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pad_to_stride(x, OUTPUT_STRIDE)
        a_hat, b_hat = self.alpha_hat(), self.beta_hat()   # once per forward
        H, W = x.shape[-2:]
        s2, s4 = self.stem(x)
        nodes = [[s2], [s4]]                                # nodes[t + 1][i]: node (t, i); t = -1 is the stem's s2
        for t, layer in enumerate(self.cells):
            out = []
            for i in levels_at(t + 1):
                size = (H // (4 * 2 ** i), W // (4 * 2 ** i))
                s0 = nodes[t][prev_prev_level(t + 1, i)]
                node = None
                for key, cell in layer[i].items():
                    j = int(key)
                    y = cell(s0, nodes[t + 1][i + EDGE_OFFSETS[j]], size, a_hat) * b_hat[t, i, j]   # Eq. 6
                    node = y if node is None else node + y
                out.append(node)
            nodes.append(out)
        logits = None
        for head, feat in zip(self.heads, nodes[-1]):
            y = upsample_to(head(feat), (H, W))
            logits = y if logits is None else logits + y
        return logits[..., :h, :w] if x.shape[-2:] != (h, w) else logits

"""Fold a trained Auto-DeepLab supernet into a plain network with the same eval-mode logits.

Exact rewrites of the eval-mode forward only (the blocks fold themselves: ``SearchCell.fuse(alpha_hat)``,
``ssnas.ops.fold``):
- BatchNorm (running statistics) into the convolution before it; a BN after a pooling layer becomes a
  per-channel 1×1 conv.
- α̂: a cell keeps the operations with α̂ ≠ 0 (after ``discretize``: one per kept edge, 2 per block) as
  ``α̂ · op(x)``; ``none`` adds exactly 0 and is dropped. β̂: a node keeps the cells of its transitions
  with β̂ ≠ 0, each scaled by its β̂ (Eq. 6). α and β themselves are gone.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ssnas.ops import build_op
from ssnas.ops.fold import fuse_module
from ssnas.space.autodeeplab.cell import Cell, Preprocess, fuse_tree
from ssnas.space.autodeeplab.heads import SearchASPP, Stem, upsample_to
from ssnas.space.autodeeplab.topology import (EDGE_OFFSETS, LEVELS, OUTPUT_STRIDE, AutoDeepLabConfig, aspp_rate,
                                              levels_at, node_channels, prev_prev_level)
from ssnas.space.topology import pad_to_stride


class FusedAutoDeepLab(nn.Module):
    """The discrete network: the stem, the kept cells of every node with their β̂, the four ASPP heads.

    Built from ``spec`` (plain values: the space's config and, per node, the kept transitions with β̂ and per
    block the kept ``[input, operation, α̂]``), so a saved fused network is rebuilt without the supernet
    (``cls(spec)`` + ``load_state_dict``); :func:`fuse` loads the folded weights into it."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = spec
        cfg = AutoDeepLabConfig(**{**spec["config"], "primitives": tuple(spec["config"]["primitives"])})
        widths = cfg.widths()
        self.stem = fuse_tree(Stem(cfg.in_channels, cfg.stem_channels))
        self.cells = nn.ModuleList()
        for t, layer in enumerate(spec["nodes"]):
            fused_layer = nn.ModuleList()
            for i, node in enumerate(layer):
                kept = nn.ModuleDict()
                for key, edge in node.items():
                    c_pp = node_channels(cfg, t - 1, prev_prev_level(t + 1, i))
                    c_p = node_channels(cfg, t, i + EDGE_OFFSETS[int(key)])
                    ops = [[fuse_module(build_op(name, widths[i], 1)) for _, name, _ in block]
                           for block in edge["blocks"]]
                    kept[key] = Cell(Preprocess(c_pp, widths[i], affine=False).fuse(),
                                     Preprocess(c_p, widths[i], affine=False).fuse(), ops,
                                     [[(j, w) for j, _, w in block] for block in edge["blocks"]])
                fused_layer.append(kept)
            self.cells.append(fused_layer)
        self.heads = fuse_tree(nn.ModuleList(SearchASPP(cfg.blocks * widths[i], aspp_rate(cfg, i), cfg.num_classes)
                                             for i in range(LEVELS)))
        self.weights = [[{k: float(e["beta"]) for k, e in node.items()} for node in layer] for layer in spec["nodes"]]
        self.channels = [[node_channels(cfg, t + 1, i) for i in range(len(layer))]
                         for t, layer in enumerate(spec["nodes"])]

    def num_edges(self) -> int:
        """The network-level transitions kept."""
        return sum(len(node) for layer in self.weights for node in layer)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pad_to_stride(x, OUTPUT_STRIDE)
        H, W = x.shape[-2:]
        s2, s4 = self.stem(x)
        nodes = [[s2], [s4]]
        for t, layer in enumerate(self.cells):
            out = []
            for i in levels_at(t + 1):
                size = (H // (4 * 2 ** i), W // (4 * 2 ** i))
                s0 = nodes[t][prev_prev_level(t + 1, i)]
                node = None
                for key, cell in layer[i].items():
                    y = cell(s0, nodes[t + 1][i + EDGE_OFFSETS[int(key)]], size) * self.weights[t][i][key]
                    node = y if node is None else node + y
                out.append(x.new_zeros(x.shape[0], self.channels[t][i], *size) if node is None else node)
            nodes.append(out)
        logits = None
        for head, feat in zip(self.heads, nodes[-1]):
            y = upsample_to(head(feat), (H, W))
            logits = y if logits is None else logits + y
        return logits[..., :h, :w] if x.shape[-2:] != (h, w) else logits


def fused_spec(model: nn.Module) -> dict:   # model: network.AutoDeepLab (which imports this module)
    """The plain-value description of ``model``'s fused network (its current masks)."""
    a_hat, b_hat = model.alpha_hat(), model.beta_hat()
    nodes = []
    for t, layer in enumerate(model.cells):
        spec_layer = []
        for i in levels_at(t + 1):
            spec_layer.append({key: {"beta": float(b_hat[t, i, int(key)]), "blocks": cell.spec(a_hat)}
                               for key, cell in layer[i].items() if float(b_hat[t, i, int(key)]) != 0.0})
        nodes.append(spec_layer)
    return {"space": model.space_name, "in_channels": model.cfg.in_channels, "num_classes": model.cfg.num_classes,
            "config": model.cfg.to_dict(), "nodes": nodes}


@torch.no_grad()
def fuse(model: nn.Module) -> FusedAutoDeepLab:   # model: network.AutoDeepLab
    """The fused network of ``model`` with its current masks (discretize first for the decoded architecture)."""
    spec = fused_spec(model)
    with torch.device(next(model.parameters()).device):
        fused = FusedAutoDeepLab(spec)
    fused.stem.load_state_dict(fuse_tree(model.stem).state_dict())
    fused.heads.load_state_dict(fuse_tree(model.heads).state_dict())
    a_hat = model.alpha_hat()
    for t, layer in enumerate(spec["nodes"]):
        for i, node in enumerate(layer):
            for key in node:
                fused.cells[t][i][key].load_state_dict(model.cells[t][i][key].fuse(a_hat).state_dict())
    return fused.eval()

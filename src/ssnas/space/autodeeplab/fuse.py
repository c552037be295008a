"""Fold a trained Auto-DeepLab supernet into a plain network with the same eval-mode logits.

Exact rewrites of the eval-mode forward only:
- BatchNorm (running statistics) into the convolution right before it (y = s·(Wx) + (b − s·μ),
  s = γ/√(σ²+ε)); a BN after a pooling layer stays (it is a per-channel affine map).
- α̂: a cell keeps the operations with α̂ ≠ 0 (after ``discretize``: one per kept edge, 2 per block) as
  ``weight · op(x)``; ``none`` adds exactly 0 and is dropped. β̂: a node keeps the cells of its transitions
  with β̂ ≠ 0, each scaled by its β̂ (Eq. 6). α and β themselves are gone.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ssnas.darts.operations import build_operation
from ssnas.space.autodeeplab.cell import Cell, Preprocess, cell_edges
from ssnas.space.autodeeplab.heads import SearchASPP, Stem, upsample_to
from ssnas.space.autodeeplab.network import (EDGE_OFFSETS, LEVELS, OUTPUT_STRIDE, AutoDeepLab, AutoDeepLabConfig,
                                             aspp_rate, levels_at, node_channels, prev_prev_level)

FOLD_DTYPE = torch.float64     # fold in double precision, store in the model's dtype


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d with bias computing bn(conv(x)) in eval mode."""
    w = conv.weight.detach().to(FOLD_DTYPE)
    b = conv.bias.detach().to(FOLD_DTYPE) if conv.bias is not None else torch.zeros(w.shape[0], dtype=FOLD_DTYPE,
                                                                                     device=w.device)
    scale = bn.running_var.detach().to(FOLD_DTYPE).add(bn.eps).rsqrt()
    shift = -bn.running_mean.detach().to(FOLD_DTYPE) * scale
    if bn.affine:
        shift = shift * bn.weight.detach().to(FOLD_DTYPE) + bn.bias.detach().to(FOLD_DTYPE)
        scale = scale * bn.weight.detach().to(FOLD_DTYPE)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(w * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(b * scale + shift)
    return fused


def fold_batchnorms(module: nn.Module, inplace: bool = False) -> nn.Module:
    """``module`` (a copy unless ``inplace``) in eval mode with every Conv2d → BatchNorm2d pair of an
    ``nn.Sequential`` folded into one biased Conv2d."""
    module = (module if inplace else copy.deepcopy(module)).eval()
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        kids = list(seq)
        for n in range(len(kids) - 1):
            if isinstance(kids[n], nn.Conv2d) and isinstance(kids[n + 1], nn.BatchNorm2d):
                seq[n] = fold_conv_bn(kids[n], kids[n + 1])
                seq[n + 1] = nn.Identity()
    return module


class FusedAutoDeepLab(nn.Module):
    """The discrete network: the stem, the kept cells of every node with their β̂, the four ASPP heads.

    Built from ``spec`` (plain values: the space's config and, per node, the kept transitions with β̂ and per
    block the kept ``(input, operation, α̂)``), so a saved fused network is rebuilt without the supernet;
    :func:`fuse` then loads the folded weights into it."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = spec
        cfg = AutoDeepLabConfig(**{**spec["config"], "primitives": tuple(spec["config"]["primitives"])})
        widths = cfg.widths()
        self.stem = fold_batchnorms(Stem(cfg.in_channels, cfg.stem_channels), inplace=True)
        self.cells = nn.ModuleList()
        for t, layer in enumerate(spec["nodes"]):
            fused_layer = nn.ModuleList()
            for i, node in enumerate(layer):
                kept = nn.ModuleDict()
                for key, edge in node.items():
                    c_pp = node_channels(cfg, t - 1, prev_prev_level(t + 1, i))
                    c_p = node_channels(cfg, t, i + EDGE_OFFSETS[int(key)])
                    ops = [[fold_batchnorms(build_operation(name, widths[i], 1), inplace=True) for _, name, _ in block]
                           for block in edge["blocks"]]
                    kept[key] = Cell(fold_batchnorms(Preprocess(c_pp, widths[i], affine=False), inplace=True),
                                     fold_batchnorms(Preprocess(c_p, widths[i], affine=False), inplace=True), ops,
                                     [[(j, w) for j, _, w in block] for block in edge["blocks"]])
                fused_layer.append(kept)
            self.cells.append(fused_layer)
        heads = nn.ModuleList(SearchASPP(cfg.blocks * widths[i], aspp_rate(cfg, i), cfg.num_classes)
                              for i in range(LEVELS))
        self.heads = fold_batchnorms(heads, inplace=True)
        self.weights = [[{k: float(e["beta"]) for k, e in node.items()} for node in layer] for layer in spec["nodes"]]
        self.channels = [[node_channels(cfg, t + 1, i) for i in range(len(layer))]
                         for t, layer in enumerate(spec["nodes"])]

    def num_edges(self) -> int:
        """The network-level transitions kept."""
        return sum(len(node) for layer in self.weights for node in layer)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % OUTPUT_STRIDE, (-w) % OUTPUT_STRIDE
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph))
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
        return logits[..., :h, :w] if (ph or pw) else logits


def fused_spec(model: AutoDeepLab, space: str = "autodeeplab") -> dict:
    """The plain-value description of ``model``'s fused network (its current masks)."""
    a_hat, b_hat = model.alpha_hat(), model.beta_hat()
    edges = cell_edges(model.cfg.blocks)
    nodes = []
    for t, layer in enumerate(model.cells):
        spec_layer = []
        for i in levels_at(t + 1):
            node = {}
            for key in layer[i]:
                beta = float(b_hat[t, i, int(key)])
                if beta == 0.0:
                    continue
                blocks = [[] for _ in range(model.cfg.blocks)]
                for e, (b, j) in enumerate(edges):
                    for k, name in enumerate(model.cfg.primitives):
                        if float(a_hat[e, k]) != 0.0 and name != "none":   # none adds exactly 0
                            blocks[b].append([j, name, float(a_hat[e, k])])
                node[key] = {"beta": beta, "blocks": blocks}
            spec_layer.append(node)
        nodes.append(spec_layer)
    return {"space": space, "in_channels": model.cfg.in_channels, "num_classes": model.cfg.num_classes,
            "config": model.cfg.to_dict(), "nodes": nodes}


@torch.no_grad()
def fuse(model: AutoDeepLab, space: str = "autodeeplab") -> FusedAutoDeepLab:
    """The fused network of ``model`` with its current masks (discretize first for the decoded architecture)."""
    spec = fused_spec(model, space)
    device = next(model.parameters()).device
    with torch.device(device):
        fused = FusedAutoDeepLab(spec)
    fused.stem.load_state_dict(fold_batchnorms(model.stem).state_dict())
    fused.heads.load_state_dict(fold_batchnorms(model.heads).state_dict())
    edges = cell_edges(model.cfg.blocks)
    a_hat = model.alpha_hat()
    for t, layer in enumerate(spec["nodes"]):
        for i, node in enumerate(layer):
            for key in node:
                source, target = model.cells[t][i][key], fused.cells[t][i][key]
                target.pre0.load_state_dict(fold_batchnorms(source.pre0).state_dict())
                target.pre1.load_state_dict(fold_batchnorms(source.pre1).state_dict())
                n_in_block = [0] * model.cfg.blocks
                for e, (b, _) in enumerate(edges):
                    for k, name in enumerate(model.cfg.primitives):
                        if float(a_hat[e, k]) != 0.0 and name != "none":
                            target.ops[b][n_in_block[b]].load_state_dict(
                                fold_batchnorms(source.edges[e][k]).state_dict())
                            n_in_block[b] += 1
    return fused.eval()

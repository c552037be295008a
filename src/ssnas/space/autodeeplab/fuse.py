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

from ssnas.space.autodeeplab.cell import Cell, cell_edges
from ssnas.space.autodeeplab.network import EDGE_OFFSETS, OUTPUT_STRIDE, AutoDeepLab, levels_at
from ssnas.space.autodeeplab.heads import upsample_to

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


def fold_batchnorms(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in eval mode with every Conv2d → BatchNorm2d pair of an ``nn.Sequential`` folded."""
    module = copy.deepcopy(module).eval()
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        kids = list(seq)
        for n in range(len(kids) - 1):
            if isinstance(kids[n], nn.Conv2d) and isinstance(kids[n + 1], nn.BatchNorm2d):
                seq[n] = fold_conv_bn(kids[n], kids[n + 1])
                seq[n + 1] = nn.Identity()
    return module


class FusedAutoDeepLab(nn.Module):
    """The discrete network: stem, the kept cells of every node with their β̂, the four ASPP heads."""

    def __init__(self, stem: nn.Module, cells: nn.ModuleList, weights: list, channels: list, prev_prev: list,
                 heads: nn.ModuleList):
        super().__init__()
        self.stem, self.cells, self.heads = stem, cells, heads
        self.weights = weights        # weights[t][i][key] = β̂ of the transition
        self.channels = channels      # channels[t][i] = output channels of node (t + 1, i)
        self.prev_prev = prev_prev    # prev_prev[t][i] = level of the H^{l-2} input of node (t + 1, i)

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
                s0 = nodes[t][self.prev_prev[t][i]]
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


def _fuse_cell(cell, a_hat: Tensor, primitives) -> Cell:
    ops, spec = [[] for _ in range(cell.blocks)], [[] for _ in range(cell.blocks)]
    for e, (b, j) in enumerate(cell_edges(cell.blocks)):
        for k, name in enumerate(primitives):
            weight = float(a_hat[e, k])
            if weight != 0.0 and name != "none":
                ops[b].append(fold_batchnorms(cell.edges[e][k]))
                spec[b].append((j, weight))
    return Cell(fold_batchnorms(cell.pre0), fold_batchnorms(cell.pre1), ops, spec)


@torch.no_grad()
def fuse(model: AutoDeepLab) -> FusedAutoDeepLab:
    """The fused network of ``model`` (its current masks: discretize first for the decoded architecture)."""
    a_hat, b_hat = model.alpha_hat(), model.beta_hat()
    cells, weights, channels, prev_prev = nn.ModuleList(), [], [], []
    for t, layer in enumerate(model.cells):
        fused_layer, w_layer, c_layer, pp_layer = nn.ModuleList(), [], [], []
        for i, slots in enumerate(layer):
            kept = nn.ModuleDict()
            w_node = {}
            for key, cell in slots.items():
                beta = float(b_hat[t, i, int(key)])
                if beta != 0.0:
                    kept[key] = _fuse_cell(cell, a_hat, model.cfg.primitives)
                    w_node[key] = beta
            fused_layer.append(kept)
            w_layer.append(w_node)
            c_layer.append(model.node_channels(t + 1, i))
            pp_layer.append(model.prev_prev_level(t + 1, i))
        cells.append(fused_layer)
        weights.append(w_layer)
        channels.append(c_layer)
        prev_prev.append(pp_layer)
    return FusedAutoDeepLab(fold_batchnorms(model.stem), cells, weights, channels, prev_prev,
                            fold_batchnorms(model.heads)).eval()

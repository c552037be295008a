"""Auto-DeepLab's cell (Liu et al., CVPR 2019, §3.1): B blocks over the cell's two inputs and earlier blocks.

A cell at layer l takes H^{l-1} (the transition's source, any of strides s/2, s, 2s) and H^{l-2} (the same
stride, two layers back). Each is resampled to the cell's stride and projected by a 1×1 ReLU-Conv-BN to the
block width C. Block b sums one operation per candidate input j ∈ {H^{l-2}, H^{l-1}, H_1 … H_{b-1}}; the
cell's output is the concatenation of its B blocks (B·C channels).

Search (continuous relaxation, Auto-DeepLab Eq. 2 = DARTS): every edge (b, j) carries all candidate
operations, weighted by α̂ (a softmax per edge over the 8 operations); one α is shared by every cell of the
network. Decoded (Auto-DeepLab §3.3, DARTS): each block keeps its 2 strongest inputs and, on each, its
strongest operation other than ``none`` — :class:`Cell` is that discrete form (also the retrained cell).

The operations are ssnas's DARTS implementations (the ``OPS`` registry, ``ssnas/ops/darts.py``), at stride 1:
resampling happens once per input, before or after the 1×1 projection (at the finer of the two resolutions,
as the released Auto-DeepLab does its 1×1 before the stride-2 operations). Every block folds itself for
export (``fuse()``; the relaxed cell's takes α̂).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.ops import build_op
from ssnas.ops.darts import ReLUConvBN
from ssnas.ops.fold import fuse_module

# Auto-DeepLab's 8 operations (§3.1), in DARTS's names: depthwise-separable 3×3/5×5, atrous (dilated) 3×3/5×5
# with rate 2, 3×3 average and max pooling, skip connection, none (zero).
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
INPUTS_PER_BLOCK = 2     # a decoded block sums two operations on two inputs (Auto-DeepLab's 5-tuple)


def cell_edges(blocks: int) -> list[tuple[int, int]]:
    """(block, input) of every edge of the relaxed cell, in α's row order; input 0 is H^{l-2}, 1 is H^{l-1},
    2 + k is block k's output."""
    return [(b, j) for b in range(blocks) for j in range(2 + b)]


def fuse_tree(module: nn.Module) -> nn.Module:
    """``ssnas.ops.fold.fuse_module`` through containers: a module that folds itself (``fuse()``) or a
    Sequential is folded by ``fuse_module``; a ModuleList / ModuleDict or any other module with children is
    copied with each child folded; a leaf is copied. Same eval-mode output, BatchNorms folded."""
    if callable(getattr(module, "fuse", None)) or isinstance(module, (nn.Sequential, nn.modules.batchnorm._BatchNorm)):
        return fuse_module(module)
    children = dict(module.named_children())
    if not children:
        return copy.deepcopy(module)
    out = copy.copy(module)          # the module's own attributes; its children replaced below
    out._parameters, out._buffers = copy.deepcopy(module._parameters), copy.deepcopy(module._buffers)
    out._modules = {name: fuse_tree(child) for name, child in children.items()}
    return out.eval()


def resample(x: Tensor, size) -> Tensor:
    """Bilinear resize to ``size`` (H, W), a no-op when it already has it."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class Preprocess(nn.Module):
    """A cell input: resample to the cell's resolution and project with a 1×1 ReLU-Conv-BN to C channels.

    The 1×1 runs at the finer of the two resolutions: after upsampling, before downsampling (the released
    Auto-DeepLab projects at the input's resolution, then its first operations stride by 2)."""

    def __init__(self, cin: int, cout: int, affine: bool, op: nn.Module | None = None):
        super().__init__()
        self.op = ReLUConvBN(cin, cout, 1, 1, 0, affine=affine) if op is None else op

    def forward(self, x: Tensor, size) -> Tensor:
        if x.shape[-1] > size[-1]:
            return resample(self.op(x), size)
        return self.op(resample(x, size))

    def fuse(self) -> "Preprocess":
        return Preprocess(0, 0, False, op=fuse_module(self.op))


class SearchCell(nn.Module):
    """The relaxed cell: every edge holds all operations; ``forward`` mixes them with α̂ (rows: ``cell_edges``)."""

    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, blocks: int, primitives=PRIMITIVES):
        super().__init__()
        self.blocks, self.channels = blocks, channels
        self.primitives = tuple(primitives)
        self.pre0 = Preprocess(c_prev_prev, channels, affine=False)   # DARTS: no affine BN in the search
        self.pre1 = Preprocess(c_prev, channels, affine=False)
        self.edges = nn.ModuleList(
            nn.ModuleList(build_op(p, channels, 1) for p in self.primitives) for _ in cell_edges(blocks))

    def forward(self, s0: Tensor, s1: Tensor, size, alpha_hat: Tensor) -> Tensor:
        """s0 = H^{l-2}, s1 = H^{l-1} (any resolution), ``alpha_hat`` (edges, ops); every op runs, so a masked
        op (weight exactly 0) adds exactly 0 and the pass needs no data-dependent branching."""
        states = [self.pre0(s0, size), self.pre1(s1, size)]
        e = 0
        for b in range(self.blocks):
            block = None
            for j in range(2 + b):
                for k, op in enumerate(self.edges[e]):
                    term = alpha_hat[e, k] * op(states[j])
                    block = term if block is None else block + term
                e += 1
            states.append(block)
        return torch.cat(states[2:], 1)

    def fuse(self, alpha_hat: Tensor) -> "Cell":
        """The discrete cell of this one under ``alpha_hat``: per block the operations with α̂ ≠ 0 (``none``
        adds exactly 0: dropped), weighted by α̂, folded (``spec(alpha_hat)``)."""
        ops, spec = [[] for _ in range(self.blocks)], self.spec(alpha_hat)
        for e, (b, _) in enumerate(cell_edges(self.blocks)):
            for k, name in enumerate(self.primitives):
                if float(alpha_hat[e, k]) != 0.0 and name != "none":
                    ops[b].append(fuse_module(self.edges[e][k]))
        return Cell(self.pre0.fuse(), self.pre1.fuse(), ops, [[(j, w) for j, _, w in block] for block in spec])

    def spec(self, alpha_hat: Tensor) -> list[list[list]]:
        """Per block, the kept ``[input, operation, α̂]`` (what :meth:`fuse` keeps), plain values."""
        blocks = [[] for _ in range(self.blocks)]
        for e, (b, j) in enumerate(cell_edges(self.blocks)):
            for k, name in enumerate(self.primitives):
                if float(alpha_hat[e, k]) != 0.0 and name != "none":
                    blocks[b].append([j, name, float(alpha_hat[e, k])])
        return blocks


class Cell(nn.Module):
    """A discrete cell: block b = Σ over its kept (input, operation, weight) of weight · op(input).

    ``spec[b]`` is a list of ``(input, weight)`` matching ``ops[b]``. The retrained network has 2 ops per
    block with weight 1; a fused supernet keeps every op with α̂ ≠ 0, weighted by α̂ (1 after decoding).
    A block without ops is zero (all its edges were dropped)."""

    def __init__(self, pre0: nn.Module, pre1: nn.Module, ops: list[list[nn.Module]], spec: list[list[tuple]]):
        super().__init__()
        self.pre0, self.pre1 = pre0, pre1
        self.ops = nn.ModuleList(nn.ModuleList(block) for block in ops)
        self.spec = [[(int(j), float(w)) for j, w in block] for block in spec]

    def forward(self, s0: Tensor, s1: Tensor, size) -> Tensor:
        states = [self.pre0(s0, size), self.pre1(s1, size)]
        for block_ops, block_spec in zip(self.ops, self.spec):
            out = None
            for op, (j, w) in zip(block_ops, block_spec):
                y = op(states[j])
                y = y if w == 1.0 else y * w
                out = y if out is None else out + y
            states.append(torch.zeros_like(states[1]) if out is None else out)
        return torch.cat(states[2:], 1)

    def fuse(self) -> "Cell":
        return Cell(self.pre0.fuse(), self.pre1.fuse(), [[fuse_module(op) for op in block] for block in self.ops],
                    self.spec)

"""The grid's deployable network (``FusedSegNet``) and how a trained grid supernet folds into it.

Under the single-stage protocol the trained supernet *is* the final model, so deployment only needs to
remove what the architecture adds. Everything folded here is an exact rewrite of the eval-mode forward;
each block folds itself (``fuse()``) and this module only assembles the pieces:

- BatchNorm (running statistics) into the preceding convolution (``ssnas.ops.fold``).
- α̂ (Eq. 3) into the cell's blocks (``Cell.fuse``: the kernel mixture's superkernel cropped to the largest
  kernel with α̂_k ≠ 0; the output mixture's blocks scaled by α̂_k, those with α̂_k = 0 dropped).
- β̂ (Eq. 1-2) into the 1×1 conv of each edge P (``ShapeAlign.fold``). Edges at the target resolution
  (same level, down) run as one conv over their concatenated inputs (measured faster than separate convs,
  ``docs/benchmarks.md``); the up edge convolves at the coarse resolution, then upsamples (a 1×1 conv and BN
  commute with bilinear interpolation, whose weights sum to 1).
- Channel sampling's channel shuffle is a fixed permutation: it is folded into the input channels of the
  consumers (edge convs of the next layer, the head), so the fused cell just concatenates.
- Edges with β̂ = 0 (after ``discretize``/``prune_edges``) are dropped, and so are cells (and stem
  branches) whose output then reaches the head through no edge at all.

The fused net is described by a ``spec`` of plain values, so a weights-only file rebuilds it without the
supernet code (``ssnas.export.load_fused``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.ops.fold import permute_inputs, set_conv
from ssnas.space.base import FUSED_FORMAT, FUSED_VERSION
from ssnas.space.operations import FusedBlock
from ssnas.space.topology import DOWN, EDGE_OFFSETS, EDGE_SLOTS, UP, edge_source, pad_to_stride, stride


def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=True)


def cell_output(x: Tensor, blocks: nn.ModuleList, op_channels: int) -> Tensor:
    """A fused cell's output from its input ``x`` (Eq. 3 with the mixture folded): the first ``op_channels``
    (the sampled ones) plus each kept block's output on them; the other channels pass unchanged (the channel
    shuffle is folded into the consumers)."""
    sampled = x if op_channels == x.shape[1] else x[:, :op_channels]
    y = sampled
    for block in blocks:
        y = y + block(sampled)
    return y if op_channels == x.shape[1] else torch.cat([y, x[:, op_channels:]], 1)


class FusedCell(nn.Module):
    """Eq. 1 with β̂ folded into the edge convs, then Eq. 3 with α̂ folded into the blocks."""

    def __init__(self, widths: list[int], level: int, spec: dict, merge_edges: bool = True):
        super().__init__()
        self.edges = list(spec["edges"])
        self.op_channels = spec["op_channels"]
        channels = widths[level]
        fine = [widths[level + EDGE_OFFSETS[j]] for j in self.edges if j != UP]
        self.merged = merge_edges and len(fine) > 1
        self.fine = nn.ModuleList([_conv(sum(fine), channels)] if self.merged else [_conv(c, channels) for c in fine])
        self.up = _conv(widths[level + 1], channels) if UP in self.edges else None
        self.blocks = nn.ModuleList(FusedBlock(self.op_channels, b["hidden"], b["kernel"], b["squeeze_excite"])
                                    for b in spec["blocks"])

    def forward(self, fine: list[Tensor], coarse: Tensor | None, size: list[int]) -> Tensor:
        x = None
        if self.merged:
            x = self.fine[0](torch.cat(fine, 1))
        else:
            for conv, f in zip(self.fine, fine):
                x = conv(f) if x is None else x + conv(f)
        if self.up is not None:
            u = F.interpolate(self.up(coarse), size=size, mode="bilinear", align_corners=False)
            x = u if x is None else x + u
        return cell_output(x, self.blocks, self.op_channels)


class FusedNetwork(nn.Module):
    """What every fused space shares: stem → ``layers`` of live cells → head, rebuilt from a plain-value
    ``spec``. A space adds how its cells are built (``make_cell``) and fed (``run_layers``)."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = spec
        widths = spec["widths"]
        self.stem = nn.ModuleDict()
        for i in spec["stem"]:
            half = max(1, widths[i] // 2)
            self.stem[str(i)] = nn.Sequential(_conv(spec["in_channels"], half, 3, 2), nn.ReLU(),
                                              _conv(half, half, 3, 1), nn.ReLU(),
                                              _conv(half, widths[i], 3, 2), nn.ReLU())
        self.layers = nn.ModuleList(
            nn.ModuleDict({str(i): self.make_cell(i, c) for i, c in enumerate(row) if c is not None})
            for row in spec["cells"])
        self.head_fuse = _conv(sum(widths), spec["head_channels"])
        self.classifier = _conv(spec["head_channels"], spec["num_classes"])

    def make_cell(self, level: int, cell_spec: dict) -> nn.Module:
        raise NotImplementedError

    def run_layers(self, feats: list, size: tuple) -> list:
        """The stem's outputs per level (None where pruned) → the last layer's; ``size``: the padded input's."""
        raise NotImplementedError

    def num_edges(self) -> int:
        return sum(len(c["edges"]) for row in self.spec["cells"] for c in row if c)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pad_to_stride(x, always=True)   # cropped back below, unconditionally too (exported graphs)
        feats: list[Tensor | None] = [None] * len(self.spec["widths"])
        for key, branch in self.stem.items():
            i = int(key)
            xi = x if i == 0 else F.interpolate(x, scale_factor=0.5 ** i, mode="bilinear", align_corners=False)
            feats[i] = branch(xi)
        feats = self.run_layers(feats, x.shape[-2:])
        base = feats[0].shape[-2:]
        ups = [feats[0]] + [F.interpolate(f, size=base, mode="bilinear", align_corners=False) for f in feats[1:]]
        logits = self.classifier(F.relu(self.head_fuse(torch.cat(ups, 1))))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


class FusedSegNet(FusedNetwork):
    """The deployable grid network: stem → live cells → head, no architecture parameters."""

    def make_cell(self, level: int, cell_spec: dict) -> nn.Module:
        return FusedCell(self.spec["widths"], level, cell_spec, self.spec["merge_edges"])

    def run_layers(self, feats: list, size: tuple) -> list:
        for cells in self.layers:
            act = [None if f is None else F.relu(f) for f in feats]
            out: list[Tensor | None] = [None] * len(feats)
            for key, cell in cells.items():
                i = int(key)
                fine = [F.avg_pool2d(act[i - 1], 2) if j == DOWN else act[i] for j in cell.edges if j != UP]
                coarse = act[i + 1] if UP in cell.edges else None
                out[i] = cell(fine, coarse, [size[0] // stride(i), size[1] // stride(i)])
            feats = out
        return feats


def live_cells(edge_on: Tensor, slots) -> list[list[bool]]:
    """Cells whose output reaches the head through kept edges; index 0 is the stem, l+1 the layer l.
    ``slots[s]``: (layers back, level offset) of the edge in slot s of β's last axis (the grid's:
    ``topology.EDGE_SLOTS``; a dense space's reach further back)."""
    layers, levels = edge_on.shape[:2]
    live = [[False] * levels for _ in range(layers + 1)]
    live[layers] = [True] * levels
    for l in range(layers - 1, -1, -1):
        for i in range(levels):
            if live[l + 1][i]:
                for s, (d, off) in enumerate(slots):
                    if edge_on[l, i, s]:
                        live[l + 1 - d][i + off] = True
    return live


def fold_live_cells(cells, a_hat: Tensor, edge_on: Tensor, live: list[list[bool]]) -> tuple[dict, list]:
    """α̂ folded into every live cell's blocks (``Cell.fuse``), and the cells' spec rows: kept incoming edges
    (indices into ``edge_on``'s last axis), sampled channels, block specs; None for a dead cell. Shared by the
    folds of the grid-like spaces (grid, dense)."""
    blocks, spec_cells = {}, []
    for l, layer in enumerate(cells):
        row = []
        for i, cell in enumerate(layer):
            if not live[l + 1][i]:
                row.append(None)
                continue
            blocks[l, i] = cell.fuse(a_hat[l, i])
            row.append(dict(edges=[j for j in range(edge_on.shape[-1]) if edge_on[l, i, j]],
                            op_channels=cell.op_channels, blocks=[b.spec() for b in blocks[l, i]]))
        spec_cells.append(row)
    return blocks, spec_cells


@torch.no_grad()
def fuse_grid(model, merge_edges: bool = True) -> FusedSegNet:
    """Fold α̂, β̂, BN and the channel shuffle of a (trained) grid supernet into a :class:`FusedSegNet`.

    Exact in eval mode (the supernet's BN running statistics are used, whatever ``model.training`` is)."""
    cfg = model.cfg
    widths = cfg.widths
    a_hat, b_hat = model.alpha_hat().detach(), model.beta_hat().detach()
    edge_on = (b_hat != 0) & model.edge_mask
    live = live_cells(edge_on, EDGE_SLOTS)
    cells, edges = model.backbone.cells, model.backbone.edges
    blocks, spec_cells = fold_live_cells(cells, a_hat, edge_on, live)
    spec = dict(format=FUSED_FORMAT, version=FUSED_VERSION, in_channels=cfg.in_channels, num_classes=cfg.num_classes,
                widths=list(widths), head_channels=cfg.head_channels, merge_edges=merge_edges,
                stem=[i for i in range(len(widths)) if live[0][i]], cells=spec_cells)
    ref = next(model.parameters())
    fused = FusedSegNet(spec).to(device=ref.device, dtype=ref.dtype)

    for key in fused.stem:
        fused.stem[key] = model.stem.fuse(int(key))
    perms = [torch.arange(c) for c in widths]   # channel order of the previous layer's outputs
    for l, layer in enumerate(fused.layers):
        for key, fcell in layer.items():
            i = int(key)
            fine_w, bias = [], 0
            for j in fcell.edges:
                w, b = edges[l][i][str(j)].fold(b_hat[l, i, j])
                w = permute_inputs(w, perms[edge_source(i, j)])
                if j == UP:
                    set_conv(fcell.up, w, b)
                else:
                    fine_w.append(w)
                    bias = bias + b
            if fcell.merged:
                set_conv(fcell.fine[0], torch.cat(fine_w, 1), bias)
            else:
                for conv, w in zip(fcell.fine, fine_w):
                    set_conv(conv, w, bias if conv is fcell.fine[0] else torch.zeros_like(bias))
            fcell.blocks = blocks[l, i]
        perms = [cells[l][i].output_permutation() for i in range(len(widths))]
    head = model.head.reparameterize(perms)
    fused.head_fuse, fused.classifier = head[0], head[2]
    return fused.eval()

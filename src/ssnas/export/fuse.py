"""Fold a trained supernet into a plain network (``FusedSegNet``) with the same eval-mode logits.

Under the single-stage protocol the trained supernet *is* the final model, so deployment only needs to
remove what the architecture adds. Everything folded here is an exact rewrite of the eval-mode forward:

- BatchNorm (running statistics) into the preceding convolution: y = s·(Wx) + (b − s·μ), s = γ/√(σ²+ε).
- α̂ (Eq. 3), kernel mixture: the superkernel Σ_k α̂_k·W_k is one depthwise kernel; it is cropped to the
  largest kernel with α̂_k ≠ 0 (the rest of it is exactly zero). Output mixture: Σ_k α̂_k·o_k(x) with
  o_k(x) = x + project_k(…) and Σ_k α̂_k = 1 is x + Σ_k (α̂_k·project_k)(…); blocks with α̂_k = 0 are dropped.
- β̂ (Eq. 1-2) into the 1×1 conv of each edge P (every edge ends in 1×1 conv → BN, both linear). Edges at
  the target resolution (same level, down) run as one conv over their concatenated inputs (measured
  faster than separate convs, ``docs/benchmarks.md``); the up edge convolves at the coarse resolution,
  then upsamples (a 1×1 conv and BN commute with bilinear interpolation, whose weights sum to 1).
- Channel sampling's channel shuffle is a fixed permutation: it is folded into the input channels of the
  consumers (edge convs of the next layer, the head), so the fused cell just concatenates.
- Edges with β̂ = 0 (after ``discretize``/``prune_edges``) are dropped, and so are cells (and stem
  branches) whose output then reaches the head through no edge at all.

The fused net is described by a ``spec`` of plain values, so ``save_fused`` writes a weights-only file
(``torch.load(weights_only=True)``) that :func:`load_fused` rebuilds without the supernet code.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.engine.checkpoint import atomic_write_bytes
from ssnas.errors import UserError
from ssnas.space.backbone import EDGE_OFFSETS
from ssnas.space.operations import SqueezeExcite, channel_shuffle
from ssnas.space.supernet import OUTPUT_STRIDE

FORMAT = "ssnas-fused"
VERSION = 1
DOWN, SAME, UP = 0, 1, 2          # edge slots of β's last axis (EDGE_OFFSETS = -1, 0, +1)
FOLD_DTYPE = torch.float64        # fold in double precision, store in the model's dtype


# ---------------------------------------------------------------------------- modules
def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=True)


class FusedBlock(nn.Module):
    """One inverted bottleneck without its residual: project(SE(relu(dw(relu(expand(x)))))), BN folded."""

    def __init__(self, channels: int, hidden: int, kernel: int, squeeze_excite: bool):
        super().__init__()
        self.expand = _conv(channels, hidden)
        self.dw = _conv(hidden, hidden, kernel, groups=hidden)
        self.se = SqueezeExcite(hidden) if squeeze_excite else nn.Identity()
        self.project = _conv(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.dw(F.relu(self.expand(x))))
        return self.project(self.se(h))


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
        sampled = x if self.op_channels == x.shape[1] else x[:, : self.op_channels]
        y = sampled
        for block in self.blocks:
            y = y + block(sampled)
        if self.op_channels == x.shape[1]:
            return y
        return torch.cat([y, x[:, self.op_channels:]], 1)   # the shuffle is folded into the consumers


class FusedSegNet(nn.Module):
    """The deployable network: stem → live cells → head, no architecture parameters."""

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
        self.layers = nn.ModuleList()
        for layer in spec["cells"]:
            self.layers.append(nn.ModuleDict({str(i): FusedCell(widths, i, c, spec["merge_edges"])
                                              for i, c in enumerate(layer) if c is not None}))
        self.head_fuse = _conv(sum(widths), spec["head_channels"])
        self.classifier = _conv(spec["head_channels"], spec["num_classes"])

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        # pad to a multiple of the coarsest stride, crop the logits back: unconditionally, so that an
        # exported graph (traced at one size) stays valid for every size
        x = F.pad(x, (0, (-w) % OUTPUT_STRIDE, 0, (-h) % OUTPUT_STRIDE))
        feats: list[Tensor | None] = [None] * len(self.spec["widths"])
        for key, branch in self.stem.items():
            i = int(key)
            xi = x if i == 0 else F.interpolate(x, scale_factor=0.5 ** i, mode="bilinear", align_corners=False)
            feats[i] = branch(xi)
        for cells in self.layers:
            act = [None if f is None else F.relu(f) for f in feats]
            out: list[Tensor | None] = [None] * len(feats)
            for key, cell in cells.items():
                i = int(key)
                fine = [F.avg_pool2d(act[i - 1], 2) if j == DOWN else act[i] for j in cell.edges if j != UP]
                size = [x.shape[-2] // (4 * 2 ** i), x.shape[-1] // (4 * 2 ** i)]
                out[i] = cell(fine, act[i + 1] if UP in cell.edges else None, size)
            feats = out
        base = feats[0].shape[-2:]
        ups = [feats[0]] + [F.interpolate(f, size=base, mode="bilinear", align_corners=False) for f in feats[1:]]
        logits = self.classifier(F.relu(self.head_fuse(torch.cat(ups, 1))))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


# ---------------------------------------------------------------------------- folding
def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as y = s·x + t."""
    s = bn.weight.to(FOLD_DTYPE) / torch.sqrt(bn.running_var.to(FOLD_DTYPE) + bn.eps)
    return s, bn.bias.to(FOLD_DTYPE) - s * bn.running_mean.to(FOLD_DTYPE)


def _fold(weight: Tensor, bn: nn.BatchNorm2d, scale: float | Tensor = 1.0) -> tuple[Tensor, Tensor]:
    """scale · BN(conv_weight * x) as one conv (weight, bias)."""
    s, t = _bn_scale_shift(bn)
    scale = torch.as_tensor(scale, dtype=FOLD_DTYPE)
    return weight.to(FOLD_DTYPE) * (s * scale).view(-1, 1, 1, 1), t * scale


def _set(conv: nn.Conv2d, weight: Tensor, bias: Tensor) -> None:
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)


def _shuffle_perm(cell) -> Tensor:
    """p with shuffled[:, c] = concatenated[:, p[c]] (identity without channel sampling)."""
    idx = torch.arange(cell.channels, dtype=torch.float64).view(1, -1, 1, 1)
    if cell.op_channels == cell.channels:
        return idx.flatten().long()
    return channel_shuffle(idx, cell.groups).flatten().long()


def _permute_inputs(weight: Tensor, perm: Tensor) -> Tensor:
    """Weight for the unshuffled input: W'[:, p[c]] = W[:, c]."""
    out = torch.empty_like(weight)
    out[:, perm] = weight
    return out


def _live_cells(edge_on: Tensor) -> list[list[bool]]:
    """Cells whose output reaches the head through kept edges; index 0 is the stem, l+1 the layer l."""
    layers, levels = edge_on.shape[:2]
    live = [[False] * levels for _ in range(layers + 1)]
    live[layers] = [True] * levels
    for l in range(layers - 1, -1, -1):
        for i in range(levels):
            if live[l + 1][i]:
                for j, off in enumerate(EDGE_OFFSETS):
                    if edge_on[l, i, j]:
                        live[l][i + off] = True
    return live


def _cell_spec(cell, a_hat: Tensor, edges: list[int]) -> dict:
    if cell.mixture == "kernel":
        op = cell.ops[0]
        kept = [k for k, a in zip(op.dw.kernel_sizes, a_hat) if a != 0]
        blocks = [dict(kernel=max(kept), hidden=op.dw.weights[0].shape[0],
                       squeeze_excite=isinstance(op.se, SqueezeExcite))]
    else:
        blocks = [dict(kernel=op.dw.kmax, hidden=op.dw.weights[0].shape[0],
                       squeeze_excite=isinstance(op.se, SqueezeExcite))
                  for op, a in zip(cell.ops, a_hat) if a != 0]
    return dict(edges=edges, op_channels=cell.op_channels, blocks=blocks)


def _fill_block(block: FusedBlock, op, kernel: Tensor, scale: Tensor) -> None:
    """Copy one supernet inverted bottleneck (depthwise kernel already α̂-mixed) into ``block``."""
    _set(block.expand, *_fold(op.expand[0].weight, op.expand[1]))
    k = block.dw.kernel_size[0]
    p = (kernel.shape[-1] - k) // 2
    _set(block.dw, *_fold(kernel[..., p:p + k, p:p + k], op.dw_bn))
    if isinstance(op.se, SqueezeExcite):
        block.se.load_state_dict(op.se.state_dict())
    _set(block.project, *_fold(op.project[0].weight, op.project[1], scale))


@torch.no_grad()
def fuse_supernet(model, merge_edges: bool = True) -> FusedSegNet:
    """Fold α̂, β̂, BN and the channel shuffle of a (trained) supernet into a :class:`FusedSegNet`.

    Exact in eval mode (the supernet's BN running statistics are used, whatever ``model.training`` is)."""
    cfg = model.cfg
    widths = cfg.widths
    a_hat, b_hat = model.alpha_hat().detach(), model.beta_hat().detach()
    edge_on = (b_hat != 0) & model.edge_mask
    live = _live_cells(edge_on)
    cells = model.backbone.cells
    spec_cells = []
    for l in range(cfg.layers):
        row = []
        for i in range(len(widths)):
            edges = [j for j in range(len(EDGE_OFFSETS)) if edge_on[l, i, j]]
            row.append(_cell_spec(cells[l][i], a_hat[l, i], edges) if live[l + 1][i] else None)
        spec_cells.append(row)
    spec = dict(format=FORMAT, version=VERSION, in_channels=cfg.in_channels, num_classes=cfg.num_classes,
                widths=list(widths), head_channels=cfg.head_channels, merge_edges=merge_edges,
                stem=[i for i in range(len(widths)) if live[0][i]], cells=spec_cells)
    ref = next(model.parameters())
    fused = FusedSegNet(spec).to(device=ref.device, dtype=ref.dtype)

    for key, branch in fused.stem.items():
        src = model.stem.branches[int(key)]
        for dst_conv, conv_bn in zip(branch[0::2], src):
            _set(dst_conv, *_fold(conv_bn[0].weight, conv_bn[1]))

    perms = [torch.arange(c) for c in widths]   # channel order of the previous layer's outputs
    for l, layer in enumerate(fused.layers):
        for key, fcell in layer.items():
            i = int(key)
            edges = model.backbone.edges[l][i]
            fine_w, bias = [], 0
            for j in fcell.edges:
                w, b = _fold(edges[str(j)].conv.weight, edges[str(j)].bn, b_hat[l, i, j])
                w = _permute_inputs(w, perms[i + EDGE_OFFSETS[j]])
                if j == UP:
                    _set(fcell.up, w, b)
                else:
                    fine_w.append(w)
                    bias = bias + b
            if fcell.merged:
                _set(fcell.fine[0], torch.cat(fine_w, 1), bias)
            else:
                for conv, w in zip(fcell.fine, fine_w):
                    _set(conv, w, bias if conv is fcell.fine[0] else torch.zeros_like(bias))
            cell = cells[l][i]
            if cell.mixture == "kernel":
                op = cell.ops[0]
                _fill_block(fcell.blocks[0], op, op.dw.superkernel(a_hat[l, i]), torch.ones(()))
            else:
                kept = [(op, a) for op, a in zip(cell.ops, a_hat[l, i]) if a != 0]
                for block, (op, a) in zip(fcell.blocks, kept):
                    _fill_block(block, op, op.dw.superkernel(None), a.to(FOLD_DTYPE))
        perms = [_shuffle_perm(cells[l][i]) for i in range(len(widths))]

    w, b = _fold(model.head.fuse[0].weight, model.head.fuse[1])
    offsets = [0]
    for c in widths:
        offsets.append(offsets[-1] + c)
    w = torch.cat([_permute_inputs(w[:, offsets[i]:offsets[i + 1]], perms[i]) for i in range(len(widths))], 1)
    _set(fused.head_fuse, w, b)
    fused.classifier.load_state_dict(model.head.classifier.state_dict())
    return fused.eval()


# ---------------------------------------------------------------------------- files
def save_fused(fused: FusedSegNet, path: str | Path, classes: dict | None = None,
               preprocessing: dict | None = None) -> None:
    """Write ``{"format", "version", "spec", "state_dict", "classes", "preprocessing"}`` atomically
    (weights-only loadable)."""
    payload = dict(format=FORMAT, version=VERSION, spec=fused.spec, classes=classes, preprocessing=preprocessing,
                   state_dict={k: v.detach().cpu() for k, v in fused.state_dict().items()})
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


def load_fused(path: str | Path, map_location: str | torch.device = "cpu") -> FusedSegNet:
    """Rebuild a :class:`FusedSegNet` from a file of :func:`save_fused` (eval mode; ``.classes`` and
    ``.preprocessing`` attached)."""
    from ssnas.engine.checkpoint import read_weights_only

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: fused model not found")
    return fused_from_payload(read_weights_only(path, map_location), path).to(map_location)


def fused_from_payload(payload: dict, path: str | Path) -> FusedSegNet:
    """The :class:`FusedSegNet` of a loaded fused-model dict (``spec``, ``state_dict``, ``classes``, …)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an ssnas fused model (no '{FORMAT}' header)")
    if int(payload.get("version", 0)) > VERSION:
        raise UserError(f"{path}: fused model version {payload['version']} is newer than this ssnas ({VERSION})")
    try:
        fused = FusedSegNet(payload["spec"])
        fused.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: fused model spec and weights do not fit ({str(exc).splitlines()[0][:160]})") \
            from None
    fused.classes = payload.get("classes")
    fused.preprocessing = payload.get("preprocessing")
    return fused.eval()

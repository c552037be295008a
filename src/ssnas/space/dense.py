"""The ``dense`` search space: the grid's stem, cells, operations and head with long-range connections.

The paper's future work (§5: "efficiently incorporate long-range connections into the search space"), in
the manner of DCNAS's densely connected space. A cell at layer l and level i may take input from every
cell of the previous ``k`` layers (the stem is layer 0) at every level i' with |i' − i| ≤ ``span``:

    X_i^l = Σ_{d=1..k} Σ_{|i'-i| ≤ span} P_{i'→i}(Y_{i'}^{l-d}) · β̂^l_{(d,i')→i}    (Eq. 1, generalized)

and β̂ is a softmax over *all* of the cell's incoming transmissions (Eq. 2, generalized; transmissions
from before the stem or from a level outside 0..3 are masked). β has shape (L, 4, k·(2·span+1)), one slot
per (d, Δ = i' − i), ordered by d, then Δ — so k = 1, span = 1 is exactly the grid's (L, 4, 3) with
slots (s/2, s, 2s), its parameter names included (``tests/test_dense.py`` compares the two).

Memory: the forward pass keeps the activations of only the last k layers (a ring of k), not all of them.
P for a jump of |Δ| levels resamples by 2^|Δ| (average pooling down, bilinear up) around the same
ReLU → 1×1 conv → BN as the grid's.

Export (:meth:`DenseSuperNet.fuse`): β̂, α̂, BN and the channel shuffle fold exactly as in the grid
(``export/fuse.py``); transmissions into a cell from its own or finer levels run as one 1×1 conv over
their concatenated, pooled inputs, those from each coarser level as one conv at that level's resolution,
then one upsampling (conv and BN commute with bilinear interpolation and with average pooling).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.arch import masked_softmax
from ssnas.errors import UserError
from ssnas.space.backbone import LEVELS, ShapeAlign
from ssnas.space.cell import Cell
from ssnas.space.head import SegmentationHead
from ssnas.space.stem import MultiScaleStem
from ssnas.space.supernet import ARCH_INIT_STD, OUTPUT_STRIDE, SpaceConfig, SuperNet

NAME = "dense"
DEFAULT_K = 2                # layers back a cell may read from (1 = the grid's consecutive layers)
DEFAULT_SPAN = LEVELS - 1    # levels away a cell may read from (3 = every level, as DCNAS's dense space)


@dataclass
class DenseSpaceConfig(SpaceConfig):
    """The grid's hyperparameters plus the reach of a cell's inputs: ``dense_k`` layers, ``level_span`` levels."""
    dense_k: int = DEFAULT_K
    level_span: int = DEFAULT_SPAN

    def to_dict(self) -> dict:
        return {**super().to_dict(), "space": NAME}


def dense_slots(k: int, span: int) -> list[tuple[int, int]]:
    """β's last axis: (layers back d, level offset Δ), d = 1..k, Δ = -span..span (k=1, span=1: the grid's)."""
    return [(d, off) for d in range(1, k + 1) for off in range(-span, span + 1)]


def exists(layer: int, level: int, slot: tuple[int, int], levels: int = LEVELS) -> bool:
    """Whether the transmission ``slot`` = (d, Δ) into the cell at (layer, level) has a source: layer - d + 1 ≥ 0
    (0 is the stem; ``layer`` counts from 0) and a level in 0..levels-1."""
    d, off = slot
    return layer + 1 - d >= 0 and 0 <= level + off < levels


def dense_valid_mask(layers: int, k: int, span: int, levels: int = LEVELS) -> Tensor:
    """(L, levels, k·(2·span+1)) bool: the transmissions that exist (see :func:`exists`)."""
    slots = dense_slots(k, span)
    return torch.tensor([[[exists(l, i, s, levels) for s in slots] for i in range(levels)] for l in range(layers)],
                        dtype=torch.bool)


def check_dense_keys(cfg: SpaceConfig, source: str, dense_k, level_span) -> tuple[int, int]:
    """``dense_k`` in 1..layers and ``level_span`` in 0..3 (defaults when None); one UserError line otherwise."""
    k = DEFAULT_K if dense_k is None else dense_k
    span = DEFAULT_SPAN if level_span is None else level_span
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= cfg.layers:
        raise UserError(f"{source}: dense_k={k!r}, expected an integer in [1, {cfg.layers}] (1..layers: how many "
                        f"previous layers a cell reads from)")
    if isinstance(span, bool) or not isinstance(span, int) or not 0 <= span <= LEVELS - 1:
        raise UserError(f"{source}: level_span={span!r}, expected an integer in [0, {LEVELS - 1}] (how many levels "
                        f"away a cell reads from)")
    return k, span


def dense_config(variant="small", dense_k: int | None = None, level_span: int | None = None,
                 **overrides) -> DenseSpaceConfig:
    """A variant (name, dict or SpaceConfig; validated as the grid's) with the dense space's two keys."""
    from ssnas.space.variants import space_config

    if isinstance(variant, SpaceConfig):
        source, base = "variant", variant
        dense_k = getattr(variant, "dense_k", None) if dense_k is None else dense_k
        level_span = getattr(variant, "level_span", None) if level_span is None else level_span
    else:
        source = variant if isinstance(variant, str) else "variant"
        if isinstance(variant, dict):   # e.g. a checkpoint's stored space: the grid's keys + ours
            variant = {key: v for key, v in variant.items() if key != "space"}
            stored_k, stored_span = variant.pop("dense_k", None), variant.pop("level_span", None)
            dense_k = stored_k if dense_k is None else dense_k
            level_span = stored_span if level_span is None else level_span
        base = space_config(variant, **overrides)
    fields = {f: getattr(base, f) for f in SpaceConfig.__dataclass_fields__}
    k, span = check_dense_keys(base, source, dense_k, level_span)
    return DenseSpaceConfig(**fields, dense_k=k, level_span=span)


class LongShapeAlign(ShapeAlign):
    """P across |Δ| levels: the grid's ReLU → (resample) → 1×1 conv → BN, resampling by 2^|Δ|.

    Down pools 2^Δ × 2^Δ; up interpolates bilinearly to the target size (conv first while training, as the
    grid's P does). For |Δ| ≤ 1 it is the grid's P, operation for operation."""

    def project(self, y: Tensor, size: tuple[int, int]) -> Tensor:
        if self.direction > 1:
            return self.bn(self.conv(F.avg_pool2d(y, 2 ** self.direction)))
        return super().project(y, size)


class DenseBackbone(nn.Module):
    """``cells[l][i]`` and ``edges[l][i][str(s)]`` for the valid slots s of :func:`dense_slots`."""

    def __init__(self, layers: int, widths: list[int], k: int, span: int, expansion: float, kernel_sizes,
                 mixture: str, sampling: float, squeeze_excite: bool, shared_kernels: bool = True):
        super().__init__()
        self.layers, self.widths, self.k = layers, list(widths), k
        self.slots = dense_slots(k, span)
        levels = len(widths)
        self.cells = nn.ModuleList()
        self.edges = nn.ModuleList()
        for l in range(layers):
            self.cells.append(nn.ModuleList(
                Cell(widths[i], expansion, kernel_sizes, mixture, sampling, squeeze_excite, shared_kernels)
                for i in range(levels)))
            self.edges.append(nn.ModuleList(
                nn.ModuleDict({str(s): LongShapeAlign(widths[i + slot[1]], widths[i], i + slot[1], i)
                               for s, slot in enumerate(self.slots) if exists(l, i, slot, levels)})
                for i in range(levels)))

    def forward(self, features: list[Tensor], alpha_hat: Tensor, beta_hat: Tensor) -> list[Tensor]:
        """features: the stem's 4 outputs (layer 0); returns the 4 outputs of the last layer.

        Only the last k layers' activations are held (``recent[-d]`` is layer l - d), each once: P's ReLU is
        applied once per source cell, not once per outgoing transmission."""
        recent: deque[list[Tensor]] = deque([[F.relu(f) for f in features]], maxlen=self.k)
        out = features
        for l in range(self.layers):
            out = []
            for i, cell in enumerate(self.cells[l]):
                size = recent[-1][i].shape[-2:]
                x = None
                for key, align in self.edges[l][i].items():
                    s = int(key)
                    d, off = self.slots[s]
                    term = align.project(recent[-d][i + off], size) * beta_hat[l, i, s]     # Eq. 1
                    x = term if x is None else x + term
                out.append(cell(x, alpha_hat[l, i]))                                       # Eq. 3
            if l + 1 < self.layers:
                recent.append([F.relu(o) for o in out])
        return out


class DenseSuperNet(SuperNet):
    """The grid's supernet (same stem, cells, head, α, masks and protocol) on the dense backbone."""

    def __init__(self, cfg: DenseSpaceConfig):
        nn.Module.__init__(self)
        self.cfg = cfg
        widths = cfg.widths
        self.stem = MultiScaleStem(widths, cfg.in_channels)
        self.backbone = DenseBackbone(cfg.layers, widths, cfg.dense_k, cfg.level_span, cfg.expansion,
                                      tuple(cfg.kernel_sizes), cfg.mixture, cfg.sampling, cfg.squeeze_excite,
                                      cfg.shared_kernels)
        self.head = SegmentationHead(widths, cfg.num_classes, cfg.head_channels)
        kernels, slots = len(cfg.kernel_sizes), len(self.backbone.slots)
        self.alpha = nn.Parameter(ARCH_INIT_STD * torch.randn(cfg.layers, LEVELS, kernels))
        self.beta = nn.Parameter(ARCH_INIT_STD * torch.randn(cfg.layers, LEVELS, slots))
        self.register_buffer("edge_mask", dense_valid_mask(cfg.layers, cfg.dense_k, cfg.level_span))
        self.register_buffer("op_mask", torch.ones(cfg.layers, LEVELS, kernels, dtype=torch.bool))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    @property
    def slots(self) -> list[tuple[int, int]]:
        return self.backbone.slots

    def beta_hat(self) -> Tensor:
        """Eq. 2 over all of a cell's incoming transmissions, masked."""
        return masked_softmax(self.beta, self.edge_mask)

    def arch_distributions(self) -> dict:
        L, K, S = self.cfg.layers, len(self.cfg.kernel_sizes), len(self.slots)
        return {
            "alpha": (self.alpha_hat().reshape(L * LEVELS, K), self.op_mask.reshape(L * LEVELS, K)),
            "beta": (self.beta_hat().reshape(L * LEVELS, S), self.edge_mask.reshape(L * LEVELS, S)),
        }

    # ----------------------------------------------------------------- discretization
    def discretize(self, edges_per_cell: int | None = 1, ops: bool = True) -> None:
        """The grid's :meth:`SuperNet.discretize` over the larger edge set: the top ``edges_per_cell``
        transmissions of each cell by β̂ (at most all of its valid ones)."""
        if edges_per_cell is not None:
            if edges_per_cell < 1:
                raise ValueError("edges_per_cell must be >= 1")
            with torch.no_grad():
                scores = self.beta_hat().masked_fill(~self.edge_mask, -1.0)
                top = scores.topk(min(edges_per_cell, len(self.slots)), dim=-1).indices
                keep = torch.zeros_like(self.edge_mask).scatter_(-1, top, True)
                self.edge_mask &= keep
        super().discretize(edges_per_cell=None, ops=ops)

    def prune_edges(self, fraction: float) -> int:
        """Drop the ``fraction`` of kept transmissions with the weakest β̂, never a cell's last one (as the grid's
        :meth:`SuperNet.prune_edges`, ranked over all slots of a cell)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        with torch.no_grad():
            mask = self.edge_mask.reshape(-1, len(self.slots)).clone()
            target = int(round(fraction * int(mask.sum())))
            scores = self.beta_hat().reshape(-1, len(self.slots))
            flat = torch.nonzero(mask.reshape(-1)).squeeze(1)
            order = flat[torch.argsort(scores.reshape(-1)[flat], stable=True)]
            per_cell = mask.sum(-1)
            dropped = 0
            for idx in order.tolist():
                if dropped >= target:
                    break
                cell, s = divmod(idx, len(self.slots))
                if per_cell[cell] > 1:
                    mask[cell, s] = False
                    per_cell[cell] -= 1
                    dropped += 1
            self.edge_mask.copy_(mask.reshape(self.edge_mask.shape))
        return dropped

    # ----------------------------------------------------------------- reading and export
    def describe_architecture(self) -> dict:
        """JSON-able: per cell α̂, its kernel and every valid transmission (from layer, stride, β̂, kept)."""
        from ssnas.arch import arch_entropies
        from ssnas.space.architecture import FORMAT, VERSION, stride

        with torch.no_grad():
            a_hat, b_hat = self.alpha_hat().cpu(), self.beta_hat().cpu()
        kernels = [int(k) for k in self.cfg.kernel_sizes]
        cells = []
        for l in range(self.cfg.layers):
            for i in range(LEVELS):
                a = a_hat[l, i].masked_fill(~self.op_mask[l, i].cpu(), -1.0)
                edges = [{"from_layer": l + 1 - d, "from_stride": stride(i + off), "beta_hat": float(b_hat[l, i, s]),
                          "kept": bool(self.edge_mask[l, i, s])}
                         for s, (d, off) in enumerate(self.slots) if exists(l, i, (d, off))]
                cells.append({"layer": l + 1, "level": i, "stride": stride(i),
                              "alpha_hat": {str(k): float(a_hat[l, i, n]) for n, k in enumerate(kernels)},
                              "kernel": kernels[int(a.argmax())], "edges": edges})
        return {"format": FORMAT, "version": VERSION, "space": NAME, "layers": self.cfg.layers,
                "dense_k": self.cfg.dense_k, "level_span": self.cfg.level_span,
                "strides": [stride(i) for i in range(LEVELS)], "kernel_sizes": kernels,
                "frozen": self.arch_frozen, "cells": cells, "entropy": arch_entropies(self)}

    def fuse(self) -> "FusedDenseNet":
        """The deployable network (:class:`FusedDenseNet`): same eval-mode logits, no α, β, BN."""
        return fuse_dense(self)


# ---------------------------------------------------------------------------- export
class FusedDenseCell(nn.Module):
    """Eq. 1 with β̂ folded into one conv over the same/finer sources and one per coarser source level, then
    the fused cell body (``export/fuse.py``'s blocks, α̂ folded)."""

    def __init__(self, widths: list[int], level: int, spec: dict, slots: list):
        super().__init__()
        from ssnas.export.fuse import FusedBlock, _conv

        self.edges = list(spec["edges"])
        self.op_channels = spec["op_channels"]
        channels = widths[level]
        self.fine = [s for s in self.edges if slots[s][1] <= 0]                 # same level and finer: pooled
        self.up_levels = sorted({level + slots[s][1] for s in self.edges if slots[s][1] > 0})
        self.up = {lvl: [s for s in self.edges if level + slots[s][1] == lvl] for lvl in self.up_levels}
        self.fine_conv = _conv(sum(widths[level + slots[s][1]] for s in self.fine), channels) if self.fine else None
        self.up_convs = nn.ModuleList(_conv(widths[lvl] * len(self.up[lvl]), channels) for lvl in self.up_levels)
        self.blocks = nn.ModuleList(FusedBlock(self.op_channels, b["hidden"], b["kernel"], b["squeeze_excite"])
                                    for b in spec["blocks"])

    def forward(self, fine: list[Tensor], coarse: list[list[Tensor]], size: list[int]) -> Tensor:
        x = self.fine_conv(torch.cat(fine, 1)) if self.fine_conv is not None else None
        for conv, group in zip(self.up_convs, coarse):
            u = F.interpolate(conv(torch.cat(group, 1)), size=size, mode="bilinear", align_corners=False)
            x = u if x is None else x + u
        sampled = x if self.op_channels == x.shape[1] else x[:, : self.op_channels]
        y = sampled
        for block in self.blocks:
            y = y + block(sampled)
        if self.op_channels == x.shape[1]:
            return y
        return torch.cat([y, x[:, self.op_channels:]], 1)   # the shuffle is folded into the consumers


class FusedDenseNet(nn.Module):
    """The fused dense network: stem → live cells (reading the last k layers) → head; a plain-value ``spec``."""

    def __init__(self, spec: dict):
        super().__init__()
        from ssnas.export.fuse import _conv

        self.spec = spec
        widths = spec["widths"]
        self.slots = [tuple(s) for s in spec["slots"]]
        self.k = max(d for d, _ in self.slots)
        self.stem = nn.ModuleDict()
        for i in spec["stem"]:
            half = max(1, widths[i] // 2)
            self.stem[str(i)] = nn.Sequential(_conv(spec["in_channels"], half, 3, 2), nn.ReLU(),
                                              _conv(half, half, 3, 1), nn.ReLU(),
                                              _conv(half, widths[i], 3, 2), nn.ReLU())
        self.layers = nn.ModuleList(
            nn.ModuleDict({str(i): FusedDenseCell(widths, i, c, self.slots)
                           for i, c in enumerate(row) if c is not None})
            for row in spec["cells"])
        self.head_fuse = _conv(sum(widths), spec["head_channels"])
        self.classifier = _conv(spec["head_channels"], spec["num_classes"])

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % OUTPUT_STRIDE, 0, (-h) % OUTPUT_STRIDE))
        levels = len(self.spec["widths"])
        feats: list[Tensor | None] = [None] * levels
        for key, branch in self.stem.items():
            i = int(key)
            xi = x if i == 0 else F.interpolate(x, scale_factor=0.5 ** i, mode="bilinear", align_corners=False)
            feats[i] = branch(xi)
        recent: deque[list] = deque(maxlen=self.k)
        for cells in self.layers:
            recent.append([None if f is None else F.relu(f) for f in feats])
            out: list[Tensor | None] = [None] * levels
            for key, cell in cells.items():
                i = int(key)
                fine = []
                for s in cell.fine:
                    d, off = self.slots[s]
                    src = recent[-d][i + off]
                    fine.append(F.avg_pool2d(src, 2 ** -off) if off else src)
                coarse = [[recent[-self.slots[s][0]][lvl] for s in cell.up[lvl]] for lvl in cell.up_levels]
                size = [x.shape[-2] // (4 * 2 ** i), x.shape[-1] // (4 * 2 ** i)]
                out[i] = cell(fine, coarse, size)
            feats = out
        base = feats[0].shape[-2:]
        ups = [feats[0]] + [F.interpolate(f, size=base, mode="bilinear", align_corners=False) for f in feats[1:]]
        logits = self.classifier(F.relu(self.head_fuse(torch.cat(ups, 1))))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


def _live_cells(edge_on: Tensor, slots: list) -> list[list[bool]]:
    """Cells whose output reaches the head through kept transmissions; index 0 is the stem, l+1 the layer l."""
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


@torch.no_grad()
def fuse_dense(model: DenseSuperNet) -> FusedDenseNet:
    """Fold α̂, β̂, BN and the channel shuffle of a dense supernet (exact in eval mode)."""
    from ssnas.export.fuse import FORMAT, VERSION, _cell_spec, _fill_block, _fold, _permute_inputs, _set, \
        _shuffle_perm
    from ssnas.export.fuse import FOLD_DTYPE

    cfg, slots = model.cfg, model.slots
    widths = cfg.widths
    a_hat, b_hat = model.alpha_hat().detach(), model.beta_hat().detach()
    edge_on = (b_hat != 0) & model.edge_mask
    live = _live_cells(edge_on, slots)
    cells = model.backbone.cells
    spec_cells = [[_cell_spec(cells[l][i], a_hat[l, i], [s for s in range(len(slots)) if edge_on[l, i, s]])
                   if live[l + 1][i] else None for i in range(len(widths))] for l in range(cfg.layers)]
    spec = dict(format=FORMAT, version=VERSION, space=NAME, in_channels=cfg.in_channels,
                num_classes=cfg.num_classes, widths=list(widths), head_channels=cfg.head_channels,
                slots=[list(s) for s in slots], stem=[i for i in range(len(widths)) if live[0][i]], cells=spec_cells)
    ref = next(model.parameters())
    fused = FusedDenseNet(spec).to(device=ref.device, dtype=ref.dtype)

    for key, branch in fused.stem.items():
        for dst_conv, conv_bn in zip(branch[0::2], model.stem.branches[int(key)]):
            _set(dst_conv, *_fold(conv_bn[0].weight, conv_bn[1]))

    # perms[n][i]: channel order of the output of layer n (0 = stem) at level i (the shuffles, folded)
    perms = [[torch.arange(c) for c in widths]]
    for l, layer in enumerate(fused.layers):
        for key, fcell in layer.items():
            i = int(key)
            aligns = model.backbone.edges[l][i]

            def folded(s):
                d, off = slots[s]
                w, b = _fold(aligns[str(s)].conv.weight, aligns[str(s)].bn, b_hat[l, i, s])
                return _permute_inputs(w, perms[l + 1 - d][i + off]), b

            for conv, group in [(fcell.fine_conv, fcell.fine)] + list(zip(fcell.up_convs, fcell.up.values())):
                if conv is not None:
                    parts = [folded(s) for s in group]
                    _set(conv, torch.cat([w for w, _ in parts], 1), sum(b for _, b in parts))
            cell = cells[l][i]
            if cell.mixture == "kernel":
                op = cell.ops[0]
                _fill_block(fcell.blocks[0], op, op.dw.superkernel(a_hat[l, i]), torch.ones(()))
            else:
                kept = [(op, a) for op, a in zip(cell.ops, a_hat[l, i]) if a != 0]
                for block, (op, a) in zip(fcell.blocks, kept):
                    _fill_block(block, op, op.dw.superkernel(None), a.to(FOLD_DTYPE))
        perms.append([_shuffle_perm(cells[l][i]) for i in range(len(widths))])

    w, b = _fold(model.head.fuse[0].weight, model.head.fuse[1])
    offsets = [0]
    for c in widths:
        offsets.append(offsets[-1] + c)
    w = torch.cat([_permute_inputs(w[:, offsets[i]:offsets[i + 1]], perms[-1][i]) for i in range(len(widths))], 1)
    _set(fused.head_fuse, w, b)
    fused.classifier.load_state_dict(model.head.classifier.state_dict())
    return fused.eval()


def create_dense(variant="small", dense_k: int | None = None, level_span: int | None = None,
                 **overrides) -> DenseSuperNet:
    """Build a dense supernet: ``create_dense("tiny", dense_k=2, level_span=1, num_classes=3)``."""
    return DenseSuperNet(dense_config(variant, dense_k, level_span, **overrides))

"""The ``dense`` search space: the grid's stem, cells, operations and head with long-range connections.

The paper's future work (§5: "efficiently incorporate long-range connections into the search space"), in
the manner of DCNAS's densely connected space. A cell at layer l and level i may take input from every
cell of the previous ``k`` layers (the stem is layer 0) at every level i' with |i' − i| ≤ ``level_span``:

    X_i^l = Σ_{d=1..k} Σ_{|i'-i| ≤ span} P_{i'→i}(Y_{i'}^{l-d}) · β̂^l_{(d,i')→i}    (Eq. 1, generalized)

and β̂ is a softmax over *all* of the cell's incoming transmissions (Eq. 2, generalized; transmissions
from before the stem or from a level outside the grid are masked). β has shape (L, LEVELS, k·(2·span+1)),
one slot per (d, Δ = i' − i), ordered by d, then Δ — so k = 1, span = 1 is exactly the grid's
(L, LEVELS, 3) with slots (s/2, s, 2s), its parameter names included (``tests/test_dense.py`` compares
the two). The keys are ``model.options: {k: 2, level_span: 3}`` (the defaults).

Memory: the forward pass keeps the activations of only the last k layers (a ring of k), not all of them.
P for a jump of |Δ| levels resamples by 2^|Δ| (average pooling down, bilinear up) around the same
ReLU → 1×1 conv → BN as the grid's.

Export (:meth:`DenseSuperNet.fuse`): the grid's blocks fold themselves (``ShapeAlign.fold`` with β̂,
``Cell.fuse`` with α̂, the stem, the head, the channel shuffle as a permutation of the consumers' inputs);
transmissions into a cell from its own or finer levels run as one 1×1 conv over their concatenated, pooled
inputs, those from each coarser level as one conv at that level's resolution, then one upsampling (conv and
BN commute with bilinear interpolation and with average pooling).
"""
from __future__ import annotations

import dataclasses
import functools
from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.arch import masked_softmax, unbind_rows
from ssnas.errors import UserError
from ssnas.ops.fold import permute_inputs, set_conv
from ssnas.space.backbone import ShapeAlign
from ssnas.space.base import FUSED_FORMAT, FUSED_VERSION, ArchitectureMixin, register_space
from ssnas.space.cell import Cell
from ssnas.space.fused import FusedNetwork, _conv, cell_output, fold_live_cells, live_cells
from ssnas.space.head import SegmentationHead
from ssnas.space.operations import FusedBlock
from ssnas.space.stem import MultiScaleStem
from ssnas.space.supernet import ARCH_INIT_STD, SpaceConfig, SuperNet
from ssnas.space.topology import LEVELS, slot_exists, slot_valid_mask, stride
from ssnas.space.variants import space_config

NAME = "dense"
DEFAULT_K = 2                # layers back a cell may read from (1 = the grid's consecutive layers)
DEFAULT_SPAN = LEVELS - 1    # levels away a cell may read from (LEVELS - 1 = every level, as DCNAS's dense space)


@dataclass
class DenseSpaceConfig(SpaceConfig):
    """The grid's hyperparameters plus the reach of a cell's inputs: ``k`` layers back, ``level_span`` levels."""
    k: int = DEFAULT_K
    level_span: int = DEFAULT_SPAN


def dense_slots(k: int, span: int) -> list[tuple[int, int]]:
    """β's last axis: (layers back d, level offset Δ), d = 1..k, Δ = -span..span (k=1, span=1: the grid's)."""
    return [(d, off) for d in range(1, k + 1) for off in range(-span, span + 1)]


def dense_valid_mask(layers: int, k: int, span: int, levels: int = LEVELS) -> Tensor:
    """(L, levels, k·(2·span+1)) bool: the transmissions that exist (``topology.slot_exists``)."""
    return slot_valid_mask(layers, levels, dense_slots(k, span))


def check_keys(layers: int, k, level_span) -> tuple[int, int]:
    """``k`` in 1..layers and ``level_span`` in 0..LEVELS-1 (defaults when None); one UserError line otherwise."""
    k = DEFAULT_K if k is None else k
    span = DEFAULT_SPAN if level_span is None else level_span
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= layers:
        raise UserError(f"model.options.k: {k!r}, expected an integer in [1, {layers}] (the previous layers a dense "
                        f"cell reads from, at most model.layers)")
    if isinstance(span, bool) or not isinstance(span, int) or not 0 <= span <= LEVELS - 1:
        raise UserError(f"model.options.level_span: {span!r}, expected an integer in [0, {LEVELS - 1}] (how many "
                        f"levels away a dense cell reads from)")
    return k, span


def dense_config(variant="small", k: int | None = None, level_span: int | None = None,
                 **overrides) -> DenseSpaceConfig:
    """A variant (a name, a dict such as a checkpoint's ``space`` record, or a config), validated as the grid's,
    with the dense space's two keys."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(SpaceConfig)})
    if unknown:   # overrides are model.* keys and model.options: name the option
        raise UserError(f"model.options.{unknown[0]}: not a key of the dense space, expected k or level_span")
    if isinstance(variant, SpaceConfig):
        k = getattr(variant, "k", None) if k is None else k
        level_span = getattr(variant, "level_span", None) if level_span is None else level_span
        base = dataclasses.replace(SpaceConfig(**{f.name: getattr(variant, f.name)
                                                  for f in dataclasses.fields(SpaceConfig)}),
                                   **{key: v for key, v in overrides.items() if v is not None})
    else:
        if isinstance(variant, dict):
            variant = {key: v for key, v in variant.items() if key != "search_space"}
            stored_k, stored_span = variant.pop("k", None), variant.pop("level_span", None)
            k = stored_k if k is None else k
            level_span = stored_span if level_span is None else level_span
        base = space_config(variant, **overrides)
    k, span = check_keys(base.layers, k, level_span)
    return DenseSpaceConfig(**dataclasses.asdict(base), k=k, level_span=span)


class LongShapeAlign(ShapeAlign):
    """P across |Δ| levels: the grid's ReLU → (resample) → 1×1 conv → BN, resampling by 2^|Δ|.

    Down pools 2^Δ × 2^Δ; up interpolates bilinearly to the target size (conv first while training, as the
    grid's P does). For |Δ| ≤ 1 it is the grid's P, operation for operation; it folds as the grid's
    (``ShapeAlign.fold``)."""

    def project(self, y: Tensor, size: tuple[int, int]) -> Tensor:
        if self.direction > 1:
            return self.bn(self.conv(F.avg_pool2d(y, 2 ** self.direction)))
        return super().project(y, size)


class DenseBackbone(nn.Module):
    """``cells[l][i]`` and ``edges[l][i][str(s)]`` for the existing slots s of :func:`dense_slots`."""

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
                               for s, slot in enumerate(self.slots) if slot_exists(l, i, slot, levels)})
                for i in range(levels)))

    def forward(self, features: list[Tensor], alpha_hat: Tensor, beta_hat: Tensor) -> list[Tensor]:
        """features: the stem's outputs (layer 0); returns the outputs of the last layer.

        Only the last k layers' activations are held (``recent[-d]`` is layer l - d), each once: P's ReLU is
        applied once per source cell, not once per outgoing transmission."""
        recent: deque[list[Tensor]] = deque([[F.relu(f) for f in features]], maxlen=self.k)
        out = features
        alphas, betas = unbind_rows(alpha_hat, 2), unbind_rows(beta_hat, 3)
        for l in range(self.layers):
            out = []
            for i, cell in enumerate(self.cells[l]):
                size = recent[-1][i].shape[-2:]
                x = None
                for key, align in self.edges[l][i].items():
                    s = int(key)
                    d, off = self.slots[s]
                    term = align(recent[-d][i + off], size, activated=True) * betas[l][i][s]   # Eq. 1
                    x = term if x is None else x + term
                out.append(cell(x, alphas[l][i]))                                             # Eq. 3
            if l + 1 < self.layers:
                recent.append([F.relu(o) for o in out])
        return out


class DenseSuperNet(ArchitectureMixin, nn.Module):
    """The dense supernet: the grid's stem, cells, head, α and masks on the dense backbone.

    It implements :class:`~ssnas.space.base.SearchSpace`. Where nothing depends on the connectivity it runs
    the grid's own methods (borrowed from :class:`SuperNet`, not inherited: a dense net is no grid, and code
    that recognizes the grid by its class, e.g. its architecture plot, must not take it for one)."""

    space_name = NAME

    def __init__(self, cfg: DenseSpaceConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths
        self.stem = MultiScaleStem(widths, cfg.in_channels)
        self.backbone = DenseBackbone(cfg.layers, widths, cfg.k, cfg.level_span, cfg.expansion,
                                      tuple(cfg.kernel_sizes), cfg.mixture, cfg.sampling, cfg.squeeze_excite,
                                      cfg.shared_kernels)
        self.head = SegmentationHead(widths, cfg.num_classes, cfg.head_channels)
        kernels, slots = len(cfg.kernel_sizes), len(self.backbone.slots)
        self.alpha = nn.Parameter(ARCH_INIT_STD * torch.randn(cfg.layers, LEVELS, kernels))
        self.beta = nn.Parameter(ARCH_INIT_STD * torch.randn(cfg.layers, LEVELS, slots))
        self.register_buffer("edge_mask", dense_valid_mask(cfg.layers, cfg.k, cfg.level_span))
        self.register_buffer("op_mask", torch.ones(cfg.layers, LEVELS, kernels, dtype=torch.bool))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    # the grid's, unchanged: α̂, the masks' bookkeeping, the forward pass (stem → backbone → head, padding)
    alpha_hat = SuperNet.alpha_hat
    arch_state_keys = SuperNet.arch_state_keys
    cost_groups = SuperNet.cost_groups   # stem, head, each cell, each transmission's P (its edges, keyed by slot)
    forward = SuperNet.forward
    # cost-aware search (``CostAware``): the grid's E[cost] and exact cost over this space's slots
    expected_cost = SuperNet.expected_cost
    discrete_cost = SuperNet.discrete_cost
    cost_metrics = ("flops", "params")

    def cost_table(self, metric: str, input_size):
        """Each candidate's FLOPs or parameters, counted on the fused network (``cost/dense.py``)."""
        from ssnas.cost.dense import count_table
        return count_table(self, metric, input_size)

    @property
    def slots(self) -> list[tuple[int, int]]:
        """(layers back, level offset) of each slot of β's last axis."""
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

    # ----------------------------------------------------------------- export, cost, description
    def fuse(self) -> "FusedDenseNet":
        """The deployable :class:`FusedDenseNet` (same eval-mode logits, no α, β, BN)."""
        return fuse_dense(self)

    @torch.no_grad()
    def architecture_graph(self) -> dict:
        """β̂ per transmission (from any of the k previous layers and the level span), α̂ per cell."""
        b_hat, a_hat, edge_mask = self.beta_hat().detach().cpu(), self.alpha_hat().detach().cpu(), self.edge_mask.cpu()
        L = self.cfg.layers
        edges = [[l + 1 - d, i + off, l + 1, i, float(b_hat[l, i, s]), bool(edge_mask[l, i, s])]
                 for l in range(L) for i in range(LEVELS) for s, (d, off) in enumerate(self.slots)
                 if slot_exists(l, i, (d, off))]
        return {"layers": L, "levels": [f"stride {stride(i)}" for i in range(LEVELS)], "edges": edges,
                "op_labels": [f"{k}x{k}" for k in self.cfg.kernel_sizes],
                "ops": [[l + 1, i, a_hat[l, i].tolist()] for l in range(L) for i in range(LEVELS)]}

    def describe_architecture(self) -> dict:
        """JSON-able: per cell α̂, its kernel and every transmission (from layer and stride, β̂, kept)."""
        from ssnas.arch import arch_entropies
        from ssnas.space.architecture import FORMAT, VERSION, describe_cell

        a_hat, b_hat = self.alpha_hat().cpu(), self.beta_hat().cpu()
        op_mask, edge_mask = self.op_mask.cpu(), self.edge_mask.cpu()
        kernels = [int(k) for k in self.cfg.kernel_sizes]
        cells = []
        for l in range(self.cfg.layers):
            for i in range(LEVELS):
                edges = [{"from_layer": l + 1 - d, "from_stride": stride(i + off), "beta_hat": float(b_hat[l, i, s]),
                          "kept": bool(edge_mask[l, i, s])}
                         for s, (d, off) in enumerate(self.slots) if slot_exists(l, i, (d, off))]
                cells.append(describe_cell(l, i, a_hat[l, i], op_mask[l, i], kernels, edges))
        return {"format": FORMAT, "version": VERSION, "space": NAME, "layers": self.cfg.layers,
                "k": self.cfg.k, "level_span": self.cfg.level_span,
                "strides": [stride(i) for i in range(LEVELS)], "kernel_sizes": kernels,
                "frozen": self.arch_frozen, "cells": cells, "entropy": arch_entropies(self)}


# ---------------------------------------------------------------------------- the fused network
class FusedDenseCell(nn.Module):
    """Eq. 1 with β̂ folded: one conv over the same/finer sources (pooled, concatenated) and one per coarser
    source level (at its resolution, then upsampled); then the cell's folded blocks (Eq. 3, α̂ folded)."""

    def __init__(self, widths: list[int], level: int, spec: dict, slots: list):
        super().__init__()
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
        return cell_output(x, self.blocks, self.op_channels)


class FusedDenseNet(FusedNetwork):
    """The deployable dense network: stem → live cells (reading the last k layers) → head; rebuilt from its
    plain-value ``spec`` (``spec["space"] == "dense"``)."""

    @functools.cached_property
    def slots(self) -> list[tuple[int, int]]:
        return [tuple(s) for s in self.spec["slots"]]

    def make_cell(self, level: int, cell_spec: dict) -> nn.Module:
        return FusedDenseCell(self.spec["widths"], level, cell_spec, self.slots)

    def run_layers(self, feats: list, size: tuple) -> list:
        recent: deque[list] = deque(maxlen=max(d for d, _ in self.slots))
        for cells in self.layers:
            recent.append([None if f is None else F.relu(f) for f in feats])
            out: list[Tensor | None] = [None] * len(feats)
            for key, cell in cells.items():
                i = int(key)
                fine = []
                for s in cell.fine:
                    d, off = self.slots[s]
                    src = recent[-d][i + off]
                    fine.append(F.avg_pool2d(src, 2 ** -off) if off else src)
                coarse = [[recent[-self.slots[s][0]][lvl] for s in cell.up[lvl]] for lvl in cell.up_levels]
                out[i] = cell(fine, coarse, [size[0] // stride(i), size[1] // stride(i)])
            feats = out
        return feats


@torch.no_grad()
def fuse_dense(model: DenseSuperNet) -> FusedDenseNet:
    """Fold α̂, β̂, BN and the channel shuffle of a dense supernet; exact in eval mode. Transmissions with β̂ = 0
    are dropped, and so are the cells (and stem branches) that then reach the head through none."""
    cfg, slots = model.cfg, model.slots
    widths = cfg.widths
    a_hat, b_hat = model.alpha_hat().detach(), model.beta_hat().detach()
    edge_on = (b_hat != 0) & model.edge_mask
    live = live_cells(edge_on, slots)
    cells, edges = model.backbone.cells, model.backbone.edges
    blocks, spec_cells = fold_live_cells(cells, a_hat, edge_on, live)
    spec = dict(format=FUSED_FORMAT, version=FUSED_VERSION, space=NAME, in_channels=cfg.in_channels,
                num_classes=cfg.num_classes, widths=list(widths), head_channels=cfg.head_channels,
                slots=[list(s) for s in slots], stem=[i for i in range(len(widths)) if live[0][i]], cells=spec_cells)
    ref = next(model.parameters())
    fused = FusedDenseNet(spec).to(device=ref.device, dtype=ref.dtype)

    for key in fused.stem:
        fused.stem[key] = model.stem.fuse(int(key))
    perms = [[torch.arange(c) for c in widths]]   # perms[n][i]: channel order of layer n's output at level i
    for l, layer in enumerate(fused.layers):
        for key, fcell in layer.items():
            i = int(key)

            def folded(s):
                d, off = slots[s]
                w, b = edges[l][i][str(s)].fold(b_hat[l, i, s])
                return permute_inputs(w, perms[l + 1 - d][i + off]), b

            for conv, group in [(fcell.fine_conv, fcell.fine)] + list(zip(fcell.up_convs, fcell.up.values())):
                if conv is not None:
                    parts = [folded(s) for s in group]
                    set_conv(conv, torch.cat([w for w, _ in parts], 1), sum(b for _, b in parts))
            fcell.blocks = blocks[l, i]
        perms.append([cells[l][i].output_permutation() for i in range(len(widths))])
    head = model.head.reparameterize(perms[-1])
    fused.head_fuse, fused.classifier = head[0], head[2]
    return fused.eval()


# ---------------------------------------------------------------------------- registration
def check_checkpoint(space: dict, state: dict, path) -> None:
    """Before anything is built: the stored hyperparameters agree with the stored α and β (a crafted record
    asking for a huge network is refused here, not built)."""
    from ssnas.space.grid import check_checkpoint as check_grid

    check_grid(space, state, path)
    layers, k, span = space.get("layers"), space.get("k"), space.get("level_span")
    beta = state.get("beta")
    if not isinstance(k, int) or not isinstance(span, int) or not isinstance(beta, torch.Tensor) \
            or tuple(beta.shape) != (layers, LEVELS, k * (2 * span + 1)):
        shape = tuple(beta.shape) if isinstance(beta, torch.Tensor) else "missing"
        raise UserError(f"{path}: the stored dense space ({layers} layers, k={k}, level_span={span}) does not match "
                        f"the stored beta {shape}")


@register_space(NAME, fused=FusedDenseNet, check_checkpoint=check_checkpoint, tiny={"variant": "tiny"})
def build_dense(variant="small", k: int | None = None, level_span: int | None = None, **overrides) -> DenseSuperNet:
    """A dense supernet: ``create_model("tiny", space="dense", k=2, level_span=1, num_classes=3)``; ``variant``
    is a variant name, a dict (a checkpoint's ``space`` record) or a :class:`DenseSpaceConfig`."""
    return DenseSuperNet(dense_config(variant, k, level_span, **overrides))

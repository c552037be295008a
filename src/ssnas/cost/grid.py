"""The grid supernet's (§3.1) per-candidate cost table, counted on its fused network.

**The table** is counted on the fused form of every candidate at once: one :class:`FusedSegNet` on the
``meta`` device in which every cell is live, every valid edge is kept as its own conv and every kernel size
is a block of its own; the FLOP counter (and the parameter count) of each of its modules is the cost of
that candidate: ``stem.i``, ``layers.l.i.fine.n`` / ``layers.l.i.up`` (edges), ``layers.l.i.blocks.k``
(kernels), ``head_fuse`` + ``classifier`` (head). Nothing is hand-written, so a change to the fused
modules changes the table with them.

**E[cost]** and the exact cost of a masked supernet are the grid-like spaces' shared ones
(``cost/expected.py``), with the grid's slots ``topology.EDGE_SLOTS``.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ssnas.cost.table import CostTable
from ssnas.errors import UserError
from ssnas.space.base import FUSED_FORMAT as FORMAT
from ssnas.space.base import FUSED_VERSION as VERSION
from ssnas.space.fused import FusedSegNet
from ssnas.space.topology import UP
from ssnas.space.backbone import EDGE_OFFSETS
from ssnas.space.operations import SqueezeExcite

COUNTED = ("flops", "params")


# ---------------------------------------------------------------------------- the table
def complete_spec(model, merge_edges: bool = False) -> dict:
    """The fused spec holding every candidate once: all cells live, all valid edges, a block per kernel."""
    cfg = model.cfg
    widths = cfg.widths
    levels = len(widths)
    cells = []
    for l in range(cfg.layers):
        row = []
        for i in range(levels):
            cell = model.backbone.cells[l][i]
            edges = [j for j, off in enumerate(EDGE_OFFSETS) if 0 <= i + off < levels]
            row.append(dict(edges=edges, op_channels=cell.op_channels, blocks=every_block(cell, cfg.kernel_sizes)))
        cells.append(row)
    return dict(format=FORMAT, version=VERSION, in_channels=cfg.in_channels, num_classes=cfg.num_classes,
                widths=list(widths), head_channels=cfg.head_channels, merge_edges=merge_edges,
                stem=list(range(levels)), cells=cells)


def every_block(cell, kernel_sizes) -> list[dict]:
    """The fused block spec of each kernel size of ``cell``, as if each were kept alone (one block apiece)."""
    ops = list(cell.ops) * (len(kernel_sizes) if cell.mixture == "kernel" else 1)
    return [dict(kernel=int(k), hidden=int(op.dw.weights[0].shape[0]), squeeze_excite=isinstance(op.se, SqueezeExcite))
            for k, op in zip(kernel_sizes, ops)]


def module_costs(spec: dict, metric: str, input_size, network=FusedSegNet) -> dict:
    """Cost of every module (and, for parameters, every tensor) of ``network(spec)``, by its dotted name
    (built and run on ``meta``)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = network(spec).eval()
    if metric == "params":
        out: dict = {}
        for name, p in net.named_parameters():
            parts = name.split(".")
            for d in range(1, len(parts) + 1):
                out[".".join(parts[:d])] = out.get(".".join(parts[:d]), 0) + p.numel()
        return out
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        net(torch.empty(1, spec["in_channels"], *input_size, device="meta"))
    prefix = type(net).__name__ + "."
    return {k[len(prefix):]: sum(v.values()) for k, v in counter.get_flop_counts().items() if k.startswith(prefix)}


def count_table(model, metric: str, input_size) -> CostTable:
    """The FLOP or parameter table of ``model`` (a grid supernet) for one 1×C×H×W input (FLOPs)."""
    if metric not in COUNTED:
        raise UserError(f"cost.metric: {metric!r} is measured, not counted; give cost.table (ssnas profile --latency)")
    spec = complete_spec(model)
    c = module_costs(spec, metric, input_size)
    # what merging the down and same edges into one conv saves: one bias (parameters); nothing in FLOPs (a
    # 1×1 conv's FLOPs are linear in its input channels), so the second count is skipped there (~2 s)
    merged = module_costs(complete_spec(model, merge_edges=True), metric, input_size) if metric == "params" else {}
    L, levels, K = model.cfg.layers, len(spec["widths"]), len(model.cfg.kernel_sizes)
    edges = [[[0.0] * len(EDGE_OFFSETS) for _ in range(levels)] for _ in range(L)]
    ops = [[[0.0] * K for _ in range(levels)] for _ in range(L)]
    merge = [[0.0] * levels for _ in range(L)]
    for l in range(L):
        for i in range(levels):
            cell = spec["cells"][l][i]
            fine = [j for j in cell["edges"] if j != UP]
            for n, j in enumerate(fine):
                edges[l][i][j] = float(c.get(f"layers.{l}.{i}.fine.{n}", 0))
            if UP in cell["edges"]:
                edges[l][i][UP] = float(c.get(f"layers.{l}.{i}.up", 0))
            for k in range(K):
                ops[l][i][k] = float(c.get(f"layers.{l}.{i}.blocks.{k}", 0))
            if len(fine) > 1 and merged:   # the down and same edges as one conv: what merging saves
                merge[l][i] = sum(edges[l][i][j] for j in fine) - float(merged.get(f"layers.{l}.{i}.fine.0", 0))
    return CostTable(metric=metric, input_size=list(input_size),
                     head=float(c.get("head_fuse", 0) + c.get("classifier", 0)),
                     stem=[float(c.get(f"stem.{i}", 0)) for i in range(levels)], edges=edges, ops=ops,
                     cell=[[0.0] * levels for _ in range(L)], merge=merge, space=model.cfg.to_dict(),
                     measured={"how": "torch.utils.flop_counter" if metric == "flops" else "parameter count"})

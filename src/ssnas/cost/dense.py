"""The dense space's (``space/dense.py``) per-candidate cost table, counted on its fused network.

As for the grid (``cost/grid.py``), one :class:`FusedDenseNet` on the ``meta`` device holds every candidate:
every cell live, every existing transmission kept, a block per kernel size; the FLOP counter and the
parameter count of its modules give each candidate's cost. A fused dense cell runs its transmissions as one
1×1 conv per group (:func:`~ssnas.cost.expected.conv_group`: its own and finer levels, pooled and
concatenated; each coarser level at its resolution), so a transmission's cost is its share of its group's
conv, in proportion to its input channels (a 1×1 conv's FLOPs and weights are linear in them), plus the
conv's bias, as if it were kept alone (E[cost] samples one transmission per cell). ``merge[l][i]`` is that
bias: what each further transmission in the same group saves. Pooling and upsampling cost no FLOPs by the
counter and no parameters, here as in the fused network's own count.
"""
from __future__ import annotations

from ssnas.cost.expected import conv_group
from ssnas.cost.grid import COUNTED, every_block, module_costs
from ssnas.cost.table import CostTable
from ssnas.errors import UserError
from ssnas.space.base import FUSED_FORMAT, FUSED_VERSION
from ssnas.space.topology import slot_exists


def complete_spec(model) -> dict:
    """The fused dense spec holding every candidate once: all cells live, all existing transmissions, a block
    per kernel."""
    from ssnas.space.dense import NAME

    cfg, levels = model.cfg, len(model.cfg.widths)
    cells = [[dict(edges=[s for s, slot in enumerate(model.slots) if slot_exists(l, i, slot, levels)],
                   op_channels=model.backbone.cells[l][i].op_channels,
                   blocks=every_block(model.backbone.cells[l][i], cfg.kernel_sizes))
              for i in range(levels)] for l in range(cfg.layers)]
    return dict(format=FUSED_FORMAT, version=FUSED_VERSION, space=NAME, in_channels=cfg.in_channels,
                num_classes=cfg.num_classes, widths=list(cfg.widths), head_channels=cfg.head_channels,
                slots=[list(s) for s in model.slots], stem=list(range(levels)), cells=cells)


def count_table(model, metric: str, input_size) -> CostTable:
    """The FLOP or parameter table of ``model`` (a dense supernet) for one 1×C×H×W input (FLOPs)."""
    from ssnas.space.dense import FusedDenseNet

    if metric not in COUNTED:
        raise UserError(f"cost.metric: {metric!r}, the dense space's costs are counted, expected one of "
                        f"{', '.join(COUNTED)} (latency tables are measured for the grid space only)")
    spec = complete_spec(model)
    c = module_costs(spec, metric, input_size, FusedDenseNet)
    widths, slots = spec["widths"], model.slots
    L, levels, K, S = model.cfg.layers, len(widths), len(model.cfg.kernel_sizes), len(slots)
    edges = [[[0.0] * S for _ in range(levels)] for _ in range(L)]
    ops = [[[0.0] * K for _ in range(levels)] for _ in range(L)]
    merge = [[0.0] * levels for _ in range(L)]
    for l in range(L):
        for i in range(levels):
            kept = spec["cells"][l][i]["edges"]
            coarse = sorted({conv_group(slots[s]) for s in kept} - {0})    # FusedDenseCell.up_convs' order
            names = {0: f"layers.{l}.{i}.fine_conv", **{g: f"layers.{l}.{i}.up_convs.{n}" for n, g in enumerate(coarse)}}
            for g, name in names.items():
                group = [s for s in kept if conv_group(slots[s]) == g]
                if not group:
                    continue
                bias = int(c.get(f"{name}.bias", 0))            # parameters only: FLOPs count no bias
                channels = [widths[i + slots[s][1]] for s in group]
                for s, ch in zip(group, channels):
                    edges[l][i][s] = float((int(c[name]) - bias) * ch // sum(channels) + bias)
                merge[l][i] = float(bias)
            for k in range(K):
                ops[l][i][k] = float(c.get(f"layers.{l}.{i}.blocks.{k}", 0))
    return CostTable(metric=metric, input_size=list(input_size),
                     head=float(c.get("head_fuse", 0) + c.get("classifier", 0)),
                     stem=[float(c.get(f"stem.{i}", 0)) for i in range(levels)], edges=edges, ops=ops,
                     cell=[[0.0] * levels for _ in range(L)], merge=merge, space=model.cfg.to_dict(),
                     measured={"how": "torch.utils.flop_counter" if metric == "flops" else "parameter count"})

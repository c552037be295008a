"""Cost-aware search (docs/cost-aware.md): per-candidate cost tables, the expected cost E[cost] of the fused
network under α̂ and β̂, the penalty added to L_B, and discretization to a budget (``export/budget.py``).

A search space plugs in by implementing :class:`~ssnas.space.base.CostAware` (``cost_table``,
``expected_cost``, ``discrete_cost``). The grid-like spaces (grid, dense) share E[cost] and the exact cost
(``cost/expected.py``) and count their own tables (``cost/grid.py``, ``cost/dense.py``); latency tables are
measured for the grid (``cost/latency.py``).
"""
from __future__ import annotations

from torch import Tensor

from ssnas.cost.table import CostTable
from ssnas.cost.units import METRICS, format_cost, parse_cost
from ssnas.errors import UserError


def cost_aware(model, metric: str | None = None):
    """``model`` if its space implements the cost methods (and has tables of ``metric``), else a one-line
    error: cost-aware search and budgets need them."""
    from ssnas.space.base import CostAware
    space = getattr(model, "space_name", None) or type(model).__name__
    if not isinstance(model, CostAware):
        raise UserError(f"model.space: {space!r} has no cost model yet (CostAware: cost_table, expected_cost, "
                        f"discrete_cost; docs/cost-aware.md), so cost.weight, cost.budget and --budget need "
                        f"a space that has one, e.g. grid")
    slots = getattr(model, "slots", None)
    if slots is not None:
        from ssnas.cost.expected import check_reach
        check_reach(len(model.cfg.widths), slots)
    metrics = getattr(model, "cost_metrics", METRICS)
    if metric is not None and metric not in metrics:
        raise UserError(f"cost.metric: {metric!r}, model.space {space!r} has cost tables for "
                        f"{', '.join(metrics)} only, expected one of them")
    return model


def cost_table(model, metric: str, input_size=None, table: str | None = None, key: str = "cost.table") -> CostTable:
    """The table of ``metric`` for ``model``: counted (flops, params) at ``input_size``, or read from the
    JSON file ``table`` (latency; checked against the model's space)."""
    cost_aware(model, metric)
    if metric == "latency" or table:
        if not table:
            raise UserError(f"{key}: missing, metric latency needs a table measured by `ssnas profile --latency`")
        t = CostTable.load(table, key)
        if t.metric != metric:
            raise UserError(f"{key}: the table holds {t.metric}, expected {metric} (cost.metric)")
        t.check_space(model.cfg.to_dict(), key)
        return t
    return model.cost_table(metric, input_size)


def expected_cost(model, tensors: dict) -> Tensor:
    """E[cost] of ``model``'s architecture distribution (differentiable in its α, β)."""
    return cost_aware(model).expected_cost(tensors)


def discrete_cost(model, table: CostTable) -> float:
    """The cost of ``model``'s fused network as currently masked, from the table."""
    return cost_aware(model).discrete_cost(table)


__all__ = ["CostTable", "METRICS", "cost_aware", "cost_table", "discrete_cost", "expected_cost", "format_cost", "parse_cost"]

"""Cost-aware search (docs/cost-aware.md): per-candidate cost tables, the expected cost E[cost] of the fused
network under α̂ and β̂, the penalty added to L_B, and discretization to a budget (``export/budget.py``).

A search space plugs in with up to three methods on its model, each falling back to the grid supernet's
implementation (``cost/grid.py``) when absent:

- ``cost_table(metric, input_size) -> CostTable``: the FLOP / parameter cost of each candidate;
- ``expected_cost(tensors) -> Tensor``: E[cost] from ``CostTable.tensors()``, differentiable in α, β;
- ``discrete_cost(table) -> float``: the exact cost of the model's fused network as currently masked.
"""
from __future__ import annotations

from torch import Tensor

from ssnas.cost.table import CostTable
from ssnas.cost.units import METRICS, format_cost, parse_cost
from ssnas.errors import UserError


def _grid(model):
    space = getattr(model, "space_name", None)
    if space != "grid":
        raise UserError(f"cost: cost-aware search and budgets need a space with cost methods (cost_table, "
                        f"expected_cost, discrete_cost); {space or type(model).__name__} has none yet, the grid has")
    from ssnas.cost import grid
    return grid


def cost_table(model, metric: str, input_size=None, table: str | None = None, key: str = "cost.table") -> CostTable:
    """The table of ``metric`` for ``model``: counted (flops, params) at ``input_size``, or read from the
    JSON file ``table`` (latency; checked against the model's space)."""
    if metric == "latency" or table:
        if not table:
            raise UserError(f"{key}: missing, metric latency needs a table measured by `ssnas profile --latency`")
        t = CostTable.load(table, key)
        if t.metric != metric:
            raise UserError(f"{key}: the table holds {t.metric}, expected {metric} (cost.metric)")
        t.check_space(model.cfg.to_dict(), key)
        return t
    if hasattr(model, "cost_table"):
        return model.cost_table(metric, input_size)
    return _grid(model).count_table(model, metric, input_size)


def expected_cost(model, tensors: dict) -> Tensor:
    """E[cost] of ``model``'s architecture distribution (differentiable in its α, β)."""
    if hasattr(model, "expected_cost"):
        return model.expected_cost(tensors)
    return _grid(model).expected_cost(tensors, model.alpha_hat(), model.beta_hat())


def discrete_cost(model, table: CostTable) -> float:
    """The cost of ``model``'s fused network as currently masked, from the table."""
    if hasattr(model, "discrete_cost"):
        return model.discrete_cost(table)
    grid = _grid(model)
    return grid.discrete_cost(table, *grid.kept_choices(model))


__all__ = ["CostTable", "METRICS", "cost_table", "discrete_cost", "expected_cost", "format_cost", "parse_cost"]

"""Discretize a searched supernet to a cost budget: drop edges and kernels greedily until its fused network
costs at most the budget (``ssnas export --budget 20G``, ``cost.budget``).

The rule. From the supernet as it is (every kept edge and kernel), repeat while the fused network's cost
(exact, from the cost table: ``cost.expected.discrete_cost``) exceeds the budget:

- the candidate moves are: drop one kept edge of a cell that keeps more than one (its loss: the edge's β̂);
  drop one kept kernel of a cell that keeps more than one (its loss: the kernel's α̂) — for the kernel
  mixture only the cell's largest kept kernel, the one that sets the fused kernel size; for the output
  mixture any kept kernel, each being a block of its own; and in a cell down to one kernel, switch to a
  smaller kernel (its loss: softmax(α)_current − softmax(α)_smaller over all kernels, at least 0: the
  probability the search gave the cell's choice over the smaller one); likewise, in a cell down to one
  edge, switch to another of its edges (its loss: the same difference of softmax(β) over the cell's edges) —
  which can leave cells upstream unconnected;
- each move's saving is the cost it removes, cells (and stem branches) left unconnected included;
- the move with the smallest loss per cost saved (β̂ or α̂ divided by the saving) is made; moves that save
  nothing are never made; ties go to edges before kernels, then to the lower layer, level and slot.

β̂ and α̂ are those of the current masks (renormalized after each drop, as the supernet computes them), so
the rule is §4.2's pruning by β̂ extended with kernels and weighted by what each choice costs. It stops with
one edge and the smallest kernel per cell when no move saves anything more; a budget below that network's
cost is refused (the rule is greedy: a cheaper network may exist). The masked
supernet is the result: ``fuse_supernet`` folds it like any pruned supernet.
"""
from __future__ import annotations

import numpy as np
import torch

from ssnas.arch import masked_softmax
from ssnas.cost import cost_aware, cost_table
from ssnas.cost.expected import discrete_cost, kept_choices
from ssnas.cost.table import CostTable
from ssnas.cost.units import format_cost, parse_cost
from ssnas.errors import UserError


def _moves(model, edge_on: np.ndarray, op_kept: np.ndarray):
    """(kind, index, loss) of every move the rule allows from the current masks (index of a switch: (l, i,
    from, to))."""
    b_hat = model.beta_hat().detach().cpu().numpy()
    a_hat = model.alpha_hat().detach().cpu().numpy()
    p_alpha = torch.softmax(model.alpha.detach().double(), -1).cpu().numpy()   # unmasked: the search's own
    from ssnas.space.topology import slot_valid_mask
    valid = slot_valid_mask(model.beta.shape[0], model.beta.shape[1], model.slots).to(model.beta.device)
    p_beta = masked_softmax(model.beta.detach().double(), valid).cpu().numpy()
    valid = valid.cpu().numpy()
    kernels = list(model.cfg.kernel_sizes)
    output = model.cfg.mixture == "output"
    L, levels = edge_on.shape[:2]
    for l in range(L):
        for i in range(levels):
            js = np.flatnonzero(edge_on[l, i])
            if len(js) > 1:
                for j in js:
                    yield "edge", (l, i, int(j)), float(b_hat[l, i, j])
            elif len(js) == 1:   # one edge left: another one instead
                j = int(js[0])
                for j2 in np.flatnonzero(valid[l, i]):
                    if j2 != j:
                        yield "reroute", (l, i, j, int(j2)), max(0.0, float(p_beta[l, i, j] - p_beta[l, i, j2]))
    for l in range(L):
        for i in range(levels):
            ks = np.flatnonzero(op_kept[l, i])
            if len(ks) > 1:
                for k in (ks if output else [max(ks, key=lambda k: kernels[k])]):
                    yield "kernel", (l, i, int(k)), float(a_hat[l, i, k])
            elif len(ks) == 1:   # one kernel left: a smaller one instead
                k = int(ks[0])
                for k2 in range(len(kernels)):
                    if kernels[k2] < kernels[k]:
                        yield "switch", (l, i, k, k2), max(0.0, float(p_alpha[l, i, k] - p_alpha[l, i, k2]))


@torch.no_grad()
def discretize_to_budget(model, table: CostTable, budget: float, key: str = "--budget") -> dict:
    """Mask ``model``'s edges and kernels by the rule (module docstring) until its fused network costs at
    most ``budget`` by ``table``; returns {"cost", "cost_before", "steps": [{"drop", "where", "loss", "saved"}]}.
    The moves are a grid-like space's (its edge and kernel masks over ``model.slots``: grid, dense)."""
    cost_aware(model)
    slots = getattr(model, "slots", None)
    if slots is None:
        raise UserError(f"{key}: the budget rule drops the edges and kernels of a grid-like space, expected one "
                        f"(model.space: {getattr(model, 'space_name', None)!r})")
    edge_on, op_kept = (t.numpy().copy() for t in kept_choices(model))
    cost = before = discrete_cost(table, edge_on, op_kept, slots)
    steps = []
    while cost > budget:
        best = None
        for kind, idx, loss in _moves(model, edge_on, op_kept):
            trial_e, trial_o = edge_on, op_kept
            if kind == "edge":
                trial_e = edge_on.copy()
                trial_e[idx] = False
            elif kind == "reroute":
                trial_e = edge_on.copy()
                trial_e[idx[:2]] = False
                trial_e[idx[0], idx[1], idx[3]] = True
            elif kind == "kernel":
                trial_o = op_kept.copy()
                trial_o[idx] = False
            else:
                trial_o = op_kept.copy()
                trial_o[idx[:2]] = False
                trial_o[idx[0], idx[1], idx[3]] = True
            saved = cost - discrete_cost(table, trial_e, trial_o, slots)
            if saved > 0 and (best is None or loss / saved < best[0]):
                best = (loss / saved, kind, idx, loss, saved, trial_e, trial_o)
        if best is None:
            raise UserError(f"{key} {format_cost(budget, table.metric)}: below the cheapest network the rule "
                            f"reaches ({format_cost(cost, table.metric)}), expected a budget of at least that")
        _, kind, idx, loss, saved, edge_on, op_kept = best
        if kind == "edge":
            model.edge_mask[idx] = False
        elif kind == "reroute":
            model.edge_mask[idx[:2]] = torch.from_numpy(edge_on[idx[:2]])
        else:
            model.op_mask[idx[:2]] = torch.from_numpy(op_kept[idx[:2]])
        cost -= saved
        steps.append({"drop": kind, "where": list(idx), "loss": loss, "saved": saved})
    return {"cost": cost, "cost_before": before, "steps": steps, "metric": table.metric, "budget": budget}


def apply_budget(model, cfg, budget: str | None = None, key: str = "cost.budget") -> dict:
    """Discretize ``model`` to ``budget`` (default ``cfg.cost.budget``) in ``cfg.cost.metric``, the table
    counted at the cost input size (or read from ``cfg.cost.table``)."""
    from ssnas.cost.term import cost_input_size

    c = cfg.cost
    value = parse_cost(budget if budget is not None else c.budget, c.metric, key)
    table = cost_table(model, c.metric, cost_input_size(cfg), c.table)
    return discretize_to_budget(model, table, value, key)


LATENCY_RETRIES = 3   # a latency budget: re-aim the table this many times while the measured latency is over


def _budget_metric(text: str, metric: str | None) -> str:
    if metric:
        return metric
    t = str(text).strip()
    return "latency" if t.endswith(("ms", "us", "µs")) or (t.endswith("s") and t[:-1].replace(".", "").isdigit()) \
        else "flops"


def budget_from_cli(model, payload: dict, args) -> dict:
    """``ssnas export --budget``: discretize ``model`` (in place), print the measured cost of its fused
    network beside the table's and the val mIoU when the run's data is at hand.

    FLOPs and parameters: the table's sum is the measurement. Latency: while the measured latency is over
    the budget, the table's aim is lowered by the ratio budget / measured and the rule goes on (at most
    ``LATENCY_RETRIES`` times), so the network meets the budget as measured, not only as the table says."""
    from ssnas.cost.units import parse_size
    from ssnas.config import ExperimentConfig, _from_dict
    from ssnas.export.fuse import fuse_supernet

    metric = _budget_metric(args.budget, args.metric)
    budget = parse_cost(args.budget, metric, "--budget")
    cfg = None
    try:
        cfg = _from_dict(ExperimentConfig, payload.get("config") or {})
    except UserError:
        pass   # a checkpoint of an older or foreign config: its data and sizes are then unknown
    if args.cost_size:
        size = parse_size(args.cost_size, "--cost-size")
    elif cfg is not None:
        size = tuple(cfg.cost.input_size or cfg.data.crop_size)
    else:
        raise UserError("--cost-size: the checkpoint holds no readable config, expected --cost-size HxW")
    if metric == "latency" and not args.table:
        raise UserError("--table: missing, a latency budget needs the table of `ssnas profile --latency`")
    table = cost_table(model, metric, size, args.table, key="--table")
    report = discretize_to_budget(model, table, budget)
    fused = fuse_supernet(model)
    measured = measure(fused, table)
    goal = budget
    for _ in range(LATENCY_RETRIES if metric == "latency" else 0):
        if measured <= budget:
            break
        # the table's sum missed the measurement: aim the table lower by the ratio and go on from here
        goal *= budget / measured
        more = discretize_to_budget(model, table, min(goal, report["cost"] * (1 - 1e-9)))
        report["steps"] += more["steps"]
        report["cost"] = more["cost"]
        fused = fuse_supernet(model)
        measured = measure(fused, table)
    n_edges = int(model.edge_mask.sum())
    print(f"budget {format_cost(budget, metric)} ({metric} at {table.input_size[0]}x{table.input_size[1]}): "
          f"{len(report['steps'])} moves ({_kinds(report['steps'])}), {n_edges} edges kept; table "
          f"{format_cost(report['cost_before'], metric)} -> {format_cost(report['cost'], metric)}, measured "
          f"{format_cost(measured, metric)}")
    report["measured"] = measured
    if measured > budget:
        print(f"note: the measured latency is over the budget after {LATENCY_RETRIES} corrections of the table's "
              f"aim (the table's sums are within ~15 % of measurements, docs/cost-aware.md)")
    if not args.no_eval:
        report["miou"] = _val_miou(model, cfg)
        print(f"val mIoU of the budgeted network: {report['miou']:.4f}" if report["miou"] is not None else
              "val mIoU: not evaluated (the run's val set is not at hand; --no-eval skips this)")
    return report


def _kinds(steps: list) -> str:
    names = {"edge": "edges dropped", "kernel": "kernels dropped", "switch": "smaller kernels",
             "reroute": "edges rerouted"}
    counts = {k: sum(s["drop"] == k for s in steps) for k in names}
    return ", ".join(f"{n} {names[k]}" for k, n in counts.items() if n) or "none"


def measure(fused, table: CostTable) -> float:
    """The fused network's cost measured directly: the FLOP counter, the parameter count, or its latency timed
    like the table (same device, runtime, threads and allocator state)."""
    from ssnas.space.profile import forward_flops

    size = tuple(table.input_size)
    if table.metric == "flops":
        return float(forward_flops(fused, size, fused.spec["in_channels"]))
    if table.metric == "params":
        return float(sum(p.numel() for p in fused.parameters()))
    from ssnas.cost.latency import network_latency
    from ssnas.hardware import STEADY_ALLOCATOR, steady_allocator
    m = table.measured
    if m.get("allocator") == STEADY_ALLOCATOR:   # the allocator state the table was timed in (hardware.py)
        steady_allocator()
    return network_latency(fused, size, m.get("device", "cpu"), m.get("runtime", "torch"), m.get("threads"),
                           m.get("rounds", 30))


def _val_miou(model, cfg) -> float | None:
    """The val mIoU by the run's own task (the task registry: export knows no task), None where the run's data
    is not at hand or its task scores otherwise."""
    from pathlib import Path

    if cfg is None or not cfg.data.root or not Path(cfg.data.root).is_dir():
        return None
    from ssnas.tasks import build_task
    try:
        miou = build_task(cfg).evaluate(model.eval()).get("miou")
    except UserError:
        return None
    return None if miou is None else float(miou)

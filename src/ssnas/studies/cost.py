"""The mIoU–cost front (issue 16): does searching with a cost term beat pruning alone at equal cost?

Not a study of the paper: FBNet, ProxylessNAS and FasterSeg search with a cost term; the single-stage
protocol searches for accuracy and prunes afterwards (§4.2). For each seed of ``study.seeds``:

- **unconstrained**: the config's single-stage run with no cost term (``cost.weight: 0``);
- for each target T of ``study.targets``:
  - **cost term**: the same run with the cost term on during the search (``cost.weight: study.cost_weight``,
    ``cost.target: T``, the config's ``cost.metric`` and ``cost.penalty``), then discretized to the budget T
    (``cost.budget``, the greedy rule of ``export/budget.py``) and fine-tuned briefly;
  - **pruning alone**: the unconstrained run discretized to the same budget T by the same rule and
    fine-tuned the same way.

Both arms end at most at T, by construction; their costs are measured on the fused network (the FLOP
counter, the parameter count, or the table for latency) and reported beside their mIoU. A target given as a
number is a fraction of E0, the expected cost of the uniform architecture at initialization (the average
single-path network, ``cost/expected.py``); a string (``"40M"``) is absolute. The verdict: per target, cost term
− pruning alone in mIoU, paired by seed, as a directional claim (sign only: no published size) by the rules
of :mod:`ssnas.studies.stats`; all targets together by :func:`~ssnas.studies.stats.combine`.
"""
from __future__ import annotations

import functools
import math
import statistics

from ssnas.errors import UserError
from ssnas.studies.common import (derive, figure, markdown_table, pct, pct_pm, save_figure, seeds_of,
                                  study_param)
from ssnas.studies.stats import by_seed, claim, combine, difference, mean_interval

TITLE = "Cost-aware search vs pruning alone: mIoU against measured cost (issue 16)"
PAPER = ("Not in the paper. FBNet, ProxylessNAS and FasterSeg add a cost term to the search; the question here "
         "is whether that beats the single-stage supernet (searched for accuracy alone) pruned to the same budget.")
COST_ARM, PRUNE_ARM, FREE = "cost term", "pruning alone", "unconstrained"


def measure_budgeted(checkpoint: str, metric: str, size: list, table: str | None = None) -> dict:
    """Measured cost of a checkpoint's fused network and its edges (runs in the sub-run's process)."""
    from ssnas.cost import cost_table, discrete_cost
    from ssnas.tasks.segmentation import load_model
    from ssnas.export.budget import measure
    from ssnas.export.fuse import fuse_supernet

    model, _ = load_model(checkpoint)
    model.eval()
    t = cost_table(model, metric, tuple(size), table)
    return {"cost": measure(fuse_supernet(model), t), "table_cost": discrete_cost(model, t),
            "edges": model.num_edges()}


def reference_cost(cfg) -> float:
    """E0: E[cost] of the uniform architecture (α = β = 0) of the config's supernet, at the cost input size."""
    import torch

    from ssnas.cost import cost_table, expected_cost
    from ssnas.cost.term import cost_input_size
    from ssnas.tasks.segmentation import SegmentationTask

    task = SegmentationTask(derive(cfg, {}))
    from ssnas.space.variants import create_model
    m = cfg.model
    overrides = {k: getattr(m, k) for k in ("layers", "filters", "expansion", "sampling", "kernel_sizes",
                                            "mixture", "head_channels", "squeeze_excite", "shared_kernels")}
    model = create_model(m.variant, num_classes=task.num_classes(), **overrides).eval()
    with torch.no_grad():
        model.alpha.zero_()
        model.beta.zero_()
    table = cost_table(model, cfg.cost.metric, cost_input_size(cfg), cfg.cost.table)
    return float(expected_cost(model, table.tensors()).detach())


def _targets(cfg) -> list:
    from ssnas.cost.units import parse_cost

    targets = study_param(cfg, "targets", list,
                          "a list of >= 1 budgets: fractions of E0 (e.g. 0.8) or costs (e.g. 40M)")
    if not targets:
        raise UserError(f"study.targets: {targets!r} is not valid, expected a non-empty list")
    for t in targets:
        if isinstance(t, bool) or not isinstance(t, (int, float, str)) or isinstance(t, (int, float)) and not 0 < t:
            raise UserError(f"study.targets: {t!r} is not valid, expected a positive fraction of E0 or a cost")
        if isinstance(t, str):
            parse_cost(t, cfg.cost.metric, "study.targets")
    return targets


def run(cfg, study_dir, progress) -> dict:
    from ssnas.cost.term import cost_input_size
    from ssnas.cost.units import format_cost, parse_cost

    seeds = seeds_of(cfg)
    targets = _targets(cfg)
    weight = study_param(cfg, "cost_weight", (int, float), "the cost term's weight (cost.weight) > 0", default=1.0)
    epochs = study_param(cfg, "finetune_epochs", int, "a positive number of post-pruning fine-tune epochs")
    if weight <= 0 or epochs < 1:
        raise UserError("study.cost_weight / study.finetune_epochs: expected a weight > 0 and epochs >= 1")
    metric, size = cfg.cost.metric, list(cost_input_size(cfg))
    e0 = reference_cost(cfg) if any(not isinstance(t, str) for t in targets) else None
    budgets = [(f"t{n + 1}", parse_cost(t, metric, "study.targets") if isinstance(t, str) else float(t) * e0, t)
               for n, t in enumerate(targets)]
    finetune = {"protocol.epochs": epochs, "protocol.warmup": 0.0, "protocol.search": 0.0,
                "protocol.finetune": 1.0, "protocol.entropy_start": 0.0, "cost.weight": 0.0, "cost.target": None}
    measure = functools.partial(measure_budgeted, metric=metric, size=size, table=cfg.cost.table)
    rows, curves = [], {}
    for seed in seeds:
        free_cfg = derive(cfg, {"seed": seed, "cost.weight": 0.0, "cost.target": None, "cost.budget": None})
        free = study_dir.train(f"unconstrained-s{seed}", free_cfg, measure=measure)
        rows.append({"arm": FREE, "target": "-", "budget": math.nan, "seed": seed, "miou": free["miou"],
                     "cost": free["measure"]["cost"], "edges": free["measure"]["edges"], **_parent(free)})
        for tag, budget, given in budgets:
            text = f"{budget:.9g}"
            searched = study_dir.train(f"cost-{tag}-s{seed}", derive(free_cfg, {"cost.weight": float(weight),
                                                                                "cost.target": text}))
            curves.setdefault(tag, {})[seed] = [r.get("expected_cost")
                                                for r in study_dir.metrics(f"cost-{tag}-s{seed}")]
            for arm, source, parent in ((COST_ARM, f"cost-{tag}-s{seed}", searched),
                                        (PRUNE_ARM, f"unconstrained-s{seed}", free)):
                name = f"{'cost' if arm == COST_ARM else 'prune'}-{tag}-ft-s{seed}"
                changes = {**finetune, "cost.budget": text, "model.init_checkpoint": study_dir.checkpoint(source)}
                tuned = study_dir.train(name, derive(free_cfg, changes), measure=measure)
                rows.append({"arm": arm, "target": tag, "budget": budget, "seed": seed, "miou": tuned["miou"],
                             "cost": tuned["measure"]["cost"], "edges": tuned["measure"]["edges"],
                             **_parent(parent)})
    results = {"paper": PAPER, "rows": rows, "seeds": seeds, "metric": metric, "input_size": size, "e0": e0,
               "targets": [{"tag": tag, "budget": b, "given": g} for tag, b, g in budgets],
               "cost_weight": weight, "penalty": cfg.cost.penalty, "finetune_epochs": epochs}
    results["markdown"] = _markdown(results, format_cost)
    results["figures"] = [_plot(results, curves, study_dir.path / "cost_front.png")]
    return results


def _parent(summary: dict) -> dict:
    """The searched supernet an arm was cut from: its mIoU and normalized H(β̂) at the end of its search (how
    far from one path it was when the budget rule cut it down)."""
    return {"searched_miou": summary["miou"], "searched_h_beta": summary["entropy"]["beta"]["end"]["normalized"]}


def _arm(rows, arm, tag=None) -> list:
    return [r for r in rows if r["arm"] == arm and (tag is None or r["target"] == tag)]


def _markdown(results, format_cost) -> str:
    rows, metric = results["rows"], results["metric"]

    def line(arm, target, rs):
        return [arm, target, format_cost(statistics.fmean(r["cost"] for r in rs), metric),
                pct_pm([r["miou"] for r in rs]), pct_pm([r["searched_miou"] for r in rs]),
                f"{statistics.fmean(r['searched_h_beta'] for r in rs):.2f}",
                f"{statistics.fmean(r['edges'] for r in rs):.1f}", len(rs)]

    body = [line(FREE, "-", _arm(rows, FREE))]
    for t in results["targets"]:
        for arm in (COST_ARM, PRUNE_ARM):
            body.append(line(arm, f"{t['tag']}: {format_cost(t['budget'], metric)}", _arm(rows, arm, t["tag"])))
    size = "x".join(str(s) for s in results["input_size"])
    e0 = "" if results["e0"] is None else \
        f" E0 (uniform architecture's expected cost) = {format_cost(results['e0'], metric)};"
    return "\n".join([
        f"**mIoU against measured cost** ({metric} of the fused network at {size}).{e0} cost term: "
        f"{results['penalty']} penalty, weight {results['cost_weight']:g}; both arms discretized to the budget by "
        f"the greedy rule of `export/budget.py` and fine-tuned {results['finetune_epochs']} epochs. mIoU: mean ± "
        f"std over {len(results['seeds'])} seed(s) {results['seeds']}. *Supernet*: the searched network the arm "
        f"starts from (the cost term's search, or the unconstrained run), its mIoU and normalized H(β̂) at the end "
        f"of its search, before the budget rule cut it to one network.", "",
        markdown_table(["Arm", "Target", "Measured cost (mean)", "mIoU", "Supernet mIoU", "Supernet H(β̂)", "Edges",
                        "Runs"], body), ""])


def _plot(results, curves, path) -> str:
    rows, metric = results["rows"], results["metric"]
    fig, (ax, ax2) = figure(2)
    scale = 1e6 if metric != "latency" else 1.0
    unit = {"flops": "MFLOPs", "params": "M params", "latency": "ms"}[metric]
    for arm, marker, color in ((COST_ARM, "o", "C0"), (PRUNE_ARM, "s", "C1"), (FREE, "*", "C2")):
        rs = _arm(rows, arm)
        ax.scatter([r["cost"] / scale for r in rs], [100 * r["miou"] for r in rs], marker=marker, alpha=0.35, s=14,
                   color=color)
        tags = ["-"] if arm == FREE else [t["tag"] for t in results["targets"]]
        xs, ys, errs = [], [], []
        for tag in tags:
            sel = [r for r in rs if r["target"] == tag]
            iv = mean_interval([r["miou"] for r in sel])
            xs.append(statistics.fmean(r["cost"] for r in sel) / scale)
            ys.append(100 * iv.mean)
            errs.append(0.0 if math.isinf(iv.high) else 100 * (iv.high - iv.mean))
        ax.errorbar(xs, ys, yerr=errs, marker=marker, label=arm, capsize=3, color=color)
    for t in results["targets"]:
        ax.axvline(t["budget"] / scale, color="grey", lw=0.5, ls=":")
    ax.set_xlabel(f"measured cost ({unit})")
    ax.set_ylabel("mIoU (%): seeds, mean ± 95% CI")
    ax.set_title("mIoU–cost front", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    for t in results["targets"]:
        runs = curves.get(t["tag"], {})
        for seed, curve in sorted(runs.items())[:1]:
            pts = [(n + 1, v / t["budget"]) for n, v in enumerate(curve) if v is not None]
            if pts:
                ax2.plot(*zip(*pts), marker="." if len(pts) > 20 else "o", label=f"{t['tag']} (seed {seed})")
    ax2.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("E[cost] / target (search epochs)")
    ax2.set_title("the cost term during the search", fontsize=9)
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    return save_figure(fig, path)


def verdict(results) -> str:
    from ssnas.cost.units import format_cost

    rows, metric, words, lines = results["rows"], results["metric"], [], []
    for t in results["targets"]:
        iv = difference(by_seed(rows, "miou", arm=COST_ARM, target=t["tag"]),
                        by_seed(rows, "miou", arm=PRUNE_ARM, target=t["tag"]))
        word, text = claim(iv, +1, None, scale=100, unit=" points")
        words.append(word)
        ca = statistics.fmean(r["cost"] for r in _arm(rows, COST_ARM, t["tag"]))
        cb = statistics.fmean(r["cost"] for r in _arm(rows, PRUNE_ARM, t["tag"]))
        over = [r for r in _arm(rows, COST_ARM, t["tag"]) + _arm(rows, PRUNE_ARM, t["tag"])
                if r["cost"] > t["budget"] * (1 + 1e-9)]
        lines.append(f"- target {t['tag']} ({format_cost(t['budget'], metric)}): measured cost "
                     f"{format_cost(ca, metric)} "
                     f"(cost term) vs {format_cost(cb, metric)} (pruning alone)"
                     f"{'' if not over else f', {len(over)} run(s) OVER the budget'}; mIoU cost term − pruning alone "
                     f"= {text}.")
    overall = combine(words)
    free = mean_interval([r["miou"] for r in _arm(rows, FREE)])
    lines.insert(0, f"'The cost term beats pruning alone at equal cost' (every target): **{overall}**. "
                    f"The unconstrained supernet: {pct(free.mean)} mIoU at "
                    f"{format_cost(statistics.fmean(r['cost'] for r in _arm(rows, FREE)), metric)}.")
    return "\n".join(lines)


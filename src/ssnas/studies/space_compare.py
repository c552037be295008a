"""Search spaces side by side (issue 15): the paper's grid against the dense space of its future work.

Each space in ``study.spaces`` (name → the config changes that select it, e.g. ``{}`` for the grid and
``{model.space: dense}``) runs the config's single-stage protocol — warmup → search → fine-tune, the same
data, epochs and seeds — and its final supernet is evaluated as the model. Per space: mIoU, the trained
supernet's parameters and forward FLOPs, those of the network it folds into (``fuse``: zero edges,
BN and α̂, β̂ removed) and the training wall time. Differences against the reference space are
paired by seed, with 95 % CIs (:mod:`ssnas.studies.stats`). ``study.reference`` names the space the others
are compared with (default: the first listed).

The paper states no result for this comparison: its conclusion only *hypothesizes* that long-range
connections "might further elevate the performance" (§4.4, §5). The verdict tests that hypothesis as a
directional claim without a size (dense − grid > 0), and reports the cost it comes at.
"""
from __future__ import annotations

import functools
from dataclasses import asdict

from ssnas.errors import UserError
from ssnas.studies.common import derive, human, markdown_table, pct, seeds_of, study_param
from ssnas.studies.stats import by_seed, claim, difference, mean_interval, power_note

TITLE = "Search spaces: the grid vs the dense space (long-range connections, the paper's future work)"
PAPER = ("No number: the paper's conclusion hypothesizes that incorporating long-range connections into the "
         "search space (as DCNAS's densely connected space does) might further elevate the performance (§4.4, §5).")


def space_cost(checkpoint: str, size: list) -> dict:
    """Parameters, edges and forward FLOPs (one ``size`` image) of a final supernet and of its fused network,
    measured once in the sub-run's process and kept with its record."""
    from ssnas.tasks.segmentation import load_model
    from ssnas.space.profile import forward_flops
    from ssnas.studies.common import decoded_cost

    model, _ = load_model(checkpoint)
    fused = decoded_cost(model, tuple(size))
    return {"edges": model.num_edges(), "params": sum(p.numel() for p in model.parameters()),
            "flops": forward_flops(model, tuple(size)), "fused_params": fused["params"],
            "fused_flops": fused["flops"]}


def _spaces(cfg) -> dict:
    spaces = study_param(cfg, "spaces", dict, "a mapping of space names to config changes, e.g. "
                         "{grid: {}, dense: {model.space: dense}}")
    if not spaces or any(not isinstance(v, dict) for v in spaces.values()):
        raise UserError(f"study.spaces: {spaces!r} is not valid, expected a mapping of names to config changes, "
                        f"e.g. {{grid: {{}}, dense: {{model.space: dense}}}}")
    return {str(k): v for k, v in spaces.items()}


def run(cfg, study_dir, progress) -> dict:
    spaces = _spaces(cfg)
    names = list(spaces)
    reference = study_param(cfg, "reference", str, f"one of the spaces {', '.join(names)}", default=names[0])
    if reference not in spaces:
        raise UserError(f"study.reference: {reference!r} is not one of the spaces {', '.join(names)}")
    size = list(study_param(cfg, "flops_size", list, "[H, W], the input size FLOPs are counted at",
                            default=list(cfg.data.crop_size)))
    seeds = seeds_of(cfg)
    cost = functools.partial(space_cost, size=size)
    rows = []
    for name, changes in spaces.items():
        for seed in seeds:
            summary = study_dir.train(f"{name}-s{seed}", derive(cfg, {**changes, "seed": seed}), measure=cost)
            rows.append({"space": name, "seed": seed, "miou": summary["miou"],
                         "wall_time_s": summary["wall_time_s"], **summary["measure"]})
    results = {"paper": PAPER, "rows": rows, "names": names, "reference": reference, "seeds": seeds,
               "flops_size": size,
               "spaces": {n: {k: asdict(mean_interval([r[k] for r in rows if r["space"] == n]))
                              for k in ("miou", "wall_time_s", "params", "flops", "fused_params", "fused_flops",
                                        "edges")} for n in names}}
    results["markdown"] = _markdown(results)
    results["figures"] = []
    return results


def _ci(iv: dict, scale: float, digits: int, unit: str = "") -> str:
    if iv["low"] == float("-inf"):
        return f"{scale * iv['mean']:.{digits}f}{unit}"
    return f"{scale * iv['mean']:.{digits}f}{unit} [{scale * iv['low']:.{digits}f}, {scale * iv['high']:.{digits}f}]"


def _markdown(results) -> str:
    size = results["flops_size"]
    body = []
    for n in results["names"]:
        s = results["spaces"][n]
        body.append([n, _ci(s["miou"], 100, 1, "%"), human(s["params"]["mean"]), human(s["flops"]["mean"]),
                     f"{s['edges']['mean']:.0f}", human(s["fused_params"]["mean"]), human(s["fused_flops"]["mean"]),
                     _ci(s["wall_time_s"], 1 / 60, 1, " min")])
    header = ["Space", "mIoU [95% CI]", "Params", f"FLOPs @{size[0]}×{size[1]}", "Edges", "Fused params",
              "Fused FLOPs", "Wall time [95% CI]"]
    return "\n".join([f"**Spaces** — the single-stage supernet of each space, mean over {len(results['seeds'])} "
                      f"seed(s) {results['seeds']} with the 95% t-interval of the mean; FLOPs = 2 × multiply-adds "
                      f"of one image; fused = folded for deployment (zero edges and unreachable cells removed).", "",
                      markdown_table(header, body), ""])


def verdict(results) -> str:
    """Each space against the first: mIoU (the paper's hypothesis: long-range connections help) and wall time,
    paired by seed; and the cost ratios."""
    rows, names, ref = results["rows"], results["names"], results["reference"]
    lines = []
    for n in (n for n in names if n != ref):
        iv = difference(by_seed(rows, "miou", space=n), by_seed(rows, "miou", space=ref))
        _, text = claim(iv, +1, None, scale=100, unit=" points")
        wall = difference(by_seed(rows, "wall_time_s", space=n), by_seed(rows, "wall_time_s", space=ref))
        s, r = results["spaces"][n], results["spaces"][ref]
        lines.append(f"- {n} − {ref} mIoU = {text} (the paper's hypothesis: long-range connections help). "
                     f"Cost: {s['params']['mean'] / r['params']['mean']:.2f}× the parameters, "
                     f"{s['flops']['mean'] / r['flops']['mean']:.2f}× the FLOPs, "
                     f"{s['edges']['mean'] / r['edges']['mean']:.1f}× the edges; wall time {n} − {ref} = "
                     f"{wall.text(1 / 60, ' min')}.")
    groups = [[r["miou"] for r in rows if r["space"] == n] for n in names]
    lines.append(f"- Power: {power_note(groups, 0.01, 'a 1-point mIoU difference')}.")
    return "\n".join(lines) if len(names) > 1 else "- one space only: nothing to compare"

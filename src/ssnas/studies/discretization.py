"""Fig. 2 (§4.2): how a supernet trained with entropy loss of growing magnitude survives dropping edges.

For each magnitude c (used for both c_alpha and c_beta) a supernet is trained through the search stage
(``study.search_protocol``: warmup + search). Then, for each fraction f in ``study.prune_fractions``, the
f·N edges with the weakest β̂ are dropped (``SuperNet.prune_edges``: ranked by β̂, i.e. within their cell,
the paper's approximation; a cell keeps at least one edge) and the pruned supernet is evaluated as it is
(Fig. 2a) and after a short fine-tune of its weights (Fig. 2b: ``model.init_checkpoint`` +
``model.prune_edges``, protocol fine-tune only, ``study.finetune_protocol``).
"""
from __future__ import annotations

import math

from ssnas.errors import UserError
from ssnas.studies.common import (derive, figure, markdown_table, number_map, pct, protocol_changes,
                                  judged, save_figure, spearman, study_param, trend)

TITLE = "Discretization error vs entropy magnitude (Fig. 2a, 2b)"
PAPER = ("Fig. 2a: the unregularized supernet collapses after dropping ~20% of its edges; the stronger the "
         "entropy loss, the more edges can be dropped (30% with no noticeable drop for the heavily regularized "
         "one). Fig. 2b: with a short post-pruning fine-tune, strong regularization retrieves the performance, "
         "the vanilla supernet does not.")
REFERENCE_FRACTION = 0.3      # the paper's "pruning 30% of the transmissions"
COLLAPSE_FRACTION = 0.2       # the paper's "collapse ... after dropping merely 20% of its edges"
COLLAPSE = 0.5                # losing half of the mIoU counts as a collapse
PANELS = (("miou_pruned", "a: pruned, no fine-tune"), ("miou_finetuned", "b: pruned + short fine-tune"))


def _fractions(cfg) -> list[float]:
    fr = study_param(cfg, "prune_fractions", list, "a list of fractions in [0, 1), e.g. [0, 0.1, 0.2]")
    if not fr or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1 for f in fr):
        raise UserError(f"study.prune_fractions: {fr!r} is not valid, expected fractions in [0, 1)")
    return sorted({float(f) for f in fr} | {0.0})


def run(cfg, study_dir, progress) -> dict:
    magnitudes = number_map(cfg, "magnitudes", "a mapping name → c (c_alpha = c_beta), e.g. {none: 0, high: 1}")
    fractions = _fractions(cfg)
    search = protocol_changes(cfg, "search_protocol")
    finetune = protocol_changes(cfg, "finetune_protocol")
    finetune.update({"protocol.warmup": 0.0, "protocol.search": 0.0, "protocol.finetune": 1.0,
                     "protocol.entropy_start": 0.0})
    rows, entropy = [], {}
    for name, c in magnitudes.items():
        base = derive(cfg, {**search, "entropy.c_alpha": c, "entropy.c_beta": c})
        summary = study_dir.train(f"supernet-{name}", base)
        entropy[name] = summary["entropy"]["beta"]["end"]["normalized"]
        ckpt = study_dir.checkpoint(f"supernet-{name}")
        for f in fractions:
            tag = f"{name}-{round(100 * f):02d}"
            model_keys = {"model.init_checkpoint": ckpt, "model.prune_edges": f}
            pruned = study_dir.evaluation(f"prune-{tag}", derive(base, model_keys))
            tuned = study_dir.train(f"finetune-{tag}", derive(base, {**model_keys, **finetune}))
            rows.append({"magnitude": name, "c": c, "fraction": f, "edges": pruned["edges"],
                         "miou_pruned": pruned["miou"], "miou_finetuned": tuned["miou"]})
    results = {"paper": PAPER, "rows": rows, "magnitudes": magnitudes, "fractions": fractions,
               "beta_entropy_end": entropy}
    results["markdown"] = _tables(rows, magnitudes, fractions) + "\n" + markdown_table(
        ["magnitude (c)", "H(β̂) at the end of the search, normalized (1 = uniform)"],
        [[f"{m} ({c:g})", f"{entropy[m]:.3f}"] for m, c in magnitudes.items()]) + "\n"
    results["figures"] = [_plot(rows, magnitudes, study_dir.path / "fig2_discretization.png")]
    return results


def _tables(rows, magnitudes, fractions) -> str:
    out = []
    for key, title in PANELS:
        header = ["magnitude (c)"] + [f"drop {round(100 * f)}%" for f in fractions]
        body = [[f"{m} ({c:g})"] + [pct(_value(rows, m, f, key)) for f in fractions] for m, c in magnitudes.items()]
        out += [f"**Fig. 2{title}** — mIoU after dropping a fraction of the edges with the weakest β̂", "",
                markdown_table(header, body), ""]
    return "\n".join(out)


def _value(rows, magnitude, fraction, key) -> float:
    for r in rows:
        if r["magnitude"] == magnitude and r["fraction"] == fraction:
            return r[key]
    return math.nan


def _plot(rows, magnitudes, path) -> str:
    fig, axes = figure(2)
    for ax, (key, title) in zip(axes, PANELS):
        for m in magnitudes:
            pts = sorted((r["fraction"], r[key]) for r in rows if r["magnitude"] == m)
            ax.plot([100 * x for x, _ in pts], [100 * y for _, y in pts], marker="o", label=m)
        ax.set_title(f"Fig. 2{title}", fontsize=9)
        ax.set_xlabel("edges dropped (%)")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="entropy", fontsize=8)
    return save_figure(fig, path)


def _drops(results, key, target: float = REFERENCE_FRACTION) -> tuple[float, dict]:
    """(the fraction closest to ``target``, magnitude → mIoU lost from 0% to it, relative to 0%)."""
    fractions = [f for f in results["fractions"] if f > 0]
    ref = min(fractions, key=lambda f: abs(f - target)) if fractions else 0.0
    drops = {}
    for m in results["magnitudes"]:
        full, cut = _value(results["rows"], m, 0.0, key), _value(results["rows"], m, ref, key)
        drops[m] = (full - cut) / full if full > 0 else math.nan
    return ref, drops


def verdict(results) -> str:
    lines = []
    mags = results["magnitudes"]
    for key, title in PANELS:
        ref, drops = _drops(results, key)
        rho = spearman([mags[m] for m in drops], [drops[m] for m in drops])
        listed = ", ".join(f"{m} {pct(d)}" for m, d in drops.items())
        lines.append(f"- Fig. 2{title}: relative mIoU lost at {round(100 * ref)}% edges dropped: {listed}. "
                     f"Rank correlation of magnitude with the loss: {rho:+.2f} → the paper's trend (stronger "
                     f"entropy loss, smaller loss) {judged(trend(rho))} in this run (one seed: no noise estimate).")
    weakest = min(mags, key=mags.get)
    ref, drops = _drops(results, PANELS[0][0], COLLAPSE_FRACTION)
    lines.append(f"- Collapse of the least regularized supernet ({weakest}, c={mags[weakest]:g}) at "
                 f"{round(100 * ref)}% edges dropped: it lost {pct(drops[weakest])} of its mIoU → the paper's "
                 f"collapse (≥ {100 * COLLAPSE:.0f}% lost) {judged(drops[weakest] >= COLLAPSE)}; its β̂ ended "
                 f"the search at normalized entropy {results['beta_entropy_end'][weakest]:.3f} (1 = uniform).")
    return "\n".join(lines)

"""Fig. 2 (§4.2): how a supernet trained with entropy loss of growing magnitude survives dropping edges.

For each magnitude c (used for both c_alpha and c_beta) a supernet is trained through the search stage
(``study.search_protocol``: warmup + search). Then, for each fraction f in ``study.prune_fractions``, the
f·N edges with the weakest β̂ are dropped (``SuperNet.prune_edges``: ranked by β̂, i.e. within their cell,
the paper's approximation; a cell keeps at least one edge) and the pruned supernet is evaluated as it is
(Fig. 2a) and after a short fine-tune of its weights (Fig. 2b: ``model.init_checkpoint`` +
``model.prune_edges``, protocol fine-tune only, ``study.finetune_protocol``). Everything is repeated for
each seed of ``study.seeds``; tables give mean ± std over seeds, verdicts pair the magnitudes by seed.
"""
from __future__ import annotations

import math
import statistics

from ssnas.errors import UserError
from ssnas.studies.common import (derive, figure, markdown_table, mean_std, number_map, pct, pct_pm,
                                  protocol_changes, save_figure, seeds_of, spearman, study_param)
from ssnas.studies.stats import claim, difference, mean_interval, shift

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
    seeds = seeds_of(cfg)
    search = protocol_changes(cfg, "search_protocol")
    finetune = protocol_changes(cfg, "finetune_protocol")
    finetune.update({"protocol.warmup": 0.0, "protocol.search": 0.0, "protocol.finetune": 1.0,
                     "protocol.entropy_start": 0.0})
    rows, entropy = [], {}
    for name, c in magnitudes.items():
        for seed in seeds:
            base = derive(cfg, {**search, "seed": seed, "entropy.c_alpha": c, "entropy.c_beta": c})
            summary = study_dir.train(f"supernet-{name}-s{seed}", base)
            entropy.setdefault(name, {})[seed] = summary["entropy"]["beta"]["end"]["normalized"]
            ckpt = study_dir.checkpoint(f"supernet-{name}-s{seed}")
            for f in fractions:
                tag = f"{name}-{round(100 * f):02d}-s{seed}"
                model_keys = {"model.init_checkpoint": ckpt, "model.prune_edges": f}
                pruned = study_dir.evaluation(f"prune-{tag}", derive(base, model_keys))
                tuned = study_dir.train(f"finetune-{tag}", derive(base, {**model_keys, **finetune}))
                rows.append({"magnitude": name, "c": c, "seed": seed, "fraction": f, "edges": pruned["edges"],
                             "miou_pruned": pruned["miou"], "miou_finetuned": tuned["miou"]})
    results = {"paper": PAPER, "rows": rows, "magnitudes": magnitudes, "fractions": fractions, "seeds": seeds,
               "beta_entropy_end": {m: mean_std(list(e.values()))[0] for m, e in entropy.items()}}
    results["markdown"] = _tables(rows, magnitudes, fractions, seeds) + "\n" + markdown_table(
        ["magnitude (c)", "H(β̂) at the end of the search, normalized (1 = uniform), mean ± std over seeds"],
        [[f"{m} ({c:g})", "{:.3f} ± {:.3f}".format(*mean_std(list(entropy[m].values())))]
         for m, c in magnitudes.items()]) + "\n"
    results["figures"] = [_plot(rows, magnitudes, study_dir.path / "fig2_discretization.png")]
    return results


def _tables(rows, magnitudes, fractions, seeds) -> str:
    out = []
    for key, title in PANELS:
        header = ["magnitude (c)"] + [f"drop {round(100 * f)}%" for f in fractions]
        body = [[f"{m} ({c:g})"] + [pct_pm(_values(rows, m, f, key)) for f in fractions]
                for m, c in magnitudes.items()]
        out += [f"**Fig. 2{title}** — mIoU after dropping a fraction of the edges with the weakest β̂, mean ± std "
                f"over {len(seeds)} seed(s) {seeds}", "", markdown_table(header, body), ""]
    return "\n".join(out)


def _values(rows, magnitude, fraction, key) -> list:
    return [r[key] for r in rows if r["magnitude"] == magnitude and r["fraction"] == fraction]


def _plot(rows, magnitudes, path) -> str:
    fig, axes = figure(2)
    for ax, (key, title) in zip(axes, PANELS):
        for m in magnitudes:
            fr = sorted({r["fraction"] for r in rows if r["magnitude"] == m})
            ax.plot([100 * f for f in fr], [100 * statistics.fmean(_values(rows, m, f, key)) for f in fr],
                    marker="o", label=m)
        ax.set_title(f"Fig. 2{title}", fontsize=9)
        ax.set_xlabel("edges dropped (%)")
        ax.set_ylabel("mIoU (%), mean over seeds")
        ax.grid(alpha=0.3)
    axes[0].legend(title="entropy", fontsize=8)
    return save_figure(fig, path)


def _drops(results, key, target: float = REFERENCE_FRACTION) -> tuple[float, dict]:
    """(the fraction closest to ``target``, magnitude → {seed: mIoU lost from 0% to it, relative to 0%})."""
    fractions = [f for f in results["fractions"] if f > 0]
    ref = min(fractions, key=lambda f: abs(f - target)) if fractions else 0.0
    drops = {}
    for m in results["magnitudes"]:
        full = {r["seed"]: r[key] for r in results["rows"] if r["magnitude"] == m and r["fraction"] == 0.0}
        cut = {r["seed"]: r[key] for r in results["rows"] if r["magnitude"] == m and r["fraction"] == ref}
        drops[m] = {s: (full[s] - cut[s]) / full[s] if full[s] > 0 else math.nan for s in full if s in cut}
    return ref, drops


def verdict(results) -> str:
    """Relative mIoU lost at ~30% dropped, weakest − strongest magnitude, paired by seed (the paper's side: the
    unregularized supernet loses more; Fig. 2 gives no size, so only the sign counts)."""
    lines = []
    mags = results["magnitudes"]
    weakest, strongest = min(mags, key=mags.get), max(mags, key=mags.get)
    for key, title in PANELS:
        ref, drops = _drops(results, key)
        means = {m: mean_std(list(d.values()))[0] for m, d in drops.items()}
        rho = spearman([mags[m] for m in means], [means[m] for m in means])
        listed = ", ".join(f"{m} {pct(d)}" for m, d in means.items())
        _, text = claim(difference(drops[weakest], drops[strongest]), +1, None, scale=100, unit=" points")
        lines.append(f"- Fig. 2{title}: relative mIoU lost at {round(100 * ref)}% edges dropped, mean over seeds: "
                     f"{listed} (rank correlation with the magnitude {rho:+.2f}). {weakest} − {strongest}: {text} "
                     f"('stronger entropy loss, smaller loss').")
    ref, drops = _drops(results, PANELS[0][0], COLLAPSE_FRACTION)
    iv = mean_interval(list(drops[weakest].values()))
    _, text = claim(shift(iv, COLLAPSE), +1, None, scale=100, unit=" points")
    lines.append(f"- Collapse of the least regularized supernet ({weakest}, c={mags[weakest]:g}) at "
                 f"{round(100 * ref)}% edges dropped: it lost {pct(iv.mean)} of its mIoU; lost − "
                 f"{100 * COLLAPSE:.0f}% = {text} ('it collapses', ≥ {100 * COLLAPSE:.0f}% lost); its β̂ ended the "
                 f"search at normalized entropy {results['beta_entropy_end'][weakest]:.3f} (1 = uniform).")
    return "\n".join(lines)

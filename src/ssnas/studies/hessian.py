"""Fig. 4 (§4.5): the dominant eigenvalue of ∇²_α L_valid during DARTS searches, split vs joint data.

For every search space (study.spaces, RobustDARTS's S1–S4) and data mode (study.modes: ``split`` — w and α on
disjoint halves, as DARTS/RobustDARTS; ``joint`` — both on the whole training set) one DARTS search runs
through the engine with Hessian tracking (``run.hessian_every`` > 0). Curves are read from each run's
metrics.jsonl; the final genotype's skip connections and parameter-free ops per cell come from the last
record. The paper's claim, judged per space over the seeds (``study.seeds``, at least 3 for an interval
worth reading) as four parts, each with its 95% CI (:mod:`ssnas.studies.stats`), paired by seed where split
and joint share seeds:

1. split grows: mean log(λ_end / λ_start) under split above log ``GROWTH``;
2. joint stays small: the same under joint *below* log ``GROWTH`` (ending below split is not enough when
   joint grows too);
3. growth is larger under split: log-ratio split − joint > 0;
4. end values: λ_end split − joint > 0.

The claim holds in a space when all four held, did not hold when any did not, and is inconclusive otherwise.
"""
from __future__ import annotations

import math
import statistics

from ssnas.errors import UserError
from ssnas.studies.common import derive, figure, markdown_table, mean_std, pct, save_figure, seeds_of, study_param
from ssnas.studies.stats import by_seed, claim, combine, difference, mean_interval, shift, verdict_text

TITLE = "Dominant Hessian eigenvalue, split vs joint data (Fig. 4)"
PAPER = ("Fig. 4 (CIFAR-10, DARTS, S1–S4): with a dataset split the dominant eigenvalue of ∇²_α L_valid steadily "
         "increases and reaches much larger values at the end of the search (left); with weights and α both "
         "optimized on the whole set it stays relatively small in all four spaces (right).")
SPACES = ("s1", "s2", "s3", "s4")
MODES = ("split", "joint")
GROWTH = 1.3   # "grows": end/start above RobustDARTS's DARTS-ES factor (fixed before any result was seen)
FIGURE = "fig4_hessian.png"


def _choice_list(cfg, key: str, allowed: tuple) -> list:
    names = study_param(cfg, key, list, f"a list among {', '.join(allowed)}", default=list(allowed))
    if not names or any(n not in allowed for n in names):
        raise UserError(f"study.{key}: {names!r} is not valid, expected a non-empty list among {', '.join(allowed)}")
    return names


def run(cfg, study_dir, progress) -> dict:
    if cfg.task != "darts":
        raise UserError("task: the hessian study searches DARTS networks, expected 'task: darts'")
    if cfg.run.hessian_every <= 0:
        raise UserError("run.hessian_every: 0 measures no eigenvalue, expected k > 0 (epochs between measurements)")
    spaces, modes, seeds = _choice_list(cfg, "spaces", SPACES), _choice_list(cfg, "modes", MODES), seeds_of(cfg)
    rows, curves = [], {}
    for space in spaces:
        for mode in modes:
            for seed in seeds:
                name = f"{space}-{mode}-s{seed}"
                summary = study_dir.train(name, derive(cfg, {"darts.space": space, "protocol.split": mode,
                                                             "seed": seed}))
                records = study_dir.metrics(name)
                curve = [(r["epoch"], r["hessian_eigenvalue"]) for r in records if "hessian_eigenvalue" in r]
                curves.setdefault((space, mode), []).append(curve)
                last = records[-1]
                stop = summary.get("early_stop") or {}
                rows.append({"space": space, "mode": mode, "seed": seed,
                             "eig_start": curve[0][1], "eig_end": curve[-1][1],
                             "eig_ratio": curve[-1][1] / curve[0][1] if curve[0][1] else float("nan"),
                             "log_growth": _log_growth(curve[0][1], curve[-1][1]),
                             "epochs": last["epoch"], "early_stop_epoch": stop.get("epoch"),
                             "skip_normal": last["skip_connections"]["normal"],
                             "skip_reduce": last["skip_connections"]["reduce"],
                             "param_free_normal": last["parameter_free"]["normal"],
                             "param_free_reduce": last["parameter_free"]["reduce"],
                             "accuracy": summary["score"],
                             "curve": " ".join(f"{e}:{v:.4g}" for e, v in curve)})
    results = {"paper": PAPER, "rows": rows, "spaces": spaces, "modes": modes, "seeds": seeds,
               "means": _means(rows, spaces, modes)}
    body = [[r["space"].upper(), r["mode"], r["seed"], f"{r['eig_start']:.4f}", f"{r['eig_end']:.4f}",
             f"{r['eig_ratio']:.2f}", f"{r['skip_normal']} / {r['skip_reduce']}",
             f"{r['param_free_normal']} / {r['param_free_reduce']}", pct(r["accuracy"]),
             r["early_stop_epoch"] or "-"] for r in rows]
    header = ["Space", "Data", "Seed", "λ start", "λ end", "end/start", "skip (normal / reduce)",
              "param-free (normal / reduce)", "Test acc.", "DARTS-ES stop"]
    results["markdown"] = "\n".join([
        f"**Fig. 4** — dominant eigenvalue of ∇²_α L_valid (measured every {cfg.run.hessian_every} epoch(s) on a "
        f"fixed {cfg.darts.hessian_batch}-image batch of the architecture's data), dataset "
        f"`{cfg.darts.dataset}`, {cfg.darts.layers} layers × {cfg.darts.channels} channels, "
        f"{cfg.protocol.epochs} epochs. Genotype counts are per cell (8 edges each).", "",
        markdown_table(header, body), "",
        f"Over the {len(seeds)} seed(s) {seeds}: λ mean ± std, growth λ_end / λ_start as geometric mean (× / ÷ "
        f"geometric std):", "", markdown_table(["Space", "Data", "λ start", "λ end", "growth"], [
            [space.upper(), mode] + [_pm([r[f"eig_{k}"] for r in rows if r["space"] == space and r["mode"] == mode])
                                     for k in ("start", "end")]
            + [_growth_pm([r["log_growth"] for r in rows if r["space"] == space and r["mode"] == mode])]
            for space in spaces for mode in modes]), ""])
    results["figures"] = [_plot(curves, spaces, modes, study_dir.path / FIGURE)]
    return results


def _log_growth(start: float, end: float) -> float:
    """log(λ_end / λ_start): growth factors average and difference on a log scale (×2 and ×½ are symmetric)."""
    return math.log(end / start) if start > 0 and end > 0 else float("nan")


def _pm(values: list) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f}"


def _growth_pm(logs: list) -> str:
    mean, std = mean_std(logs)
    return f"×{math.exp(mean):.2f} (×/÷ {math.exp(std):.2f})"


def _means(rows: list, spaces: list, modes: list) -> dict:
    """{space: {mode: {"start", "end", "growth"}}}: eigenvalues (arithmetic) and growth (geometric) over seeds."""
    out = {}
    for space in spaces:
        for mode in modes:
            sel = [r for r in rows if r["space"] == space and r["mode"] == mode]
            vals = {k: statistics.fmean(r[f"eig_{k}"] for r in sel) for k in ("start", "end")}
            logs = [r["log_growth"] for r in sel if not math.isnan(r["log_growth"])]
            vals["growth"] = math.exp(statistics.fmean(logs)) if logs else float("nan")
            out.setdefault(space, {})[mode] = vals
    return out


def _plot(curves: dict, spaces: list, modes: list, path) -> str:
    fig, axes = figure(len(modes))
    for ax, mode in zip(axes, modes):
        for space in spaces:
            runs = curves[(space, mode)]
            epochs = [e for e, _ in runs[0]]
            values = [statistics.fmean(c[i][1] for c in runs) for i in range(len(epochs))]
            ax.plot(epochs, values, marker="o", markersize=3, label=space.upper())
        ax.set_title(f"{mode}: " + ("w and α on disjoint halves" if mode == "split" else "w and α on all data"),
                     fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("dominant eigenvalue")
        ax.legend(fontsize=8)
    top = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:  # one scale for both panels, so split and joint compare at a glance
        ax.set_ylim(0, top)
    return save_figure(fig, path)


def verdict(results) -> str:
    m, rows, lines = results["means"], results["rows"], []
    held = 0
    for space in results["spaces"]:
        s, j = m[space].get("split"), m[space].get("joint")
        if s is None or j is None:
            lines.append(f"- {space.upper()}: needs both split and joint runs, not judged.")
            continue
        log_g = {mode: by_seed(rows, "log_growth", space=space, mode=mode) for mode in ("split", "joint")}
        ends = {mode: by_seed(rows, "eig_end", space=space, mode=mode) for mode in ("split", "joint")}
        threshold = math.log(GROWTH)
        parts = [
            (f"split grows (log growth − log {GROWTH})",
             shift(mean_interval(list(log_g["split"].values())), threshold), +1),
            (f"joint stays small (log {GROWTH} − log growth)",
             shift(mean_interval([-v for v in log_g["joint"].values()]), -threshold), +1),
            ("growth split − joint (log)", difference(log_g["split"], log_g["joint"]), +1),
            ("λ_end split − joint", difference(ends["split"], ends["joint"]), +1)]
        words, texts = [], []
        for what, iv, side in parts:
            word, text = claim(iv, side, None, digits=3)
            words.append(word)
            texts.append(f"{what} = {text}")
        word = combine(words)
        held += word == "held"
        lines.append(f"- {space.upper()}: split {s['start']:.4f} → {s['end']:.4f} (×{s['growth']:.2f}, geometric "
                     f"mean over seeds), joint {j['start']:.4f} → {j['end']:.4f} (×{j['growth']:.2f}). "
                     + "; ".join(texts) + f" → 'eigenvalues grow under split and stay small under joint' "
                     f"{verdict_text(word)}.")
    lines.append(f"- Overall: held in {held} of {len(results['spaces'])} space(s); a space holds only when all four "
                 f"parts held (split grows beyond ×{GROWTH}, joint does not, split grows more and ends higher).")
    return "\n".join(lines)

"""Table 1: mean entropy of the architecture parameters at the start and the end of the search phase.

The paper's point is the *lack of implicit entropy regularization*: without an entropy loss the mean
entropy of β̂ (edges) and α̂ (operations) barely moves during the search. Our rows come from supernets
trained through the search stage (``study.search_protocol``) without entropy loss, one per seed, read from
each run's ``summary.json["entropy"]``: raw (mean entropy per decision, nats), normalized by ln(#choices),
and per element (the mean of -p ln p over the parameters' valid elements: the paper's unit, whose 0.260 for
DARTS's 8 uniform operations is ln 8 / 8). Other methods add rows by appending a function to ``ROW_SOURCES``.

Verdict: per seed, the relative change (end - start) / start of the raw entropy; "stays constant" when its
95% CI lies within ±``STEADY`` (:func:`ssnas.studies.stats.within`).
"""
from __future__ import annotations

import math
import statistics

from ssnas.studies.common import derive, markdown_table, protocol_changes, seeds_of
from ssnas.studies.stats import mean_interval, verdict_text, within

TITLE = "Lack of implicit entropy regularization (Table 1)"
PAPER = ("Table 1, 'Ours' rows: edges 0.128 → 0.127, operations 0.346 → 0.345 (start → end of the search "
         "stage): the entropy of an unregularized supernet stays constant.")
PAPER_ROWS = {("Ours", "Edges"): (0.128, 0.127), ("Ours", "Operations"): (0.346, 0.345),
              ("Auto-DeepLab", "Edges"): (0.259, 0.256), ("Auto-DeepLab", "Operations"): (0.260, 0.258),
              ("DARTS", "Topology"): (0.126, 0.126), ("DARTS", "Operations"): (0.260, 0.256)}
STEADY = 0.05     # a relative change below 5% counts as "stays constant" (the paper's rows change < 1%)
PARAMETERS = (("beta", "Edges"), ("alpha", "Operations"))
KINDS = ("raw", "normalized", "per_element")


def _row(method: str, label: str, entropies: list[dict]) -> dict:
    """A table row from one ``{"start": {kind: value}, "end": {...}}`` per seed (several per seed are
    averaged first: DARTS's normal and reduce cells), means over seeds plus the per-seed relative changes."""
    row = {"method": method, "parameters": label, "seeds": len(entropies)}
    for when in ("start", "end"):
        for kind in KINDS:
            row[f"{when}_{kind}"] = statistics.fmean(e[when].get(kind, math.nan) for e in entropies)
    row["change"] = [(e["end"]["raw"] - e["start"]["raw"]) / e["start"]["raw"] if e["start"]["raw"] else math.nan
                     for e in entropies]
    return row


def _mean_of(entropies: list[dict]) -> dict:
    """Several distributions of one run (e.g. normal and reduce cells) as one, by their means."""
    return {when: {kind: statistics.fmean(e[when].get(kind, math.nan) for e in entropies) for kind in KINDS}
            for when in ("start", "end")}


def ours_rows(cfg, study_dir, progress) -> list[dict]:
    """One row per architecture parameter of the supernet, means over seeds."""
    search = protocol_changes(cfg, "search_protocol")
    summaries = [study_dir.train(f"search-s{seed}", derive(cfg, {**search, "seed": seed, "entropy.c_alpha": 0.0,
                                                                 "entropy.c_beta": 0.0}))
                 for seed in seeds_of(cfg)]
    return [_row("Ours", label, [s["entropy"][key] for s in summaries]) for key, label in PARAMETERS]


def darts_rows(cfg, study_dir, progress) -> list[dict]:
    """Table 1's DARTS rows: a DARTS search with DOTS's decoupled topology (the paper's footnote), from the DARTS
    config named by ``study.darts_config`` (e.g. ``darts/cifar10-s1``; no rows without it), one per seed.
    Topology = mean over topology_normal/_reduce, Operations = over alpha_normal/_reduce. The topology
    probabilities are DOTS's tempered ones, so annealing 10 → 0.02 alone lowers their entropy."""
    from ssnas.config import load_config

    name = cfg.study.get("darts_config")
    if not name:
        return []
    base = load_config(name)
    summaries = [study_dir.train(f"darts-dots-s{seed}", derive(base, {"darts.topology": "dots", "seed": seed}))
                 for seed in seeds_of(cfg)]
    return [_row("DARTS", label, [_mean_of([e for k, e in s["entropy"].items() if k.startswith(prefix)])
                                  for s in summaries])
            for prefix, label in (("topology", "Topology"), ("alpha", "Operations"))]


def autodeeplab_rows(cfg, study_dir, progress) -> list[dict]:
    """Table 1's Auto-DeepLab rows: the Auto-DeepLab supernet (``model.space: autodeeplab``) searched by the
    config named by ``study.autodeeplab_config`` (e.g. ``autodeeplab/cityscapes-search``; no rows without it)
    without entropy loss, one run per seed. Edges = its β̂ (normalized per Auto-DeepLab's Eq. 7),
    Operations = its α̂ (8 operations per cell edge), start and end of that config's search phase."""
    from ssnas.config import load_config

    name = cfg.study.get("autodeeplab_config")
    if not name:
        return []
    base = load_config(name)
    summaries = [study_dir.train(f"autodeeplab-s{seed}", derive(base, {"seed": seed, "entropy.c_alpha": 0.0,
                                                                     "entropy.c_beta": 0.0}))
                 for seed in seeds_of(cfg)]
    return [_row("Auto-DeepLab", label, [s["entropy"][key] for s in summaries]) for key, label in PARAMETERS]


# Each source: (cfg, StudyDir, progress) -> rows with method, parameters, start_raw, end_raw (+ normalized).
ROW_SOURCES = [ours_rows, autodeeplab_rows, darts_rows]


def run(cfg, study_dir, progress) -> dict:
    rows = [row for source in ROW_SOURCES for row in source(cfg, study_dir, progress)]
    body = []
    for r in rows:
        paper = PAPER_ROWS.get((r["method"], r["parameters"]))
        body.append([r["method"], r["parameters"], r["seeds"], f"{r['start_raw']:.3f} → {r['end_raw']:.3f}",
                     f"{r['start_normalized']:.3f} → {r['end_normalized']:.3f}",
                     f"{r['start_per_element']:.3f} → {r['end_per_element']:.3f}",
                     f"{paper[0]:.3f} → {paper[1]:.3f}" if paper else "-"])
    table = markdown_table(["Method", "Parameters", "Seeds", "nats (per decision)", "normalized",
                            "per element (paper's unit)", "Paper (per element)"], body)
    return {"paper": PAPER, "rows": rows, "figures": [],
            "markdown": "**Table 1** — mean entropy of the architecture parameters, start → end of the search "
                        "stage, mean over seeds: in nats per decision (a cell's edges or kernels), normalized by "
                        "ln(#choices), and per element (mean of −p ln p over the parameters, the paper's unit: "
                        f"ln 8 / 8 = 0.260 for 8 uniform operations)\n\n{table}\n"}


def verdict(results) -> str:
    lines = []
    for r in results["rows"]:
        iv = mean_interval(r["change"])
        word = within(iv, STEADY)
        lines.append(f"- {r['method']} {r['parameters'].lower()}: {r['start_raw']:.3f} → {r['end_raw']:.3f} nats; "
                     f"relative change {iv.text(100, '%')} → 'stays constant' (within ±{100 * STEADY:.0f}%) "
                     f"{verdict_text(word, iv, 100, '%')}.")
    return "\n".join(lines)

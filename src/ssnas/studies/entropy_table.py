"""Table 1: mean entropy of the architecture parameters at the start and the end of the search phase.

The paper's point is the *lack of implicit entropy regularization*: without an entropy loss the mean
entropy of β̂ (edges) and α̂ (operations) barely moves during the search. Our rows come from supernets
trained through the search stage (``study.search_protocol``) without entropy loss, one per seed, read from
each run's ``summary.json["entropy"]`` (raw, in nats, as the paper's numbers look, and normalized by
ln(#choices)). Other methods add rows by appending a function to ``ROW_SOURCES``.
"""
from __future__ import annotations

import statistics

from ssnas.studies.common import derive, judged, markdown_table, protocol_changes, seeds_of

TITLE = "Lack of implicit entropy regularization (Table 1)"
PAPER = ("Table 1, 'Ours' rows: edges 0.128 → 0.127, operations 0.346 → 0.345 (start → end of the search "
         "stage): the entropy of an unregularized supernet stays constant.")
PAPER_ROWS = {("Ours", "Edges"): (0.128, 0.127), ("Ours", "Operations"): (0.346, 0.345),
              ("DARTS", "Topology"): (0.126, 0.126), ("DARTS", "Operations"): (0.260, 0.256)}
STEADY = 0.05     # a relative change below 5% counts as "stays constant" (the paper's rows change < 1%)
PARAMETERS = (("beta", "Edges"), ("alpha", "Operations"))


def ours_rows(cfg, study_dir, progress) -> list[dict]:
    """One row per architecture parameter of the supernet, mean ± std over seeds."""
    search = protocol_changes(cfg, "search_protocol")
    summaries = [study_dir.train(f"search-s{seed}", derive(cfg, {**search, "seed": seed, "entropy.c_alpha": 0.0,
                                                                 "entropy.c_beta": 0.0}))
                 for seed in seeds_of(cfg)]
    rows = []
    for key, label in PARAMETERS:
        row = {"method": "Ours", "parameters": label, "seeds": len(summaries)}
        for when in ("start", "end"):
            for kind in ("raw", "normalized"):
                vals = [s["entropy"][key][when][kind] for s in summaries]
                row[f"{when}_{kind}"] = statistics.fmean(vals)
        rows.append(row)
    return rows


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
    rows = []
    for prefix, label in (("topology", "Topology"), ("alpha", "Operations")):
        row = {"method": "DARTS", "parameters": label, "seeds": len(summaries)}
        for when in ("start", "end"):
            for kind in ("raw", "normalized"):
                row[f"{when}_{kind}"] = statistics.fmean(e[when][kind] for s in summaries
                                                         for k, e in s["entropy"].items() if k.startswith(prefix))
        rows.append(row)
    return rows


# Each source: (cfg, StudyDir, progress) -> rows with method, parameters, start_raw, end_raw (+ normalized).
ROW_SOURCES = [ours_rows, darts_rows]


def run(cfg, study_dir, progress) -> dict:
    rows = [row for source in ROW_SOURCES for row in source(cfg, study_dir, progress)]
    body = []
    for r in rows:
        paper = PAPER_ROWS.get((r["method"], r["parameters"]))
        body.append([r["method"], r["parameters"], f"{r['start_raw']:.3f}", f"{r['end_raw']:.3f}",
                     f"{r.get('start_normalized', float('nan')):.3f}", f"{r.get('end_normalized', float('nan')):.3f}",
                     f"{paper[0]:.3f} → {paper[1]:.3f}" if paper else "-"])
    table = markdown_table(["Method", "Parameters", "Start", "End", "Start (norm.)", "End (norm.)", "Paper"], body)
    return {"paper": PAPER, "rows": rows, "figures": [],
            "markdown": f"**Table 1** — mean entropy (nats) of the architecture parameters\n\n{table}\n"}


def verdict(results) -> str:
    lines = []
    for r in results["rows"]:
        change = (r["end_raw"] - r["start_raw"]) / r["start_raw"] if r["start_raw"] else float("nan")
        steady = abs(change) < STEADY
        lines.append(f"- {r['method']} {r['parameters'].lower()}: {r['start_raw']:.3f} → {r['end_raw']:.3f} "
                     f"({100 * change:+.1f}%) → 'stays constant' (|change| < {100 * STEADY:.0f}%) "
                     f"{judged(steady)}.")
    return "\n".join(lines)

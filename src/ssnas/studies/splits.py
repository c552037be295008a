"""Table 7 (§4.5): which data the weights and the architecture are trained on.

Each row is the config's single-stage protocol with ``protocol.split`` (joint: both from the whole set,
batches drawn separately; split: disjoint halves; half: the same half for both — split's data budget
without its disjointness) and ``protocol.weight_labels`` / ``protocol.arch_labels`` (fine | coarse | both;
with both, the fine-tune phase uses the fine labels only, as in the paper).
"""
from __future__ import annotations

from ssnas.errors import UserError
from ssnas.studies.common import derive, markdown_table, mean_std, pct, pct_pm, seeds_of, study_param
from ssnas.studies.stats import by_seed, claim, difference, power_note

TITLE = "Dataset split for weights and architecture (Table 7)"
PAPER = ("Table 7 (large model): split halves 69.9%, joint 75.3%, joint with coarse architecture labels 74.6%, "
         "coarse weight labels 61.8%, fine+coarse for both 75.2%: joint is best (+5.4 over split), coarse labels "
         "for the architecture cost little, coarse labels for the weights cost much.")
# name: (split, weight labels, arch labels, Table 7's weights / architecture columns, paper mIoU or None)
ROWS = {
    "split": ("split", "fine", "fine", "0.5 fine / 0.5 fine", 0.699),
    "joint": ("joint", "fine", "fine", "1 fine / 1 fine", 0.753),
    "coarse-arch": ("joint", "fine", "coarse", "1 fine / 1 coarse", 0.746),
    "coarse-weights": ("joint", "coarse", "fine", "1 coarse / 1 fine", 0.618),
    "both": ("joint", "both", "both", "1 fine+coarse / 1 fine+coarse", 0.752),
    "half": ("half", "fine", "fine", "0.5 fine / same 0.5 fine", None),
}


def run(cfg, study_dir, progress) -> dict:
    names = study_param(cfg, "rows", list, f"a list of rows among {', '.join(ROWS)}", default=list(ROWS))
    unknown = [n for n in names if n not in ROWS]
    if not names or unknown:
        raise UserError(f"study.rows: {unknown or names!r} is not valid, expected rows among {', '.join(ROWS)}")
    seeds = seeds_of(cfg)
    rows = []
    for name in names:
        split, w, a, _, _ = ROWS[name]
        for seed in seeds:
            changes = {"seed": seed, "protocol.split": split, "protocol.weight_labels": w, "protocol.arch_labels": a}
            summary = study_dir.train(f"{name}-s{seed}", derive(cfg, changes))
            rows.append({"row": name, "split": split, "weight_labels": w, "arch_labels": a, "seed": seed,
                         "miou": summary["miou"]})
    results = {"paper": PAPER, "rows": rows, "names": names, "seeds": seeds,
               "stats": {n: mean_std([r["miou"] for r in rows if r["row"] == n]) for n in names}}
    body = [[n, ROWS[n][3], pct_pm([r["miou"] for r in rows if r["row"] == n]),
             pct(ROWS[n][4]) if ROWS[n][4] is not None else "-"] for n in names]
    results["markdown"] = "\n".join([f"**Table 7** — mIoU, mean ± std over {len(seeds)} seed(s) {seeds}", "",
                                     markdown_table(["Row", "Weights / Architecture", "mIoU", "Paper"], body), ""])
    results["figures"] = []
    return results


# The paper's orderings: (better row, worse row, what it says).
ORDERINGS = (("joint", "split", "joint beats disjoint halves"),
             ("joint", "coarse-weights", "coarse labels for the weights hurt"),
             ("coarse-arch", "coarse-weights", "coarse labels hurt the weights more than the architecture"),
             ("joint", "half", "more data for both beats the same half"))


def verdict(results) -> str:
    """Each ordering: better − worse, paired by seed, against the paper's relative gap (where it has both rows)."""
    stats, rows = results["stats"], results["rows"]
    lines = []
    for better, worse, what in ORDERINGS:
        if better in stats and worse in stats:
            iv = difference(by_seed(rows, "miou", row=better), by_seed(rows, "miou", row=worse))
            p1, p2 = ROWS[better][4], ROWS[worse][4]
            rel = (p1 - p2) / p2 if p1 is not None and p2 is not None else None
            effect = rel * stats[worse][0] if rel is not None else None
            size = (f"the paper's {100 * (p1 - p2):.1f} points = {100 * rel:.1f}% of {worse}, here "
                    f"{100 * effect:.1f} points" if rel is not None else "the paper gives no size")
            _, text = claim(iv, +1, effect, scale=100, unit=" points")
            lines.append(f"- {what}: {better} {pct(stats[better][0])} vs {worse} {pct(stats[worse][0])}; "
                         f"{better} − {worse} = {text} ({size}).")
    if "joint" in stats and "split" in stats:
        p_joint, p_split = ROWS["joint"][4], ROWS["split"][4]
        effect = (p_joint - p_split) / p_split * stats["split"][0]
        groups = [[r["miou"] for r in rows if r["row"] == n] for n in results["names"]]
        note = power_note(groups, effect, "the paper's relative joint − split gap")
        lines.append(f"- Power: {note}.")
    return "\n".join(lines) or "- no pair of the paper's rows was run"

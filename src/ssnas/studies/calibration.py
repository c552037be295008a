"""How the proxy scale was chosen: the checks a proxy scale must pass before its verdicts mean anything.

The studies run the paper's experiments at a *proxy* scale (``configs/studies/proxy-base.yaml``). A
difference between settings says something about the method only when the proxy supernet is trained to a
plateau, at a useful level, deep enough for edges and paths to matter, with an architecture that really
moves, and when the number of seeds gives the comparisons enough power. This study measures each of those
on the proxy config and checks it against ``study.criteria``, fixed in the config before the runs:

- **convergence**: seed ``seeds[0]`` again with ``plateau_factor``x the epochs; its final mIoU must be within
  ``criteria.plateau`` of the proxy's (a plateau test: more training no longer pays);
- **level**: the proxy's mean final mIoU over ``seeds`` is at least ``criteria.level``;
- **depth**: at least ``criteria.min_layers`` layers;
- **the architecture moves**: with the highest entropy magnitude ``high`` (linear scaling), the normalized
  H(β̂) at the end of the search is at most ``criteria.max_beta_entropy``; the unregularized supernet's is
  reported beside it;
- **power**: the seed-to-seed std of the proxy's mIoU, and from it the seeds per setting that detect an effect
  of the paper's relative size (``effects``: points lost of the paper's mIoU) at 95 % with 80 % power.
"""
from __future__ import annotations

import math
import statistics

from ssnas.errors import UserError
from ssnas.studies.common import derive, markdown_table, mean_std, pct, pct_pm, seeds_of, study_param

TITLE = "Calibration of the proxy scale (how the proxy scale was chosen)"
PAPER = ("The paper trains the small supernet (10 layers) for 600 epochs on Cityscapes (≈ 38,850 architecture "
         "steps), reaching 70.9% mIoU (Table 2), with 3 seeds per setting. Its effects: Table 2 loses 2.8 points "
         "of 70.9 from no entropy loss to the high magnitude; Table 7 gains 5.4 points of 69.9 from split to joint.")
CRITERIA = {"level": 0.60, "plateau": 0.01, "min_layers": 6, "max_beta_entropy": 0.3}


def _criteria(cfg) -> dict:
    given = study_param(cfg, "criteria", dict, "a mapping like {level: 0.6, plateau: 0.01, ...}", default={})
    unknown = set(given) - set(CRITERIA)
    if unknown:
        raise UserError(f"study.criteria: unknown key(s) {sorted(unknown)}, expected some of {sorted(CRITERIA)}")
    out = {**CRITERIA, **given}
    for key, value in out.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UserError(f"study.criteria.{key}: {value!r} is not valid, expected a number >= 0")
    return out


def _effects(cfg) -> dict:
    """``name: [points lost, of the paper's mIoU]`` → relative effect sizes."""
    value = study_param(cfg, "effects", dict, "a mapping name → [points, of mIoU], e.g. {table2: [2.8, 70.9]}")
    out = {}
    for name, pair in value.items():
        ok = (isinstance(pair, list) and len(pair) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in pair))
        if not ok:
            raise UserError(f"study.effects.{name}: {pair!r} is not valid, expected [points, of mIoU], both > 0")
        out[str(name)] = pair[0] / pair[1]
    return out


def run(cfg, study_dir, progress) -> dict:
    seeds = seeds_of(cfg)
    if len(seeds) < 3:
        raise UserError(f"study.seeds: {seeds!r} has {len(seeds)} seed(s), expected at least 3 for a std")
    factor = study_param(cfg, "plateau_factor", int, "an integer >= 2 (the epochs of the plateau run)", default=2)
    high = study_param(cfg, "high", (int, float), "the highest entropy magnitude c, e.g. 1.0", default=1.0)
    if factor < 2 or high <= 0:
        raise UserError("study.plateau_factor must be >= 2 and study.high > 0")
    criteria, effects = _criteria(cfg), _effects(cfg)
    first = seeds[0]
    runs = {f"none-s{s}": derive(cfg, {"seed": s}) for s in seeds}
    runs[f"none-x{factor}-s{first}"] = derive(cfg, {"seed": first, "protocol.epochs": cfg.protocol.epochs * factor})
    runs[f"high-s{first}"] = derive(cfg, {"seed": first, "entropy.c_alpha": high, "entropy.c_beta": high,
                                          "entropy.scaling": "linear"})
    summaries = {name: study_dir.train(name, run_cfg) for name, run_cfg in runs.items()}
    rows = {name: {"run": name, "seed": run_cfg.seed, "epochs": run_cfg.protocol.epochs, "c": run_cfg.entropy.c_beta,
             "miou": s["miou"], "beta_end": s["entropy"]["beta"]["end"]["normalized"],
             "alpha_end": s["entropy"]["alpha"]["end"]["normalized"], "arch_lr": s.get("arch_lr"),
             "arch_steps": s.get("arch_steps"), "wall_time_s": s["wall_time_s"]}
            for (name, run_cfg), s in zip(runs.items(), summaries.values())}
    proxy = [rows[f"none-s{s}"] for s in seeds]
    mious = [r["miou"] for r in proxy]
    mean, std = mean_std(mious)
    base, longer, high_row = rows[f"none-s{first}"], rows[f"none-x{factor}-s{first}"], rows[f"high-s{first}"]
    rows = list(rows.values())
    layers = _layers(cfg)
    checks = {
        "convergence": (abs(longer["miou"] - base["miou"]) <= criteria["plateau"],
                        f"{factor}x the epochs: {pct(longer['miou'])} vs {pct(base['miou'])} (seed {first}), "
                        f"a change of {100 * (longer['miou'] - base['miou']):+.1f} points "
                        f"(criterion: within {100 * criteria['plateau']:.1f})"),
        "level": (mean >= criteria["level"], f"mean mIoU {pct(mean)} over {len(seeds)} seeds "
                                             f"(criterion: >= {pct(criteria['level'], 0)})"),
        "depth": (layers >= criteria["min_layers"], f"{layers} layers (criterion: >= {criteria['min_layers']:g})"),
        "architecture moves": (high_row["beta_end"] <= criteria["max_beta_entropy"],
                               f"c = {high:g} (linear): normalized H(β̂) at the end of the search "
                               f"{high_row['beta_end']:.3f} (criterion: <= {criteria['max_beta_entropy']:g}); "
                               f"unregularized: {statistics.fmean(r['beta_end'] for r in proxy):.3f}"),
    }
    power = {}
    for name, rel in effects.items():
        effect = rel * mean
        power[name] = {"relative": rel, "effect": effect, "seeds": _seeds_for(effect, std)}
    results = {"paper": PAPER, "rows": rows, "criteria": criteria, "checks": {k: v[0] for k, v in checks.items()},
               "check_text": {k: v[1] for k, v in checks.items()}, "mean": mean, "std": std, "power": power,
               "seeds": seeds, "layers": layers, "figures": []}
    table = markdown_table(
        ["run", "seed", "epochs", "c", "mIoU", "H(β̂) end", "H(α̂) end", "arch lr × steps", "wall time"],
        [[r["run"], r["seed"], r["epochs"], f"{r['c']:g}", pct(r["miou"]), f"{r['beta_end']:.3f}",
          f"{r['alpha_end']:.3f}", f"{r['arch_lr']:.3g} × {r['arch_steps']}" if r["arch_lr"] else "n/a",
          f"{r['wall_time_s'] / 60:.1f} min"] for r in rows])
    power_rows = [[name, f"{100 * p['relative']:.1f}%", f"{100 * p['effect']:.2f} points", p["seeds"]]
                  for name, p in power.items()]
    results["markdown"] = "\n".join([
        "How this scale was found, with the exploratory runs before it: [proxy-scale.md](proxy-scale.md).", "",
        "Normalized entropies: 1 = uniform. `arch lr × steps`: the architecture step size under the equal-travel "
        "rule (docs/design.md) and the number of architecture steps.", "", table, "",
        f"Proxy mIoU over seeds {seeds}: {pct_pm(mious)} (seed-to-seed std {100 * std:.2f} points).", "",
        "**Seeds per setting** for a paired comparison to detect an effect of the paper's relative size at 95 % "
        "confidence with 80 % power (seeds assumed uncorrelated, which is conservative):", "",
        markdown_table(["effect", "relative size (paper)", "at the proxy's mIoU", "seeds"], power_rows), ""])
    return results


def _layers(cfg) -> int:
    from ssnas.space.variants import space_config

    overrides = {k: v for k, v in vars(cfg.model).items() if k in ("layers", "filters") and v is not None}
    return space_config(cfg.model.variant, **overrides).layers


def _seeds_for(effect: float, std: float) -> int | str:
    from ssnas.studies.stats import seeds_needed

    if not (std > 0 and effect > 0):
        return "n/a"
    try:
        return seeds_needed(effect, std)
    except ValueError:
        return "> 1000"


def verdict(results: dict) -> str:
    lines = []
    for name, ok in results["checks"].items():
        lines.append(f"- {name}: {'**met**' if ok else '**not met**'} — {results['check_text'][name]}")
    met = sum(results["checks"].values())
    lines.append(f"- {met} of {len(results['checks'])} criteria met; seeds per setting needed: "
                 + ", ".join(f"{k} {v['seeds']}" for k, v in results["power"].items()) + ".")
    return "\n".join(lines)

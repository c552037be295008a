"""Tables 4 and 6 (§4.4): the single-stage protocol against search → decode → retrain on the same data.

- single stage: the config's protocol (warmup, search, fine-tune); the supernet is the final model;
- two stage: a search-stage run (``study.search_protocol``: warmup + search), decoded by the rule
  *keep the one incoming edge with the largest β̂ in every cell and the one kernel with the largest α̂ in
  every cell* (``model.discretize_edges: 1``, ``model.discretize_ops: true``; zero edges are then folded
  away with the cells they leave unconnected), retrained from scratch with fresh weights
  (``model.architecture_from``) for ``study.retrain_epochs`` epochs;
- two stage, entropy-regularized: the strongest two-stage baseline — the same, but the search stage runs
  with the entropy loss at magnitude ``study.search_entropy`` (c_alpha = c_beta, the config's scaling and
  ``entropy_start``), so that the decoded architecture is what the search had already converged to.

Compute convention: FLOPs processed = forward FLOPs of one crop-sized image × images processed × 3
(forward + backward ≈ 3 forwards). Every weight step and every architecture step processes a batch.
The supernet's FLOPs count the supernet as trained; the retrain stage counts the *decoded* network
(folded by ``ssnas.export.fuse_supernet``), the cost a dedicated implementation of it would pay — our
retrain runs the masked supernet, so its wall time overstates that. Evaluation is not counted; the entropy
term (a function of α, β only) adds no image FLOPs. Quality is compared paired by seed (every pipeline runs
the same seeds), as a non-inferiority claim (:func:`ssnas.studies.stats.at_least`).
"""
from __future__ import annotations

import functools

from ssnas.tasks.segmentation import load_model
from ssnas.errors import UserError
from ssnas.space.profile import forward_flops
from ssnas.studies.common import (decoded_cost, derive, human, markdown_table, mean_std, pct, pct_pm,
                                  protocol_changes, seeds_of, study_param)
from ssnas.studies.stats import MARGIN, at_least, by_seed, difference, verdict_text

TITLE = "Single stage vs search + decode + retrain (Tables 4, 6)"
PAPER = ("Table 4: the single-stage supernets reach 71.4 / 74.4 / 75.3% (small / medium / large, 57.7 / 380.1 / "
         "558 GFLOPs) vs 51.7% for non-dense DCNAS's searched supernet and 73.3% after its retraining. Table 6: "
         "single stage 600 epochs, 5.5 GPU days in all; DCNAS 120 search epochs (5.6 GPU days) + 800 retraining "
         "epochs: the single stage costs a fraction of search + retrain.")
DECODE_RULE = "top-1 incoming edge per cell by β̂, top-1 kernel per cell by α̂"
BACKWARD_FACTOR = 3       # forward + backward ≈ 3 forward passes
PAPER_RETRAIN_RATIO = 800 / 120   # DCNAS: 800 retraining epochs after 120 search epochs (Table 6)
SINGLE = "single stage (supernet)"
# The two-stage pipelines: (name, run-name suffix, Table 4 method, entropy loss in the search stage?)
PIPELINES = (("plain", "", "two stage (decoded, retrained)", False),
             ("entropy", "-entropy", "two stage, entropy-regularized search (decoded, retrained)", True))


def _images(summary: dict, batch_size: int) -> int:
    """Images through the network: a batch per weight step, plus a batch per architecture step."""
    iters = summary["steps"] // max(1, summary["epochs"])
    search = summary["phases"].get("search", (0, 0))
    a, b = search[0], search[1]   # not ``a, b = …``: a PENDING summary must not end the planning pass here
    return (summary["steps"] + (b - a) * iters) * batch_size


def _stage(name, summary, cfg, flops_per_image) -> dict:
    images = _images(summary, cfg.data.batch_size)
    return {"stage": name, "epochs": summary["epochs"], "wall_time_s": summary["wall_time_s"], "images": images,
            "flops_per_image": flops_per_image, "flops_processed": BACKWARD_FACTOR * flops_per_image * images}


def model_cost(checkpoint: str, size: list, crop: list) -> dict:
    """The costs the tables need from a final checkpoint, measured once in the sub-run's process and kept
    with its record: the supernet as trained, and folded (``decoded_cost``), at ``size`` and the crop."""
    model, _ = load_model(checkpoint)
    fused, fused_crop = decoded_cost(model, tuple(size)), decoded_cost(model, tuple(crop))
    return {"edges": model.num_edges(), "supernet_params": sum(p.numel() for p in model.weight_parameters()),
            "supernet_flops": forward_flops(model, tuple(size)),
            "supernet_flops_crop": forward_flops(model, tuple(crop)),
            "fused_params": fused["params"], "fused_flops": fused["flops"], "fused_flops_crop": fused_crop["flops"]}


def _search_entropy(cfg) -> float:
    c = study_param(cfg, "search_entropy", (int, float), "c >= 0 of the regularized search (the entropy study's "
                    "highest magnitude)")
    if c < 0:
        raise UserError(f"study.search_entropy: {c!r} is not valid, expected c >= 0")
    return float(c)


def run(cfg, study_dir, progress) -> dict:
    search = protocol_changes(cfg, "search_protocol")
    retrain_epochs = study_param(cfg, "retrain_epochs", int, "a positive number of epochs")
    size = tuple(study_param(cfg, "flops_size", list, "[H, W], the input size FLOPs are reported at"))
    c = _search_entropy(cfg)
    crop = tuple(cfg.data.crop_size)
    rows, stages = [], []
    for seed in seeds_of(cfg):
        cost = functools.partial(model_cost, size=list(size), crop=list(crop))
        single_cfg = derive(cfg, {"seed": seed})
        single = study_dir.train(f"single-stage-s{seed}", single_cfg, measure=cost)
        supernet = single["measure"]
        super_crop = supernet["supernet_flops_crop"]
        rows.append({"method": SINGLE, "pipeline": "single", "seed": seed, "miou": single["miou"],
                     "params": supernet["fused_params"], "flops": supernet["fused_flops"], "edges": supernet["edges"],
                     "supernet_params": supernet["supernet_params"], "supernet_flops": supernet["supernet_flops"]})
        stages.append(dict(seed=seed, pipeline="single", **_stage("single stage", single, single_cfg, super_crop)))
        for name, suffix, method, regularized in PIPELINES:
            entropy = {"entropy.c_alpha": c, "entropy.c_beta": c} if regularized else {}
            search_cfg = derive(cfg, {**search, **entropy, "seed": seed})
            searched = study_dir.train(f"search{suffix}-s{seed}", search_cfg)
            retrain_cfg = derive(cfg, {"seed": seed,
                                       "model.architecture_from": study_dir.checkpoint(f"search{suffix}-s{seed}"),
                                       "model.discretize_edges": 1, "model.discretize_ops": True,
                                       "protocol.epochs": retrain_epochs, "protocol.warmup": 0.0,
                                       "protocol.search": 0.0, "protocol.finetune": 1.0,
                                       "protocol.entropy_start": 0.0})
            retrained = study_dir.train(f"retrain{suffix}-s{seed}", retrain_cfg, measure=cost)
            decoded = retrained["measure"]
            rows.append({"method": method, "pipeline": name, "seed": seed, "miou": retrained["miou"],
                         "params": decoded["fused_params"], "flops": decoded["fused_flops"], "edges": decoded["edges"],
                         "searched_miou": searched["miou"],
                         "search_beta_end_normalized": searched["entropy"]["beta"]["end"]["normalized"]})
            tag = f" (entropy c={c:g})" if regularized else ""
            stages += [dict(seed=seed, pipeline=name, **_stage(f"search{tag}", searched, search_cfg, super_crop)),
                       dict(seed=seed, pipeline=name, **_stage(f"retrain{tag}", retrained, retrain_cfg,
                                                               decoded["fused_flops_crop"]))]
    results = {"paper": PAPER, "rows": rows + stages, "models": rows, "stages": stages, "flops_size": list(size),
               "decode_rule": DECODE_RULE, "search_entropy": c}
    results["pipelines"] = {name: _compare(rows, stages, name, method) for name, _, method, _ in PIPELINES}
    plain = results["pipelines"]["plain"]
    results.update({k: plain[k] for k in ("cost_ratio_flops", "cost_ratio_wall", "retrain_ratio")},
                   miou_single=plain["miou_single"], miou_two=plain["miou_two"])
    results["markdown"] = _markdown(results, size, crop)
    results["figures"] = []
    return results


def _compare(rows, stages, pipeline, method) -> dict:
    """The single stage against one two-stage pipeline: cost ratios (per seed, averaged) and mean mIoU."""
    single = [s for s in stages if s["pipeline"] == "single"]
    two = [s for s in stages if s["pipeline"] == pipeline]
    total = {k: sum(s[k] for s in two) / max(1, len(single)) for k in ("flops_processed", "wall_time_s")}
    own = {k: sum(s[k] for s in single) / max(1, len(single)) for k in ("flops_processed", "wall_time_s")}
    epochs = {name: sum(s["epochs"] for s in two if s["stage"].startswith(name)) for name in ("search", "retrain")}
    return {"method": method,
            "cost_ratio_flops": own["flops_processed"] / total["flops_processed"],
            "retrain_ratio": epochs["retrain"] / max(1, epochs["search"]),
            "cost_ratio_wall": own["wall_time_s"] / total["wall_time_s"],
            "miou_single": mean_std([r["miou"] for r in rows if r["method"] == SINGLE])[0],
            "miou_two": mean_std([r["miou"] for r in rows if r["method"] == method])[0]}


def _pm3(values: list) -> str:
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f}"


def _markdown(results, size, crop) -> str:
    models = results["models"]
    body = []
    for method in dict.fromkeys(r["method"] for r in models):
        rs = [r for r in models if r["method"] == method]
        r0 = rs[0]
        body.append([method, human(r0["flops"]), human(r0["params"]), r0["edges"], pct_pm([r["miou"] for r in rs])])
    t4 = markdown_table(["Method", f"FLOPs @{size[0]}×{size[1]}", "Params", "edges", "mIoU"], body)
    sup = models[0]
    sbody = [[s["stage"], s["seed"], s["epochs"], f"{s['wall_time_s'] / 60:.1f} min", f"{s['images']:,}",
              human(s["flops_per_image"]), human(s["flops_processed"])] for s in results["stages"]]
    t6 = markdown_table(["Stage", "seed", "Epochs", "Wall time", "Images", f"FLOPs/img @{crop[0]}×{crop[1]}",
                         "FLOPs processed"], sbody)
    searched = {m: [r["searched_miou"] for r in models if r["method"] == m] for _, _, m, _ in PIPELINES}
    ent = {m: [r["search_beta_end_normalized"] for r in models if r["method"] == m] for _, _, m, _ in PIPELINES}
    plain, reg = PIPELINES[0][2], PIPELINES[1][2]
    measured = [f"**Measured:** the single stage ({pct(results['miou_single'])} mIoU) costs, in FLOPs processed "
                f"(in wall time):"]
    measured += [f"- {pct(p['cost_ratio_flops'])} ({pct(p['cost_ratio_wall'])}) of {p['method']} at "
                 f"{pct(p['miou_two'])} mIoU" for p in results["pipelines"].values()]
    return "\n".join([
        f"**Table 4** — final networks, counted as folded by `fuse_supernet` (BatchNorm folded, zero edges, "
        f"zero kernels and unreachable cells removed). Decoding rule: {DECODE_RULE}. The supernet as trained has "
        f"{human(sup['supernet_params'])} weights and {human(sup['supernet_flops'])} FLOPs. Before decoding, the "
        f"plain search reached {pct_pm(searched[plain])} (normalized H(β̂) {_pm3(ent[plain])}), the "
        f"entropy-regularized one (c = {results['search_entropy']:g}) {pct_pm(searched[reg])} (normalized H(β̂) "
        f"{_pm3(ent[reg])}).", "", t4, "",
        f"**Table 6** — compute per stage (FLOPs processed = {BACKWARD_FACTOR} × forward FLOPs per crop × images "
        f"through the network; evaluation not counted).", "", t6, "", *measured, ""])


def verdict(results) -> str:
    lines = []
    models = results["models"]
    single = by_seed(models, "miou", method=SINGLE)
    for p in results["pipelines"].values():
        cheaper = p["cost_ratio_flops"] < 1
        iv = difference(single, by_seed(models, "miou", method=p["method"]))
        margin = MARGIN * p["miou_two"]
        word = at_least(iv, margin)
        lines.append(
            f"- vs {p['method']}: cost of the single stage = {pct(p['cost_ratio_flops'])} of search + retrain (FLOPs "
            f"processed, counted not sampled), {pct(p['cost_ratio_wall'])} in wall time; the paper's retraining is "
            f"{PAPER_RETRAIN_RATIO:.1f}× longer than its search, ours {p['retrain_ratio']:.1f}× (in epochs) → 'the "
            f"single stage is cheaper' {verdict_text('held' if cheaper else 'did not hold')}. Quality: single − two "
            f"stage = {iv.text(100, ' points')} → 'the single stage is at least as good' (no loss beyond "
            f"{100 * margin:.1f} points = {100 * MARGIN:.0f}% of the two-stage mIoU) "
            f"{verdict_text(word, iv, 100, ' points')}.")
    return "\n".join(lines)

"""`ssnas study cost` end to end at a tiny scale (structure, budgets, report) and its verdict on crafted numbers.

Tiny: the tiny supernet, 2 seeds × 2 targets, 3-epoch runs of one step; parameters as the metric (counted
without the FLOP counter, fast). The proxy-scale config (configs/studies/cost-proxy.yaml) is not run here."""
import json

import pytest
import yaml

from ssnas.cli import main
from ssnas.studies.cost import COST_ARM, FREE, PRUNE_ARM, verdict

TINY = {"model": {"variant": "tiny"},
        "data": {"format": "folder", "crop_size": [64, 128], "scale_range": [0.75, 1.25], "batch_size": 2,
                 "eval_batch_size": 2, "workers": 0},
        "protocol": {"epochs": 3, "warmup": 1 / 3, "search": 1 / 3, "finetune": 1 / 3, "entropy_start": 1 / 3,
                     "iters_per_epoch": 1},
        "optim": {"lr": 0.01}, "arch_optim": {"lr": 0.1}, "eval": {"interval": 1000, "max_images": 2},
        "cost": {"metric": "params", "penalty": "hinge"},
        "run": {"device": "cpu", "tensorboard": False, "progress": False, "threads": 1},
        "study": {"seeds": [0, 1], "targets": [0.9, 0.75], "cost_weight": 5.0, "finetune_epochs": 1}}


@pytest.fixture(scope="module")
def study(demo_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cost")
    config = folder / "cost-tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "name": "cost-tiny", "data": {**TINY["data"], "root": str(demo_root)}}))
    out = folder / "study"
    assert main(["study", "cost", "--config", str(config), "--out", str(out), "--jobs", "1"]) == 0
    return out, config


def test_cost_study_runs_both_arms_within_budget(study):
    out, _ = study
    r = json.loads((out / "results.json").read_text())
    rows = r["rows"]
    assert sorted({(x["arm"], x["target"]) for x in rows}) == sorted(
        [(FREE, "-")] + [(a, t) for a in (COST_ARM, PRUNE_ARM) for t in ("t1", "t2")])
    assert all(len([x for x in rows if x["arm"] == a and x["target"] == t]) == 2 for a, t in
               [(COST_ARM, "t1"), (PRUNE_ARM, "t2")])
    budgets = {t["tag"]: t["budget"] for t in r["targets"]}
    assert budgets["t1"] == pytest.approx(0.9 * r["e0"]) and budgets["t2"] == pytest.approx(0.75 * r["e0"])
    free = [x for x in rows if x["arm"] == FREE]
    for x in rows:
        assert 0.0 <= x["miou"] <= 1.0
        if x["arm"] != FREE:   # measured (parameter count of the fused network), at most the budget
            assert x["cost"] <= budgets[x["target"]] < free[0]["cost"]
    # each arm reports the supernet it was cut from: the cost term's search, or the unconstrained run
    for x in rows:
        source = {FREE: "unconstrained", PRUNE_ARM: "unconstrained", COST_ARM: f"cost-{x['target']}"}[x["arm"]]
        summary = json.loads((out / "runs" / f"{source}-s{x['seed']}" / "summary.json").read_text())
        assert x["searched_miou"] == summary["miou"]
        assert x["searched_h_beta"] == pytest.approx(summary["entropy"]["beta"]["end"]["normalized"])
    assert "| Supernet mIoU | Supernet H(β̂) |" in (out / "report.md").read_text()
    # the cost-term searches ran with the term on, and logged E[cost] in their search epoch
    cfg = yaml.safe_load((out / "configs" / "cost-t2-s1.yaml").read_text())
    assert cfg["cost"]["weight"] == 5.0 and float(cfg["cost"]["target"]) == pytest.approx(budgets["t2"])
    metrics = [json.loads(line) for line in (out / "runs" / "cost-t2-s1" / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics if "expected_cost" in m] == ["search"]
    ft = yaml.safe_load((out / "configs" / "prune-t1-ft-s0.yaml").read_text())
    assert ft["cost"]["weight"] == 0.0
    assert ft["model"]["init_checkpoint"].endswith("unconstrained-s0/checkpoints/last.pt")
    report = (out / "report.md").read_text()
    assert "mIoU against measured cost" in report and "cost_front.png" in report
    assert report.count("**held**") + report.count("**did not hold**") + report.count("**inconclusive**") >= 3
    assert (out / "cost_front.png").stat().st_size > 1000


def test_cost_study_reuses_its_runs(study, capsys):
    out, config = study
    assert main(["study", "cost", "--config", str(config), "--out", str(out), "--jobs", "1"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["runs"]["started"] == [] and len(r["runs"]["reused"]) == 2 * (1 + 2 + 4)


def test_cost_study_bad_targets_are_one_line(demo_root, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "root": str(demo_root)},
                                      "study": {**TINY["study"], "targets": ["20Q"]}}))
    assert main(["study", "cost", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "study.targets" in err and len(err.splitlines()) == 1


def _rows(gains):
    rows = [{"arm": FREE, "target": "-", "seed": s, "miou": 0.7, "cost": 100.0, "budget": float("nan")}
            for s in range(4)]
    for tag, gain in gains.items():
        for s in range(4):
            rows.append({"arm": PRUNE_ARM, "target": tag, "seed": s, "miou": 0.6 + 0.01 * s, "cost": 50.0})
            rows.append({"arm": COST_ARM, "target": tag, "seed": s, "miou": 0.6 + 0.01 * s + gain + 0.002 * (s % 2),
                         "cost": 49.0})
    return {"rows": rows, "metric": "params", "targets": [{"tag": t, "budget": 50.0} for t in gains]}


def test_cost_verdict_on_crafted_numbers():
    assert "(every target): **held**" in verdict(_rows({"t1": 0.03, "t2": 0.05}))
    assert "(every target): **did not hold**" in verdict(_rows({"t1": 0.03, "t2": -0.04}))
    assert "(every target): **inconclusive**" in verdict(_rows({"t1": 0.03, "t2": 0.0}))

"""The paper's studies end to end on a tiny configuration: reports, tables, reuse and refusals.

``demo_root`` (conftest) is the small demo dataset: 8 train / 4 val frames of 64x128."""
import csv
import json
import math

import pytest
import torch
import yaml

from ssnas.cli import main
from ssnas.engine.checkpoint import load_checkpoint

# Tiny everything: 1 step per epoch, 2 images per batch, 64x128 crops, evaluation on 2 images.
TINY = {"model": {"variant": "tiny"},
        "data": {"format": "folder", "crop_size": [64, 128], "scale_range": [0.75, 1.25], "batch_size": 2,
                 "eval_batch_size": 2, "workers": 0},
        "protocol": {"epochs": 3, "warmup": 1 / 3, "search": 1 / 3, "finetune": 1 / 3, "entropy_start": 1 / 3,
                     "iters_per_epoch": 1},
        "optim": {"lr": 0.01}, "eval": {"interval": 1000, "max_images": 2},
        "run": {"device": "cpu", "tensorboard": False, "progress": False, "threads": 1}}
SEARCH = {"epochs": 2, "warmup": 0.5, "search": 0.5, "finetune": 0.0, "entropy_start": 0.5}
STUDY = {
    "discretization": {"magnitudes": {"none": 0.0, "high": 1.0}, "prune_fractions": [0.5], "seeds": [0, 1],
                       "search_protocol": SEARCH, "finetune_protocol": {"epochs": 1}},
    "entropy": {"magnitudes": {"none": 0.0, "high": 1.0}, "scalings": ["constant", "linear"], "seeds": [0]},
    "entropy-table": {"seeds": [0], "search_protocol": SEARCH},
    "two-stage": {"seeds": [0], "search_protocol": SEARCH, "retrain_epochs": 2, "flops_size": [64, 128],
                  "search_entropy": 1.0},
    "splits": {"rows": ["split", "joint", "coarse-weights"], "seeds": [0, 1]},
}


@pytest.fixture(scope="module")
def configs(demo_root, tmp_path_factory):
    """One tiny config file per study."""
    folder = tmp_path_factory.mktemp("configs")
    out = {}
    for name, study in STUDY.items():
        data = {**TINY, "name": name, "study": study}
        data["data"] = {**TINY["data"], "root": str(demo_root)}
        out[name] = folder / f"{name}.yaml"
        out[name].write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _study(name, config, folder, *sets):
    return main(["study", name, "--config", str(config), "--out", str(folder)]
                + [a for s in sets for a in ("--set", s)])


@pytest.fixture(scope="module")
def studies(configs, tmp_path_factory):
    """Every study run once into its own folder (shared by the tests below)."""
    base = tmp_path_factory.mktemp("studies")
    out = {}
    for name, config in configs.items():
        out[name] = base / name
        assert _study(name, config, out[name]) == 0, name
    return out


def _results(folder):
    return json.loads((folder / "results.json").read_text())


def _csv(folder):
    with open(folder / "results.csv") as f:
        return list(csv.DictReader(f))


def test_discretization_curves_and_report(studies):
    folder = studies["discretization"]
    rows = _csv(folder)
    assert [(r["magnitude"], r["seed"], float(r["fraction"])) for r in rows] == [
        (m, s, f) for m in ("none", "high") for s in ("0", "1") for f in (0.0, 0.5)]
    # tiny: 2 layers x (2+3+3+2) = 20 edges; dropping half leaves 10, no cell without an edge
    assert [int(r["edges"]) for r in rows] == [20, 10] * 4
    for r in rows:
        assert 0.0 <= float(r["miou_pruned"]) <= 1.0 and 0.0 <= float(r["miou_finetuned"]) <= 1.0
    # the fine-tune started from the supernet with its weakest edges dropped
    ft = load_checkpoint(folder / "runs" / "finetune-high-50-s1" / "checkpoints" / "last.pt")
    assert int(ft["model"]["edge_mask"].sum()) == 10 and ft["config"]["model"]["prune_edges"] == 0.5
    assert ft["config"]["seed"] == 1
    report = (folder / "report.md").read_text()
    assert "Fig. 2a" in report and "Fig. 2b" in report and "| none (0) |" in report and "```yaml" in report
    assert "over 2 seed(s) [0, 1]" in report
    # every verdict line: a difference with its interval, paired by seed, and one of the three words
    verdicts = report.split("## Verdict")[1].split("Sub-runs:")[0].strip().splitlines()
    assert len(verdicts) == 3 and all("(95% CI [" in v and "paired" in v or "one-sample" in v for v in verdicts)
    assert all(sum(w in v for w in ("**held**", "**did not hold**", "**inconclusive**")) == 1 for v in verdicts)
    assert (folder / "fig2_discretization.png").stat().st_size > 1000
    assert (folder / "configs" / "supernet-high-s1.yaml").is_file()


def test_entropy_table2_shares_the_unregularized_run(studies):
    r = _results(studies["entropy"])
    # 2 functions x 2 magnitudes, the c = 0 run shared: 3 runs, one reuse
    assert sorted(r["runs"]["started"]) == ["constant-high-s0", "linear-high-s0", "none-s0"]
    assert r["runs"]["reused"] == ["none-s0"]
    assert len(r["rows"]) == 4
    assert r["table"]["constant"]["none"] == r["table"]["linear"]["none"]
    cfg = load_checkpoint(studies["entropy"] / "runs" / "constant-high-s0" / "checkpoints" / "last.pt")["config"]
    assert cfg["entropy"] == {**cfg["entropy"], "c_alpha": 1.0, "c_beta": 1.0, "scaling": "constant"}
    assert "| Constant |" in (studies["entropy"] / "report.md").read_text()
    assert (studies["entropy"] / "fig3_entropy.png").is_file()


def test_entropy_table_reads_the_search_stage(studies):
    folder = studies["entropy-table"]
    rows = _csv(folder)
    assert [(r["method"], r["parameters"]) for r in rows] == [("Ours", "Edges"), ("Ours", "Operations")]
    summary = json.loads((folder / "runs" / "search-s0" / "summary.json").read_text())
    assert float(rows[0]["start_raw"]) == pytest.approx(summary["entropy"]["beta"]["start"]["raw"])
    assert float(rows[1]["end_normalized"]) == pytest.approx(summary["entropy"]["alpha"]["end"]["normalized"])
    # the paper's unit: mean of -p ln p over elements; the tiny supernet starts uniform over 3 kernels
    assert float(rows[1]["start_per_element"]) == pytest.approx(math.log(3) / 3, abs=1e-4)
    assert float(rows[0]["end_per_element"]) == pytest.approx(summary["entropy"]["beta"]["end"]["per_element"])
    report = (folder / "report.md").read_text()
    assert "0.128 → 0.127" in report and "per element (paper's unit)" in report
    assert "(no CI: 1 seed) → 'stays constant' (within ±5%) **inconclusive** (CI [−∞, +∞]%)" in report


def test_two_stage_decodes_one_edge_and_kernel_per_cell_and_counts_compute(studies):
    folder = studies["two-stage"]
    for retrain in ("retrain-s0", "retrain-entropy-s0"):
        state = load_checkpoint(folder / "runs" / retrain / "checkpoints" / "last.pt")["model"]
        assert torch.equal(state["edge_mask"].sum(-1), torch.ones(2, 4, dtype=torch.long))
        assert torch.equal(state["op_mask"].sum(-1), torch.ones(2, 4, dtype=torch.long))
    # the strongest two-stage baseline searched with the entropy loss, the plain one without
    entropy = {name: load_checkpoint(folder / "runs" / name / "checkpoints" / "last.pt")["config"]["entropy"]
               for name in ("search-s0", "search-entropy-s0")}
    assert entropy["search-s0"]["c_beta"] == 0.0 and entropy["search-entropy-s0"]["c_beta"] == 1.0
    assert entropy["search-entropy-s0"]["c_alpha"] == 1.0
    r = _results(folder)
    stages = {s["stage"]: s for s in r["stages"]}
    # single stage: 3 weight steps + 1 architecture step, 2 images each
    assert stages["single stage"]["images"] == 8 and stages["search"]["images"] == 6
    assert stages["retrain"]["images"] == 4
    for s in stages.values():
        assert s["flops_processed"] == 3 * s["flops_per_image"] * s["images"]
    assert stages["retrain"]["flops_per_image"] < stages["search"]["flops_per_image"]
    # the regularized search is counted the same way: the same steps through the same supernet
    reg = stages["search (entropy c=1)"], stages["retrain (entropy c=1)"]
    assert reg[0]["flops_processed"] == stages["search"]["flops_processed"] and reg[1]["images"] == 4
    single, two, two_reg = r["models"]
    assert two["params"] < single["params"] and two["edges"] == 8 and single["edges"] == 20
    assert two_reg["edges"] == 8 and two_reg["method"].startswith("two stage, entropy-regularized")
    for key, (search, retrain) in (("plain", ("search", "retrain")), ("entropy", reg)):
        search, retrain = (stages[x] if isinstance(x, str) else x for x in (search, retrain))
        expected = stages["single stage"]["flops_processed"] / (search["flops_processed"] + retrain["flops_processed"])
        assert r["pipelines"][key]["cost_ratio_flops"] == pytest.approx(expected)
    assert r["cost_ratio_flops"] == r["pipelines"]["plain"]["cost_ratio_flops"]
    report = (folder / "report.md").read_text()
    assert "of two stage, entropy-regularized search (decoded, retrained) at" in report
    assert report.count("'the single stage is at least as good'") == 2


def test_splits_rows(studies):
    rows = _csv(studies["splits"])
    assert [(r["row"], r["seed"], r["split"], r["weight_labels"], r["arch_labels"]) for r in rows] == [
        ("split", "0", "split", "fine", "fine"), ("split", "1", "split", "fine", "fine"),
        ("joint", "0", "joint", "fine", "fine"), ("joint", "1", "joint", "fine", "fine"),
        ("coarse-weights", "0", "joint", "coarse", "fine"), ("coarse-weights", "1", "joint", "coarse", "fine")]
    cfg = load_checkpoint(studies["splits"] / "runs" / "coarse-weights-s0" / "checkpoints" / "last.pt")["config"]
    assert cfg["protocol"]["weight_labels"] == "coarse" and cfg["study"] == {}
    # a difference paired by seed with its interval, and the three-way verdict
    lines = _results(studies["splits"])["verdict"].splitlines()
    assert len(lines) == 3   # joint vs split, joint vs coarse-weights, the seeds the paper's gap needs
    assert "joint − split = " in lines[0] and "paired, 2 seeds)" in lines[0]
    assert "the paper's 5.4 points = 7.7% of split" in lines[0]
    assert "joint − coarse-weights = " in lines[1] and lines[2].startswith("- Power: ")
    for line in lines[:2]:
        assert sum(w in line for w in ("**held**", "**did not hold**", "**inconclusive**")) == 1
    report = (studies["splits"] / "report.md").read_text()
    assert "| split | 0.5 fine / 0.5 fine |" in report and "mean ± std over 2 seed(s) [0, 1]" in report


def test_second_invocation_reuses_every_run(studies, configs):
    folder = studies["discretization"]
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/summary.json")}
    stamps.update({p: p.stat().st_mtime_ns for p in folder.glob("evals/*.json")})
    assert _study("discretization", configs["discretization"], folder) == 0
    r = _results(folder)
    assert r["runs"]["started"] == [] and len(r["runs"]["reused"]) == 2 * (2 + 4 + 4)  # two seeds
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_folder_of_another_config_is_refused(studies, configs, capsys):
    folder = studies["splits"]
    before = (folder / "study.json").read_text()
    code = _study("splits", configs["splits"], folder, "study.seeds=[2]")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "another config" in err and len(err.splitlines()) == 1
    assert (folder / "study.json").read_text() == before and not (folder / "runs" / "split-s2").exists()


def test_unknown_study_and_missing_keys_are_one_line(tmp_path, capsys):
    assert main(["study", "nope", "--config", "smoke", "--out", str(tmp_path / "a")]) == 2
    assert "unknown, expected one of calibration, discretization" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["study", "entropy", "--config", "smoke", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("study.magnitudes: missing, expected a mapping name → c (c_alpha = c_beta), e.g. "
                        "{none: 0, high: 1}") and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()  # the corrected config can use the same folder


def test_reproduce_writes_the_document_from_the_results(demo_root, tmp_path, capsys):
    doc = tmp_path / "docs" / "reproduction.md"
    out = tmp_path / "repro"
    sets = [f"data.root={demo_root}", "data.make_demo=false", "data.batch_size=2", "eval.max_images=2",
            "study.seeds=[0]", "study.search_protocol.epochs=2", "study.search_protocol.iters_per_epoch=1"]
    store = tmp_path / "results"
    args = ["reproduce", "--scale", "mini", "--out", str(out), "--doc", str(doc), "--only", "entropy-table",
            "--results", str(store)]
    args += [a for s in sets for a in ("--set", s)]
    assert main(args) == 0
    text = doc.read_text()
    assert text.startswith("<!-- written by `ssnas reproduce`") and "Table 1" in text
    assert text.count("→ 'stays constant' (within ±5%) **") == 2   # a three-way verdict per row
    # the head says where the numbers come from; every raw number is beside the document
    record = json.loads((store / "entropy-table" / "search-s0.json").read_text())
    assert f"| Sub-runs | 1 " in text and record["cpu"] in text and record["finished"][:10] in text
    raw = json.loads((tmp_path / "docs" / "reproduction-results.json").read_text())
    assert raw["studies"]["entropy-table"]["search-s0"] == record
    doc.write_text("my own notes")
    assert main(args) == 2
    assert "not written by `ssnas reproduce`" in capsys.readouterr().err
    assert doc.read_text() == "my own notes"


def test_reproduce_runs_a_training_that_several_studies_ask_for_once(demo_root, tmp_path):
    """The splits study's joint row, the two-stage study's single stage and (at the proxy scale) the
    calibration's baseline are one training; so are the two-stage search and the entropy table's. A study
    that asks for a finished training of another study reuses its record (``reused_from``), taking its
    own measure from the copied checkpoint; nothing is trained twice."""
    out, store, doc = tmp_path / "repro", tmp_path / "results", tmp_path / "docs" / "reproduction.md"
    sets = [f"data.root={demo_root}", "data.make_demo=false", "data.batch_size=2", "eval.max_images=2",
            "study.seeds=[0]", "study.rows=[joint]", "protocol.epochs=2", "protocol.iters_per_epoch=1",
            "study.search_protocol.epochs=2", "study.search_protocol.iters_per_epoch=1", "study.retrain_epochs=1"]
    args = ["reproduce", "--scale", "mini", "--out", str(out), "--doc", str(doc), "--results", str(store),
            "--only", "splits", "two-stage", "entropy-table", "--jobs", "1"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0

    def record(study, run):
        return json.loads((store / study / f"{run}.json").read_text())

    joint, single = record("splits", "joint-s0"), record("two-stage", "single-stage-s0")
    assert single["reused_from"] == "splits/joint-s0" and single["train_key"] == joint["train_key"]
    assert single["summary"] == joint["summary"] and single["finished"] == joint["finished"]
    assert len(single["measures"]) == 1 and not joint["measures"]   # two-stage's own measure, on the copy
    assert (out / "two-stage" / "runs" / "single-stage-s0" / "checkpoints" / "last.pt").is_file()
    search = record("entropy-table", "search-s0")
    assert search["reused_from"] == "two-stage/search-s0"
    assert search["summary"] == record("two-stage", "search-s0")["summary"]
    runs = json.loads((out / "entropy-table" / "results.json").read_text())["runs"]
    assert runs["started"] == [] and runs["reused"] == ["search-s0"]
    assert not (out / "entropy-table" / "runs").exists()   # nothing trained, no checkpoint needed
    assert "| Sub-runs | 7 " in doc.read_text() and "; 5 computations: studies that ask for the same training" in doc.read_text()
    # a plan counts a shared training as done when the checkpoint for its measure can be copied
    from ssnas.cli.reproduce import study_config
    from ssnas.config import load_config
    from ssnas.studies import plan_study

    (store / "two-stage" / "single-stage-s0.json").unlink()
    cfg = load_config(study_config("two-stage", "mini"), sets)
    plan = plan_study("two-stage", cfg, out / "two-stage", store / "two-stage")
    assert plan["done"] == 5 and not plan["to_run"] and not (store / "two-stage" / "single-stage-s0.json").exists()


def test_entropy_verdict_on_crafted_numbers():
    """Table 2's rule on numbers with a clear answer: constant loses 3.5-4 points at every seed (held), linear
    loses none (its CI excludes half the paper's relative drop: did not hold); linear is at least as good."""
    from ssnas.studies.entropy import verdict
    from ssnas.studies.common import mean_std
    none = [0.70, 0.72, 0.68]
    high = {"constant": [0.66, 0.685, 0.645], "linear": [0.699, 0.722, 0.6785]}
    rows = [{"scaling": s, "magnitude": m, "seed": seed, "miou": v, "beta_start_normalized": 1.0,
             "beta_end_normalized": 1.0 if m == "none" else 0.5 - 0.1 * (s == "constant") + 0.01 * seed}
            for s in ("constant", "linear") for m, vals in (("none", none), ("high", high[s]))
            for seed, v in enumerate(vals)]
    table = {s: {m: mean_std([r["miou"] for r in rows if r["scaling"] == s and r["magnitude"] == m])
                 for m in ("none", "high")} for s in ("constant", "linear")}
    lines = verdict({"magnitudes": {"none": 0.0, "high": 1.0}, "table": table, "rows": rows,
                     "scalings": ["constant", "linear"], "seeds": [0, 1, 2]}).splitlines()
    assert lines[0].startswith("- constant:")
    assert "+3.7 points (95% CI [+2.9, +4.4], paired, 3 seeds) → **held**" in lines[0]
    assert lines[1].startswith("- linear:") and "→ **did not hold**" in lines[1]
    assert "'linear is at least as good'" in lines[2] and lines[2].endswith("**held**.")
    # linear-high is within 2 % of none at every seed: the paper-scale configs' c is the high magnitude
    assert lines[3].startswith("- Paper-scale c") and ": c = 1; high − none = " in lines[3]
    assert lines[4].startswith("- Power: seed-to-seed std 2.07 points") and "seeds per setting" in lines[4]
    assert all("→ **held** ('stronger entropy loss, lower final entropy')" in line for line in lines[5:7])
    # constant ends 0.1 lower than linear at every seed: its entropy fell faster
    assert "constant − linear = +0.100 (95% CI [+0.100, +0.100], paired, 3 seeds) → **held**" in lines[7]


@pytest.mark.parametrize("losses, expected", [
    ((0.0, 0.0, 0.05), 0.1),     # low and medium cost nothing, high loses 5 points: medium
    ((0.0, 0.05, 0.0), 0.01),    # medium loses: the walk stops there, even though high would pass
    ((0.05, 0.0, 0.0), 0.0),     # the weakest already loses: no entropy loss
    ((0.012, 0.0, 0.0), None),   # the weakest's CI straddles the 1.4-point margin: undetermined
])
def test_paper_scale_c_is_the_strongest_harmless_magnitude(losses, expected):
    """docs/design.md's rule for the cityscapes configs' c, on crafted linear-scaling numbers (none at 70 %)."""
    from ssnas.studies.common import mean_std
    from ssnas.studies.entropy import harmless_magnitude

    mags = {"none": 0.0, "low": 0.01, "medium": 0.1, "high": 1.0}
    noise = (0.0, 0.004, -0.004)
    rows = [{"scaling": "linear", "magnitude": m, "seed": seed,
             "miou": 0.70 + 0.01 * seed - loss + noise[seed] * bool(loss)}
            for m, loss in zip(mags, (0.0, *losses)) for seed in range(3)]
    table = {"linear": {m: mean_std([r["miou"] for r in rows if r["magnitude"] == m]) for m in mags}}
    c, text = harmless_magnitude({"magnitudes": mags, "rows": rows, "table": table}, "linear")
    assert c == expected
    assert text.startswith("linear: the strongest magnitude at least as good as none")


def test_discretization_and_two_stage_verdicts_on_crafted_numbers():
    """Fig. 2: the unregularized supernet loses 60-70% at 30% dropped, the regularized one 5-10% (held; and the
    collapse at 20% held); Tables 4/6: the single stage is cheaper and within 0.5 points (non-inferior)."""
    from ssnas.studies import discretization, two_stage
    lost = {"none": {0.2: [0.6, 0.65, 0.7], 0.3: [0.6, 0.7, 0.65]}, "high": {0.2: [0.0, 0.05, 0.02],
                                                                            0.3: [0.05, 0.1, 0.08]}}
    rows = [{"magnitude": m, "seed": s, "fraction": f, "miou_pruned": 0.5 * (1 - (lost[m][f][s] if f else 0)),
             "miou_finetuned": 0.5} for m in lost for s in range(3) for f in (0.0, 0.2, 0.3)]
    lines = discretization.verdict({"magnitudes": {"none": 0.0, "high": 1.0}, "rows": rows,
                                    "fractions": [0.0, 0.2, 0.3], "beta_entropy_end": {"none": 1.0, "high": 0.2}})
    lines = lines.splitlines()
    assert "none − high: +57.3 points (95% CI [" in lines[0]
    assert lines[0].endswith("→ **held** ('stronger entropy loss, smaller loss').")
    assert "none − high: +0.0 points (95% CI [+0.0, +0.0], paired, 3 seeds) → **inconclusive**" in lines[1]
    assert "lost − 50% = +15.0 points" in lines[2] and "→ **held** ('it collapses'" in lines[2]

    models = [{"method": method, "seed": s, "miou": v}
              for method, vals in ((two_stage.SINGLE, [0.60, 0.62, 0.61]),
                                   (two_stage.PIPELINES[0][2], [0.605, 0.62, 0.612]),
                                   (two_stage.PIPELINES[1][2], [0.70, 0.72, 0.71])) for s, v in enumerate(vals)]
    pipelines = {name: {"method": method, "cost_ratio_flops": 0.5, "cost_ratio_wall": 0.6, "retrain_ratio": 2.5,
                        "miou_two": 0.61 if name == "plain" else 0.71} for name, _, method, _ in two_stage.PIPELINES}
    lines = two_stage.verdict({"models": models, "pipelines": pipelines}).splitlines()
    assert len(lines) == 2 and all("'the single stage is cheaper' **held**" in line for line in lines)
    assert "single − two stage = -0.2 points (95% CI [" in lines[0]
    assert lines[0].endswith("(no loss beyond 1.2 points = 2% of the two-stage mIoU) **held**.")
    assert "single − two stage = -10.0 points" in lines[1] and lines[1].endswith("**did not hold**.")


def test_two_stage_without_search_entropy_is_one_line(demo_root, tmp_path, capsys):
    study = {k: v for k, v in STUDY["two-stage"].items() if k != "search_entropy"}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "name": "x", "study": study,
                                      "data": {**TINY["data"], "root": str(demo_root)}}, sort_keys=False))
    assert _study("two-stage", config, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("study.search_entropy: missing, expected c >= 0 of the regularized search (the entropy "
                        "study's highest magnitude)") and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()

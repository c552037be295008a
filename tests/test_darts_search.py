"""DARTS search through the one engine: `ssnas search` with `task: darts`, Hessian eigenvalue tracking (also for
the segmentation supernet), DARTS-ES, DOTS annealing, the cosine LR, and `ssnas study hessian` end to end."""
import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch
import yaml

from ssnas.cli import main
from ssnas.config import CHOICES, load_config
from ssnas.darts.genotypes import SPACES
from ssnas.darts.model_search import dots_temperature
from ssnas.tasks.darts import DartsTask, DotsAnnealing, count_ops
from ssnas.engine.checkpoint import load_checkpoint
from ssnas.engine.schedule import Phases, cosine_lr_factor
from ssnas.engine.tracking import EarlyStopRule, HessianSettings, HessianTracker, fixed_batch
from ssnas.hessian import MAX_EXACT_DIM, dominant_eigenvalue

# digits (16x16), a 3-layer network of 2 channels, 2 epochs x 2 steps, the exact Hessian after every epoch
TINY = {"name": "darts-tiny", "task": "darts", "seed": 0,
        "darts": {"space": "s1", "channels": 2, "layers": 3, "dataset": "digits", "batch_size": 8,
                  "hessian_batch": 4, "hessian_method": "exact"},
        "protocol": {"epochs": 2, "warmup": 0.0, "search": 1.0, "finetune": 0.0, "entropy_start": 0.0,
                     "split": "split", "iters_per_epoch": 2},
        "optim": {"lr": 0.025, "min_lr": 0.001, "schedule": "cosine", "weight_decay": 3e-4, "grad_clip": 5.0},
        "arch_optim": {"lr": 3e-4, "betas": [0.5, 0.999], "weight_decay": 1e-3},
        "data": {"workers": 0}, "eval": {"interval": 1000, "max_images": 16},
        "run": {"device": "cpu", "tensorboard": False, "progress": False, "threads": 1, "channels_last": False,
                "hessian_every": 1}}


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_search_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--config", write(tmp_path / "c.yaml", TINY), "--out", str(out)]) == 0
    recs = records(out)
    assert [r["epoch"] for r in recs] == [1, 2]
    for r in recs:
        assert r["hessian_method"] == "exact" and r["hessian_dims"] == 2 * 14 * 2
        assert math.isfinite(r["hessian_eigenvalue"])
        assert len(r["genotype"]["normal"]) == 8 and len(r["genotype"]["reduce"]) == 8
    assert 0.0 <= recs[-1]["accuracy"] <= 1.0
    assert recs[0]["lr"] > recs[1]["lr"] > 0.001  # cosine, per step
    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    assert payload["space"] == {"space": "s1", "channels": 2, "layers": 3, "topology": "none", "num_classes": 10}
    assert payload["genotype"] == recs[-1]["genotype"]
    # the checkpoint loads into a fresh network, and the logged eigenvalue is that of its α on the fixed batch
    cfg = load_config(out / "config.yaml")
    task = DartsTask(cfg)
    model = task.build_model()
    model.load_state_dict(payload["model"])
    batch = fixed_batch(task.build_streams()["b"], cfg.darts.hessian_batch, cfg.seed)
    for p in model.weight_parameters():
        p.requires_grad_(False)
    model.train()
    value, _ = dominant_eigenvalue(lambda: task.loss(model(batch["image"]), batch), model.arch_parameters(),
                                   method="exact", weight_decay=cfg.arch_optim.weight_decay)
    assert value == pytest.approx(recs[-1]["hessian_eigenvalue"], rel=1e-4)


def test_split_and_joint_streams():
    split = DartsTask(load_config(None, {**TINY, "protocol": {**TINY["protocol"], "split": "split"}}))
    a, b = (s.indices for s in (split.build_streams()["a"], split.build_streams()["b"]))
    n = len(split.dataset("train"))
    assert n == 1437 and len(a) == len(b) == n // 2 and not set(a) & set(b)
    joint = DartsTask(load_config(None, {**TINY, "protocol": {**TINY["protocol"], "split": "joint"}}))
    streams = joint.build_streams()
    assert streams["a"].indices == streams["b"].indices == list(range(n))
    assert not torch.equal(streams["a"].next()["label"], streams["b"].next()["label"])  # drawn separately


def test_dots_annealing_sets_the_temperature():
    task = DartsTask(load_config(None, {**TINY, "darts": {**TINY["darts"], "topology": "dots"}}))
    model = task.build_model()
    assert len(model.arch_parameters()) == 4 and isinstance(task.hooks()[0], DotsAnnealing)
    phases = Phases(epochs=5, warmup_end=0, search_end=5, entropy_start=0)
    trainer = SimpleNamespace(model=model, phases=phases)
    hook = DotsAnnealing()
    temps = []
    for epoch in range(5):
        hook.epoch_start(trainer, epoch)
        temps.append(hook.epoch_end(trainer, epoch, {})["dots_temperature"])
    assert temps[0] == pytest.approx(10.0) and temps[-1] == pytest.approx(0.02)
    assert temps[2] == pytest.approx(dots_temperature(0.5)) == pytest.approx(10 * (0.02 / 10) ** 0.5)
    assert all(x > y for x, y in zip(temps, temps[1:]))


def test_early_stop_rule_on_crafted_sequences():
    rule = EarlyStopRule(factor=1.3, window=2, delta=2, start=3)
    rising = [[e, v] for e, v in zip(range(1, 9), [1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6])]
    fired = [rule.check(rising[:k]) for k in range(1, 9)]
    assert fired[:7] == [None] * 7  # not enough measurements, or the earlier window's epoch < start
    assert fired[7]["epoch"] == 8 and fired[7]["rollback_epoch"] == 5
    assert fired[7]["ratio"] == pytest.approx(1.5 / 1.15)
    assert rule.check([[e, 1.0] for e in range(1, 20)]) is None  # flat: never
    # RobustDARTS's defaults: window 5, 4 measurements back, from epoch 10
    assert EarlyStopRule() == EarlyStopRule(1.3, 5, 4, 10)


def test_darts_es_stops_the_search(tmp_path, monkeypatch):
    """The engine ends the run at the epoch where the rule fires, and a resume does not continue it."""
    sequence = iter([1.0, 1.0, 2.0, 4.0, 8.0, 16.0])
    monkeypatch.setattr(HessianTracker, "measure", lambda self, trainer: (next(sequence), "exact", 56, 0.0))
    cfg = {**TINY, "darts": {**TINY["darts"], "early_stop": True, "early_stop_window": 1, "early_stop_delta": 1,
                             "early_stop_start": 2},
           "protocol": {**TINY["protocol"], "epochs": 6, "iters_per_epoch": 1}}
    out = tmp_path / "run"
    path = write(tmp_path / "c.yaml", cfg)
    assert main(["search", "--config", path, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["early_stop"]["epoch"] == 3 and summary["early_stop"]["rollback_epoch"] == 2
    assert [r["epoch"] for r in records(out)] == [1, 2, 3] and summary["steps"] == 3
    assert main(["search", "--config", path, "--out", str(out), "--resume"]) == 0
    assert [r["epoch"] for r in records(out)] == [1, 2, 3]


def test_exact_falls_back_to_power_above_max_exact(capsys):
    """More than MAX_EXACT_DIM architecture scalars: power iteration, said once; BN statistics untouched."""
    class Quadratic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.alpha = torch.nn.Parameter(torch.zeros(MAX_EXACT_DIM + 2))
            self.bn = torch.nn.BatchNorm1d(1)

        def arch_parameters(self):
            return [self.alpha]

        def forward(self, x):  # per sample Σ c_i α_i² / 2: the batch's Hessian is 4·diag(c), c ≤ 1 but one 3
            self.bn(x[:, :1])
            c = torch.linspace(0.0, 1.0, self.alpha.numel())
            c[-1] = 3.0
            return x * 0 + (c * self.alpha ** 2).sum() / 2

    model = Quadratic()
    data = [{"image": torch.ones(1), "label": torch.zeros((), dtype=torch.long)} for _ in range(4)]
    stream = SimpleNamespace(dataset=data, indices=list(range(4)))
    trainer = SimpleNamespace(model=model, streams={"b": stream}, cfg=load_config(None, TINY),
                              device=torch.device("cpu"), task=SimpleNamespace(loss=lambda logits, b: logits.sum(),
                                                                  augment=lambda batch, device: batch),
                              logger=SimpleNamespace(message=print))
    tracker = HessianTracker(HessianSettings(every=1, batch=4, method="exact"))
    before = model.bn.running_mean.clone()
    value, method, dims, _ = tracker.measure(trainer)
    tracker.measure(trainer)
    assert (method, dims) == ("power", MAX_EXACT_DIM + 2) and value == pytest.approx(4 * 3.0, rel=1e-3)
    assert capsys.readouterr().out.count("using power iteration") == 1
    assert torch.equal(model.bn.running_mean, before) and model.alpha.requires_grad


def test_segmentation_supernet_tracking(demo_root, tmp_path):
    """The same hook on the segmentation supernet (α, β), enabled by run.hessian_every."""
    out = tmp_path / "seg"
    args = ["search", "--config", "smoke", "--out", str(out), "--set", f"data.root={demo_root}",
            "--set", "run.hessian_every=1", "--set", "run.tensorboard=false", "--set", "eval.max_images=2",
            "--set", "protocol.epochs=1"]  # one search epoch (with its squeeze-excite hardsigmoid)
    assert main(args) == 0
    (rec,) = records(out)
    assert rec["phase"] == "search" and rec["hessian_dims"] == 48 and rec["hessian_method"] == "exact"
    assert math.isfinite(rec["hessian_eigenvalue"])


def test_hessian_study_tiny(tmp_path, monkeypatch):
    """Six searches (S2, split and joint, 3 seeds) with crafted eigenvalues (the real ones:
    test_search_end_to_end): split grows ×1.9-2.2, joint ×1.0-1.1, so every part of the paper's claim holds."""
    split, joint = [(1.0, 2.0), (1.0, 2.2), (1.0, 1.9)], [(1.0, 1.1), (1.0, 1.0), (1.0, 1.05)]
    sequence = iter([v for pair in split + joint for v in pair])
    monkeypatch.setattr(HessianTracker, "measure", lambda self, trainer: (next(sequence), "exact", 56, 0.0))
    cfg = {**TINY, "darts": {**TINY["darts"], "space": "s2"}, "study": {"spaces": ["s2"], "modes": ["split", "joint"],
                                                                        "seeds": [0, 1, 2]}}
    out = tmp_path / "study"
    # --jobs 1: in this process, where the crafted eigenvalues are patched in (spawned workers would not see it)
    assert main(["study", "hessian", "--config", write(tmp_path / "c.yaml", cfg), "--out", str(out),
                 "--jobs", "1"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["mode"], r["seed"], r["curve"]) for r in rows][:2] == [("split", "0", "1:1 2:2"),
                                                                      ("split", "1", "1:1 2:2.2")]
    assert [float(r["eig_ratio"]) for r in rows] == pytest.approx([2.0, 2.2, 1.9, 1.1, 1.0, 1.05])
    growths = (2.0, 2.2, 1.9, 1.1, 1.0, 1.05)
    assert [float(r["log_growth"]) for r in rows] == pytest.approx([math.log(x) for x in growths])
    for r in rows:
        assert 0 <= int(r["skip_normal"]) <= int(r["param_free_normal"]) <= 8 and 0 <= float(r["accuracy"]) <= 1
    report = (out / "report.md").read_text()
    assert "fig4_hessian.png" in report and (out / "fig4_hessian.png").stat().st_size > 0
    assert "S2: split 1.0000 → 2.0333 (×2.03" in report and "held in 1 of 1 space(s)" in report
    assert "growth split − joint (log) = +0.660 (95% CI [" in report and "paired, 3 seeds" in report


def _hessian_rows(space, split, joint):
    from ssnas.studies.hessian import _log_growth
    return [{"space": space, "mode": mode, "seed": seed, "eig_start": a, "eig_end": b, "log_growth": _log_growth(a, b)}
            for mode, pairs in (("split", split), ("joint", joint)) for seed, (a, b) in enumerate(pairs)]


def test_hessian_verdict_counts_growth_not_only_the_end_values():
    from ssnas.studies.hessian import _means, verdict
    # S1: split does not grow
    rows = (_hessian_rows("s1", [(1.0, 1.0), (1.0, 1.01), (1.0, 0.99)], [(1.0, 0.5), (1.0, 0.5), (1.0, 0.6)])
            # joint ends below split at every seed, but grows ×4 too: 'stays small' must not hold
            + _hessian_rows("s3", [(1.0, 5.0), (1.0, 5.5), (1.0, 4.8)], [(1.0, 4.0), (1.0, 4.2), (1.0, 3.9)])
            + _hessian_rows("s4", [(1.0, 3.0)], [(1.0, 1.0)]))   # one seed: no interval
    spaces = ["s1", "s3", "s4"]
    text = verdict({"rows": rows, "spaces": spaces, "means": _means(rows, spaces, ["split", "joint"])})
    lines = text.splitlines()
    assert lines[0].startswith("- S1") and lines[0].endswith("**did not hold**.")
    assert "split grows (log growth − log 1.3) = -0.262" in lines[0]
    assert lines[1].startswith("- S3") and lines[1].endswith("**did not hold**.")
    assert "λ_end split − joint = +1.067" in lines[1] and "joint stays small (log 1.3 − log growth) = -1.1" in lines[1]
    assert lines[2].startswith("- S4") and lines[2].endswith("**inconclusive**.") and "(no CI: 1 seed)" in lines[2]
    assert "held in 0 of 3 space(s)" in text


def test_config_errors(tmp_path, capsys):
    assert set(CHOICES["darts.space"]) == set(SPACES)
    bad = write(tmp_path / "bad.yaml", {**TINY, "darts": {**TINY["darts"], "space": "s9"}})
    assert main(["search", "--config", bad, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "darts.space: 's9' is not one of darts, s1" in err and len(err.splitlines()) == 1
    cifar = write(tmp_path / "cifar.yaml", {**TINY, "darts": {**TINY["darts"], "dataset": "cifar10",
                                                              "data_root": str(tmp_path)}})
    assert main(["search", "--config", cifar, "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert "data_batch_1: CIFAR-10 batch file missing" in err and len(err.splitlines()) == 1
    es = write(tmp_path / "es.yaml", {**TINY, "darts": {**TINY["darts"], "early_stop": True},
                                      "run": {**TINY["run"], "hessian_every": 0}})
    assert main(["search", "--config", es, "--out", str(tmp_path / "z")]) == 2
    assert "darts.early_stop: needs the eigenvalue" in capsys.readouterr().err


def test_cosine_schedule_and_counts():
    assert cosine_lr_factor(0, 100, 0.025, 0.001) == pytest.approx(1.0)
    assert cosine_lr_factor(50, 100, 0.025, 0.001) == pytest.approx((0.025 + 0.001) / 2 / 0.025)
    assert cosine_lr_factor(100, 100, 0.025, 0.001) == pytest.approx(0.001 / 0.025)
    genes = [["skip_connect", 0], ["sep_conv_3x3", 1], ["max_pool_3x3", 0], ["noise", 2]]
    assert count_ops(genes) == 3 and count_ops(genes, ("skip_connect",)) == 1


def test_entropy_table_darts_rows(tmp_path):
    """Table 1's DARTS rows come from a DOTS search of the named DARTS config, averaged over cells and seeds."""
    from ssnas.studies.entropy_table import darts_rows

    def entropy(topology, alpha):
        return {f"{p}_{c}": {w: {"raw": v[w], "normalized": v[w] / 2, "per_element": v[w] / 8}
                             for w in ("start", "end")}
                for p, v in (("topology", topology), ("alpha", alpha)) for c in ("normal", "reduce")}

    trained = []

    def train(name, cfg):
        trained.append((name, cfg.task, cfg.darts.topology, cfg.seed))
        return {"entropy": entropy({"start": 1.0 + cfg.seed, "end": 0.5}, {"start": 2.0, "end": 1.0 + cfg.seed})}

    cfg = load_config(None, {"study": {"seeds": [0, 1], "darts_config": write(tmp_path / "d.yaml", TINY)}})
    rows = darts_rows(cfg, SimpleNamespace(train=train), print)
    assert trained == [("darts-dots-s0", "darts", "dots", 0), ("darts-dots-s1", "darts", "dots", 1)]
    assert [(r["method"], r["parameters"]) for r in rows] == [("DARTS", "Topology"), ("DARTS", "Operations")]
    assert (rows[0]["start_raw"], rows[0]["end_raw"], rows[1]["end_raw"]) == pytest.approx((1.5, 0.5, 1.5))
    assert rows[1]["start_normalized"] == pytest.approx(1.0) and rows[1]["start_per_element"] == pytest.approx(0.25)
    assert rows[0]["change"] == pytest.approx([-0.5, -0.75])   # per seed: (end - start) / start
    assert darts_rows(load_config(None, {"study": {"seeds": [0]}}), None, print) == []

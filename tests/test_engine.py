"""The single-stage protocol end to end on the smoke config, and the engine's parts."""
import json

import pytest
import torch

from ssnas.cli import main
from ssnas.config import load_config
from ssnas.engine.checkpoint import load_checkpoint
from ssnas.engine.schedule import Phases, arch_steps, entropy_scale, poly_lr_factor, scaled_arch_lr
from ssnas.engine.streams import BatchStream, split_indices
from ssnas.engine.trainer import Trainer
from ssnas.hardware import STEADY_ALLOCATOR


@pytest.fixture(scope="module")
def smoke_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "smoke"
    code = main(["search", "--config", "smoke", "--out", str(out), "--set", f"data.root={demo_root}",
                 "--set", "run.keep_every=1"])
    assert code == 0
    return out


def _state(path):
    return load_checkpoint(path)["model"]


def test_three_phases_update_the_right_parameters(smoke_run):
    states = [_state(smoke_run / "checkpoints" / f"epoch_{e:04d}.pt") for e in range(4)]
    phases = ["warmup", "search", "finetune"]
    for e, phase in enumerate(phases):
        before, after = states[e], states[e + 1]
        arch_changed = any(not torch.equal(before[k], after[k]) for k in ("alpha", "beta"))
        assert arch_changed == (phase == "search"), phase
        weights = [k for k in before if k not in ("alpha", "beta") and before[k].is_floating_point()
                   and "running" not in k]
        assert any(not torch.equal(before[k], after[k]) for k in weights), phase
        conv = "stem.branches.0.0.0.weight"
        assert not torch.equal(before[conv], after[conv]), phase
    assert bool(states[3]["frozen"]) and not bool(states[2]["frozen"])


def test_metrics_summary_and_plots(smoke_run):
    records = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["warmup", "search", "finetune"]
    for r in records:
        assert r["loss_w"] > 0 and "lr" in r and "time" in r and "miou" in r
        assert set(r["entropy"]) == {"alpha", "beta"}
        assert 0 <= r["entropy"]["beta"]["normalized"] <= 1
    assert "loss_a" in records[1] and "entropy_loss" in records[1] and "loss_a" not in records[0]
    assert records[2]["lr"] < records[0]["lr"]  # poly schedule
    summary = json.loads((smoke_run / "summary.json").read_text())
    for key in ("miou", "per_class_iou", "phases", "entropy", "wall_time_s", "config_hash"):
        assert key in summary
    assert summary["phases"] == {"warmup": [0, 1], "search": [1, 2], "finetune": [2, 3]}
    assert summary["amp"] == {"setting": "none", "used": "none", "reason": "set in the config"}
    assert summary["allocator"] in (STEADY_ALLOCATOR, "default")   # "default" where glibc's mallopt is missing
    assert summary["entropy"]["alpha"]["start"]["raw"] != summary["entropy"]["alpha"]["end"]["raw"]
    for name in ("entropy", "training", "architecture"):
        assert (smoke_run / "plots" / f"{name}.png").stat().st_size > 1000
    assert any((smoke_run / "tb").iterdir())
    assert (smoke_run / "checkpoints" / "best.pt").is_file()


def test_out_dir_with_a_run_is_refused_and_untouched(smoke_run, demo_root, capsys):
    before = (smoke_run / "metrics.jsonl").read_bytes()
    code = main(["search", "--config", "smoke", "--out", str(smoke_run), "--set", f"data.root={demo_root}",
                 "--set", "protocol.epochs=6"])
    assert code == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "Traceback" not in err
    assert (smoke_run / "metrics.jsonl").read_bytes() == before


@pytest.mark.parametrize("override,match", [
    ("protocol.split=random", "protocol.split"),
    ("protocol.bogus=1", "unknown key"),
    ("protocol.warmup=0.5", "warmup + search + finetune"),
    ("entropy.scaling=cubic", "entropy.scaling"),
    ("data.crop_size=[0,64]", "data.crop_size"),
    ("model.variant=nope", "unknown variant"),
    ("data.root=/nonexistent/dataset", "/nonexistent/dataset"),
])
def test_bad_config_one_line_exit_2(override, match, tmp_path, demo_root, capsys):
    argv = ["search", "--config", "smoke", "--out", str(tmp_path / "run"), "--set", f"data.root={demo_root}",
            "--set", "data.make_demo=false", "--set", override]  # a missing root must stay missing
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssnas: error:") and match in err and len(err.splitlines()) == 1


def test_missing_config_file(tmp_path, capsys):
    assert main(["search", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_phase_boundaries_and_entropy_scaling():
    cfg = load_config(None, ["protocol.epochs=20"])
    ph = Phases.from_config(cfg.protocol)
    assert (ph.warmup_end, ph.search_end, ph.entropy_start) == (1, 8, 3)
    assert [ph.phase(e) for e in (0, 1, 7, 8, 19)] == ["warmup", "search", "search", "finetune", "finetune"]
    assert entropy_scale("constant", 2.9, ph) == 0.0 and entropy_scale("constant", 3.0, ph) == 1.0
    assert entropy_scale("linear", 3.0, ph) == 0.0
    assert entropy_scale("linear", 5.5, ph) == pytest.approx(0.5)
    assert entropy_scale("linear", 9.0, ph) == 1.0
    assert poly_lr_factor(0, 100, 0.9, 0.1) == 1.0 and poly_lr_factor(100, 100, 0.9, 0.1) == 0.0
    assert poly_lr_factor(50, 100, 1.0, 0.1) == pytest.approx(0.5)


def test_arch_lr_equal_travel_rule(demo_root, tmp_path):
    """lr x steps equals the reference run's (the paper: 0.003 x 38,850); the trainer's Adam uses that rate."""
    ph = Phases.from_config(load_config(None, ["protocol.epochs=20"]).protocol)
    assert arch_steps(ph, 10) == (8 - 1) * 10
    assert scaled_arch_lr(0.003, 38850, 70) * 70 == pytest.approx(0.003 * 38850)
    assert scaled_arch_lr(0.003, None, 70) == 0.003
    cfg = load_config("smoke", [f"data.root={demo_root}", "arch_optim.reference_steps=300"])
    trainer = Trainer(cfg, tmp_path / "run")
    trainer._setup()
    try:
        n = arch_steps(trainer.phases, trainer.iters)
        assert n > 0 and trainer.opt_a.param_groups[0]["lr"] == pytest.approx(0.003 * 300 / n)
    finally:
        trainer.run_dir.unlock()


@pytest.mark.parametrize("steady", [True, False])
def test_cpu_training_fixes_the_allocator_only_when_asked(steady, demo_root, tmp_path, monkeypatch):
    """run.steady_allocator: set-up calls hardware.steady_allocator once (results do not depend on it; speed
    does, docs/benchmarks.md), and the summary says which allocator state the run had."""
    from ssnas.engine import trainer as trainer_module

    calls = []
    monkeypatch.setattr(trainer_module, "steady_allocator", lambda: calls.append(1) or True)
    cfg = load_config("smoke", [f"data.root={demo_root}", f"run.steady_allocator={str(steady).lower()}"])
    trainer = Trainer(cfg, tmp_path / "run")
    trainer._setup()
    try:
        assert calls == ([1] if steady else [])
        assert trainer.allocator == (STEADY_ALLOCATOR if steady else "default")
    finally:
        trainer.run_dir.unlock()


def test_split_modes():
    a, b = split_indices(10, "split", seed=3)
    assert not set(a) & set(b) and len(a) == len(b) == 5
    a2, b2 = split_indices(10, "half", seed=3)
    assert a2 == b2 == a
    a3, b3 = split_indices(10, "joint", seed=3)
    assert a3 == b3 == list(range(10))


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"image": torch.tensor([float(i)]), "label": torch.tensor(i)}


def test_batch_stream_resumes_exactly():
    def take(stream, n):
        return [stream.next()["label"].tolist() for _ in range(n)]

    s1 = BatchStream(_Items(), range(10), 3, seed=0, name="A")
    ref = take(s1, 7)  # crosses a pass boundary (3 batches per pass)
    s2 = BatchStream(_Items(), range(10), 3, seed=0, name="A")
    first = take(s2, 4)
    state = s2.state_dict()
    s3 = BatchStream(_Items(), range(10), 3, seed=0, name="A")
    s3.load_state_dict(state)
    assert first + take(s3, 3) == ref
    other = BatchStream(_Items(), range(10), 3, seed=0, name="B")
    assert take(other, 3) != ref[:3]  # A and B draw separately
    # under DDP, ranks get disjoint shards of each global batch
    r0 = BatchStream(_Items(), range(10), 2, seed=0, name="A", rank=0, world=2)
    r1 = BatchStream(_Items(), range(10), 2, seed=0, name="A", rank=1, world=2)
    for _ in range(2):
        assert not set(r0.next()["label"].tolist()) & set(r1.next()["label"].tolist())


def test_entropy_regularization_lowers_entropy(demo_root, tmp_path):
    from ssnas.arch import arch_entropies
    cfg = load_config("smoke", [f"data.root={demo_root}", "entropy.c_alpha=50.0", "entropy.c_beta=50.0",
                                "arch_optim.lr=0.1"])
    trainer = Trainer(cfg, tmp_path / "run")
    trainer._setup()
    try:
        before = arch_entropies(trainer.model)
        batch = trainer._to_device(trainer.streams["b"].next())
        for _ in range(3):
            trainer.arch_step(batch, 1.0)
        after = arch_entropies(trainer.model)
    finally:
        trainer.run_dir.unlock()
    assert after["alpha"]["raw"] < before["alpha"]["raw"] - 0.01
    assert after["beta"]["raw"] < before["beta"]["raw"] - 0.01


def test_evaluate_command(smoke_run, demo_root, capsys):
    assert main(["evaluate", "--checkpoint", str(smoke_run / "checkpoints" / "last.pt"),
                 "--set", f"data.root={demo_root}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert out["miou"] == pytest.approx(summary["miou"], abs=1e-9)
    assert len(out["per_class_iou"]) == 9


def test_predict_writes_masks_overlays_and_labels(smoke_run, demo_root, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    val = demo_root / "images" / "val"
    out = tmp_path / "pred"
    assert main(["predict", str(val), "--checkpoint", str(smoke_run), "--out", str(out)]) == 0
    names = sorted(p.stem for p in val.iterdir())
    for n in names:
        label = np.asarray(Image.open(out / f"{n}_label.png"))
        color = np.asarray(Image.open(out / f"{n}_color.png"))
        image = np.asarray(Image.open(val / f"{n}.png"))
        assert label.shape == image.shape[:2] and label.max() < 9
        assert color.shape == image.shape
        assert (out / f"{n}_overlay.png").is_file()
    # the label PNG is the argmax of the model on the normalized image
    from ssnas.data import build_dataset
    from ssnas.tasks.segmentation import load_model
    model, payload = load_model(smoke_run / "checkpoints" / "last.pt")
    cfg = load_config(None, {**payload["config"], "data": {**payload["config"]["data"], "root": str(demo_root)}})
    ds = build_dataset(cfg.data, "val", train=False)
    i = ds.names.index(names[0])
    with torch.no_grad():
        ref = model.eval()(ds[i]["image"][None]).argmax(1)[0].numpy()
    assert (np.asarray(Image.open(out / f"{names[0]}_label.png")) == ref).mean() > 0.999
    # a second call refuses to overwrite, and leaves the outputs as they were
    before = (out / f"{names[0]}_label.png").read_bytes()
    assert main(["predict", str(val), "--checkpoint", str(smoke_run), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (out / f"{names[0]}_label.png").read_bytes() == before
    assert main(["predict", str(tmp_path / "missing.png"), "--checkpoint", str(smoke_run), "--out",
                 str(out)]) == 2


def test_architecture_json_and_costs(smoke_run, capsys):
    """architecture.json matches the last checkpoint; summary.json and the printout give the costs."""
    from ssnas.cli.search import print_summary
    from ssnas.tasks.segmentation import load_model
    from ssnas.space.architecture import describe_architecture

    arch = json.loads((smoke_run / "architecture.json").read_text())
    model, _ = load_model(smoke_run / "checkpoints" / "last.pt")
    assert arch == json.loads(json.dumps(describe_architecture(model)))
    summary = json.loads((smoke_run / "summary.json").read_text())
    costs = summary["costs"]
    assert costs["input_size"] == [64, 128]
    assert costs["fused"]["params"] < costs["supernet"]["params"]
    assert 0 < costs["fused"]["gflops"] < costs["supernet"]["gflops"]
    assert summary["architecture"]["strongest_path"]["levels"] == arch["strongest_path"]["levels"]
    print_summary(summary, str(smoke_run))
    out = capsys.readouterr().out
    assert "strongest path" in out and "dominant kernel per cell" in out and "GFLOPs" in out


def test_evaluate_accepts_exported_models(smoke_run, demo_root, tmp_path, capsys):
    """`ssnas evaluate` on the fused .pt and the .safetensors release: the same mIoU (same weights), and that
    of the supernet up to argmax ties (fused logits differ by float rounding only)."""
    summary = json.loads((smoke_run / "summary.json").read_text())
    mious = {}
    for suffix in (".pt", ".safetensors"):
        model = tmp_path / f"model{suffix}"
        assert main(["export", "--checkpoint", str(smoke_run), "--out", str(model), "--input-size", "64x128"]) == 0
        capsys.readouterr()
        assert main(["evaluate", "--checkpoint", str(model), "--json", "--config", "smoke",
                     "--set", f"data.root={demo_root}"]) == 0
        mious[suffix] = json.loads(capsys.readouterr().out)["miou"]
    assert mious[".pt"] == mious[".safetensors"]
    assert mious[".pt"] == pytest.approx(summary["miou"], abs=0.01)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "model.safetensors")]) == 2
    assert "expected --config" in capsys.readouterr().err


def test_smoke_config_runs_as_shipped(tmp_path, monkeypatch, capsys):
    """`ssnas search --config smoke` with no --set: its dataset is written on first use (here at the test's
    small size, to stay fast; the generator itself is tested in test_demo_data.py), then reused."""
    import ssnas.data.demo as demo

    real, calls = demo.make_demo_dataset, []

    def small(out, seed=0):
        calls.append(str(out))
        return real(out, seed=seed, n_train=8, n_val=4, size=(64, 128))

    monkeypatch.setattr(demo, "make_demo_dataset", small)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--config", "smoke", "--out", "run", "--set", "run.tensorboard=false"]) == 0
    assert calls == ["data/demo-smoke"] and (tmp_path / "data/demo-smoke/classes.yaml").is_file()
    assert (tmp_path / "run" / "architecture.json").is_file()
    assert main(["search", "--config", "smoke", "--out", "run2", "--set", "run.tensorboard=false"]) == 0
    assert calls == ["data/demo-smoke"]  # made once, then used as it is


def test_hooks_are_called_at_their_named_points(demo_root, tmp_path):
    """A Hook subclass sees run start/end, each epoch's start and end, and every step; a plain function is
    still an epoch-end hook; what epoch_end / run_end return lands in the record / summary."""
    from ssnas.engine.hooks import Hook

    calls = []

    class Recorder(Hook):
        def run_start(self, trainer):
            calls.append(("run_start", trainer.state["step"]))

        def epoch_start(self, trainer, epoch):
            calls.append(("epoch_start", epoch))

        def after_step(self, trainer, info):
            calls.append(("after_step", info["step"], info["phase"], info["loss_w"] is not None,
                          info["loss_a"] is not None))

        def epoch_end(self, trainer, epoch, record):
            calls.append(("epoch_end", epoch))
            return {"recorded": epoch}

        def run_end(self, trainer, summary):
            calls.append(("run_end",))
            return {"recorded_run": True}

    cfg = load_config("smoke", [f"data.root={demo_root}", "protocol.iters_per_epoch=1", "eval.max_images=1",
                                "run.tensorboard=false"])
    summary = Trainer(cfg, tmp_path / "run", hooks=[Recorder(), lambda trainer, epoch, record: {"fn": epoch}],
                      costs=False).run()
    assert calls == [("run_start", 0),
                     ("epoch_start", 0), ("after_step", 1, "warmup", True, False), ("epoch_end", 0),
                     ("epoch_start", 1), ("after_step", 2, "search", True, True), ("epoch_end", 1),
                     ("epoch_start", 2), ("after_step", 3, "finetune", True, False), ("epoch_end", 2),
                     ("run_end",)]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["recorded"], r["fn"]) for r in records] == [(0, 0), (1, 1), (2, 2)]
    assert summary["recorded_run"] is True and "plots" in summary   # the plots are a run-end hook too

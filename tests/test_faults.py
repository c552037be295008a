"""Faults: non-finite losses and gradients are skipped before they reach the model, a diverging run stops
with one line and an intact checkpoint, and checkpoints never execute code or load into the wrong model.

NaNs are injected by a task subclass (unit tests) or by patching ``SegmentationTask.loss`` for one CLI
run (pytest's monkeypatch): the production code has no fault hooks.
"""
import json
import os
from pathlib import Path

import pytest
import torch

from ssnas.cli import main
from ssnas.config import load_config, to_dict
from ssnas.engine.checkpoint import load_checkpoint, save_checkpoint
from ssnas.tasks.segmentation import SegmentationTask
from ssnas.engine.trainer import Trainer
from ssnas.errors import UserError

NAN = float("nan")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from ssnas.data.demo import make_demo_dataset
    root = tmp_path_factory.mktemp("data") / "demo"
    make_demo_dataset(root, seed=0, n_train=8, n_val=4, size=(64, 128))
    return root


def smoke_args(root, out, *overrides) -> list:
    sets = [f"data.root={root}", "run.tensorboard=false", *overrides]
    return ["search", "--config", "smoke", "--out", str(out), *[a for s in sets for a in ("--set", s)]]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssnas: error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- skipped steps
class _NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * NAN


class FaultyTask(SegmentationTask):
    """The segmentation task whose loss (``fault="loss"``) or gradient (``"grad"``) is NaN while armed."""

    fault = None

    def loss(self, logits, batch):
        if self.fault == "grad":
            logits = _NaNGradient.apply(logits)
        loss = super().loss(logits, batch)
        return loss * NAN if self.fault == "loss" else loss


def _snapshot(trainer) -> dict:
    return {"model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "opt_w": repr(trainer.opt_w.state_dict()), "opt_a": repr(trainer.opt_a.state_dict())}


def _assert_same(a: dict, b: dict) -> None:
    assert a["opt_w"] == b["opt_w"] and a["opt_a"] == b["opt_a"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.fixture
def trainer(demo_root, tmp_path):
    cfg = load_config("smoke", [f"data.root={demo_root}", "run.tensorboard=false"])
    t = Trainer(cfg, tmp_path / "run", task=FaultyTask(cfg))
    t._setup()
    yield t
    t.run_dir.unlock()


@pytest.mark.parametrize("fault", ["loss", "grad"])
def test_a_non_finite_step_never_reaches_weights_buffers_or_optimizers(trainer, fault):
    batch_a = trainer._to_device(trainer.streams["a"].next())
    batch_b = trainer._to_device(trainer.streams["b"].next())
    trainer.weight_step(batch_a)  # one good step first, so the optimizers have state to protect
    trainer.arch_step(batch_b, 1.0)
    before = _snapshot(trainer)
    trainer.task.fault = fault
    assert trainer.weight_step(batch_a) is None
    assert trainer.arch_step(batch_b, 1.0) is None
    _assert_same(_snapshot(trainer), before)  # weights, α, β, BN running statistics, momentum, Adam moments
    assert all(p.grad is None for p in trainer.model.weight_parameters())
    trainer.task.fault = None
    assert trainer.weight_step(batch_a) is not None  # the same step, finite, does change the state
    assert trainer.arch_step(batch_b, 1.0) is not None
    with pytest.raises(AssertionError):
        _assert_same(_snapshot(trainer), before)


def _nan_from(monkeypatch, first_call: int, last_call: float, out: Path) -> dict:
    """Patch ``SegmentationTask.loss`` to be NaN on calls first_call..last_call (the smoke run calls it
    once per warmup step, twice per search step); remember last.pt's bytes at the first fault."""
    seen = {"calls": 0, "last_pt": None}
    loss = SegmentationTask.loss

    def faulty(self, logits, batch):
        i = seen["calls"]
        seen["calls"] += 1
        if first_call <= i <= last_call:
            if seen["last_pt"] is None:
                seen["last_pt"] = (out / "checkpoints" / "last.pt").read_bytes()
            return loss(self, logits, batch) * NAN
        return loss(self, logits, batch)
    monkeypatch.setattr(SegmentationTask, "loss", faulty)
    return seen


def test_isolated_faults_are_skipped_counted_and_the_run_finishes(demo_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    # smoke: epoch 1 warmup (calls 0, 1), epoch 2 search (calls 2-5), epoch 3 finetune (calls 6, 7)
    _nan_from(monkeypatch, 2, 2, out)          # step 2's weight step
    assert main(smoke_args(demo_root, out, "run.max_bad_steps=2")) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records] == [0, 1, 1]
    assert json.loads((out / "summary.json").read_text())["skipped_steps"] == 1
    assert "non-finite loss_w at step 2: step skipped (1 in a row)" in capsys.readouterr().out


def test_consecutive_faults_stop_the_run_with_one_line_and_the_checkpoint_intact(demo_root, tmp_path,
                                                                                  monkeypatch, capsys):
    out = tmp_path / "run"
    seen = _nan_from(monkeypatch, 2, float("inf"), out)  # from epoch 2 on, every loss is NaN
    assert main(smoke_args(demo_root, out, "run.max_bad_steps=3")) == 2
    err = one_error_line(capsys)
    assert "3 non-finite steps in a row at epoch 2 (run.max_bad_steps=3)" in err and "last.pt is intact" in err
    last = out / "checkpoints" / "last.pt"
    assert last.read_bytes() == seen["last_pt"]  # the checkpoint of before the faults, untouched
    state = load_checkpoint(last)["train"]["state"]
    assert (state["epoch"], state["step"], state["skipped_steps"]) == (1, 2, 0)
    assert not (out / "summary.json").exists()


# ---------------------------------------------------------------- checkpoints that must not load
class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the payload runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _craft(path: Path, marker: Path) -> Path:
    torch.save({"format": "ssnas-checkpoint", "version": 1, "model": {"x": torch.zeros(1)},
                "space": _Payload(marker)}, path)
    return path


@pytest.fixture
def evil(tmp_path):
    control = tmp_path / "control_marker"
    torch.load(_craft(tmp_path / "control.pt", control), weights_only=False)  # an unsafe load runs it...
    assert control.exists()
    marker = tmp_path / "marker"
    return _craft(tmp_path / "evil.pt", marker), marker


def test_load_checkpoint_refuses_a_pickle_payload(evil):
    path, marker = evil
    with pytest.raises(UserError, match="refused to load.*weights-only"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["evaluate", "export", "init_checkpoint", "resume"])
def test_commands_refuse_a_pickle_payload(command, evil, demo_root, tmp_path, capsys):
    path, marker = evil
    if command == "export" and not Path(__file__).resolve().parents[1].joinpath(
            "src/ssnas/cli/export.py").is_file():
        pytest.fail("src/ssnas/cli/export.py is gone: update this test")
    out = tmp_path / "out"
    argv = {"evaluate": ["evaluate", "--checkpoint", str(path), "--set", f"data.root={demo_root}"],
            "export": ["export", "--checkpoint", str(path), "--out", str(tmp_path / "model.pt")],
            "init_checkpoint": smoke_args(demo_root, out, f"model.init_checkpoint={path}"),
            "resume": None}[command]
    if command == "resume":  # a run folder whose last.pt was replaced
        assert main(smoke_args(demo_root, out, "protocol.epochs=1", "protocol.warmup=1", "protocol.search=0",
                               "protocol.finetune=0")) == 0
        capsys.readouterr()
        os.replace(path, out / "checkpoints" / "last.pt")
        argv = ["search", "--out", str(out), "--resume"]
    assert main(argv) == 2
    err = one_error_line(capsys)
    assert "refused to load" in err
    assert not marker.exists()
    assert not (tmp_path / "model.pt").exists()


@pytest.fixture(scope="module")
def mini_checkpoint(demo_root, tmp_path_factory):
    """A valid checkpoint of the 'mini' variant (another search space than smoke's 'tiny')."""
    from ssnas.space.variants import create_model
    model = create_model("mini", num_classes=9)
    path = tmp_path_factory.mktemp("ckpt") / "mini.pt"
    cfg = load_config("smoke", [f"data.root={demo_root}", "model.variant=mini"])
    save_checkpoint(path, {"space": model.cfg.to_dict(), "model": model.state_dict(), "config": to_dict(cfg)})
    return path


@pytest.mark.parametrize("damage,match", [
    ("truncate", "not a readable checkpoint"),
    ("garbage", "not a readable checkpoint"),
    ("empty", "not a readable checkpoint"),
    ("foreign", "not an ssnas checkpoint"),
])
def test_damaged_or_foreign_checkpoints_are_one_clear_line(damage, match, mini_checkpoint, demo_root, tmp_path,
                                                           capsys):
    path = tmp_path / "bad.pt"
    data = mini_checkpoint.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b"",
                      "foreign": b""}[damage])
    if damage == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)  # some other program's weights
    with pytest.raises(UserError, match=match):
        load_checkpoint(path)
    assert main(["evaluate", "--checkpoint", str(path), "--set", f"data.root={demo_root}"]) == 2
    assert match in one_error_line(capsys)


def test_init_checkpoint_of_another_variant_is_refused(mini_checkpoint, demo_root, tmp_path, capsys):
    assert main(smoke_args(demo_root, tmp_path / "run", f"model.init_checkpoint={mini_checkpoint}")) == 2
    err = one_error_line(capsys)
    assert str(mini_checkpoint) in err and "weights do not fit this model" in err

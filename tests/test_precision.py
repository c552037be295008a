"""The speed flags are correct: ``run.amp=bf16`` (CPU autocast) and ``run.compile=true`` (torch.compile)
give a training step close to fp32 eager, and the smoke run completes with each.

Tolerances: bf16 keeps 8 mantissa bits (relative rounding 2^-8 ≈ 0.4% per op), so logits and loss of the
tiny supernet agree with fp32 to a few percent; compile keeps fp32 and only reorders arithmetic, so it
agrees to 1e-4 relative.

``run.compile`` is tested with the ``aot_eager`` backend: the same Dynamo graph capture and AOT-autograd
forward/backward split as the default inductor backend, without inductor's C++ code generation, which took
over 9 minutes for the tiny variant's step on the shared 2-core machine (killed; far over the test budget).
"""
import functools
import json
import math

import pytest
import torch

from ssnas.cli import main
from ssnas.config import load_config
from ssnas.engine.trainer import Trainer

BF16_LOGITS_RTOL = 0.05      # mean |Δlogit| / mean |logit|
BF16_LOSS_RTOL = 0.02
BF16_ARCH_SIGN_AGREEMENT = 0.75
COMPILE_RTOL = 1e-4
COMPILE_TEST_BACKEND = "aot_eager"


@pytest.fixture
def light_compile(monkeypatch):
    """torch.compile as the engine calls it, with the test backend."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=COMPILE_TEST_BACKEND))


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from ssnas.data.demo import make_demo_dataset
    root = tmp_path_factory.mktemp("data") / "demo"
    make_demo_dataset(root, seed=0, n_train=8, n_val=4, size=(64, 128))
    return root


def _trainer(demo_root, out, *overrides):
    cfg = load_config("smoke", [f"data.root={demo_root}", "run.tensorboard=false", *overrides])
    trainer = Trainer(cfg, out)
    trainer._setup()
    return trainer


def test_bf16_autocast_step_is_close_to_fp32(demo_root, tmp_path):
    ref = _trainer(demo_root, tmp_path / "fp32")
    amp = _trainer(demo_root, tmp_path / "bf16", "run.amp=bf16")
    try:
        assert amp.autocast_dtype is torch.bfloat16 and ref.autocast_dtype is None
        batch = ref._to_device(ref.streams["a"].next())
        assert torch.equal(amp.model.alpha, ref.model.alpha)   # same seed, same initial supernet
        with torch.no_grad():
            ref.model.eval(), amp.model.eval()
            want = ref.model(batch["image"])
            with amp._autocast():
                got = amp.model(batch["image"])
        assert want.dtype == torch.float32 and got.dtype == torch.bfloat16   # autocast really ran in bf16
        diff = (got.float() - want).abs().mean() / want.abs().mean()
        assert 0 < diff < BF16_LOGITS_RTOL
        loss_ref, loss_amp = ref.weight_step(batch), amp.weight_step(batch)
        assert math.isfinite(loss_amp) and abs(loss_amp - loss_ref) < BF16_LOSS_RTOL * loss_ref
        # the weights moved, in fp32 (autocast leaves the parameters' dtype alone), and in the same direction
        w_ref, w_amp = (t.model.stem.branches[0][0][0].weight for t in (ref, amp))
        assert w_amp.dtype == torch.float32
        alpha0 = ref.model.alpha.detach().clone()
        arch_ref = ref.arch_step(ref._to_device(ref.streams["b"].next()), 1.0)
        arch_amp = amp.arch_step(amp._to_device(amp.streams["b"].next()), 1.0)
        assert abs(arch_amp[0] - arch_ref[0]) < BF16_LOSS_RTOL * arch_ref[0]
        # Adam's first step is ±lr·sign(g): most α entries move the same way (tiny gradients may flip)
        same = (torch.sign(amp.model.alpha - alpha0) == torch.sign(ref.model.alpha - alpha0)).float().mean()
        assert same > BF16_ARCH_SIGN_AGREEMENT
        cos = torch.nn.functional.cosine_similarity(w_amp.flatten(), w_ref.flatten(), dim=0)
        assert cos > 0.999
    finally:
        ref.run_dir.unlock()
        amp.run_dir.unlock()


def test_compile_step_matches_eager(demo_root, tmp_path, light_compile):
    ref = _trainer(demo_root, tmp_path / "eager")
    comp = _trainer(demo_root, tmp_path / "compiled", "run.compile=true")
    try:
        assert comp.forward_model is not comp.model          # the weight step goes through the compiled module
        batches = [ref._to_device(ref.streams["a"].next()) for _ in range(2)]
        for batch in batches:                                  # 2 steps: the second sees the updated weights
            want, got = ref.weight_step(batch), comp.weight_step(batch)
            assert got == pytest.approx(want, rel=COMPILE_RTOL)
        w_ref, w_comp = (t.model.head.classifier.weight for t in (ref, comp))
        assert torch.allclose(w_comp, w_ref, rtol=1e-3, atol=1e-5)
    finally:
        ref.run_dir.unlock()
        comp.run_dir.unlock()


@pytest.mark.parametrize("flag", ["run.amp=bf16", "run.compile=true"])
def test_smoke_run_completes_with_flag(flag, demo_root, tmp_path, light_compile):
    out = tmp_path / "run"
    assert main(["search", "--config", "smoke", "--out", str(out), "--set", f"data.root={demo_root}",
                 "--set", "run.tensorboard=false", "--set", flag]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["warmup", "search", "finetune"]
    assert all(math.isfinite(r["loss_w"]) and r["loss_w"] > 0 for r in records)
    assert records[-1]["skipped_steps"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["miou"] <= 1.0


# ---------------------------------------------------------------------- run.amp: auto
def test_auto_amp_on_cpu_follows_the_cached_probe(demo_root, tmp_path, monkeypatch):
    """bf16 only where the probe measured it >= BF16_MARGIN faster; the probe runs once per machine (cache)."""
    from ssnas.engine import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []
    figures = {"fp32_s": 1.0, "bf16_s": 2.0}          # bf16 half the speed: fp32 is kept
    monkeypatch.setattr(precision, "_measure", lambda: calls.append(1) or dict(figures))
    used, reason = precision.resolve_amp("auto", torch.device("cpu"))
    assert used == "none" and "0.50x" in reason and len(calls) == 1
    figures.update(bf16_s=0.5)                          # the cache answers: no second measurement
    assert precision.resolve_amp("auto", torch.device("cpu"))[0] == "none" and len(calls) == 1
    assert precision.cache_path().is_file() and precision.cache_path().is_relative_to(tmp_path)
    precision.cache_path().unlink()                     # a faster bf16 is chosen
    used, reason = precision.resolve_amp("auto", torch.device("cpu"))
    assert used == "bf16" and "2.00x" in reason and len(calls) == 2
    assert precision.resolve_amp("fp16", torch.device("cpu")) == ("fp16", "set in the config")

    trainer = _trainer(demo_root, tmp_path / "auto", "run.amp=auto")   # the engine uses and records it
    try:
        assert trainer.autocast_dtype is torch.bfloat16
        assert trainer.state["amp"] == "bf16" and trainer.state["amp_reason"].startswith("CPU probe")
    finally:
        trainer.run_dir.unlock()


def test_cpu_probe_measures_both_precisions(tmp_path, monkeypatch):
    from ssnas.engine import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    before = torch.get_rng_state()
    result = precision.cpu_probe()
    assert result["fp32_s"] > 0 and result["bf16_s"] > 0 and result["torch"] == torch.__version__
    assert torch.equal(torch.get_rng_state(), before)   # the run's random stream is untouched
    assert precision.cpu_probe()["cached"] is True

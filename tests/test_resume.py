"""Exact resume: a run killed (SIGKILL) or stopped (SIGTERM) at any point and resumed with ``--resume`` ends
bitwise equal to an uninterrupted run; two runs never share an output folder.

Runs are ``ssnas search`` processes: forked from the test process (imports already done, so a process
starts in milliseconds) for the many kill/resume rounds, and one real ``python -m ssnas search`` subprocess
for the SIGTERM exit status and the lock. Kill points are drawn from a seeded RNG:

- ``("step", s)``  the process SIGKILLs itself in global step s, after the weight step, before the arch step;
- ``("termstep", s)``  ... sends itself SIGTERM there instead;
- ``("save", n)``  ... in its n-th write of last.pt, after the temp file is written, before the rename
                   (the epoch's metrics record is already logged: the resumed run must not log it twice);
- ``("time", t)``  the test SIGKILLs it t seconds after its start (wherever it is);
- ``("term", t)``  the test sends SIGTERM t seconds after its start (the soak script uses it).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch._inductor.config  # noqa: F401  (warm imports: run.deterministic imports it, forks inherit it)

import ssnas.engine.plots  # noqa: F401  (warm import of matplotlib for the forked runs)
from ssnas.cli import main
from ssnas.engine.checkpoint import load_checkpoint
from ssnas.engine.logger import read_metrics
from ssnas.engine.trainer import Trainer

SEED = 20240607
EPOCHS, ITERS = 3, 3                 # warmup, search, finetune: one epoch each, 3 steps per epoch
TOTAL_STEPS = EPOCHS * ITERS
VOLATILE = {"wall_time", "wall_time_s", "time", "checkpoint"}  # clock readings and the folder's own path
START_TIMEOUT_S = 120                # a cold `python -m ssnas` on two busy cores
EXTERNAL = {"time": signal.SIGKILL, "term": signal.SIGTERM}   # plans the test process carries out
STOPPED = {-signal.SIGKILL: "killed", 128 + signal.SIGTERM: "terminated"}  # exit codes of an interrupted run
TERMINATED = 128 + signal.SIGTERM


def search_argv(root, out) -> list[str]:
    return ["search", "--config", "smoke", "--out", str(out), "--resume", "--set", f"data.root={root}",
            "--set", f"protocol.iters_per_epoch={ITERS}", "--set", "run.deterministic=true",
            "--set", "run.threads=1", "--set", "run.tensorboard=false", "--set", "run.keep_every=0"]


# ---------------------------------------------------------------- a forked `ssnas search` with a kill plan
def _arm(kind: str, value, name: str = "last.pt") -> None:
    """In the child only: SIGKILL this process at the planned point."""
    die = lambda: os.kill(os.getpid(), signal.SIGTERM if kind == "termstep" else signal.SIGKILL)  # noqa: E731
    if kind in ("step", "termstep"):
        weight_step = Trainer.weight_step

        def killing_weight_step(self, batch):
            out = weight_step(self, batch)
            if self.state["step"] == value:
                die()
            return out
        Trainer.weight_step = killing_weight_step
    elif kind == "save":
        replace, calls = os.replace, []

        def killing_replace(src, dst, *args, **kwargs):
            if Path(dst).name == name or (name == "*" and str(dst).endswith(".pt")):
                calls.append(dst)
                if len(calls) == value:
                    die()
            return replace(src, dst, *args, **kwargs)
        os.replace = killing_replace


def _child(argv, plan, log) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(fd, "w", buffering=1)  # not pytest's capture of the parent
    if plan and plan[0] not in EXTERNAL:
        _arm(*plan)
    sys.exit(main(argv))


def run_forked(argv, log, plan=None) -> tuple[int, float]:
    """(exit code, seconds) of ``ssnas <argv>`` in a forked process; -9 when it was SIGKILLed."""
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv, plan, str(log)))
    start = time.monotonic()
    proc.start()
    if plan and plan[0] in EXTERNAL:
        proc.join(plan[1])
        if proc.exitcode is None:
            os.kill(proc.pid, EXTERNAL[plan[0]])
    proc.join()
    return proc.exitcode, time.monotonic() - start


def kill_plans(rng: random.Random, kills: int, reference_s: float) -> list:
    """``kills`` seeded kill points: increasing steps, checkpoint writes and wall-clock times."""
    steps = sorted(rng.randrange(1, TOTAL_STEPS) for _ in range(kills))
    plans = []
    for i, step in enumerate(steps):
        kind = ("step", "save", "time")[i % 3]
        if kind == "step":
            plans.append(("step", step))
        elif kind == "save":
            plans.append(("save", rng.randint(1, 2)))
        else:
            plans.append(("time", rng.uniform(0.1, 0.6) * reference_s))
    return plans


def kill_and_resume(root, out, plans, log) -> dict:
    """Run the plans one after the other (each a resumed process), then resume until the run is done."""
    counts = {"killed": 0, "terminated": 0, "finished_early": 0, "rounds": 0}
    for plan in plans:
        code, _ = run_forked(search_argv(root, out), log, plan)
        counts["rounds"] += 1
        if code in STOPPED:
            counts[STOPPED[code]] += 1
            assert not (out / "summary.json").exists() or plan[0] in EXTERNAL
        else:
            assert code == 0, f"{plan}: exit {code}\n{Path(log).read_text()[-2000:]}"
            counts["finished_early"] += 1
            break
    if not (out / "summary.json").exists():
        code, _ = run_forked(search_argv(root, out), log)
        counts["rounds"] += 1
        assert code == 0, Path(log).read_text()[-2000:]
    return counts


# ---------------------------------------------------------------- comparing two runs
def assert_identical(a, b, where="") -> None:
    """Nested dicts/lists of tensors and plain values are equal bitwise (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) - VOLATILE == set(b) - VOLATILE, where
        for k in set(a) - VOLATILE:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(out: Path, ref: Path) -> None:
    """last.pt (weights, α, β, BN buffers, optimizers, progress, streams, RNG), summary and metrics."""
    a, b = load_checkpoint(out / "checkpoints" / "last.pt"), load_checkpoint(ref / "checkpoints" / "last.pt")
    assert_identical(a["model"], b["model"], "model")
    assert_identical(a["train"], b["train"], "train")
    assert_identical(json.loads((out / "summary.json").read_text()),
                     json.loads((ref / "summary.json").read_text()), "summary")
    assert_identical(read_metrics(out / "metrics.jsonl"), read_metrics(ref / "metrics.jsonl"), "metrics")
    assert not list(out.rglob("*.tmp")), "a temp file of an interrupted checkpoint write was left behind"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from ssnas.data.demo import make_demo_dataset
    root = tmp_path_factory.mktemp("data") / "demo"
    make_demo_dataset(root, seed=0, n_train=8, n_val=4, size=(64, 128))
    return root


@pytest.fixture(scope="module")
def reference(demo_root, tmp_path_factory):
    """An uninterrupted run and its wall time."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    code, seconds = run_forked(search_argv(demo_root, out), out.parent / "reference.log")
    assert code == 0, (out.parent / "reference.log").read_text()[-2000:]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["train"]["state"]["step"] == TOTAL_STEPS
    return out, seconds


def test_sigkill_at_random_points_then_resume_is_bitwise_exact(demo_root, reference, tmp_path):
    ref, ref_seconds = reference
    plans = kill_plans(random.Random(SEED), 4, ref_seconds)
    counts = kill_and_resume(demo_root, tmp_path / "run", plans, tmp_path / "run.log")
    assert counts["killed"] >= 3, (plans, counts)
    assert_same_run(tmp_path / "run", ref)


def test_kill_inside_a_checkpoint_write_keeps_the_previous_checkpoint(demo_root, tmp_path):
    out = tmp_path / "run"
    # killed in epoch 2: last.pt holds epoch 1; the resumed process dies in its first write (epoch 2's)
    code, _ = run_forked(search_argv(demo_root, out), tmp_path / "a.log", ("step", ITERS + 1))
    assert code == -signal.SIGKILL
    before = (out / "checkpoints" / "last.pt").read_bytes()
    code, _ = run_forked(search_argv(demo_root, out), tmp_path / "b.log", ("save", 1, "*"))
    assert code == -signal.SIGKILL
    assert list((out / "checkpoints").glob(".*.tmp")), "the kill did land between the write and the rename"
    assert (out / "checkpoints" / "last.pt").read_bytes() == before  # old checkpoint intact
    assert load_checkpoint(out / "checkpoints" / "last.pt")["train"]["state"]["step"] == ITERS


# ---------------------------------------------------------------- SIGTERM and the lock, with the real CLI
def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_sigterm_checkpoints_mid_epoch_exits_143_and_resumes_exactly(demo_root, reference, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "ssnas", *search_argv(demo_root, out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out / "config.yaml", proc)  # the folder is prepared and locked; no step has run yet
        # (c) a second run on the same folder is refused at once, with one line
        code, _ = run_forked(search_argv(demo_root, out), tmp_path / "second.log")
        second = (tmp_path / "second.log").read_text().strip()
        assert code == 2 and second.startswith("ssnas: error:") and len(second.splitlines()) == 1
        assert "another ssnas run is using this folder" in second
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=START_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "SIGTERM: checkpoint written" in stdout + stderr and "Traceback" not in stderr
    state = load_checkpoint(out / "checkpoints" / "last.pt")["train"]["state"]
    assert state["epoch"] == 0 and 0 < state["iter"] < ITERS  # mid-epoch
    assert not (out / "summary.json").exists()
    code, _ = run_forked(search_argv(demo_root, out), tmp_path / "resume.log")
    assert code == 0
    assert_same_run(out, reference[0])


def test_sigterm_in_an_epochs_last_step_stops_after_the_epoch(demo_root, reference, tmp_path):
    out = tmp_path / "run"
    code, _ = run_forked(search_argv(demo_root, out), tmp_path / "a.log", ("termstep", ITERS - 1))
    assert code == TERMINATED, (tmp_path / "a.log").read_text()[-2000:]
    state = load_checkpoint(out / "checkpoints" / "last.pt")["train"]["state"]
    assert (state["epoch"], state["iter"], state["step"]) == (1, 0, ITERS)  # epoch 1 done and logged
    assert len(read_metrics(out / "metrics.jsonl")) == 1
    code, _ = run_forked(search_argv(demo_root, out), tmp_path / "b.log")
    assert code == 0, (tmp_path / "b.log").read_text()[-2000:]
    assert_same_run(out, reference[0])

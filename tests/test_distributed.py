"""Two CPU processes (gloo) compute exactly what one process computes with the doubled batch.

The processes are forked from the test process (torch is already imported, so a rank starts in
milliseconds) and join a gloo group through the same environment variables torchrun sets. The demo data
has ignore pixels in different numbers per image, so per-rank cross-entropy means would differ from the
global mean: the task's loss divides the summed loss by the global count of valid pixels, and this test
would fail without that.
"""
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch._inductor.config  # noqa: F401  (warm imports: run.deterministic imports it, forks inherit it)
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import ssnas.engine.plots  # noqa: F401  (warm import of matplotlib for the forked runs)
from ssnas.config import load_config
from ssnas.engine.checkpoint import load_checkpoint
from ssnas.engine.distributed import GlobalBatchNorm2d
from ssnas.tasks.segmentation import SegmentationTask
from ssnas.engine.trainer import Trainer

WORLD = 2
PER_RANK_BATCH = 2
SEARCH_ITERS = 3          # 8 train images / global batch 4 = 2 batches per pass: the 3rd starts a new pass
WEIGHT_TOLERANCE = 1e-9   # float64 sums in another order (per-rank partial sums, then all-reduce): ~1e-15
LOSS_TOLERANCE = 1e-6     # the engine computes the loss on float32 logits (for AMP)
ARCH_MOVED = 1e-3         # the arch steps move alpha and beta by more than this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world, port, fn, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    fn(rank, world, *args)


def spawn(fn, world, *args):
    """Run ``fn(rank, world, *args)`` in ``world`` forked processes joined as a torch.distributed group."""
    mp.start_processes(_entry, args=(world, free_port(), fn, args), nprocs=world, start_method="fork")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from ssnas.data.demo import make_demo_dataset
    root = tmp_path_factory.mktemp("data") / "demo"
    make_demo_dataset(root, seed=0, n_train=8, n_val=4, size=(64, 128))
    return root


# ---------------------------------------------------------------- GlobalBatchNorm2d
def _bn_worker(rank, world, out):
    dist.init_process_group("gloo")
    x, gy, weight, bias = torch.load(out / "inputs.pt")
    bn = GlobalBatchNorm2d(x.shape[1]).double()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    n = x.shape[0] // world
    part = x[rank * n:(rank + 1) * n].clone().requires_grad_()
    for _ in range(2):  # two steps, so the running statistics' momentum is exercised
        y = bn(part)
    (y * gy[rank * n:(rank + 1) * n]).sum().backward()  # this rank's share of the global loss
    torch.save({"y": y.detach(), "gx": part.grad, "gw": bn.weight.grad, "gb": bn.bias.grad,
                "rm": bn.running_mean, "rv": bn.running_var, "nbt": bn.num_batches_tracked},
               out / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_global_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(6, 4, 5, 7, generator=g, dtype=torch.float64) + 1
    gy = torch.randn(x.shape, generator=g, dtype=torch.float64)
    weight, bias = torch.rand(4, generator=g, dtype=torch.float64) + 0.5, torch.randn(4, generator=g,
                                                                                       dtype=torch.float64)
    torch.save((x, gy, weight, bias), tmp_path / "inputs.pt")
    spawn(_bn_worker, WORLD, tmp_path)

    ref = nn.BatchNorm2d(4).double()
    with torch.no_grad():
        ref.weight.copy_(weight)
        ref.bias.copy_(bias)
    xr = x.clone().requires_grad_()
    for _ in range(2):
        y = ref(xr)
    (y * gy).sum().backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    tol = dict(rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), **tol)
    torch.testing.assert_close(torch.cat([r["gx"] for r in ranks]), xr.grad, **tol)
    torch.testing.assert_close(sum(r["gw"] for r in ranks), ref.weight.grad, **tol)  # DDP sums these
    torch.testing.assert_close(sum(r["gb"] for r in ranks), ref.bias.grad, **tol)
    for r in ranks:  # every rank tracks the global statistics (unbiased variance over all 6 images)
        torch.testing.assert_close(r["rm"], ref.running_mean, **tol)
        torch.testing.assert_close(r["rv"], ref.running_var, **tol)
        assert int(r["nbt"]) == int(ref.num_batches_tracked) == 2
    assert not torch.allclose(ranks[0]["y"], nn.functional.batch_norm(  # per-rank BN would differ
        x[:3], None, None, weight, bias, training=True), atol=1e-3)


# ---------------------------------------------------------------- a search under DDP
def _search_cfg(root, batch_size):
    return load_config("smoke", [
        f"data.root={root}", f"data.batch_size={batch_size}", "protocol.epochs=1", "protocol.warmup=0",
        "protocol.search=1", "protocol.finetune=0", "protocol.entropy_start=0",
        f"protocol.iters_per_epoch={SEARCH_ITERS}", "arch_optim.lr=0.05", "run.tensorboard=false",
        "run.deterministic=true"])


class Float64Task(SegmentationTask):
    """The segmentation task on a float64 supernet, so the comparison is not lost in float32 rounding.

    In float32 the weights agree to ~1e-5, but Adam divides each α, β gradient by its own magnitude, so
    components whose gradient is near zero amplify the rounding of the reduction order (~1e-3 here)."""

    def build_model(self):
        torch.set_default_dtype(torch.float64)  # a worker process's own setting: BN swaps stay float64
        model = super().build_model()
        model.register_forward_pre_hook(lambda module, args: (args[0].double(), *args[1:]))
        return model


def _search_worker(rank, world, root, out, dumps):
    writes, prefix = [], str(out)

    def audit(event, args):  # every file this process opens for writing, or creates, in the run folder
        if event == "open" and isinstance(args[0], (str, Path)) and str(args[0]).startswith(prefix):
            mode, flags = args[1], args[2]
            if (mode and set(mode) & set("wax+")) or (flags and flags & (os.O_WRONLY | os.O_RDWR)):
                writes.append(str(args[0]))
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove") and str(args[0]).startswith(prefix):
            writes.append(f"{event} {args[0]}")

    def dump(trainer, epoch, record):
        torch.save({"model": trainer.model.state_dict(), "record": record}, dumps / f"world{world}_rank{rank}.pt")

    sys.addaudithook(audit)
    cfg = _search_cfg(root, PER_RANK_BATCH * WORLD // world)
    Trainer(cfg, out, task=Float64Task(cfg), hooks=[dump]).run()
    torch.save(writes, dumps / f"writes_world{world}_rank{rank}.pt")


@pytest.fixture(scope="module")
def ddp_runs(demo_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    spawn(_search_worker, 1, demo_root, base / "one", base)
    spawn(_search_worker, WORLD, demo_root, base / "two", base)
    return base


def test_ddp_search_steps_equal_one_process_with_the_doubled_batch(ddp_runs):
    one = torch.load(ddp_runs / "world1_rank0.pt")
    ranks = [torch.load(ddp_runs / f"world{WORLD}_rank{r}.pt") for r in range(WORLD)]
    for key, value in ranks[0]["model"].items():  # weights, alpha, beta and BN buffers
        assert torch.equal(value, ranks[1]["model"][key]), key  # identical on both ranks
    moved = 0
    for key, ref in one["model"].items():
        got = ranks[0]["model"][key]
        if ref.is_floating_point():
            torch.testing.assert_close(got, ref, rtol=0, atol=WEIGHT_TOLERANCE, msg=key)
        else:
            assert torch.equal(got, ref), key
    initial = _initial_arch(ddp_runs)
    for key in ("alpha", "beta"):
        moved += int((one["model"][key] - initial[key]).abs().max() > ARCH_MOVED)
    assert moved == 2
    for key in ("loss_w", "loss_a", "entropy_loss"):  # the global means of the same batches
        assert ranks[0]["record"][key] == pytest.approx(one["record"][key], abs=LOSS_TOLERANCE), key
        assert ranks[0]["record"][key] == ranks[1]["record"][key], key


def _float64_model(cfg):
    """(task, its float64 supernet) in this process, leaving the default dtype as it was."""
    from ssnas.engine.trainer import seed_everything
    task, dtype = Float64Task(cfg), torch.get_default_dtype()
    seed_everything(cfg.seed)
    try:
        return task, task.build_model()
    finally:
        torch.set_default_dtype(dtype)


def _initial_arch(base):
    _, model = _float64_model(load_config(base / "one" / "config.yaml"))
    return {"alpha": model.alpha.detach(), "beta": model.beta.detach()}


def test_ddp_metrics_are_reduced_over_ranks(ddp_runs, demo_root):
    ranks = [torch.load(ddp_runs / f"world{WORLD}_rank{r}.pt") for r in range(WORLD)]
    task, model = _float64_model(_search_cfg(demo_root, PER_RANK_BATCH * WORLD))
    model.load_state_dict(ranks[0]["model"])
    alone = task.evaluate(model)  # one process, all 4 validation images, the DDP run's final weights
    for r in ranks:  # each rank evaluated 2 images; the summed confusion matrix gives the global metric
        assert r["record"]["miou"] == alone["miou"]
        assert r["record"]["per_class_iou"] == pytest.approx(alone["per_class_iou"], abs=0, nan_ok=True)
        assert r["record"]["pixel_acc"] == alone["pixel_acc"]


def test_only_rank_0_writes_files(ddp_runs):
    writes = [torch.load(ddp_runs / f"writes_world{WORLD}_rank{r}.pt") for r in range(WORLD)]
    assert writes[1] == []
    written = {Path(w.split()[-1]).name for w in writes[0]}
    assert {"config.yaml", "metrics.jsonl", "summary.json", ".lock"} <= written  # the audit does see writes
    out = ddp_runs / "two"
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "summary.json").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # one epoch, logged once


# ---------------------------------------------------------------- SIGTERM under DDP, then resume
# Only a hang (a collective one rank never joins) should reach this: ~15 s on a quiet 2-core machine, but it
# once took over 120 s beside two nice -5 trainings (each rank then gets ~1/4 of a core), so the margin is wide.
STOP_TIMEOUT_S = 300


def _resumable_worker(rank, world, root, out, dumps):
    cfg = _search_cfg(root, PER_RANK_BATCH)
    summary = Trainer(cfg, out, task=Float64Task(cfg), resume=True).run()
    torch.save(summary.get("exit_code", 0), dumps / f"exit_rank{rank}.pt")


def test_sigterm_to_one_rank_stops_both_at_the_same_step_and_resume_is_exact(ddp_runs, demo_root, tmp_path):
    out = tmp_path / "run"
    ctx = mp.start_processes(_entry, args=(WORLD, free_port(), _resumable_worker, (demo_root, out, tmp_path)),
                             nprocs=WORLD, start_method="fork", join=False)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    try:
        while not (out / "config.yaml").exists():  # rank 0 prepared the folder: both ranks are in the group
            assert time.monotonic() < deadline and all(p.is_alive() for p in ctx.processes)
            time.sleep(0.02)
        os.kill(ctx.processes[1].pid, signal.SIGTERM)  # as if only rank 1's node were being drained
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, "the ranks did not stop together (a collective mismatch hangs)"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    assert [torch.load(tmp_path / f"exit_rank{r}.pt") for r in range(WORLD)] == [143, 143]
    state = load_checkpoint(out / "checkpoints" / "last.pt")["train"]["state"]
    assert state["epoch"] == 0 and 0 < state["iter"] < SEARCH_ITERS  # mid-epoch, one checkpoint for both
    spawn(_resumable_worker, WORLD, demo_root, out, tmp_path)
    assert [torch.load(tmp_path / f"exit_rank{r}.pt") for r in range(WORLD)] == [0, 0]
    resumed = load_checkpoint(out / "checkpoints" / "last.pt")
    uninterrupted = load_checkpoint(ddp_runs / "two" / "checkpoints" / "last.pt")
    for key, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for name in ("optim_w", "optim_a"):  # momentum and Adam moments too
        for index, values in uninterrupted["train"][name]["state"].items():
            for key, value in values.items():
                assert torch.equal(resumed["train"][name]["state"][index][key], value), (name, index, key)

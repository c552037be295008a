"""Training-step throughput: the engine's weight step + architecture step, per variant, crop and batch.

One run measures, with the same thread count:
- the machine's fp32 matmul GFLOP/s (2048² @ 2048²), the yardstick;
- per variant × crop × batch: one *iteration* of the search phase through the real ``Trainer`` methods
  (``weight_step`` on a batch from A, then ``arch_step`` on a batch from B, entropy term on), as images/s
  (images of the weight step per second), forward FLOPs per image (``ssnas.space.profile`` on the meta
  device: 2 × multiply-adds, Table 3's convention), achieved GFLOP/s and its ratio to the matmul figure,
  and the peak memory of one iteration;
- the data pipeline's images/s at the same crops (``bench_data.measure_pipeline``, decode + augment).

FLOP convention for "achieved": each of the two steps counts forward + backward = 3 × forward FLOPs, so an
iteration of batch B counts 2 × 3 × B × F_forward. The architecture step skips the weights' gradients, so
this flatters it a little; it is the common convention and keeps figures comparable across variants.

    .venv/bin/python bench/bench_train.py --threads 1 --variants tiny mini small --sizes 128x256 256x512
    .venv/bin/python bench/bench_train.py --threads 1 --compare          # before/after of each hot-path change
    .venv/bin/python bench/bench_train.py --threads 1 --profile --variants small --sizes 128x256
    .venv/bin/python bench/bench_train.py --ab /tmp/ssnas-base --threads 1 2 --variants small --sizes 256x512

``--ab DIR`` times this checkout (B) against another checkout of the repository (A, e.g. ``git archive <commit> |
tar -x -C DIR``) side by side: one worker process per checkout (each importing its own ``src/``), driven
alternately A B A B iteration by iteration, so load drifts hit both equally; it also compares the two
checkouts' losses over the first iterations (same seed, same batches).
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ssnas.cost.units import parse_size
from ssnas.config import load_config
from ssnas.engine.streams import BatchStream
try:
    from ssnas.tasks.segmentation import SegmentationTask
except ImportError:   # a checkout before the task registry (--ab against d72ebf1): the task lived in the engine
    from ssnas.engine.task import SegmentationTask
from ssnas.engine.trainer import Trainer
from ssnas.space import create_model
from ssnas.space.profile import profile

MATMUL_SIZE = 2048
MATMUL_REPS = 5
NUM_CLASSES = 19            # Cityscapes
IGNORE_INDEX = 255
SYNTHETIC_IMAGES = 4        # per stream; batches cycle over them (data are not what is measured)
ENTROPY_C = 0.01            # entropy term on, so the architecture step is the one of the search phase
STEPS_PER_ITERATION = 2     # weight step + architecture step
FLOPS_PER_STEP = 3          # forward + backward = 3 × forward
TARGET_MATMUL_SHARE = 0.25
TARGET_OUTSIDE_ATEN = 0.10
DATA_FRAMES = 4             # full-size frames generated for the pipeline measurement
# glibc keeps freed large blocks resident, which would hide one iteration's peak behind the warm-up's pages
# (the same settings as bench_scaling.py). They make every large allocation a fresh mmap with page faults
# (a 6.7 s instead of 2 s iteration for small at 128x256), so memory is measured in a child process with
# them, and time in this process without them.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


# ---------------------------------------------------------------------- yardstick
def matmul_gflops(size: int = MATMUL_SIZE, reps: int = MATMUL_REPS, device: str = "cpu") -> float:
    """fp32 GFLOP/s of a size² @ size² matmul (2·size³ FLOPs), median of ``reps`` after one warm-up."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    times = []
    for r in range(reps + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        if r:
            times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------- the engine on synthetic data
class _Images(torch.utils.data.Dataset):
    """Random normalized images and labels held in memory: the step is measured, not the data."""

    def __init__(self, n: int, crop, seed: int, classes: int = NUM_CLASSES):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, *crop, generator=g)
        self.labels = torch.randint(0, classes, (n, *crop), generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i]}


class SyntheticTask(SegmentationTask):
    """The segmentation task of ``tasks/segmentation.py`` (its loss) over in-memory random data (19 classes
    unless told: the demo datasets have 9)."""

    def __init__(self, cfg, variant: str, crop, batch_size: int, seed: int = 0, classes: int = NUM_CLASSES):
        super().__init__(cfg)
        self.variant, self.crop, self.batch_size, self.seed = variant, tuple(crop), batch_size, seed
        self.num_classes = classes

    def build_model(self):
        return create_model(self.variant, num_classes=self.num_classes)

    def build_streams(self, rank: int = 0, world: int = 1) -> dict:
        n = max(SYNTHETIC_IMAGES, self.batch_size)
        images = functools.partial(_Images, n, self.crop, classes=self.num_classes)
        a = BatchStream(images(self.seed), range(n), self.batch_size, self.seed, "A", 0, rank, world)
        b = BatchStream(images(self.seed + 1), range(n), self.batch_size, self.seed, "B", 0, rank, world)
        return {"a": a, "b": b, "finetune": a}

    def augment(self, batch: dict, device) -> dict:
        """No augmentation: the batches are the same in every checkout (``--ab`` compares their losses; a
        checkout before device augmentation, such as d72ebf1, never augments them)."""
        return batch

    def evaluate(self, model, rank: int = 0, world: int = 1, **kwargs) -> dict:
        return {"score": 0.0}

    def describe(self) -> dict:
        return {}


def make_trainer(variant: str, crop, batch_size: int, out_dir, device: str = "cpu", threads: int | None = None,
                 classes: int = NUM_CLASSES, **run) -> Trainer:
    """A set-up ``Trainer`` of the search phase on synthetic data; ``run`` overrides ``run.*`` keys
    (amp, compile, channels_last). Call ``trainer.run_dir.unlock()`` when done."""
    cfg = load_config(None, {
        "model": {"variant": variant},
        "data": {"crop_size": list(crop), "batch_size": batch_size, "workers": 0, "ignore_index": IGNORE_INDEX},
        "protocol": {"epochs": 1, "warmup": 0.0, "search": 1.0, "finetune": 0.0, "entropy_start": 0.0},
        "entropy": {"c_alpha": ENTROPY_C, "c_beta": ENTROPY_C},
        "run": {"device": device, "threads": threads, "tensorboard": False, "progress": False, **run},
    })
    trainer = Trainer(cfg, out_dir, task=SyntheticTask(cfg, variant, crop, batch_size, cfg.seed, classes))
    trainer._setup()
    return trainer


def iteration_fn(trainer: Trainer):
    """One search-phase iteration, as the engine's loop runs it: weight step on A, architecture step on B."""
    batch_a = trainer._to_device(trainer.streams["a"].next())
    batch_b = trainer._to_device(trainer.streams["b"].next())

    def iteration():
        trainer.weight_step(batch_a)
        trainer.arch_step(batch_b, 1.0)
        _sync(trainer.device)
    return iteration


def time_median(fn, steps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------------- memory
def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def peak_memory_mib(fn, device) -> float | None:
    """Peak memory of one call of ``fn`` above what was in use before it: CUDA allocator peak, or on CPU
    the rise of VmHWM (reset through /proc/self/clear_refs); None where neither is available."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        return (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    try:
        Path("/proc/self/clear_refs").write_text("5")   # VmHWM := current RSS
        before = _status_kb("VmRSS")
        fn()
        return (_status_kb("VmHWM") - before) / 1024
    except OSError:
        return None


def peak_memory_child(variant: str, crop, batch_size: int, device: str, threads, **run) -> float | None:
    """``peak_memory_mib`` of one iteration after a warm-up one, in a child process with MALLOC_ENV."""
    import json
    import subprocess

    spec = json.dumps({"variant": variant, "crop": list(crop), "batch_size": batch_size, "device": device,
                       "threads": threads, **run})
    out = subprocess.run([sys.executable, __file__, "--memory-child", spec], capture_output=True, text=True,
                         env={**os.environ, **MALLOC_ENV}, check=True).stdout
    value = json.loads(out.strip().splitlines()[-1])
    return value


def _memory_child(spec: str) -> None:
    import json

    s = json.loads(spec)
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    with tempfile.TemporaryDirectory(prefix="ssnas-bench-mem-") as tmp:
        trainer = make_trainer(s.pop("variant"), s.pop("crop"), s.pop("batch_size"), Path(tmp) / "run", **s)
        try:
            fn = iteration_fn(trainer)
            fn()
            print(json.dumps(peak_memory_mib(fn, trainer.device)))
        finally:
            trainer.run_dir.unlock()


def forward_flops(variant: str, crop) -> int:
    """Forward FLOPs of one image (2 × MACs), counted on the meta device."""
    with torch.device("meta"):
        model = create_model(variant, num_classes=NUM_CLASSES)
    return profile(model, tuple(crop))["flops"]


# ---------------------------------------------------------------------- the table
def measure(variant: str, crop, batch_size: int, steps: int, device: str, threads, matmul: float, tmp: Path,
            **run) -> dict:
    trainer = make_trainer(variant, crop, batch_size, tmp / f"{variant}_{crop[0]}x{crop[1]}_{batch_size}",
                           device, threads, **run)
    try:
        seconds = time_median(iteration_fn(trainer), steps)
    finally:
        trainer.run_dir.unlock()
    peak = peak_memory_child(variant, crop, batch_size, device, threads, **run)
    flops = forward_flops(variant, crop)
    achieved = STEPS_PER_ITERATION * FLOPS_PER_STEP * batch_size * flops / seconds / 1e9
    return {"variant": variant, "crop": tuple(crop), "batch": batch_size, "iteration_s": seconds,
            "images_per_s": batch_size / seconds, "gflops_per_image": flops / 1e9, "achieved_gflops": achieved,
            "matmul_share": achieved / matmul, "peak_mib": peak}


HEADER = ("variant", "crop", "batch", "s/iter", "img/s", "GFLOP/img", "GFLOP/s", "of matmul", "peak MiB")


def _cells(r: dict) -> list[str]:
    peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
    return [r["variant"], f"{r['crop'][0]}x{r['crop'][1]}", str(r["batch"]), f"{r['iteration_s']:.3f}",
            f"{r['images_per_s']:.2f}", f"{r['gflops_per_image']:.2f}", f"{r['achieved_gflops']:.2f}",
            f"{100 * r['matmul_share']:.1f}%", peak]


def print_table(rows: list[dict], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for r in rows:
            print("| " + " | ".join(_cells(r)) + " |")
        return
    print("".join(f"{h:>11}" for h in HEADER))
    for r in rows:
        print("".join(f"{c:>11}" for c in _cells(r)))


def data_pipeline(crops, batch_size: int, frames: int) -> dict:
    """Images/s of the real training data pipeline (decode full-size PNG frames + augment) per crop."""
    from bench_data import make_full_size_tree, measure_pipeline   # bench/ is on sys.path as the script's dir

    out = {}
    with tempfile.TemporaryDirectory(prefix="ssnas-bench-train-") as tmp:
        root = make_full_size_tree(Path(tmp), frames)
        for crop in crops:
            out[tuple(crop)] = measure_pipeline(root, workers=0, batch_size=batch_size, batches=2,
                                                crop_size=tuple(crop))["end_to_end_images_per_s"]  # + augment
    return out


# ---------------------------------------------------------------------- main
def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["tiny", "mini", "small"])
    p.add_argument("--sizes", nargs="+", default=["128x256", "256x512"])
    p.add_argument("--batches", nargs="+", type=int, default=[2])
    p.add_argument("--steps", type=int, default=3, help="timed iterations per row (median)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 while the machine is loaded)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-data", action="store_true", help="skip the data pipeline measurement")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--compare", action="store_true", help="before/after of each hot-path change, interleaved")
    p.add_argument("--profile", action="store_true", help="top ops of one iteration (first variant and size)")
    p.add_argument("--ab", metavar="DIR", help="side by side against the checkout in DIR (A = DIR, B = this one)")
    p.add_argument("--ab-threads", nargs="+", type=int, default=[1, 2], help="thread counts of --ab")
    p.add_argument("--pairs", type=int, default=AB_PAIRS, help="timed A/B pairs of --ab")
    p.add_argument("--classes", type=int, default=NUM_CLASSES, help="classes of --ab's synthetic task (demo data: 9)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--ab-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    if args.ab_worker:
        _ab_worker(args.ab_worker)
        return
    if args.ab:
        sizes = [parse_size(s) for s in args.sizes]
        print(f"A = {args.ab}, B = {Path(__file__).resolve().parent.parent}; loadavg {_load()}")
        for threads in args.ab_threads:
            ab_compare(Path(args.ab), args.variants[0], sizes[0], args.batches[0], args.pairs, threads, args.classes)
        print(f"loadavg after {_load()}")
        return
    torch.set_num_threads(args.threads)
    sizes = [parse_size(s) for s in args.sizes]
    run = {"amp": args.amp, "compile": args.compile}
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}, amp {args.amp}, "
          f"compile {args.compile}; loadavg {_load()}")
    with tempfile.TemporaryDirectory(prefix="ssnas-bench-train-") as tmp:
        if args.compare:
            compare(args.variants[0], sizes[0], args.batches[0], args.steps, args.device, args.threads, Path(tmp),
                    args.compile)
            return
        if args.profile:
            run_profile(args.variants[0], sizes[0], args.batches[0], args.device, args.threads, Path(tmp), **run)
            return
        matmul = matmul_gflops(device=args.device)
        print(f"matmul {MATMUL_SIZE}² fp32: {matmul:.1f} GFLOP/s")
        rows = []
        for variant in args.variants:
            for crop in sizes:
                for b in args.batches:
                    rows.append(measure(variant, crop, b, args.steps, args.device, args.threads, matmul, Path(tmp),
                                        **run))
                    if not args.markdown:
                        print("  " + " ".join(_cells(rows[-1])), flush=True)
    print_table(rows, args.markdown)
    if not args.no_data:
        pipe = data_pipeline(sizes, max(args.batches), DATA_FRAMES)
        best = {c: max(r["images_per_s"] for r in rows if r["crop"] == c) for c in pipe}
        for crop, ips in pipe.items():
            print(f"data pipeline {crop[0]}x{crop[1]} (main process: decode 1024x2048 PNG, then augment on the CPU): "
                  f"{ips:.2f} img/s vs fastest model row {best[crop]:.2f} img/s")
    small = [r for r in rows if r["variant"] == "small"]
    if small:
        best = max(small, key=lambda r: r["matmul_share"])
        verdict = "met" if best["matmul_share"] >= TARGET_MATMUL_SHARE else \
            f"missed by {100 * (TARGET_MATMUL_SHARE - best['matmul_share']):.1f} points"
        print(f"small: best {100 * best['matmul_share']:.1f}% of matmul (target >= "
              f"{100 * TARGET_MATMUL_SHARE:.0f}%: {verdict})")
    print(f"loadavg after {_load()}")


COMPARED = {                     # run.* settings against the defaults (channels_last, fp32, eager)
    "default": {},
    "channels_last=false": {"channels_last": False},
    "amp=bf16": {"amp": "bf16"},
    "compile=true": {"compile": True},
}


def compare(variant: str, crop, batch_size: int, steps: int, device: str, threads, tmp: Path,
            with_compile: bool) -> None:
    """Seconds per iteration of each COMPARED setting, interleaved round by round in this one process (the
    machine's load drifts; interleaving gives every setting the same share of it)."""
    names = [n for n in COMPARED if with_compile or "compile" not in n]
    trainers = {n: make_trainer(variant, crop, batch_size, tmp / n.replace("=", "_"), device, threads, **COMPARED[n])
                for n in names}
    try:
        fns = {n: iteration_fn(t) for n, t in trainers.items()}
        for fn in fns.values():      # warm-up (and compilation)
            fn()
        times = {n: [] for n in names}
        for _ in range(steps):
            for n, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - start)
    finally:
        for t in trainers.values():
            t.run_dir.unlock()
    base = statistics.median(times["default"])
    print(f"{variant} {crop[0]}x{crop[1]} batch {batch_size}, median of {steps} interleaved iterations:")
    for n in names:
        m = statistics.median(times[n])
        print(f"  {n:<22}{m:>8.3f} s/iter  {m / base:>6.2f}x default  (min {min(times[n]):.3f}, "
              f"max {max(times[n]):.3f})")


# ---------------------------------------------------------------------- side by side with another checkout
AB_PAIRS = 8                 # timed A/B pairs per thread count (median ratio and spread)
AB_LOSS_ITERS = 10           # iterations whose losses are compared (the first ones, warm-up included)
AB_LOSS_RTOL = 1e-5          # the largest relative loss difference accepted between the two checkouts
AB_MARK = "AB-RESULT "       # worker output lines carrying results (anything else is passed through)


def _ab_worker(spec: str) -> None:
    """One checkout's side of --ab: builds the search-phase trainer, then runs one iteration per ``next`` line
    on stdin (fresh batches from A and B each time, as the engine's loop draws them) and answers with its
    seconds and losses. Uses only APIs the baseline checkout has too."""
    import json

    s = json.loads(spec)
    torch.set_num_threads(s["threads"])
    import ssnas
    with tempfile.TemporaryDirectory(prefix="ssnas-bench-ab-") as tmp:
        trainer = make_trainer(s["variant"], s["crop"], s["batch_size"], Path(tmp) / "run", threads=s["threads"],
                               classes=s.get("classes", NUM_CLASSES))
        try:
            print(AB_MARK + json.dumps({"ready": str(Path(ssnas.__file__).parent)}), flush=True)
            for line in sys.stdin:
                if line.strip() != "next":
                    break
                batch_a = trainer._to_device(trainer.streams["a"].next())
                batch_b = trainer._to_device(trainer.streams["b"].next())
                start, cpu_start = time.perf_counter(), time.process_time()
                loss_w = trainer.weight_step(batch_a)
                out = trainer.arch_step(batch_b, 1.0)
                _sync(trainer.device)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
                print(AB_MARK + json.dumps({"s": seconds, "cpu_s": cpu, "losses": [loss_w, *(out or (None, None))]}),
                      flush=True)
        finally:
            trainer.run_dir.unlock()


class _Worker:
    def __init__(self, checkout: Path, spec: str):
        import subprocess

        env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--ab-worker", spec],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.where = self._read()["ready"]

    def _read(self) -> dict:
        import json

        for line in self.proc.stdout:
            if line.startswith(AB_MARK):
                return json.loads(line[len(AB_MARK):])
            print("   | " + line.rstrip())
        raise RuntimeError(f"bench worker exited with {self.proc.wait()}")

    def iteration(self) -> dict:
        self.proc.stdin.write("next\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def ab_compare(base: Path, variant: str, crop, batch_size: int, pairs: int, threads: int,
               classes: int = NUM_CLASSES) -> dict:
    """A (``base``) vs B (this checkout): ``AB_LOSS_ITERS`` iterations compared for losses, then ``pairs``
    timed pairs, alternating A B A B (only one worker runs at a time: the other waits on its stdin)."""
    import json

    spec = json.dumps({"variant": variant, "crop": list(crop), "batch_size": batch_size, "threads": threads,
                       "classes": classes})
    here = Path(__file__).resolve().parent.parent
    a, b = _Worker(base, spec), _Worker(here, spec)
    try:
        losses_a, losses_b, times_a, times_b, cpu_a, cpu_b = [], [], [], [], [], []
        for i in range(max(AB_LOSS_ITERS, pairs + 1)):
            ra, rb = a.iteration(), b.iteration()
            if i < AB_LOSS_ITERS:
                losses_a.append(ra["losses"])
                losses_b.append(rb["losses"])
            if i >= 1:     # the first iteration of each is a warm-up
                times_a.append(ra["s"])
                times_b.append(rb["s"])
                cpu_a.append(ra["cpu_s"])
                cpu_b.append(rb["cpu_s"])
    finally:
        a.close()
        b.close()
    per_iter = [max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(la, lb)) for la, lb in zip(losses_a, losses_b)]
    rel = max(per_iter)
    ratios = sorted(ta / tb for ta, tb in zip(times_a, times_b))
    cpu_ratios = sorted(ta / tb for ta, tb in zip(cpu_a, cpu_b))
    med = statistics.median(ratios)
    print(f"{variant} {crop[0]}x{crop[1]} batch {batch_size}, {classes} classes, {threads} thread(s), fp32; A = {a.where}, "
          f"B = {b.where}")
    print(f"  A s/iter median {statistics.median(times_a):.3f} (min {min(times_a):.3f}); B s/iter median "
          f"{statistics.median(times_b):.3f} (min {min(times_b):.3f}); {len(ratios)} interleaved pairs")
    print(f"  speed-up A/B per pair: median {med:.2f}x, spread {ratios[0]:.2f}-{ratios[-1]:.2f}x "
          f"(target >= 1.5x: {'met' if med >= 1.5 else 'missed'})")
    print(f"  CPU time (process_time, all threads): A median {statistics.median(cpu_a):.3f} s, B median "
          f"{statistics.median(cpu_b):.3f} s; A/B per pair: median {statistics.median(cpu_ratios):.2f}x, spread "
          f"{cpu_ratios[0]:.2f}-{cpu_ratios[-1]:.2f}x (less sensitive to other jobs than the wall time)")
    verdict = "equal" if rel <= AB_LOSS_RTOL else "DIFFERENT"
    print(f"  losses of the first {AB_LOSS_ITERS} iterations (weight, arch, entropy): largest relative difference "
          f"{rel:.2e} ({verdict}, tolerance {AB_LOSS_RTOL:g}); per iteration "
          + " ".join(f"{r:.0e}" for r in per_iter))
    return {"threads": threads, "ratio_median": med, "ratios": ratios, "cpu_ratios": cpu_ratios, "loss_rel": rel}


def run_profile(variant: str, crop, batch_size: int, device: str, threads, tmp: Path, **run) -> None:
    from bench_latency import profile_step

    trainer = make_trainer(variant, crop, batch_size, tmp / "profile", device, threads, **run)
    try:
        r = profile_step(iteration_fn(trainer), steps=2, row_limit=20)
    finally:
        trainer.run_dir.unlock()
    verdict = "met" if r["outside_aten_share"] <= TARGET_OUTSIDE_ATEN else \
        f"missed by {100 * (r['outside_aten_share'] - TARGET_OUTSIDE_ATEN):.1f} points"
    print(f"{variant} {crop[0]}x{crop[1]} batch {batch_size}, weight + architecture step: {r['wall_ms']:.0f} ms, "
          f"ATen self {r['aten_ms']:.0f} ms, outside ATen {100 * r['outside_aten_share']:.1f}% "
          f"(target <= {100 * TARGET_OUTSIDE_ATEN:.0f}%: {verdict})")
    for name, ms, calls in r["top"]:
        print(f"  {name:<60}{ms:>9.1f} ms{calls:>7} calls")


if __name__ == "__main__":
    main()

"""GPU training-step throughput of small and large at 512×1024 with bf16 autocast, and the projected time of
the paper's 600-epoch large run on this GPU next to its 5.5 V100-days.

Per variant: the largest per-GPU batch (powers of two up to 16) whose search-phase iteration fits in memory,
its images/s for the weight step alone (warmup and fine-tune phases) and for weight + architecture step
(search phase), and the peak memory. The paper trains with batch 16 over 4 GPUs and the engine has no gradient
accumulation, so batch 16 needs ceil(16 / largest batch) GPUs (DDP).

Projection (paper §4.1): 600 epochs × 2,975 images; the search phase (35% of epochs) costs the second
forward/backward of the architecture step per iteration; 5% warmup + 60% fine-tune run the weight step only.

    bash bench/gpu.sh          # or: .venv/bin/python bench/bench_gpu.py --variants small large

Every run writes its raw output to ``bench/results/gpu-<UTC time>-<device>.json`` (device name, capability,
torch / CUDA / cuDNN versions, the command, start and end timestamps, the ssnas commit, and every measured
figure), so a figure quoted in docs/benchmarks.md can be checked against the file committed next to it.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_train import (forward_flops, iteration_fn, make_trainer, matmul_gflops, peak_memory_mib,
                         time_median)

CROP = (512, 1024)
BATCHES = (16, 8, 4, 2, 1)
PAPER_BATCH = 16
EPOCHS = 600
TRAIN_IMAGES = 2975            # Cityscapes fine train split
SEARCH_SHARE = 0.35            # of epochs; warmup 0.05 + fine-tune 0.60 are weight steps only
PAPER_GPU_DAYS = 5.5           # 1.4 days × 4 V100 (Table 6)
STEPS = 5
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=Path(__file__).resolve().parent,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def write_raw(raw: dict, results_dir: Path = RESULTS_DIR) -> Path:
    """The run's raw output as JSON under ``results_dir``; the file name says when and on what it ran."""
    results_dir.mkdir(parents=True, exist_ok=True)
    device = re.sub(r"[^A-Za-z0-9]+", "-", raw["device"]["name"]).strip("-").lower()
    path = results_dir / f"gpu-{raw['started'].replace(':', '')}-{device}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    tmp.replace(path)
    return path


def weight_only_fn(trainer):
    batch = trainer._to_device(trainer.streams["a"].next())

    def step():
        trainer.weight_step(batch)
        torch.cuda.synchronize()
    return step


def try_batch(variant: str, batch: int, amp: str, tmp: Path) -> dict | None:
    """Seconds per weight step and per search iteration and peak MiB at ``batch``; None if out of memory."""
    trainer = None
    try:
        trainer = make_trainer(variant, CROP, batch, tmp / f"{variant}_{batch}", "cuda", amp=amp)
        search = iteration_fn(trainer)
        peak = peak_memory_mib(search, "cuda")
        search_s = time_median(search, STEPS)
        weight_s = time_median(weight_only_fn(trainer), STEPS)
        return {"batch": batch, "search_s": search_s, "weight_s": weight_s, "peak_mib": peak}
    except torch.OutOfMemoryError:
        return None
    finally:
        if trainer is not None:
            trainer.run_dir.unlock()
        del trainer
        torch.cuda.empty_cache()


def project_days(r: dict) -> float:
    """GPU-days of the paper's protocol at the measured per-image costs, on one GPU."""
    per_image_search = r["search_s"] / r["batch"]
    per_image_weight = r["weight_s"] / r["batch"]
    images = EPOCHS * TRAIN_IMAGES
    seconds = images * (SEARCH_SHARE * per_image_search + (1 - SEARCH_SHARE) * per_image_weight)
    return seconds / 86400


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["small", "large"])
    p.add_argument("--amp", default="bf16", choices=["none", "bf16", "fp16"])
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device visible to torch (torch.cuda.is_available() is False); run it on a GPU "
              "machine", file=sys.stderr)
        return 1
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name()
    matmul = matmul_gflops(device="cuda")
    raw = {"started": _now(), "command": [sys.executable, *sys.argv], "commit": _commit(),
           "device": {"name": name, "capability": list(torch.cuda.get_device_capability()),
                      "memory_mib": torch.cuda.get_device_properties(0).total_memory // 2 ** 20},
           "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "amp": args.amp, "crop": list(CROP), "steps": STEPS, "fp32_matmul_gflops": matmul, "variants": {}}
    print(f"{name}, torch {torch.__version__}, amp {args.amp}, crop {CROP[0]}x{CROP[1]}; "
          f"fp32 matmul {matmul:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory(prefix="ssnas-bench-gpu-") as tmp:
        for variant in args.variants:
            flops = forward_flops(variant, CROP)
            best = None
            for b in BATCHES:
                best = try_batch(variant, b, args.amp, Path(tmp))
                if best is not None:
                    break
            if best is None:
                print(f"{variant}: batch 1 does not fit in memory")
                raw["variants"][variant] = None
                continue
            gpus = math.ceil(PAPER_BATCH / best["batch"])
            days = project_days(best)
            raw["variants"][variant] = {**best, "forward_gflops_per_image": flops / 1e9,
                                        "images_per_s_weight_step": best["batch"] / best["weight_s"],
                                        "images_per_s_search_iteration": best["batch"] / best["search_s"],
                                        "projected_gpu_days": days, "gpus_for_paper_batch": gpus}
            print(f"{variant}: largest batch {best['batch']} ({best['peak_mib']:.0f} MiB peak): "
                  f"{best['batch'] / best['weight_s']:.1f} img/s weight step, "
                  f"{best['batch'] / best['search_s']:.1f} img/s search iteration, "
                  f"{6 * flops * best['batch'] / best['search_s'] / 1e12:.1f} TFLOP/s (2 steps x 3 x forward); "
                  f"batch {PAPER_BATCH} needs {gpus} GPU(s)")
            print(f"  projected {EPOCHS}-epoch run: {days:.2f} GPU-days on this GPU "
                  f"(paper: {PAPER_GPU_DAYS} V100-days), {days / gpus:.2f} days on {gpus} of them")
    raw["finished"] = _now()
    print(f"raw output: {write_raw(raw)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU training-step throughput of small and large at 512×1024 with bf16 autocast, and the projected time of
the paper's 600-epoch large run on this GPU next to its 5.5 V100-days.

Per variant: the largest per-GPU batch (powers of two up to 16) whose search-phase iteration fits in memory,
its images/s for the weight step alone (warmup and fine-tune phases) and for weight + architecture step
(search phase), and the peak memory. The paper trains with batch 16 over 4 GPUs and the engine has no gradient
accumulation, so batch 16 needs ceil(16 / largest batch) GPUs (DDP).

Projection (paper §4.1): 600 epochs × 2,975 images; the search phase (35% of epochs) costs the second
forward/backward of the architecture step per iteration; 5% warmup + 60% fine-tune run the weight step only.

    bash bench/gpu.sh          # or: .venv/bin/python bench/bench_gpu.py --variants small large
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
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
    print(f"{name}, torch {torch.__version__}, amp {args.amp}, crop {CROP[0]}x{CROP[1]}; "
          f"fp32 matmul {matmul_gflops(device='cuda'):.0f} GFLOP/s")
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
                continue
            gpus = math.ceil(PAPER_BATCH / best["batch"])
            days = project_days(best)
            print(f"{variant}: largest batch {best['batch']} ({best['peak_mib']:.0f} MiB peak): "
                  f"{best['batch'] / best['weight_s']:.1f} img/s weight step, "
                  f"{best['batch'] / best['search_s']:.1f} img/s search iteration, "
                  f"{6 * flops * best['batch'] / best['search_s'] / 1e12:.1f} TFLOP/s (2 steps x 3 x forward); "
                  f"batch {PAPER_BATCH} needs {gpus} GPU(s)")
            print(f"  projected {EPOCHS}-epoch run: {days:.2f} GPU-days on this GPU "
                  f"(paper: {PAPER_GPU_DAYS} V100-days), {days / gpus:.2f} days on {gpus} of them")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Squeeze-excitation forward + backward on channels-last inputs: its mean as ``x.mean`` (as before) vs as
sum / (H·W) (``SqueezeExcite`` now), at the small variant's hidden widths (256×512 crop, batch 2).

    PYTHONPATH=src .venv/bin/python bench/bench_se.py --threads 1

``mean``'s gradient is a full-size division whose (NCHW) result is then added onto the channels-last gradient
of ``x *``; the sum's gradient is an expanded view. Both give the same bits (``tests/test_space.py``)."""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ssnas.space.operations import SqueezeExcite

SHAPES = [(2, 48, 64, 128), (2, 96, 32, 64), (2, 192, 16, 32), (2, 384, 8, 16)]   # small: F=16, Exp=3


def with_mean(se: SqueezeExcite, x):
    return x * (F.relu6(se.expand(F.relu(se.reduce(x.mean((2, 3), keepdim=True)))) + 3.0) / 6.0)


def cpu_ms(fn, reps: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - start) / reps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{'B, C, H, W':<20}{'mean ms':>10}{'sum/HW ms':>11}{'ratio':>8}   (process time, fwd + bwd)")
    for shape in SHAPES:
        se = SqueezeExcite(shape[1]).to(memory_format=torch.channels_last)
        base = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        grad = torch.randn(shape).contiguous(memory_format=torch.channels_last)

        def step(forward):
            h = F.relu(base * 1.0)     # a non-leaf input, as in a cell
            torch.autograd.grad(forward(h), base, grad)

        old = cpu_ms(lambda: step(lambda h: with_mean(se, h)), args.reps)
        new = cpu_ms(lambda: step(se), args.reps)
        print(f"{str(shape):<20}{old:>10.2f}{new:>11.2f}{old / new:>7.2f}x")


if __name__ == "__main__":
    main()

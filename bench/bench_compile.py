"""torch.compile (inductor) of one cell operation of small, forward + backward: the compile time and the step
time against eager (which uses ssnas's depthwise weight-gradient loop; compiled code gets oneDNN's).

    PYTHONPATH=src .venv/bin/python bench/bench_compile.py --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ssnas.space.operations import InvertedBottleneck

SHAPE = (2, 16, 64, 128)      # small's level-0 cell input at a 256x512 crop, batch 2
EXPANSION = 3
KERNELS = (3, 5, 7)
ROUNDS = 8


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    op = InvertedBottleneck(SHAPE[1], EXPANSION, KERNELS).to(memory_format=torch.channels_last)
    x0 = torch.randn(SHAPE).contiguous(memory_format=torch.channels_last)
    mix = torch.full((len(KERNELS),), 1 / len(KERNELS), requires_grad=True)

    def step(fn):
        x = x0.detach().requires_grad_()
        fn(x, mix).square().mean().backward()

    compiled = torch.compile(op)
    start, cpu = time.perf_counter(), time.process_time()
    step(compiled)
    print(f"first compiled step (compilation): {time.perf_counter() - start:.1f} s wall, "
          f"{time.process_time() - cpu:.1f} s CPU in this process (the C++ compiler runs in child processes)")
    eager, comp = [], []
    for _ in range(ROUNDS):
        for fn, out in ((op, eager), (compiled, comp)):
            start = time.process_time()
            step(fn)
            out.append(time.process_time() - start)
    print(f"eager {1e3 * statistics.median(eager):.1f} ms, compiled {1e3 * statistics.median(comp):.1f} ms per "
          f"forward + backward (CPU time, median of {ROUNDS} interleaved)")


if __name__ == "__main__":
    main()

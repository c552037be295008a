"""NCHW vs channels-last for the supernet's 7×7 depthwise convolution on CPU, forward + backward.

Why MixedDepthwise converts its input to channels-last on CPU: in torch 2.x the NCHW depthwise weight
gradient takes a slow path. Both layouts are timed in one run, interleaved, median of N.

    .venv/bin/python bench/bench_depthwise.py --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = [(8, 24, 32, 64), (8, 48, 16, 32), (8, 96, 8, 16), (2, 48, 64, 128)]  # (B, C, H, W), mini/small cells


def step(x: torch.Tensor, w: torch.Tensor) -> None:
    F.conv2d(x, w, padding=w.shape[-1] // 2, groups=x.shape[1]).sum().backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kernel", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), depthwise {args.kernel}x{args.kernel}, "
          f"forward + backward (input and weight gradients), median of {args.repeats}")
    print("| B, C, H, W | NCHW ms | channels-last ms | NCHW / channels-last |\n|---|---|---|---|")
    for shape in SHAPES:
        c = shape[1]
        base = torch.randn(*shape)
        layouts = {"nchw": base.clone(), "cl": base.contiguous(memory_format=torch.channels_last)}
        w = torch.randn(c, 1, args.kernel, args.kernel, requires_grad=True)
        times = {k: [] for k in layouts}
        for k, x in layouts.items():  # warm-up
            step(x.requires_grad_(), w)
        for _ in range(args.repeats):
            for k, x in layouts.items():
                t = time.perf_counter()
                step(x, w)
                times[k].append(time.perf_counter() - t)
        nchw, cl = (statistics.median(times[k]) * 1e3 for k in ("nchw", "cl"))
        print(f"| {', '.join(map(str, shape))} | {nchw:.1f} | {cl:.1f} | {nchw / cl:.1f}x |")


if __name__ == "__main__":
    main()

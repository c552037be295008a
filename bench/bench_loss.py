"""The segmentation loss's layout against the number of classes: cross-entropy forward + backward of
channels-last logits through their NHWC view (softmax over the last dim) vs ATen's kernel over dim 1 (which
vectorizes across pixels), at the proxy scale's logits (batch 8, 96×192), rounds interleaved.

    PYTHONPATH=src .venv/bin/python bench/bench_loss.py --threads 1
    ATEN_CPU_CAPABILITY=avx2 PYTHONPATH=src .venv/bin/python bench/bench_loss.py --threads 1   # AVX2 kernels

``tasks/segmentation.cross_entropy`` takes the NHWC view only from ``NHWC_MIN_CLASSES`` classes up."""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ssnas.tasks.segmentation import NHWC_MIN_CLASSES

IGNORE = 255


def nhwc(x, y):
    return F.cross_entropy(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]), y.reshape(-1), ignore_index=IGNORE)


def over_dim1(x, y):
    return F.cross_entropy(x, y, ignore_index=IGNORE)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--classes", type=int, nargs="+", default=[4, 6, 8, 9, 12, 16, 19, 24, 32])
    p.add_argument("--shape", type=int, nargs=3, default=[8, 96, 192], metavar=("B", "H", "W"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, NHWC from "
          f"{NHWC_MIN_CLASSES} classes, {args.threads} thread(s), logits {args.shape[0]}xCx{args.shape[1]}x{args.shape[2]}")
    print(f"{'classes':>8}{'NHWC ms':>10}{'dim-1 ms':>10}{'ratio':>8}  same loss and gradient   (min wall, fwd + bwd)")
    for c in args.classes:
        torch.manual_seed(0)
        b, h, w = args.shape
        x = torch.randn(b, c, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()
        y = torch.randint(0, c, (b, h, w))
        y[:, :4] = IGNORE
        best, out = {}, {}
        for r in range(args.rounds + 1):   # round 0 warms up
            for name, fn in (("nhwc", nhwc), ("dim1", over_dim1)):
                start = time.perf_counter()
                loss = fn(x, y)
                (g,) = torch.autograd.grad(loss, x)
                seconds = time.perf_counter() - start
                if r:
                    best[name] = min(best.get(name, float("inf")), seconds)
                out[name] = (loss.detach(), g)
        same = torch.equal(out["nhwc"][0], out["dim1"][0]) and torch.equal(out["nhwc"][1], out["dim1"][1])
        print(f"{c:>8}{1e3 * best['nhwc']:>10.1f}{1e3 * best['dim1']:>10.1f}{best['nhwc'] / best['dim1']:>8.2f}  "
              f"{'bit-equal' if same else 'rounding differs'}")


if __name__ == "__main__":
    main()

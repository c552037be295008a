"""Peak memory of ``ssnas predict`` on one large image: whole-image inference vs tiles.

Each measurement runs in a fresh subprocess (``ru_maxrss`` is a process's high-water mark), which
builds a randomly initialised supernet, reads an image of SIDE×SIDE random pixels and runs
``predict_tiled`` with a tile of SIDE (one window: the whole image) or of ``--tile``. The figures are
the subprocess's peak resident memory minus its resident memory just before inference.

    .venv/bin/python bench/bench_predict_memory.py --sides 1024 2048 --tile 512 --variant mini
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from ssnas.evaluation.inference import predict_tiled
from ssnas.space.variants import create_model
side, tile, overlap, variant = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = create_model(variant, num_classes=19).eval()
rgb = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
before = rss_mb()
start = time.perf_counter()
label = predict_tiled(model, rgb, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), tile=tile, overlap=overlap)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"side": side, "tile": tile, "before_mb": before, "peak_mb": peak, "seconds": seconds}))
"""


def measure(side: int, tile: int, overlap: int, variant: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(side), str(tile), str(overlap), variant],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sides", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=128)
    p.add_argument("--variant", default="mini")
    args = p.parse_args()
    print(f"{'side':>6} {'mode':>8} {'peak - before (MB)':>20} {'seconds':>8}")
    for side in args.sides:
        for tile in (side, args.tile):
            r = measure(side, tile, args.overlap, args.variant)
            mode = "whole" if tile >= side else f"tile {tile}"
            print(f"{side:>6} {mode:>8} {r['peak_mb'] - r['before_mb']:>20.0f} {r['seconds']:>8.1f}")
            sys.stdout.flush()
            time.sleep(0.1)


if __name__ == "__main__":
    main()

"""Peak memory and time of one supernet forward+backward (training mode), and how they grow.

Each configuration runs in a fresh subprocess (``--one``), so peaks do not mix: peak memory is the rise of
the process's high-water RSS (``VmHWM`` of ``/proc/self/status``, reset through ``/proc/self/clear_refs``
where the kernel allows it, else measured from the RSS before the step) over one forward+backward, with
glibc told to return freed blocks to the OS (``MALLOC_ENV``) so RSS follows the live tensors.
tracemalloc does not see torch's allocations. Compared: S=1 vs S=1/4 (channel sampling), the kernel vs
output mixture, growth with input pixels and with L; the growth exponents are least-squares slopes on
log-log axes.

    .venv/bin/python bench/bench_scaling.py            # base: L=4, F=8, Exp=3, batch 2, 128x256
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE = dict(layers=4, filters=8, expansion=3.0, sampling=1.0, mixture="kernel", size=[128, 256], batch=2)
PIXEL_SIZES = ([64, 128], [128, 256], [256, 512])
LAYER_COUNTS = (2, 4, 8)
STEPS = 3
# glibc keeps freed large blocks resident (dynamic mmap threshold), which would hide the peak of the
# measured step behind the warm-up's pages: a fixed threshold returns every freed tensor to the OS.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")   # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def measure_one(cfg: dict) -> dict:
    """In this process: peak RSS rise (MiB) and median time (s) of one forward+backward."""
    import torch
    import torch.nn.functional as F

    from ssnas.space import create_model

    torch.manual_seed(0)
    model = create_model("tiny", layers=cfg["layers"], filters=cfg["filters"], expansion=cfg["expansion"],
                         sampling=cfg["sampling"], mixture=cfg["mixture"], num_classes=19).train()
    x = torch.randn(cfg["batch"], 3, *cfg["size"])
    y = torch.randint(0, 19, (cfg["batch"], *cfg["size"]))

    def step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    step()                                   # warm-up: allocator pools, lazy init
    model.zero_grad(set_to_none=True)
    reset = _reset_peak()
    before = _status_kb("VmRSS")
    step()
    peak = _status_kb("VmHWM") - before
    times = []
    for _ in range(STEPS):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"peak_mib": peak / 1024, "time_s": statistics.median(times), "hwm_reset": reset}


def run_config(cfg: dict, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps(cfg), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV}).stdout
    return {**cfg, **json.loads(out.strip().splitlines()[-1])}


def slope(xs, ys) -> float:
    """Least-squares slope of log y on log x: the growth exponent."""
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def _print(label: str, r: dict) -> None:
    print(f"{label:<28}{r['peak_mib']:>10.1f}{r['time_s'] * 1e3:>10.0f}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        import torch
        torch.set_num_threads(args.threads)
        print(json.dumps(measure_one(json.loads(args.one))))
        return
    b = BASE
    print(f"base: L={b['layers']} F={b['filters']} Exp={b['expansion']} batch {b['batch']} {b['size'][0]}x"
          f"{b['size'][1]}, {args.threads} threads; one forward+backward, training mode")
    print(f"{'configuration':<28}{'peak MiB':>10}{'ms':>10}")
    rows = {}
    for label, change in [("S=1, kernel mixture", {}), ("S=1/4", dict(sampling=0.25)),
                          ("output mixture", dict(mixture="output"))]:
        rows[label] = run_config({**b, **change}, args.threads)
        _print(label, rows[label])
    base = rows["S=1, kernel mixture"]
    for label in ("S=1/4", "output mixture"):
        r = rows[label]
        print(f"  {label} / base: memory {r['peak_mib'] / base['peak_mib']:.2f}x, time {r['time_s'] / base['time_s']:.2f}x")
    for name, key, values in [("pixels", "size", PIXEL_SIZES), ("L", "layers", LAYER_COUNTS)]:
        results = []
        for v in values:
            r = base if v == b[key] else run_config({**b, key: v}, args.threads)
            results.append(r)
            _print(f"{key}={v}", r)
        xs = [r["size"][0] * r["size"][1] if key == "size" else r["layers"] for r in results]
        print(f"  growth with {name}: memory ~ {name}^{slope(xs, [r['peak_mib'] for r in results]):.2f}, "
              f"time ~ {name}^{slope(xs, [r['time_s'] for r in results]):.2f}")
    if not base["hwm_reset"]:
        print("note: VmHWM could not be reset; peaks are measured from the RSS before the step")


if __name__ == "__main__":
    main()

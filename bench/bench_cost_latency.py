"""Does a latency table add up? Table sum vs measured latency of one-hot architectures' fused networks.

For each model and input size: measure the latency table (``ssnas.cost.latency.measure_table``, the code of
``ssnas profile --latency``), then for ``--archs`` random one-hot architectures (random α, β, then
``discretize(edges_per_cell=1, ops=True)``) time the fused network the same way (same threads, rounds,
median) and compare it with the table's sum for that architecture (``cost.grid.discrete_cost``), calibrated
(what ``ssnas profile --latency`` writes) and before the calibration (the same parts' raw sum). The
issue's target: |sum / measured − 1| ≤ 15 %. Writes every figure to ``--out`` (JSON).

    PYTHONPATH=src .venv/bin/python bench/bench_cost_latency.py --threads 1 --rounds 40 \\
        --out bench/results/cost-latency-cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import torch

from ssnas.cost.units import parse_size
from ssnas.cost.grid import discrete_cost, kept_choices
from ssnas.cost.latency import measure_table, network_callable, random_one_hot
from ssnas.export import fuse_supernet
from ssnas.hardware import steady_allocator
from ssnas.space import create_model

TARGET = 0.15
CASES = (("mini", {"layers": 6}, "128x256"), ("small", {}, "256x512"))   # the proxy's supernet; Table 3's small


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--archs", type=int, default=5)
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", nargs="+", default=[f"{v}:{s}" for v, _, s in CASES],
                   help="VARIANT:HxW (mini means the proxy's 6-layer mini)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steady = steady_allocator()   # as `ssnas profile --latency` does
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    result = {"command": " ".join(["bench/bench_cost_latency.py", *(argv or __import__("sys").argv[1:])]),
              "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "threads": args.threads,
              "rounds": args.rounds, "runtime": args.runtime, "steady_allocator": steady, "device": args.device,
              "target": TARGET, "cases": []}
    overrides = {v: o for v, o, _ in CASES}
    for case in args.cases:
        variant, size_text = case.split(":")
        size = parse_size(size_text)
        torch.manual_seed(0)
        model = create_model(variant, num_classes=19, **overrides.get(variant, {})).eval()
        # the one-hot networks are timed in the same rounds as the table's parts (measure_table's ``extra``):
        # a load that drifts between two sessions would otherwise show up as a table error
        archs = [random_one_hot(model, seed) for seed in range(args.archs)]
        nets = {seed: network_callable(fuse_supernet(m), size, args.device, args.runtime, args.threads)
                for seed, m in enumerate(archs)}
        t0 = time.time()
        table = measure_table(model, size, args.device, args.threads, args.runtime, args.rounds, extra=nets)
        row = {"variant": variant, "overrides": overrides.get(variant, {}), "input_size": list(size),
               "table_seconds": time.time() - t0, "archs": []}
        scale = table.measured["calibration"]["scale"]
        row["calibration"] = table.measured["calibration"]
        for seed, m in enumerate(archs):
            predicted = discrete_cost(table, *kept_choices(m))
            measured = table.measured["extra"][seed]
            raw = predicted / scale   # the same parts' sum before the calibration
            row["archs"].append({"seed": seed, "table_ms": predicted, "measured_ms": measured,
                                 "error": predicted / measured - 1, "uncalibrated_ms": raw,
                                 "uncalibrated_error": raw / measured - 1})
            print(f"{variant} {size_text} arch {seed}: table {predicted:.2f} ms, measured {measured:.2f} ms, "
                  f"error {100 * (predicted / measured - 1):+.1f}% (uncalibrated {100 * (raw / measured - 1):+.1f}%)",
                  flush=True)
        for key in ("error", "uncalibrated_error"):
            errors = [abs(a[key]) for a in row["archs"]]
            prefix = "" if key == "error" else "uncalibrated_"
            row[f"{prefix}max_abs_error"], row[f"{prefix}median_abs_error"] = max(errors), statistics.median(errors)
        row["within_target"] = row["max_abs_error"] <= TARGET
        row["table"] = table.to_json()
        result["cases"].append(row)
    result["end"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["loadavg_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    for row in result["cases"]:
        print(f"{row['variant']} {row['input_size']}: max |table/measured - 1| = {100 * row['max_abs_error']:.1f}% "
              f"(median {100 * row['median_abs_error']:.1f}%), target <= {100 * TARGET:.0f}%: "
              f"{'met' if row['within_target'] else 'missed'}; uncalibrated "
              f"{100 * row['uncalibrated_max_abs_error']:.1f}% (median {100 * row['uncalibrated_median_abs_error']:.1f}%), "
              f"scale {row['calibration']['scale']:.3f}")


if __name__ == "__main__":
    main()

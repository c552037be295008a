"""Eval-mode latency, batch 1, fp32: the supernet vs the fused net (torch) vs the fused net in ONNX Runtime.

All three run in ONE process, interleaved (one call of each per round, after warm-up), and the median of
the rounds is reported with the ratios to the supernet (target of the issue: fused ≤ 0.6× supernet).
Two architecture states: ``full`` (the supernet as searched: every edge, α̂-mixed 7×7 superkernels) and
``discrete`` (``discretize(edges_per_cell=1)``: one edge and one kernel per cell).

``--profile`` instead shows the top ops of one supernet forward+backward (training mode) with
``torch.profiler`` and the share of wall time spent outside ATen kernels (Python and dispatch overhead).
``profile_step(fn)`` is generic: pass any step (e.g. the engine's training step).

    .venv/bin/python bench/bench_latency.py --variant small --sizes 256x512 512x1024 --rounds 7
    .venv/bin/python bench/bench_latency.py --profile --variant small --sizes 256x512
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ssnas.cost.units import parse_size
from ssnas.export import fuse_supernet
from ssnas.space import create_model

TARGET_RATIO = 0.6
ARCH_STATES = ("full", "discrete")
# kernels that count as "inside ATen": ATen's own and ssnas's registered C++ operators (space/depthwise.py)
NATIVE_OPS = ("aten::", "ssnas::")


def randomize_arch(model, seed: int = 0) -> None:
    """Spread-out α, β (as after a search), so the fold is not a trivial one."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.alpha.copy_(torch.randn(model.alpha.shape, generator=g))
        model.beta.copy_(torch.randn(model.beta.shape, generator=g))


def ort_session(fused, size, threads: int, tmp: Path):
    import onnxruntime as ort

    from ssnas.export.onnx import export_onnx

    path = tmp / f"fused_{size[0]}x{size[1]}.onnx"
    export_onnx(fused, path, size, dynamic=False, exporter="torchscript")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})


def interleaved(fns: dict, x, rounds: int, warmup: int) -> dict:
    """Median seconds of each fn over ``rounds`` rounds, one call of each per round."""
    times = {k: [] for k in fns}
    for r in range(warmup + rounds):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            if r >= warmup:
                times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(variant: str, sizes, rounds: int, warmup: int, threads: int, states=ARCH_STATES, onnx: bool = True):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for state in states:
            torch.manual_seed(0)
            model = create_model(variant).eval()
            randomize_arch(model)
            if state == "discrete":
                model.discretize(edges_per_cell=1, ops=True)
            fused = fuse_supernet(model)
            for size in sizes:
                fns = {"supernet": model, "fused": fused}
                if onnx:
                    fns["onnxruntime"] = ort_session(fused, size, threads, Path(tmp))
                x = torch.randn(1, 3, *size)
                with torch.inference_mode():
                    t = interleaved(fns, x, rounds, warmup)
                rows.append(dict(state=state, size=size, **{k: v * 1e3 for k, v in t.items()}))
                print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    s = f"{r['state']:<9}{r['size'][0]}x{r['size'][1]:<7}{r['supernet']:>10.1f}{r['fused']:>10.1f}"
    s += f"{r.get('onnxruntime', float('nan')):>10.1f}{r['fused'] / r['supernet']:>9.2f}"
    return s + (f"{r['onnxruntime'] / r['supernet']:>9.2f}" if "onnxruntime" in r else "")


def profile_step(fn, steps: int = 3, warmup: int = 1, row_limit: int = 15) -> dict:
    """Profile ``fn()`` (one step) with torch.profiler: top ops by self CPU time and the share of the
    wall time that is outside ATen kernels (Python, module and dispatch overhead).

    Returns {"wall_ms", "aten_ms", "outside_aten_share", "top": [(op, self_ms, calls), ...]} per step."""
    for _ in range(warmup):
        fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        wall = (time.perf_counter() - start) / steps
    events = prof.key_averages()
    aten = sum(e.self_cpu_time_total for e in events if e.key.startswith(NATIVE_OPS)) / 1e3 / steps
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:row_limit]
    return {
        "wall_ms": wall * 1e3,
        "aten_ms": aten,
        "outside_aten_share": max(0.0, 1.0 - aten / (wall * 1e3)),
        "top": [(e.key, e.self_cpu_time_total / 1e3 / steps, e.count // steps) for e in top],
    }


def supernet_train_step(variant: str, size, batch: int = 2):
    """One forward+backward of the supernet in training mode (cross-entropy on random labels)."""
    torch.manual_seed(0)
    model = create_model(variant).train()
    x = torch.randn(batch, 3, *size)
    y = torch.randint(0, model.cfg.num_classes, (batch, *size))

    def step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="small")
    p.add_argument("--sizes", nargs="+", default=["256x512", "512x1024"])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--states", nargs="+", choices=ARCH_STATES, default=list(ARCH_STATES))
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--profile", action="store_true", help="profile a supernet forward+backward instead")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [parse_size(s) for s in args.sizes]
    print(f"torch {torch.__version__}, {args.threads} threads, variant {args.variant}, batch 1, fp32")
    if args.profile:
        for size in sizes:
            r = profile_step(supernet_train_step(args.variant, size))
            print(f"\nforward+backward {size[0]}x{size[1]} batch 2: {r['wall_ms']:.0f} ms/step, ATen self time "
                  f"{r['aten_ms']:.0f} ms, outside ATen {100 * r['outside_aten_share']:.1f}%")
            for name, ms, calls in r["top"]:
                print(f"  {name:<45}{ms:>10.1f} ms{calls:>8} calls")
        return
    print(f"{'arch':<9}{'size':<12}{'supernet':>10}{'fused':>10}{'ORT':>10}{'fused/sn':>9}{'ORT/sn':>9}   (ms, median)")
    rows = bench(args.variant, sizes, args.rounds, args.warmup, args.threads, args.states, not args.no_onnx)
    worst = max(r["fused"] / r["supernet"] for r in rows)
    verdict = "met" if worst <= TARGET_RATIO else f"missed by {worst - TARGET_RATIO:.2f}"
    print(f"worst fused/supernet ratio {worst:.2f} (target <= {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()

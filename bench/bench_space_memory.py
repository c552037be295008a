"""Peak memory of the grid and the dense search space at equal L and F, on CPU.

For each space it builds a randomly initialised supernet and measures, with torch's profiler
(``profile_memory=True``; its allocation timeline: every tensor the CPU allocator creates and frees), the
peak of the bytes held by tensors created during

- ``eval``: one forward pass under ``torch.no_grad()`` in eval mode (what inference holds; the
  full-resolution logits of the head are most of it),
- ``backbone``: the same for the stem and the backbone alone (the dense backbone keeps the activations of
  its last k layers, the grid's of one), and
- ``train``: one forward + backward pass in train mode (what a weight step holds: autograd keeps every
  saved activation, whatever the space),

above what was allocated before (weights, the input). It also counts parameters and FLOPs
(``space/profile.py``) and the time of each pass. Writes the raw figures as JSON (``--out``).

    PYTHONPATH=src .venv/bin/python bench/bench_space_memory.py --out bench/results/space-memory.json
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from datetime import datetime, timezone

import torch
from torch.profiler import ProfilerActivity, profile


def peak_bytes(fn) -> tuple[int, float]:
    """(peak bytes of tensors created while ``fn`` runs, above the start; seconds of ``fn``)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    from torch.profiler._memory_profiler import Action
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:   # in time order
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak, seconds


def build(space: str, variant: str, layers: int, filters: int, k: int | None, span: int | None):
    from ssnas.space import create_model
    options = {} if space == "grid" else {"k": k, "level_span": span}
    return create_model(variant, space=space, num_classes=19, layers=layers, filters=filters, **options)


def measure(space, variant, layers, filters, k, span, batch, size) -> dict:
    from ssnas.space.profile import profile as count

    torch.manual_seed(0)
    model = build(space, variant, layers, filters, k, span)
    costs = count(model, tuple(size))
    x = torch.randn(batch, 3, *size)

    def infer():
        with torch.no_grad():
            model.eval()(x)

    def backbone():
        with torch.no_grad():
            model.eval()
            model.backbone(model.stem(x), model.alpha_hat(), model.beta_hat())

    def step():
        model.train()
        model(x).square().mean().backward()

    step()   # warm-up (the depthwise CPU kernel, allocator); gradients then exist before the measured step
    eval_peak, eval_s = peak_bytes(infer)
    backbone_peak, _ = peak_bytes(backbone)
    train_peak, train_s = peak_bytes(step)
    return {"space": space, "k": k, "level_span": span, "layers": layers, "filters": filters,
            "edges": int(model.edge_mask.sum()), "params": costs["params"], "gflops": costs["flops"] / 1e9,
            "eval_peak_mb": eval_peak / 2 ** 20, "eval_s": eval_s,
            "backbone_eval_peak_mb": backbone_peak / 2 ** 20,
            "train_peak_mb": train_peak / 2 ** 20, "train_s": train_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="mini", help="the base variant (expansion, head, kernels)")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"))
    p.add_argument("--dense", default="1:1,2:1,2:3,3:3,6:3",
                   help="comma-separated k:span pairs of the dense space to measure next to the grid")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the raw figures here as JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pairs = [tuple(int(v) for v in pair.split(":")) for pair in args.dense.split(",") if pair]
    configs = [("grid", None, None)] + [("dense", k, s) for k, s in pairs]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = []
    print(f"{'space':<14}{'edges':>6}{'params':>10}{'GFLOPs':>8}{'eval MB':>9}{'backbone MB':>12}{'train MB':>10}"
          f"{'eval s':>8}{'train s':>9}")
    for space, k, span in configs:
        r = measure(space, args.variant, args.layers, args.filters, k, span, args.batch, args.size)
        rows.append(r)
        name = space if space == "grid" else f"dense k{k} s{span}"
        print(f"{name:<14}{r['edges']:>6}{r['params'] / 1e6:>9.3f}M{r['gflops']:>8.2f}{r['eval_peak_mb']:>9.1f}"
              f"{r['backbone_eval_peak_mb']:>12.1f}{r['train_peak_mb']:>10.1f}{r['eval_s']:>8.2f}"
              f"{r['train_s']:>9.2f}", flush=True)
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        out = {"command": "bench/bench_space_memory.py " + " ".join(
                   f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                   for k, v in vars(args).items() if k != "out" and v is not None),
               "started": started, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "commit": commit, "torch": torch.__version__, "machine": platform.machine(),
               "threads": args.threads, "input": [args.batch, 3, *args.size], "results": rows}
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Parameters and FLOPs of the grid and the dense space at equal L and F: the supernet and its fused network.

The supernet is counted by ``space/profile.py`` (Table 3's convention: eval mode, the paper's order of P —
resample, then the 1×1 conv at the target resolution), the fused network (``model.fuse()``: α̂, β̂ and BN
folded; an upward transmission convolves at its source's resolution, then upsamples) by
``forward_flops``. Untrained supernets: every transmission is live, so the fused network keeps them all.

    PYTHONPATH=src .venv/bin/python bench/bench_space_cost.py --variant small --size 1024 2048 \\
        --out bench/results/space-cost-small.json
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
from datetime import datetime, timezone

import torch


def main() -> None:
    from ssnas.space import create_model
    from ssnas.space.profile import forward_flops, profile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="small")
    p.add_argument("--layers", type=int, default=None, help="default: the variant's")
    p.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    p.add_argument("--dense", default="1:1,2:1,2:3,3:3,L:3", help="k:span pairs (L: k = the layers)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    size = tuple(args.size)
    layers = create_model(args.variant, layers=args.layers).cfg.layers
    pairs = [(layers if k == "L" else int(k), int(s)) for k, s in (pair.split(":") for pair in args.dense.split(","))]
    rows = []
    print(f"{'space':<18}{'edges':>6}{'params':>10}{'GFLOPs':>9}{'P GFLOPs':>10}{'fused params':>14}"
          f"{'fused GFLOPs':>14}")
    for k, span in [(None, None)] + pairs:
        torch.manual_seed(0)
        options = {} if k is None else {"space": "dense", "k": k, "level_span": span}
        model = create_model(args.variant, layers=args.layers, **options).eval()
        r = profile(copy.deepcopy(model).to("meta"), size)
        fused = model.fuse()
        row = {"space": "grid" if k is None else "dense", "k": k, "level_span": span, "layers": layers,
               "edges": model.num_edges(), "params": r["params"], "gflops": r["flops"] / 1e9,
               "P_gflops": r["components"]["P"]["flops"] / 1e9,
               "fused_params": sum(q.numel() for q in fused.parameters()),
               "fused_gflops": forward_flops(fused, size) / 1e9}
        rows.append(row)
        name = "grid" if k is None else f"dense k{k} s{span}"
        print(f"{name:<18}{row['edges']:>6}{row['params'] / 1e6:>9.3f}M{row['gflops']:>9.3g}{row['P_gflops']:>10.3g}"
              f"{row['fused_params'] / 1e6:>13.3f}M{row['fused_gflops']:>14.3g}", flush=True)
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        out = {"command": f"bench/bench_space_cost.py --variant {args.variant}"
                          + (f" --layers {args.layers}" if args.layers else "")
                          + f" --size {size[0]} {size[1]} --dense {args.dense}",
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
               "torch": torch.__version__, "input": [1, 3, *size], "results": rows}
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

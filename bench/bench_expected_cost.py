"""CPU time of one E[cost] forward + backward (what the cost term adds to each architecture step).

    python bench/bench_expected_cost.py --space grid --variant mini --layers 6 --size 96 192
    python bench/bench_expected_cost.py --space dense --variant mini --layers 6 --size 96 192

Uses only the public API (``ssnas.cost.cost_table``, ``ssnas.cost.expected_cost``), so it runs against
any checkout (``PYTHONPATH=<checkout>/src``) and two versions compare with ``farm-bench --vs``. One thread.
Prints the median over ``--repeats`` calls in ms and, with ``--json``, writes it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ssnas.cost import cost_table, expected_cost
from ssnas.space import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="grid")
    p.add_argument("--variant", default="mini")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--size", type=int, nargs=2, default=[96, 192])
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(args.variant, space=args.space, num_classes=9, layers=args.layers)
    t = cost_table(model, "flops", tuple(args.size)).tensors()
    times = []
    for _ in range(args.repeats + 10):
        start = time.process_time()
        e = expected_cost(model, t)
        e.backward()
        times.append(time.process_time() - start)
        model.zero_grad(set_to_none=True)
    ms = 1e3 * statistics.median(times[10:])
    print(f"{args.space} {args.variant} L={args.layers}: E[cost] forward + backward {ms:.2f} ms CPU (median of "
          f"{args.repeats})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"space": args.space, "variant": args.variant, "layers": args.layers, "ms": ms,
                       "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()

"""`ssnas profile`: parameters and FLOPs of a variant, per component, next to Table 3."""
from __future__ import annotations

import json

import torch

from ssnas.cost.units import parse_size
from ssnas.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("profile", help="parameters and FLOPs of a supernet variant, per component",
                       description="Parameters and FLOPs (2 x multiply-adds) of a supernet variant per component "
                                   "(stem, cells, edges P, head), next to the paper's Table 3. Counted on the "
                                   "meta device by default: no data, no time.")
    p.add_argument("--space", default="grid", help="a registered search space (default grid, the paper's)")
    p.add_argument("--variant", default="small", help="variant name (configs/variants) or a .yaml file")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a space-specific key (as model.options in a config), e.g. --option k=2; repeatable")
    p.add_argument("--input-size", default="1024x2048", help="HxW of the input image (default 1024x2048)")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--device", default="meta", help="meta (default: count without computing) or cpu/cuda")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    g = p.add_argument_group("latency table (cost-aware search, docs/cost-aware.md)")
    g.add_argument("--latency", action="store_true",
                   help="time every candidate (per layer, level, kernel and edge) in its fused form on --device "
                        "(cpu or cuda) and write the latency table that cost.metric: latency reads")
    g.add_argument("--checkpoint", help="the model of this checkpoint or run folder instead of --variant")
    g.add_argument("--onnxruntime", action="store_true", help="time the parts in ONNX Runtime (CPU) instead of torch")
    g.add_argument("--threads", type=int, default=1, help="compute threads while timing (default 1)")
    g.add_argument("--rounds", type=int, default=30, help="timing rounds; a part's latency is its median (default 30)")
    g.add_argument("--out", help="the table file (JSON) to write, with --latency")
    g.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.latency:
        from ssnas.cost.profile_latency import run_latency
        return run_latency(args)
    from ssnas.config import CHOICES, parse_overrides
    from ssnas.engine.distributed import pick_device
    from ssnas.space import create_model
    from ssnas.space.profile import PAPER_TABLE3, profile

    size = parse_size(args.input_size)
    if args.num_classes <= 0:
        raise UserError(f"--num-classes {args.num_classes}: expected a positive integer")
    if args.space not in CHOICES["model.space"]:
        raise UserError(f"--space {args.space!r}: expected one of {', '.join(CHOICES['model.space'])}")
    options = parse_overrides(args.option, "--option", "k=2")
    with pick_device(args.device, key="--device"):
        model = create_model(args.variant, space=args.space, num_classes=args.num_classes, **options)
    result = profile(model, size)
    result["variant"] = args.variant
    result["space"] = args.space
    grid = args.space == "grid" and not options
    paper = PAPER_TABLE3.get(args.variant) if grid and size == (1024, 2048) and args.num_classes == 19 else None
    published = getattr(model, "paper", None)   # a space's own published figures (e.g. Auto-DeepLab-S/M/L)
    if published and not grid and not options and size == (1024, 2048) and args.num_classes == 19:
        paper = (2 * published["multiply_adds"], published["params"])
    if paper:
        result["paper"] = {"flops": paper[0], "params": paper[1]}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    space = "" if args.space == "grid" else f"space {args.space}  "
    print(f"{space}variant {args.variant}  input 1x3x{size[0]}x{size[1]}  (FLOPs = 2 x multiply-adds, forward)")
    print(f"{'component':<10}{'params':>14}{'GFLOPs':>12}")
    for name, c in result["components"].items():
        print(f"{name:<10}{c['params']:>14,}{c['flops'] / 1e9:>12.2f}")
    print(f"{'arch':<10}{result['arch_params']:>14,}{'':>12}")
    print(f"{'total':<10}{result['params']:>14,}{result['flops'] / 1e9:>12.2f}")
    if paper:
        print(f"{'paper':<10}{int(paper[1]):>14,}{paper[0] / 1e9:>12.2f}   "
              f"(ssnas/paper: params {result['params'] / paper[1]:.3f}, FLOPs {result['flops'] / paper[0]:.3f})")
    return 0

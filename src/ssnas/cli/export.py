"""`ssnas export`: fold a trained supernet into a plain network and write it as a torch or ONNX file."""
from __future__ import annotations

import torch

from ssnas.cost.units import parse_size
from ssnas.errors import UserError

FORMATS = ("torch", "safetensors", "onnx")
DEFAULT_INPUT_SIZE = "512x1024"   # traced / checked input (any size runs afterwards)
CHECK_TOLERANCE = 1e-4            # max |ONNX Runtime − torch| accepted for the written file


def register(sub) -> None:
    p = sub.add_parser("export", help="fold a trained supernet (alpha, beta, BN) into a deployable torch/ONNX file",
                       description="Fold a trained supernet into a plain network (alpha-hat, beta-hat and BatchNorm "
                                   "folded into the convolutions; same eval-mode logits) and write it as a "
                                   "weights-only torch file, a safetensors release (weights + JSON spec of the "
                                   "architecture, classes and preprocessing; loading never unpickles) or ONNX.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder (its last.pt)")
    p.add_argument("--out", required=True, help="output file (.pt for torch, .safetensors, .onnx for onnx)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="torch (weights-only file), safetensors (no pickle; load either with ssnas.load) "
                        "or onnx; default: from the --out suffix")
    p.add_argument("--input-size", default=DEFAULT_INPUT_SIZE,
                   help=f"HxW of the input used to trace and check (default {DEFAULT_INPUT_SIZE})")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="ONNX exporter (auto: dynamo, torchscript if it fails)")
    p.add_argument("--static", action="store_true", help="ONNX: fixed input size instead of dynamic H, W, batch")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g = p.add_argument_group("discretize to a budget (docs/cost-aware.md)")
    g.add_argument("--budget", help="drop edges and kernels greedily by beta-hat and alpha-hat per cost saved until "
                                    "the fused network costs at most this: 20G (FLOPs), 3M (--metric params), 15ms "
                                    "(latency, with --table)")
    g.add_argument("--metric", choices=("flops", "params", "latency"), default=None,
                   help="what --budget bounds (default: latency for a budget in ms/us/s, else flops)")
    g.add_argument("--table", help="latency table of `ssnas profile --latency` (--metric latency)")
    g.add_argument("--cost-size", help="HxW that FLOPs are counted at (default: the run's cost.input_size or "
                                       "data.crop_size)")
    g.add_argument("--no-eval", action="store_true", help="do not evaluate the budgeted network on the val set")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssnas.tasks.segmentation import load_model
    from ssnas.export import fuse_supernet, save_fused

    from ssnas.engine.checkpoint import resolve_checkpoint_path
    from ssnas.outputs import check_output_file

    out = check_output_file(args.out, "--out", args.overwrite, (resolve_checkpoint_path(args.checkpoint), args.table))
    fmt = args.format or {".onnx": "onnx", ".safetensors": "safetensors"}.get(out.suffix.lower(), "torch")
    size = parse_size(args.input_size)
    model, payload = load_model(args.checkpoint)
    model.eval()
    if not model.arch_frozen:
        print("note: the architecture is not frozen (no fine-tuning yet); exporting the current alpha, beta")
    if args.budget is not None:   # mask edges and kernels to the budget first (export/budget.py)
        from ssnas.export.budget import budget_from_cli
        budget_from_cli(model, payload, args)
    elif args.metric or args.table or args.cost_size or args.no_eval:
        raise UserError("--metric/--table/--cost-size/--no-eval: only with --budget, expected --budget too")
    fused = fuse_supernet(model)
    x = torch.randn(1, model.cfg.in_channels, *size)
    with torch.no_grad():
        diff = float((fused(x) - model(x)).abs().max())
    print(f"fused: {_count(model)} -> {_count(fused)} parameters, {model.num_edges()} -> {fused.num_edges()} edges; "
          f"max |fused - supernet| = {diff:.2e}")
    if fmt in ("torch", "safetensors"):
        from ssnas.api import preprocessing_from_config
        preprocessing = preprocessing_from_config(payload.get("config"))
        if fmt == "torch":
            save_fused(fused, out, payload.get("classes"), preprocessing)
        else:
            from ssnas.export.safetensors_io import save_safetensors
            from ssnas.space.architecture import describe_architecture, summarize_architecture
            save_safetensors(fused, out, payload.get("classes"), preprocessing,
                             summarize_architecture(describe_architecture(model)))
        print(f"wrote {out} (load: ssnas.load({str(out)!r}))")
        return 0
    from ssnas.export.onnx import check_onnx, export_onnx

    used = export_onnx(fused, out, size, dynamic=not args.static, exporter=args.exporter)
    err = check_onnx(out, fused, x)
    print(f"wrote {out} ({used} exporter); max |onnxruntime - torch| = {err:.2e}")
    if err > CHECK_TOLERANCE:
        raise UserError(f"--out {out}: ONNX Runtime differs from torch by {err:.2e} > {CHECK_TOLERANCE:g}")
    return 0


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""`ssnas profile --latency`: measure a latency table (``cost/latency.py``) and write it as JSON."""
from __future__ import annotations

import torch

from ssnas.errors import UserError


def run_latency(args) -> int:
    from ssnas.cost.units import parse_size
    from ssnas.cost.latency import measure_table
    from ssnas.outputs import check_output_file

    if not args.out:
        raise UserError("--out: missing, expected the path of the latency table to write (e.g. latency-cpu.json)")
    device = "cpu" if args.device == "meta" else args.device
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise UserError(f"--device {args.device}: latency is timed on cpu or cuda, expected one of them")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device here, expected cpu")
    if args.onnxruntime and torch.device(device).type != "cpu":
        raise UserError("--onnxruntime: times on the CPU execution provider, expected --device cpu")
    if args.threads < 1 or args.rounds < 1:
        raise UserError(f"--threads {args.threads} / --rounds {args.rounds}: expected positive integers")
    size = parse_size(args.input_size)
    from ssnas.engine.checkpoint import resolve_checkpoint_path
    inputs = (resolve_checkpoint_path(args.checkpoint) if args.checkpoint else None, args.variant)
    out = check_output_file(args.out, "--out", args.overwrite, inputs)
    if args.checkpoint:
        from ssnas.tasks.segmentation import load_model
        model, _ = load_model(args.checkpoint)
    else:
        from ssnas.space import create_model
        if args.num_classes <= 0:
            raise UserError(f"--num-classes {args.num_classes}: expected a positive integer")
        model = create_model(args.variant, num_classes=args.num_classes)
    from ssnas.cost import cost_aware
    cost_aware(model, "latency")          # latency tables are measured for the spaces that have them (grid)
    runtime = "onnxruntime" if args.onnxruntime else "torch"
    from ssnas.hardware import STEADY_ALLOCATOR, steady_allocator
    steady = steady_allocator()   # this process only: parts and networks timed in one allocator state
    table = measure_table(model.eval(), size, device, args.threads, runtime, args.rounds,
                          progress=lambda m: print(f"[profile] {m}", flush=True))
    table.measured["allocator"] = STEADY_ALLOCATOR if steady else "default"
    table.save(out)
    print(f"latency table ({runtime}, {device}, {args.threads} thread(s), input {size[0]}x{size[1]}): head "
          f"{table.head:.3f} ms, stem {sum(table.stem):.3f} ms; wrote {out} (use: cost.metric: latency, "
          f"cost.table: {out})")
    return 0

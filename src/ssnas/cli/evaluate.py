"""`ssnas evaluate`: mIoU and per-class IoU of a checkpoint on the validation split (whole images)."""
from __future__ import annotations

import json
import math

from ssnas.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="mIoU and per-class IoU of a checkpoint on the validation split",
                       description="Whole-image mIoU, per-class IoU and pixel accuracy of a trained model on a "
                                   "dataset's validation split (optionally flipped and multi-scale). The data "
                                   "comes from the checkpoint's own config unless --config/--set say otherwise.")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file, a run folder (its last.pt), or an exported model (.pt or .safetensors)")
    p.add_argument("--config", help="experiment YAML for the data (default: the checkpoint's own config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set data.root=/data/cityscapes")
    p.add_argument("--flip", action="store_true", help="also average with the mirrored image")
    p.add_argument("--scales", type=float, nargs="+", help="multi-scale inference, e.g. 0.75 1.0 1.25")
    p.add_argument("--label-ids", metavar="DIR",
                   help="Cityscapes: also write predictions as labelId PNGs for the official evaluator")
    p.add_argument("--out", help="write the result as JSON to this file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def config_for_checkpoint(payload: dict, config: str | None, overrides: list):
    """The checkpoint's own config (or ``config``), with ``--set`` overrides."""
    from ssnas.config import deep_merge, load_config, parse_overrides, read_yaml, resolve_config_path

    base = read_yaml(resolve_config_path(config)) if config else dict(payload.get("config") or {})
    return load_config(None, deep_merge(base, parse_overrides(overrides)))


def run(args) -> int:
    import torch

    from ssnas.api import load_with_info
    from ssnas.engine.distributed import pick_device
    from ssnas.engine.task import SegmentationTask

    model, payload = load_with_info(args.checkpoint)  # a checkpoint, run folder, fused .pt or .safetensors
    if not payload.get("config") and not args.config:
        raise UserError(f"{args.checkpoint}: an exported model holds no data config, expected --config (and "
                        f"--set data.root=...) naming the dataset to evaluate on")
    cfg = config_for_checkpoint(payload, args.config, args.overrides)
    if args.flip:
        cfg.eval.flip = True
    if args.scales:
        if any(s <= 0 for s in args.scales):
            raise UserError(f"--scales {args.scales}: scales must be positive")
        cfg.eval.scales = tuple(args.scales)
    device = pick_device(cfg.run.device)
    model = model.to(device)
    task = SegmentationTask(cfg)
    if task.num_classes() != model.num_classes:
        raise UserError(f"{args.checkpoint}: model has {model.num_classes} classes but the dataset "
                        f"{cfg.data.root} has {task.num_classes()}, expected the same class table")
    with torch.no_grad():
        result = task.evaluate(model, write_label_ids_dir=args.label_ids, progress=cfg.run.progress)
    names = task.classes.names
    result["class_names"] = list(names)
    if args.out:
        from pathlib import Path
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"mIoU {result['miou'] * 100:.2f}%  pixel accuracy {result['pixel_acc'] * 100:.2f}%  "
          f"({result['images']} images)")
    for name, iou in zip(names, result["per_class_iou"]):
        print(f"  {name:<16}{'n/a' if math.isnan(iou) else f'{iou * 100:6.2f}'}")
    if args.label_ids:
        print(f"label-id predictions: {args.label_ids} (score them with cityscapesscripts' "
              f"evalPixelLevelSemanticLabeling)")
    return 0

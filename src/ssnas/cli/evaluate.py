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
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file / --label-ids files")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def config_for_checkpoint(payload: dict, config: str | None, overrides: list, extra: dict | None = None):
    """The checkpoint's own config (or ``config``), with ``--set`` overrides, then ``extra`` (a tree of keys
    from command-line options, validated by the same schema)."""
    from ssnas.config import deep_merge, load_config, parse_overrides, read_yaml, resolve_config_path

    base = read_yaml(resolve_config_path(config)) if config else payload.get("config") or {}  # a dict: check_fields
    return load_config(None, deep_merge(deep_merge(dict(base), parse_overrides(overrides)), extra or {}))


def check_outputs(args) -> None:
    """Every output path, before any work: never the checkpoint or config, never an unasked overwrite."""
    from ssnas.engine.checkpoint import resolve_checkpoint_path
    from ssnas.outputs import check_output_file, check_output_folder

    inputs = (resolve_checkpoint_path(args.checkpoint), args.config)
    if args.out:
        check_output_file(args.out, "--out", args.overwrite, inputs)
    if args.label_ids:
        folder = check_output_folder(args.label_ids, "--label-ids")
        if folder.exists() and any(folder.iterdir()) and not args.overwrite:
            raise UserError(f"--label-ids {folder}: not empty, expected a new or empty folder "
                            f"(or pass --overwrite)")


def run(args) -> int:
    import torch

    from ssnas.api import load_with_info
    from ssnas.engine.distributed import pick_device
    from ssnas.tasks.segmentation import SegmentationTask
    from ssnas.evaluation.inference import CITYSCAPES_CLASSES

    check_outputs(args)
    model, payload = load_with_info(args.checkpoint)  # a checkpoint, run folder, fused .pt or .safetensors
    if not payload.get("config") and not args.config:
        raise UserError(f"{args.checkpoint}: an exported model holds no data config, expected --config (and "
                        f"--set data.root=...) naming the dataset to evaluate on")
    options = {"flip": True} if args.flip else {}
    if args.scales:
        options["scales"] = list(args.scales)  # NaN, inf, <= 0: refused by the config schema
    cfg = config_for_checkpoint(payload, args.config, args.overrides, {"eval": options})
    if args.label_ids and model.num_classes != CITYSCAPES_CLASSES:
        raise UserError(f"--label-ids: the model has {model.num_classes} classes, expected Cityscapes' "
                        f"{CITYSCAPES_CLASSES} (labelId PNGs are the Cityscapes evaluator's format)")
    device = pick_device(cfg.run.device)
    model = model.to(device)
    task = SegmentationTask(cfg)
    if task.num_classes() != model.num_classes:
        raise UserError(f"{args.checkpoint}: model has {model.num_classes} classes but the dataset "
                        f"{cfg.data.root} has {task.num_classes()}, expected the same class table")
    with torch.no_grad():
        result = task.evaluate(model, write_label_ids_dir=args.label_ids, progress=cfg.run.progress,
                               overwrite=args.overwrite)
    names = task.classes.names
    result["class_names"] = list(names)
    if args.out:
        from ssnas.engine.checkpoint import write_output
        write_output(args.out, json.dumps(result, indent=2).encode(), "the evaluation result")
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

"""`ssnas search`: run the single-stage protocol (or any configured variant of it) into an output folder."""
from __future__ import annotations

import argparse
import math
import os
import sys

from ssnas.errors import UserError

SEARCH_DESCRIPTION = """\
Train a supernet with the single-stage protocol (paper §3.2), in three phases
set by protocol.warmup / protocol.search / protocol.finetune (fractions of
protocol.epochs):

  warmup    weights only (SGD), on batches from split A;
  search    per step, weights on a batch from A, then the architecture
            (alpha: kernels, beta: edges; Adam) on a separate batch from B,
            with the entropy loss from protocol.entropy_start;
  finetune  architecture frozen, weights only: the supernet is the final
            model, no decoding and no retraining.

The run folder --out receives config.yaml, checkpoints/, metrics.jsonl,
summary.json, architecture.json and plots/. List every config key with
`ssnas config show --config NAME`."""


def add_config_arguments(p, required: bool = True) -> None:
    p.add_argument("--config", required=required,
                   help="experiment YAML (a path, or the name of a shipped config such as 'demo')")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set protocol.epochs=10 (repeatable)")


def register(sub) -> None:
    p = sub.add_parser("search", help="warm up, search and fine-tune a supernet (the single-stage protocol)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=SEARCH_DESCRIPTION)
    add_config_arguments(p, required=False)
    p.add_argument("--out", required=True, help="output folder (checkpoints, metrics, plots, summary)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (start it if there is none)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a different ssnas run in --out (never a folder of other files)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ssnas.config import load_config
    from ssnas.engine.trainer import Trainer

    config = args.config
    if config is None:
        saved = Path(args.out) / "config.yaml"
        if not (args.resume and saved.is_file()):
            raise UserError("--config is required (or --resume with an --out folder that holds a run)")
        config = saved
    cfg = load_config(config, args.overrides)
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    summary = Trainer(cfg, args.out, resume=args.resume, overwrite=args.overwrite).run()
    if "stopped" in summary:
        return summary["exit_code"]
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print_summary(summary, args.out)
    return 0


def print_summary(summary: dict, out: str) -> None:
    miou, acc = summary.get("miou"), summary.get("accuracy")
    if miou is not None and not math.isnan(miou):
        lines = [f"done in {summary['wall_time_s'] / 60:.1f} min: mIoU {miou * 100:.1f}%"]
    elif acc is not None:  # DARTS
        lines = [f"done in {summary['wall_time_s'] / 60:.1f} min: test accuracy {acc * 100:.1f}%"]
    else:
        lines = ["done"]
    if summary.get("early_stop"):
        stop = summary["early_stop"]
        lines.append(f"DARTS-ES stopped the search at epoch {stop['epoch']}; the architecture to keep is the genotype "
                     f"of epoch {stop['rollback_epoch']} in {out}/metrics.jsonl")
    if summary.get("class_names") and summary.get("per_class_iou"):
        per = ", ".join(f"{n} {v * 100:.0f}" for n, v in zip(summary["class_names"], summary["per_class_iou"])
                        if v == v)
        lines.append(f"per-class IoU: {per}")
    for name, e in summary.get("entropy", {}).items():
        lines.append(f"entropy {name}: {e['start']['normalized']:.3f} -> {e['end']['normalized']:.3f} "
                     f"(normalized, search start -> end)")
    from ssnas.space.architecture import format_architecture, format_costs
    if summary.get("architecture"):
        text = format_architecture(summary["architecture"])
        if text:
            lines.append(text)
    if summary.get("costs", {}).get("input_size"):
        lines.append(format_costs(summary["costs"]))
    lines.append(f"summary: {out}/summary.json   architecture: {out}/architecture.json   "
                 f"checkpoint: {summary['checkpoint']}")
    if summary.get("plots"):
        lines.append("plots: " + ", ".join(summary["plots"].values()))
    print("\n".join(lines))
    sys.stdout.flush()


"""``ssnas data``: check a dataset (every problem, one per line) or write the demo dataset."""
from __future__ import annotations

import json
import sys

from ssnas.registry import Choices

NAME = "data"


def _formats():
    from ssnas.data.formats import FORMATS
    return FORMATS


def register(subparsers) -> None:
    p = subparsers.add_parser(NAME, help="check a dataset, or write the small demo dataset",
                              description="Datasets: 'check' lists every problem of a dataset (missing pairs, "
                                          "sizes, label values outside the class table) with statistics; 'demo' "
                                          "writes the small generated demo dataset (folder format).")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    check = sub.add_parser("check", help="list every problem of a dataset (exit 2 if any), with statistics",
                           description="Read every image and label of a dataset (folder format or Cityscapes) "
                                       "and list each problem on its own line; exit status 2 if there is any.")
    check.add_argument("path", help="dataset root (folder format or Cityscapes layout)")
    check.add_argument("--format", choices=Choices(_formats), default=None,
                       help="a registered dataset format (folder, cityscapes, ...; default: detected from the layout)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--progress", action="store_true", help="show a progress bar while decoding files")
    check.set_defaults(func=run_check)

    demo = sub.add_parser("demo", help="write the small generated demo dataset (folder format)",
                          description="Write the embedded, exactly labelled demo dataset (street-like scenes) in "
                                      "the folder format: images/, labels/, classes.yaml.")
    demo.add_argument("--out", required=True, help="new or empty folder to write it to (an identical demo "
                      "dataset already there is reused)")
    demo.add_argument("--seed", type=int, default=None, help="random seed of the generated scenes "
                      "(default: the demo's own)")
    demo.add_argument("--preset", default="demo", help="named parameter set (data/demo_presets.py): 'demo' "
                      "(the main job's) or 'proxy' (the studies' proxy scale)")
    demo.set_defaults(func=run_demo)


def run_check(args) -> int:
    from ssnas.data.check import check_dataset

    report = check_dataset(args.path, format=args.format, progress=args.progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(report.summary_lines()))
        for problem in report.problems:
            print(f"ssnas: problem: {problem}", file=sys.stderr)
    return 0 if report.ok else 2


def run_demo(args) -> int:
    from ssnas.data.demo import make_demo_dataset
    from ssnas.data.demo_presets import PRESETS
    from ssnas.errors import UserError

    if args.preset not in PRESETS:
        raise UserError(f"--preset: {args.preset!r} is not one of {', '.join(PRESETS)}")
    seed = {} if args.seed is None else {"seed": args.seed}
    root = make_demo_dataset(args.out, **seed, **PRESETS[args.preset])   # refuses a folder holding anything else
    print(f"demo dataset ready at {root}")
    return 0

"""`ssnas study NAME`: run one of the paper's studies (its sub-runs, tables, figures, verdict) into a folder."""
from __future__ import annotations

from ssnas.cli.search import add_config_arguments


def register(sub) -> None:
    from ssnas.studies import STUDIES

    p = sub.add_parser("study", help="run one of the paper's studies and write its report (tables, figures)",
                       description="Run one of the paper's studies (its sub-runs, tables, figures and verdict) "
                                   "into a results folder; finished sub-runs are reused, partial ones resumed.")
    p.add_argument("name", metavar="NAME", help=f"the study: {', '.join(STUDIES)}")
    add_config_arguments(p, required=True)
    p.add_argument("--out", required=True,
                   help="results folder; finished sub-runs in it are reused, partial ones resumed")
    add_jobs_arguments(p, "OUT/records")
    p.set_defaults(func=run)


def add_jobs_arguments(p, store_default: str) -> None:
    """--jobs and --results, shared with `ssnas reproduce`."""
    p.add_argument("--jobs", type=int, metavar="N", help="sub-runs at once, each in its own process (default: "
                   "CPU cores ÷ run.threads, at least 1; 1 runs them one after another in this process)")
    p.add_argument("--results", metavar="DIR", help=f"the results store: one JSON record per finished sub-run, "
                   f"reused by later runs even without the run folders (default {store_default})")


def run(args) -> int:
    from ssnas.config import load_config
    from ssnas.studies import get_study, run_study

    get_study(args.name)  # an unknown name fails before anything is read or written
    cfg = load_config(args.config, args.overrides)
    results = run_study(args.name, cfg, args.out, progress=lambda msg: print(f"[study] {msg}", flush=True),
                        jobs=args.jobs, store=args.results)
    runs = results["runs"]
    print(f"{results['title']}: {len(runs['started'])} sub-runs run, {len(runs['reused'])} reused, "
          f"{results['wall_time_s'] / 60:.1f} min")
    print(results["verdict"])
    print(f"report: {args.out}/report.md   table: {args.out}/results.csv")
    return 0

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
    """--jobs, --results and --plan, shared with `ssnas reproduce`."""
    p.add_argument("--jobs", type=int, metavar="N", help="sub-runs at once, each in its own process (default: "
                   "CPU cores ÷ run.threads, at least 1; 1 runs them one after another in this process)")
    p.add_argument("--results", metavar="DIR", help=f"the results store: one JSON record per finished sub-run, "
                   f"reused by later runs even without the run folders (default {store_default})")
    p.add_argument("--plan", action="store_true", help="print what is finished, what would run next (and how far "
                   "each partial run got) and a rough estimate of its run-hours, then stop: no sub-run is started and no "
                   "result written")


def run(args) -> int:
    from ssnas.config import load_config
    from ssnas.studies import default_jobs, get_study, run_study

    get_study(args.name)  # an unknown name fails before anything is read or written
    cfg = load_config(args.config, args.overrides)
    if args.plan:
        from ssnas.studies import plan_study
        print_plans([plan_study(args.name, cfg, args.out, args.results)], args.jobs or default_jobs(cfg))
        return 0
    results = run_study(args.name, cfg, args.out, progress=lambda msg: print(f"[study] {msg}", flush=True),
                        jobs=args.jobs, store=args.results)
    runs = results["runs"]
    print(f"{results['title']}: {len(runs['started'])} sub-runs run, {len(runs['reused'])} reused, "
          f"{results['wall_time_s'] / 60:.1f} min")
    print(results["verdict"])
    print(f"report: {args.out}/report.md   table: {args.out}/results.csv")
    return 0


def print_plans(plans: list[dict], jobs: int) -> None:
    """One block per study (``ssnas.studies.plan_study``) and the total: the training epochs still to run
    at each study's measured seconds per epoch (the median over its finished runs, else over every study's)."""
    import statistics

    pooled = [r for p in plans for r in p["seconds_per_epoch"]]
    total_s, unknown = 0.0, False
    for p in plans:
        rates = p["seconds_per_epoch"] or pooled
        rate = statistics.median(rates) if rates else None
        jobs_ = p["to_run"] + p["waiting"]
        epochs = sum(max(0, j["epochs"] - j.get("at_epoch", 0)) for j in jobs_)
        evals = sum(1 for j in jobs_ if j["kind"] != "train")
        if not jobs_:
            print(f"{p['study']}: {p['done']} sub-runs finished, nothing to run")
            continue
        partial = [f"{j['name']} at epoch {j['at_epoch']}/{j['epochs']}" for j in p["to_run"] if j["at_epoch"]]
        est = f"≈ {epochs * rate / 3600:.1f} run-hours" if rate else "no finished run to time it by"
        unknown |= rate is None
        total_s += epochs * (rate or 0.0)
        print(f"{p['study']}: {p['done']} finished; {len(p['to_run'])} to run now"
              + (f" ({', '.join(partial)} resume)" if partial else "")
              + (f", {len(p['waiting'])} waiting for their checkpoints" if p["waiting"] else "")
              + f"; {epochs} training epochs ({est})" + (f" and {evals} evaluations" if evals else ""))
        for j in p["to_run"]:
            print(f"  next: {j['name']} ({j['kind']}" + (f", {j['epochs']} epochs" if j["kind"] == "train" else "")
                  + ")")
    timed = (f"≈ {total_s / 3600:.1f} run-hours listed, ≈ {total_s / 3600 / max(1, jobs):.1f} h of wall time at "
             f"--jobs {jobs}" + (" (studies without a timed run not counted)" if unknown else "")) \
        if total_s else "not timed yet (no finished run)"
    print(f"in all: {timed}; sub-runs a study asks for only once others have finished are not listed")

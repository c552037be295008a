"""The paper's studies (§4.2-4.5), each one module run by ``ssnas study NAME``.

A study module provides ``TITLE`` (str), ``run(cfg, study_dir, progress) -> dict`` and
``verdict(results) -> str``. ``run`` trains its sub-runs through ``study_dir``, a
:class:`ssnas.studies.common.StudyDir`, and returns JSON-able results with at least ``paper`` (what the
paper reports), ``markdown`` (tables laid out like the paper's), ``rows`` (for ``results.csv``) and
``figures`` (PNG names in the study's folder).
``verdict`` states, from the numbers, whether the paper's trend held: each claim's difference with its 95%
CI and a three-way word by the rules of :mod:`ssnas.studies.stats`. Adding a study: one module and one
line in ``STUDIES``.
"""
from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path

from ssnas.errors import UserError

# name → module under ssnas.studies
STUDIES = {
    "calibration": "ssnas.studies.calibration",         # how the proxy scale was chosen (issue 11)
    "discretization": "ssnas.studies.discretization",   # Fig. 2a, 2b
    "entropy": "ssnas.studies.entropy",                 # Table 2, Fig. 3
    "entropy-table": "ssnas.studies.entropy_table",     # Table 1
    "two-stage": "ssnas.studies.two_stage",             # Tables 4, 6
    "splits": "ssnas.studies.splits",                   # Table 7
    "hessian": "ssnas.studies.hessian",                 # Fig. 4
    "cost": "ssnas.studies.cost",                       # the mIoU-cost front (issue 16; not in the paper)
    "space-compare": "ssnas.studies.space_compare",     # grid vs dense space (issue 15, the paper's future work)
}
# Studies that are not the paper's: `ssnas reproduce` runs them only when named with --only.
NOT_REPRODUCED = ("cost", "space-compare")


def get_study(name: str):
    if name not in STUDIES:
        raise UserError(f"study {name!r}: unknown, expected one of {', '.join(STUDIES)}")
    return importlib.import_module(STUDIES[name])


def default_jobs(cfg) -> int:
    """As many sub-runs at once as the cores allow at ``run.threads`` threads each (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // (cfg.run.threads or cores))  # unset: torch takes every core


def run_study(name: str, cfg, out_dir: str | Path, progress=print, jobs: int | None = None,
              store: str | Path | None = None) -> dict:
    """Run study ``name`` into ``out_dir`` and write report.md, results.csv and results.json there.

    ``jobs``: sub-runs at once (default :func:`default_jobs`); ``store``: the results store folder
    (default ``out_dir/records``)."""
    from ssnas.config import dump_config
    from ssnas.studies.common import StudyDir, write_csv
    from ssnas.studies.jobs import StudyStopped, SubRunsFailed, run_passes

    module = get_study(name)
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs: {jobs} is not valid, expected a positive number of processes")
    study_dir = StudyDir(out_dir, progress, store=store, jobs=jobs or default_jobs(cfg))
    fresh = study_dir.claim(name, cfg)
    start = time.time()
    try:
        results = run_passes(lambda: module.run(cfg, study_dir, progress), study_dir.scheduler)
    except UserError as exc:
        if fresh and not isinstance(exc, (StudyStopped, SubRunsFailed)):
            study_dir.release()  # a config mistake: leave no folder that would refuse the corrected config
        raise
    results.update(study=name, title=module.TITLE, wall_time_s=time.time() - start,
                   train_time_s=study_dir.train_time_s,
                   runs={"started": list(study_dir.started), "reused": list(study_dir.reused)})
    results["verdict"] = module.verdict(results)
    out = study_dir.path
    write_csv(out / "results.csv", results["rows"])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report = [f"# {module.TITLE}", "", f"**Paper:** {results['paper']}", "", results["markdown"], ""]
    report += [f"![{fig}]({fig})" for fig in results["figures"]]
    report += ["", "## Verdict", "", results["verdict"], "",
               f"Sub-runs: {len(study_dir.started)} run now, {len(study_dir.reused)} reused; the exact config of "
               f"each is in `configs/<name>.yaml`, its run in `runs/<name>/`.", "",
               "## Study config", "", "```yaml", dump_config(cfg).rstrip(), "```", ""]
    (out / "report.md").write_text("\n".join(report))
    return results


def plan_study(name: str, cfg, out_dir: str | Path, store: str | Path | None = None) -> dict:
    """What ``run_study`` would run next, read from the results store and the run folders; writes nothing
    there (the pass's own outputs go to a scratch folder).

    {"done": n, "to_run": [{"name", "epochs", "at_epoch"}], "waiting": [{"name", "epochs", "needs"}],
    "seconds_per_epoch": [one per finished train sub-run]}; ``at_epoch``: how far a run folder already got
    (it resumes from there)."""
    from ssnas.engine.logger import read_metrics
    from ssnas.studies.common import RECORDS, StudyDir
    from ssnas.studies.jobs import plan_passes

    import tempfile

    module = get_study(name)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="ssnas-plan-") as scratch:   # the pass's figures and configs
        study_dir = StudyDir(scratch, store=store if store is not None else out_dir / RECORDS, runs_root=out_dir)
        plan = plan_passes(lambda: module.run(cfg, study_dir, lambda msg: None), study_dir.scheduler)

    def epochs(job) -> int:
        return int(job.cfg.protocol.epochs) if job.kind == "train" else 0

    def at_epoch(job) -> int:
        path = Path(job.out) / "metrics.jsonl"
        if job.kind != "train" or not path.is_file():
            return 0
        done = [r.get("epoch", 0) for r in read_metrics(path) if "epoch" in r]
        return int(max(done, default=0))

    rates = [r["wall_time_s"] / r["summary"]["epochs"] for r in plan["records"].values()
             if r["kind"] == "train" and r["summary"].get("epochs")]
    return {"study": name, "done": len(plan["records"]),
            "to_run": [{"name": j.name, "kind": j.kind, "epochs": epochs(j), "at_epoch": at_epoch(j)}
                       for j in plan["to_run"]],
            "waiting": [{"name": n, "kind": plan["requested"][n].kind, "epochs": epochs(plan["requested"][n]),
                         "needs": needs} for n, needs in plan["waiting"].items()],
            "seconds_per_epoch": rates}

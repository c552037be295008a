"""Wall time of one study with ``--jobs 1`` and ``--jobs N``, each from scratch, and whether the results agree.

    python bench/bench_jobs.py --study entropy --config configs/studies/entropy-mini.yaml \\
        --set study.seeds=[0] --jobs 1 2

Each setting runs ``ssnas study`` in a fresh folder (its own results store, so nothing is reused) as a
subprocess, one setting after the other; the rows of the reports (every measured number) must be equal.
Prints one line per setting and a JSON summary (``--json`` writes it to a file).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(study: str, config: str, sets: list[str], jobs: int, folder: Path) -> dict:
    cmd = [sys.executable, "-m", "ssnas", "study", study, "--config", config, "--out", str(folder / "out"),
           "--results", str(folder / "records"), "--jobs", str(jobs)]
    cmd += [a for s in sets for a in ("--set", s)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_jobs: --jobs {jobs} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    results = json.loads((folder / "out" / "results.json").read_text())
    return {"jobs": jobs, "wall_s": wall, "sub_runs": len(results["runs"]["started"]),
            "train_time_s": results["train_time_s"], "rows": results["rows"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="entropy")
    p.add_argument("--config", default="configs/studies/entropy-mini.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", help="write the summary here")
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_jobs-") as tmp:
        for jobs in args.jobs:
            r = run_once(args.study, args.config, args.sets, jobs, Path(tmp) / f"jobs{jobs}")
            runs.append(r)
            print(f"--jobs {jobs}: {r['wall_s']:.1f} s wall for {r['sub_runs']} sub-runs "
                  f"({r['train_time_s']:.1f} s of training summed over them)", flush=True)
    same = all(r["rows"] == runs[0]["rows"] for r in runs)
    base = runs[0]["wall_s"]
    for r in runs[1:]:
        print(f"--jobs {r['jobs']} took {r['wall_s'] / base:.2f}x the wall time of --jobs {runs[0]['jobs']}")
    print(f"results identical across settings: {same}")
    summary = {"command": " ".join(sys.argv), "study": args.study, "config": args.config, "sets": args.sets,
               "cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(),
               "loadavg_at_end": os.getloadavg(), "identical": same,
               "runs": [{k: v for k, v in r.items() if k != "rows"} for r in runs]}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

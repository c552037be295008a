"""The main job's val mIoU, before and after a change, over several seeds: is "after" at least as good?

    python bench/demo_seeds.py --before ../wt-before --after . --seeds 0 1 2 3 4 \\
        --records bench/results/demo-seeds

Each seed runs ``ssnas search --config demo --set seed=N`` once in each checkout (its own code, its own
``data/demo``), the two side by side (one compute thread each, as the demo config sets), so both see the
same load. Each finished run's summary goes to ``--records/<label>-s<seed>.json`` and is skipped when
run again, so the comparison resumes after a kill.

The rule was fixed before any run: the claim "after is at least as good as before" is judged by
:func:`ssnas.studies.stats.at_least` on the seed-paired 95 % CI of (after − before), with the studies'
non-inferiority margin (``stats.MARGIN``, 2 % of before's mean). One seed's val mIoU is not judged.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ssnas.studies import stats  # noqa: E402


def run_one(label: str, checkout: Path, seed: int, records: Path, sets: list[str]) -> dict:
    record = records / f"{label}-s{seed}.json"
    if record.exists():
        return json.loads(record.read_text())
    out = Path("runs") / "demo-seeds" / f"s{seed}"
    cmd = [sys.executable, "-m", "ssnas", "search", "--config", "demo", "--out", str(out), "--overwrite",
           "--set", f"seed={seed}"] + [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, PYTHONPATH=str(checkout / "src"))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"demo_seeds: {label} seed {seed} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = json.loads((checkout / out / "summary.json").read_text())
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True,
                         text=True).stdout.strip()
    row = {"label": label, "seed": seed, "commit": rev, "miou": summary["miou"],
           "entropy": summary.get("entropy"), "wall_s": wall, "loadavg_at_end": os.getloadavg(),
           "command": " ".join(cmd), "cpu": platform.processor() or platform.machine()}
    records.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(row, indent=1))
    tmp.replace(record)
    print(f"{label} seed {seed} ({rev}): val mIoU {100 * row['miou']:.1f} %, {wall:.0f} s wall", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="checkout of the reference version")
    p.add_argument("--after", type=Path, required=True, help="checkout of the changed version")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--records", type=Path, default=Path("bench/results/demo-seeds"))
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="an override passed to both versions")
    args = p.parse_args()
    records = args.records.resolve()
    rows = []
    with ThreadPoolExecutor(max_workers=2) as pool:   # one seed's pair at a time, side by side
        for seed in args.seeds:
            pair = [pool.submit(run_one, label, checkout.resolve(), seed, records, args.sets)
                    for label, checkout in (("before", args.before), ("after", args.after))]
            rows += [f.result() for f in pair]
    before = stats.by_seed(rows, "miou", label="before")
    after = stats.by_seed(rows, "miou", label="after")
    iv = stats.difference(after, before)
    ref = stats.mean_interval(list(before.values()))
    margin = stats.MARGIN * ref.mean
    word = stats.at_least(iv, margin)
    for label, values in (("before", before), ("after", after)):
        m = stats.mean_interval(list(values.values()))
        print(f"{label}: val mIoU {100 * m.mean:.1f} % (95% CI [{100 * m.low:.1f}, {100 * m.high:.1f}]) over "
              f"seeds {sorted(values)}: " + ", ".join(f"{100 * values[s]:.1f}" for s in sorted(values)))
    print(f"after − before: {iv.text(100, ' points')}; margin −{100 * margin:.2f} points (2 % of before)")
    print(f"'after is at least as good as before': {stats.verdict_text(word, iv, 100, ' points')}")
    summary = {"command": " ".join(sys.argv), "rows": rows, "difference": iv.__dict__, "margin": margin,
               "verdict": word, "platform": platform.platform()}
    (records / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

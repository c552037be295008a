"""Soak test of exact resume (not collected by pytest): many kill/resume chains, each compared bitwise with
one uninterrupted run. Each chain draws its kill points from the seeded RNG (see ``tests/test_resume.py``:
self-SIGKILL or self-SIGTERM in a step, self-SIGKILL in a last.pt write, SIGKILL or SIGTERM from outside at a
random time).

    .venv/bin/python tests/soak/soak_resume.py --chains 12 --kills 5 --seed 1

Prints one line per chain and the totals; exits 1 if any chain differs from the reference.
"""
from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the helpers of test_resume.py

import test_resume as R  # noqa: E402

KINDS = ("step", "termstep", "save", "time", "term")


def chain_plans(rng: random.Random, kills: int, reference_s: float) -> list:
    """Increasing step kills interleaved with the other kinds, in a random order."""
    steps = iter(sorted(rng.randrange(0, R.TOTAL_STEPS) for _ in range(kills)))
    plans = []
    for _ in range(kills):
        kind = rng.choice(KINDS)
        value = {"step": lambda: next(steps), "termstep": lambda: next(steps), "save": lambda: rng.randint(1, 2),
                 "time": lambda: rng.uniform(0.05, 0.9) * reference_s,
                 "term": lambda: rng.uniform(0.05, 0.9) * reference_s}[kind]()
        plans.append((kind, value))
    return plans


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=12)
    ap.add_argument("--kills", type=int, default=5, help="kill points per chain")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    from ssnas.data.demo import make_demo_dataset

    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="ssnas-soak-"))
    root = base / "demo"
    make_demo_dataset(root, seed=0, n_train=8, n_val=4, size=(64, 128))
    ref = base / "reference"
    code, reference_s = R.run_forked(R.search_argv(root, ref), base / "reference.log")
    assert code == 0, (base / "reference.log").read_text()[-2000:]
    print(f"reference: {R.TOTAL_STEPS} steps in {reference_s:.1f}s ({base})", flush=True)
    totals, planned, failures = collections.Counter(), collections.Counter(), 0
    started = time.monotonic()
    for c in range(args.chains):
        plans = chain_plans(rng, args.kills, reference_s)
        planned.update(kind for kind, _ in plans)
        out = base / f"chain{c:03d}"
        counts = R.kill_and_resume(root, out, plans, base / f"chain{c:03d}.log")
        totals.update(counts)
        try:
            R.assert_same_run(out, ref)
            verdict = "identical"
        except AssertionError as exc:
            failures += 1
            verdict = f"DIFFERS: {str(exc).splitlines()[0][:200]}"
        print(f"chain {c:3d}: {counts['killed']} killed, {counts['terminated']} SIGTERM, "
              f"{counts['rounds']} processes: {verdict}   plans {[(k, round(v, 2)) for k, v in plans]}", flush=True)
    print(f"total: {args.chains} chains, {totals['rounds']} processes, {totals['killed']} SIGKILLs and "
          f"{totals['terminated']} SIGTERMs landed (planned {dict(planned)}), "
          f"{totals['finished_early']} chains finished before their last plan, {failures} differ from the "
          f"reference; {time.monotonic() - started:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

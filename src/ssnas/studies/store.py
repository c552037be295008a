"""The results store: one small JSON record per finished sub-run, meant to be committed to the repository.

A reproduction may outlive a working session and move to another machine, while run folders (checkpoints)
stay behind. So every finished sub-run's numbers — its ``summary.json`` without machine paths, its
``metrics.jsonl`` records without per-class lists, the study's measures of its checkpoint — go into
``<store>/<run>.json`` with the key its reuse is checked by (``key``: the config hash, with the checkpoint
paths of other sub-runs replaced by their own keys, so that the key does not depend on ``--out``) and where
and when the numbers were made (date, machine, CPU model, torch version, git commit). Records are written
atomically the moment a sub-run finishes.
"""
from __future__ import annotations

import datetime
import functools
import json
import platform
import subprocess
from pathlib import Path

from ssnas.engine.checkpoint import atomic_write_bytes
from ssnas.errors import UserError

SUMMARY_DROP = ("checkpoint", "plots")     # machine paths: not numbers, and wrong on another machine
METRICS_DROP = ("per_class_iou",)          # per epoch, the bulkiest field; the final one stays in the summary


def write_json(path: Path, data) -> None:
    """Atomically (temp file + rename): a crash leaves the old record or the new one, never half of one."""
    text = json.dumps(data, indent=1) + "\n"
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def read_json(path: Path, expected: str) -> dict:
    """The JSON mapping in ``path``; a damaged one (a crash of another tool, an edit) is one line naming the
    file and ``expected`` (what it should hold and what to do), not a traceback and not silently skipped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc}), expected {expected}") from None
    except ValueError as exc:   # JSONDecodeError and UnicodeDecodeError
        raise UserError(f"{path}: not valid JSON ({str(exc)[:80]}), expected {expected}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: holds a {type(data).__name__}, expected {expected}")
    return data


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """Where numbers come from: machine, CPU model, torch version and the git commit of the ssnas source."""
    import torch

    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "torch": torch.__version__, "git_commit": _git_commit()}


# What ``ssnas reproduce`` itself writes into a checkout: changes there do not make the code dirty (otherwise
# every sub-run after the first document rebuild would be recorded as ``+dirty``).
GENERATED = (":(top,exclude)docs/reproduction*", ":(top,exclude)docs/img/reproduction",
             ":(top,exclude)results/reproduction")


def _git_commit(here: Path | None = None) -> str | None:
    """HEAD of the checkout ssnas is imported from, ``+dirty`` with uncommitted changes to anything but the
    reproduction's own outputs (``GENERATED``); None outside git."""
    here = here or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                *GENERATED], cwd=here, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """``<path>/<run>.json`` records of one study's sub-runs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / f"{name}.json"

    def load(self, name: str) -> dict | None:
        path = self.file(name)
        return self._read(path) if path.is_file() else None

    def save(self, record: dict) -> None:
        write_json(self.file(record["name"]), record)

    def records(self) -> list[dict]:
        return [self._read(p) for p in sorted(self.path.glob("*.json"))]

    @staticmethod
    def _read(path: Path) -> dict:
        return read_json(path, f"a sub-run record of `ssnas study` (delete it to run sub-run {path.stem} again)")


def train_record(name: str, key: str, summary: dict, metrics: list[dict], measures: dict, train_key: str = "") -> dict:
    return {"name": name, "kind": "train", "key": key, "train_key": train_key, "finished": now(), **provenance(),
            "wall_time_s": summary.get("wall_time_s", 0.0),
            "summary": {k: v for k, v in summary.items() if k not in SUMMARY_DROP},
            "metrics": [{k: v for k, v in r.items() if k not in METRICS_DROP} for r in metrics],
            "measures": measures}


def evaluation_record(name: str, key: str, result: dict, wall_time_s: float) -> dict:
    return {"name": name, "kind": "evaluation", "key": key, "finished": now(), **provenance(),
            "wall_time_s": wall_time_s, "result": result}


def provenance_head(records: list[dict]) -> dict:
    """What a document built from ``records`` states about them: dates (the first sub-run's start, the last
    one's end), machines, wall time, commits."""
    def started(r: dict) -> str:   # a record keeps when it finished and how long it ran
        end = datetime.datetime.fromisoformat(r["finished"])
        return (end - datetime.timedelta(seconds=float(r["wall_time_s"]))).isoformat(timespec="seconds")

    starts, dates = sorted(started(r) for r in records), sorted(r["finished"] for r in records)
    machines = sorted({f"{r['platform']}, CPU {r['cpu']}, torch {r['torch']}" for r in records})
    runs = {r.get("train_key") or f"record {n}": r["wall_time_s"] for n, r in enumerate(records)}  # shared: once
    return {"records": len(records), "first": starts[0] if starts else None, "last": dates[-1] if dates else None,
            "machines": machines, "wall_time_s": sum(runs.values()), "computations": len(runs),
            "git_commits": sorted({str(r["git_commit"]) for r in records})}

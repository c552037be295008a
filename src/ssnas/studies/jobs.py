"""Running a study's sub-runs in parallel processes, and from the results store.

A study's ``run`` is plain sequential code: it asks :class:`~ssnas.studies.common.StudyDir` for sub-runs
(``train``, ``evaluation``) and uses their numbers. The :class:`Scheduler` runs it in *passes*:

- a sub-run whose record is in the store (same key) returns its stored numbers at once;
- one that is not finished is recorded as *pending* and returns :data:`PENDING`, a placeholder that lets
  the rest of the pass go on (so later, independent sub-runs are found too);
- one whose config names the checkpoint of an unfinished sub-run is *deferred* to a later pass; one that
  names the checkpoint of a sub-run known only from the store re-trains that sub-run first (the store keeps
  numbers, not checkpoints).

Then the pending set runs, ``jobs`` processes at a time (spawned; each sets torch threads to ``run.threads``
through its Trainer; ``jobs == 1`` runs them in this process), each writing its record the moment it
finishes. Passes repeat until one completes with nothing pending: only that pass's results are returned,
built from stored numbers alone, so serial and parallel runs give the same report. Sub-runs that fail are
listed (name and one-line reason; the traceback goes to ``error.txt`` in the run folder) after the others
finished; running the same command again re-does just those. SIGTERM (or Ctrl-C) reaches every running
sub-run, which checkpoints and stops: the same command resumes them.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ssnas.config import config_hash, digest, identity, to_dict
from ssnas.errors import UserError, one_line
from ssnas.engine.checkpoint import atomic_write_bytes
from ssnas.studies.store import ResultStore, evaluation_record, train_record, write_json

ERROR_FILE = "error.txt"
NOT_TRAINED = ("name", "study")   # config keys the engine never reads: left out of a sub-run's train key


class _Pending:
    """A number that is not computed yet. Every operation on it gives it back (or nan, False, "…"), so a
    study's code runs through a planning pass without special cases; the pass's results are thrown away."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __getitem__(self, key):
        return self

    def __iter__(self):
        return iter((self,))

    def __len__(self):
        return 1

    def __contains__(self, item):
        return True

    def __bool__(self):
        return False

    def __float__(self):
        return math.nan

    def __int__(self):
        return 0

    def __format__(self, spec):
        return "…"

    def __repr__(self):
        return "PENDING"

    def _self(self, *args):
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _self
    __floordiv__ = __rfloordiv__ = __pow__ = __rpow__ = __neg__ = __abs__ = __round__ = _self
    __lt__ = __le__ = __gt__ = __ge__ = lambda self, other: False
    __hash__ = object.__hash__


PENDING = _Pending()


class Stopped(Exception):
    """A sub-run stopped by a signal; its checkpoint is written."""


class StudyStopped(UserError):
    """A signal stopped the study's sub-runs (checkpointed): the same command resumes them."""


class SubRunsFailed(UserError):
    """Some sub-runs failed (the others finished and are stored): the same command re-does only those."""


@dataclass
class SubRun:
    """One unit of work: a Trainer run (``train``) or an evaluation of ``cfg.model`` (``evaluation``)."""
    kind: str
    name: str
    cfg: object
    out: Path                       # the run folder (train) or the evals/<name>.json file
    store: ResultStore
    key: str = ""
    train_key: str = ""             # what is computed, whatever study asks (``Scheduler.train_key``)
    task: object = None
    measure: Callable | None = None  # measure(checkpoint path) -> JSON dict, stored with the record
    retrain: bool = False            # the record exists but its checkpoint is needed and missing


def measure_key(measure: Callable) -> str:
    """A stable name for a measure and its keyword arguments (a ``functools.partial`` of a module function)."""
    func = getattr(measure, "func", measure)
    kwargs = getattr(measure, "keywords", {}) or {}
    return f"{func.__module__}.{func.__qualname__}({json.dumps(kwargs, sort_keys=True, default=list)})"


def checkpoint_of(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


# ---------------------------------------------------------------------------- one sub-run (any process)
def execute(job: SubRun) -> None:
    """Run ``job`` and write its record; raises :class:`Stopped` when a signal stopped it."""
    if job.kind == "train":
        from ssnas.engine.logger import read_metrics
        from ssnas.engine.trainer import Trainer

        out = job.out
        finished = (out / "summary.json").is_file()
        resume = (out / "config.yaml").is_file() and not (finished and job.retrain)
        summary = Trainer(job.cfg, out, task=job.task, resume=resume, overwrite=finished and job.retrain,
                          costs=False).run()   # many sub-runs: no end-of-run FLOP counts (a study measures its own)
        if "stopped" in summary:
            raise Stopped(summary["stopped"])
        measures = {measure_key(job.measure): job.measure(str(checkpoint_of(out)))} if job.measure else {}
        job.store.save(train_record(job.name, job.key, summary, read_metrics(out / "metrics.jsonl"), measures,
                                    train_key=job.train_key))
    else:
        from ssnas.tasks.segmentation import SegmentationTask

        start = time.time()
        task = SegmentationTask(job.cfg)
        model = task.build_model()
        metrics = task.evaluate(model)
        result = {"miou": metrics["miou"], "edges": model.num_edges(), "config_hash": config_hash(job.cfg)}
        write_json(job.out, result)
        job.store.save(evaluation_record(job.name, job.key, result, time.time() - start))


def _error_file(job: SubRun) -> Path:
    return job.out / ERROR_FILE if job.kind == "train" else job.out.with_suffix(".error.txt")


def _attempt(job: SubRun) -> tuple[str, str | None]:
    """("done", None), ("stopped", signal name) or ("failed", one-line reason, traceback kept in a file)."""
    try:
        execute(job)
        return "done", None
    except Stopped as exc:
        return "stopped", str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure of one sub-run is reported, the others go on
        path = _error_file(job)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(traceback.format_exc())
        except OSError:
            pass
        reason = str(one_line(exc)) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        return "failed", f"{reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__} ({path})"


def _child(job: SubRun, conn) -> None:
    """A spawned process: one sub-run, the outcome sent back (the record itself goes to the store)."""
    conn.send(_attempt(job))
    conn.close()


# ---------------------------------------------------------------------------- the passes
@dataclass
class Scheduler:
    """A study's sub-runs: reuse from the store, the pending set of a pass, failures across passes."""
    study_dir: object
    store: ResultStore
    jobs: int = 1
    failed: dict = field(default_factory=dict)       # name -> one-line reason (this invocation)
    ran_now: set = field(default_factory=set)        # names trained or evaluated by this invocation
    checkpoints: dict = field(default_factory=dict)  # checkpoint path handed out -> sub-run name
    dry: bool = False   # a plan (``plan_passes``): read the store, run, measure and write nothing

    def begin_pass(self) -> None:
        sd = self.study_dir
        sd.started, sd.reused, sd.train_time_s = [], [], 0.0
        self.pending: dict[str, SubRun] = {}
        self.deferred: dict[str, list[str]] = {}
        self.requested: dict[str, SubRun] = {}
        self.records: dict[str, dict] = {}

    # ------------------------------------------------------------ requests from the study's code
    def request(self, job: SubRun):
        """The sub-run's numbers (train: its summary, + ``measure``; evaluation: miou, edges) or PENDING."""
        job.key = self.key(job.cfg)
        if job.kind == "train":
            job.train_key = self.train_key(job.cfg)
        self.requested[job.name] = job
        record = self._finished(job)
        if record is not None:
            first = job.name not in self.records
            self.records[job.name] = record
            if first:
                (self.study_dir.started if job.name in self.ran_now else self.study_dir.reused).append(job.name)
                self.study_dir.train_time_s += record["wall_time_s"] if job.kind == "train" else 0.0
            else:
                self.study_dir.reused.append(job.name)  # asked for twice in one study (a shared run)
            return _numbers(record, job)
        if job.name in self.failed:
            return PENDING
        blocked = [d for d in self._dependencies(job.cfg) if not self._ready(d)]
        if blocked:
            self.deferred[job.name] = blocked
        else:
            self.pending.setdefault(job.name, job)
        return PENDING

    def metrics(self, name: str):
        """The metrics.jsonl records of a finished sub-run (from its record), PENDING otherwise."""
        record = self.records.get(name)
        return record["metrics"] if record is not None else PENDING

    def checkpoint(self, name: str, path: str) -> str:
        self.checkpoints[path] = name
        return path

    def key(self, cfg) -> str:
        """The config hash (default-valued keys left out, as :func:`~ssnas.config.config_hash` does), with
        checkpoint paths of sub-runs replaced by those sub-runs' own keys: the same wherever ``--out`` is, and
        changed whenever what a checkpoint comes from changes."""
        return self._digest(identity(cfg), lambda name, dep: f"<checkpoint of {name}, key {dep.key if dep else None}>")

    def train_key(self, cfg) -> str:
        """What a training computes, whichever study asks for it: the config's identity without the keys
        that only name it or steer the study's code (``name``, ``study``), checkpoint paths replaced by the
        train keys of the sub-runs they come from. Two studies' sub-runs with the same train key are the same
        run (the engine reads neither key), so one record serves both (:meth:`_shared`)."""
        ident = {k: v for k, v in identity(cfg).items() if k not in NOT_TRAINED}
        return self._digest(ident, lambda name, dep: f"<checkpoint of train key {dep.train_key if dep else None}>")

    def _digest(self, ident: dict, checkpoint_label: Callable) -> str:
        """``digest`` of ``ident`` with each checkpoint path of a sub-run replaced by
        ``checkpoint_label(its name, its SubRun or None)``."""
        def walk(node):
            if isinstance(node, dict):
                return {k: walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            if isinstance(node, str) and node in self.checkpoints:
                name = self.checkpoints[node]
                return checkpoint_label(name, self.requested.get(name))
            return node
        return digest(walk(ident))

    def _dependencies(self, cfg) -> list[str]:
        found = []

        def walk(node):
            if isinstance(node, dict):
                for v in node.values():
                    walk(v)
            elif isinstance(node, str) and node in self.checkpoints:
                found.append(self.checkpoints[node])
        walk(to_dict(cfg))
        return found

    def _ready(self, name: str) -> bool:
        """The checkpoint of sub-run ``name`` is there to build on; re-train it when only its record is."""
        job = self.requested.get(name)
        if name not in self.records or job is None:
            return False
        if checkpoint_of(job.out).is_file():
            return True
        shared = self.records[name].get("reused_from")
        if shared and self._copy_checkpoint(job, shared):
            return True
        self.pending.setdefault(name, replace(job, retrain=True))
        return False

    def _finished(self, job: SubRun) -> dict | None:
        """The record of a finished ``job``: from the store, or adopted from a finished run folder."""
        record = self.store.load(job.name)
        if record is not None and record.get("key") == job.key:
            if job.kind == "train" and record.get("train_key") != job.train_key and not self.dry:
                record["train_key"] = job.train_key   # a record from before train keys: other studies may share it
                self.store.save(record)
            if job.measure is None or measure_key(job.measure) in record["measures"]:
                return record
            if self.dry:
                return None
            ckpt = checkpoint_of(job.out)
            if ckpt.is_file():  # a new measure of a kept checkpoint
                record["measures"][measure_key(job.measure)] = job.measure(str(ckpt))
                self.store.save(record)
                return record
            return None
        if self.dry:
            return self._shared(job)
        return self._adopt(job) or self._shared(job)

    def _shared(self, job: SubRun) -> dict | None:
        """The same training finished for another study of the same results store (a sibling folder of this
        study's store named after a study, as ``ssnas reproduce`` lays them out:
        ``results/reproduction/proxy/<study>/``): its record, under this sub-run's name,
        with ``reused_from`` naming where it came from. Its checkpoint (needed for a measure or a sub-run that
        builds on it) is copied from that study's run folder beside this one, if there; without it a measure
        cannot be taken, and the sub-run runs here."""
        if job.kind != "train":
            return None
        found = self._shared_index().get(job.train_key)
        if found is None:
            return None
        study, source = found
        record = dict(source, name=job.name, key=job.key, measures=dict(source["measures"]),
                      reused_from=source.get("reused_from") or f"{study}/{source['name']}")
        need = job.measure is not None and measure_key(job.measure) not in record["measures"]
        if self.dry:   # a plan: the measure will be taken on the copied checkpoint, if there is one to copy
            if need and not self._source_checkpoint(record["reused_from"]).is_file():
                return None
            if need:
                record["measures"][measure_key(job.measure)] = PENDING
            return record
        if need:
            if not self._copy_checkpoint(job, record["reused_from"]):
                return None
            record["measures"][measure_key(job.measure)] = job.measure(str(checkpoint_of(job.out)))
        self.store.save(record)
        return record

    def _shared_index(self) -> dict:
        """train key -> (study, record) of the finished trainings in the sibling stores (read once)."""
        if getattr(self, "_index", None) is None:
            from ssnas.studies import STUDIES

            self._index = {}
            root, own = self.store.path.parent, self.store.path.resolve()
            siblings = sorted(d for d in root.iterdir() if d.name in STUDIES and d.resolve() != own) \
                if root.is_dir() else []
            for folder in siblings:
                for record in ResultStore(folder).records():
                    if record.get("train_key") and record.get("kind") == "train" and "reused_from" not in record:
                        self._index.setdefault(record["train_key"], (folder.name, record))
        return self._index

    def _source_checkpoint(self, reused_from: str) -> Path:
        """Where a shared record's checkpoint is: ``<out>/<study>/runs/<run>`` beside this study's folder."""
        study, _, run = reused_from.partition("/")
        return checkpoint_of(self.study_dir.runs_root.parent / study / "runs" / run)

    def _copy_checkpoint(self, job: SubRun, reused_from: str) -> bool:
        """The shared record's checkpoint into the sub-run's own run folder (atomically); whether the sub-run
        now has one. A plan copies nothing."""
        target, source = checkpoint_of(job.out), self._source_checkpoint(reused_from)
        if target.is_file():
            return True
        if not source.is_file():
            return False
        if not self.dry:
            with open(source, "rb") as f:
                atomic_write_bytes(target, lambda out: shutil.copyfileobj(f, out))
        return True

    def _adopt(self, job: SubRun) -> dict | None:
        """A sub-run finished in the study folder but not in the store (a folder from before the store, or
        another ``--results``): its record is made from the folder without running anything."""
        h = config_hash(job.cfg)
        if job.kind == "evaluation":
            if not job.out.is_file():
                return None
            result = json.loads(job.out.read_text())
            if result.get("config_hash") != h:
                return None
            record = evaluation_record(job.name, job.key, result, 0.0)
        else:
            from ssnas.engine.logger import read_metrics

            path = job.out / "summary.json"
            if not path.is_file():
                return None
            summary = json.loads(path.read_text())
            if summary.get("config_hash") != h or (job.measure and not checkpoint_of(job.out).is_file()):
                return None
            measures = {measure_key(job.measure): job.measure(str(checkpoint_of(job.out)))} if job.measure else {}
            record = train_record(job.name, job.key, summary, read_metrics(job.out / "metrics.jsonl"), measures,
                                  train_key=job.train_key)
        self.store.save(record)
        return record

    # ------------------------------------------------------------ running the pending set
    def run_pending(self) -> None:
        """Run this pass's pending sub-runs; raise UserError when a signal stopped them (resumable)."""
        # Longest first (by epochs; evaluations last): the long run no longer waits behind short ones, so
        # the pass ends sooner on n workers, and a session that stops early has the longest run furthest along.
        jobs = sorted(self.pending.values(), key=_expected_epochs, reverse=True)
        progress = self.study_dir.progress
        waiting = f", {len(self.deferred)} waiting for their checkpoints" if self.deferred else ""
        progress(f"{len(jobs)} sub-run(s) to run, {min(self.jobs, len(jobs))} at a time{waiting}")
        outcomes = run_all(jobs, self.jobs, progress)
        stopped = []
        for job in jobs:
            status, detail = outcomes.get(job.name, ("stopped", "not started"))
            if status == "done":
                self.ran_now.add(job.name)
            elif status == "failed":
                self.failed[job.name] = detail
            else:
                stopped.append(job.name)
        if stopped:
            raise StudyStopped(f"{self.study_dir.path}: stopped ({', '.join(stopped)} checkpointed or not started); "
                            f"run the same command again to resume")

    def unfinished(self) -> str:
        """One line: what failed and what could not run because of it."""
        parts = [f"{n}: {why}" for n, why in self.failed.items()]
        parts += [f"{n}: not run, needs {', '.join(deps)}" for n, deps in self.deferred.items()]
        return "; ".join(parts)


def run_passes(study: Callable[[], dict], scheduler: Scheduler) -> dict:
    """``study()`` in passes until one needs nothing that is not finished; that pass's results."""
    n = 0
    while True:
        n += 1
        scheduler.begin_pass()
        error = None
        try:
            results = study()
        except UserError:
            raise  # a config mistake: before any pending sub-run is spent
        except Exception as exc:  # noqa: BLE001 - a planning pass may trip over a PENDING value
            if not (scheduler.pending or scheduler.deferred or scheduler.failed):
                raise
            error = exc
        if scheduler.pending:
            scheduler.study_dir.progress(f"pass {n}")
            scheduler.run_pending()
            continue
        if scheduler.failed or scheduler.deferred:
            names = sorted(set(scheduler.failed) | set(scheduler.deferred))
            raise SubRunsFailed(f"{len(names)} sub-run(s) of {scheduler.study_dir.path} did not finish — "
                            f"{scheduler.unfinished()} — run the same command again to re-do only these")
        if error is not None:  # pragma: no cover - nothing was pending, so the error is the study's own
            raise error
        return results


def plan_passes(study: Callable[[], dict], scheduler: Scheduler) -> dict:
    """What ``run_passes`` would do next, without doing it: one pass over the results store.

    {"records": {name: record of each finished sub-run}, "to_run": [SubRun], "waiting": {name: [the sub-runs
    whose checkpoints it needs]}, "requested": {name: SubRun}}. Sub-runs that a study only asks for once
    other results are known are not listed: the plan shows the next wave and what waits on it."""
    scheduler.dry = True
    scheduler.begin_pass()
    try:
        study()
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a planning pass may trip over a PENDING value
        if not (scheduler.pending or scheduler.deferred):
            raise
    return {"records": dict(scheduler.records), "to_run": list(scheduler.pending.values()),
            "waiting": dict(scheduler.deferred), "requested": dict(scheduler.requested)}


def run_all(jobs: list[SubRun], n: int, progress) -> dict:
    """name -> (status, detail) for ``jobs``, at most ``n`` at a time (in this process when ``n`` is 1)."""
    outcomes = {}
    if n <= 1:
        for job in jobs:
            progress(f"running {job.name}")
            start = time.time()
            outcomes[job.name] = _attempt(job)
            _report(progress, job, outcomes[job.name], time.time() - start)
            if outcomes[job.name][0] == "stopped":
                break
        return outcomes
    return _run_processes(jobs, n, progress)


def _report(progress, job, outcome, seconds) -> None:
    status, detail = outcome
    if status == "done":
        progress(f"finished {job.name} ({seconds / 60:.1f} min)")
    else:
        progress(f"{status} {job.name}: {detail}")


def _run_processes(jobs: list[SubRun], n: int, progress) -> dict:
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")   # a fresh interpreter: no forked torch thread pools or locks
    queue, running, outcomes = list(jobs), {}, {}
    stop: list[int] = []

    def on_signal(signum, frame):
        stop.append(signum)
        if signum == signal.SIGTERM:  # Ctrl-C reaches the whole process group by itself; SIGTERM does not
            for proc, _, _, _ in running.values():
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGTERM)

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while queue or running:
            while queue and len(running) < n and not stop:
                job = queue.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(job, send), name=f"ssnas-{job.name}")
                proc.start()
                send.close()
                running[proc.sentinel] = (proc, receive, job, time.time())
                progress(f"running {job.name} (process {proc.pid})")
            if not running:
                break
            for sentinel in wait(list(running)):
                proc, receive, job, start = running.pop(sentinel)
                proc.join()
                try:
                    outcome = receive.recv() if receive.poll() else None
                except EOFError:
                    outcome = None
                if outcome is None:
                    outcome = (("stopped", f"exit code {proc.exitcode}") if stop
                               else ("failed", f"the process ended with exit code {proc.exitcode}"))
                outcomes[job.name] = outcome
                _report(progress, job, outcome, time.time() - start)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return outcomes


def _expected_epochs(job: SubRun) -> int:
    """A sub-run's size for ordering: its epochs (an evaluation counts 0); ties keep the study's order."""
    return 0 if job.kind != "train" else int(job.cfg.protocol.epochs)


def _numbers(record: dict, job: SubRun) -> dict:
    """What the study's code gets: the summary (+ ``measure``) of a run, the result of an evaluation."""
    if record["kind"] == "evaluation":
        return dict(record["result"])
    out = dict(record["summary"])
    if job.measure is not None:
        out["measure"] = record["measures"][measure_key(job.measure)]
    return out

"""What every study shares: a results folder of reusable sub-runs, derived configs, and report helpers.

Layout of a study folder ``DIR``::

    DIR/study.json          study name + hash of the study config (a folder serves one study config)
    DIR/runs/<name>/        one Trainer run each (reused when finished, resumed when partial)
    DIR/evals/<name>.json   evaluation-only results (e.g. a pruned supernet without fine-tuning)
    DIR/records/<name>.json the results store (default): every finished sub-run's numbers (studies/store.py)
    DIR/configs/<name>.yaml the exact config of every sub-run
    DIR/report.md, DIR/results.csv, DIR/*.png

Sub-runs go through :class:`ssnas.engine.trainer.Trainer` like any ``ssnas search`` run: a study is only
configuration of the one training loop.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Callable

from ssnas.config import ExperimentConfig, config_hash, dump_config, load_config, to_dict
from ssnas.errors import UserError
from ssnas.space.profile import forward_flops

STUDY_FILE = "study.json"
RECORDS = "records"          # the results store of `ssnas study` (reproduce: --results)
FIG_DPI = 80                  # small PNGs: they go into the docs
FIG_SIZE = (8.0, 3.2)         # two panels side by side


# ---------------------------------------------------------------------------- config helpers
def _nest(dotted: dict) -> dict:
    tree: dict = {}
    for key, value in dotted.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def derive(cfg: ExperimentConfig, changes: dict) -> ExperimentConfig:
    """A sub-run's config: ``cfg`` with dotted-key ``changes`` (validated like a file), without ``study:``.

    The ``study`` section is dropped so that a sub-run's hash depends only on what it trains."""
    from ssnas.config import deep_merge

    data = to_dict(cfg)
    data["study"] = {}
    return load_config(None, deep_merge(data, _nest(changes)))


def study_param(cfg: ExperimentConfig, key: str, kind: type | tuple, expected: str, default=None):
    """``cfg.study[key]`` checked against ``kind``; a missing or wrong value is one UserError line."""
    value = cfg.study.get(key, default)
    if value is None:
        raise UserError(f"study.{key}: missing, expected {expected}")
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UserError(f"study.{key}: {value!r} is not valid, expected {expected}")
    return value


def number_map(cfg: ExperimentConfig, key: str, expected: str) -> dict:
    """A ``name: number`` mapping from the study section (e.g. entropy magnitudes), ordered by value."""
    value = study_param(cfg, key, dict, expected)
    if not value or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in value.values()):
        raise UserError(f"study.{key}: {value!r} is not valid, expected {expected}")
    return {str(k): float(v) for k, v in sorted(value.items(), key=lambda kv: kv[1])}


def seeds_of(cfg: ExperimentConfig) -> list[int]:
    seeds = study_param(cfg, "seeds", list, "a non-empty list of integer seeds, e.g. [0, 1, 2]")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise UserError(f"study.seeds: {seeds!r} is not valid, expected a non-empty list of integer seeds")
    return seeds


def protocol_changes(cfg: ExperimentConfig, key: str) -> dict:
    """``study.<key>``: a mapping of protocol keys (epochs, warmup, …) → dotted ``protocol.*`` changes."""
    value = study_param(cfg, key, dict, "a mapping of protocol keys, e.g. {epochs: 240, warmup: 0.125, ...}")
    return {f"protocol.{k}": v for k, v in value.items()}


# ---------------------------------------------------------------------------- the folder
class StudyDir:
    """A study's results folder; refuses a folder made for another study config.

    Sub-runs are asked for with :meth:`train` and :meth:`evaluation`; whether they are reused from the
    results store, run here or in parallel processes is :class:`ssnas.studies.jobs.Scheduler`'s business."""

    def __init__(self, path: str | Path, progress: Callable[[str], None] | None = None,
                 store: str | Path | None = None, jobs: int = 1, runs_root: str | Path | None = None):
        from ssnas.studies.jobs import Scheduler
        from ssnas.studies.store import ResultStore

        self.path = Path(path)   # the report, figures, configs
        self.runs_root = Path(runs_root) if runs_root is not None else self.path   # runs/ and evals/ (a plan
        # reads a study's sub-runs where they are and writes its figures elsewhere)
        self.progress = progress or (lambda msg: None)
        self.made: Path | None = None   # the folder claim() created
        self.started: list[str] = []
        self.reused: list[str] = []
        self.train_time_s = 0.0   # wall time of the sub-runs the results come from (reused ones included)
        self.scheduler = Scheduler(self, ResultStore(store if store is not None else self.path / RECORDS), jobs)

    def claim(self, study: str, cfg: ExperimentConfig) -> bool:
        """Create the folder or check that it belongs to this study and config; True if claimed just now."""
        from ssnas.outputs import check_output_folder
        from ssnas.studies.store import read_json

        h = config_hash(cfg)
        meta = self.path / STUDY_FILE
        check_output_folder(self.path, "--out")   # a file in the way, an unwritable place: one line
        if meta.is_file():
            saved = read_json(meta, "the study name and config hash that `ssnas study` writes; use another --out")
            if saved.get("study") != study or saved.get("config_hash") != h:
                raise UserError(f"{self.path}: holds results of study {saved.get('study')!r} with another config "
                                f"(hash {saved.get('config_hash')}, this one {h}); use another --out")
            return False
        if self.path.is_dir() and any(self.path.iterdir()):
            raise UserError(f"{self.path}: not empty and holds no {STUDY_FILE}, expected a new or study folder")
        # the topmost folder this claim creates (None: the user's own empty folder), for release()
        self.made = next((p for p in reversed((self.path, *self.path.parents)) if not p.exists()), None)
        self.path.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"study": study, "config_hash": h}, indent=2))
        (self.path / "study.yaml").write_text(dump_config(cfg))
        return True

    def release(self) -> None:
        """Undo a fresh :meth:`claim` after a config mistake, unless some run already wrote a checkpoint: the
        folder was empty, so everything in it is ours; the folder itself only if the claim created it."""
        import shutil

        from ssnas.engine.rundir import remove_entry

        if any(self.path.rglob("*.pt")):
            return
        if self.made is not None:
            shutil.rmtree(self.made)
            return
        for child in self.path.iterdir():
            remove_entry(child)

    def run_path(self, name: str) -> Path:
        return self.runs_root / "runs" / name

    def checkpoint(self, name: str) -> str:
        """The checkpoint path of sub-run ``name``, for the config of a sub-run that builds on it."""
        return self.scheduler.checkpoint(name, str(self.run_path(name) / "checkpoints" / "last.pt"))

    def train(self, name: str, cfg: ExperimentConfig, task=None, measure=None) -> dict:
        """The summary of sub-run ``name``: stored if finished with this config, else run or resumed.

        ``task``: the engine's task (default: segmentation), e.g. a DARTS task for a DARTS study.
        ``measure(checkpoint path) -> dict``: numbers of the final checkpoint, kept with the sub-run's record
        (so a report needs no checkpoint) and returned as ``summary["measure"]``; a module-level function
        or a ``functools.partial`` of one (it runs in the sub-run's process)."""
        from ssnas.studies.jobs import SubRun

        self._save_config(name, cfg)
        return self.scheduler.request(SubRun("train", name, cfg, self.run_path(name), self.scheduler.store,
                                             task=task, measure=measure))

    def evaluation(self, name: str, cfg: ExperimentConfig) -> dict:
        """Evaluate the model that ``cfg.model`` describes (no training), cached in ``evals/<name>.json``."""
        from ssnas.studies.jobs import SubRun

        self._save_config(name, cfg)
        return self.scheduler.request(SubRun("evaluation", name, cfg, self.runs_root / "evals" / f"{name}.json",
                                             self.scheduler.store))

    def metrics(self, name: str) -> list[dict]:
        """The ``metrics.jsonl`` records of finished sub-run ``name`` (kept in its record: no run folder needed)."""
        return self.scheduler.metrics(name)

    def _save_config(self, name: str, cfg: ExperimentConfig) -> None:
        path = self.path / "configs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = dump_config(cfg)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


# ---------------------------------------------------------------------------- numbers
def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def pct(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}%"


def pct_pm(values: list[float]) -> str:
    """``70.9 ± 1.1%`` over seeds, as the paper writes it."""
    m, s = mean_std(values)
    return "n/a" if math.isnan(m) else f"{100 * m:.1f} ± {100 * s:.1f}%"


def human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation (average ranks for ties); nan when undefined."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    if len(xs) < 2:
        return math.nan
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den else math.nan


# ---------------------------------------------------------------------------- report pieces
def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def figure(ncols: int = 2):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=FIG_SIZE if ncols > 1 else (FIG_SIZE[0] / 2, FIG_SIZE[1]),
                             squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: Path) -> str:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return path.name


def decoded_cost(model, input_size: tuple) -> dict:
    """Parameters and forward FLOPs of the plain network a supernet folds into (zero edges/kernels removed)."""
    from ssnas.export.fuse import fuse_supernet

    fused = fuse_supernet(model.eval())
    return {"params": sum(p.numel() for p in fused.parameters()), "flops": forward_flops(fused, input_size)}

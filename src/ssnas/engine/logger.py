"""Per-epoch records to ``metrics.jsonl`` and TensorBoard, and a progress bar with ETA."""
from __future__ import annotations

import json
import math
from pathlib import Path

from tqdm import tqdm


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = v
    return out


class RunLogger:
    """Only the main process logs (``enabled``); the others get a silent logger."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool, progress: bool, total_steps: int,
                 initial_step: int = 0):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(Path(out_dir) / "tb"))
        self.bar = tqdm(total=total_steps, initial=initial_step, disable=not (enabled and progress),
                        dynamic_ncols=True, unit="step", smoothing=0.1)

    def step(self, desc: str, postfix: dict) -> None:
        self.bar.set_description(desc, refresh=False)
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def log(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in _flatten(record).items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def keep_records(path: str | Path, epochs: int) -> None:
    """Keep the records of the first ``epochs`` epochs: a killed run may have logged an epoch that its
    last checkpoint does not hold, and the resumed run logs that epoch again."""
    from ssnas.engine.checkpoint import atomic_write_bytes

    if Path(path).is_file():
        kept = [r for r in read_metrics(path) if r.get("epoch", 0) <= epochs]
        atomic_write_bytes(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in kept).encode()))


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (a torn last line from a killed run is ignored)."""
    records = []
    p = Path(path)
    if not p.is_file():
        return records
    for line in p.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records

"""The output folder of a run: its config, lock, checkpoints, metrics, plots and summary.

A folder holds one run. Starting a run in a folder that already holds a different one (or anything else)
is refused unless ``--overwrite``; ``--resume`` continues the run that is there. Two processes never write
one folder at once: an exclusive ``flock`` on ``.lock`` (released by the kernel even after SIGKILL).
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import yaml

from ssnas.config import config_hash, dump_config
from ssnas.errors import UserError

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "architecture.json", "checkpoints", "tb", "plots", "run.log")


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.plots = self.path / "plots"
        self._lock_fd = None

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    def saved_hash(self) -> str | None:
        cfg = self.path / "config.yaml"
        if not cfg.is_file():
            return None
        data = yaml.safe_load(cfg.read_text()) or {}
        return (data.get("_meta") or {}).get("config_hash")

    def prepare(self, cfg, resume: bool, overwrite: bool) -> bool:
        """Make the folder ready; returns True when there is a checkpoint to resume from."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path}: exists and is not a folder, expected an output folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot create the output folder ({exc.strerror})") from None
        if not os.access(self.path, os.W_OK):
            raise UserError(f"{self.path}: output folder is not writable")
        self.lock()
        h = config_hash(cfg)
        saved = self.saved_hash()
        others = [p.name for p in self.path.iterdir() if p.name != ".lock"]
        if resume and saved is not None:
            if saved != h:
                raise UserError(f"{self.path}: holds a run with a different config (hash {saved}, this one {h}); "
                                f"resume it with its own config ({self.path / 'config.yaml'}) or use another --out")
            for stale in self.checkpoints.glob(".*.tmp"):  # a write cut off by a kill (we hold the lock)
                stale.unlink()
            return self.last.is_file()
        if others and not overwrite:
            what = "a run" if saved is not None else "other files"
            raise UserError(f"{self.path}: already holds {what} ({', '.join(sorted(others)[:4])}); "
                            f"use --resume to continue it, --overwrite to replace it, or another --out")
        if overwrite:
            for name in RUN_FILES:
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        text = dump_config(cfg) + yaml.safe_dump({"_meta": {"config_hash": h}})
        (self.path / "config.yaml").write_text(text)
        return False

    def lock(self) -> None:
        try:
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # e.g. root in a read-only folder, which os.access calls writable
            raise UserError(f"{self.path}: cannot create files in the output folder ({exc.strerror}), "
                            f"expected a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{self.path}: another ssnas run is using this folder (locked); "
                            f"wait for it or use another --out") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

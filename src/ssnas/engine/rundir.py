"""The output folder of a run: its config, lock, checkpoints, metrics, plots and summary.

A folder holds one run, marked by ``.ssnas`` (ssnas.outputs). Starting a run in a folder that already
holds a different one is refused unless ``--overwrite``; a folder of anything else is always refused,
so ``--overwrite`` never deletes another tool's files; ``--resume`` continues the run that is there.
Two processes never write one folder at once: an exclusive ``flock`` on ``.lock`` (released by the
kernel even after SIGKILL).
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import yaml

from ssnas.config import config_hash, dump_config, read_yaml
from ssnas.errors import UserError
from ssnas.outputs import MARKER, check_name_length, has_marker, write_marker

RUN_MARKER_KIND = "run"
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "architecture.json", "checkpoints", "tb", "plots",
             "run.log")


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
        """The hash in the run's ``config.yaml``; None when there is none (or the file is another tool's)."""
        cfg = self.path / "config.yaml"
        if not cfg.is_file():
            return None
        try:
            data = read_yaml(cfg)
        except UserError:
            return None
        meta = data.get("_meta")
        h = meta.get("config_hash") if isinstance(meta, dict) else None
        return h if isinstance(h, str) else None

    def is_run(self) -> bool:
        """The folder holds an ssnas run: its marker, or (runs made before the marker) a hashed config."""
        return has_marker(self.path, RUN_MARKER_KIND) or self.saved_hash() is not None

    def check(self, cfg, resume: bool, overwrite: bool) -> None:
        """Every refusal of :meth:`prepare`, touching nothing: a command calls it first, checks the rest of its
        input (data, checkpoints, model), and only then prepares, so a mistake found late loses nothing."""
        check_name_length(self.path, "--out")
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path}: exists and is not a folder, expected an output folder")
        if not self.path.is_dir():
            return
        saved = self.saved_hash()
        if resume and saved is not None:
            h = config_hash(cfg)
            if saved != h:
                raise UserError(f"{self.path}: holds a run with a different config (hash {saved}, this one {h}); "
                                f"resume it with its own config ({self.path / 'config.yaml'}) or use another --out")
            return
        others = sorted(p.name for p in self.path.iterdir() if p.name not in (".lock", MARKER))
        listing = ", ".join(others[:4])
        if others and not self.is_run():
            raise UserError(f"{self.path}: holds files that are not an ssnas run ({listing}); --overwrite replaces "
                            f"only ssnas runs, expected a new or empty --out")
        if others and not overwrite:
            raise UserError(f"{self.path}: already holds a run ({listing}); "
                            f"use --resume to continue it, --overwrite to replace it, or another --out")

    def prepare(self, cfg, resume: bool, overwrite: bool) -> bool:
        """Make the folder ready; returns True when there is a checkpoint to resume from."""
        self.check(cfg, resume, overwrite)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot create the output folder ({exc.strerror})") from None
        if not os.access(self.path, os.W_OK):
            raise UserError(f"{self.path}: output folder is not writable")
        self.lock()
        self.check(cfg, resume, overwrite)   # again, under the lock: another process may have written since
        if resume and self.saved_hash() is not None:
            for stale in self.checkpoints.glob(".*.tmp"):  # a write cut off by a kill (we hold the lock)
                stale.unlink()
            return self.last.is_file()
        if overwrite and self.is_run():
            for name in RUN_FILES:
                remove_entry(self.path / name)
        write_marker(self.path, RUN_MARKER_KIND)
        text = dump_config(cfg) + yaml.safe_dump({"_meta": {"config_hash": config_hash(cfg)}})
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


def remove_entry(path: Path) -> None:
    """Remove a run's file or folder; a symbolic link is removed itself, never what it points to."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)

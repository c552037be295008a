"""Checkpoints: written atomically, loaded without executing code from the file.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values (dicts, lists,
numbers, strings), so it loads with ``torch.load(weights_only=True)``: a file carrying a pickled object
(code) is refused. Layout::

    {"format": "ssnas-checkpoint", "version": 1,
     "space": SpaceConfig as a dict,       # rebuilds the supernet
     "classes": {"names", "colors", "ignore_index"},
     "model": state_dict,                   # weights, alpha, beta, masks, frozen flag
     "config": experiment config dict, "config_hash": str,
     "train": {...}}                        # optimizers, schedulers, progress, RNG (training runs only)
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from ssnas.errors import UserError

FORMAT = "ssnas-checkpoint"
VERSION = 1


def atomic_write_bytes(path: str | Path, write) -> None:
    """Write through ``write(fileobj)`` into a temp file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Serialize in memory first: torch's writer turns a failed file write (a full disk) into an opaque
    RuntimeError, while a plain ``write`` reports ENOSPC; a failure is one line and the old file stays."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        atomic_write_bytes(path, lambda f: f.write(buffer.getbuffer()))
    except OSError as exc:
        raise UserError(f"{path}: cannot write the checkpoint ({exc.strerror or exc}); the previous one is "
                        f"intact, expected free space and a writable folder") from None


def checkpoint_file(path: str | Path) -> Path:
    """The file a ``--checkpoint`` names: the file itself, or a run folder's ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        return path / "last.pt" if (path / "last.pt").is_file() else path / "checkpoints" / "last.pt"
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load safely; a missing, corrupt, foreign or code-carrying file is one clear UserError."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a readable checkpoint (not a torch.save zip archive: corrupted, truncated "
                        f"or another format)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise UserError(f"{path}: refused to load: the file holds objects other than tensors and plain values "
                        f"(possible code); only weights-only checkpoints are loaded ({first[:120]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UserError(f"{path}: not a readable checkpoint (corrupted or truncated: {str(exc)[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an ssnas checkpoint (no '{FORMAT}' header)")
    if payload.get("version", 0) > VERSION:
        raise UserError(f"{path}: checkpoint version {payload['version']} is newer than this ssnas ({VERSION})")
    return payload


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """(SuperNet with the checkpoint's weights and architecture, the checkpoint dict)."""
    from ssnas.space.variants import create_model

    payload = load_checkpoint(path, map_location)
    space = dict(payload["space"])
    model = create_model(space)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit the stored space ({str(exc).splitlines()[0][:160]})") from None
    return model.to(map_location), payload

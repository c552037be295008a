"""Checkpoints: written atomically, loaded without executing code from the file.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values (dicts, lists,
numbers, strings), so it loads with ``torch.load(weights_only=True)``: a file carrying a pickled object
(code) is refused. Layout::

    {"format": "ssnas-checkpoint", "version": 1,
     "space": the task's space record,     # rebuilds the model (tasks/segmentation.py: load_model)
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

from ssnas.errors import UserError, check_version

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


def write_output(path: str | Path, data, what: str) -> None:
    """Write the bytes ``data`` (of ``what``: "the checkpoint", "the fused model") atomically; a failure (a full
    disk) is one line naming ``path``, and any file there before stays intact."""
    try:
        atomic_write_bytes(path, lambda f: f.write(data))
    except OSError as exc:
        raise UserError(f"{path}: cannot write {what} ({exc.strerror or exc}); any previous file there is "
                        f"intact, expected free space and a writable folder") from None


def torch_bytes(payload) -> memoryview:
    """``torch.save`` into memory: torch's writer turns a failed file write (a full disk) into an opaque
    RuntimeError, while a plain ``write`` (:func:`write_output`) reports ENOSPC."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getbuffer()


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Serialized in memory first (:func:`torch_bytes`), so a full disk is one line and the old file stays."""
    write_output(path, torch_bytes({"format": FORMAT, "version": VERSION, **payload}), "the checkpoint")


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A run folder stands for its last checkpoint (``checkpoints/last.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt" if (path / "last.pt").is_file() else path / "checkpoints" / "last.pt"
    return path


def read_weights_only(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(weights_only=True)`` of any ssnas torch file (checkpoint or fused model); a missing,
    corrupt or code-carrying file is one clear UserError. The caller checks the ``format`` header."""
    path = resolve_checkpoint_path(path)
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
    if not isinstance(payload, dict):
        raise UserError(f"{path}: not an ssnas checkpoint (no '{FORMAT}' header)")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", require=("model",)) -> dict:
    """Load safely; a missing, corrupt, foreign or code-carrying file, or one whose fields are not what
    ssnas writes (or lacks a field in ``require``), is one clear UserError."""
    path = resolve_checkpoint_path(path)
    return check_checkpoint(read_weights_only(path, map_location), path, require)


def check_checkpoint(payload: dict, path: str | Path, require=("model",)) -> dict:
    """``payload`` if it is an ssnas checkpoint this version reads, else one clear UserError."""
    if payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an ssnas checkpoint (no '{FORMAT}' header)")
    check_fields(payload, path, require)
    return payload


# The type of every top-level field; a crafted or damaged file gets one line naming the field.
FIELDS = {"space": dict, "model": dict, "classes": (dict, type(None)), "config": (dict, type(None)),
          "config_hash": (str, type(None)), "train": dict}


def check_fields(payload: dict, path, require=("model",)) -> None:
    """Each field present has its type (``version`` a supported integer, ``model`` a mapping of names to
    tensors), and the fields in ``require`` are present."""
    check_version(payload.get("version", 0), VERSION, f"{path}: checkpoint")
    for key, kind in FIELDS.items():
        if key in payload and (not isinstance(payload[key], kind) or isinstance(payload[key], bool)):
            raise UserError(f"{path}: checkpoint field '{key}' is a {type(payload[key]).__name__}, "
                            f"expected {getattr(kind, '__name__', 'a mapping')}")
    for key in require:
        if key not in payload:
            raise UserError(f"{path}: the checkpoint has no '{key}' section, expected one here "
                            f"(a damaged file, or one written for another purpose)")
    bad = next((k for k, v in payload.get("model", {}).items()
                if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise UserError(f"{path}: checkpoint field 'model' holds {bad!r} that is not a named tensor, "
                        f"expected a state dict")

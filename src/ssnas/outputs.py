"""Output paths, checked before any work: nothing a user has is overwritten, no input is ever an output.

Every command that writes (``evaluate --out/--label-ids``, ``predict --out``, ``export --out``) calls
:func:`check_output_file` or :func:`check_output_folder` first, so a bad path fails in one line at once
instead of with a traceback after minutes of work.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from ssnas.errors import UserError


def same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one existing file (links and relative spellings included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not os.path.exists(path) and path != path.parent:   # os.path.exists: False for an over-long name
        path = path.parent
    return path


def check_name_length(path: Path, flag: str) -> None:
    """Every component within the file system's name limit, and the whole path within its path limit."""
    ancestor = _existing_ancestor(path.absolute().parent)
    if not ancestor.is_dir():
        raise UserError(f"{flag} {path}: {ancestor} is a file, expected a folder on the way")
    name_max = os.pathconf(ancestor, "PC_NAME_MAX")
    path_max = os.pathconf(ancestor, "PC_PATH_MAX")
    long = next((part for part in path.parts if len(os.fsencode(part)) > name_max), None)
    if long is not None:
        raise UserError(f"{flag} {path}: the name {long[:40]}... is {len(os.fsencode(long))} bytes, expected at "
                        f"most {name_max} on this file system")
    if len(os.fsencode(str(path.absolute()))) >= path_max:
        raise UserError(f"{flag} {path}: the path is longer than {path_max} bytes")


def check_writable_path(path: Path, flag: str, folder: bool = False) -> None:
    """Names within limits and the place where ``path`` will be written (the ``folder`` itself, or the
    file's nearest existing parent) writable, probed by creating (and removing) a temp file: ``os.access``
    calls a read-only mount writable for root."""
    check_name_length(path, flag)
    ancestor = _existing_ancestor(path.absolute() if folder else path.absolute().parent)
    try:
        with tempfile.TemporaryFile(dir=ancestor, prefix=".ssnas-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {ancestor} ({exc.strerror or exc}), "
                        f"expected a writable folder") from None


def check_output_file(path, flag: str, overwrite: bool, inputs: Iterable = ()) -> Path:
    """Refuse a folder, an input, an existing file without ``--overwrite``, or an unwritable place."""
    path = Path(path)
    check_name_length(path, flag)   # first: stat() of an over-long name fails with ENAMETOOLONG
    for item in inputs:
        if item is not None and same_file(path, Path(item)):
            raise UserError(f"{flag} {path}: is an input of this command ({item}), expected another path")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder, expected a file path")
    if path.exists() and not overwrite:
        raise UserError(f"{flag} {path}: exists, expected a new path (or pass --overwrite)")
    check_writable_path(path, flag)
    return path


def check_output_folder(path, flag: str) -> Path:
    """Refuse a file in the way or an unwritable place (what goes inside is the caller's to check)."""
    path = Path(path)
    check_name_length(path, flag)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder, expected an output folder")
    check_writable_path(path, flag, folder=True)
    return path


# A folder that ssnas itself made holds this file; --overwrite replaces only what such a folder holds, so a
# folder of another tool's files (or of the user's inputs) is never deleted or written over.
MARKER = ".ssnas"
MARKER_KINDS = ("run", "predictions")


def write_marker(folder, kind: str) -> None:
    from ssnas import __version__
    (Path(folder) / MARKER).write_text(json.dumps({"written_by": "ssnas", "kind": kind, "version": __version__}))


def has_marker(folder, kind: str) -> bool:
    """``folder`` was made by ssnas for ``kind`` (a marker that is unreadable or of another kind: no)."""
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("written_by") == "ssnas" and data.get("kind") == kind

"""Dataset formats: the ``FORMATS`` registry (config key ``data.format``, ``ssnas data check --format``).

A format says how a dataset lays out its (image, label) files and how stored label values become class
indices; everything after that — reading, checking values and sizes, augmenting — is shared
(``data/dataset.py``). A new format is one module in this package::

    @register_format("ade20k")
    class ADE20K(DatasetFormat): ...

implementing :class:`DatasetFormat` (``folder.py`` and ``cityscapes.py`` are the two shipped).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from ssnas.registry import Registry

FORMATS = Registry("dataset format", packages=("ssnas.data.formats",), key="data.format", default="folder")


def register_format(name: str, **meta):
    """Decorator registering a :class:`DatasetFormat` subclass under ``name``."""
    def add(cls):
        cls.name = name
        return FORMATS.register(name, cls, **meta)
    return add


class DatasetFormat:
    """What a dataset format provides (class methods; the class itself is registered)."""

    name: str = ""
    layout: str = ""   # the files that identify the format, for messages ("classes.yaml, images/<split>/")

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` looks like a dataset of this format (``ssnas data check`` without --format)."""
        raise NotImplementedError

    @classmethod
    def build(cls, root, split: str, labels: str = "fine"):
        """The ``SegmentationDataset`` of ``split`` with ``labels`` (fine | coarse | both) annotations;
        stops at the first problem (a UserError naming the file)."""
        raise NotImplementedError

    @classmethod
    def plan(cls, root: Path, report) -> List[Tuple[str, str, list, Optional[object]]]:
        """For ``ssnas data check``: [(split, labels, samples, label lut)] to decode, setting
        ``report.classes`` and appending listing problems to ``report.problems`` (every one, not the first)."""
        raise NotImplementedError


def detect_format(root: Path) -> str:
    """The registered format whose layout ``root`` has (the first that matches, in registration order)."""
    from ssnas.errors import UserError
    for name in FORMATS.names():
        if FORMATS.get(name).detect(root):
            return name
    layouts = "; ".join(f"{FORMATS.get(n).layout} ({n})" for n in FORMATS.names())
    raise UserError(f"{root}: no known dataset layout ({layouts}), expected a dataset root")

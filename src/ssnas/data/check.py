"""``ssnas data check``: every problem of a dataset at once, with counts, sizes and class frequencies.

Building a dataset stops at the first problem and leaves label values to load time (decoding every
Cityscapes label up front would be slow); this check decodes every file, so truncated PNGs, size
mismatches and stray label values are all found before a long run.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssnas.data.classes import LABEL_VALUES, ClassTable
from ssnas.data.dataset import read_image, read_label
from ssnas.data.formats import FORMATS, detect_format  # noqa: F401 (detect_format re-exported)
from ssnas.errors import UserError


@dataclass
class SplitStats:
    """What one (split, annotation) pair holds."""
    split: str
    labels: str                     # fine | coarse | none
    images: int = 0
    labelled: int = 0
    sizes: Counter = field(default_factory=Counter)          # "WxH" -> images
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(LABEL_VALUES, dtype=np.int64))

    def frequencies(self, classes: ClassTable | None) -> dict:
        """Pixel % per class name (and ``ignore``) over all labelled pixels."""
        total = int(self.pixels.sum())
        if classes is None or total == 0:
            return {}
        freq = {name: 100.0 * int(self.pixels[i]) / total for i, name in enumerate(classes.names)}
        freq["ignore"] = 100.0 * int(self.pixels[classes.ignore_index]) / total
        return freq


@dataclass
class Report:
    root: str
    format: str
    classes: ClassTable | None = None
    problems: list = field(default_factory=list)
    splits: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "root": self.root, "format": self.format, "ok": self.ok, "problems": list(self.problems),
            "classes": list(self.classes.names) if self.classes else None,
            "splits": [{"split": s.split, "labels": s.labels, "images": s.images, "labelled": s.labelled,
                        "sizes": dict(s.sizes), "class_pixel_percent": s.frequencies(self.classes)}
                       for s in self.splits],
        }

    def summary_lines(self) -> list:
        """Human-readable summary (problems are listed separately, one per line)."""
        lines = [f"{self.root} ({self.format}, "
                 f"{self.classes.num_classes if self.classes else '?'} classes)"]
        for s in self.splits:
            sizes = ", ".join(f"{size} x{n}" for size, n in s.sizes.most_common())
            lines.append(f"  {s.split}/{s.labels}: {s.images} images, {s.labelled} labelled; sizes {sizes or '-'}")
            freq = s.frequencies(self.classes)
            if freq:
                lines.append("    " + ", ".join(f"{k} {v:.1f}%" for k, v in freq.items() if v > 0))
        lines.append(f"{len(self.problems)} problem(s)")
        return lines


def _inspect(samples, lut, classes, stats: SplitStats, problems: list, seen: dict, progress) -> None:
    """Decode every file of one (split, labels) pair; images are decoded once even if paired twice."""
    for image_path, label_path in tqdm(samples, desc=f"{stats.split}/{stats.labels}", disable=not progress):
        stats.images += 1
        if image_path not in seen:
            try:
                height, width = read_image(image_path).shape[:2]   # as training reads it (16-bit scaled)
                seen[image_path] = (width, height)
            except UserError as exc:
                seen[image_path] = None
                problems.append(str(exc))
        size = seen[image_path]
        if size is not None:
            stats.sizes[f"{size[0]}x{size[1]}"] += 1
        if label_path is None or lut is None:
            continue
        try:
            label = read_label(label_path, lut, classes)
        except UserError as exc:
            problems.append(str(exc))
            continue
        stats.labelled += 1
        if size is not None and (label.shape[1], label.shape[0]) != tuple(size):
            problems.append(f"{label_path}: label size {label.shape[1]}x{label.shape[0]} differs from image "
                            f"{image_path.name} {size[0]}x{size[1]}, expected equal sizes")
        stats.pixels += np.bincount(label.ravel(), minlength=LABEL_VALUES)


def check_dataset(cfg_or_path, format: str | None = None, progress: bool = False) -> Report:
    """Check a dataset given a ``DataConfig`` (its root and format) or a root path (format detected)."""
    if isinstance(cfg_or_path, (str, os.PathLike)):
        root = Path(cfg_or_path)
    else:
        root, format = Path(cfg_or_path.root), format or cfg_or_path.format
    if not root.is_dir():
        raise UserError(f"{root}: not a directory, expected a dataset root")
    format = format or detect_format(root)
    if format not in FORMATS:
        raise UserError(f"--format: {format!r}, expected one of {', '.join(FORMATS.names())}")
    report = Report(str(root), format)
    seen = {}
    for split, kind, samples, lut in FORMATS.get(format).plan(root, report):
        stats = SplitStats(split, kind)
        _inspect(samples, lut, report.classes, stats, report.problems, seen, progress)
        report.splits.append(stats)
    report.problems = list(dict.fromkeys(report.problems))   # a file shared by two passes is listed once
    return report

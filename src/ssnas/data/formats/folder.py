"""The generic folder format (docs/data.md): ``classes.yaml``, ``images/<split>/``, ``labels[_coarse]/<split>/``."""
from __future__ import annotations

from pathlib import Path

from ssnas.data import folder
from ssnas.data.classes import ClassTable
from ssnas.data.formats import DatasetFormat, register_format
from ssnas.errors import UserError


@register_format("folder")
class FolderFormat(DatasetFormat):
    layout = f"{folder.CLASSES_FILE} / {folder.IMAGE_DIR}/<split>/"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / folder.CLASSES_FILE).is_file() or (root / folder.IMAGE_DIR).is_dir()

    @classmethod
    def build(cls, root, split: str, labels: str = "fine"):
        return folder.folder_dataset(root, split, labels)

    @classmethod
    def plan(cls, root: Path, report) -> list:
        plan = []
        try:
            report.classes = ClassTable.from_yaml(root / folder.CLASSES_FILE)
        except UserError as exc:
            report.problems.append(str(exc))
        splits = folder.split_names(root)
        if not splits:
            report.problems.append(f"{root / folder.IMAGE_DIR}: no split folders, expected images/<split>/")
        lut = report.classes.value_lut() if report.classes else None
        for split in splits:
            kinds = folder.annotation_kinds(root, split)
            for kind in kinds or ["fine"]:
                names, samples, problems = folder.scan_folder(root, split, kind)
                report.problems += problems
                plan.append((split, kind if kinds else "none", samples, lut))
        return plan

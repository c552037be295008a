"""Cityscapes as distributed: ``leftImg8bit/<split>/<city>/``, ``gtFine`` / ``gtCoarse`` labelIds → trainIds."""
from __future__ import annotations

from pathlib import Path

from ssnas.data import cityscapes
from ssnas.data.classes import ClassTable
from ssnas.data.formats import DatasetFormat, register_format


@register_format("cityscapes")
class CityscapesFormat(DatasetFormat):
    layout = f"{cityscapes.IMAGE_DIR}/<split>/"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / cityscapes.IMAGE_DIR).is_dir()

    @classmethod
    def build(cls, root, split: str, labels: str = "fine"):
        return cityscapes.cityscapes_dataset(root, split, labels)

    @classmethod
    def plan(cls, root: Path, report) -> list:
        plan = []
        report.classes = ClassTable.cityscapes()
        splits = [s for s in cityscapes.SPLITS if (root / cityscapes.IMAGE_DIR / s).is_dir()]
        if not splits:
            report.problems.append(f"{root / cityscapes.IMAGE_DIR}: no split folders, expected leftImg8bit/<split>/")
        for split in splits:
            kinds = [k for k, d in cityscapes.ANNOTATION_DIRS.items() if (root / d / split).is_dir()]
            for kind in kinds or ["fine"]:
                names, samples, lut, problems = cityscapes.scan_cityscapes(root, split, kind)
                if split == "train" and kind == "coarse":   # train_extra is checked as its own split
                    samples = [s for s in samples if s[0].parts[-3] != cityscapes.EXTRA_SPLIT]
                report.problems += problems
                plan.append((split, kind if kinds else "none", samples, lut))
        return plan

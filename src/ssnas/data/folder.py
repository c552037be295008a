"""The generic folder format, for your own data::

    ROOT/classes.yaml                       names, colors, ignore_index
    ROOT/images/<split>/<name>.png|.jpg     (sub-folders allowed; <name> is the relative path)
    ROOT/labels/<split>/<name>.png          8-bit L or P, values = class index or ignore_index
    ROOT/labels_coarse/<split>/<name>.png   optional coarse annotations (labels: coarse | both)

A split without any label folder (e.g. ``test``) is unlabelled: every label is ignore, for prediction.
"""
from __future__ import annotations

from pathlib import Path

from ssnas.data.classes import ClassTable
from ssnas.data.dataset import SegmentationDataset, find_files, first_problem, pair_files

CLASSES_FILE = "classes.yaml"
IMAGE_DIR = "images"
LABEL_DIRS = {"fine": "labels", "coarse": "labels_coarse"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_SUFFIX = ".png"


def _files(directory: Path, suffixes) -> tuple:
    """({relative name without suffix: path}, problems) of the files under ``directory``."""
    found, problems = {}, []
    for path in find_files(directory, suffixes):   # symlinked sub-folders included (loops visited once)
        name = path.relative_to(directory).with_suffix("").as_posix()
        if name in found:
            problems.append(f"{path}: same name as {found[name].name}, expected one file per name")
        found[name] = path
    return found, problems


def split_names(root) -> list:
    """The splits of a folder dataset: the sub-folders of ``images/``."""
    images = Path(root) / IMAGE_DIR
    return sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []


def annotation_kinds(root, split: str) -> list:
    """Which of fine / coarse annotations exist for ``split``."""
    return [kind for kind, sub in LABEL_DIRS.items() if (Path(root) / sub / split).is_dir()]


def scan_folder(root, split: str, labels: str = "fine") -> tuple:
    """(names, samples, problems) of one split; never raises for a data problem."""
    root = Path(root)
    image_dir = root / IMAGE_DIR / split
    if not image_dir.is_dir():
        return [], [], [f"{image_dir}: missing, expected a folder of images for split {split!r}"]
    images, problems = _files(image_dir, IMAGE_SUFFIXES)
    if not images:
        problems.append(f"{image_dir}: no .png/.jpg images, expected a non-empty split")
    kinds = ("fine", "coarse") if labels == "both" else (labels,)
    found = {}
    for kind in kinds:
        label_dir = root / LABEL_DIRS[kind] / split
        if label_dir.is_dir():
            files, dup = _files(label_dir, (LABEL_SUFFIX,))
            problems += dup
            found = {**files, **found}          # fine (read first) wins over coarse for the same image
    label_dirs = " or ".join(str(root / LABEL_DIRS[k] / split) for k in kinds)
    have_labels = any((root / LABEL_DIRS[k] / split).is_dir() for k in kinds)
    names, samples, pairing = pair_files(images, found if have_labels else None, label_dirs)
    return names, samples, problems + pairing


def folder_dataset(root, split: str, labels: str = "fine") -> SegmentationDataset:
    """A folder dataset's split, refusing missing folders, unpaired files and empty splits."""
    classes = ClassTable.from_yaml(Path(root) / CLASSES_FILE)
    names, samples, problems = scan_folder(root, split, labels)
    first_problem(problems)
    return SegmentationDataset(samples, classes, names=names)

"""Cityscapes in its official layout, with labels mapped through ``cityscapesscripts``' own table::

    ROOT/leftImg8bit/{train,val,test,train_extra}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    ROOT/gtCoarse/{train,train_extra,val}/<city>/<city>_<seq>_<frame>_gtCoarse_labelIds.png

``*_labelTrainIds.png`` (written by ``csCreateTrainIdLabelImgs``) are used when every label of the set
has one; otherwise ``*_labelIds.png`` are mapped to the 19 trainIds by a 256-entry lookup array.
Annotations: ``fine``; ``coarse`` (for ``train`` also the ``train_extra`` images, when downloaded);
``both``: every image once, with its fine annotation where one exists, else its coarse one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ssnas.data.classes import IGNORE_INDEX, INVALID, LABEL_VALUES, ClassTable
from ssnas.data.dataset import SegmentationDataset, first_problem, pair_files

IMAGE_DIR = "leftImg8bit"
IMAGE_SUFFIX = "_leftImg8bit.png"
ANNOTATION_DIRS = {"fine": "gtFine", "coarse": "gtCoarse"}
LABEL_ID_SUFFIX = "_labelIds.png"
TRAIN_ID_SUFFIX = "_labelTrainIds.png"
EXTRA_SPLIT = "train_extra"         # coarse-only images that join the train split for coarse labels
SPLITS = ("train", "val", "test", EXTRA_SPLIT)


def label_id_lut() -> np.ndarray:
    """int16[256]: Cityscapes labelId -> trainId (255 for ids not trained on, -1 for unknown values)."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(LABEL_VALUES, INVALID, dtype=np.int16)
    for label in labels:
        if label.id >= 0:
            lut[label.id] = label.trainId if 0 <= label.trainId < IGNORE_INDEX else IGNORE_INDEX
    return lut


def train_id_to_label_id_lut() -> np.ndarray:
    """uint8[256]: trainId -> labelId for the official evaluator (255 -> 0, "unlabeled")."""
    from cityscapesscripts.helpers.labels import trainId2label

    lut = np.zeros(LABEL_VALUES, dtype=np.uint8)
    for train_id, label in trainId2label.items():
        if 0 <= train_id < IGNORE_INDEX:
            lut[train_id] = label.id
    return lut


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """labelId image -> trainId image (uint8, 255 = ignore); unknown ids raise ValueError."""
    mapped = label_id_lut()[np.asarray(label_ids, dtype=np.uint8)]
    if (mapped == INVALID).any():
        raise ValueError(f"unknown Cityscapes label ids {np.unique(label_ids[mapped == INVALID]).tolist()}")
    return mapped.astype(np.uint8)


def to_label_ids(train_ids) -> np.ndarray:
    """trainId predictions (array or tensor) -> labelId image, as the official evaluator expects."""
    if hasattr(train_ids, "detach"):
        train_ids = train_ids.detach().cpu().numpy()
    return train_id_to_label_id_lut()[np.asarray(train_ids).astype(np.uint8)]


def _images(root: Path, split: str) -> tuple:
    """({name: path}, problems) of ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``."""
    directory = root / IMAGE_DIR / split
    if not directory.is_dir():
        return {}, [f"{directory}: missing, expected leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX}"]
    images = {p.name[: -len(IMAGE_SUFFIX)]: p for p in sorted(directory.glob(f"*/*{IMAGE_SUFFIX}"))}
    problems = [] if images else [f"{directory}: no *{IMAGE_SUFFIX} images, expected a non-empty split"]
    return images, problems


def _labels(root: Path, kind: str, split: str) -> dict | None:
    """{name: {suffix: path}} of one annotation folder, or None if the folder does not exist."""
    folder = ANNOTATION_DIRS[kind]
    directory = root / folder / split
    if not directory.is_dir():
        return None
    found = {}
    for suffix in (LABEL_ID_SUFFIX, TRAIN_ID_SUFFIX):
        tail = f"_{folder}{suffix}"
        for path in sorted(directory.glob(f"*/*{tail}")):
            found.setdefault(path.name[: -len(tail)], {})[suffix] = path
    return found


def _sources(split: str, labels: str, extra: bool) -> list:
    """(image split, annotation kind) pairs that make up ``split`` with ``labels``, fine first."""
    kinds = ("fine", "coarse") if labels == "both" else (labels,)
    return [(split, kind) for kind in kinds] + ([(EXTRA_SPLIT, "coarse")] if extra else [])


def scan_cityscapes(root, split: str, labels: str = "fine") -> tuple:
    """(names, samples, label_lut, problems) of one split; never raises for a data problem."""
    root = Path(root)
    images, problems = _images(root, split)
    extra = split == "train" and labels != "fine" and (root / IMAGE_DIR / EXTRA_SPLIT).is_dir()
    if extra:
        extra_images, extra_problems = _images(root, EXTRA_SPLIT)
        images.update(extra_images)
        problems += extra_problems
    found, label_dirs, any_dir = {}, [], False
    for image_split, kind in _sources(split, labels, extra):
        label_dirs.append(str(root / ANNOTATION_DIRS[kind] / image_split))
        files = _labels(root, kind, image_split)
        any_dir |= files is not None
        for name, by_suffix in (files or {}).items():
            found.setdefault(name, by_suffix)      # fine (scanned first) wins over coarse
    primary = {name: files.get(LABEL_ID_SUFFIX, files.get(TRAIN_ID_SUFFIX)) for name, files in found.items()}
    names, samples, pairing = pair_files(images, primary if any_dir else None, " or ".join(label_dirs))
    problems += pairing
    if not any_dir:
        return names, samples, ClassTable.cityscapes().value_lut(), problems
    use_train_ids = all(TRAIN_ID_SUFFIX in found[name] for name in names)
    suffix = TRAIN_ID_SUFFIX if use_train_ids else LABEL_ID_SUFFIX
    problems += [f"{found[name][TRAIN_ID_SUFFIX]}: no *{LABEL_ID_SUFFIX} beside it, expected labelIds for "
                 f"every label (or labelTrainIds for all)" for name in names if suffix not in found[name]]
    samples = [(image, found[name].get(suffix)) for name, (image, _) in zip(names, samples)]
    lut = ClassTable.cityscapes().value_lut() if use_train_ids else label_id_lut()
    return names, samples, lut, problems


def cityscapes_dataset(root, split: str, labels: str = "fine") -> SegmentationDataset:
    """A Cityscapes split with 19 trainIds, refusing missing folders, unpaired files and empty splits."""
    names, samples, lut, problems = scan_cityscapes(root, split, labels)
    first_problem(problems)
    return SegmentationDataset(samples, ClassTable.cityscapes(), label_lut=lut, names=names)

"""Tiny datasets generated on the fly, in both supported layouts, for any test that needs data.

Labels are random blocks; every image pixel is the display colour of its label, so a test can recover
the label from the image (alignment checks, a colour-lookup "model" with a known mIoU).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

CITYSCAPES_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau"),
                     "test": ("berlin",), "train_extra": ("augsburg",)}
FOLDER_CLASSES = ("road", "tree", "sky")
FOLDER_COLORS = ((128, 64, 128), (107, 142, 35), (70, 130, 180))
BLOCK = 8                     # label block side in pixels
IGNORE = 255


def block_label(size, values, rng: np.random.Generator, block: int = BLOCK) -> np.ndarray:
    """H×W uint8 label made of ``block``-pixel squares, each a random entry of ``values``."""
    h, w = size
    cells = rng.choice(np.asarray(values), size=(-(-h // block), -(-w // block)))
    return np.kron(cells, np.ones((block, block), dtype=cells.dtype))[:h, :w].astype(np.uint8)


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def cityscapes_palette() -> np.ndarray:
    """uint8[256, 3]: Cityscapes display colour per labelId."""
    from cityscapesscripts.helpers.labels import labels

    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in labels:
        if label.id >= 0:
            palette[label.id] = label.color
    return palette


def make_cityscapes_tree(root, cities=None, size=(32, 64), n_per_city=2, seed=0, coarse=True,
                         test_labels=False, train_ids=False) -> Path:
    """Write a miniature Cityscapes: leftImg8bit + gtFine labelIds (train, val, optionally test) and, with
    ``coarse``, gtCoarse for train, train_extra and val (coarse = fine with some blocks 0 "unlabeled").
    Label ids are drawn from all 34 ids, so the trainId mapping and ignore both get exercised.
    ``train_ids`` also writes ``*_labelTrainIds.png`` beside the fine labels."""
    from cityscapesscripts.helpers.labels import labels

    from ssnas.data.cityscapes import to_train_ids

    root, rng = Path(root), np.random.default_rng(seed)
    ids = [label.id for label in labels if label.id >= 0]
    palette = cityscapes_palette()
    for split, split_cities in (cities or CITYSCAPES_CITIES).items():
        for city in split_cities:
            for i in range(n_per_city):
                name = f"{city}_{i:06d}_{19 + i:06d}"
                fine = block_label(size, ids, rng)
                save_png(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", palette[fine])
                if split in ("train", "val") or (split == "test" and test_labels):
                    save_png(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", fine)
                    if train_ids:
                        save_png(root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png",
                                 to_train_ids(fine))
                if coarse and split in ("train", "train_extra", "val"):
                    unlabeled = block_label(size, [False, True], rng, block=2 * BLOCK).astype(bool)
                    save_png(root / "gtCoarse" / split / city / f"{name}_gtCoarse_labelIds.png",
                             np.where(unlabeled, 0, fine).astype(np.uint8))
    return root


def make_folder_tree(root, splits=None, size=(32, 48), labelled=("train", "val"), coarse=("train",),
                     seed=0, image_ext=".png", with_ignore=True) -> Path:
    """Write a folder-format dataset with ``FOLDER_CLASSES``: ``splits`` maps split -> image count
    (default train 4, val 2, test 2); ``labelled`` splits get labels/, ``coarse`` ones labels_coarse/."""
    root, rng = Path(root), np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text(yaml.safe_dump(
        {"names": list(FOLDER_CLASSES), "colors": [list(c) for c in FOLDER_COLORS], "ignore_index": IGNORE}))
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(FOLDER_COLORS)] = FOLDER_COLORS
    values = list(range(len(FOLDER_CLASSES))) + ([IGNORE] if with_ignore else [])
    for split, n in (splits or {"train": 4, "val": 2, "test": 2}).items():
        for i in range(n):
            name = f"{split}_{i:03d}"
            label = block_label(size, values, rng)
            save_png(root / "images" / split / f"{name}{image_ext}", palette[label])
            if split in labelled:
                save_png(root / "labels" / split / f"{name}.png", label)
            if split in coarse:
                unlabeled = block_label(size, [False, True], rng, block=2 * BLOCK).astype(bool)
                save_png(root / "labels_coarse" / split / f"{name}.png", np.where(unlabeled, IGNORE, label))
    return root

"""One dataset class for every format: (image, label) file pairs, a class table and a transform.

Formats (the ``FORMATS`` registry, ``data/formats/``) differ only in how they list their pairs (``folder.py``,
``cityscapes.py``) and in the lookup
array that turns stored label values into class indices (Cityscapes labelIds -> trainIds; identity for a
folder dataset). Pairing, missing and empty checks run when a dataset is built; label values and sizes
are checked when a sample is read, so a bad file stops training with one line naming it instead of
being dropped or mislabelled.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ssnas.data.classes import INVALID, ClassTable
from ssnas.errors import UserError

LABEL_MODES = ("L", "P")        # 8-bit single channel; P images store class indices as palette indices
LABEL_CHOICES = ("fine", "coarse", "both")
WIDE_MAX = 65535                # the largest 16-bit pixel value, scaled to 255


def open_image(path: Path) -> Image.Image:
    """Open and fully decode ``path``: truncated or corrupt files fail here, naming the file."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except Image.DecompressionBombError:
        raise UserError(f"{path}: refused: the image declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels (a "
                        f"decompression bomb?), expected a smaller image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: unreadable image ({exc}), expected a valid PNG/JPG") from None
    return image


def read_image(path) -> np.ndarray:
    """H×W×3 uint8 RGB array of an image file.

    16-bit grey images (PIL modes ``I;16*``, or ``I`` holding values up to 65535) are scaled to 8 bits by
    ``round(v * 255 / 65535)``; PIL's own conversion would clip every value above 255 to white. Other
    modes without an 8-bit reading (32-bit integers beyond 16 bits, floats) are refused."""
    path = Path(path)
    image = open_image(path)
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > WIDE_MAX):
            raise UserError(f"{path}: {image.mode} image with values {values.min()}..{values.max()}, expected "
                            f"8-bit or 16-bit (0..{WIDE_MAX}) pixels")
        grey = ((values * 255 + WIDE_MAX // 2) // WIDE_MAX).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode == "F":
        raise UserError(f"{path}: floating-point image (mode F), expected 8-bit or 16-bit pixels")
    return np.asarray(image.convert("RGB"))


def find_files(directory, suffixes) -> list:
    """Files under ``directory`` with one of ``suffixes``, sorted; symlinked sub-folders are followed and
    every real folder is visited once, so a link loop (``a/loop -> ..``) ends instead of recursing."""
    seen, found = set(), []
    for folder, subfolders, files in os.walk(directory, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            subfolders[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        found += [Path(folder) / f for f in files if Path(f).suffix.lower() in suffixes
                  and (Path(folder) / f).is_file()]
    return sorted(found)


def read_label(path, lut: np.ndarray, classes: ClassTable) -> np.ndarray:
    """H×W uint8 class indices of a label PNG, mapped through ``lut`` (int16[256], -1 = invalid value)."""
    path = Path(path)
    image = open_image(path)
    if image.mode not in LABEL_MODES:
        raise UserError(f"{path}: label image mode {image.mode}, expected 8-bit single channel (L or P)")
    raw = np.asarray(image)
    mapped = lut[raw]
    if (mapped == INVALID).any():
        bad = np.unique(raw[mapped == INVALID]).tolist()
        raise UserError(f"{path}: label values {bad[:10]} are not in the class table, expected class indices "
                        f"0..{classes.num_classes - 1} or ignore {classes.ignore_index}")
    return mapped.astype(np.uint8)


def to_tensors(image: np.ndarray, mask: np.ndarray) -> dict:
    """The no-transform fallback: image 3×H×W float32 in 0..1, label H×W int64."""
    return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255),
            "mask": torch.from_numpy(mask.astype(np.int64))}


class SegmentationDataset(torch.utils.data.Dataset):
    """``samples``: list of ``(image_path, label_path or None)``; ``label_lut`` maps stored label values to
    class indices (default: ``classes.value_lut()``, i.e. values are class indices already)."""

    def __init__(self, samples, classes: ClassTable, transform=None, label_lut: np.ndarray | None = None,
                 names=None, cache_bytes: int = 0):
        self.samples = [(Path(image), None if label is None else Path(label)) for image, label in samples]
        self.classes = classes
        self.transform = transform
        self.label_lut = classes.value_lut() if label_lut is None else label_lut
        self.names = list(names) if names is not None else [Path(image).stem for image, _ in self.samples]
        if len(self.names) != len(self.samples):
            raise ValueError("names and samples differ in length")
        # decoded samples kept for the next pass, up to ``cache_bytes`` (``data.cache_mib``): decoding was ~9 ms of
        # a proxy study's ~220 ms iteration (docs/benchmarks.md). Filled where ``load`` runs: in the training
        # process itself with ``data.workers: 0`` (the studies); a DataLoader worker's copy ends with its pass.
        self.cache_bytes = cache_bytes
        self._cache: dict[int, tuple] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple:
        """(H×W×3 uint8 image, H×W uint8 label) before transforms; an unlabelled sample is all ignore."""
        if index in self._cache:   # copies: a transform may write into what it is given
            return tuple(a.copy() for a in self._cache[index])
        image, label = self._decode(index)
        size = image.nbytes + label.nbytes
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[index] = (image.copy(), label.copy())
            self._cached_bytes += size
        return image, label

    def _decode(self, index: int) -> tuple:
        image_path, label_path = self.samples[index]
        image = read_image(image_path)
        if label_path is None:
            return image, np.full(image.shape[:2], self.classes.ignore_index, dtype=np.uint8)
        label = read_label(label_path, self.label_lut, self.classes)
        if label.shape != image.shape[:2]:
            raise UserError(f"{label_path}: label size {label.shape[1]}x{label.shape[0]} differs from image "
                            f"{image_path.name} {image.shape[1]}x{image.shape[0]}, expected equal sizes")
        return image, label

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        try:
            out = self.transform(image=image, mask=label) if self.transform is not None else to_tensors(image, label)
        except UserError as exc:   # a transform's refusal (an image too small to augment) names the file
            raise UserError(f"{self.samples[index][0]}: {exc}") from None
        mask = out["mask"]  # uint8 for training (augmented on the device, converted there), else int64
        return {"image": out["image"], "label": mask if mask.dtype == torch.uint8 else mask.long(),
                "name": self.names[index]}


def build_dataset(cfg, split: str, train: bool, labels: str | None = None) -> SegmentationDataset:
    """The dataset of ``split`` for training (augmented) or evaluation, from a ``DataConfig``.

    ``labels`` (fine | coarse | both) defaults to ``cfg.labels`` for ``cfg.train_split``, else ``fine``.
    """
    from ssnas.data.formats import FORMATS
    from ssnas.data.transforms import build_transforms

    if labels is None:
        labels = cfg.labels if split == cfg.train_split else "fine"
    if labels not in LABEL_CHOICES:
        raise UserError(f"data.labels: {labels!r}, expected one of {', '.join(LABEL_CHOICES)}")
    if not cfg.root:
        raise UserError("data.root: empty, expected the dataset folder")
    dataset = FORMATS.get(cfg.format).build(cfg.root, split, labels)   # a UserError naming the choices
    if dataset.classes.ignore_index != cfg.ignore_index:
        raise UserError(f"data.ignore_index: {cfg.ignore_index} differs from the dataset's ignore_index "
                        f"{dataset.classes.ignore_index}, expected them equal")
    if train and any(label is None for _, label in dataset.samples):
        raise UserError(f"{cfg.root}: split {split!r} has no {labels} labels, expected labels to train on")
    dataset.transform = build_transforms(cfg, train=train)
    dataset.cache_bytes = cfg.cache_mib * 2 ** 20
    return dataset


def pair_files(images: dict, labels: dict | None, label_dir) -> tuple:
    """Pair ``{name: image}`` with ``{name: label}``; returns (names, samples, problems).

    ``labels=None`` means the split has no annotations (every label is None). Otherwise an image without
    a label and a label without an image are both problems, listed in name order.
    """
    names = sorted(images)
    if labels is None:
        return names, [(images[n], None) for n in names], []
    problems = [f"{images[n]}: no label in {label_dir}, expected every image to have one"
                for n in names if n not in labels]
    problems += [f"{labels[n]}: label without an image, expected a matching image"
                 for n in sorted(labels) if n not in images]
    paired = [n for n in names if n in labels]
    return paired, [(images[n], labels[n]) for n in paired], problems


def first_problem(problems: list) -> None:
    """Construction refuses a bad dataset: raise the first of ``problems`` (``data check`` lists all)."""
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); run `ssnas data check`)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more)

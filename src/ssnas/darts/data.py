"""Small image-classification datasets for the DARTS search (paper §4.5, Fig. 4 uses CIFAR-10).

Samples are dicts ``{"image": float32 (3, H, W), "label": int64 scalar}``. CIFAR-10 is read from its standard
python-pickle layout; two real datasets that need no download serve for tests and quick runs: scikit-learn's
bundled 8×8 digits and Debian's ``dataset-fashion-mnist`` package (28×28, IDX files).
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Dict, Optional, Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from ssnas.errors import UserError

DATASETS = ("cifar10", "digits", "fashion-mnist")
SPLITS = ("train", "test")

CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCHES = ("test_batch",)
CIFAR_META = "batches.meta"
CIFAR_SIZE = 32
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # DARTS's normalisation
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CROP_PADDING = 4  # DARTS: random crop 32 with zero padding 4, horizontal flip

DIGITS_SIZE = 16
DIGITS_MAX_VALUE = 16.0  # load_digits pixels are counts 0..16
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_MEAN, DIGITS_STD = 0.5, 0.5

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist installs
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
IDX_UBYTE = 0x08


def darts_transform(size: int, mean: Sequence[float], std: Sequence[float], augment: bool, flip: bool = True,
                    seed: Optional[int] = None) -> A.Compose:
    """DARTS's augmentation (pad ``CROP_PADDING`` with zeros, random ``size`` crop, flip) and normalisation."""
    steps = []
    if augment:
        padded = size + 2 * CROP_PADDING
        steps += [A.PadIfNeeded(padded, padded, border_mode=0, fill=0), A.RandomCrop(size, size)]
        if flip:
            steps.append(A.HorizontalFlip())
    steps.append(A.Normalize(mean=mean, std=std, max_pixel_value=255.0))
    return A.Compose(steps, seed=seed)


class ArrayClassification(Dataset):
    """uint8 images (N, H, W, C) + integer labels, transformed by an albumentations pipeline on access."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: A.Compose,
                 classes: Optional[Sequence[str]] = None):
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"images {images.shape} / labels {labels.shape}: expected (N, H, W, C) and (N,)")
        self.images, self.labels, self.transform = images, labels.astype(np.int64), transform
        self.classes = list(classes) if classes is not None else sorted(set(self.labels.tolist()))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        image = self.transform(image=self.images[index])["image"]
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)),
                "label": torch.tensor(self.labels[index], dtype=torch.int64)}


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def load_cifar10(root, split: str, augment: Optional[bool] = None, seed: Optional[int] = None) -> ArrayClassification:
    """CIFAR-10 from ``root`` holding ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` (python version)."""
    root = Path(root)
    names = CIFAR_TRAIN_BATCHES if split == "train" else CIFAR_TEST_BATCHES
    for name in names + (CIFAR_META,):
        if not (root / name).is_file():
            raise UserError(f"{root / name}: CIFAR-10 batch file missing, expected the python-pickle layout "
                            f"({', '.join(CIFAR_TRAIN_BATCHES + CIFAR_TEST_BATCHES + (CIFAR_META,))})")
    images, labels = [], []
    for name in names:
        batch = _unpickle(root / name)
        if b"data" not in batch or b"labels" not in batch:
            raise UserError(f"{root / name}: not a CIFAR-10 batch, expected a pickled dict with b'data', b'labels'")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE))
        labels.append(np.asarray(batch[b"labels"]))
    classes = [c.decode() for c in _unpickle(root / CIFAR_META)[b"label_names"]]
    transform = darts_transform(CIFAR_SIZE, CIFAR_MEAN, CIFAR_STD, split == "train" if augment is None else augment,
                                seed=seed)
    return ArrayClassification(np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels), transform,
                               classes)


def load_digits(split: str, size: int = DIGITS_SIZE) -> ArrayClassification:
    """scikit-learn's 1,797 handwritten 8×8 digits, upsampled to ``size`` and repeated to 3 channels; a seeded
    stratified 80/20 train/test split. No augmentation (a flipped digit is another symbol)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise UserError("darts.dataset: digits needs scikit-learn, expected pip install 'ssnas[demo]'") from None

    digits = sklearn_digits()
    index = np.arange(len(digits.target))
    train, test = train_test_split(index, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
                                   stratify=digits.target)
    chosen = train if split == "train" else test
    images = digits.images[chosen] / DIGITS_MAX_VALUE * 255.0
    images = np.repeat(images.astype(np.float32)[..., None], 3, axis=-1)
    resize = A.Resize(size, size)
    images = np.stack([resize(image=im)["image"] for im in images]).clip(0, 255).round().astype(np.uint8)
    transform = darts_transform(size, (DIGITS_MEAN,) * 3, (DIGITS_STD,) * 3, augment=False)
    return ArrayClassification(images, digits.target[chosen], transform, [str(d) for d in range(10)])


def read_idx(path: Path) -> np.ndarray:
    """An (optionally gzipped) IDX file of unsigned bytes, the MNIST family's format."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != IDX_UBYTE:
        raise UserError(f"{path}: not an unsigned-byte IDX file, expected the MNIST file format")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise UserError(f"{path}: holds {array.size} values, expected {shape} from its header")
    return array.reshape(shape)


def load_fashion_mnist(root, split: str, augment: Optional[bool] = None,
                       seed: Optional[int] = None) -> ArrayClassification:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (or any folder with the four IDX .gz files)."""
    root = Path(root or FASHION_MNIST_ROOT)
    image_file, label_file = (root / name for name in FASHION_MNIST_FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise UserError(f"{path}: Fashion-MNIST file missing, expected the IDX files of Debian's package "
                            f"(sudo apt-get install dataset-fashion-mnist) or a root folder holding them")
    images = read_idx(image_file)
    images = np.repeat(images[..., None], 3, axis=-1)
    augment = split == "train" if augment is None else augment
    transform = darts_transform(images.shape[1], (FASHION_MNIST_MEAN,) * 3, (FASHION_MNIST_STD,) * 3, augment,
                                seed=seed)
    return ArrayClassification(images, read_idx(label_file), transform, FASHION_MNIST_CLASSES)


def build_darts_dataset(name: str, root=None, split: str = "train", augment: Optional[bool] = None,
                        seed: Optional[int] = None) -> ArrayClassification:
    """``name`` ∈ {cifar10, digits, fashion-mnist}, ``split`` ∈ {train, test}. ``augment`` defaults to the
    train split (never for digits); ``seed`` makes the augmentation reproducible."""
    if name not in DATASETS:
        raise UserError(f"darts dataset: unknown name {name!r}, expected one of {list(DATASETS)}")
    if split not in SPLITS:
        raise UserError(f"darts dataset split: {split!r}, expected one of {list(SPLITS)}")
    if name == "cifar10":
        if root is None:
            raise UserError("darts dataset root: missing for cifar10, expected the cifar-10-batches-py folder")
        return load_cifar10(root, split, augment, seed)
    if name == "digits":
        return load_digits(split)
    return load_fashion_mnist(root, split, augment, seed)

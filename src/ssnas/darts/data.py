"""Small image-classification datasets for the DARTS search (paper §4.5, Fig. 4 uses CIFAR-10).

Samples are dicts ``{"image": (3, H, W), "label": int64 scalar}``: float32 normalised, or — for a training
split that is augmented — uint8 as decoded, augmented batch-wise on the training device by
:class:`DartsAugment` (DARTS's pad-4 random crop and flip, then normalisation), each sample with its stream
seed. CIFAR-10 is read from its standard
python-pickle layout; two real datasets that need no download serve for tests and quick runs: scikit-learn's
bundled 8×8 digits and Debian's ``dataset-fashion-mnist`` package (28×28, IDX files).
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
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


class ArrayClassification(Dataset):
    """uint8 images (N, H, W, C) + integer labels. ``augment``: items stay uint8 for :class:`DartsAugment`;
    otherwise they are normalised here with ``mean``/``std`` (0..1 scale)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 augment: bool = False, flip: bool = True, classes: Optional[Sequence[str]] = None):
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"images {images.shape} / labels {labels.shape}: expected (N, H, W, C) and (N,)")
        self.images, self.labels = images, labels.astype(np.int64)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.augment, self.flip = augment, flip
        self.classes = list(classes) if classes is not None else sorted(set(self.labels.tolist()))

    def __len__(self) -> int:
        return len(self.images)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (…, 3, H, W) → float normalised, on x's device."""
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        return (x.float() / 255 - mean) / std

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index].transpose(2, 0, 1)))
        return {"image": image if self.augment else self.normalize(image),
                "label": torch.tensor(self.labels[index], dtype=torch.int64)}


# What CIFAR-10's python batches hold besides dicts, lists, bytes and numbers: numpy arrays (pickled by
# numpy 1 or 2, under either module name) and, for files re-pickled by Python 3, bytes via _codecs.encode.
CIFAR_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR's python format is pickle by design; a plain ``pickle.load`` would run whatever callable a
    crafted batch names. Only the types that format holds are resolved, anything else is refused."""

    def find_class(self, module, name):
        if (module, name) in CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of the CIFAR-10 format")


class DartsAugment:
    """DARTS's augmentation on the device: zero-pad ``CROP_PADDING``, random crop back to the size, flip
    with probability 1/2 (when the dataset allows), normalise. Each sample's draw comes from its seed."""

    def __init__(self, dataset: ArrayClassification):
        self.dataset = dataset

    def sample_params(self, seed: int) -> tuple[int, int, bool]:
        g = torch.Generator().manual_seed(int(seed))
        y0, x0 = (int(v) for v in torch.randint(2 * CROP_PADDING + 1, (2,), generator=g))
        flip = bool(torch.rand((), generator=g) < 0.5) and self.dataset.flip
        return y0, x0, flip

    def __call__(self, images: torch.Tensor, seeds, device) -> torch.Tensor:
        x = images.to(device, non_blocking=True)
        h, w = x.shape[-2:]
        padded = F.pad(x, (CROP_PADDING,) * 4, value=0)
        out = []
        for image, seed in zip(padded, seeds):
            y0, x0, flip = self.sample_params(seed)
            crop = image[:, y0:y0 + h, x0:x0 + w]
            out.append(crop.flip(-1) if flip else crop)
        return self.dataset.normalize(torch.stack(out))


def _unpickle(path: Path) -> dict:
    """A CIFAR-10 batch as a dict, refusing code, object arrays and anything but a dict (one line)."""
    try:
        with open(path, "rb") as f:
            data = _CifarUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: refused to load: {str(exc)[:160]}; expected a CIFAR-10 python batch "
                        f"(dicts, lists, bytes, numbers and numpy arrays only)") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OSError) as exc:
        raise UserError(f"{path}: not a readable CIFAR-10 batch ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a CIFAR-10 batch, expected a pickled dict, got {type(data).__name__}")
    for value in data.values():
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            raise UserError(f"{path}: refused to load: an array of Python objects, expected numbers")
    return data


def load_cifar10(root, split: str, augment: Optional[bool] = None) -> ArrayClassification:
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
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE)
            label = np.asarray(batch[b"labels"], dtype=np.int64).reshape(-1)
        except (ValueError, TypeError) as exc:
            raise UserError(f"{root / name}: not a CIFAR-10 batch ({str(exc)[:100]}), expected N×3072 uint8 "
                            f"pixels and N integer labels") from None
        if len(label) != len(data) or (len(label) and not 0 <= label.min() <= label.max() < 10):
            raise UserError(f"{root / name}: {len(data)} images but {len(label)} labels (or labels outside "
                            f"0..9), expected one label in 0..9 per image")
        images.append(data)
        labels.append(label)
    meta = _unpickle(root / CIFAR_META)
    try:
        classes = [c.decode() for c in meta[b"label_names"]]
    except (KeyError, AttributeError, TypeError):
        raise UserError(f"{root / CIFAR_META}: expected a dict with b'label_names' (10 byte strings)") from None
    return ArrayClassification(np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels), CIFAR_MEAN,
                               CIFAR_STD, split == "train" if augment is None else augment, classes=classes)


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
    resized = F.interpolate(torch.from_numpy(images.astype(np.float32))[:, None], size=(size, size),
                            mode="bilinear", align_corners=False)[:, 0]
    images = np.repeat(resized.numpy()[..., None], 3, axis=-1).clip(0, 255).round().astype(np.uint8)
    return ArrayClassification(images, digits.target[chosen], (DIGITS_MEAN,) * 3, (DIGITS_STD,) * 3, augment=False,
                               classes=[str(d) for d in range(10)])


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


def load_fashion_mnist(root, split: str, augment: Optional[bool] = None) -> ArrayClassification:
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
    return ArrayClassification(images, read_idx(label_file), (FASHION_MNIST_MEAN,) * 3, (FASHION_MNIST_STD,) * 3,
                               augment, classes=FASHION_MNIST_CLASSES)


def build_darts_dataset(name: str, root=None, split: str = "train", augment: Optional[bool] = None) \
        -> ArrayClassification:
    """``name`` ∈ {cifar10, digits, fashion-mnist}, ``split`` ∈ {train, test}. ``augment`` defaults to the
    train split (never for digits): its items stay uint8 for :class:`DartsAugment`."""
    if name not in DATASETS:
        raise UserError(f"darts dataset: unknown name {name!r}, expected one of {list(DATASETS)}")
    if split not in SPLITS:
        raise UserError(f"darts dataset split: {split!r}, expected one of {list(SPLITS)}")
    if name == "cifar10":
        if root is None:
            raise UserError("darts dataset root: missing for cifar10, expected the cifar-10-batches-py folder")
        return load_cifar10(root, split, augment)
    if name == "digits":
        return load_digits(split)
    return load_fashion_mnist(root, split, augment)

"""What the CPU workers do to a sample: decode to tensors (train) or decode and normalise (eval).

Training augmentation (the paper's §4.1 recipe: random scale, pad, crop, flip, colour jitter, Gaussian
noise, normalisation) runs batch-wise on the training device, in ``augment.py``; a CPU worker only turns
the decoded arrays into uint8 tensors, so feeding a GPU needs few workers. Eval: normalisation only, on the
whole image. Labels are never interpolated.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ssnas.errors import UserError

MAX_PIXEL_VALUE = 255.0             # cfg.mean / cfg.std are on the 0..1 scale


class DecodeOnly:
    """Train: ``image`` uint8 3×H×W and ``mask`` uint8 H×W tensors, for ``augment.BatchAugment``.

    An image that the smallest random scale would shrink to 0 pixels is refused here, in the worker, with
    its size (the dataset adds the file's name), rather than failing later inside a batch."""

    def __init__(self, min_scale: float = 1.0):
        self.min_scale = min_scale

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict:
        if round(min(image.shape[:2]) * self.min_scale) < 1:
            need = math.floor(0.5 / self.min_scale) + 1
            raise UserError(f"image of {image.shape[1]}x{image.shape[0]} pixels: data.scale_range min "
                            f"{self.min_scale:g} would resize it to 0 pixels, expected at least {need} pixels a side")
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "mask": torch.from_numpy(np.ascontiguousarray(mask))}


class Normalize:
    """Eval: ``image`` float32 3×H×W, normalised with the config's mean/std; ``mask`` int64 H×W."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1) * MAX_PIXEL_VALUE
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1) * MAX_PIXEL_VALUE

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict:
        x = (image.transpose(2, 0, 1).astype(np.float32) - self.mean) / self.std
        return {"image": torch.from_numpy(np.ascontiguousarray(x)), "mask": torch.from_numpy(mask.astype(np.int64))}


def build_transforms(cfg, train: bool):
    """A callable ``(image=H×W×3 uint8, mask=H×W uint8) -> {"image", "mask"}`` (see the classes)."""
    return DecodeOnly(cfg.scale_range[0]) if train else Normalize(cfg.mean, cfg.std)

"""Training and evaluation transforms (albumentations), the paper's §4.1 recipe.

Train: random scale -> pad (image 0, label ignore) -> random crop -> horizontal flip -> colour jitter ->
Gaussian noise -> ImageNet normalisation. Photometric steps run after the crop so they cost a crop, not
a full (up to 2x upscaled) image. Eval: normalisation only, on the whole image. Labels always use
nearest-neighbour interpolation, so a class index is never blended.
"""
from __future__ import annotations

import functools
import math

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from ssnas.errors import UserError

HUE_FRACTION = 0.25                 # hue jitter = strength * this (0.4 -> 0.1, torchvision's usual pairing)
NOISE_STD_RANGE = (0.01, 0.05)      # Gaussian noise sigma, as a fraction of 255
MAX_PIXEL_VALUE = 255.0             # cfg.mean / cfg.std are on the 0..1 scale


def _label_to_int64(mask, **_):
    """Label as int64 (what ``cross_entropy`` takes); after the geometric steps, which need uint8."""
    return mask.astype(np.int64)


def _require_scalable(image, min_scale: float, **_):
    """RandomScale by ``min_scale`` must leave at least one pixel a side (OpenCV fails on 0 with a C++ trace)."""
    side = min(image.shape[:2])
    if round(side * min_scale) < 1:
        need = math.floor(0.5 / min_scale) + 1
        raise UserError(f"image of {image.shape[1]}x{image.shape[0]} pixels: data.scale_range min {min_scale:g} "
                        f"would resize it to 0 pixels, expected at least {need} pixels a side")
    return image


def _finish(cfg) -> list:
    return [A.Normalize(mean=tuple(cfg.mean), std=tuple(cfg.std), max_pixel_value=MAX_PIXEL_VALUE),
            A.Lambda(mask=_label_to_int64), ToTensorV2()]


def build_transforms(cfg, train: bool) -> A.Compose:
    """Albumentations pipeline taking ``image`` (H×W×3 uint8) and ``mask`` (H×W uint8) and returning
    ``image`` float32 3×h×w and ``mask`` int64 h×w (h×w = cfg.crop_size when training)."""
    if not train:
        return A.Compose(_finish(cfg))
    low, high = cfg.scale_range
    height, width = cfg.crop_size
    steps = [
        A.Lambda(image=functools.partial(_require_scalable, min_scale=low)),
        A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),   # albumentations adds 1 to the limits
        A.PadIfNeeded(min_height=height, min_width=width, border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=cfg.ignore_index),
        A.RandomCrop(height=height, width=width),
        A.HorizontalFlip(p=cfg.hflip),
    ]
    if cfg.color_jitter > 0:
        s = cfg.color_jitter
        steps.append(A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(0.5, s * HUE_FRACTION), p=1.0))
    if cfg.gauss_noise > 0:
        steps.append(A.GaussNoise(std_range=NOISE_STD_RANGE, p=cfg.gauss_noise))
    return A.Compose(steps + _finish(cfg))

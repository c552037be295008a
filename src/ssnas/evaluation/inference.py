"""Whole-image inference (optionally flipped and multi-scale) and the evaluation loop.

Multi-scale and flip follow the usual segmentation test-time augmentation: resize the input, upsample
the logits back to full resolution, and average the softmax probabilities of all views.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ssnas.errors import UserError
from ssnas.evaluation.metrics import IGNORE_INDEX, ConfusionMatrix

CITYSCAPES_CLASSES = 19
LABEL_IDS_SUFFIX = "_labelIds.png"   # the evaluator matches <city>_<seq>_<frame>*.png


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def predict_logits(model, image: torch.Tensor, scales=(1.0,), flip: bool = False,
                   num_classes: int | None = None) -> torch.Tensor:
    """B×C×H×W class scores for a B×3×H×W batch: the softmax probabilities averaged over all views
    (each scale, and its mirror image when ``flip``), at the input's full resolution."""
    height, width = image.shape[-2:]
    total, views = None, 0
    for scale in scales:
        x = image if scale == 1.0 else _resize(image, (round(height * scale), round(width * scale)))
        for mirrored in ((False, True) if flip else (False,)):
            logits = model(x.flip(-1) if mirrored else x)
            if num_classes is not None and logits.shape[1] != num_classes:
                raise ValueError(f"model returned {logits.shape[1]} channels, expected {num_classes} classes")
            logits = logits.flip(-1) if mirrored else logits
            if logits.shape[-2:] != (height, width):
                logits = _resize(logits, (height, width))
            probs = logits.float().softmax(1)
            total = probs if total is None else total + probs
            views += 1
    return total / views


def write_label_ids(train_ids: torch.Tensor, name: str, out_dir) -> Path:
    """Save an H×W trainId prediction as a Cityscapes labelId PNG ``<name>_labelIds.png``."""
    from ssnas.data.cityscapes import to_label_ids

    path = Path(out_dir) / f"{name}{LABEL_IDS_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(to_label_ids(train_ids))).save(path)
    return path


def evaluate(model, loader, num_classes: int, scales=(1.0,), flip: bool = False, device=None,
             ignore_index: int = IGNORE_INDEX, write_label_ids_dir=None, progress: bool = False,
             overwrite: bool = False) -> dict:
    """mIoU, per-class IoU and pixel accuracy of ``model`` over ``loader`` (batches of dataset items).

    The model is used where it is (``device`` defaults to its parameters' device); its train/eval mode
    is restored afterwards. Under ``torch.distributed`` each process evaluates its shard and the matrix
    is summed. ``write_label_ids_dir`` (Cityscapes only; must be empty or new unless ``overwrite``) receives
    every prediction as a labelId PNG for ``cityscapesscripts``' evaluator.
    """
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    if write_label_ids_dir is not None:
        if num_classes != CITYSCAPES_CLASSES:
            raise ValueError(f"label-id PNGs are Cityscapes' format ({CITYSCAPES_CLASSES} classes), "
                             f"got {num_classes} classes")
        out = Path(write_label_ids_dir)
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise UserError(f"{out}: not empty, expected a new or empty folder for predictions")
    matrix = ConfusionMatrix(num_classes, ignore_index, device=device)
    was_training = model.training
    model.eval()
    images = 0
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress):
            image = batch["image"].to(device, non_blocking=True)
            target = batch["label"].to(device, non_blocking=True)
            pred = predict_logits(model, image, scales, flip, num_classes).argmax(1)
            matrix.update(pred, target)
            images += image.shape[0]
            if write_label_ids_dir is not None:
                for name, one in zip(batch["name"], pred):
                    write_label_ids(one, name, write_label_ids_dir)
    finally:
        model.train(was_training)
    matrix.reduce_()
    return {**matrix.compute(), "images": int(matrix.reduce_count(images))}

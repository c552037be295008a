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
        size = (round(height * scale), round(width * scale))
        if min(size) < 1:
            raise UserError(f"scale {scale:g} turns a {height}x{width} input into {size[0]}x{size[1]} pixels, "
                            f"expected scales that leave at least 1 pixel")
        x = image if scale == 1.0 else _resize(image, size)
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


# Large images are segmented in overlapping tiles (the usual sliding-window inference): the peak memory
# is one tile's forward pass plus class scores for one band of TILE rows, not the whole image's.
TILE = 1024          # window side in pixels (a multiple of the output stride 32)
TILE_OVERLAP = 256   # pixels shared by neighbouring windows; their probabilities are averaged there


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Window starts covering ``0..length``: every ``stride``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


@torch.no_grad()
def predict_tiled(model, rgb: np.ndarray, mean, std, scales=(1.0,), flip: bool = False, tile: int = TILE,
                  overlap: int = TILE_OVERLAP, device=None) -> np.ndarray:
    """H×W class indices (uint8) of an H×W×3 uint8 image, through windows of ``tile`` pixels that overlap
    by ``overlap``; an image within one tile is one window (= :func:`predict_logits` on the whole image).

    Each window is normalized on its own (the float image is never held whole), its softmax probabilities
    are summed into an accumulator for the current band of rows, and rows that no later window reaches
    are finished (averaged, argmax) before the next band starts."""
    if not 0 <= overlap < tile:
        raise UserError(f"tile overlap {overlap}: expected 0 <= overlap < tile ({tile})")
    device = device if device is not None else next(model.parameters()).device
    mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    height, width = rgb.shape[:2]
    th, tw = min(tile, height), min(tile, width)
    rows, cols = _starts(height, th, tile - overlap), _starts(width, tw, tile - overlap)
    label = np.empty((height, width), dtype=np.uint8)
    carry = None   # (scores, counts) of the rows the previous band shares with this one
    for i, y in enumerate(rows):
        acc = count = None   # summed probabilities and window counts of rows y .. y + th
        for x in cols:
            window = torch.from_numpy(np.ascontiguousarray(rgb[y:y + th, x:x + tw].transpose(2, 0, 1)))
            window = (window.to(device).float().div(255).unsqueeze(0) - mean) / std
            probs = predict_logits(model, window, scales, flip)
            if acc is None:
                acc = torch.zeros(1, probs.shape[1], th, width, device=device)
                count = torch.zeros(th, width, device=device)
                if carry is not None:
                    acc[:, :, :carry[1].shape[0]] = carry[0]
                    count[:carry[1].shape[0]] = carry[1]
            acc[:, :, :, x:x + tw] += probs
            count[:, x:x + tw] += 1
        end = rows[i + 1] if i + 1 < len(rows) else height   # no later window reaches the rows above `end`
        done = end - y
        label[y:end] = (acc[:, :, :done] / count[:done]).argmax(1)[0].to(torch.uint8).cpu().numpy()
        carry = (acc[:, :, done:].clone(), count[done:].clone())
    return label


def write_label_ids(train_ids: torch.Tensor, name: str, out_dir) -> Path:
    """Save an H×W trainId prediction as a Cityscapes labelId PNG ``<name>_labelIds.png``."""
    from ssnas.data.cityscapes import to_label_ids

    path = Path(out_dir) / f"{name}{LABEL_IDS_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(np.ascontiguousarray(to_label_ids(train_ids))).save(path)
    except OSError as exc:   # a full disk: one line, as for every other output
        raise UserError(f"{path}: cannot write ({exc.strerror or exc}); the label maps of earlier images are "
                        f"complete, expected free space and a writable folder") from None
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

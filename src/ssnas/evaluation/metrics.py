"""Confusion matrix, IoU and mIoU with the Cityscapes evaluator's conventions.

``matrix[t, p]`` counts pixels of target class ``t`` predicted as ``p``; ignore pixels are never counted.
IoU_c = TP / (TP + FP + FN). A class with TP + FP + FN = 0 (absent from both target and prediction) has
IoU NaN and is left out of the mean; a class that is predicted but absent from the target has IoU 0 and
counts. This is exactly ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` (all 19 classes
listed, NaN for absent ones, ``averageScoreClasses`` = mean over the non-NaN scores), since its false
positives also exclude pixels whose ground truth is ignored.
"""
from __future__ import annotations

import math

import torch

IGNORE_INDEX = 255


class ConfusionMatrix:
    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device=None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch. ``pred``: class indices shaped like ``target``, or scores B×C×H×W (argmax over C)."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} differs from target {tuple(target.shape)}")
        if self.matrix.device != target.device:
            self.matrix = self.matrix.to(target.device)
        pred = pred.to(target.device)
        valid = target != self.ignore_index
        target, pred = target[valid].long(), pred[valid].long()
        n = self.num_classes
        if bool(((target < 0) | (target >= n) | (pred < 0) | (pred >= n)).any()):   # one sync on CUDA
            raise ValueError(f"class index outside 0..{n - 1} (and not ignore {self.ignore_index})")
        self.matrix += torch.bincount(target * n + pred, minlength=n * n).view(n, n)

    def reduce_(self) -> "ConfusionMatrix":
        """Sum the matrix over all processes (in place) when ``torch.distributed`` is initialized."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)
        return self

    def reduce_count(self, count: int) -> int:
        """A per-process count summed over all processes (like :meth:`reduce_`)."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            t = torch.tensor([count], dtype=torch.int64, device=self.matrix.device)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            return int(t.item())
        return count

    def iou(self) -> torch.Tensor:
        """Per-class IoU as float64, NaN where the class is absent from target and prediction."""
        m = self.matrix.double()
        tp = m.diagonal()
        denom = m.sum(0) + m.sum(1) - tp                    # TP + FP + FN
        return torch.where(denom > 0, tp / denom.clamp(min=1), torch.full_like(tp, math.nan))

    def compute(self) -> dict:
        """{"miou", "per_class_iou" (NaN for absent classes), "pixel_acc"} as Python floats."""
        iou = self.iou()
        present = ~iou.isnan()
        total = int(self.matrix.sum())
        return {
            "miou": float(iou[present].mean()) if present.any() else math.nan,
            "per_class_iou": [float(v) for v in iou.cpu()],
            "pixel_acc": float(self.matrix.diagonal().sum()) / total if total else math.nan,
        }

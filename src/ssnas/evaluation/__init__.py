"""Segmentation metrics (Cityscapes conventions) and whole-image / multi-scale evaluation."""
from ssnas.evaluation.inference import evaluate, predict_logits, write_label_ids
from ssnas.evaluation.metrics import ConfusionMatrix

__all__ = ["ConfusionMatrix", "evaluate", "predict_logits", "write_label_ids"]

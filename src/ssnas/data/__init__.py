"""Datasets (Cityscapes and the generic folder format), their class tables and augmentations."""
from ssnas.data.classes import ClassTable
from ssnas.data.dataset import SegmentationDataset, build_dataset
from ssnas.data.transforms import build_transforms

__all__ = ["ClassTable", "SegmentationDataset", "build_dataset", "build_transforms"]

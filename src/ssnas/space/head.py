"""Prediction head (DCNAS-style): the four last-layer outputs upsampled to stride 4 and concatenated
(15F channels), 1×1 conv → BN → ReLU, 1×1 conv to the classes, bilinear upsampling ×4."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.space.operations import ConvBN


class SegmentationHead(nn.Module):
    def __init__(self, widths: list[int], num_classes: int, channels: int = 256):
        super().__init__()
        self.fuse = ConvBN(sum(widths), channels, 1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        base = features[0].shape[-2:]
        ups = [features[0]] + [F.interpolate(f, size=base, mode="bilinear", align_corners=False) for f in features[1:]]
        logits = self.classifier(self.fuse(torch.cat(ups, 1)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

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
        self.widths = list(widths)
        self.fuse = ConvBN(sum(widths), channels, 1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        base = features[0].shape[-2:]
        if self.training:
            fused = self._fuse_conv_per_level(features, base)
            for layer in list(self.fuse)[1:]:   # BN, ReLU
                fused = layer(fused)
        else:  # the paper's order: what is profiled (Table 3's FLOPs), evaluated and exported
            ups = [features[0]] + [F.interpolate(f, size=base, mode="bilinear", align_corners=False)
                                   for f in features[1:]]
            fused = self.fuse(torch.cat(ups, 1))
        logits = self.classifier(fused)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def _fuse_conv_per_level(self, features: list[Tensor], base) -> Tensor:
        """The fuse 1×1 conv of the concatenated, upsampled levels, computed as Σ_i up(W_i · f_i): a 1×1 conv
        commutes with bilinear upsampling, so each level is convolved at its own resolution (a training
        iteration of small: the head's conv, cat and upsampling 1.6x faster, bench/bench_train.py --ab)."""
        out = None
        for f, w in zip(features, torch.split(self.fuse[0].weight, self.widths, 1)):
            t = F.conv2d(f, w)
            if t.shape[-2:] != base:
                t = F.interpolate(t, size=base, mode="bilinear", align_corners=False)
            out = t if out is None else out + t
        return out

"""Prediction head (DCNAS-style): the four last-layer outputs upsampled to stride 4 and concatenated
(15F channels), 1×1 conv → BN → ReLU, 1×1 conv to the classes, bilinear upsampling ×4."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.ops.fold import conv_like, copy_conv, fold_bn, permute_inputs
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

    def reparameterize(self, input_permutations: list[Tensor] | None = None) -> nn.Sequential:
        """The head's ``fuse()`` (named as timm's, since ``self.fuse`` is its 1×1 conv, a checkpointed name).

        The head in eval mode with its BN folded: ``Sequential(fuse conv, ReLU, classifier)`` (the
        upsampling and concatenation stay with the fused network). ``input_permutations[i]``: the channel order
        of level i's input (a fused cell skips its channel shuffle: ``Cell.output_permutation``)."""
        w, b = fold_bn(self.fuse[0].weight, self.fuse[1])
        if input_permutations is not None:
            parts = torch.split(w, self.widths, 1)
            w = torch.cat([permute_inputs(part, perm) for part, perm in zip(parts, input_permutations)], 1)
        return nn.Sequential(conv_like(self.fuse[0], w, b), nn.ReLU(), copy_conv(self.classifier))

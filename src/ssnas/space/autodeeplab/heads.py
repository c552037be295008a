"""Auto-DeepLab's stem and heads.

- Stem (Auto-DeepLab §4.1, the released network): three 3×3 Conv-BN-ReLU with strides 2, 1, 2; the 2nd
  output (stride 2) is the first cell's H^{l-2}, the 3rd (stride 4) its H^{l-1}.
- Search head (§4.1): one ASPP per spatial level of the last layer, atrous rate ``rate_base / stride``
  (96/s: 24, 12, 6, 3), logits upsampled to the input and summed.
- Retrained head: DeepLabv3+'s ASPP (1×1, three 3×3 atrous, image pooling; 256 channels) and decoder (the
  stride-4 features projected to 48 channels, two 3×3 convs), as the released Auto-DeepLab uses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.space.autodeeplab.cell import resample
from ssnas.space.operations import ConvBN


class Stem(nn.Module):
    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv0 = ConvBN(in_channels, channels, 3, 2)
        self.conv1 = ConvBN(channels, channels, 3, 1)
        self.conv2 = ConvBN(channels, 2 * channels, 3, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s2 = self.conv1(self.conv0(x))
        return s2, self.conv2(s2)


class ImagePool(nn.Module):
    """ASPP's image-level branch: global average, 1×1 conv (+ BN unless ``norm=False``), ReLU, broadcast back.
    The search heads leave out the BN: it would see one value per channel and image (batch 1 fails)."""

    def __init__(self, cin: int, cout: int, norm: bool = True):
        super().__init__()
        self.conv = ConvBN(cin, cout, 1) if norm else nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.mean((2, 3), keepdim=True))
        return y.expand(-1, -1, *x.shape[-2:])


class AtrousConvBN(nn.Sequential):
    """3×3 atrous Conv-BN-ReLU (padding = rate keeps the size)."""

    def __init__(self, cin: int, cout: int, rate: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=rate, dilation=rate, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SearchASPP(nn.Module):
    """The search's per-level ASPP: 1×1, one 3×3 atrous (rate 96/s), image pooling, each Conv-BN-ReLU at the
    level's width; concatenated, 1×1 to the classes."""

    def __init__(self, channels: int, rate: int, num_classes: int):
        super().__init__()
        self.branches = nn.ModuleList([ConvBN(channels, channels, 1), AtrousConvBN(channels, channels, rate),
                                       ImagePool(channels, channels, norm=False)])
        self.classifier = nn.Conv2d(3 * channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.cat([b(x) for b in self.branches], 1))


class DeepLabV3PlusHead(nn.Module):
    """ASPP (1×1, atrous 3×3 at ``rates``, image pooling → concat → 1×1) on the backbone's output, upsampled to
    the low-level features' stride, concatenated with their 1×1 projection, two 3×3 Conv-BN-ReLU, classifier."""

    def __init__(self, cin: int, low_channels: int, num_classes: int, rates=(12, 24, 36), channels: int = 256,
                 low_project: int = 48):
        super().__init__()
        self.aspp = nn.ModuleList([ConvBN(cin, channels, 1)] + [AtrousConvBN(cin, channels, r) for r in rates]
                                  + [ImagePool(cin, channels)])
        self.project = ConvBN(channels * (len(rates) + 2), channels, 1)
        self.low = ConvBN(low_channels, low_project, 1)
        self.decoder = nn.Sequential(ConvBN(channels + low_project, channels, 3), ConvBN(channels, channels, 3))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor, low: Tensor) -> Tensor:
        y = self.project(torch.cat([b(x) for b in self.aspp], 1))
        y = resample(y, low.shape[-2:])
        return self.classifier(self.decoder(torch.cat([y, self.low(low)], 1)))


def upsample_to(logits: Tensor, size) -> Tensor:
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)

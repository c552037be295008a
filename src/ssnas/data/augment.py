"""The paper's §4.1 training augmentation, batch-wise on the training device (kornia for colour).

CPU workers only decode and collate (``transforms.py``); this runs where the model runs:
random scale → pad (image 0, label ignore) → random crop → horizontal flip → colour jitter (brightness,
contrast, saturation, hue, in that order; contrast and saturation blend with the mean / the grey image as
torchvision and albumentations do, hue rotates in HSV) → Gaussian noise → normalisation.

- Labels are resized with nearest-neighbour sampling, never interpolated: every output label value is an
  input label value or the ignore index (padding).
- Geometry is per sample (images may differ in size; each gets its own scale and crop) and computes only
  the crop's pixels (scale, pad, crop and flip are one index map); the photometric steps run once over the
  stacked batch, with one factor per sample.
- Randomness: every sample carries a seed (``engine/streams.py``: from the stream's seed, pass and
  position). All of a sample's parameters are drawn from a CPU generator seeded with it, and its noise
  from a device generator seeded from that one. So a batch is a function of (seed, stream position): a
  resumed run replays the same augmentation exactly (the stream's position is in the checkpoint), and
  the result does not depend on the number of workers. Same machine and threads give the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

HUE_FRACTION = 0.25                 # hue jitter = strength * this (0.4 -> 0.1, torchvision's usual pairing)
MAX_HUE = 0.5                       # hue shift as a fraction of the colour circle
NOISE_STD_RANGE = (0.01, 0.05)      # Gaussian noise sigma, on the 0..1 scale (= fraction of 255)
SEED_BITS = 62                      # device noise generator seeds drawn per sample


@dataclass
class SampleParams:
    """One sample's draw: what the statistical tests check against their configured distributions."""
    scale: float
    size: tuple          # (h, w) after scaling
    pad: tuple           # (top, bottom, left, right)
    crop: tuple          # (y0, x0) in the padded image
    flip: bool
    brightness: float
    contrast: float
    saturation: float
    hue: float           # fraction of the colour circle
    noise: bool
    sigma: float
    noise_seed: int


class BatchAugment:
    """``augment(images, labels, seeds, device)`` → (normalized float B×3×h×w, int64 labels B×h×w)."""

    def __init__(self, cfg):
        self.crop = tuple(int(v) for v in cfg.crop_size)
        self.scale_range = tuple(float(v) for v in cfg.scale_range)
        self.hflip = float(cfg.hflip)
        self.jitter = float(cfg.color_jitter)
        self.hue = min(MAX_HUE, self.jitter * HUE_FRACTION)
        self.noise_p = float(cfg.gauss_noise)
        self.mean, self.std = tuple(cfg.mean), tuple(cfg.std)
        self.ignore_index = int(cfg.ignore_index)

    # ------------------------------------------------------------------ parameters
    def sample_params(self, seed: int, height: int, width: int) -> SampleParams:
        g = torch.Generator().manual_seed(int(seed))

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))

        low, high = self.scale_range
        scale = uniform(low, high)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        ch, cw = self.crop
        ph, pw = max(0, ch - h), max(0, cw - w)
        pad = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)   # centred, as PadIfNeeded
        y0 = int(torch.randint(h + ph - ch + 1, (), generator=g))
        x0 = int(torch.randint(w + pw - cw + 1, (), generator=g))
        flip = uniform(0, 1) < self.hflip
        s = self.jitter
        b, c, sat = (uniform(max(0.0, 1 - s), 1 + s) for _ in range(3)) if s > 0 else (1.0, 1.0, 1.0)
        hue = uniform(-self.hue, self.hue) if s > 0 else 0.0
        noise = uniform(0, 1) < self.noise_p
        sigma = uniform(*NOISE_STD_RANGE)
        noise_seed = int(torch.randint(2 ** SEED_BITS, (), generator=g))
        return SampleParams(scale, (h, w), pad, (y0, x0), flip, b, c, sat, hue, noise, sigma, noise_seed)

    # ------------------------------------------------------------------ geometry (per sample)
    @staticmethod
    def _axis(n_src: int, n_scaled: int, start: int, length: int, device) -> tuple:
        """Where the crop's pixels along one axis of the scaled, padded image come from in the source.

        ``start`` is the crop's first pixel in scaled-image coordinates (negative inside the padding).
        Returns the bilinear source coordinate as ``grid_sample``'s normalized one (pixel centres, as
        ``F.interpolate(..., align_corners=False)``: src = (d + 0.5)·n_src/n_scaled − 0.5; "border" padding
        is its clamp), the nearest source index ("nearest-exact": floor((d + 0.5)·n_src/n_scaled)), and which
        pixels lie inside the scaled image (the rest is padding). Only the crop is computed, so the cost does
        not grow with the scale (a 2× scaled 1024×2048 frame is never built)."""
        d = torch.arange(start, start + length, dtype=torch.float64, device=device)
        ratio = n_src / n_scaled
        normalized = ((d + 0.5) * ratio / n_src * 2 - 1).to(torch.float32)
        nearest = ((d + 0.5) * ratio).floor().long().clamp(0, n_src - 1)
        return normalized, nearest, (d >= 0) & (d < n_scaled)

    def _geometry(self, image: Tensor, label: Tensor, p: SampleParams) -> tuple[Tensor, Tensor]:
        """image 3×H×W uint8, label H×W (any int dtype) → crops 3×h×w float 0..1 and h×w labels: scaled
        (image bilinear, label nearest: never blended), padded (image 0, label ignore), cropped, flipped —
        one sampling grid."""
        (height, width), (h, w) = image.shape[-2:], p.size
        top, _, left, _ = p.pad
        (y0, x0), (ch, cw) = p.crop, self.crop
        gy, yn, yin = self._axis(height, h, y0 - top, ch, image.device)
        gx, xn, xin = self._axis(width, w, x0 - left, cw, image.device)
        if p.flip:
            gx, xn, xin = gx.flip(0), xn.flip(0), xin.flip(0)
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
        x = F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        inside = yin.view(-1, 1) & xin.view(1, -1)
        x = x * (inside / 255)
        y = label.index_select(0, yn).index_select(1, xn).long()
        y = y.masked_fill(~inside, self.ignore_index)
        return x, y

    # ------------------------------------------------------------------ photometry (batch-wise)
    def _photometric(self, x: Tensor, params: list[SampleParams]) -> Tensor:
        from kornia.enhance import (adjust_contrast_with_mean_subtraction, adjust_hue,
                                    adjust_saturation_with_gray_subtraction)

        def factor(name: str) -> Tensor:
            return torch.tensor([getattr(p, name) for p in params], device=x.device, dtype=x.dtype)

        if self.jitter > 0:
            x = (x * factor("brightness").view(-1, 1, 1, 1)).clamp_(0, 1)
            x = adjust_contrast_with_mean_subtraction(x, factor("contrast")).clamp_(0, 1)
            x = adjust_saturation_with_gray_subtraction(x, factor("saturation")).clamp_(0, 1)
            x = adjust_hue(x, factor("hue") * 2 * math.pi).clamp_(0, 1)
        noisy = [i for i, p in enumerate(params) if p.noise]
        if noisy:
            noise = torch.stack([self._noise(x.shape[1:], params[i], x.device, x.dtype) for i in noisy])
            x = x.clone()
            x[noisy] = (x[noisy] + noise).clamp_(0, 1)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    @staticmethod
    def _noise(shape, p: SampleParams, device, dtype) -> Tensor:
        g = torch.Generator(device=device).manual_seed(p.noise_seed)
        return p.sigma * torch.randn(tuple(shape), generator=g, device=device, dtype=dtype)

    # ------------------------------------------------------------------ the batch
    def __call__(self, images, labels, seeds, device) -> tuple[Tensor, Tensor]:
        """``images``: uint8 3×H×W tensors (a list, or a stacked batch); ``labels``: H×W; ``seeds``: ints."""
        device = torch.device(device)
        crops, targets, params = [], [], []
        for image, label, seed in zip(images, labels, seeds):
            p = self.sample_params(int(seed), image.shape[-2], image.shape[-1])
            x, y = self._geometry(image.to(device, non_blocking=True), label.to(device, non_blocking=True), p)
            crops.append(x)
            targets.append(y)
            params.append(p)
        x = self._photometric(torch.stack(crops), params)
        return x, torch.stack(targets)

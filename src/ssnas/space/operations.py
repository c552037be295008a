"""Building blocks of a cell: the inverted bottleneck with an α̂-mixed depthwise "superkernel".

The cell's candidate operations o_k (Eq. 3) are inverted bottlenecks (MobileNetV3-style, with
squeeze-excitation) that differ only in the depthwise kernel size k. Because convolution is linear in its
kernel, Σ_k α̂_k · dwconv_k(x) equals one depthwise convolution with the kernel Σ_k α̂_k · pad(W_k) —
so the kernel mixture costs one convolution instead of three.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssnas.ops.fold import FOLD_DTYPE, fold_bn, fuse_conv_bn, set_conv
from ssnas.space.depthwise import depthwise_conv

SE_REDUCTION = 4  # squeeze width = expanded width / 4 (MobileNetV3)


class ConvBN(nn.Sequential):
    """Conv (no bias) → BatchNorm → optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def fuse(self) -> nn.Sequential:
        """The conv with its BN folded in (+ ReLU): ``Sequential(conv[, ReLU])``."""
        conv = fuse_conv_bn(self[0], self[1])
        return nn.Sequential(conv, nn.ReLU()) if len(self) > 2 else nn.Sequential(conv)


class SqueezeExcite(nn.Module):
    """Channel attention x · hardsigmoid(W2 relu(W1 mean(x))).

    hardsigmoid is written as relu6(x + 3) / 6 (the same function): torch's ``hardsigmoid`` has no second
    derivative, and the Hessian tracking of α, β (``engine/tracking.py``) differentiates twice."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        squeeze = max(1, channels // reduction)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        # the mean as sum / (H·W): the same values as ``mean`` (ATen's CPU mean is sum, then div), but its
        # gradient is an expanded (stride-0) view instead of a full-size division whose NCHW result is then
        # added onto the channels-last gradient of ``x *``: SE forward + backward 1.7-2.6x faster at the
        # cells' hidden widths (docs/benchmarks.md, "Search iteration vs d72ebf1")
        s = x.sum((2, 3), keepdim=True) / (x.shape[-2] * x.shape[-1])
        return x * (F.relu6(self.expand(F.relu(self.reduce(s))) + 3.0) / 6.0)

    def fuse(self) -> "SqueezeExcite":
        """Nothing to fold (no BN): a copy."""
        return copy.deepcopy(self)


class MixedDepthwise(nn.Module):
    """Depthwise convolution over candidate kernel sizes, mixed as one kmax × kmax superkernel.

    ``shared=True`` (default): the candidates are nested — the k×k kernel is the centre of one kmax×kmax
    weight (Single-Path NAS), so the superkernel is W ⊙ Σ_k α̂_k·1[centre k×k]. This matches Table 3's
    parameter counts. ``shared=False``: one weight per kernel size, zero-padded and α̂-summed.
    """

    def __init__(self, channels: int, kernel_sizes: tuple[int, ...], shared: bool = True):
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        self.kmax = max(self.kernel_sizes)
        self.shared = shared or len(self.kernel_sizes) == 1
        sizes = (self.kmax,) if self.shared else self.kernel_sizes
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(channels, 1, k, k)) for k in sizes)
        for w in self.weights:
            nn.init.kaiming_normal_(w, mode="fan_out")
        centres = torch.zeros(len(self.kernel_sizes), self.kmax, self.kmax)
        for i, k in enumerate(self.kernel_sizes):
            p = (self.kmax - k) // 2
            centres[i, p:p + k, p:p + k] = 1.0
        self.register_buffer("centres", centres, persistent=False)

    def superkernel(self, mix: Tensor | None) -> Tensor:
        """The mixed kernel Σ_k mix_k · W_k (padded to kmax); the plain kernel for one candidate."""
        if mix is None:
            if len(self.kernel_sizes) != 1:
                raise ValueError("a mixture weight vector is needed for several kernel sizes")
            return self.weights[0]
        if self.shared:
            return self.weights[0] * torch.einsum("k,kij->ij", mix.to(self.centres.dtype), self.centres)
        kernel = None
        for m, w in zip(mix, self.weights):
            p = (self.kmax - w.shape[-1]) // 2
            term = m * (F.pad(w, (p, p, p, p)) if p else w)
            kernel = term if kernel is None else kernel + term
        return kernel

    def forward(self, x: Tensor, mix: Tensor | None = None) -> Tensor:
        k = self.superkernel(mix)
        if x.device.type == "cpu" and x.dim() == 4:
            # On CPU the NCHW depthwise backward is 2-3.4x slower than channels-last (quiet machine,
            # bench/bench_depthwise.py; far worse when the cores are oversubscribed). One cheap copy.
            x = x.contiguous(memory_format=torch.channels_last)
        return depthwise_conv(x, k)   # its CPU weight gradient is a dedicated loop (space/depthwise.py)


class InvertedBottleneck(nn.Module):
    """x + project(SE(dw(expand(x)))): the cell operation o_k of Eq. 3 (kernel given by ``mix``)."""

    def __init__(self, channels: int, expansion: float, kernel_sizes: tuple[int, ...], squeeze_excite: bool = True,
                 shared_kernels: bool = True):
        super().__init__()
        hidden = max(1, int(round(channels * expansion)))
        self.expand = ConvBN(channels, hidden, 1)
        self.dw = MixedDepthwise(hidden, kernel_sizes, shared_kernels)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.se = SqueezeExcite(hidden) if squeeze_excite else nn.Identity()
        self.project = ConvBN(hidden, channels, 1, act=False)

    def forward(self, x: Tensor, mix: Tensor | None = None) -> Tensor:
        h = self.expand(x)
        h = F.relu(self.dw_bn(self.dw(h, mix)), inplace=True)
        return x + self.project(self.se(h))

    def fuse(self, mix: Tensor | None = None, scale: float | Tensor = 1.0) -> "FusedBlock":
        """``scale · (block(x) - x)`` with the depthwise kernel α̂-mixed by ``mix`` and every BN folded: the
        residual branch only (a cell adds the input once for all its blocks, Σ_k α̂_k = 1). The mixed kernel
        is cropped to the largest kernel with ``mix_k ≠ 0``: the rest of it is exactly zero."""
        kernel = self.dw.kmax if mix is None else max(k for k, m in zip(self.dw.kernel_sizes, mix) if m != 0)
        weight = self.dw.superkernel(mix)
        ref = self.expand[0].weight
        block = FusedBlock(self.expand[0].in_channels, self.dw.weights[0].shape[0], kernel,
                           isinstance(self.se, SqueezeExcite)).to(device=ref.device, dtype=ref.dtype)
        set_conv(block.expand, *fold_bn(self.expand[0].weight, self.expand[1]))
        p = (weight.shape[-1] - kernel) // 2
        set_conv(block.dw, *fold_bn(weight[..., p:p + kernel, p:p + kernel], self.dw_bn))
        if isinstance(self.se, SqueezeExcite):
            block.se = self.se.fuse()
        set_conv(block.project, *fold_bn(self.project[0].weight, self.project[1],
                                         torch.as_tensor(scale, dtype=FOLD_DTYPE)))
        return block


def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A biased conv (what a conv → BN becomes once folded)."""
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=True)


class FusedBlock(nn.Module):
    """An inverted bottleneck folded for deployment, without its residual:
    project(SE(relu(dw(relu(expand(x)))))), BN folded (:meth:`InvertedBottleneck.fuse`)."""

    def __init__(self, channels: int, hidden: int, kernel: int, squeeze_excite: bool):
        super().__init__()
        self.expand = _conv(channels, hidden)
        self.dw = _conv(hidden, hidden, kernel, groups=hidden)
        self.se = SqueezeExcite(hidden) if squeeze_excite else nn.Identity()
        self.project = _conv(hidden, channels)

    def spec(self) -> dict:
        """The plain values that rebuild this block (the fused network's JSON spec)."""
        return dict(kernel=self.dw.kernel_size[0], hidden=self.dw.out_channels,
                    squeeze_excite=isinstance(self.se, SqueezeExcite))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.dw(F.relu(self.expand(x))))
        return self.project(self.se(h))


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave channel groups so sampled and bypassed channels mix across layers (PC-DARTS)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)

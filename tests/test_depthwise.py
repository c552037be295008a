"""The depthwise convolution's CPU weight-gradient loop (space/depthwise.py) against ATen's gradients."""
import pytest
import torch
import torch.nn.functional as F

from ssnas.space import depthwise
from ssnas.space.depthwise import cpu_kernel_available, depthwise_conv

needs_kernel = pytest.mark.skipif(not cpu_kernel_available(), reason="no C++ compiler: the ATen path is used")


def _aten(x, w):
    return F.conv2d(x, w, None, 1, w.shape[-1] // 2, 1, x.shape[1])


@needs_kernel
@pytest.mark.parametrize("shape,k,layout", [
    ((2, 48, 16, 32), 7, torch.channels_last),   # channels a multiple of the 16-channel block
    ((3, 21, 9, 13), 5, torch.channels_last),    # a partial block, odd sizes
    ((1, 40, 4, 6), 3, torch.contiguous_format), # NCHW input, a kernel wider than the image rows
    ((2, 8, 5, 5), 9, torch.channels_last),
])
@pytest.mark.parametrize("threads", [1, 2])   # the loop splits image rows over torch's OpenMP threads
def test_gradients_equal_aten(shape, k, layout, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _check_against_aten(shape, k, layout)
    finally:
        torch.set_num_threads(before)


def _check_against_aten(shape, k, layout):
    torch.manual_seed(0)
    x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(shape[1], 1, k, k, requires_grad=True)
    g = torch.randn(shape)
    y = depthwise_conv(x, w)
    assert y.grad_fn is not None and "DepthwiseConv" in y.grad_fn.name()   # the loop, not ATen
    gx, gw = torch.autograd.grad(y, (x, w), g)
    ref_y = _aten(x, w)
    ref_gx, ref_gw = torch.autograd.grad(ref_y, (x, w), g)
    torch.testing.assert_close(y, ref_y, rtol=0, atol=0)
    torch.testing.assert_close(gx, ref_gx, rtol=0, atol=0)
    torch.testing.assert_close(gw, ref_gw, rtol=1e-5, atol=1e-5 * ref_gw.abs().max().item())


@needs_kernel
def test_double_backward_uses_differentiable_ops():
    """The Hessian tracking differentiates twice: the second derivative equals ATen's."""
    torch.manual_seed(1)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    w = torch.randn(16, 1, 7, 7, requires_grad=True)
    results = []
    for conv in (depthwise_conv, _aten):
        gx, gw = torch.autograd.grad(conv(x, w).pow(2).sum(), (x, w), create_graph=True)
        results.append(torch.autograd.grad(gw.pow(2).sum() + gx.pow(2).sum(), (x, w)))
    for got, ref in zip(*results):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_plain_path_without_autograd_under_autocast_or_when_switched_off(monkeypatch):
    x, w = torch.randn(1, 4, 6, 6), torch.randn(4, 1, 3, 3)
    with torch.no_grad():
        assert depthwise_conv(x.requires_grad_(), w).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):   # bf16 gradients: ATen's kernels
        y = depthwise_conv(x, w.requires_grad_())
        assert y.dtype == torch.bfloat16 and "DepthwiseConv" not in y.grad_fn.name()
    y.float().sum().backward()
    assert w.grad is not None
    monkeypatch.setenv(depthwise.ENV_SWITCH, "0")
    depthwise._extension.cache_clear()
    try:
        y = depthwise_conv(x.requires_grad_(), w)
        assert "DepthwiseConv" not in y.grad_fn.name()
    finally:
        depthwise._extension.cache_clear()

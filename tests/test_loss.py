"""The segmentation loss (tasks/segmentation.py): one value whatever the logits' layout and class count."""
import pytest
import torch
import torch.nn.functional as F

from ssnas.tasks.segmentation import NHWC_MIN_CLASSES, cross_entropy


@pytest.mark.parametrize("classes", [3, NHWC_MIN_CLASSES - 1, NHWC_MIN_CLASSES, 19])   # both sides of the switch
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_cross_entropy_equals_aten_over_dim_1(classes, layout):
    """The NHWC view (NHWC_MIN_CLASSES classes or more) and ATen's kernel over dim 1 (fewer) give
    F.cross_entropy's loss and gradient, ignored pixels included."""
    torch.manual_seed(0)
    x = torch.randn(2, classes, 6, 10).contiguous(memory_format=layout).requires_grad_()
    y = torch.randint(0, classes, (2, 6, 10))
    y[:, 0] = 255
    for reduction in ("mean", "none"):
        got = cross_entropy(x, y, 255, reduction)
        ref = F.cross_entropy(x.detach().contiguous().requires_grad_(), y, ignore_index=255, reduction=reduction)
        torch.testing.assert_close(got.reshape(ref.shape), ref, rtol=1e-6, atol=1e-6)
    (g,) = torch.autograd.grad(cross_entropy(x, y, 255), x)
    xr = x.detach().contiguous().requires_grad_()
    (gr,) = torch.autograd.grad(F.cross_entropy(xr, y, ignore_index=255), xr)
    torch.testing.assert_close(g, gr, rtol=1e-6, atol=1e-7)


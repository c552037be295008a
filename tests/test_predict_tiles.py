"""Tiled inference (``predict_tiled``): large images in overlapping windows with bounded memory, equal to
whole-image inference where the model allows it."""
import numpy as np
import pytest
import torch
from torch import nn

from ssnas.evaluation.inference import _starts, predict_logits, predict_tiled
from ssnas.space.variants import create_model

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Pointwise(nn.Module):
    """A 1×1-convolution 'network': each pixel's scores depend on that pixel only, so any correct tiling
    (windows, overlap averaging, band hand-over) must give exactly the whole-image result."""

    def __init__(self, classes=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 1)
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[-2:]))
        return self.conv(x)


def _whole(model, rgb, scales=(1.0,), flip=False):
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div(255).unsqueeze(0)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return predict_logits(model, x, scales, flip).argmax(1)[0].numpy().astype(np.uint8)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("size,tile,overlap,flip", [
    ((70, 100), 32, 8, False), ((70, 100), 32, 0, True), ((33, 200), 32, 31, False), ((96, 96), 48, 16, True),
])
def test_tiles_equal_the_whole_image_for_a_pointwise_model(size, tile, overlap, flip):
    model = Pointwise().eval()
    rgb = _image(*size)
    tiled = predict_tiled(model, rgb, MEAN, STD, flip=flip, tile=tile, overlap=overlap)
    whole = _whole(model, rgb, flip=flip)
    np.testing.assert_array_equal(tiled, whole)
    windows = [s for s in model.shapes if s != size]
    assert windows and max(max(s) for s in windows) <= tile  # no window larger than a tile reached the model


def test_an_image_within_one_tile_is_whole_image_inference_of_the_supernet():
    model = create_model("mini", num_classes=4).eval()
    rgb = _image(64, 96, seed=1)
    np.testing.assert_array_equal(predict_tiled(model, rgb, MEAN, STD, scales=(1.0, 0.5), tile=96, overlap=0),
                                  _whole(model, rgb, scales=(1.0, 0.5)))


class LocalConv(nn.Module):
    """Three 3×3 convolutions (receptive field 7 px) with random weights: varied, spatially coherent labels.
    A pixel near a window's edge sees zero padding instead of its neighbours there, so tiles differ from
    the whole image only within a few pixels of window edges, and overlap averaging heals most of that."""

    def __init__(self, classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, classes, 3, padding=1))

    def forward(self, x):
        return self.net(x)


def test_tiles_of_a_convolutional_model_agree_with_the_whole_image():
    model = LocalConv().eval()
    rgb = _image(150, 230, seed=3)
    whole = _whole(model, rgb)
    assert np.bincount(whole.ravel(), minlength=4).max() < 0.9 * whole.size   # not one class everywhere
    tiled = predict_tiled(model, rgb, MEAN, STD, tile=64, overlap=16)
    assert float((tiled == whole).mean()) >= AGREEMENT_FLOOR
    # every disagreement lies within the receptive radius of a window edge, never in a window's interior
    near_edge = np.zeros(whole.shape, dtype=bool)
    for axis, length in enumerate(whole.shape):
        for start in _starts(length, 64, 64 - 16):
            for edge in (start, start + 64):
                index = [slice(None)] * 2
                index[axis] = slice(max(0, edge - RECEPTIVE_RADIUS), edge + RECEPTIVE_RADIUS)
                near_edge[tuple(index)] = True
    assert (tiled != whole).any() and not ((tiled != whole) & ~near_edge).any()


AGREEMENT_FLOOR = 0.95     # measured 0.974 (docs/reliability.md); a stitching error gives about 1/4
RECEPTIVE_RADIUS = 3


def test_overlap_must_be_smaller_than_the_tile():
    from ssnas.errors import UserError
    with pytest.raises(UserError, match="overlap"):
        predict_tiled(Pointwise(), _image(64, 64), MEAN, STD, tile=32, overlap=32)

"""Training augmentation on the device (data/augment.py): alignment, and the statistics of every step —
scale distribution, crop placement, flip rate, jitter ranges, noise sigma, labels never interpolated, padding
= ignore — checked on the outputs, not only on shapes."""
import numpy as np
import pytest
import torch
from helpers_data import IGNORE, block_label

from ssnas.config import DataConfig
from ssnas.data.augment import HUE_FRACTION, NOISE_STD_RANGE, BatchAugment

MEAN, STD = np.array(DataConfig.mean), np.array(DataConfig.std)
N = 600   # samples per statistical check: binomial/uniform estimates within a few percent


def plain(**kw):
    base = dict(scale_range=(1.0, 1.0), hflip=0.0, color_jitter=0.0, gauss_noise=0.0)
    return DataConfig(**{**base, **kw})


def run(cfg, images, labels, seeds):
    """Augment numpy H×W×3 uint8 images / H×W uint8 labels; → (N×h×w×3 on the 0..255 scale, N×h×w labels)."""
    aug = BatchAugment(cfg)
    x, y = aug([torch.from_numpy(np.ascontiguousarray(i.transpose(2, 0, 1))) for i in images],
               [torch.from_numpy(lb) for lb in labels], seeds, "cpu")
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    return (x.permute(0, 2, 3, 1).numpy() * STD + MEAN) * 255, y.numpy()


def test_image_and_label_stay_aligned_for_mixed_sizes():
    """The image's colour encodes the label: after scale/pad/crop/flip every pure-colour pixel carries its
    class. Images of different sizes share one batch (a folder dataset's)."""
    rng = np.random.default_rng(0)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)
    c = plain(crop_size=(48, 80), scale_range=(0.5, 2.0), hflip=0.5)
    labels = [block_label(size, range(4), rng) for size in [(40, 64), (64, 96), (30, 50)] * 4]
    images, masks = run(c, [palette[lb] for lb in labels], labels, list(range(len(labels))))
    assert images.shape == (12, 48, 80, 3) and masks.shape == (12, 48, 80)
    for image, mask in zip(images, masks):
        distance = np.abs(image[:, :, None, :] - palette[None, None].astype(float)).max(-1)
        pure, valid = distance.min(-1) < 1.0, mask != IGNORE
        assert pure[valid].mean() > 0.5
        assert (distance.argmin(-1)[pure & valid] == mask[pure & valid]).mean() > 0.99
        assert np.abs(image[~valid]).max(initial=0) < 1.0          # padding: image 0 where label is ignore


def test_padding_is_ignore_and_flip_mirrors_both():
    label = np.tile(np.arange(30, dtype=np.uint8) % 3, (20, 1))
    image = np.stack([label * 80] * 3, -1).astype(np.uint8)
    out, masks = run(plain(crop_size=(40, 50), hflip=1.0), [image], [label], [0])
    mask = masks[0]
    assert (mask == IGNORE).sum() == 40 * 50 - 20 * 30
    rows, cols = np.nonzero(mask != IGNORE)
    crop = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    np.testing.assert_array_equal(crop, label[:, ::-1])      # flipped, and in one piece
    np.testing.assert_allclose(out[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1, 0], crop * 80.0,
                               atol=1e-3)


def test_scale_two_doubles_the_label_exactly():
    label = block_label((16, 16), range(3), np.random.default_rng(1), block=4)
    _, masks = run(plain(crop_size=(64, 64), scale_range=(2.0, 2.0)), [np.zeros((16, 16, 3), np.uint8)], [label],
                   [0])
    np.testing.assert_array_equal(masks[0][16:48, 16:48], label.repeat(2, 0).repeat(2, 1))


def test_scale_distribution_is_uniform_on_the_range():
    aug = BatchAugment(plain(crop_size=(32, 32), scale_range=(0.5, 2.0)))
    scales = np.array([aug.sample_params(s, 100, 200).scale for s in range(N * 3)])
    assert scales.min() >= 0.5 and scales.max() <= 2.0
    quarters = np.histogram(scales, bins=4, range=(0.5, 2.0))[0] / len(scales)
    assert np.abs(quarters - 0.25).max() < 0.04          # 4 sigma of a binomial share at n = 1800
    p = aug.sample_params(7, 100, 200)
    assert p.size == (round(100 * p.scale), round(200 * p.scale))


def test_crop_placement_is_uniform_and_is_where_the_output_comes_from():
    h, w, ch, cw = 60, 90, 20, 30
    codes = np.arange(h * w, dtype=np.int64).reshape(h, w)       # a pixel's position, coded in its colour
    image = np.stack([codes // 256, codes % 256, np.zeros_like(codes)], -1).astype(np.uint8)
    c = plain(crop_size=(ch, cw))
    aug = BatchAugment(c)
    params = [aug.sample_params(s, h, w) for s in range(N)]
    y0 = np.array([p.crop[0] for p in params])
    x0 = np.array([p.crop[1] for p in params])
    assert (y0.min(), y0.max(), x0.min(), x0.max()) == (0, h - ch, 0, w - cw)
    assert abs(y0.mean() - (h - ch) / 2) < 3 * (h - ch) / np.sqrt(12 * N)
    assert abs(x0.mean() - (w - cw) / 2) < 3 * (w - cw) / np.sqrt(12 * N)
    out, _ = run(c, [image] * 8, [np.zeros((h, w), np.uint8)] * 8, list(range(8)))
    for k in range(8):
        got = np.rint(out[k, ..., 0]).astype(np.int64) * 256 + np.rint(out[k, ..., 1]).astype(np.int64)
        np.testing.assert_array_equal(got, codes[y0[k]:y0[k] + ch, x0[k]:x0[k] + cw])


def test_flip_rate_matches_hflip():
    label = np.tile(np.arange(16, dtype=np.uint8)[None] % 4, (8, 1))   # left-right asymmetric
    c = plain(crop_size=(8, 16), hflip=0.3)
    n = 400
    _, masks = run(c, [np.zeros((8, 16, 3), np.uint8)] * n, [label] * n, list(range(n)))
    flipped = np.array([np.array_equal(m, label[:, ::-1]) for m in masks])
    assert all(f or np.array_equal(m, label) for f, m in zip(flipped, masks))
    assert abs(flipped.mean() - 0.3) < 0.07                  # 3 sigma at n = 400


def test_colour_jitter_ranges_and_applied_brightness():
    s = 0.4
    aug = BatchAugment(plain(crop_size=(16, 16), color_jitter=s))
    params = [aug.sample_params(seed, 16, 16) for seed in range(N)]
    for name in ("brightness", "contrast", "saturation"):
        v = np.array([getattr(p, name) for p in params])
        assert v.min() >= 1 - s and v.max() <= 1 + s and v.min() < 1 - 0.9 * s and v.max() > 1 + 0.9 * s
    hue = np.array([p.hue for p in params])
    assert np.abs(hue).max() <= s * HUE_FRACTION and np.abs(hue).max() > 0.9 * s * HUE_FRACTION
    # a grey image: contrast, saturation and hue leave it as it is, brightness scales it by its factor
    grey = np.full((16, 16, 3), 100, np.uint8)
    out, _ = run(plain(crop_size=(16, 16), color_jitter=s), [grey] * 20, [np.zeros((16, 16), np.uint8)] * 20,
                 list(range(20)))
    for k in range(20):
        np.testing.assert_allclose(out[k], 100 * params[k].brightness, atol=0.05)


def test_gaussian_noise_sigma_and_rate():
    aug = BatchAugment(plain(crop_size=(64, 64), gauss_noise=0.25))
    params = [aug.sample_params(seed, 64, 64) for seed in range(N)]
    assert abs(np.mean([p.noise for p in params]) - 0.25) < 0.06
    sigmas = np.array([p.sigma for p in params])
    assert sigmas.min() >= NOISE_STD_RANGE[0] and sigmas.max() <= NOISE_STD_RANGE[1]
    grey = np.full((64, 64, 3), 128, np.uint8)
    seeds = [k for k, p in enumerate(params) if p.noise][:10] + [k for k, p in enumerate(params) if not p.noise][:3]
    out, _ = run(plain(crop_size=(64, 64), gauss_noise=0.25), [grey] * len(seeds),
                 [np.zeros((64, 64), np.uint8)] * len(seeds), seeds)
    for k, seed in enumerate(seeds):
        measured = (out[k] - 128).std() / 255
        want = params[seed].sigma if params[seed].noise else 0.0
        assert abs(measured - want) < 0.05 * max(want, 0.01)       # 64·64·3 pixels: the std within 5 %


def test_labels_are_never_interpolated():
    rng = np.random.default_rng(3)
    values = (0, 3, 7, 12)
    labels = [rng.choice(np.array(values, np.uint8), size=(37, 53)) for _ in range(16)]   # pixel-level noise
    images = [rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8) for _ in range(16)]
    c = DataConfig(crop_size=(48, 64), scale_range=(0.6, 1.7), hflip=0.5, color_jitter=0.4, gauss_noise=0.5)
    _, masks = run(c, images, labels, list(range(16)))
    assert set(np.unique(masks)) <= set(values) | {IGNORE}
    share = np.array([(masks[masks != IGNORE] == v).mean() for v in values])
    assert np.abs(share - 0.25).max() < 0.03


def test_same_seeds_same_batch_other_seeds_other_batch():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8) for _ in range(4)]
    labels = [block_label((40, 60), range(3), rng) for _ in range(4)]
    c = DataConfig(crop_size=(32, 48), scale_range=(0.5, 2.0), hflip=0.5, color_jitter=0.4, gauss_noise=1.0)
    a, la = run(c, images, labels, [10, 11, 12, 13])
    b, lb = run(c, images, labels, [10, 11, 12, 13])
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    d, _ = run(c, images, labels, [20, 21, 22, 23])
    assert not np.array_equal(a, d)


@pytest.mark.parametrize("train", [True, False])
def test_cpu_workers_only_decode(train):
    """Train: the worker's output is the decoded uint8 image, untouched; eval: normalised."""
    from ssnas.data.transforms import build_transforms
    image = np.random.default_rng(5).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    label = np.zeros((20, 30), np.uint8)
    out = build_transforms(DataConfig(), train=train)(image=image, mask=label)
    if train:
        assert out["image"].dtype == torch.uint8 and np.array_equal(out["image"].permute(1, 2, 0).numpy(), image)
    else:
        np.testing.assert_allclose((out["image"].permute(1, 2, 0).numpy() * STD + MEAN) * 255, image, atol=1e-3)


def test_crop_only_geometry_equals_scaling_the_whole_image():
    """The sampling grid (only the crop's pixels) equals resize-whole-image → pad → crop → flip with torch's
    own bilinear and nearest-exact interpolation: labels exactly, images up to float rounding."""
    import torch.nn.functional as F
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, size=(45, 70, 3), dtype=np.uint8)
    label = rng.integers(0, 5, size=(45, 70), dtype=np.uint8)
    c = plain(crop_size=(40, 60), scale_range=(0.4, 1.8), hflip=0.5)
    aug = BatchAugment(c)
    timg, tlab = torch.from_numpy(image.transpose(2, 0, 1).copy()), torch.from_numpy(label)
    for seed in range(30):
        p = aug.sample_params(seed, 45, 70)
        x, y = aug._geometry(timg, tlab, p)
        ref = F.interpolate(timg[None].float() / 255, size=p.size, mode="bilinear", align_corners=False)[0]
        lab = F.interpolate(tlab[None, None].float(), size=p.size, mode="nearest-exact")[0, 0]
        top, bottom, left, right = p.pad
        ref = F.pad(ref, (left, right, top, bottom), value=0.0)
        lab = F.pad(lab, (left, right, top, bottom), value=float(IGNORE))
        (y0, x0), (ch, cw) = p.crop, c.crop_size
        ref, lab = ref[:, y0:y0 + ch, x0:x0 + cw], lab[y0:y0 + ch, x0:x0 + cw]
        if p.flip:
            ref, lab = ref.flip(-1), lab.flip(-1)
        assert torch.allclose(x, ref, atol=1e-4), seed   # float32 grid coordinates (measured max 8e-6)
        assert torch.equal(y, lab.long()), seed

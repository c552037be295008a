"""Throughput of the training data pipeline: decode + augment 1024×2048 images into 512×1024 crops.

Generates full-size Cityscapes-like frames (folder format, in a temporary directory unless --root is
given), then times ``DataLoader`` over the real ``build_dataset(..., train=True)`` with 0 and N workers.
``measure_pipeline`` is the reusable part; a model's training step can be timed next to it.

Side by side in one run (``--compare``): *before*, the former CPU pipeline (albumentations per image in
the worker: decode + scale/pad/crop/flip/jitter/noise/normalise; needs albumentations installed, which
ssnas no longer depends on), and *after*, the current one: the worker decodes and collates only, and
``data.augment.BatchAugment`` augments the batch on ``--device`` (timed apart: on a GPU it overlaps
nothing here, so the sum is an upper bound of the per-image cost).

    .venv/bin/python bench/bench_data.py --images 8 --workers 0 2
    .venv/bin/python bench/bench_data.py --images 4 --workers 0 --compare --device cpu
    .venv/bin/python bench/bench_data.py --root data/demo-proxy --crop 96 192 --batch-size 8 --batches 40 \
        --workers 0 --cache-mib 0 256 --repeat 3      # the decoded-sample cache at the proxy scale
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from ssnas.config import DataConfig
from ssnas.data import ClassTable, build_dataset

FULL_SIZE = (1024, 2048)        # Cityscapes frame (H, W)
REGION = 64                     # label region side, pixels
NOISE_STD = 12                  # pixel noise, so PNGs compress like photographs rather than flat colour


def make_full_size_tree(root: Path, n_images: int, seed: int = 0, size=FULL_SIZE) -> Path:
    """A folder-format train split of ``n_images`` random-region frames with Cityscapes' 19 classes."""
    rng = np.random.default_rng(seed)
    table = ClassTable.cityscapes()
    (root / "classes.yaml").write_text(yaml.safe_dump({"names": list(table.names),
                                                        "colors": [list(c) for c in table.colors]}))
    for sub in ("images/train", "labels/train"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n_images):
        cells = rng.integers(0, table.num_classes, size=(h // REGION, w // REGION), dtype=np.uint8)
        label = np.kron(cells, np.ones((REGION, REGION), dtype=np.uint8))
        image = table.palette()[label].astype(np.int16) + rng.normal(0, NOISE_STD, (h, w, 3)).astype(np.int16)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / f"images/train/{i:04d}.png")
        Image.fromarray(label).save(root / f"labels/train/{i:04d}.png")
    return root


def albumentations_transform(cfg):
    """The pipeline ssnas used before augmentation moved to the device (``data/transforms.py`` until then),
    kept here only to measure it against the current one."""
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    low, high = cfg.scale_range
    height, width = cfg.crop_size
    s = cfg.color_jitter
    return A.Compose([
        A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(min_height=height, min_width=width, border_mode=cv2.BORDER_CONSTANT, fill=0,
                      fill_mask=cfg.ignore_index),
        A.RandomCrop(height=height, width=width), A.HorizontalFlip(p=cfg.hflip),
        A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(0.5, s * 0.25), p=1.0),
        A.GaussNoise(std_range=(0.01, 0.05), p=cfg.gauss_noise),
        A.Normalize(mean=tuple(cfg.mean), std=tuple(cfg.std), max_pixel_value=255.0),
        A.Lambda(mask=_mask_to_int64), ToTensorV2()])


def _mask_to_int64(mask, **_):
    return mask.astype(np.int64)


def measure_pipeline(root, workers: int, batch_size: int = 2, batches: int = 4,
                     crop_size=(512, 1024), warmup_batches: int = 1, mode: str = "current",
                     device: str = "cpu", cache_mib: int = 0) -> dict:
    """Images/s of ``DataLoader(build_dataset(train=True))`` over ``batches`` batches after warm-up.

    ``mode``: "current" (workers decode + collate; ``device_images_per_s``: BatchAugment on ``device``) or
    "albumentations" (the former per-image CPU augmentation in the workers). ``cache_mib`` > 0: the dataset's
    decoded-sample cache (``data.cache_mib``), warmed by one load of every sample first, as a training stream's
    second pass finds it (it fills where ``load`` runs: with 0 workers, in this process)."""
    from ssnas.data.augment import BatchAugment
    from ssnas.engine.streams import collate

    cfg = DataConfig(format="folder", root=str(root), crop_size=tuple(crop_size), workers=workers,
                     batch_size=batch_size, cache_mib=cache_mib)
    dataset = build_dataset(cfg, cfg.train_split, train=True)
    if cache_mib:
        for i in range(len(dataset)):
            dataset.load(i)
    if mode == "albumentations":
        legacy = albumentations_transform(cfg)
        dataset.transform = lambda image, mask: legacy(image=image, mask=mask)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True,
                                             num_samples=(batches + warmup_batches) * batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                         drop_last=True, persistent_workers=False, collate_fn=collate)
    augment = BatchAugment(cfg) if mode == "current" else None
    it = iter(loader)
    for _ in range(warmup_batches):
        batch = next(it)
        if augment is not None:
            augment(batch["image"], batch["label"], [0] * batch_size, device)
    start = time.perf_counter()
    count, device_seconds = 0, 0.0
    loaded = []
    for batch in it:
        count += len(batch["image"])
        loaded.append(batch)
    seconds = time.perf_counter() - start
    if augment is not None:
        for k, batch in enumerate(loaded):
            t = time.perf_counter()
            x, _ = augment(batch["image"], batch["label"], list(range(k * batch_size, (k + 1) * batch_size)), device)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            device_seconds += time.perf_counter() - t
    out = {"mode": mode, "workers": workers, "batch_size": batch_size, "images": count, "seconds": seconds,
           "images_per_s": count / seconds, "crop": tuple(crop_size), "cache_mib": cache_mib}
    if augment is not None:
        out.update(device=device, device_seconds=device_seconds, device_images_per_s=count / device_seconds,
                   end_to_end_images_per_s=count / (seconds + device_seconds))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="existing folder-format dataset with a train split (default: generate)")
    parser.add_argument("--images", type=int, default=8, help="full-size frames to generate")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts to compare")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per worker count")
    parser.add_argument("--compare", action="store_true", help="also time the former albumentations pipeline")
    parser.add_argument("--device", default="cpu", help="where BatchAugment runs (cpu, cuda)")
    parser.add_argument("--cache-mib", type=int, nargs="+", default=[0],
                        help="data.cache_mib values to compare (0: no cache; >0: warmed first, 0 workers only)")
    parser.add_argument("--crop", type=int, nargs=2, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure the pipelines alternately this many times and keep each one's best run "
                             "(on a shared machine, load drifts between consecutive measurements)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    modes = ["albumentations", "current"] if args.compare else ["current"]
    modes += [f"cache {m} MiB" for m in args.cache_mib if m]
    with tempfile.TemporaryDirectory(prefix="ssnas-bench-") as tmp:
        root = Path(args.root) if args.root else make_full_size_tree(Path(tmp), args.images)
        print(f"{'pipeline':>14} {'workers':>7} {'batch':>5} {'images':>6} {'loader img/s':>12} "
              f"{'augment img/s':>13} {'end-to-end img/s':>16}")
        for workers in args.workers:
            best = {}
            for _ in range(args.repeat):
                for mode in modes:
                    cache = int(mode.split()[1]) if mode.startswith("cache") else 0
                    r = measure_pipeline(root, workers, args.batch_size, args.batches, tuple(args.crop),
                                         mode="current" if cache else mode, device=args.device, cache_mib=cache)
                    key = "end_to_end_images_per_s" if "end_to_end_images_per_s" in r else "images_per_s"
                    if mode not in best or r[key] > best[mode][key]:
                        best[mode] = r
            for mode in modes:
                r = best[mode]
                aug = (f"{r['device_images_per_s']:>9.2f} {r['device']:<3}" if "device" in r
                       else f"{'(in loader)':>13}")
                e2e = r.get("end_to_end_images_per_s", r["images_per_s"])
                print(f"{mode:>14} {r['workers']:>7} {r['batch_size']:>5} {r['images']:>6} "
                      f"{r['images_per_s']:>12.2f} {aug} {e2e:>16.2f}")


if __name__ == "__main__":
    main()

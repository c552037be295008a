"""Throughput of the training data pipeline: decode + augment 1024×2048 images into 512×1024 crops.

Generates full-size Cityscapes-like frames (folder format, in a temporary directory unless --root is
given), then times ``DataLoader`` over the real ``build_dataset(..., train=True)`` with 0 and N workers.
``measure_pipeline`` is the reusable part; a model's training step can be timed next to it.

    .venv/bin/python bench/bench_data.py --images 8 --workers 0 2
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


def measure_pipeline(root, workers: int, batch_size: int = 2, batches: int = 4,
                     crop_size=(512, 1024), warmup_batches: int = 1) -> dict:
    """Images/s of ``DataLoader(build_dataset(train=True))`` over ``batches`` batches after warm-up."""
    cfg = DataConfig(format="folder", root=str(root), crop_size=tuple(crop_size), workers=workers,
                     batch_size=batch_size)
    dataset = build_dataset(cfg, cfg.train_split, train=True)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True,
                                             num_samples=(batches + warmup_batches) * batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                         drop_last=True, persistent_workers=False)
    it = iter(loader)
    for _ in range(warmup_batches):
        next(it)
    start = time.perf_counter()
    count = 0
    for batch in it:
        count += batch["image"].shape[0]
    seconds = time.perf_counter() - start
    return {"workers": workers, "batch_size": batch_size, "images": count, "seconds": seconds,
            "images_per_s": count / seconds, "crop": tuple(crop_size)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="existing folder-format dataset with a train split (default: generate)")
    parser.add_argument("--images", type=int, default=8, help="full-size frames to generate")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts to compare")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per worker count")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="ssnas-bench-") as tmp:
        root = Path(args.root) if args.root else make_full_size_tree(Path(tmp), args.images)
        print(f"{'workers':>7} {'batch':>5} {'images':>6} {'seconds':>8} {'images/s':>9}")
        for workers in args.workers:
            r = measure_pipeline(root, workers, args.batch_size, args.batches)
            print(f"{r['workers']:>7} {r['batch_size']:>5} {r['images']:>6} {r['seconds']:>8.2f} "
                  f"{r['images_per_s']:>9.2f}")


if __name__ == "__main__":
    main()

"""`ssnas predict`: segment images with a trained supernet; write colour masks, overlays and label PNGs."""
from __future__ import annotations

from pathlib import Path

from ssnas.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OUTPUTS = ("_label.png", "_color.png", "_overlay.png")


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images: colour masks, overlays and raw label PNGs",
                       description="Segment image files (or folders of them) with a trained model and write, "
                                   "per image, <name>_label.png (class indices), <name>_color.png and "
                                   "<name>_overlay.png.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file, a run folder, or an exported model (.pt or .safetensors)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--flip", action="store_true", help="average with the mirrored image")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="multi-scale inference")
    p.add_argument("--alpha", type=float, default=0.5, help="mask opacity in the overlay (0..1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    p.set_defaults(func=run)


def collect_images(inputs: list[str]) -> list[Path]:
    """Image files given directly or found (recursively) in given folders, in a stable order."""
    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise UserError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"{path}: no such image file or folder")
    return found


def run(args) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from ssnas.data.classes import ClassTable
    from ssnas.data.dataset import read_image
    from ssnas.api import load, predict
    from ssnas.engine.distributed import pick_device

    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"--alpha {args.alpha}: expected an opacity in [0, 1]")
    if any(s <= 0 for s in args.scales):
        raise UserError(f"--scales {args.scales}: scales must be positive")
    images = collect_images(args.inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise UserError(f"two inputs are named {dup!r}; their outputs would collide, expected unique file names")
    if not args.overwrite:
        clash = [out / f"{s}{suffix}" for s in stems for suffix in OUTPUTS if (out / f"{s}{suffix}").exists()]
        if clash:
            raise UserError(f"{clash[0]}: exists; use --overwrite to replace predictions")
    device = pick_device(args.device)
    model = load(args.checkpoint, device)  # a checkpoint, run folder, fused .pt or .safetensors
    spec = model.classes
    classes = ClassTable.from_spec(spec["names"], spec.get("colors"), spec.get("ignore_index", 255))
    out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(images, desc="predict", disable=len(images) < 2):
        rgb = read_image(path)
        label = predict(model, rgb, tuple(args.scales), args.flip).astype(np.uint8)
        color = classes.colorize(label)
        overlay = (rgb * (1 - args.alpha) + color * args.alpha).round().astype(np.uint8)
        Image.fromarray(label).save(out / f"{path.stem}_label.png")
        Image.fromarray(color).save(out / f"{path.stem}_color.png")
        Image.fromarray(overlay).save(out / f"{path.stem}_overlay.png")
    print(f"{len(images)} image(s) -> {out} (*_label.png class indices, *_color.png, *_overlay.png)")
    return 0

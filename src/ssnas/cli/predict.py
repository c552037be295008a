"""`ssnas predict`: segment images with a trained supernet; write colour masks, overlays and label PNGs."""
from __future__ import annotations

from pathlib import Path

from ssnas.config import check_value
from ssnas.errors import UserError
from ssnas.outputs import MARKER, check_name_length, check_output_folder, has_marker, same_file, write_marker

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OUTPUTS = ("_label.png", "_color.png", "_overlay.png")
MARKER_KIND = "predictions"
OVERLAY_ROWS = 512               # the overlay is blended in bands of rows (a float copy of a large image is big)


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
    p.add_argument("--tile", type=int, help="segment images larger than this many pixels a side in overlapping "
                                            "tiles (default: TILE in ssnas/evaluation/inference.py, 1024)")
    p.add_argument("--tile-overlap", type=int, help="pixels shared by neighbouring tiles, their probabilities "
                                                    "averaged (default: TILE_OVERLAP there, 256)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace earlier predictions in --out (only in a folder ssnas predict made)")
    p.set_defaults(func=run)


def collect_images(inputs: list[str], skip: Path | None = None) -> list[Path]:
    """Image files given directly or found (recursively) in given folders, in a stable order; files below
    ``skip`` (an earlier predictions folder inside an input folder) are not inputs."""
    from ssnas.data.dataset import find_files

    skip = skip.resolve() if skip is not None else None
    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = [p for p in find_files(path, IMAGE_SUFFIXES)
                     if not (skip is not None and skip in p.resolve().parents)]
            if not files:
                raise UserError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"{path}: no such image file or folder")
    return found


def check_outputs(images: list[Path], out: Path, overwrite: bool) -> None:
    """Before any work: unique names within the file system's limits, no output that is an input, and an
    existing output replaced only with ``--overwrite`` in a folder that ssnas predict made."""
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise UserError(f"two inputs are named {dup!r}; their outputs would collide, expected unique file names")
    longest = max(OUTPUTS, key=len)
    for stem in stems:
        check_name_length(out / f"{stem}{longest}", "--out")
    planned = [out / f"{s}{suffix}" for s in stems for suffix in OUTPUTS]
    for target in planned:
        source = next((p for p in images if same_file(p, target)), None)
        if source is not None:
            raise UserError(f"--out {out}: {target.name} would overwrite the input {source}, expected an "
                            f"output folder apart from the inputs")
    clash = next((t for t in planned if t.exists()), None)
    if clash is not None and not overwrite:
        raise UserError(f"{clash}: exists; use --overwrite to replace predictions")
    if clash is not None and not has_marker(out, MARKER_KIND):
        raise UserError(f"--out {out}: holds {clash.name} but is not a folder of ssnas predictions (no "
                        f"{MARKER} marker), --overwrite replaces only what ssnas wrote; use another --out")


def run(args) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from ssnas.data.classes import ClassTable
    from ssnas.data.dataset import read_image
    from ssnas.api import load
    from ssnas.engine.distributed import pick_device
    from ssnas.evaluation.inference import TILE, TILE_OVERLAP, predict_tiled

    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"--alpha {args.alpha}: expected an opacity in [0, 1]")
    check_value("eval.scales", args.scales, "--scales")
    tile = TILE if args.tile is None else args.tile
    overlap = TILE_OVERLAP if args.tile_overlap is None else args.tile_overlap
    if tile < 32 or not 0 <= overlap < tile:
        raise UserError(f"--tile {tile} --tile-overlap {overlap}: expected a tile of at least 32 "
                        f"pixels and 0 <= overlap < tile")
    out = check_output_folder(args.out, "--out")
    images = collect_images(args.inputs, skip=out if has_marker(out, MARKER_KIND) else None)
    check_outputs(images, out, args.overwrite)
    device = pick_device(args.device, key="--device")
    model = load(args.checkpoint, device)  # a checkpoint, run folder, fused .pt or .safetensors
    spec = model.classes
    classes = ClassTable.from_spec(spec["names"], spec.get("colors"), spec.get("ignore_index", 255))
    mean, std = model.preprocessing["mean"], model.preprocessing["std"]
    out.mkdir(parents=True, exist_ok=True)
    if not has_marker(out, MARKER_KIND):
        write_marker(out, MARKER_KIND)
    for path in tqdm(images, desc="predict", disable=len(images) < 2):
        rgb = read_image(path)
        label = predict_tiled(model, rgb, mean, std, tuple(args.scales), args.flip, tile, overlap, device)
        color = classes.colorize(label)
        overlay = np.empty_like(rgb)
        for y in range(0, rgb.shape[0], OVERLAY_ROWS):
            band = slice(y, y + OVERLAY_ROWS)
            overlay[band] = (rgb[band] * (1 - args.alpha) + color[band] * args.alpha).round().astype(np.uint8)
        for suffix, array in zip(OUTPUTS, (label, color, overlay)):
            target = out / f"{path.stem}{suffix}"
            try:
                Image.fromarray(array).save(target)
            except OSError as exc:
                raise UserError(f"{target}: cannot write ({exc.strerror or exc}); the outputs of earlier images "
                                f"are complete, expected free space and a writable folder") from None
    print(f"{len(images)} image(s) -> {out} (*_label.png class indices, *_color.png, *_overlay.png)")
    return 0

"""`ssnas predict`: segment images with a trained supernet; write colour masks, overlays and label PNGs."""
from __future__ import annotations

from pathlib import Path

from ssnas.config import check_value
from ssnas.errors import UserError
from ssnas.outputs import MARKER, check_name_length, check_output_folder, has_marker, same_file, write_marker

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OUTPUTS = ("_label.png", "_color.png", "_overlay.png")
MARKER_KIND = "predictions"


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images: colour masks, overlays and raw label PNGs")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file (or a run folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--flip", action="store_true", help="average with the mirrored image")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="multi-scale inference")
    p.add_argument("--alpha", type=float, default=0.5, help="mask opacity in the overlay (0..1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
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
    import torch
    from PIL import Image
    from tqdm import tqdm

    from ssnas.data.classes import ClassTable
    from ssnas.data.dataset import read_image
    from ssnas.engine.checkpoint import load_model
    from ssnas.engine.distributed import pick_device
    from ssnas.evaluation.inference import predict_logits

    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"--alpha {args.alpha}: expected an opacity in [0, 1]")
    check_value("eval.scales", args.scales, "--scales")
    out = check_output_folder(args.out, "--out")
    images = collect_images(args.inputs, skip=out if has_marker(out, MARKER_KIND) else None)
    check_outputs(images, out, args.overwrite)
    device = pick_device(args.device)
    model, payload = load_model(args.checkpoint, map_location=device)
    model.eval()
    spec = payload.get("classes") or {}
    classes = ClassTable.from_spec(spec["names"], spec.get("colors"), spec.get("ignore_index", 255)) \
        if spec.get("names") else ClassTable.from_spec([f"class{i}" for i in range(model.cfg.num_classes)])
    data_cfg = (payload.get("config") or {}).get("data", {})
    mean = torch.tensor(data_cfg.get("mean", (0.485, 0.456, 0.406)), device=device).view(1, 3, 1, 1)
    std = torch.tensor(data_cfg.get("std", (0.229, 0.224, 0.225)), device=device).view(1, 3, 1, 1)
    out.mkdir(parents=True, exist_ok=True)
    if not has_marker(out, MARKER_KIND):
        write_marker(out, MARKER_KIND)
    for path in tqdm(images, desc="predict", disable=len(images) < 2):
        rgb = read_image(path)
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div(255).unsqueeze(0)
        x = (x.to(device) - mean) / std
        with torch.no_grad():
            pred = predict_logits(model, x, tuple(args.scales), args.flip).argmax(1)[0].cpu().numpy()
        label = pred.astype(np.uint8)
        color = classes.colorize(label)
        overlay = (rgb * (1 - args.alpha) + color * args.alpha).round().astype(np.uint8)
        Image.fromarray(label).save(out / f"{path.stem}_label.png")
        Image.fromarray(color).save(out / f"{path.stem}_color.png")
        Image.fromarray(overlay).save(out / f"{path.stem}_overlay.png")
    print(f"{len(images)} image(s) -> {out} (*_label.png class indices, *_color.png, *_overlay.png)")
    return 0

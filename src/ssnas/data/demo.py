"""The embedded demo dataset: street scenes composed from real image content that ships with pip packages.

No installable package ships a multi-image segmentation dataset, yet ``ssnas`` must run a real search on a
fresh machine with no download. So we paint one: a pinhole camera looks down a street whose ground plane
(road, sidewalks) and two façade planes (building, wall, vegetation) are textured, in perspective, with
scikit-image's bundled photographs; the sky is the Hubble deep field; "things" are scikit-learn's bundled
handwritten digits standing on the ground, sized by their depth and filled with photo crops, so that a
thing's class is its *shape* (a digit group) and a stuff class is its *texture*, not a constant colour.
The label of a pixel is exactly what was painted there. See ``docs/demo-dataset.md``.

The result is written in the generic folder format (``classes.yaml``, ``images/``, ``labels/``, plus
``labels_coarse/train`` for the fine/coarse splits of the paper's Table 7), so it goes through the same
loading code as a user's data.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from ssnas.errors import UserError, require

try:  # the `demo` extra (pip install 'ssnas[demo]'): the generator's textures, photos and filters
    from scipy import ndimage
    from skimage import data as skdata
    from skimage.transform import pyramid_gaussian
    from skimage.util import img_as_float32
    MISSING_EXTRA = None
except ImportError as _exc:  # a minimal install: an existing dataset still loads; writing one says what to add
    MISSING_EXTRA = _exc.name

# --- Format and defaults ------------------------------------------------------------------------------
DEMO_VERSION = 1  # bump whenever the generator's output changes, so stale datasets are not reused
MANIFEST_NAME = "demo.json"
MANIFEST_KIND = "ssnas-demo-dataset"
IGNORE_INDEX = 255
DEFAULT_SEED = 0
DEFAULT_SIZE = (128, 256)  # (H, W): Cityscapes' 1:2 frame at 1/8 of 1024x2048, fast on a CPU
DEFAULT_N_TRAIN = 200
DEFAULT_N_VAL = 50
MIN_SIDE = 32  # smaller frames cannot hold a street with 8 px things
SPLITS = ("train", "val")
PNG_COMPRESS_LEVEL = 1  # textured images barely compress: level 6 costs 3x the time for 1% smaller files
COARSE_SPLIT = "train"

# Class order follows Cityscapes' trainId order; colours come from cityscapesscripts.
STUFF_CLASSES = ("road", "sidewalk", "building", "wall", "vegetation", "sky")
THING_CLASSES = ("person", "car", "bicycle")
CLASS_NAMES = STUFF_CLASSES + THING_CLASSES
CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}

# Which bundled scikit-image picture textures each stuff class (all public domain / CC0, see the docs).
STUFF_SOURCE = {
    "road": "gravel",
    "sidewalk": "coins",
    "building": "brick",
    "wall": "text",
    "vegetation": "grass",
    "sky": "hubble_deep_field",
}
TRANSPOSED_SOURCES = ("brick",)  # skimage's bricks stand upright; a façade lays them in courses
# Texture density in source pixels per metre (random per image): sets the visible grain size.
TEXTURE_PX_PER_M = {
    "gravel": (80.0, 160.0),
    "coins": (60.0, 120.0),
    "brick": (90.0, 150.0),
    "text": (90.0, 180.0),
    "grass": (120.0, 240.0),
}
SKY_SRC_PX_PER_PX = (0.8, 2.0)  # the sky is painted in screen space (it is at infinity)
THING_FILL_SOURCES = ("astronaut", "coffee", "chelsea", "rocket")
THING_FILL_ZOOM = (1.0, 3.0)  # source crop side / thing side
# Digits (sklearn's 8x8 UCI digits) grouped into thing classes: the class is the digit's shape.
THING_DIGITS = {"person": (0, 1, 2, 3), "car": (4, 5, 6), "bicycle": (7, 8, 9)}
DIGIT_MAX_INK = 16.0  # sklearn digits are counts of set pixels in 4x4 blocks: 0..16
DIGIT_INK_THRESHOLD = 0.35  # fraction of max ink that counts as "object"
DIGIT_MIN_SHADE = 0.45  # faint strokes are darker, so the digit stays legible inside its fill

# Train and val read disjoint parts of every source: the last VAL_FRACTION of its rows (and of the digits).
VAL_FRACTION = 0.3
PYRAMID_LEVELS = 6  # Gaussian pyramid depth: far texture is minified up to 2**5 without aliasing

# --- Street geometry (metres; focal length in units of the frame width) ----------------------------------
CAMERA_HEIGHT_M = 1.5
FOCAL_PER_WIDTH = 1.0
HORIZON_FRACTION = (0.36, 0.48)  # vanishing point's row / H
VANISHING_X_FRACTION = (0.40, 0.60)
ROAD_HALF_WIDTH_M = (3.0, 5.0)
CAMERA_LATERAL_OFFSET_M = (-1.0, 1.0)
SIDEWALK_WIDTH_M = (1.5, 3.5)
FACADE_SEGMENT_M = (6.0, 24.0)
FACADE_MAX_DEPTH_M = 400.0
FACADE_CLASS_PROBS = {"building": 0.55, "vegetation": 0.25, "wall": 0.2}
BUILDING_HEIGHT_M = (6.0, 30.0)
WALL_HEIGHT_M = (1.0, 2.5)
TREE_HEIGHT_M = (4.0, 12.0)  # vegetation segments, and the trees behind a wall
TREE_CROWN_WAVE_M = (0.5, 2.0)  # amplitude of the wavy crown line
TREE_CROWN_PERIOD_M = (2.0, 6.0)

# --- Things and photometry ------------------------------------------------------------------------------
THINGS_PER_IMAGE = (4, 11)  # [low, high)
THING_HEIGHT_M = (0.9, 1.6)
THING_MIN_PX = 8  # the digits' native resolution
THING_MAX_FRACTION = 0.5  # of the frame height: 64 px at the default size
THING_SIDEWALK_MARGIN_M = 0.3  # keep things off the façade plane
IGNORE_BAND_PX = 1  # unlabelled band around each thing, like Cityscapes' void between objects
CONTRAST = (0.7, 1.3)
BRIGHTNESS = (0.65, 1.3)
TINT = (0.85, 1.15)  # per channel: the same spread for every class, so colour carries no class
COARSE_ERODE_FRACTION = 1 / 64  # of H: 2 px at the default size
COARSE_MIN_THING_PX = 16  # things shorter than this are left unlabelled in coarse annotations


@dataclass(frozen=True)
class _Texture:
    """A Gaussian pyramid of one source region (float32, H x W x C), sampled with mirror tiling."""

    levels: tuple
    mean: np.ndarray

    def sample(self, rows: np.ndarray, cols: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Bilinear samples at source coordinates; ``footprint`` (source px per output px) picks the level."""
        level = np.clip(np.floor(np.log2(np.maximum(footprint, 1.0))), 0, len(self.levels) - 1).astype(int)
        out = np.empty(rows.shape + (self.levels[0].shape[-1],), np.float32)
        for lv in np.unique(level):
            sel = level == lv
            coords = np.stack([rows[sel], cols[sel]]) / 2.0**lv
            for c in range(out.shape[-1]):
                out[sel, c] = ndimage.map_coordinates(self.levels[lv][..., c], coords, order=1, mode="mirror")
        return out


@dataclass(frozen=True)
class _Sources:
    """Everything one split draws from: its own part of every texture, photo and digit."""

    textures: dict
    fills: tuple
    digits: dict  # thing class -> (n, 8, 8) float ink in [0, 1]


def _split_rows(n: int, split: str) -> slice:
    cut = int(round(n * (1.0 - VAL_FRACTION)))
    return slice(0, cut) if split == "train" else slice(cut, n)


def _load_sources(split: str, thing_digits: dict | None = None) -> _Sources:
    try:
        from sklearn.datasets import load_digits  # imported here: sklearn is slow to import and rarely needed
    except ImportError:
        raise UserError("the demo dataset needs scikit-learn's digits, expected pip install 'ssnas[demo]'") from None

    textures = {}
    for name in STUFF_SOURCE.values():
        img = img_as_float32(getattr(skdata, name)())
        if name in TRANSPOSED_SOURCES:
            img = img.swapaxes(0, 1)
        img = img[_split_rows(img.shape[0], split)]
        img = img[..., None] if img.ndim == 2 else img
        levels = tuple(np.ascontiguousarray(lv, np.float32) for lv in
                       pyramid_gaussian(img, max_layer=PYRAMID_LEVELS - 1, channel_axis=-1))
        textures[name] = _Texture(levels, img.mean(axis=(0, 1)))
    fills = tuple(Image.fromarray(photo[_split_rows(photo.shape[0], split)])
                  for photo in (getattr(skdata, name)() for name in THING_FILL_SOURCES))
    digits = load_digits()
    part = _split_rows(len(digits.target), split)
    images, target = digits.images[part] / DIGIT_MAX_INK, digits.target[part]
    groups = {cls: images[np.isin(target, ds)].astype(np.float32)
              for cls, ds in (thing_digits or THING_DIGITS).items()}
    return _Sources(textures, fills, groups)


def _jitter(rgb: np.ndarray, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random contrast, brightness and tint for one painted layer (one class in one image)."""
    contrast, brightness = rng.uniform(*CONTRAST), rng.uniform(*BRIGHTNESS)
    gain = (brightness * rng.uniform(*TINT, size=3)).astype(np.float32)
    return rgb * (contrast * gain) + mean * (1.0 - contrast) * gain  # ((rgb - mean) * contrast + mean) * gain


@dataclass(frozen=True)
class _Street:
    """One random street: camera, ground bands and façade segments on both sides."""

    horizon: float
    vanish_x: float
    focal: float
    road: tuple  # lateral X of the road's left and right edge (camera at X=0)
    planes: tuple  # lateral X of the left and right façade planes
    segments: tuple  # per side: dict of arrays (end, class id, height, upper height, wave amp/period/phase)


def _facade_segments(rng: np.random.Generator) -> dict:
    """Consecutive façade segments along one side of the street, out to FACADE_MAX_DEPTH_M."""
    n = int(np.ceil(FACADE_MAX_DEPTH_M / FACADE_SEGMENT_M[0]))
    names, probs = zip(*FACADE_CLASS_PROBS.items())
    name = np.asarray(names)[rng.choice(len(names), size=n, p=probs)]
    tree = rng.uniform(*TREE_HEIGHT_M, n)
    height = np.select([name == "building", name == "wall"],
                       [rng.uniform(*BUILDING_HEIGHT_M, n), rng.uniform(*WALL_HEIGHT_M, n)], tree)
    return {"end": np.cumsum(rng.uniform(*FACADE_SEGMENT_M, n)),
            "cls": np.array([CLASS_ID[x] for x in name], np.uint8), "height": height,
            "upper": np.where(name == "wall", tree, 0.0),  # the trees behind a wall
            "amp": rng.uniform(*TREE_CROWN_WAVE_M, n), "period": rng.uniform(*TREE_CROWN_PERIOD_M, n),
            "phase": rng.uniform(0, 2 * np.pi, n)}


def _random_street(rng: np.random.Generator, size: tuple) -> _Street:
    h, w = size
    offset = rng.uniform(*CAMERA_LATERAL_OFFSET_M)
    half = rng.uniform(*ROAD_HALF_WIDTH_M)
    road = (-half - offset, half - offset)
    planes = (road[0] - rng.uniform(*SIDEWALK_WIDTH_M), road[1] + rng.uniform(*SIDEWALK_WIDTH_M))
    return _Street(horizon=h * rng.uniform(*HORIZON_FRACTION), vanish_x=w * rng.uniform(*VANISHING_X_FRACTION),
                   focal=w * FOCAL_PER_WIDTH, road=road, planes=planes,
                   segments=(_facade_segments(rng), _facade_segments(rng)))


def _paint_stuff(street: _Street, size: tuple, src: _Sources, rng: np.random.Generator):
    """Ray-cast every pixel to the ground, a façade or the sky; texture each class in perspective."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    dy, dx = ys - street.horizon, xs - street.vanish_x
    f, hc = street.focal, CAMERA_HEIGHT_M
    with np.errstate(divide="ignore", invalid="ignore"):
        ground_depth = np.where(dy > 0, f * hc / dy, np.inf)
        plane_x = np.where(dx < 0, street.planes[0], street.planes[1])
        plane_depth = np.where(dx != 0, f * plane_x / dx, np.inf)  # both planes lie outward: depth > 0
    plane_z = hc - dy * plane_depth / f  # height of the façade point this ray meets
    on_ground = ground_depth < plane_depth
    label = np.full((h, w), CLASS_ID["sky"], np.uint8)

    ground_x = np.where(on_ground, dx * ground_depth / f, 0.0)
    on_road = on_ground & (ground_x >= street.road[0]) & (ground_x <= street.road[1])
    label[on_road] = CLASS_ID["road"]
    label[on_ground & ~on_road] = CLASS_ID["sidewalk"]

    for side, seg in enumerate(street.segments):
        mask = ~on_ground & ((dx < 0) if side == 0 else (dx > 0)) & (plane_depth < FACADE_MAX_DEPTH_M)
        depth, z = plane_depth[mask], plane_z[mask]
        i = np.searchsorted(seg["end"], depth)
        wave = seg["amp"][i] * np.sin(2 * np.pi * depth / seg["period"][i] + seg["phase"][i])
        cls = seg["cls"][i]
        is_tree = cls == CLASS_ID["vegetation"]
        top = seg["height"][i] + np.where(is_tree, wave, 0.0)
        crown = np.where(seg["upper"][i] > 0, seg["upper"][i] + wave, 0.0)
        painted = np.full(depth.shape, CLASS_ID["sky"], np.uint8)
        painted[(z <= crown)] = CLASS_ID["vegetation"]
        painted[z <= top] = cls[z <= top]
        label[mask] = painted

    image = np.zeros((h, w, 3), np.float32)
    for name in STUFF_CLASSES:
        sel = label == CLASS_ID[name]
        source = STUFF_SOURCE[name]
        tex = src.textures[source]
        if not sel.any():
            continue
        if name == "sky":
            zoom = rng.uniform(*SKY_SRC_PX_PER_PX)
            rows, cols = ys[sel] * zoom, xs[sel] * zoom
            footprint = np.full(rows.shape, zoom)
        else:
            density = rng.uniform(*TEXTURE_PX_PER_M[source])
            if name in ("road", "sidewalk"):  # ground plane: (lateral X, depth)
                depth = ground_depth[sel]
                rows, cols = depth * density, ground_x[sel] * density
                footprint = density * np.sqrt(depth / f * depth**2 / (f * hc))
            else:  # façade plane: (depth along the street, height)
                depth = plane_depth[sel]
                rows, cols = -plane_z[sel] * density, depth * density
                footprint = density * np.sqrt(depth / f * depth**2 / (f * np.abs(plane_x[sel])))
        offset = rng.uniform(0, 1e4, size=2)
        rgb = tex.sample(rows + offset[0], cols + offset[1], footprint)
        image[sel] = _jitter(rgb, tex.mean, rng)
    return image, label


def _paint_things(street: _Street, image, label, instances, src: _Sources, rng: np.random.Generator):
    """Stand digits on the ground, far to near, sized by depth; an ignore band surrounds each one."""
    h, w = label.shape
    f, hc = street.focal, CAMERA_HEIGHT_M
    n = rng.integers(*THINGS_PER_IMAGE)
    things = []
    for _ in range(n):
        cls = THING_CLASSES[rng.integers(len(THING_CLASSES))]
        height_m = rng.uniform(*THING_HEIGHT_M)
        nearest = max(f * height_m / (THING_MAX_FRACTION * h), f * hc / (h - street.horizon))
        farthest = f * height_m / THING_MIN_PX
        depth = 1.0 / rng.uniform(1.0 / farthest, 1.0 / nearest)  # uniform in image rows
        x = rng.uniform(street.planes[0] + THING_SIDEWALK_MARGIN_M, street.planes[1] - THING_SIDEWALK_MARGIN_M)
        things.append((depth, cls, height_m, x, rng.integers(1 << 31)))
    things.sort(key=lambda t: -t[0])
    small = []
    for k, (depth, cls, height_m, x, seed) in enumerate(things, start=1):
        trng = np.random.default_rng(seed)
        side = max(THING_MIN_PX, int(round(f * height_m / depth)))
        foot = int(round(street.horizon + f * hc / depth))
        left = int(round(street.vanish_x + f * x / depth - side / 2))
        pool = src.digits[cls]
        digit = Image.fromarray(pool[trng.integers(len(pool))], "F")
        ink = np.asarray(digit.resize((side, side), Image.Resampling.BILINEAR))
        mask = ink > DIGIT_INK_THRESHOLD
        photo = src.fills[trng.integers(len(src.fills))]
        crop = int(min(side * trng.uniform(*THING_FILL_ZOOM), *photo.size))
        r0, c0 = trng.integers(photo.height - crop + 1), trng.integers(photo.width - crop + 1)
        fill = img_as_float32(np.asarray(photo.resize((side, side), Image.Resampling.BILINEAR,
                                                      box=(c0, r0, c0 + crop, r0 + crop))))
        fill = _jitter(fill * (DIGIT_MIN_SHADE + (1 - DIGIT_MIN_SHADE) * ink[..., None]), fill.mean((0, 1)), trng)
        # paste the side x side patch with its top-left at (foot - side, left), clipped to the frame
        pad = IGNORE_BAND_PX
        band = ndimage.binary_dilation(np.pad(mask, pad), iterations=pad) & ~np.pad(mask, pad)
        _paste(label, band, IGNORE_INDEX, foot - side - pad, left - pad)
        _paste(image, mask, fill, foot - side, left)
        _paste(label, mask, CLASS_ID[cls], foot - side, left)
        _paste(instances, mask, k, foot - side, left)
        if side < COARSE_MIN_THING_PX:
            small.append(k)
    return small


def _paste(canvas: np.ndarray, mask: np.ndarray, value, top: int, left: int) -> None:
    """canvas[top:, left:][mask] = value (value: scalar or an array shaped like mask), clipped to the frame."""
    h, w = canvas.shape[:2]
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + mask.shape[0], h), min(left + mask.shape[1], w)
    if r0 >= r1 or c0 >= c1:
        return
    m = mask[r0 - top:r1 - top, c0 - left:c1 - left]
    region = canvas[r0:r1, c0:c1]
    region[m] = value if np.isscalar(value) else value[r0 - top:r1 - top, c0 - left:c1 - left][m]


def _coarse_label(label: np.ndarray, instances: np.ndarray, small: list) -> np.ndarray:
    """Cityscapes-style coarse annotation: pixels near any boundary and small things left unlabelled."""
    size = 2 * max(1, int(round(label.shape[0] * COARSE_ERODE_FRACTION))) + 1
    near_boundary = (ndimage.maximum_filter(label, size, mode="nearest")
                     != ndimage.minimum_filter(label, size, mode="nearest"))
    coarse = label.copy()
    coarse[near_boundary | np.isin(instances, small)] = IGNORE_INDEX
    return coarse


def render_scene(seed: int, split: str, index: int, size: tuple, sources: _Sources):
    """One sample: (uint8 RGB image, fine label, coarse label). Its own random stream: (seed, split, index)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    street = _random_street(rng, size)
    image, label = _paint_stuff(street, size, sources, rng)
    instances = np.zeros(size, np.int32)
    small = _paint_things(street, image, label, instances, sources, rng)
    rgb = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return rgb, label, _coarse_label(label, instances, small)


def _params(seed: int, n_train: int, n_val: int, size, thing_digits: dict | None = None) -> dict:
    require(isinstance(seed, (int, np.integer)) and seed >= 0, f"seed: got {seed!r}, expected an integer >= 0")
    for key, n in (("n_train", n_train), ("n_val", n_val)):
        require(isinstance(n, (int, np.integer)) and n >= 1, f"{key}: got {n!r}, expected an integer >= 1")
    ok = (isinstance(size, (tuple, list)) and len(size) == 2
          and all(isinstance(s, (int, np.integer)) and s >= MIN_SIDE for s in size))
    require(ok, f"size: got {size!r}, expected (H, W) integers >= {MIN_SIDE}")
    params = {"seed": int(seed), "n_train": int(n_train), "n_val": int(n_val), "size": [int(s) for s in size]}
    if thing_digits is not None:  # only when given, so the default dataset's manifest stays as it was
        ok = (isinstance(thing_digits, dict) and set(thing_digits) == set(THING_DIGITS)
              and all(isinstance(v, (list, tuple)) and v and all(isinstance(d, int) and 0 <= d <= 9 for d in v)
                      for v in thing_digits.values()))
        require(ok, f"thing_digits: got {thing_digits!r}, expected digits 0-9 for each of {sorted(THING_DIGITS)}")
        params["thing_digits"] = {k: [int(d) for d in thing_digits[k]] for k in THING_DIGITS}
    return params


def _read_manifest(root: Path):
    """The manifest of a demo dataset at ``root``, or None if ``root`` is not one."""
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("kind") == MANIFEST_KIND else None


def _check_existing(out_dir: Path, params: dict) -> bool:
    """True if ``out_dir`` already holds this very dataset; False if it is free; UserError otherwise."""
    if not out_dir.exists():
        return False
    require(out_dir.is_dir(), f"{out_dir}: is a file, expected a directory for the demo dataset")
    manifest = _read_manifest(out_dir)
    if manifest is None:
        require(not any(out_dir.iterdir()),
                f"{out_dir}: exists and is not a demo dataset, expected a new or empty directory")
        return False
    same = manifest.get("version") == DEMO_VERSION and manifest.get("params") == params
    require(same, f"{out_dir}: holds a demo dataset v{manifest.get('version')} with {manifest.get('params')}, "
                  f"expected v{DEMO_VERSION} with {params}; use another directory")
    return True


def _write_split(root: Path, split: str, params: dict, counts: dict) -> None:
    sources = _load_sources(split, params.get("thing_digits"))
    n = params[f"n_{split}"]
    dirs = {kind: root / kind / split for kind in ("images", "labels")}
    if split == COARSE_SPLIT:
        dirs["labels_coarse"] = root / "labels_coarse" / split
    for d in dirs.values():
        d.mkdir(parents=True)
    hist = np.zeros(256, np.int64)
    for index in range(n):
        rgb, label, coarse = render_scene(params["seed"], split, index, tuple(params["size"]), sources)
        name = f"demo_{index:06d}.png"
        Image.fromarray(rgb, "RGB").save(dirs["images"] / name, compress_level=PNG_COMPRESS_LEVEL)
        Image.fromarray(label, "L").save(dirs["labels"] / name, compress_level=PNG_COMPRESS_LEVEL)
        if "labels_coarse" in dirs:
            Image.fromarray(coarse, "L").save(dirs["labels_coarse"] / name, compress_level=PNG_COMPRESS_LEVEL)
        hist += np.bincount(label.ravel(), minlength=256)
    counts[split] = {CLASS_NAMES[c] if c < len(CLASS_NAMES) else "ignore": int(hist[c])
                     for c in list(range(len(CLASS_NAMES))) + [IGNORE_INDEX]}


def _write_dataset(root: Path, params: dict) -> None:
    from cityscapesscripts.helpers.labels import name2label

    classes = {"names": list(CLASS_NAMES), "colors": [list(name2label[n].color) for n in CLASS_NAMES],
               "ignore_index": IGNORE_INDEX}
    (root / "classes.yaml").write_text(yaml.safe_dump(classes, default_flow_style=None, sort_keys=False))
    counts = {}
    for split in SPLITS:
        _write_split(root, split, params, counts)
    manifest = {"kind": MANIFEST_KIND, "version": DEMO_VERSION, "params": params, "pixel_counts": counts}
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")  # last: marks completeness


def make_demo_dataset(out_dir, seed: int = DEFAULT_SEED, n_train: int = DEFAULT_N_TRAIN,
                      n_val: int = DEFAULT_N_VAL, size=DEFAULT_SIZE, thing_digits: dict | None = None) -> Path:
    """Build the demo dataset at ``out_dir`` (or return it untouched if it is already there) and return its path.

    Atomic: everything is written to a sibling ``<out_dir>.tmp-*`` and renamed into place, so an
    interrupted run never leaves a half dataset. A directory holding anything else is never overwritten.
    """
    out_dir = Path(out_dir)
    params = _params(seed, n_train, n_val, size, thing_digits)
    if _check_existing(out_dir, params):
        return out_dir
    require(MISSING_EXTRA is None, f"{out_dir}: writing the demo dataset needs {MISSING_EXTRA}, which a minimal "
                                   f"install lacks; expected pip install 'ssnas[demo]'")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as err:
        raise UserError(f"{out_dir}: cannot create it ({err.strerror}), expected a writable location") from err
    try:
        _write_dataset(tmp, params)
        if _check_existing(out_dir, params):  # another process finished the same dataset meanwhile
            return out_dir
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.rename(tmp, out_dir)
    except OSError as err:
        if _check_existing(out_dir, params):  # lost a race to an identical build
            return out_dir
        raise UserError(f"{out_dir}: cannot write the demo dataset ({err.strerror}), expected a writable "
                        f"directory") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


PREVIEW_SPLIT = "train"  # the split with coarse labels, so the preview shows all three


def save_demo_preview(root, out_png, n_samples: int = 4, dpi: int = 100) -> Path:
    """A grid of (image, fine label, coarse label) rows with a class legend, for the docs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from ssnas.data.classes import ClassTable

    root, out_png = Path(root), Path(out_png)
    require(_read_manifest(root) is not None, f"{root}: is not a demo dataset, expected make_demo_dataset output")
    classes = ClassTable.from_yaml(root / "classes.yaml")
    names = sorted(p.name for p in (root / "images" / PREVIEW_SPLIT).glob("*.png"))[:n_samples]
    columns = (("images", "image"), ("labels", "fine label"), ("labels_coarse", "coarse label"))
    fig, axes = plt.subplots(len(names), len(columns), figsize=(3.2 * len(columns), 1.7 * len(names) + 0.6),
                             squeeze=False)
    for row, name in enumerate(names):
        for col, (folder, title) in enumerate(columns):
            pixels = np.asarray(Image.open(root / folder / PREVIEW_SPLIT / name))
            axes[row, col].imshow(pixels if folder == "images" else classes.colorize(pixels),
                                  interpolation="nearest")
            axes[row, col].set_axis_off()
            if row == 0:
                axes[row, col].set_title(title, fontsize=9)
    palette = classes.palette() / 255.0
    handles = [Patch(color=palette[i], label=n) for i, n in enumerate(classes.names)]
    handles.append(Patch(color=palette[classes.ignore_index], label=f"ignore ({classes.ignore_index})"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return out_png

"""The embedded demo dataset: deterministic, exact labels, texture-defined classes, safe on disk."""
import json

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import ndimage

from ssnas.data import demo
from ssnas.errors import UserError

SMALL = {"n_train": 10, "n_val": 4}
N_CLASSES = len(demo.CLASS_NAMES)
MIN_CLASS_SHARE = 0.004  # every class must cover at least 0.4% of the train pixels (wall, the rarest: ~2%)
# A colour-only pixel classifier must stay far from perfect. Measured with seed 0 (val pixel accuracy):
# nearest-mean-colour 0.17-0.18, a 4-bit RGB lookup table fitted on train (the best colour-only rule for
# train) 0.36 (40 train images) to 0.45 (16), always-"road" 0.34-0.37. A texture-blind model is stuck there.
NEAREST_MEAN_COLOUR_MAX_ACC = 0.3
COLOUR_LUT_MAX_VAL_ACC = 0.55
COLOUR_LUT_BITS = 4


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return demo.make_demo_dataset(tmp_path_factory.mktemp("demo") / "ds", seed=0, **SMALL)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(root, split):
    names = sorted(p.name for p in (root / "images" / split).glob("*.png"))
    rgb = np.stack([np.asarray(Image.open(root / "images" / split / n)) for n in names])
    label = np.stack([np.asarray(Image.open(root / "labels" / split / n)) for n in names])
    return rgb, label


def test_generic_folder_format(built):
    classes = yaml.safe_load((built / "classes.yaml").read_text())
    assert classes["names"] == list(demo.CLASS_NAMES) and len(classes["names"]) >= 8
    assert classes["colors"][0] == [128, 64, 128] and len(classes["colors"]) == N_CLASSES  # Cityscapes road
    assert classes["ignore_index"] == 255
    for split, n in (("train", SMALL["n_train"]), ("val", SMALL["n_val"])):
        images = sorted((built / "images" / split).glob("*.png"))
        assert len(images) == n
        for p in images:
            im, lab = Image.open(p), Image.open(built / "labels" / split / p.name)
            assert (im.mode, lab.mode) == ("RGB", "L")
            assert im.size == lab.size == (256, 128)  # default (H, W) = (128, 256)
    assert len(list((built / "labels_coarse" / "train").glob("*.png"))) == SMALL["n_train"]
    assert not (built / "labels_coarse" / "val").exists()
    manifest = json.loads((built / "demo.json").read_text())
    assert manifest["version"] == demo.DEMO_VERSION
    assert manifest["params"] == {"seed": 0, **SMALL, "size": [128, 256]}


def test_same_seed_same_bytes_other_seed_differs(built, tmp_path):
    again = _files(demo.make_demo_dataset(tmp_path / "again", seed=0, **SMALL))
    assert again == _files(built)
    other = _files(demo.make_demo_dataset(tmp_path / "other", seed=1, n_train=2, n_val=1))
    assert other["images/train/demo_000000.png"] != again["images/train/demo_000000.png"]
    assert other["labels/val/demo_000000.png"] != again["labels/val/demo_000000.png"]


def test_sample_does_not_depend_on_dataset_size(built, tmp_path):
    """Each sample has its own random stream, so a longer dataset extends a shorter one."""
    short = _files(demo.make_demo_dataset(tmp_path / "short", seed=0, n_train=2, n_val=1))
    full = _files(built)
    for name in ("images/train/demo_000001.png", "labels/val/demo_000000.png"):
        assert short[name] == full[name]


def test_labels_are_class_ids_or_ignore_and_every_class_is_present(built):
    rgb, label = _pixels(built, "train")
    values = set(np.unique(label).tolist())
    assert values <= set(range(N_CLASSES)) | {255}
    counts = np.bincount(label.ravel(), minlength=256)
    shares = counts[:N_CLASSES] / counts.sum()
    assert (shares >= MIN_CLASS_SHARE).all(), dict(zip(demo.CLASS_NAMES, shares.round(4)))
    assert 0 < counts[255] / counts.sum() < 0.05  # a thin void band, not a blanket


def test_ignore_band_surrounds_things_only(built):
    _, label = _pixels(built, "train")
    things = np.isin(label, [demo.CLASS_ID[n] for n in demo.THING_CLASSES])
    near_thing = things.copy()
    near_thing[:, 1:, :] |= things[:, :-1, :]
    near_thing[:, :-1, :] |= things[:, 1:, :]
    near_thing[:, :, 1:] |= things[:, :, :-1]
    near_thing[:, :, :-1] |= things[:, :, 1:]
    ignore = label == 255
    # void pixels are the band around things: (nearly) all touch one (4-neighbourhood)
    touching = ignore & near_thing
    assert touching.sum() > 0.9 * ignore.sum()


def test_coarse_is_an_eroded_subset_of_fine(built):
    names = sorted(p.name for p in (built / "labels" / "train").glob("*.png"))
    fine = np.stack([np.asarray(Image.open(built / "labels" / "train" / n)) for n in names])
    coarse = np.stack([np.asarray(Image.open(built / "labels_coarse" / "train" / n)) for n in names])
    labelled = coarse != 255
    assert (coarse[labelled] == fine[labelled]).all()
    assert 0.1 < 1 - labelled.mean() < 0.4  # more void than fine, still mostly labelled
    # no labelled coarse pixel touches a different fine class (2 px erosion at the default size)
    for shift in (1, 2):
        for axis in (1, 2):
            neighbour = np.roll(fine, shift, axis=axis)
            inner = labelled & (np.roll(labelled, shift, axis=axis))
            inner[:, :shift, :] = False
            inner[:, :, :shift] = False
            assert (fine[inner] == neighbour[inner]).all()


def test_train_and_val_draw_from_disjoint_content():
    for n in (7, 172, 512, 1797):
        train, val = demo._split_rows(n, "train"), demo._split_rows(n, "val")
        assert train.stop == val.start and val.stop == n and train.start == 0 and val.start > 0
    train, val = demo._load_sources("train"), demo._load_sources("val")
    for cls in demo.THING_CLASSES:
        seen = {d.tobytes() for d in train.digits[cls]}
        assert not any(d.tobytes() in seen for d in val.digits[cls])
    gravel_train, gravel_val = train.textures["gravel"].levels[0], val.textures["gravel"].levels[0]
    assert gravel_train.shape[0] + gravel_val.shape[0] == 512


def test_colour_alone_does_not_separate_the_classes(tmp_path):
    root = demo.make_demo_dataset(tmp_path / "colour", seed=0, n_train=16, n_val=8)
    (rgb_t, lab_t), (rgb_v, lab_v) = _pixels(root, "train"), _pixels(root, "val")
    x_t, y_t = rgb_t[lab_t != 255].astype(np.float32), lab_t[lab_t != 255]
    x_v, y_v = rgb_v[lab_v != 255].astype(np.float32), lab_v[lab_v != 255]
    means = np.stack([x_t[y_t == c].mean(0) for c in range(N_CLASSES)])
    nearest = np.argmin(((x_v[:, None, :] - means[None]) ** 2).sum(-1), 1)
    assert (nearest == y_v).mean() < NEAREST_MEAN_COLOUR_MAX_ACC

    def bins(x):
        q = x.astype(np.int64) >> (8 - COLOUR_LUT_BITS)
        return (q * np.array([1 << 2 * COLOUR_LUT_BITS, 1 << COLOUR_LUT_BITS, 1])).sum(1)

    table = np.zeros((1 << 3 * COLOUR_LUT_BITS, N_CLASSES))
    np.add.at(table, (bins(x_t), y_t), 1)
    assert (table.argmax(1)[bins(x_v)] == y_v).mean() < COLOUR_LUT_MAX_VAL_ACC
    # the sky is the one class colour does give away (a night sky): proof that the test can see colour
    sky = y_v == demo.CLASS_ID["sky"]
    assert (nearest[sky] == y_v[sky]).mean() > 0.8


def test_things_shrink_towards_the_horizon(built):
    _, label = _pixels(built, "train")
    rows, heights = [], []
    for lab in label:
        blobs, n = ndimage.label(np.isin(lab, [demo.CLASS_ID[c] for c in demo.THING_CLASSES]))
        for sl in ndimage.find_objects(blobs):
            rows.append(sl[0].stop)
            heights.append(sl[0].stop - sl[0].start)
    assert len(heights) > 20
    assert np.corrcoef(rows, heights)[0, 1] > 0.5  # lower foot (nearer) -> taller thing
    assert max(heights) <= 64  # THING_MAX_FRACTION of 128 rows (occlusion may leave smaller fragments)


def test_existing_complete_dataset_is_returned_untouched(built):
    before = {p: p.stat().st_mtime_ns for p in built.rglob("*")}
    assert demo.make_demo_dataset(built, seed=0, **SMALL) == built
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*")} == before


def test_existing_dataset_with_other_parameters_is_refused(built):
    with pytest.raises(UserError, match="different|expected v1"):
        demo.make_demo_dataset(built, seed=3, **SMALL)


def test_foreign_directory_or_file_is_never_overwritten(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a demo dataset"):
        demo.make_demo_dataset(foreign, n_train=1, n_val=1)
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        demo.make_demo_dataset(a_file, n_train=1, n_val=1)
    assert a_file.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine"]  # no temporary left behind


def test_empty_directory_is_filled(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (demo.make_demo_dataset(empty, n_train=1, n_val=1) / "demo.json").is_file()


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = demo.render_scene
    monkeypatch.setattr(demo, "render_scene", crash)
    with pytest.raises(KeyboardInterrupt):
        demo.make_demo_dataset(tmp_path / "ds", n_train=3, n_val=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, key", [({"seed": -1}, "seed"), ({"n_train": 0}, "n_train"),
                                         ({"n_val": 1.5}, "n_val"), ({"size": (16, 256)}, "size"),
                                         ({"size": (128,)}, "size")])
def test_bad_parameters_are_user_errors(tmp_path, kwargs, key):
    with pytest.raises(UserError, match=f"^{key}: "):
        demo.make_demo_dataset(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


def test_the_project_loader_accepts_it(built):
    from ssnas.data.check import check_dataset

    report = check_dataset(built)
    assert report.ok, report.problems


def test_preview_grid(built, tmp_path):
    out = demo.save_demo_preview(built, tmp_path / "img" / "preview.png", n_samples=2)
    assert out.stat().st_size < 300_000
    assert Image.open(out).size[0] > 300

"""Data pipeline: Cityscapes and folder loading, label mapping, augmentation alignment, bad input."""
import json

import numpy as np
import pytest
import torch
from helpers_data import FOLDER_COLORS, cityscapes_palette, make_cityscapes_tree, make_folder_tree, save_png
from PIL import Image

from ssnas.cli import main
from ssnas.config import DataConfig
from ssnas.data import ClassTable, SegmentationDataset, build_dataset
from ssnas.data.check import check_dataset
from ssnas.data.cityscapes import to_label_ids, to_train_ids
from ssnas.errors import UserError

MEAN, STD = np.array(DataConfig.mean), np.array(DataConfig.std)


def cfg(root, fmt="folder", **kw):
    return DataConfig(format=fmt, root=str(root), **kw)


def denormalize(image: torch.Tensor) -> np.ndarray:
    """3×H×W normalised tensor -> H×W×3 float array on the 0..255 scale."""
    return (image.permute(1, 2, 0).numpy() * STD + MEAN) * 255


# --- Cityscapes -------------------------------------------------------------------------------------

def test_cityscapes_fine_maps_label_ids_to_train_ids(cityscapes_tree):
    from cityscapesscripts.helpers.labels import id2label

    ds = build_dataset(cfg(cityscapes_tree, "cityscapes"), "val", train=False)
    assert len(ds) == 4 and ds.classes.num_classes == 19
    assert ds.names[0] == "frankfurt_000000_000019"
    raw = np.asarray(Image.open(ds.samples[0][1]))
    expected = np.full(raw.shape, 255)
    for label_id in np.unique(raw):      # the table entry by entry, independent of the lookup array
        train_id = id2label[int(label_id)].trainId
        expected[raw == label_id] = train_id if 0 <= train_id < 255 else 255
    item = ds[0]
    assert item["label"].dtype == torch.int64 and item["image"].dtype == torch.float32
    assert item["image"].shape == (3, 32, 64) and item["name"] == ds.names[0]
    np.testing.assert_array_equal(item["label"].numpy(), expected)
    assert 0 < (expected == 255).mean() < 1 and len(np.unique(expected)) > 5
    # eval transform: normalisation only, so the image colours come back exactly
    np.testing.assert_allclose(denormalize(item["image"]), cityscapes_palette()[raw], atol=1e-3)


def test_cityscapes_annotation_choices(cityscapes_tree):
    c = cfg(cityscapes_tree, "cityscapes")
    fine = build_dataset(c, "train", train=False, labels="fine")
    coarse = build_dataset(c, "train", train=False, labels="coarse")
    both = build_dataset(c, "train", train=False, labels="both")
    assert len(fine) == 4 and all("gtFine" in str(lbl) for _, lbl in fine.samples)
    assert len(coarse) == 6 and sum("train_extra" in str(img) for img, _ in coarse.samples) == 2
    assert all("gtCoarse" in str(lbl) for _, lbl in coarse.samples)
    kinds = {name: "gtFine" if "gtFine" in str(lbl) else "gtCoarse" for name, (_, lbl) in zip(both.names, both.samples)}
    assert len(both) == 6 and sorted(kinds.values()) == ["gtCoarse"] * 2 + ["gtFine"] * 4
    assert all(kinds[n] == "gtCoarse" for n in kinds if n.startswith("augsburg"))
    assert len(build_dataset(c, "val", train=False, labels="coarse")) == 4
    # cfg.labels applies to the train split only; other splits evaluate on fine labels
    assert len(build_dataset(cfg(cityscapes_tree, "cityscapes", labels="coarse"), "val", train=False).samples[0][1]
               .name.split("_gtFine")) == 2
    test = build_dataset(c, "test", train=False)
    assert len(test) == 2 and (test[0]["label"] == 255).all()
    with pytest.raises(UserError, match="no fine labels"):
        build_dataset(c, "test", train=True)


def test_cityscapes_prefers_train_id_files(tmp_path):
    root = make_cityscapes_tree(tmp_path, cities={"val": ("lindau",)}, n_per_city=1, coarse=False, train_ids=True)
    ds = build_dataset(cfg(root, "cityscapes"), "val", train=False)
    assert ds.samples[0][1].name.endswith("_labelTrainIds.png")
    label_path = ds.samples[0][1]
    marked = np.asarray(Image.open(label_path)).copy()
    marked[:4, :4] = 18                  # only the trainIds file has this: proves which file was read
    save_png(label_path, marked)
    np.testing.assert_array_equal(ds[0]["label"].numpy(), marked)


def test_train_id_label_id_round_trip():
    from cityscapesscripts.helpers.labels import trainId2label

    train_ids = np.arange(19, dtype=np.uint8).reshape(1, 19)
    label_ids = to_label_ids(torch.from_numpy(train_ids))
    assert label_ids.tolist()[0] == [trainId2label[t].id for t in range(19)]
    np.testing.assert_array_equal(to_train_ids(label_ids), train_ids)
    assert to_label_ids(np.array([255]))[0] == 0   # ignore -> "unlabeled", never scored by the evaluator


# --- Folder format -----------------------------------------------------------------------------------

def test_folder_dataset_labels_and_unlabelled_split(folder_tree):
    c = cfg(folder_tree)
    ds = build_dataset(c, "train", train=False)
    assert len(ds) == 4 and ds.classes.names == ("road", "tree", "sky")
    raw = np.asarray(Image.open(ds.samples[1][1]))
    np.testing.assert_array_equal(ds[1]["label"].numpy(), raw)
    assert set(np.unique(raw)) == {0, 1, 2, 255}
    coarse = build_dataset(c, "train", train=False, labels="coarse")
    assert all("labels_coarse" in str(lbl) for _, lbl in coarse.samples)
    test = build_dataset(c, "test", train=False)
    assert len(test) == 2 and test[0]["label"].shape == (32, 48) and (test[0]["label"] == 255).all()
    raw_item = SegmentationDataset(ds.samples, ds.classes)[1]          # no transform: image scaled to 0..1
    np.testing.assert_allclose(raw_item["image"].permute(1, 2, 0).numpy() * 255,
                               np.asarray(Image.open(ds.samples[1][0])), atol=1e-3)
    with pytest.raises(UserError, match="no fine labels"):
        build_dataset(c, "test", train=True)


@pytest.mark.parametrize("cache_mib", [0, 1])
def test_decoded_samples_are_cached_within_the_budget(folder_tree, tmp_path, cache_mib):
    """data.cache_mib: a sample decoded once is served from memory (its files may even be gone), as a copy a
    transform may write into; with no budget every load reads the files."""
    import shutil
    root = tmp_path / "data"
    shutil.copytree(folder_tree, root)
    ds = build_dataset(cfg(root, cache_mib=cache_mib), "train", train=False)
    first = [ds.load(i) for i in range(len(ds))]
    for image, label in (ds.samples[i] for i in range(len(ds))):
        image.unlink()
        label.unlink()
    if cache_mib == 0:
        with pytest.raises((OSError, UserError)):
            ds.load(0)
        return
    for i, (image, label) in enumerate(first):
        again = ds.load(i)
        np.testing.assert_array_equal(again[0], image)
        np.testing.assert_array_equal(again[1], label)
        again[0][:] = 0                                    # a copy: the cached sample is untouched
        assert ds.load(i)[0].max() == image.max()


def test_the_cache_stops_at_its_budget(folder_tree):
    ds = build_dataset(cfg(folder_tree), "train", train=False)
    image, label = ds.load(0)
    ds = build_dataset(cfg(folder_tree), "train", train=False)
    ds.cache_bytes = 2 * (image.nbytes + label.nbytes)       # room for two of the (equal-sized) samples
    for i in range(len(ds)):
        ds.load(i)
    assert len(ds._cache) == 2 and ds._cached_bytes <= ds.cache_bytes


def test_class_table_colorize_and_cityscapes_table(folder_tree):
    table = ClassTable.from_yaml(folder_tree / "classes.yaml")
    label = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(table.colorize(label), [[FOLDER_COLORS[0], FOLDER_COLORS[1]],
                                                          [FOLDER_COLORS[2], (0, 0, 0)]])
    cs = ClassTable.cityscapes()
    assert cs.names[0] == "road" and cs.names[18] == "bicycle" and cs.colors[13] == (0, 0, 142)
    assert ClassTable.from_spec(["a", "b"]).colors[0] != ClassTable.from_spec(["a", "b"]).colors[1]


# --- Bad input: one line naming the file ------------------------------------------------------------

def _write(path, array):
    save_png(path, np.asarray(array, dtype=np.uint8))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_CASES = {
    "label value": (lambda r: _write(r / "labels/train/train_000.png", np.full((32, 48), 7)),
                    "labels/train/train_000.png: label values [7]", True),
    "size mismatch": (lambda r: _write(r / "labels/train/train_000.png", np.zeros((16, 48))),
                      "labels/train/train_000.png: label size 48x16", True),
    "truncated": (lambda r: truncate(r / "images/train/train_000.png"), "images/train/train_000.png: unreadable",
                  True),
    "rgb label": (lambda r: _write(r / "labels/train/train_000.png", np.zeros((32, 48, 3))),
                  "labels/train/train_000.png: label image mode RGB", True),
    "image without label": (lambda r: (r / "labels/train/train_001.png").unlink(),
                            "images/train/train_001.png: no label", False),
    "label without image": (lambda r: _write(r / "labels/train/extra.png", np.zeros((32, 48))),
                            "labels/train/extra.png: label without an image", False),
    "missing split": (lambda r: None, "images/nosuch: missing", False),
    "empty split": (lambda r: (r / "images/empty").mkdir(), "images/empty: no .png/.jpg images", False),
    "bad classes.yaml": (lambda r: (r / "classes.yaml").write_text("names: [a, b]\ncolors: [[1, 2, 3]]\n"),
                         "classes.yaml: colors must list one [r, g, b] per name", False),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_folder_input_names_the_file(tmp_path, case):
    root = make_folder_tree(tmp_path, splits={"train": 2})
    spoil, message, at_load = BAD_CASES[case]
    spoil(root)
    split = {"missing split": "nosuch", "empty split": "empty"}.get(case, "train")
    if at_load:
        ds = build_dataset(cfg(root), split, train=True)
        with pytest.raises(UserError, match=message.replace("[", r"\[")) as exc:
            ds[0]
    else:
        with pytest.raises(UserError, match=message.replace("[", r"\[")) as exc:
            build_dataset(cfg(root), split, train=True)
    assert "\n" not in str(exc.value)


def test_bad_cityscapes_input_names_the_file(tmp_path):
    root = make_cityscapes_tree(tmp_path, cities={"val": ("lindau",)}, n_per_city=2, coarse=False)
    label = sorted((root / "gtFine/val/lindau").glob("*_labelIds.png"))[0]
    _write(label, np.full((32, 64), 200))
    ds = build_dataset(cfg(root, "cityscapes"), "val", train=False)
    with pytest.raises(UserError, match=f"{label.name}: label values \\[200\\]"):
        ds[0]
    with pytest.raises(UserError, match="leftImg8bit/train: missing"):
        build_dataset(cfg(root, "cityscapes"), "train", train=True)
    with pytest.raises(UserError, match="data.ignore_index: 0 differs"):
        build_dataset(cfg(root, "cityscapes", ignore_index=0), "val", train=False)
    with pytest.raises(UserError, match="data.format: 'voc'"):
        build_dataset(cfg(root, "voc"), "val", train=False)


# --- ssnas data check ---------------------------------------------------------------------------------

def test_data_check_lists_every_problem(tmp_path, capsys):
    root = make_folder_tree(tmp_path, splits={"train": 4, "val": 2})
    for spoil, _, _ in (BAD_CASES["label value"], BAD_CASES["label without image"]):
        spoil(root)
    _write(root / "labels/train/train_001.png", np.zeros((16, 48)))                     # size mismatch
    truncate(root / "images/train/train_002.png")
    (root / "labels/val/val_001.png").unlink()                                        # image without label
    assert main(["data", "check", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5, err
    for expected in ("train_000.png: label values [7]", "extra.png: label without an image",
                     "train_001.png: label size 48x16", "train_002.png: unreadable", "val_001.png: no label"):
        assert sum(expected in line for line in err) == 1, expected


def test_data_check_reports_statistics_of_a_clean_dataset(tmp_path, capsys):
    root = make_folder_tree(tmp_path, splits={"train": 2, "val": 1}, with_ignore=False, coarse=())
    assert main(["data", "check", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    train = next(s for s in report["splits"] if s["split"] == "train")
    assert train["images"] == 2 and train["labelled"] == 2 and train["sizes"] == {"48x32": 2}
    counts = np.zeros(3)
    for i in range(2):
        counts += np.bincount(np.asarray(Image.open(root / f"labels/train/train_{i:03d}.png")).ravel(), minlength=3)
    expected = 100 * counts / counts.sum()
    assert [train["class_pixel_percent"][n] for n in ("road", "tree", "sky")] == pytest.approx(expected)
    assert train["class_pixel_percent"]["ignore"] == 0


def test_data_check_cityscapes(cityscapes_tree, capsys):
    report = check_dataset(cityscapes_tree)
    assert report.ok and report.format == "cityscapes", report.problems
    got = {(s.split, s.labels): (s.images, s.labelled) for s in report.splits}
    assert got == {("train", "fine"): (4, 4), ("train", "coarse"): (4, 4), ("val", "fine"): (4, 4),
                   ("val", "coarse"): (4, 4), ("test", "none"): (2, 0), ("train_extra", "coarse"): (2, 2)}
    (cityscapes_tree / "gtCoarse/train_extra/augsburg/augsburg_000001_000020_gtCoarse_labelIds.png").unlink()
    assert main(["data", "check", str(cityscapes_tree)]) == 2
    assert "augsburg_000001_000020_leftImg8bit.png: no label" in capsys.readouterr().err


def test_data_demo_calls_the_demo_builder(tmp_path, monkeypatch, capsys):
    import ssnas.data.demo as demo

    calls = []
    monkeypatch.setattr(demo, "make_demo_dataset", lambda out, **kw: calls.append((str(out), kw)) or out)
    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--seed", "3"]) == 0
    assert calls == [(str(tmp_path / "d"), {"seed": 3})] and str(tmp_path / "d") in capsys.readouterr().out


# --- images and folders that used to be damaged silently (issue 14) --------------------------------------------
def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    """PIL's convert('RGB') clips 16-bit values above 255 to white; read_image scales them to 8 bits."""
    from ssnas.data.dataset import read_image

    wide = np.linspace(0, 65535, 32 * 48).reshape(32, 48).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    assert (np.asarray(Image.open(tmp_path / "wide.png").convert("RGB")) == 255).mean() > 0.9  # the old damage
    rgb = read_image(tmp_path / "wide.png")
    expected = np.round(wide.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert rgb.shape == (32, 48, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], expected)
    assert (rgb == 255).mean() < 0.01


def test_16_bit_image_in_a_dataset_is_read_as_scaled_and_checks_clean(tmp_path):
    root = make_folder_tree(tmp_path, splits={"train": 2, "val": 1}, coarse=())
    wide = (np.arange(32 * 48).reshape(32, 48) * 40).astype(np.uint16)
    Image.fromarray(wide).save(root / "images/train/train_000.png")
    report = check_dataset(root)
    assert report.ok, report.problems
    ds = build_dataset(DataConfig(root=str(root)), "train", train=False)
    item = SegmentationDataset(ds.samples, ds.classes)[0]          # no transform: image scaled to 0..1
    expected = np.round(wide.astype(np.float64) * 255 / 65535) / 255
    np.testing.assert_allclose(item["image"][0].numpy(), expected, atol=1e-6)


def test_symlinked_sub_folders_are_followed_once_even_in_a_loop(tmp_path, capsys):
    root = make_folder_tree(tmp_path / "data", splits={"train": 4, "val": 1}, coarse=())
    elsewhere = tmp_path / "elsewhere"
    for kind in ("images", "labels"):
        (elsewhere / kind).mkdir(parents=True)
        for name in ("train_002", "train_003"):
            (root / kind / "train" / f"{name}.png").rename(elsewhere / kind / f"{name}.png")
        (root / kind / "train" / "linked").symlink_to(elsewhere / kind, target_is_directory=True)
        (elsewhere / kind / "loop").symlink_to(elsewhere / kind, target_is_directory=True)  # a link loop
    dataset = build_dataset(DataConfig(root=str(root)), "train", train=False)
    assert len(dataset) == 4
    assert main(["data", "check", str(root), "--json"]) == 0
    train = next(s for s in json.loads(capsys.readouterr().out)["splits"] if s["split"] == "train")
    assert train["images"] == 4 and train["labelled"] == 4

"""A catalogue of user mistakes: each is one line ``ssnas: error: ...`` on stderr, exit status 2, no
traceback, and nothing that existed before is lost or rewritten.

Every row builds its own situation in ``tmp_path`` and returns the command line, the words the message
must contain, and the paths whose contents and modification times must survive the command.
"""
import errno
import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers_data import make_folder_tree, save_png
from ssnas.cli import main
from ssnas.config import CONFIG_DIR, config_hash, load_config
from ssnas.errors import UserError

UNWRITABLE_DIR = Path("/sys/kernel/mm")   # sysfs: no one, root included, can create a file in it
# argparse's usage errors name the subcommand's parser ("ssnas search: error: ..."); all others "ssnas: error:"
ERROR_PREFIX = r"ssnas( [a-z]+)?: error: "


def search(out, root, *overrides, config="smoke") -> list:
    sets = [f"data.root={root}", "run.tensorboard=false", *overrides]
    return ["search", "--config", str(config), "--out", str(out), *[a for s in sets for a in ("--set", s)]]


def fake_run(out: Path, root) -> Path:
    """A finished run's folder (what a user would hate to lose)."""
    cfg = load_config("smoke", [f"data.root={root}", "run.tensorboard=false"])
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.yaml").write_text(f"name: smoke\n_meta:\n  config_hash: {config_hash(cfg)}\n")
    (out / "checkpoints" / "last.pt").write_bytes(os.urandom(256))
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (out / "summary.json").write_text('{"miou": 0.5}\n')
    return out


def snapshot(path: Path) -> dict:
    """Contents and mtimes of a file or of every file under a folder (the kernel's lock file aside)."""
    files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock"]
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files}


# ---------------------------------------------------------------- the rows
def _folder(tmp, **kwargs) -> Path:
    return make_folder_tree(tmp / "data", size=(32, 48), **kwargs)


def row_unknown_key(tmp, demo):
    return search(tmp / "out", demo, "protocol.bogus=1"), ["protocol.bogus", "unknown key"], []


def row_wrong_type(tmp, demo):
    return search(tmp / "out", demo, "protocol.epochs=three"), ["protocol.epochs", "expected an integer"], []


def row_bad_choice(tmp, demo):
    return search(tmp / "out", demo, "protocol.split=random"), ["protocol.split", "joint, split, half"], []


def row_fractions_not_one(tmp, demo):
    return search(tmp / "out", demo, "protocol.warmup=0.5"), ["warmup + search + finetune", "expected 1"], []


def row_more_edges_than_a_grid_cell_has(tmp, demo):
    return (search(tmp / "out", demo, "model.discretize_edges=4"),
            ["model.discretize_edges", "expected 1 to 3"], [])


def row_more_edges_than_a_dense_cell_has(tmp, demo):
    """The same rule in every space (ArchitectureMixin.discretize): the dense space used to keep all silently."""
    return (search(tmp / "out", demo, "model.space=dense", "model.discretize_edges=99"),
            ["model.discretize_edges", "expected 1 to"], [])


def row_malformed_yaml(tmp, demo):
    bad = tmp / "bad.yaml"
    bad.write_text("protocol:\n  epochs: [3\n  warmup: 0.1\n")
    return search(tmp / "out", demo, config=bad), [str(bad), "not valid YAML"], [bad]


def row_missing_config(tmp, demo):
    return search(tmp / "out", demo, config=tmp / "none.yaml"), ["none.yaml", "config file not found"], []


def row_missing_root(tmp, demo):
    out = tmp / "out"   # and no half-made run folder in the way of the corrected command
    row_missing_root.after = lambda: not out.exists()
    return search(out, tmp / "nowhere", "data.make_demo=false"), [str(tmp / "nowhere")], []


def row_empty_split(tmp, demo):
    root = _folder(tmp, splits={"train": 4, "val": 0})
    (root / "images" / "val").mkdir()
    (root / "labels" / "val").mkdir()
    return search(tmp / "out", root), ["images/val", "non-empty split"], [root]


def row_image_without_label(tmp, demo):
    root = _folder(tmp)
    (root / "labels" / "train" / "train_001.png").unlink()
    return search(tmp / "out", root), ["train_001"], [root]


def row_size_mismatch(tmp, demo):
    root = _folder(tmp)
    save_png(root / "labels" / "train" / "train_002.png", np.zeros((16, 16), np.uint8))
    return search(tmp / "out", root), ["train_002", "size"], [root]


def row_truncated_png(tmp, demo):
    root = _folder(tmp)
    image = root / "images" / "train" / "train_003.png"
    image.write_bytes(image.read_bytes()[:60])
    return search(tmp / "out", root), ["train_003"], [root]


def row_truncated_png_with_workers(tmp, demo):
    args, words, keep = row_truncated_png(tmp, demo)
    return args + ["--set", "data.workers=2"], words, keep


def row_label_outside_table(tmp, demo):
    root = _folder(tmp)
    save_png(root / "labels" / "train" / "train_000.png", np.full((32, 48), 7, np.uint8))
    return search(tmp / "out", root), ["train_000", "not in the class table"], [root]


def row_out_is_a_file(tmp, demo):
    out = tmp / "results.txt"
    out.write_text("my notes\n")
    return search(out, demo), [str(out), "not a folder"], [out]


def row_file_in_the_way(tmp, demo):
    blocker = tmp / "runs"
    blocker.write_text("not a folder\n")
    return search(blocker / "one", demo), [str(blocker / "one"), "is a file"], [blocker]


def row_unwritable_folder(tmp, demo):
    if not UNWRITABLE_DIR.is_dir():
        pytest.fail(f"{UNWRITABLE_DIR} is missing on this machine: pick another read-only folder")
    return search(UNWRITABLE_DIR, demo), [str(UNWRITABLE_DIR)], []


def row_unwritable_parent(tmp, demo):
    return search(UNWRITABLE_DIR / "run", demo), [str(UNWRITABLE_DIR / "run"), "cannot create"], []


def row_folder_holds_a_run(tmp, demo):
    out = fake_run(tmp / "out", demo)
    return search(out, demo, "protocol.epochs=6"), ["already holds a run", "--resume"], [out]


def row_resume_with_another_config(tmp, demo):
    out = fake_run(tmp / "out", demo)
    return search(out, demo, "optim.lr=0.5") + ["--resume"], ["different config"], [out]


def row_folder_locked(tmp, demo):
    from ssnas.engine.rundir import RunDir
    out = fake_run(tmp / "out", demo)
    holder = RunDir(out)   # another run holds the lock (another open file: flock excludes it too)
    holder.lock()
    row_folder_locked.holder = holder  # unlocked by the test once the command ran
    return search(out, demo) + ["--resume"], ["another ssnas run is using this folder"], [out]


def row_unknown_subcommand(tmp, demo):
    return ["frobnicate"], ["frobnicate"], []


def row_missing_required_option(tmp, demo):
    return ["search", "--config", "smoke"], ["--out"], []


def row_bad_set_syntax(tmp, demo):
    return ["search", "--config", "smoke", "--out", str(tmp / "out"), "--set", "protocol.epochs"], \
        ["--set protocol.epochs", "key=value"], []


def row_resume_and_overwrite(tmp, demo):
    out = fake_run(tmp / "out", demo)
    return search(out, demo) + ["--resume", "--overwrite"], ["--resume and --overwrite"], [out]


# ---------------------------------------------------------------- rows by class (issue 14)
# A small but real checkpoint (the mini supernet, the demo's 9 classes and config), made in a few ms.
def checkpoint(tmp, demo, classes=9, **fields) -> Path:
    import torch

    from ssnas.config import to_dict
    from ssnas.engine.checkpoint import save_checkpoint
    from ssnas.space.variants import create_model

    path = tmp / "ckpt" / "last.pt"
    if not fields.pop("_raw", False):
        model = create_model("mini", num_classes=classes)
        cfg = load_config("smoke", [f"data.root={demo}", "run.tensorboard=false", "model.variant=mini"])
        fields = {"space": model.cfg.to_dict(), "model": model.state_dict(), "config": to_dict(cfg),
                  "classes": None, **fields}
        fields = {k: v for k, v in fields.items() if v is not DROP}
        save_checkpoint(path, fields)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(fields, path)
    return path


DROP = object()   # a field left out of a crafted checkpoint


def evaluate(tmp, demo, *extra, ckpt=None):
    ckpt = ckpt or checkpoint(tmp, demo)
    return ["evaluate", "--checkpoint", str(ckpt), "--set", f"data.root={demo}", *extra]


def predict(tmp, demo, *extra, inputs=None, ckpt=None):
    ckpt = ckpt or checkpoint(tmp, demo)
    inputs = inputs or [str(demo / "images" / "val")]
    return ["predict", *inputs, "--checkpoint", str(ckpt), *extra]


def export(tmp, demo, out, *extra, ckpt=None):
    ckpt = ckpt or checkpoint(tmp, demo)
    return ["export", "--checkpoint", str(ckpt), "--out", str(out), "--input-size", "32x32", *extra]


LONG_NAME = "n" * 300   # longer than any Linux file system's 255-byte name limit


# -- output paths: every command that writes x every kind of bad path
def row_evaluate_out_is_the_checkpoint(tmp, demo):
    ckpt = checkpoint(tmp, demo)
    return evaluate(tmp, demo, "--out", str(ckpt), ckpt=ckpt), ["--out", "is an input"], [ckpt]


def row_evaluate_out_is_the_checkpoint_even_with_overwrite(tmp, demo):
    ckpt = checkpoint(tmp, demo)
    return evaluate(tmp, demo, "--out", str(ckpt), "--overwrite", ckpt=ckpt), ["is an input"], [ckpt]


def row_evaluate_out_is_the_checkpoint_through_a_run_folder(tmp, demo):
    ckpt = checkpoint(tmp, demo)   # --checkpoint FOLDER reads FOLDER/last.pt
    return ["evaluate", "--checkpoint", str(ckpt.parent), "--set", f"data.root={demo}", "--out", str(ckpt),
            "--overwrite"], ["is an input"], [ckpt]


def row_evaluate_out_exists(tmp, demo):
    out = tmp / "result.json"
    out.write_text("{}")
    return evaluate(tmp, demo, "--out", str(out)), ["exists", "--overwrite"], [out]


def row_evaluate_out_is_a_folder(tmp, demo):
    (tmp / "folder").mkdir()
    return evaluate(tmp, demo, "--out", str(tmp / "folder")), ["is a folder"], []


def row_evaluate_out_unwritable(tmp, demo):
    return evaluate(tmp, demo, "--out", str(UNWRITABLE_DIR / "r.json")), ["cannot write"], []


def row_evaluate_out_over_long_name(tmp, demo):
    return evaluate(tmp, demo, "--out", str(tmp / LONG_NAME)), ["bytes, expected at most"], []


def row_evaluate_out_below_a_file(tmp, demo):
    blocker = tmp / "notes.txt"
    blocker.write_text("mine\n")
    return evaluate(tmp, demo, "--out", str(blocker / "r.json")), ["is a file"], [blocker]


def row_evaluate_label_ids_not_empty(tmp, demo):
    folder = tmp / "preds"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    return evaluate(tmp, demo, "--label-ids", str(folder)), ["--label-ids", "not empty"], [folder]


def row_evaluate_label_ids_is_a_file(tmp, demo):
    blocker = tmp / "preds"
    blocker.write_text("mine\n")
    return evaluate(tmp, demo, "--label-ids", str(blocker)), ["--label-ids", "not a folder"], [blocker]


def row_evaluate_label_ids_for_a_9_class_model(tmp, demo):
    return evaluate(tmp, demo, "--label-ids", str(tmp / "preds")), ["9 classes", "19"], []


def row_predict_out_is_a_file(tmp, demo):
    out = tmp / "preds"
    out.write_text("mine\n")
    return predict(tmp, demo, "--out", str(out)), ["not a folder"], [out]


def row_predict_out_unwritable(tmp, demo):
    return predict(tmp, demo, "--out", str(UNWRITABLE_DIR / "p")), ["cannot write"], []


def row_predict_long_input_name(tmp, demo):
    image = tmp / "in" / f"{'x' * 250}.png"   # fine as an input, too long once "_overlay" is added
    save_png(image, np.zeros((32, 32, 3), np.uint8))
    return predict(tmp, demo, "--out", str(tmp / "p"), inputs=[str(image)]), ["bytes, expected at most"], [image]


def row_predict_output_would_replace_an_input(tmp, demo):
    folder = tmp / "in"
    a = save_png(folder / "a.png", np.zeros((32, 32, 3), np.uint8))
    b = save_png(folder / "a_label.png", np.zeros((32, 32, 3), np.uint8))   # shares the output name pattern
    return predict(tmp, demo, "--out", str(folder), "--overwrite", inputs=[str(a), str(b)]), \
        ["would overwrite the input"], [folder]


def row_predict_overwrite_in_a_folder_not_made_by_predict(tmp, demo):
    folder = tmp / "mine"
    image = save_png(tmp / "in" / "a.png", np.zeros((32, 32, 3), np.uint8))
    save_png(folder / "a_label.png", np.ones((32, 32), np.uint8))   # another tool's file of that name
    return predict(tmp, demo, "--out", str(folder), "--overwrite", inputs=[str(image)]), \
        ["not a folder of ssnas predictions"], [folder, image]


def row_predict_existing_outputs(tmp, demo):
    folder = tmp / "p"
    image = save_png(tmp / "in" / "a.png", np.zeros((32, 32, 3), np.uint8))
    save_png(folder / "a_color.png", np.ones((32, 32), np.uint8))
    return predict(tmp, demo, "--out", str(folder), inputs=[str(image)]), ["exists", "--overwrite"], [folder]


def row_export_out_is_the_checkpoint(tmp, demo):
    ckpt = checkpoint(tmp, demo)
    return export(tmp, demo, ckpt, "--overwrite", ckpt=ckpt), ["is an input"], [ckpt]


def row_export_out_is_a_folder(tmp, demo):
    (tmp / "f").mkdir()
    return export(tmp, demo, tmp / "f"), ["is a folder"], []


def row_export_out_unwritable(tmp, demo):
    return export(tmp, demo, UNWRITABLE_DIR / "m.pt"), ["cannot write"], []


def row_export_out_over_long_name(tmp, demo):
    return export(tmp, demo, tmp / f"{LONG_NAME}.onnx"), ["bytes, expected at most"], []


def row_search_out_over_long_name(tmp, demo):
    return search(tmp / LONG_NAME, demo), ["bytes, expected at most"], []


def row_search_overwrite_of_another_tools_folder(tmp, demo):
    out = tmp / "theirs"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "model.ckpt").write_bytes(os.urandom(64))
    (out / "plots").mkdir()
    (out / "plots" / "loss.png").write_bytes(os.urandom(64))
    return search(out, demo) + ["--overwrite"], ["not an ssnas run", "--overwrite replaces only"], [out]


def row_search_overwrite_with_another_tools_config(tmp, demo):
    out = tmp / "theirs"
    out.mkdir()
    (out / "config.yaml").write_text("model: resnet50\nlr: [0.1, {a: 1}]\n")
    return search(out, demo) + ["--overwrite"], ["not an ssnas run"], [out]


def row_search_resume_with_another_tools_config(tmp, demo):
    out = tmp / "theirs"
    out.mkdir()
    (out / "config.yaml").write_text("- just\n- a list\n")
    return ["search", "--out", str(out), "--resume"], ["config.yaml", "expected a mapping"], [out]


# -- input files: configs
def row_config_not_utf8(tmp, demo):
    bad = tmp / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return search(tmp / "out", demo, config=bad), ["not UTF-8"], [bad]


def row_config_binary(tmp, demo):
    bad = tmp / "model.yaml"
    bad.write_bytes(b"\x00\x01\x02PK\x03\x04" + os.urandom(64).replace(b"\xff", b"a"))
    return search(tmp / "out", demo, config=bad), [str(bad)], [bad]


def row_config_base_not_a_string(tmp, demo):
    bad = tmp / "child.yaml"
    bad.write_text("base: [smoke]\n")
    return search(tmp / "out", demo, config=bad), ["base", "expected the path"], [bad]


def row_config_alias_bomb(tmp, demo):
    bad = tmp / "bomb.yaml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 9)}]" for i in range(1, 9)]
    bad.write_text("\n".join(lines) + "\nstudy: {bomb: *i}\n")
    assert bad.stat().st_size < 600
    return search(tmp / "out", demo, config=bad), ["aliases expand to more than"], [bad]


def row_config_recursive_alias(tmp, demo):
    bad = tmp / "loop.yaml"
    bad.write_text("study: &s {again: *s}\n")
    return search(tmp / "out", demo, config=bad), ["recursive alias"], [bad]


def row_set_alias_bomb(tmp, demo):
    value = "[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]," \
            " &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]]"
    return search(tmp / "out", demo, f"study.x={value}"), ["--set", "not valid YAML"], []


# -- input files: checkpoints with crafted fields
def row_checkpoint_without_space(tmp, demo):
    ckpt = checkpoint(tmp, demo, space=DROP)
    return evaluate(tmp, demo, ckpt=ckpt), ["no 'space' section"], [ckpt]


def row_checkpoint_string_version(tmp, demo):
    ckpt = checkpoint(tmp, demo, _raw=True, format="ssnas-checkpoint", version="1", model={})
    return predict(tmp, demo, "--out", str(tmp / "p"), ckpt=ckpt), ["version '1', expected an integer"], [ckpt]


def row_checkpoint_from_a_newer_ssnas(tmp, demo):
    ckpt = checkpoint(tmp, demo, version=99)
    return evaluate(tmp, demo, ckpt=ckpt), ["checkpoint version 99 is newer than this ssnas"], [ckpt]


def row_checkpoint_model_not_a_dict(tmp, demo):
    ckpt = checkpoint(tmp, demo, model=[1, 2, 3])
    return export(tmp, demo, tmp / "m.pt", ckpt=ckpt), ["'model' is a list"], [ckpt]


def row_checkpoint_model_of_non_tensors(tmp, demo):
    ckpt = checkpoint(tmp, demo, model={"alpha": 3})
    return export(tmp, demo, tmp / "m.pt", ckpt=ckpt), ["not a named tensor"], [ckpt]


def row_checkpoint_asks_for_a_million_layers(tmp, demo):
    from ssnas.space.variants import create_model
    space = {**create_model("mini", num_classes=9).cfg.to_dict(), "layers": 10 ** 6}
    ckpt = checkpoint(tmp, demo, space=space)
    return evaluate(tmp, demo, ckpt=ckpt), ["does not match the stored alpha"], [ckpt]


def row_checkpoint_space_wider_than_its_weights(tmp, demo):
    from ssnas.space.variants import create_model
    space = {**create_model("mini", num_classes=9).cfg.to_dict(), "filters": 100000}
    ckpt = checkpoint(tmp, demo, space=space)
    return export(tmp, demo, tmp / "m.pt", ckpt=ckpt), ["do not fit the stored space"], [ckpt]


def row_checkpoint_space_of_strings(tmp, demo):
    from ssnas.space.variants import create_model
    space = {**create_model("mini", num_classes=9).cfg.to_dict(), "filters": "eight"}
    ckpt = checkpoint(tmp, demo, space=space)
    return export(tmp, demo, tmp / "m.pt", ckpt=ckpt), ["stored space", "filters"], [ckpt]


def row_resume_from_a_checkpoint_without_train(tmp, demo):
    out = tmp / "out"
    cfg = load_config("smoke", [f"data.root={demo}", "run.tensorboard=false"])
    argv = search(out, demo)
    assert run_cli(argv + ["--set", "protocol.epochs=1", "--set", "protocol.warmup=1", "--set", "protocol.search=0",
                           "--set", "protocol.finetune=0", "--set", "protocol.entropy_start=1"]) == 0
    from ssnas.engine.checkpoint import load_checkpoint, save_checkpoint
    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    payload.pop("train")
    save_checkpoint(out / "checkpoints" / "last.pt", payload)
    assert cfg  # the run's own config is used by --resume (no --config)
    return ["search", "--out", str(out), "--resume"], ["no 'train' section"], [out]


def row_checkpoint_config_not_a_mapping(tmp, demo):
    ckpt = checkpoint(tmp, demo, config="data: here")
    return evaluate(tmp, demo, ckpt=ckpt), ["'config' is a str"], [ckpt]


# -- input files: images
def row_predict_decompression_bomb(tmp, demo):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = tmp / "in" / "bomb.png"
    bomb.parent.mkdir()
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    assert bomb.stat().st_size < 300
    return predict(tmp, demo, "--out", str(tmp / "p"), inputs=[str(bomb)]), ["decompression bomb"], [bomb]


def row_image_too_small_to_augment(tmp, demo):
    root = _folder(tmp)
    save_png(root / "images" / "train" / "train_001.png", np.zeros((1, 48, 3), np.uint8))
    save_png(root / "labels" / "train" / "train_001.png", np.zeros((1, 48), np.uint8))
    return search(tmp / "out", root, "data.scale_range=[0.5, 1.0]"), ["train_001", "0 pixels"], [root]


def row_cifar_batch_with_code(tmp, demo):
    import pickle
    root = tmp / "cifar"
    root.mkdir()
    marker = tmp / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (root / name).write_bytes(pickle.dumps(Payload()))
    row_cifar_batch_with_code.after = lambda: not marker.exists()
    return ["search", "--config", str(CONFIG_DIR / "darts" / "digits-mini.yaml"), "--out", str(tmp / "out"),
            "--set", "darts.dataset=cifar10", "--set", f"darts.data_root={root}"], ["refused to load"], [root]


# -- option values that mean a config key
def row_evaluate_scales_nan(tmp, demo):
    return evaluate(tmp, demo, "--scales", "nan"), ["eval.scales", "finite"], []


def row_evaluate_scales_inf(tmp, demo):
    return evaluate(tmp, demo, "--scales", "1.0", "inf"), ["eval.scales", "finite"], []


def row_predict_scales_nan(tmp, demo):
    return predict(tmp, demo, "--out", str(tmp / "p"), "--scales", "nan"), ["--scales", "finite"], []


def row_predict_scale_that_leaves_no_pixel(tmp, demo):
    image = save_png(tmp / "in" / "a.png", np.zeros((8, 8, 3), np.uint8))
    return predict(tmp, demo, "--out", str(tmp / "p"), "--scales", "0.01", inputs=[str(image)]), \
        ["0x0 pixels"], [image]


def row_predict_tile_overlap(tmp, demo):
    return predict(tmp, demo, "--out", str(tmp / "p"), "--tile", "64", "--tile-overlap", "64"), ["--tile"], []


def row_negative_grad_clip(tmp, demo):
    return search(tmp / "out", demo, "optim.grad_clip=-1"), ["optim.grad_clip", "(0, inf)"], []


# ---------------------------------------------------------------- every input before the run folder (audit)
def row_search_init_checkpoint_typo_leaves_no_folder(tmp, demo):
    out = tmp / "out"
    row_search_init_checkpoint_typo_leaves_no_folder.after = lambda: not out.exists()
    return search(out, demo, f"model.init_checkpoint={tmp / 'typo.pt'}"), ["typo.pt"], []


def row_search_overwrite_with_missing_data_keeps_the_old_run(tmp, demo):
    out = fake_run(tmp / "out", demo)   # --overwrite replaces a run only once every input has been read
    return search(out, tmp / "nowhere", "data.make_demo=false") + ["--overwrite"], [str(tmp / "nowhere")], [out]


def row_profile_latency_out_is_the_checkpoint_even_with_overwrite(tmp, demo):
    ckpt = checkpoint(tmp, demo)
    return ["profile", "--latency", "--checkpoint", str(ckpt), "--out", str(ckpt), "--overwrite", "--device", "cpu",
            "--rounds", "1", "--input-size", "32x64"], ["is an input"], [ckpt]


def row_profile_latency_of_a_dense_run(tmp, demo):
    """Latency tables are measured for the grid; a dense run's checkpoint is refused before anything is timed."""
    from ssnas.config import to_dict
    from ssnas.space import create_model

    model = create_model("tiny", space="dense", num_classes=9)
    cfg = load_config("smoke", [f"data.root={demo}", "run.tensorboard=false", "model.space=dense"])
    ckpt = checkpoint(tmp, demo, space={**model.cfg.to_dict(), "search_space": "dense"}, model=model.state_dict(),
                      config=to_dict(cfg))
    out = tmp / "lat.json"
    row_profile_latency_of_a_dense_run.after = lambda: not out.exists()
    return ["profile", "--latency", "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu", "--rounds", "1",
            "--input-size", "32x64"], ["cost.metric: 'latency'", "'dense'"], [ckpt]


def row_export_out_is_the_latency_table_even_with_overwrite(tmp, demo):
    table = tmp / "latency.json"
    table.write_text("{}")
    return export(tmp, demo, table, "--overwrite", "--budget", "5ms", "--table", str(table), "--no-eval"), \
        ["is an input"], [table]


def row_reproduce_doc_is_a_folder(tmp, demo):
    (tmp / "doc").mkdir()
    return ["reproduce", "--scale", "mini", "--out", str(tmp / "r"), "--doc", str(tmp / "doc"), "--plan"], \
        ["--doc", "is a folder"], [tmp / "doc"]


def row_reproduce_doc_not_utf8(tmp, demo):
    doc = tmp / "notes.md"
    doc.write_bytes(b"\xff\xfe my notes")
    return ["reproduce", "--scale", "mini", "--out", str(tmp / "r"), "--doc", str(doc), "--plan"], \
        ["not written by `ssnas reproduce`"], [doc]


def row_reproduce_results_beside_a_new_doc_are_the_users(tmp, demo):
    mine = tmp / "report-results.json"   # the companion file of --doc report.md, but the user's
    mine.write_text('{"mine": 1}')
    return ["reproduce", "--scale", "mini", "--out", str(tmp / "r"), "--doc", str(tmp / "report.md"), "--plan"], \
        ["report-results.json", "not written by `ssnas reproduce`"], [mine]


def row_reproduce_damaged_results_of_a_study(tmp, demo):
    out = tmp / "r"
    (out / "discretization").mkdir(parents=True)
    (out / "discretization" / "results.json").write_text("{corrupt")
    (out / "entropy").write_text("in the way")   # the study asked for fails at once, then the document is built
    return ["reproduce", "--scale", "mini", "--only", "entropy", "--out", str(out), "--doc", str(tmp / "doc.md"),
            "--results", str(tmp / "store")], ["discretization", "results.json", "--only discretization"], [out]


# ---------------------------------------------------------------- damaged or odd inputs: one line (audit)
def row_config_keys_of_mixed_types(tmp, demo):
    bad = tmp / "mixed.yaml"
    bad.write_text("1: a\nfoo: b\nnull: c\n")   # a YAML key may be a number or null: sorting them with str keys
    return ["config", "show", "--config", str(bad)], [str(bad), "1: unknown key"], [bad]


def row_config_section_keys_of_mixed_types(tmp, demo):
    bad = tmp / "mixed.yaml"
    bad.write_text("protocol:\n  1: a\n  foo: b\n")
    return ["config", "show", "--config", str(bad)], [str(bad), "protocol.1: unknown key"], [bad]


def row_variant_keys_of_mixed_types(tmp, demo):
    bad = tmp / "v.yaml"
    bad.write_text("layers: 2\nfilters: 4\nfoo: 1\n1: 2\n")
    return ["profile", "--variant", str(bad)], [str(bad), "unknown key 1"], [bad]


def row_classes_keys_of_mixed_types(tmp, demo):
    root = _folder(tmp)
    with open(root / "classes.yaml", "a") as f:
        f.write("foo: 1\n1: 2\n")
    return search(tmp / "out", root), ["classes.yaml", "unknown key(s) [1, 'foo']"], [root]


def row_cost_table_version_not_a_number(tmp, demo):
    table = tmp / "badver.json"
    table.write_text('{"format": "ssnas-cost-table", "version": "x"}')
    return export(tmp, demo, tmp / "m.pt", "--budget", "5ms", "--table", str(table)), \
        [str(table), "version 'x', expected an integer"], [table]


def study(out, demo, *overrides, name="entropy") -> list:
    sets = ["data.make_demo=false", f"data.root={demo}", *overrides]
    return ["study", name, "--config", str(CONFIG_DIR / "studies" / f"{name}-mini.yaml"), "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


def row_study_file_not_json(tmp, demo):
    (tmp / "st").mkdir()
    (tmp / "st" / "study.json").write_text("not json{")
    return study(tmp / "st", demo), [str(tmp / "st" / "study.json"), "not valid JSON"], [tmp / "st"]


def row_study_file_not_a_mapping(tmp, demo):
    (tmp / "st").mkdir()
    (tmp / "st" / "study.json").write_text("[1, 2]")
    return study(tmp / "st", demo), [str(tmp / "st" / "study.json"), "holds a list"], [tmp / "st"]


def row_study_out_below_a_file(tmp, demo):
    (tmp / "afile").write_text("mine\n")
    return study(tmp / "afile" / "sub", demo), ["--out", "is a file"], [tmp / "afile"]


def row_study_out_unwritable(tmp, demo):
    return study(UNWRITABLE_DIR / "x", demo), ["--out", "cannot write"], []


def row_study_plan_with_a_damaged_record(tmp, demo):
    record = tmp / "store" / "none-s0.json"
    record.parent.mkdir()
    record.write_text("{garbage")
    return study(tmp / "out", demo) + ["--results", str(tmp / "store"), "--plan"], \
        [str(record), "not valid JSON", "delete it"], [record]


def row_study_config_mistake_keeps_the_users_empty_folder(tmp, demo):
    out = tmp / "userempty"
    out.mkdir()   # the user's: the study may empty what it wrote there, not remove the folder
    row_study_config_mistake_keeps_the_users_empty_folder.after = lambda: out.is_dir() and not any(out.iterdir())
    return study(out, demo, "study.seeds=[]"), ["study.seeds"], []


def row_profile_option_without_value(tmp, demo):
    return ["profile", "--option", "foo"], ["--option foo", "expected key=value"], []


def row_predict_unknown_device(tmp, demo):
    return predict(tmp, demo, "--out", str(tmp / "p"), "--device", "foo"), ["--device", "'foo'"], []


ROWS = {name[4:]: fn for name, fn in dict(globals()).items() if name.startswith("row_")}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from ssnas.data.demo import make_demo_dataset
    root = tmp_path_factory.mktemp("data") / "demo"
    make_demo_dataset(root, seed=0, n_train=8, n_val=4, size=(64, 128))
    return root


def run_cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return exc.code


@pytest.mark.parametrize("row", sorted(ROWS))
def test_user_mistake_is_one_line_exit_2_and_nothing_is_lost(row, tmp_path, demo_root, capsys):
    argv, words, keep = ROWS[row](tmp_path, demo_root)
    before = {str(p): snapshot(p) for p in keep}
    try:
        code = run_cli(argv)
    finally:
        holder = getattr(ROWS[row], "holder", None)
        if holder is not None:
            holder.unlock()
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err, captured.out[-500:])
    assert getattr(ROWS[row], "after", lambda: True)()
    assert re.match(ERROR_PREFIX, err) and len(err.splitlines()) == 1, err
    assert "Traceback" not in captured.err + captured.out
    for word in words:
        assert word in err, (word, err)
    assert {str(p): snapshot(p) for p in keep} == before


# ---------------------------------------------------------------- a full disk
@pytest.mark.parametrize("where", ["fsync", "write"])
def test_full_disk_keeps_the_previous_checkpoint(where, demo_root, tmp_path, monkeypatch, capsys):
    """The 2nd write of last.pt meets ENOSPC (in fsync, or in the write itself): the 1st stays intact."""
    import ssnas.engine.checkpoint as checkpoint

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.pt"
    seen = {}

    def disk_full(f=None):
        if last.is_file() and "last" not in seen:
            seen["last"] = last.read_bytes()
        if "last" in seen:
            if f is not None:
                f.write(b"partial")  # the disk fills up half-way through the write
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_fsync, real_write = os.fsync, checkpoint.atomic_write_bytes

    def fsync(fd):
        if ".last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            disk_full()
        return real_fsync(fd)

    def atomic_write_bytes(path, write):
        def failing(f):
            if Path(path).name == "last.pt":
                disk_full(f)
            return write(f)
        return real_write(path, failing)

    if where == "fsync":
        monkeypatch.setattr(os, "fsync", fsync)
    else:
        monkeypatch.setattr(checkpoint, "atomic_write_bytes", atomic_write_bytes)
    argv = search(out, demo_root, "protocol.epochs=2", "protocol.warmup=0.5", "protocol.search=0",
                  "protocol.finetune=0.5", "protocol.entropy_start=0.5")
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssnas: error:") and len(err.splitlines()) == 1, err
    assert str(last) in err and "No space left on device" in err
    assert last.read_bytes() == seen["last"]  # the epoch-1 checkpoint, untouched
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    from ssnas.engine.checkpoint import load_checkpoint
    assert load_checkpoint(last)["train"]["state"]["epoch"] == 1


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".json"])   # export (torch, safetensors), evaluate
def test_full_disk_keeps_the_previous_output(suffix, demo_root, tmp_path, monkeypatch, capsys):
    """ENOSPC half-way through writing ``export --overwrite``'s (or ``evaluate --out --overwrite``'s) file: one
    line, the previous file intact."""
    import ssnas.engine.checkpoint as checkpoint

    out = tmp_path / f"e{suffix}"
    out.write_bytes(b"the previous export")
    real_write = checkpoint.atomic_write_bytes

    def atomic_write_bytes(path, write):
        def failing(f):
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, failing)

    if suffix == ".json":
        argv = evaluate(tmp_path, demo_root, "--out", str(out), "--overwrite")
    else:
        argv = export(tmp_path, demo_root, out, "--overwrite")
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", atomic_write_bytes)
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssnas: error:") and len(err.splitlines()) == 1, err
    assert str(out) in err and "No space left on device" in err
    assert out.read_bytes() == b"the previous export"
    assert not list(tmp_path.rglob("*.tmp"))


# ---------------------------------------------------------------- what --overwrite may replace
def test_overwrite_replaces_an_ssnas_run_and_nothing_else(tmp_path, demo_root):
    from ssnas.engine.rundir import RunDir
    from ssnas.outputs import MARKER
    cfg = load_config("smoke", [f"data.root={demo_root}", "run.tensorboard=false"])
    run = fake_run(tmp_path / "run", demo_root)          # a run made before the marker: its hashed config
    (run / "notes.txt").write_text("mine\n")            # not a run file: kept
    folder = RunDir(run)
    try:
        assert folder.prepare(cfg, resume=False, overwrite=True) is False
    finally:
        folder.unlock()
    assert not (run / "checkpoints").exists() and not (run / "summary.json").exists()
    assert (run / "notes.txt").read_text() == "mine\n" and (run / MARKER).is_file()
    theirs = tmp_path / "theirs"
    (theirs / "checkpoints").mkdir(parents=True)
    (theirs / "checkpoints" / "a.ckpt").write_text("weights")
    before = snapshot(theirs)
    folder = RunDir(theirs)
    try:
        with pytest.raises(UserError, match="not an ssnas run"):
            folder.prepare(cfg, resume=False, overwrite=True)
    finally:
        folder.unlock()
    assert snapshot(theirs) == before
    linked = fake_run(tmp_path / "linked", demo_root)    # its checkpoints/ a link to a user's folder
    shutil.rmtree(linked / "checkpoints")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine\n")
    (linked / "checkpoints").symlink_to(tmp_path / "mine", target_is_directory=True)
    folder = RunDir(linked)
    try:
        folder.prepare(cfg, resume=False, overwrite=True)
    finally:
        folder.unlock()
    assert not (linked / "checkpoints").exists() and (tmp_path / "mine" / "keep.txt").read_text() == "mine\n"


def test_predict_overwrite_in_its_own_folder_and_outputs_are_never_inputs(tmp_path, demo_root, capsys):
    images = tmp_path / "images"
    for i in range(2):
        save_png(images / f"im{i}.png", np.random.default_rng(i).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    out = images / "pred"                                  # the output folder inside the input folder
    argv = predict(tmp_path, demo_root, "--out", str(out), inputs=[str(images)])
    assert run_cli(argv) == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert len(first) == 6                                 # 2 images x 3 outputs, no prediction of a prediction
    assert run_cli(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert run_cli(argv + ["--overwrite"]) == 0            # its own folder (marker): replaced
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == first   # the same model, the same outputs


# ---------------------------------------------------------------- fuzz over every config key
def _leaf_keys(cls=None, prefix=""):
    """(dotted key, annotation) of every setting of ExperimentConfig."""
    import dataclasses
    import typing

    from ssnas.config import ExperimentConfig
    cls = cls or ExperimentConfig
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaf_keys(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp


def _base(tp):
    """The annotation without Optional, and its element type for lists."""
    import typing
    if typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    return (origin or tp), (args[0] if args else None), (len(args) if args and args[-1] is not Ellipsis
                                                         and origin is tuple else None)


def _fmt(v):
    return {float("nan"): ".nan"}.get(v, ".inf" if v == float("inf") else "-.inf" if v == float("-inf") else repr(v))


def bad_values(key, tp, rng):
    """YAML texts that must be refused for ``key``: wrong types, non-finite numbers, values outside BOUNDS
    (just outside and far outside), wrong list lengths and element types; a few drawn at random."""
    from ssnas.config import BOUNDS, CHOICES, _interval
    kind, element, length = _base(tp)
    scalar = element if kind in (list, tuple) else kind
    out = []
    if kind in (list, tuple):
        out += ["5", "'text'", "{a: 1}", "[[1], [2]]" if scalar is not str else "[[a]]"]
        if length:
            out.append(f"[{', '.join(['1'] * (length + 1))}]")
    elif kind is bool:
        out += ["2", "'maybe'", "[true]"]
    elif kind is str:
        out += ["5", "[a, b]", "{a: 1}"] + ([f"'{key.split('.')[-1]}-not-a-choice'"] if key in CHOICES else [])
    elif kind is dict:
        out += ["5", "[a]", "'text'"]
    else:
        out += ["'text'", "true", "{a: 1}"]
    if scalar in (int, float):
        wrap = (lambda v: f"[{', '.join([v] * (length or 1))}]") if kind in (list, tuple) else (lambda v: v)
        out += [wrap("'x'")]
        if scalar is float:
            out += [wrap(".nan"), wrap(".inf"), wrap("-.inf")]
        else:
            out += [wrap("1.5")]
        if key in BOUNDS:
            low, high, low_in, high_in = _interval(BOUNDS[key])
            edges = []
            if low != float("-inf"):
                edges += [low if not low_in else low - (1 if scalar is int else 1e-9), low - rng.uniform(1, 1e6)]
            if high != float("inf"):
                edges += [high if not high_in else high + (1 if scalar is int else 1e-6), high + rng.uniform(1, 1e6)]
            for v in edges:
                out.append(wrap(str(int(v) if scalar is int and float(v).is_integer() else
                                    int(v) - 1 if scalar is int else repr(float(v)))))
    return out


def good_value(key, tp):
    """A value inside BOUNDS (the bounds must not refuse everything)."""
    from ssnas.config import BOUNDS, _interval
    kind, element, length = _base(tp)
    scalar = element if kind in (list, tuple) else kind
    low, high, low_in, high_in = _interval(BOUNDS[key])
    v = low if low_in else (low + high) / 2 if high != float("inf") else low + 1
    v = int(v) if scalar is int else float(v)
    if scalar is int and key == "model.kernel_sizes":
        v = 3
    return [v] * (length or 1) if kind in (list, tuple) else v


CONFIG_KEYS = dict(_leaf_keys())


@pytest.mark.parametrize("key", sorted(CONFIG_KEYS))
def test_fuzz_config_key_is_refused_in_one_line(key, tmp_path, capsys):
    import random
    from ssnas.config import BOUNDS, check_value
    rng = random.Random(key)  # seeded per key: reproducible
    values = bad_values(key, CONFIG_KEYS[key], rng)
    assert values
    out = tmp_path / "out"
    # the first value through the whole CLI (exit 2, one line, nothing written), all through the schema
    code = run_cli(["search", "--config", "smoke", "--out", str(out), "--set", f"{key}={values[0]}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("ssnas: error: "), (key, values[0], err)
    assert key in err and not out.exists(), (key, err)
    for text in values:
        with pytest.raises(UserError) as info:
            load_config("smoke", [f"{key}={text}"])
        err = str(info.value)
        assert len(err.splitlines()) == 1 and key in err, (key, text, err)
    FUZZ_COUNT[key] = len(values)
    if key in BOUNDS:
        check_value(key, good_value(key, CONFIG_KEYS[key]))


FUZZ_COUNT = {}

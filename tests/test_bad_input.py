"""A catalogue of user mistakes: each is one line ``ssnas: error: ...`` on stderr, exit status 2, no
traceback, and nothing that existed before is lost or rewritten.

Every row builds its own situation in ``tmp_path`` and returns the command line, the words the message
must contain, and the paths whose contents and modification times must survive the command.
"""
import errno
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from helpers_data import make_folder_tree, save_png
from ssnas.cli import main
from ssnas.config import config_hash, load_config

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


def row_malformed_yaml(tmp, demo):
    bad = tmp / "bad.yaml"
    bad.write_text("protocol:\n  epochs: [3\n  warmup: 0.1\n")
    return search(tmp / "out", demo, config=bad), [str(bad), "not valid YAML"], [bad]


def row_missing_config(tmp, demo):
    return search(tmp / "out", demo, config=tmp / "none.yaml"), ["none.yaml", "config file not found"], []


def row_missing_root(tmp, demo):
    return search(tmp / "out", tmp / "nowhere", "data.make_demo=false"), [str(tmp / "nowhere")], []


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
    return search(blocker / "one", demo), [str(blocker / "one"), "cannot create"], [blocker]


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

"""Shared fixtures: tiny generated datasets (see ``helpers_data.py`` for the builders and their options)."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests import helpers_data directly

from helpers_data import make_cityscapes_tree, make_folder_tree  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """One compute thread: the tests' tensors are small (many tiny ops), and with 2 OpenMP threads on a busy
    2-core machine ops stall (BatchNorm measured ~10x slower); subprocesses the tests start set their own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small embedded demo dataset (8 train / 4 val frames of 64x128, coarse labels too), made once."""
    from ssnas.data.demo import make_demo_dataset
    root = tmp_path_factory.mktemp("data") / "demo"
    make_demo_dataset(root, seed=0, n_train=8, n_val=4, size=(64, 128))
    return root


@pytest.fixture
def cityscapes_tree(tmp_path) -> Path:
    """A miniature Cityscapes (train/val/test/train_extra, fine + coarse labelIds) under tmp_path."""
    return make_cityscapes_tree(tmp_path / "cityscapes")


@pytest.fixture
def folder_tree(tmp_path) -> Path:
    """A folder-format dataset (train 4 + val 2 labelled, train coarse, test 2 unlabelled) under tmp_path."""
    return make_folder_tree(tmp_path / "folder")

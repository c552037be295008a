"""Shared fixtures: tiny generated datasets (see ``helpers_data.py`` for the builders and their options)."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests import helpers_data directly

from helpers_data import make_cityscapes_tree, make_folder_tree  # noqa: E402


@pytest.fixture
def cityscapes_tree(tmp_path) -> Path:
    """A miniature Cityscapes (train/val/test/train_extra, fine + coarse labelIds) under tmp_path."""
    return make_cityscapes_tree(tmp_path / "cityscapes")


@pytest.fixture
def folder_tree(tmp_path) -> Path:
    """A folder-format dataset (train 4 + val 2 labelled, train coarse, test 2 unlabelled) under tmp_path."""
    return make_folder_tree(tmp_path / "folder")

"""What a minimal `pip install ssnas` (no extras) gives: training, augmentation, loading and prediction import
and run without the `demo` extra (and without albumentations/OpenCV); writing the demo dataset without the
extra is one clear line naming it."""
import subprocess
import sys
from pathlib import Path

import pytest

import ssnas.data.demo as demo
from ssnas.errors import UserError

SRC = Path(__file__).resolve().parent.parent / "src"
EXTRAS_ONLY = ("skimage", "sklearn")   # the `demo` extra's packages (pyproject.toml)
GONE = ("albumentations", "cv2")        # no longer dependencies at all (augmentation runs in torch/kornia)

PROGRAM = f"""
import sys
for name in {EXTRAS_ONLY + GONE!r}:
    sys.modules[name] = None          # importing it now raises ImportError, as if not installed
import torch, ssnas
from ssnas.engine.trainer import Trainer
from ssnas.data import build_dataset
from ssnas.data.transforms import build_transforms
from ssnas.cli import build_parser
build_parser()
from ssnas.data.augment import BatchAugment
from ssnas.config import DataConfig
from ssnas.darts.data import DartsAugment
x, y = BatchAugment(DataConfig(crop_size=(16, 16)))([torch.zeros(3, 20, 20, dtype=torch.uint8)],
                                                    [torch.zeros(20, 20, dtype=torch.uint8)], [0], "cpu")
assert x.shape == (1, 3, 16, 16)
model = ssnas.create_model("tiny", num_classes=3).eval()
import numpy as np
label = ssnas.predict(model, np.zeros((32, 64, 3), np.uint8))
assert label.shape == (32, 64)
import ssnas.data.demo as demo
assert demo.MISSING_EXTRA in {EXTRAS_ONLY!r}, demo.MISSING_EXTRA
print("ok")
"""


def test_core_works_without_the_demo_extra():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_writing_the_demo_without_its_extra_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "MISSING_EXTRA", "skimage")
    with pytest.raises(UserError, match=r"needs skimage.*pip install 'ssnas\[demo\]'"):
        demo.make_demo_dataset(tmp_path / "d", seed=0, n_train=2, n_val=1, size=(64, 128))
    assert not (tmp_path / "d").exists()

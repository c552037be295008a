"""Named parameter sets of the embedded demo dataset (``data.demo_preset``), kept apart from the generator
so that the config schema can list them without importing numpy/scikit-image.

- ``demo``: the README's main job: 200 train / 50 val frames; thing classes are digit *groups* (0-3, 4-6,
  7-9), a hard fine-grained task for a small supernet.
- ``proxy``: the studies' proxy scale (docs/reproduction.md, "How the proxy scale was chosen"): 400 train /
  100 val frames (more val frames, less evaluation noise), thing classes are single, distinct digits
  (0, 1, 4). With digit groups a 6-layer supernet stayed at 57-59 % mIoU after 1,200-2,400 steps, its
  thing classes at 12-24 % IoU; single digits are learnable at that budget.
"""
from __future__ import annotations

PRESETS: dict[str, dict] = {
    "demo": {},
    "proxy": {"n_train": 400, "n_val": 100, "thing_digits": {"person": [0], "car": [1], "bicycle": [4]}},
}

"""Print the losses and a SHA-256 of every model tensor after 3 weight + 3 architecture steps of the smoke config,
so that two source trees can be compared bit for bit (e.g. that the cost term, off by default, changes nothing):

    python bench/check_same_steps.py DATA OUT            # DATA: a demo dataset (ssnas data demo --out DATA)
    PYTHONPATH=/path/to/other/src python bench/check_same_steps.py DATA OUT2   # the same line = the same run

Measured for issue 16: main (c82176a) and branch cost print the same losses and hash (docs/cost-aware.md)."""
import hashlib
import sys

import torch

from ssnas.config import load_config
from ssnas.engine.trainer import Trainer

torch.set_num_threads(1)
root, out = sys.argv[1], sys.argv[2]
cfg = load_config("smoke", [f"data.root={root}", "arch_optim.lr=0.1", *sys.argv[3:]])
t = Trainer(cfg, out)
t._setup()
losses = []
try:
    for _ in range(3):
        losses.append(t.weight_step(t._to_device(t.streams["a"].next())))
        losses.append(t.arch_step(t._to_device(t.streams["b"].next()), 1.0))
finally:
    t.run_dir.unlock()
h = hashlib.sha256()
for k, v in sorted(t.model.state_dict().items()):
    h.update(k.encode())
    h.update(v.detach().cpu().contiguous().numpy().tobytes())
print(losses, h.hexdigest())

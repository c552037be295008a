"""Model fixtures shared by the space, export and cost tests."""
from __future__ import annotations

import torch


def randomize(model):
    """Random α, β and BatchNorm statistics and affine values, in eval mode: a freshly built supernet has a
    uniform architecture and identity BN, under which a wrong fold (of a mixture, an edge weight, a BN) can
    still give the right logits."""
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_(0, 1)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
    return model.eval()

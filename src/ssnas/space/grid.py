"""The paper's search space (§3.1), registered as ``grid``: a multi-scale stem, L layers × ``LEVELS`` cells
(Eq. 1-3), the DCNAS-style head. Its variants are ``configs/variants/<name>.yaml`` (Table 3)."""
from __future__ import annotations

import dataclasses

import torch

from ssnas.errors import UserError
from ssnas.space.base import register_space
from ssnas.space.fused import FusedSegNet
from ssnas.space.supernet import SpaceConfig, SuperNet
from ssnas.space.variants import space_config


def check_checkpoint(space: dict, state: dict, path) -> None:
    """Before anything is built: the stored hyperparameters agree with the stored α (a crafted ``space``
    asking for a million layers is refused here, not built until killed)."""
    alpha = state.get("alpha")
    layers, kernels = space.get("layers"), space.get("kernel_sizes")
    if not isinstance(alpha, torch.Tensor) or alpha.dim() != 3 or not isinstance(kernels, (list, tuple)) \
            or (layers, len(kernels)) != (alpha.shape[0], alpha.shape[2]):
        shape = tuple(alpha.shape) if isinstance(alpha, torch.Tensor) else "missing"
        raise UserError(f"{path}: the stored space ({layers} layers, kernels {kernels}) does not match the "
                        f"stored alpha {shape}")


@register_space("grid", fused=FusedSegNet, check_checkpoint=check_checkpoint, tiny={"variant": "tiny"})
def build_grid(variant: str | dict | SpaceConfig = "small", **overrides) -> SuperNet:
    """A grid supernet from a variant name, a dict of :class:`SpaceConfig` keys or a ``SpaceConfig``, with
    per-key overrides (None values ignored)."""
    if isinstance(variant, SpaceConfig):
        cfg = dataclasses.replace(variant, **{k: v for k, v in overrides.items() if v is not None})
    else:
        cfg = space_config(variant, **overrides)
    return SuperNet(cfg)

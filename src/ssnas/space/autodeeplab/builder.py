"""Registers Auto-DeepLab as the search space ``autodeeplab`` (``model.space: autodeeplab``).

Variants are data: ``configs/autodeeplab/variants/<name>.yaml``: ``search`` (the paper's L = 12, B = 5,
F = 8), ``small`` (CPU examples), ``tiny`` (tests) for the supernet; ``retrained-s/m/l`` are the published
retrained networks (a fixed architecture, for ``ssnas profile``). Config keys: ``model.layers`` and
``model.filters`` as for the grid, the rest in ``model.options`` (``blocks``, ``stem_channels``,
``aspp_rate_base``, ``beta_normalization``, ``primitives``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ssnas.errors import UserError
from ssnas.space.autodeeplab.cell import PRIMITIVES
from ssnas.space.autodeeplab.fuse import FusedAutoDeepLab
from ssnas.space.autodeeplab.network import AutoDeepLab
from ssnas.space.autodeeplab.retrained import RetrainedAutoDeepLab, RetrainedConfig, load_retrained
from ssnas.space.autodeeplab.topology import LEVELS, NORMALIZATIONS, AutoDeepLabConfig
from ssnas.space.base import register_space

NAME = "autodeeplab"
VARIANTS_DIR = Path(__file__).resolve().parents[2] / "configs" / "autodeeplab" / "variants"
INTEGER_KEYS = {"layers": LEVELS - 1, "filters": 1, "blocks": 1, "stem_channels": 1, "aspp_rate_base": 1,
                "num_classes": 1, "in_channels": 1}     # key → smallest value


def list_variants() -> list[str]:
    return sorted(p.stem for p in VARIANTS_DIR.glob("*.yaml"))


def load_variant(name: str) -> dict:
    from ssnas.config import read_yaml

    path = Path(name) if str(name).endswith((".yaml", ".yml")) else VARIANTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"model.variant: {name!r} is not an Auto-DeepLab variant, expected one of "
                        f"{', '.join(list_variants())} or a .yaml file")
    data = read_yaml(path, "variant")
    data.pop("description", None)
    return data


def space_config(data: dict, source: str = "model") -> AutoDeepLabConfig:
    """Validate the supernet's keys into an :class:`AutoDeepLabConfig` (one UserError line per mistake)."""
    names = [f.name for f in dataclasses.fields(AutoDeepLabConfig)]
    from ssnas.config import unknown_keys
    unknown = unknown_keys(data, names)
    if unknown:
        raise UserError(f"{source}: {unknown[0]!r} is not a key of the {NAME} space, expected one of "
                        f"{', '.join(names)}")
    for key, low in INTEGER_KEYS.items():
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise UserError(f"{source}: {key}={value!r}, expected an integer >= {low}")
    norm = data.get("beta_normalization", "outgoing")
    if norm not in NORMALIZATIONS:
        raise UserError(f"{source}: beta_normalization={norm!r}, expected one of {', '.join(NORMALIZATIONS)}")
    prims = data.get("primitives", PRIMITIVES)
    from ssnas.darts.operations import OPS
    if not isinstance(prims, (list, tuple)) or not prims or any(p not in OPS for p in prims) \
            or len(set(prims)) != len(prims):
        raise UserError(f"{source}: primitives={prims!r}, expected distinct operations of {', '.join(OPS)}")
    return AutoDeepLabConfig(**{**data, "primitives": tuple(prims)})


def check_checkpoint(space: dict, state: dict, path) -> None:
    """Before anything is built: the stored hyperparameters agree with the stored α and β."""
    alpha, beta = state.get("alpha"), state.get("beta")
    layers, blocks, prims = space.get("layers"), space.get("blocks"), space.get("primitives")
    ok = isinstance(alpha, torch.Tensor) and isinstance(beta, torch.Tensor) and isinstance(blocks, int) \
        and isinstance(prims, (list, tuple)) and alpha.dim() == 2 and beta.dim() == 3 \
        and tuple(alpha.shape) == (sum(2 + b for b in range(blocks)), len(prims)) and beta.shape[0] == layers
    if not ok:
        raise UserError(f"{path}: the stored Auto-DeepLab space ({layers} layers, {blocks} blocks) does not match "
                        f"the stored alpha/beta")


@register_space(NAME, fused=FusedAutoDeepLab, check_checkpoint=check_checkpoint, tiny={"variant": "tiny"})
def build_autodeeplab(variant: str | dict | AutoDeepLabConfig = "search", **overrides):
    """An Auto-DeepLab supernet from a variant name, a dict of :class:`AutoDeepLabConfig` keys (a checkpoint's
    record) or an ``AutoDeepLabConfig``, with per-key overrides (None values ignored). The variants
    ``retrained-s/m/l`` build the published retrained networks instead (fixed architecture, for profiling)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(variant, AutoDeepLabConfig):
        return AutoDeepLab(dataclasses.replace(variant, **overrides))
    if isinstance(variant, str) and variant.startswith("retrained-"):
        data, paper = load_retrained(variant.removeprefix("retrained-"))
        return RetrainedAutoDeepLab(RetrainedConfig(**{**data, **overrides}), paper=paper)
    data = dict(load_variant(variant) if isinstance(variant, str) else variant)
    data.pop("search_space", None)
    data.update(overrides)
    return AutoDeepLab(space_config(data))

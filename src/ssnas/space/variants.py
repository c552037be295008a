"""Supernet variants (Table 3), defined as data in ``configs/variants/<name>.yaml``, and the grid's
hyperparameter check.

``create_model("small", num_classes=19)`` is the one way to build a supernet (timm's ``create_model``); it
builds the registered space ``space`` (default the paper's grid, ``space/base.py``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path


from ssnas.errors import UserError
from ssnas.space.base import create_model  # noqa: F401 (the one way to build a supernet, re-exported)
from ssnas.space.cell import MIXTURES
from ssnas.space.supernet import SpaceConfig

VARIANTS_DIR = Path(__file__).resolve().parent.parent / "configs" / "variants"


def list_variants() -> list[str]:
    return sorted(p.stem for p in VARIANTS_DIR.glob("*.yaml"))


def load_variant(name: str) -> dict:
    """The variant's keys as a dict; a path to a YAML file works too."""
    path = Path(name) if str(name).endswith((".yaml", ".yml")) else VARIANTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown variant {name!r}, expected one of {', '.join(list_variants())} or a .yaml file")
    from ssnas.config import read_yaml
    data = read_yaml(path, "variant")
    data.pop("description", None)
    data.pop("paper", None)
    return data


def space_config(variant: str | dict, **overrides) -> SpaceConfig:
    """Validate a variant (+ overrides, None values ignored) into a :class:`SpaceConfig`."""
    source = variant if isinstance(variant, str) else "variant"
    data = dict(load_variant(variant) if isinstance(variant, str) else variant)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if data.pop("search_space", "grid") != "grid":
        raise UserError(f"{source}: describes another search space than grid")
    names = {f.name for f in dataclasses.fields(SpaceConfig)}
    from ssnas.config import unknown_keys
    unknown = unknown_keys(data, names)
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r}, expected one of {', '.join(sorted(names))}")
    for key in ("layers", "filters"):
        if key not in data:
            raise UserError(f"{source}: missing key {key!r}")
    _check_int(source, "layers", data["layers"])
    _check_int(source, "filters", data["filters"])
    _check_int(source, "head_channels", data.get("head_channels", 256))
    _check_int(source, "num_classes", data.get("num_classes", 19))
    exp = data.get("expansion", 1)
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or exp <= 0:
        raise UserError(f"{source}: expansion={exp!r}, expected a positive number")
    s = data.get("sampling", 1.0)
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1:
        raise UserError(f"{source}: sampling={s!r}, expected a ratio S in (0, 1]")
    ks = data.get("kernel_sizes", (3, 5, 7))
    if not isinstance(ks, (list, tuple)) or not ks or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0 for k in ks):
        raise UserError(f"{source}: kernel_sizes={ks!r}, expected a non-empty list of odd positive integers")
    if data.get("mixture", "kernel") not in MIXTURES:
        raise UserError(f"{source}: mixture={data['mixture']!r}, expected one of {', '.join(MIXTURES.names())}")
    cfg = SpaceConfig(**{**data, "kernel_sizes": tuple(ks), "expansion": float(exp), "sampling": float(s)})
    for c in cfg.widths:
        op = c * cfg.sampling
        if abs(op - round(op)) > 1e-9 or round(op) < 1 or c % round(op):
            raise UserError(f"{source}: sampling={s} must split every level's width {cfg.widths} into whole, "
                            f"equal groups (got {op:g} of {c} channels)")
    return cfg


def _check_int(source: str, key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{source}: {key}={value!r}, expected a positive integer")

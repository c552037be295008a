"""Cost budgets as text: ``20G`` FLOPs, ``3M`` parameters, ``15ms`` latency (``cost.target``, ``--budget``);
input sizes as text: ``1024x2048`` (``--input-size``, ``--cost-size``).

Each metric has one base unit: FLOPs (2 × multiply-adds, ``space/profile.py``), parameters (a count), and
latency in milliseconds. A budget is a positive number with an optional suffix: k, M, G, T (10^3 … 10^12)
for FLOPs and parameters; us, ms, s for latency (a bare number is milliseconds).
"""
from __future__ import annotations

import math
import re

from ssnas.errors import UserError

METRICS = ("flops", "params", "latency")
UNITS = {"flops": "FLOPs", "params": "params", "latency": "ms"}
_COUNT_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_TIME_SUFFIX = {"": 1.0, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*$")
EXAMPLES = {"flops": "20G", "params": "3M", "latency": "15ms"}


def parse_cost(text, metric: str, key: str) -> float:
    """``"20G"`` → 2e10 (flops/params), ``"15ms"`` → 15.0 (latency, ms); a bad value is one UserError line
    naming ``key``."""
    if metric not in METRICS:
        raise UserError(f"{key}: metric {metric!r} is not one of {', '.join(METRICS)}")
    suffixes = _TIME_SUFFIX if metric == "latency" else _COUNT_SUFFIX
    expected = (f"expected a positive number with an optional suffix {'/'.join(s for s in suffixes if s)} "
                f"for metric {metric}, e.g. {EXAMPLES[metric]}")
    if isinstance(text, bool):
        raise UserError(f"{key}: {text!r} is not a cost, {expected}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _NUMBER.match(str(text))
        if not m or m.group(2) not in suffixes:
            raise UserError(f"{key}: {text!r} is not a cost, {expected}")
        value = float(m.group(1)) * suffixes[m.group(2)]
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{key}: {text!r} is not a cost, {expected}")
    return value


def format_cost(value: float, metric: str) -> str:
    """2.05e10 → ``20.50 GFLOPs``; 3.1e6 → ``3.10 M params``; 14.2 → ``14.20 ms``."""
    if metric == "latency":
        return f"{value:.2f} ms"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {suffix}{UNITS[metric]}" if metric == "flops" else \
                f"{value / scale:.2f} {suffix} params"
    return f"{value:.0f} {UNITS[metric]}"


def parse_size(text: str, key: str = "--input-size") -> tuple[int, int]:
    """``"1024x2048"`` → (1024, 2048); a bad value is one UserError line naming ``key``."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"{key} {text!r}: expected HxW with positive integers, e.g. 1024x2048") from None
    if h <= 0 or w <= 0:
        raise UserError(f"{key} {text!r}: sizes must be positive, e.g. 1024x2048")
    return h, w

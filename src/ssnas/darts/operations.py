"""DARTS's candidate operations: they live in the shared ``OPS`` registry (``ssnas/ops/darts.py``).

``OPS`` here is that registry and :func:`build_operation` builds one of its operations, as DARTS's
``OPS[name](C, stride, affine)`` did.
"""
from __future__ import annotations

from torch import nn

from ssnas.ops import OPS, build_op
from ssnas.ops.darts import (POOL_KERNEL, DilConv, FactorizedReduce, Identity, NoiseOp, ReLUConvBN,  # noqa: F401
                             SepConv, Zero)


def build_operation(name: str, C: int, stride: int) -> nn.Module:
    """Instantiate the op ``name`` on ``C`` channels with ``stride`` (1 or 2)."""
    if name not in OPS:
        raise KeyError(f"unknown DARTS operation {name!r}, expected one of {sorted(OPS)}")
    return build_op(name, C, stride)

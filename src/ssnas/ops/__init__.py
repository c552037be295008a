"""Candidate operations: the ``OPS`` registry (DARTS's ``OPS`` table as a registry).

An operation is a builder ``(C, stride, **options) -> nn.Module`` mapping (B, C, H, W) to
(B, C, ceil(H / stride), ceil(W / stride)); a new one is one line in a module of this package::

    OPS.register("sep_conv_7x7", lambda C, stride, affine=False: SepConv(C, C, 7, stride, 3, affine))

Every built operation folds for export: ``ssnas.ops.fold.fuse_module(op)`` (the op's own ``fuse()``, or
its Sequential folded child by child) returns a module with the same eval-mode output (BatchNorm folded).
``meta`` ``strides`` lists the strides an op supports (default (1, 2)). ``darts.py`` holds DARTS's /
RobustDARTS's operations, ``mbconv.py`` the grid's inverted bottlenecks.
"""
from __future__ import annotations

from torch import nn

from ssnas.registry import Registry

OPS = Registry("operation", packages=("ssnas.ops",))


def register_op(name: str, builder=None, **meta):
    """``register_op("name", builder)`` or ``@register_op("name")`` on a builder."""
    return OPS.register(name, builder, **meta)


def build_op(name: str, C: int, stride: int = 1, **options) -> nn.Module:
    """Instantiate the registered operation ``name`` on ``C`` channels with ``stride``."""
    return OPS.get(name)(C, stride, **options)


def list_ops() -> list:
    return OPS.names()

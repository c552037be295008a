"""Fold a trained supernet into a plain network with the same eval-mode logits, and write / read it.

Under the single-stage protocol the trained supernet *is* the final model, so deployment only removes what
the architecture adds: each search space folds itself (``model.fuse()``, the
:class:`~ssnas.space.base.SearchSpace` protocol; the grid's is ``space/fused.py``), each of its blocks folding
its own BatchNorm and mixtures (``fuse()`` per block). This module knows no space's insides: it asks the
model for its fused network and stores it.

A fused network is described by a ``spec`` of plain values (``spec["space"]`` names its search space; none is
the grid), so ``save_fused`` writes a weights-only file (``torch.load(weights_only=True)``) that
:func:`load_fused` rebuilds with the space's registered ``fused`` class, without the supernet code.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ssnas.engine.checkpoint import torch_bytes, write_output
from ssnas.errors import UserError, check_version
from ssnas.space.base import FUSED_FORMAT as FORMAT
from ssnas.space.base import FUSED_VERSION as VERSION
from ssnas.space.base import fused_class


def fuse_supernet(model, **options) -> nn.Module:
    """The deployable network of a (trained) supernet: ``model.fuse(**options)`` (the grid takes
    ``merge_edges``). Exact in eval mode (the BN running statistics are used, whatever ``model.training`` is)."""
    return model.fuse(**options)


def __getattr__(name: str):
    if name == "FusedSegNet":   # the grid's fused network, importable from here as before
        from ssnas.space.fused import FusedSegNet
        return FusedSegNet
    raise AttributeError(name)


# ---------------------------------------------------------------------------- files
def save_fused(fused: nn.Module, path: str | Path, classes: dict | None = None,
               preprocessing: dict | None = None) -> None:
    """Write ``{"format", "version", "spec", "state_dict", "classes", "preprocessing"}`` atomically
    (weights-only loadable); a full disk is one line."""
    payload = dict(format=FORMAT, version=VERSION, spec=fused.spec, classes=classes, preprocessing=preprocessing,
                   state_dict={k: v.detach().cpu() for k, v in fused.state_dict().items()})
    write_output(path, torch_bytes(payload), "the fused model")


def load_fused(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a fused network from a file of :func:`save_fused` (eval mode; ``.classes`` and
    ``.preprocessing`` attached)."""
    from ssnas.engine.checkpoint import read_weights_only

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: fused model not found")
    return fused_from_payload(read_weights_only(path, map_location), path).to(map_location)


def fused_from_payload(payload: dict, path: str | Path) -> nn.Module:
    """The fused network of a loaded fused-model dict (``spec``, ``state_dict``, ``classes``, …)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an ssnas fused model (no '{FORMAT}' header)")
    check_version(payload.get("version", 0), VERSION, f"{path}: fused model")
    try:
        fused = fused_class(payload["spec"])(payload["spec"])
        fused.load_state_dict(payload["state_dict"])
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: fused model spec and weights do not fit ({str(exc).splitlines()[0][:160]})") \
            from None
    fused.classes = payload.get("classes")
    fused.preprocessing = payload.get("preprocessing")
    return fused.eval()

"""A released model without pickle: the fused weights in safetensors, its description as JSON in the header.

A ``.safetensors`` file is an 8-byte header length, a JSON header, then raw tensor bytes: loading it parses
JSON and copies bytes, it never unpickles anything. The header's ``__metadata__`` (string → string) holds::

    format: "ssnas-fused"   version: "1"
    spec: JSON of the fused network's spec (its search space, the fused architecture: for the grid, live stem
          branches, cells, edges, kernels)
    classes: JSON {"names", "colors", "ignore_index"}
    preprocessing: JSON {"mean", "std", ...}
    architecture: JSON of the searched architecture (summary.json's compact form), for people

so any safetensors reader (``safetensors.safe_open(path, "pt").metadata()``) shows what the model is.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ssnas.engine.checkpoint import write_output
from ssnas.errors import UserError
from ssnas.export.fuse import FORMAT, VERSION, fused_from_payload

SUFFIX = ".safetensors"
JSON_KEYS = ("spec", "classes", "preprocessing", "architecture")


def save_safetensors(fused: nn.Module, path: str | Path, classes: dict | None = None,
                     preprocessing: dict | None = None, architecture: dict | None = None) -> None:
    """Write the fused weights and their JSON description atomically; a full disk is one line."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in fused.state_dict().items()}
    values = {"spec": fused.spec, "classes": classes, "preprocessing": preprocessing, "architecture": architecture}
    metadata = {"format": FORMAT, "version": str(VERSION), **{k: json.dumps(v) for k, v in values.items()}}
    data = save(tensors, metadata=metadata)
    write_output(path, data, "the model")


def read_safetensors(path: str | Path) -> dict:
    """The fused-model dict of :func:`~ssnas.export.fuse.fused_from_payload` from a file, without pickle."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        raw = path.read_bytes()
        tensors = load(raw)
        metadata = _header(raw).get("__metadata__") or {}
    except (SafetensorError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not a readable safetensors file (corrupted or truncated: "
                        f"{str(exc).strip()[:120]})") from None
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path}: not an ssnas model (no format '{FORMAT}' in the safetensors metadata)")
    payload = {"format": FORMAT, "state_dict": tensors}
    try:
        payload["version"] = int(metadata.get("version", "0"))
        for key in JSON_KEYS:
            payload[key] = json.loads(metadata[key]) if key in metadata else None
    except (ValueError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: safetensors metadata is not valid ({str(exc)[:120]})") from None
    return payload


def load_safetensors(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """A fused network (the space's registered ``fused`` class; eval mode, ``.classes``, ``.preprocessing``, ``.architecture``) from a file."""
    payload = read_safetensors(path)
    fused = fused_from_payload(payload, path)
    fused.architecture = payload.get("architecture")
    return fused.to(map_location)


def _header(raw: bytes) -> dict:
    """The JSON header of safetensors bytes (8-byte little-endian length, then JSON)."""
    if len(raw) < 8:
        raise ValueError("file shorter than the 8-byte header length")
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n])

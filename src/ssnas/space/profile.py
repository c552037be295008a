"""Parameters and FLOPs of a supernet, per component, counted by torch's own FLOP counter.

Convention (Table 3): FLOPs = 2 × multiply-adds of the conv/linear layers in one forward pass of a
1×3×H×W input (default 1024×2048). The pass runs on the ``meta`` device by default — the real forward
code, no data, no time — or on a real device for a check (both give the same counts).
"""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from ssnas.space.supernet import SuperNet

COMPONENTS = ("stem", "cells", "P", "head")
# Table 3 of the paper: (FLOPs at 1024×2048, parameters).
PAPER_TABLE3 = {
    "small": (57.7e9, 3.2e6),
    "deep": (109.4e9, 10.7e6),
    "medium": (380.1e9, 22.3e6),
    "large": (558e9, 47.3e6),
}


def _component(name: str) -> str:
    """Map a parameter / module name to its component."""
    if name.startswith("stem"):
        return "stem"
    if name.startswith("backbone.cells"):
        return "cells"
    if name.startswith("backbone.edges"):
        return "P"
    if name.startswith("head"):
        return "head"
    return "arch"


def count_parameters(model: SuperNet) -> dict:
    out = {c: 0 for c in COMPONENTS + ("arch",)}
    for name, p in model.named_parameters():
        out[_component(name)] += p.numel()
    return out


def forward_flops(model, input_size: tuple[int, int], in_channels: int = 3) -> int:
    """Total forward FLOPs of any model (a supernet or its fused export) for one 1×C×H×W input, counted on a
    ``meta`` copy so that no data is computed and the model itself is left where it is."""
    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, in_channels, *input_size, device="meta"))
    return int(counter.get_total_flops())


def profile(model: SuperNet, input_size: tuple[int, int] = (1024, 2048)) -> dict:
    """{"params", "flops", "macs", "arch_params", "components": {name: {"params", "flops"}}, "input_size"}.

    ``params`` counts the weights and the architecture parameters (α, β) — everything in the model.
    """
    model = model.eval()
    device = model.alpha.device  # build the model under `with torch.device("meta")` to count for free
    x = torch.empty(1, model.cfg.in_channels, *input_size, device=device)
    if device.type != "meta":
        x.normal_()
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        model(x)
    flops = {c: 0 for c in COMPONENTS}
    prefix = type(model).__name__ + "."
    for module, counts in counter.get_flop_counts().items():
        if not module.startswith(prefix):
            continue
        name = module[len(prefix):]
        depth = name.count(".")
        # count each leaf group once: stem/head at their root, cells at cells.l.i, P at edges.l.i.j
        if name in ("stem", "head") or (name.startswith("backbone.cells") and depth == 3) or (
                name.startswith("backbone.edges") and depth == 4):
            flops[_component(name)] += sum(counts.values())
    total = counter.get_total_flops()
    params = count_parameters(model)
    return {
        "input_size": list(input_size),
        "params": sum(params.values()),
        "arch_params": params["arch"],
        "flops": int(total),
        "macs": int(total // 2),
        "components": {c: {"params": params[c], "flops": int(flops[c])} for c in COMPONENTS},
        "other_flops": int(total - sum(flops.values())),
    }

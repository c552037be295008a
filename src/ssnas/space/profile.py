"""Parameters and FLOPs of a supernet, per component, counted by torch's own FLOP counter.

Convention (Table 3): FLOPs = 2 × multiply-adds of the conv/linear layers in one forward pass of a
1×3×H×W input (default 1024×2048). The pass runs on the ``meta`` device by default — the real forward
code, no data, no time — or on a real device for a check (both give the same counts). The components are
the space's own (``cost_groups()`` of the :class:`~ssnas.space.base.SearchSpace` protocol; the grid's are
Table 3's stem / cells / P / head).
"""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

COMPONENTS = ("stem", "cells", "P", "head")   # the grid's (Table 3)
# Table 3 of the paper: (FLOPs at 1024×2048, parameters).
PAPER_TABLE3 = {
    "small": (57.7e9, 3.2e6),
    "deep": (109.4e9, 10.7e6),
    "medium": (380.1e9, 22.3e6),
    "large": (558e9, 47.3e6),
}


def components(model) -> tuple:
    """The model's components, in the order its ``cost_groups()`` names them."""
    return tuple(dict.fromkeys(model.cost_groups().values()))


def _component(name: str, groups: dict) -> str:
    """The component of a parameter / module name: that of the group containing it, else ``arch``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        group = groups.get(".".join(parts[:end]))
        if group is not None:
            return group
    return "arch"


def count_parameters(model) -> dict:
    groups = model.cost_groups()
    out = {c: 0 for c in components(model) + ("arch",)}
    for name, p in model.named_parameters():
        out[_component(name, groups)] += p.numel()
    return out


def forward_flops(model, input_size: tuple[int, int], in_channels: int = 3) -> int:
    """Total forward FLOPs of any model (a supernet or its fused export) for one 1×C×H×W input, counted on a
    ``meta`` copy so that no data is computed and the model itself is left where it is."""
    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, in_channels, *input_size, device="meta"))
    return int(counter.get_total_flops())


def profile(model, input_size: tuple[int, int] = (1024, 2048)) -> dict:
    """{"params", "flops", "macs", "arch_params", "components": {name: {"params", "flops"}}, "input_size"}.

    ``params`` counts the weights and the architecture parameters (α, β) — everything in the model.
    """
    model = model.eval()
    device = next(model.parameters()).device  # build the model under `with torch.device("meta")` to count free
    x = torch.empty(1, model.cfg.in_channels, *input_size, device=device)
    if device.type != "meta":
        x.normal_()
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        model(x)
    groups, names = model.cost_groups(), components(model)
    flops = {c: 0 for c in names}
    prefix = type(model).__name__ + "."
    for module, counts in counter.get_flop_counts().items():
        name = module[len(prefix):] if module.startswith(prefix) else None
        if name in groups:   # each group once, at its own name (its submodules are counted within it)
            flops[groups[name]] += sum(counts.values())
    total = counter.get_total_flops()
    params = count_parameters(model)
    return {
        "input_size": list(input_size),
        "params": sum(params.values()),
        "arch_params": params["arch"],
        "flops": int(total),
        "macs": int(total // 2),
        "components": {c: {"params": params[c], "flops": int(flops[c])} for c in names},
        "other_flops": int(total - sum(flops.values())),
    }

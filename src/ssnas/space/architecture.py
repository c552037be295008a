"""The searched architecture as text: ``architecture.json`` of a run and its compact printout.

A person (or an Auto-DeepLab port) should read which kernel and which edges each cell chose without
loading the model or looking at a plot. The file holds β̂ per edge, α̂ per cell, the discretized choice
per cell (the dominant kernel, argmax α̂) and the *strongest path* through the grid (see
:func:`strongest_path`).
"""
from __future__ import annotations

import math

import torch

from ssnas.arch import arch_entropies
from ssnas.space.topology import EDGE_KINDS, EDGE_NAMES, LEVELS, STEM_STRIDE, edge_source, stride  # noqa: F401

FORMAT = "ssnas-architecture"
VERSION = 1


def strongest_path(beta_hat: torch.Tensor, edge_mask: torch.Tensor) -> tuple[list[int], float]:
    """The path stem → layer 1 → … → layer L → head whose product of β̂ along its edges is largest.

    The stem feeds every level of layer 0 and the head reads every level of layer L, so a path is a level
    per layer, ``levels[0]`` (the stem's output) to ``levels[L]``, moving at most one level per layer
    along an existing, kept edge. Found exactly by dynamic programming over the layers (Viterbi on log β̂):
    best[l][i] = max over incoming edges j of best[l-1][i + offset_j] + log β̂[l, i, j]. Returns the levels
    (length L + 1) and the product of β̂ along the path (0 when every path crosses a pruned edge).
    """
    beta = beta_hat.detach().double().cpu()
    mask = edge_mask.detach().cpu().bool()
    layers, levels, _ = beta.shape
    log_b = torch.where(mask & (beta > 0), beta.clamp_min(1e-300).log(), torch.full_like(beta, -math.inf))
    best = [0.0] * levels
    back = []
    for l in range(layers):
        new, arg = [-math.inf] * levels, [0] * levels
        for i in range(levels):
            for j in range(EDGE_KINDS):
                src = edge_source(i, j, levels)
                if src is not None and best[src] + float(log_b[l, i, j]) > new[i]:
                    new[i], arg[i] = best[src] + float(log_b[l, i, j]), src
        back.append(arg)
        best = new
    end = max(range(levels), key=lambda i: best[i])
    path = [end]
    for arg in reversed(back):
        path.append(arg[path[-1]])
    path.reverse()
    return path, (math.exp(best[end]) if best[end] > -math.inf else 0.0)


def describe_architecture(model) -> dict:
    """JSON-able description of a model's architecture: the space's own ``describe_architecture()`` (the
    grid's: :func:`describe_grid`; DARTS networks give their genotype)."""
    return model.describe_architecture()


def describe_cell(layer: int, level: int, a_hat, op_mask, kernels: list[int], edges) -> dict:
    """One cell of ``architecture.json`` (any grid-like space): α̂ per kernel, the dominant kernel among the
    kept ones (argmax α̂) and its incoming ``edges`` as the space describes them."""
    a = a_hat.masked_fill(~op_mask, -1.0)
    return {"layer": layer + 1, "level": level, "stride": stride(level),
            "alpha_hat": {str(k): float(a_hat[n]) for n, k in enumerate(kernels)},
            "kernel": kernels[int(a.argmax())], "edges": edges}


@torch.no_grad()
def describe_grid(model) -> dict:
    """The grid supernet's architecture (see the module docstring)."""
    a_hat, b_hat = model.alpha_hat().cpu(), model.beta_hat().cpu()
    op_mask, edge_mask = model.op_mask.cpu(), model.edge_mask.cpu()
    kernels = [int(k) for k in model.cfg.kernel_sizes]
    cells = []
    for l in range(model.cfg.layers):
        for i in range(LEVELS):
            edges = {}
            for j in range(EDGE_KINDS):
                src = edge_source(i, j)
                if src is not None:
                    edges[EDGE_NAMES[j]] = {"from_stride": stride(src), "beta_hat": float(b_hat[l, i, j]),
                                            "kept": bool(edge_mask[l, i, j])}
            cells.append(describe_cell(l, i, a_hat[l, i], op_mask[l, i], kernels, edges))
    path, product = strongest_path(b_hat, edge_mask)
    return {
        "format": FORMAT, "version": VERSION, "space": "supernet",
        "layers": model.cfg.layers, "strides": [stride(i) for i in range(LEVELS)], "kernel_sizes": kernels,
        "frozen": model.arch_frozen,
        "cells": cells,
        "strongest_path": {
            "definition": "max product of beta-hat over paths stem -> layer 1..L -> head (dynamic programming)",
            "levels": path, "strides": [stride(i) for i in path], "beta_product": product,
        },
        "entropy": arch_entropies(model),
    }


def graph_grid(model) -> dict:
    """The grid supernet's ``architecture_graph`` (see ``SearchSpace``): β̂ per edge, α̂ per cell."""
    b_hat, a_hat = model.beta_hat().detach().cpu(), model.alpha_hat().detach().cpu()
    edge_mask = model.edge_mask.cpu()
    layers, levels, _ = b_hat.shape
    edges = [[l, src, l + 1, i, float(b_hat[l, i, j]), bool(edge_mask[l, i, j])]
             for l in range(layers) for i in range(levels) for j in range(EDGE_KINDS)
             if (src := edge_source(i, j, levels)) is not None]
    path, _ = strongest_path(b_hat, edge_mask)
    return {"layers": layers, "levels": [f"stride {stride(i)}" for i in range(levels)], "edges": edges,
            "op_labels": [f"{k}x{k}" for k in model.cfg.kernel_sizes],
            "ops": [[l + 1, i, a_hat[l, i].tolist()] for l in range(layers) for i in range(levels)],
            "path": [[l, lv] for l, lv in enumerate(path)]}


def summarize_architecture(arch: dict) -> dict:
    """The compact form kept in ``summary.json``: dominant kernel per cell (rows = levels, columns = layers)
    and the strongest path; the full description stays in ``architecture.json``."""
    if arch.get("space") != "supernet":
        return {k: arch[k] for k in ("space", "genotype") if k in arch}
    grid = [[0] * arch["layers"] for _ in arch["strides"]]
    for c in arch["cells"]:
        grid[c["level"]][c["layer"] - 1] = c["kernel"]
    sp = arch["strongest_path"]
    return {"space": "supernet", "strides": arch["strides"], "kernels": grid,
            "strongest_path": {"levels": sp["levels"], "strides": sp["strides"], "beta_product": sp["beta_product"]}}


def format_architecture(summary: dict) -> str:
    """A few lines for the end of a run (from :func:`summarize_architecture`): the dominant kernel per cell
    on the grid, the cells of the strongest path starred, and the path itself."""
    if summary.get("space") != "supernet":
        g = summary.get("genotype")
        return f"genotype: {g}" if g else ""
    grid, sp = summary["kernels"], summary["strongest_path"]
    layers = len(grid[0])
    on_path = {(l, lvl) for l, lvl in enumerate(sp["levels"]) if l > 0}
    lines = ["architecture: dominant kernel per cell (* = on the strongest path)",
             "  layer      " + " ".join(f"{l:>2} " for l in range(1, layers + 1))]
    for i, s in enumerate(summary["strides"]):
        row = " ".join(f"{grid[i][l - 1]:>2}" + ("*" if (l, i) in on_path else " ") for l in range(1, layers + 1))
        lines.append(f"  stride {s:>2}  {row}")
    lines.append("strongest path (max product of beta-hat), strides: stem " + " -> ".join(str(s) for s in sp["strides"])
                 + f" -> head (product {sp['beta_product']:.3g})")
    return "\n".join(lines)


def network_costs(model, input_size: tuple[int, int]) -> dict:
    """Parameters and GFLOPs (2 × multiply-adds, one 1×C×H×W input) of the supernet and of its fused export
    (``model.fuse()``: α̂, β̂ and BN folded), the network a user deploys; models that are not a registered
    search space (DARTS networks): parameters only."""
    from ssnas.space.profile import forward_flops

    def count(m) -> int:
        return sum(p.numel() for p in m.parameters())

    out = {"input_size": list(input_size), "supernet": {"params": count(model)}}
    from ssnas.space.base import SearchSpace
    if not isinstance(model, SearchSpace):
        return out
    in_channels = model.cfg.in_channels
    out["supernet"]["gflops"] = forward_flops(model, input_size, in_channels) / 1e9
    fused = model.fuse()
    out["fused"] = {"params": count(fused), "gflops": forward_flops(fused, input_size, in_channels) / 1e9}
    return out


def format_costs(costs: dict) -> str:
    size = "x".join(str(s) for s in costs["input_size"])
    parts = []
    for name in ("supernet", "fused"):
        c = costs.get(name)
        if c:
            flops = f", {c['gflops']:.3g} GFLOPs" if "gflops" in c else ""
            parts.append(f"{name} {c['params'] / 1e6:.3f} M params{flops}")
    return f"cost of one {size} image: " + "; ".join(parts)

"""Architecture-parameter math shared by every search space: masked softmax, entropy, Eq. 4.

A search space exposes ``arch_distributions()``: name → (probs (N, K), valid (N, K) bool), one row per
decision (a cell's incoming edges, a cell's kernels, a DARTS edge's ops). Rows may have fewer valid
choices than K (border cells have 2 incoming edges, not 3; pruned edges are invalid).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

_TINY = 1e-30


def masked_softmax(logits: Tensor, valid: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the valid entries only; invalid entries are exactly 0 and get finite gradients."""
    lse = torch.logsumexp(logits.masked_fill(~valid, float("-inf")), dim=dim, keepdim=True)
    return torch.where(valid, torch.exp(logits - lse), torch.zeros_like(logits))


def unbind_rows(t: Tensor, depth: int) -> list:
    """``t`` as nested lists of views, ``rows[l][i]...`` for the first ``depth`` dims: one ``unbind`` per row
    instead of a ``select`` per use. A forward that reads every cell's α̂ row and every edge's β̂ scalar then
    puts a few dozen graph nodes into the architecture step's backward instead of hundreds, each of which
    zero-filled a full-size gradient to be summed (docs/benchmarks.md)."""
    rows = t.unbind(0)
    return list(rows) if depth == 1 else [unbind_rows(r, depth - 1) for r in rows]


def keep_strongest(mask: Tensor, scores: Tensor, k: int) -> Tensor:
    """``mask`` narrowed, per row (last dim), to its ``k`` highest ``scores`` (all of a row's when it has
    fewer): the discretization of every space (top edges by β̂, the top choice by α̂). Scores are probabilities
    (≥ 0); ties go to the lower index (a stable sort), so an undecided row keeps its first choices."""
    order = scores.masked_fill(~mask, -1.0).sort(dim=-1, descending=True, stable=True).indices
    return mask & torch.zeros_like(mask).scatter_(-1, order[..., :k], True)


def prune_weakest(mask: Tensor, scores: Tensor, fraction: float) -> tuple[Tensor, int]:
    """§4.2's pruning, for every space: drop ``round(fraction · kept)`` of ``mask``'s kept entries, weakest
    ``scores`` first (β̂: ranked by their weight within their cell, the paper's approximation; ties to the lower
    index), never a row's (cell's, node's) last one. Returns the new mask and the number dropped."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    slots = mask.shape[-1]
    flat = mask.reshape(-1).clone()
    target = int(round(fraction * int(flat.sum())))
    kept = torch.nonzero(flat).squeeze(1)
    per_row = mask.reshape(-1, slots).sum(-1)
    dropped = 0
    for idx in kept[torch.argsort(scores.reshape(-1)[kept], stable=True)].tolist():
        if dropped >= target:
            break
        row = idx // slots
        if per_row[row] > 1:
            flat[idx] = False
            per_row[row] -= 1
            dropped += 1
    return flat.reshape(mask.shape), dropped


def entropy(probs: Tensor, valid: Tensor) -> Tensor:
    """Shannon entropy H(p) = -Σ p ln p per row (nats), over valid entries."""
    safe = torch.where(valid, probs, torch.ones_like(probs)).clamp_min(_TINY)
    return -(torch.where(valid, probs * torch.log(safe), torch.zeros_like(probs))).sum(-1)


def normalized_entropy(probs: Tensor, valid: Tensor) -> Tensor:
    """H(p) / ln(#valid choices) in [0, 1], so edges (2-3 choices) and ops (3 kernels) compare; 0 for one choice."""
    n = valid.sum(-1).to(probs.dtype)
    denom = torch.log(n.clamp_min(2.0))
    return torch.where(n > 1, entropy(probs, valid) / denom, torch.zeros_like(denom))


def arch_entropies(model) -> dict:
    """Mean raw and normalized entropy of each architecture distribution of ``model`` (floats), and
    ``per_element``: the mean of -p ln p over the valid elements, the unit of the paper's Table 1 (its 0.260 for
    DARTS's 8 uniform operations is ln 8 / 8)."""
    out = {}
    with torch.no_grad():
        for name, (probs, valid) in model.arch_distributions().items():
            h = entropy(probs, valid)
            out[name] = {
                "raw": float(h.mean()),
                "normalized": float(normalized_entropy(probs, valid).mean()),
                "per_element": float(h.sum() / valid.sum().clamp_min(1)),
            }
    return out


def coefficient_for(name: str, c_alpha: float, c_beta: float) -> float:
    """Operation-level distributions (``alpha*``) use c_alpha; edge/topology-level ones use c_beta (§3.3)."""
    return c_alpha if name.startswith("alpha") else c_beta


def entropy_loss(model, c_alpha: float, c_beta: float, scale: float = 1.0, reduction: str = "mean") -> Tensor:
    """Eq. 4 with the sign of its intent: L_ent = c · f(t) · H(p), penalizing *high* entropy.

    The printed Eq. 4 (c·f(t)·Σ p ln p) would raise entropy when minimized; the text says the term
    penalizes excessive use of insignificant choices, so we minimize +H. ``reduction`` averages (default)
    or sums the per-cell entropies; ``scale`` is f(t).
    """
    total = None
    for name, (probs, valid) in model.arch_distributions().items():
        c = coefficient_for(name, c_alpha, c_beta)
        if c == 0.0:
            continue
        h = entropy(probs, valid)
        term = c * (h.mean() if reduction == "mean" else h.sum())
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total * scale


def max_entropy(num_choices: int) -> float:
    return math.log(num_choices) if num_choices > 1 else 0.0

"""E[cost] and the exact cost of a grid-like space's fused network, from its cost table (any space whose cells
each take a β̂-weighted sum over incoming *slots* ``(d, Δ)``: from the cell ``d`` layers back, ``Δ`` levels
away; the grid's slots are ``topology.EDGE_SLOTS``, the dense space's reach further).

**E[cost]** is the expected cost of the network obtained by *sampling* one incoming edge per cell with
probability β̂ and one kernel per cell with probability α̂, independently — the decoding the two-stage
baseline uses with argmax instead of sampling, so that for a one-hot architecture E[cost] is exactly the
cost of its fused network. FBNet (Wu et al. 2019) and ProxylessNAS (Cai et al. 2019) weight each layer's
candidate costs by the candidates' probabilities, every layer always present; FasterSeg (Chen et al. 2020)
weights a cell's latency by the probability that the sampled path passes through it. A grid needs the
second: a cell feeds the head only if some live cell downstream picks the edge from it, and the fused
network drops the others. So a cell's kernel cost counts with α̂ × P(cell live), an edge's cost with
β̂ × P(its cell live), a stem branch's with P(live).

P(live) is computed exactly, not by assuming cells independent. Going from the head (every cell of the last
layer is live) back to the stem, the state is the live set of the current layer together with the cells of
the ``k`` layers before it already picked by the layers processed so far (``k``: the longest reach); each
live cell's pick adds one source to it. The state's distribution (2^(levels·(k+1)) values: 256 for the grid,
4096 for a dense space reaching 2 layers back) is carried layer by layer; each step is a sum of products of
probabilities, so E[cost] is differentiable in α and β.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

from ssnas.cost.table import CostTable
from ssnas.errors import UserError

MAX_STATE_BITS = 16      # 2^16 states: a reach of k = 3 layers over 4 levels; beyond, the state is too large


def check_reach(levels: int, slots, key: str = "model.options.k") -> None:
    """One line when the exact E[cost] would need more than 2^MAX_STATE_BITS states."""
    k = max(d for d, _ in slots)
    if levels * (k + 1) > MAX_STATE_BITS:
        raise UserError(f"{key}: {k}, cost-aware search computes E[cost] exactly over the live cells of k + 1 "
                        f"layers (2^{levels * (k + 1)} states here), expected k <= {MAX_STATE_BITS // levels - 1}")


class _Walk:
    """Constants of the walk over live-set states: bits [w·n, (w+1)·n) hold the cells of the layer w back."""

    def __init__(self, levels: int, slots: tuple, dtype, device):
        n, k = levels, max(d for d, _ in slots)
        N = 2 ** (n * (k + 1))
        states = torch.arange(N, device=device)
        self.member = ((states.unsqueeze(1) >> torch.arange(n, device=device)) & 1).to(dtype)   # (N, n): layer 0
        self.on = self.member.T.bool()                                                        # (n, N)
        # target[c, s]: the state after live cell c picks slot s (itself where s leaves the grid: β̂ = 0 there)
        target = states.repeat(n, len(slots), 1)
        for c in range(n):
            for s, (d, off) in enumerate(slots):
                if 0 <= c + off < n:
                    target[c, s] = states | (1 << (d * n + c + off))
        self.target = target
        self.shift = states >> n           # one layer down: the current layer's bits leave the state
        self.N, self.n = N, n


@functools.lru_cache(maxsize=16)
def _walk(levels: int, slots: tuple, dtype, device: str) -> _Walk:
    check_reach(levels, slots)         # once per (space, dtype, device): the walk is cached
    return _Walk(levels, slots, dtype, device)


def live_probabilities(b_hat: Tensor, slots) -> tuple[Tensor, Tensor]:
    """(P(cell (l, i) live) of shape (L, levels), P(stem branch i live) of shape (levels,)) when every cell
    samples one incoming slot by β̂ (the module docstring). ``b_hat``: (L, levels, len(slots)), 0 on slots
    that do not exist (from before the stem or outside the grid)."""
    L, levels = b_hat.shape[:2]
    slots = tuple(tuple(s) for s in slots)
    w = _walk(levels, slots, b_hat.dtype, str(b_hat.device))
    p = torch.zeros(w.N, dtype=b_hat.dtype, device=b_hat.device)
    p[2 ** levels - 1] = 1.0           # the last layer: every cell live
    rows = []
    for l in reversed(range(L)):
        rows.append(p @ w.member)
        for c in range(levels):
            picked = (p * w.on[c]) * b_hat[l, c].unsqueeze(1)                   # (slots, N)
            p = (p * ~w.on[c]).index_add(0, w.target[c].flatten(), picked.flatten())
        p = torch.zeros_like(p).index_add(0, w.shift, p)
    return torch.stack(rows[::-1]), p @ w.member


def expected_cost(t: dict, a_hat: Tensor, b_hat: Tensor, slots) -> Tensor:
    """E[cost] of the fused network sampled by α̂ (kernels) and β̂ (edges); ``t``: ``CostTable.tensors()``.

    E = head + Σ_i P(stem i live)·stem_i
          + Σ_{l,i} P(cell l,i live)·(cell + Σ_k α̂_k·op_k + Σ_s β̂_s·edge_s).
    Computed in the table's dtype (float64 by default: FLOP counts exceed float32's exact integers)."""
    a_hat, b_hat = a_hat.to(t["ops"].dtype), b_hat.to(t["edges"].dtype)
    live, stem = live_probabilities(b_hat, slots)
    per_cell = t["cell"] + (a_hat * t["ops"]).sum(-1) + (b_hat * t["edges"]).sum(-1)
    return t["head"] + (stem * t["stem"]).sum() + (live * per_cell).sum()


def kept_choices(model) -> tuple[Tensor, Tensor]:
    """(edges kept, kernels kept) as the fold sees them: masked in and with a nonzero β̂ / α̂."""
    with torch.no_grad():
        return ((model.beta_hat() != 0) & model.edge_mask).cpu(), ((model.alpha_hat() != 0) & model.op_mask).cpu()


def conv_group(slot) -> int:
    """Which of a fused cell's edge convs the slot ``(d, Δ)`` feeds: 0 for the one over its own and finer levels
    (pooled to its resolution, concatenated), Δ for the one at the coarser level Δ levels up."""
    return max(0, slot[1])


def discrete_cost(table: CostTable, edge_on: Tensor, op_kept: Tensor, slots) -> float:
    """The exact cost of the fused network of a supernet whose kept edges and kernels are ``edge_on``
    (L, levels, slots) and ``op_kept`` (L, levels, K): the parts the fold keeps (live cells, their kept
    edges, the largest kept kernel or, for the output mixture, every kept kernel's block), summed from the
    table. Edges that share one conv (:func:`conv_group`) save ``merge`` per edge beyond the first."""
    from ssnas.space.fused import live_cells

    kernels = list(table.space["kernel_sizes"])
    output = table.space.get("mixture", "kernel") == "output"
    live = live_cells(edge_on, slots)
    total = table.head + sum(c for c, on in zip(table.stem, live[0]) if on)
    L, levels = edge_on.shape[:2]
    for l in range(L):
        for i in range(levels):
            if not live[l + 1][i]:
                continue
            js = [j for j in range(edge_on.shape[2]) if edge_on[l, i, j]]
            groups = {conv_group(slots[j]) for j in js}
            total += table.cell[l][i] + sum(table.edges[l][i][j] for j in js) - (len(js) - len(groups)) * table.merge[l][i]
            ks = [k for k in range(len(kernels)) if op_kept[l, i, k]]
            if output:
                total += sum(table.ops[l][i][k] for k in ks)
            elif ks:
                total += table.ops[l][i][max(ks, key=lambda k: kernels[k])]
    return float(total)

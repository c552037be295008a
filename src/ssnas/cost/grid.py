"""Costs of the grid supernet (§3.1): its per-candidate table, the expected cost E[cost] and the exact cost of
a discretized (masked) supernet's fused network.

**The table** is counted on the fused form of every candidate at once: one :class:`FusedSegNet` on the
``meta`` device in which every cell is live, every valid edge is kept as its own conv and every kernel size
is a block of its own; the FLOP counter (and the parameter count) of each of its modules is the cost of
that candidate: ``stem.i``, ``layers.l.i.fine.n`` / ``layers.l.i.up`` (edges), ``layers.l.i.blocks.k``
(kernels), ``head_fuse`` + ``classifier`` (head). Nothing is hand-written, so a change to the fused
modules changes the table with them.

**E[cost]** is the expected cost of the network obtained by *sampling* one incoming edge per cell with
probability β̂ and one kernel per cell with probability α̂, independently — the decoding the two-stage
baseline uses with argmax instead of sampling, so that for a one-hot architecture E[cost] is exactly the
cost of its fused network. FBNet (Wu et al. 2019) and ProxylessNAS (Cai et al. 2019) weight
each layer's candidate costs by the candidates' probabilities, every layer always present; FasterSeg
(Chen et al. 2020) weights a cell's latency by the probability that the sampled path passes through
it. The grid needs the second: a cell feeds the head only if some live cell of the next layer picks the
edge from it, and the fused network drops the others. So a cell's kernel cost counts with α̂ × P(cell
live), an edge's cost with β̂ × P(its cell live), a stem branch's with P(live). P(live) is computed exactly
(not by assuming cells independent): the set of live cells of a layer is a Markov chain from the head
(every level of the last layer is live) back to the stem, over the 2^levels subsets of a layer's cells
(16 for 4 levels); the transition from a layer's live set is the union of its cells' sampled sources.
Every step is a product of probabilities, so E[cost] is differentiable in α and β.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from ssnas.cost.table import CostTable
from ssnas.errors import UserError
from ssnas.space.base import FUSED_FORMAT as FORMAT
from ssnas.space.base import FUSED_VERSION as VERSION
from ssnas.space.fused import FusedSegNet, live_cells
from ssnas.space.topology import DOWN, EDGE_SLOTS, SAME, UP
from ssnas.space.backbone import EDGE_OFFSETS
from ssnas.space.operations import SqueezeExcite

COUNTED = ("flops", "params")


# ---------------------------------------------------------------------------- the table
def complete_spec(model, merge_edges: bool = False) -> dict:
    """The fused spec holding every candidate once: all cells live, all valid edges, a block per kernel."""
    cfg = model.cfg
    widths = cfg.widths
    levels = len(widths)
    cells = []
    for l in range(cfg.layers):
        row = []
        for i in range(levels):
            cell = model.backbone.cells[l][i]
            ops = list(cell.ops) * (len(cfg.kernel_sizes) if cell.mixture == "kernel" else 1)
            blocks = [dict(kernel=int(k), hidden=int(op.dw.weights[0].shape[0]),
                           squeeze_excite=isinstance(op.se, SqueezeExcite))
                      for k, op in zip(cfg.kernel_sizes, ops)]
            edges = [j for j, off in enumerate(EDGE_OFFSETS) if 0 <= i + off < levels]
            row.append(dict(edges=edges, op_channels=cell.op_channels, blocks=blocks))
        cells.append(row)
    return dict(format=FORMAT, version=VERSION, in_channels=cfg.in_channels, num_classes=cfg.num_classes,
                widths=list(widths), head_channels=cfg.head_channels, merge_edges=merge_edges,
                stem=list(range(levels)), cells=cells)


def _module_costs(spec: dict, metric: str, input_size) -> dict:
    """Cost of every module of ``FusedSegNet(spec)``, by its dotted name (built and run on ``meta``)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = FusedSegNet(spec).eval()
    if metric == "params":
        out: dict = {}
        for name, p in net.named_parameters():
            parts = name.split(".")
            for d in range(1, len(parts)):
                out[".".join(parts[:d])] = out.get(".".join(parts[:d]), 0) + p.numel()
        return out
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        net(torch.empty(1, spec["in_channels"], *input_size, device="meta"))
    prefix = type(net).__name__ + "."
    return {k[len(prefix):]: sum(v.values()) for k, v in counter.get_flop_counts().items() if k.startswith(prefix)}


def count_table(model, metric: str, input_size) -> CostTable:
    """The FLOP or parameter table of ``model`` (a grid supernet) for one 1×C×H×W input (FLOPs)."""
    if metric not in COUNTED:
        raise UserError(f"cost.metric: {metric!r} is measured, not counted; give cost.table (ssnas profile --latency)")
    spec = complete_spec(model)
    c = _module_costs(spec, metric, input_size)
    # what merging the down and same edges into one conv saves: one bias (parameters); nothing in FLOPs (a
    # 1×1 conv's FLOPs are linear in its input channels), so the second count is skipped there (~2 s)
    merged = _module_costs(complete_spec(model, merge_edges=True), metric, input_size) if metric == "params" else {}
    L, levels, K = model.cfg.layers, len(spec["widths"]), len(model.cfg.kernel_sizes)
    edges = [[[0.0] * len(EDGE_OFFSETS) for _ in range(levels)] for _ in range(L)]
    ops = [[[0.0] * K for _ in range(levels)] for _ in range(L)]
    merge = [[0.0] * levels for _ in range(L)]
    for l in range(L):
        for i in range(levels):
            cell = spec["cells"][l][i]
            fine = [j for j in cell["edges"] if j != UP]
            for n, j in enumerate(fine):
                edges[l][i][j] = float(c.get(f"layers.{l}.{i}.fine.{n}", 0))
            if UP in cell["edges"]:
                edges[l][i][UP] = float(c.get(f"layers.{l}.{i}.up", 0))
            for k in range(K):
                ops[l][i][k] = float(c.get(f"layers.{l}.{i}.blocks.{k}", 0))
            if len(fine) > 1 and merged:   # the down and same edges as one conv: what merging saves
                merge[l][i] = sum(edges[l][i][j] for j in fine) - float(merged.get(f"layers.{l}.{i}.fine.0", 0))
    return CostTable(metric=metric, input_size=list(input_size),
                     head=float(c.get("head_fuse", 0) + c.get("classifier", 0)),
                     stem=[float(c.get(f"stem.{i}", 0)) for i in range(levels)], edges=edges, ops=ops,
                     cell=[[0.0] * levels for _ in range(L)], merge=merge, space=model.cfg.to_dict(),
                     measured={"how": "torch.utils.flop_counter" if metric == "flops" else "parameter count"})


# ---------------------------------------------------------------------------- E[cost]
class _Chain:
    """Constants of the live-set Markov chain over the 2^n subsets of a layer's n cells."""

    def __init__(self, levels: int, dtype, device):
        n, N = levels, 2 ** levels
        states = torch.arange(N)
        self.member = ((states.unsqueeze(1) >> torch.arange(n)) & 1).to(dtype=dtype, device=device)  # (N, n)
        self.inside = self.member.bool().T.unsqueeze(-1)                                             # (n, N, 1)
        # picks[c, j]: the (N, N) map "add the source of cell c's edge j to the set" (0 where j leaves the grid)
        picks = torch.zeros(n, len(EDGE_OFFSETS), N, N, dtype=dtype, device=device)
        for c in range(n):
            for j, off in enumerate(EDGE_OFFSETS):
                if 0 <= c + off < n:
                    picks[c, j, states, states | (1 << (c + off))] = 1.0
        self.picks = picks
        self.start = torch.zeros(N, N, dtype=dtype, device=device)
        self.start[:, 0] = 1.0
        self.full = torch.zeros(N, dtype=dtype, device=device)
        self.full[N - 1] = 1.0

    def transition(self, b_hat_layer: Tensor) -> Tensor:
        """T[S, S']: P(the sources that the live cells S pick are exactly S')."""
        d = self.start
        for c in range(b_hat_layer.shape[0]):
            g = torch.einsum("j,jab->ab", b_hat_layer[c], self.picks[c])
            d = torch.where(self.inside[c], d @ g, d)
        return d


_CHAINS: dict = {}


def _chain(levels: int, dtype, device) -> _Chain:
    key = (levels, dtype, str(device))
    if key not in _CHAINS:
        _CHAINS[key] = _Chain(levels, dtype, device)
    return _CHAINS[key]


def live_probabilities(b_hat: Tensor) -> tuple[Tensor, Tensor]:
    """(P(cell (l, i) live) of shape (L, levels), P(stem branch i live) of shape (levels,)) when every cell
    samples one incoming edge by β̂ (the module docstring)."""
    L, levels = b_hat.shape[:2]
    ch = _chain(levels, b_hat.dtype, b_hat.device)
    p = ch.full
    rows = []
    for l in reversed(range(L)):
        rows.append(p @ ch.member)
        p = p @ ch.transition(b_hat[l])
    return torch.stack(rows[::-1]), p @ ch.member


def expected_cost(t: dict, a_hat: Tensor, b_hat: Tensor) -> Tensor:
    """E[cost] of the fused network sampled by α̂ (kernels) and β̂ (edges); ``t``: ``CostTable.tensors()``.

    E = head + Σ_i P(stem i live)·stem_i
          + Σ_{l,i} P(cell l,i live)·(cell + Σ_k α̂_k·op_k + Σ_j β̂_j·edge_j).
    Computed in the table's dtype (float64 by default: FLOP counts exceed float32's exact integers)."""
    a_hat, b_hat = a_hat.to(t["ops"].dtype), b_hat.to(t["edges"].dtype)
    live, stem = live_probabilities(b_hat)
    per_cell = t["cell"] + (a_hat * t["ops"]).sum(-1) + (b_hat * t["edges"]).sum(-1)
    return t["head"] + (stem * t["stem"]).sum() + (live * per_cell).sum()


# ---------------------------------------------------------------------------- a discretized supernet
def kept_choices(model) -> tuple[Tensor, Tensor]:
    """(edges kept, kernels kept) as the fold sees them: masked in and with a nonzero β̂ / α̂."""
    with torch.no_grad():
        return ((model.beta_hat() != 0) & model.edge_mask).cpu(), ((model.alpha_hat() != 0) & model.op_mask).cpu()


def discrete_cost(table: CostTable, edge_on: Tensor, op_kept: Tensor, merge_edges: bool = True) -> float:
    """The exact cost of the fused network of a supernet whose kept edges and kernels are ``edge_on``
    (L, levels, 3) and ``op_kept`` (L, levels, K): the parts :func:`~ssnas.export.fuse.fuse_supernet`
    keeps (live cells, their kept edges, the largest kept kernel or, for the output mixture, every kept
    kernel's block), summed from the table."""
    kernels = list(table.space["kernel_sizes"])
    output = table.space.get("mixture", "kernel") == "output"
    live = live_cells(edge_on, EDGE_SLOTS)
    total = table.head + sum(c for c, on in zip(table.stem, live[0]) if on)
    L, levels = edge_on.shape[:2]
    for l in range(L):
        for i in range(levels):
            if not live[l + 1][i]:
                continue
            js = [j for j in range(edge_on.shape[2]) if edge_on[l, i, j]]
            total += table.cell[l][i] + sum(table.edges[l][i][j] for j in js)
            if merge_edges and DOWN in js and SAME in js:
                total -= table.merge[l][i]
            ks = [k for k in range(len(kernels)) if op_kept[l, i, k]]
            if output:
                total += sum(table.ops[l][i][k] for k in ks)
            elif ks:
                total += table.ops[l][i][max(ks, key=lambda k: kernels[k])]
    return float(total)

"""DARTS genotypes, the DARTS and RobustDARTS S1–S4 search spaces as data, and genotype derivation.

A cell has two inputs (c_{k-2}, c_{k-1}) and ``steps`` intermediate nodes; node ``i`` takes one edge from every
earlier state, so with 4 nodes there are 2+3+4+5 = 14 edges, numbered in DARTS's order (node 0's edges from
inputs 0, 1 are edges 0-1; node 1's are 2-4; node 2's 5-8; node 3's 9-13). A *space* gives, per cell type, the
candidate op list of each edge; the list order is the α column order.
"""
from __future__ import annotations

from collections import namedtuple
from itertools import combinations
from typing import Dict, List, Sequence, Tuple

import torch

from ssnas.errors import UserError

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
"""``normal``/``reduce``: list of ``(op name, input state index)``, two per node; ``*_concat``: states concatenated
into the cell output (the intermediate nodes, 2..steps+1)."""

PRIMITIVES: Tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""DARTS's eight candidate ops, in DARTS's α column order."""

NONE_OP = "none"
DARTS_STEPS = 4
INPUTS_PER_NODE = 2  # DARTS keeps two incoming edges per node when discretising
CELL_TYPES = ("normal", "reduce")


def num_edges(steps: int = DARTS_STEPS) -> int:
    """Number of mixed edges of a cell with ``steps`` intermediate nodes (14 for DARTS)."""
    return sum(2 + i for i in range(steps))


def edge_index(node: int, source: int) -> int:
    """DARTS edge number of the edge into intermediate ``node`` from state ``source`` (0, 1 = cell inputs)."""
    return sum(2 + i for i in range(node)) + source


def node_pairs(node: int) -> List[Tuple[int, int]]:
    """DOTS's candidate input pairs of intermediate ``node``: all 2-subsets of its ``node + 2`` inputs."""
    return list(combinations(range(node + 2), INPUTS_PER_NODE))


_ABBREVIATIONS = {
    "skip": "skip_connect",
    "sep3": "sep_conv_3x3",
    "dil3": "dil_conv_3x3",
    "dil5": "dil_conv_5x5",
    "max": "max_pool_3x3",
    "avg": "avg_pool_3x3",
    "none": "none",
    "noise": "noise",
}

# RobustDARTS's S1 (design-notes §2, from its published spaces.py): a fixed op pair per edge, DARTS edge order.
_S1 = {
    "normal": [
        ("skip", "dil3"), ("skip", "dil5"),
        ("skip", "dil5"), ("skip", "sep3"), ("skip", "dil3"),
        ("max", "skip"), ("skip", "sep3"), ("skip", "sep3"), ("skip", "dil3"),
        ("skip", "sep3"), ("max", "skip"), ("skip", "dil3"), ("dil3", "dil5"), ("dil3", "dil5"),
    ],
    "reduce": [
        ("max", "avg"), ("max", "dil3"),
        ("max", "avg"), ("max", "avg"), ("skip", "dil5"),
        ("max", "avg"), ("max", "sep3"), ("skip", "dil3"), ("skip", "dil5"),
        ("max", "avg"), ("max", "avg"), ("skip", "dil5"), ("skip", "dil5"), ("skip", "dil5"),
    ],
}


def _expand(rows: Sequence[Sequence[str]]) -> List[List[str]]:
    return [[_ABBREVIATIONS[op] for op in row] for row in rows]


def _uniform(ops: Sequence[str]) -> Dict[str, List[List[str]]]:
    """A space with the same op list on every edge of both cell types."""
    return {cell: _expand([ops] * num_edges()) for cell in CELL_TYPES}


SPACES: Dict[str, Dict[str, List[List[str]]]] = {
    "darts": {cell: [list(PRIMITIVES) for _ in range(num_edges())] for cell in CELL_TYPES},
    "s1": {cell: _expand(rows) for cell, rows in _S1.items()},
    "s2": _uniform(("skip", "sep3")),
    "s3": _uniform(("none", "skip", "sep3")),
    "s4": _uniform(("noise", "sep3")),
}


def get_space(name: str) -> Dict[str, List[List[str]]]:
    """The per-edge op lists of search space ``name`` (a key of :data:`SPACES`)."""
    if name not in SPACES:
        raise UserError(f"darts space: unknown space {name!r}, expected one of {sorted(SPACES)}")
    return SPACES[name]


def _best_op(probs: torch.Tensor, ops: Sequence[str]) -> Tuple[float, str]:
    """Strongest non-``none`` op of one edge (DARTS never picks ``none``)."""
    candidates = [(float(probs[k]), op) for k, op in enumerate(ops) if op != NONE_OP]
    return max(candidates, key=lambda c: c[0])


def derive_cell(probs: torch.Tensor, edge_ops: Sequence[Sequence[str]],
                steps: int = DARTS_STEPS) -> List[Tuple[str, int]]:
    """DARTS's rule: per node keep the 2 incoming edges whose best non-``none`` op weight is largest,
    each with that op. ``probs`` is the (edges, K) softmax of α. Ties go to the lower input index."""
    genes = []
    for node in range(steps):
        scored = [(_best_op(probs[edge_index(node, src)], edge_ops[edge_index(node, src)]), src)
                  for src in range(node + 2)]
        top = sorted(scored, key=lambda s: (-s[0][0], s[1]))[:INPUTS_PER_NODE]
        genes += [(op, src) for (_, op), src in sorted(top, key=lambda s: s[1])]
    return genes


def derive_cell_dots(probs: torch.Tensor, edge_ops: Sequence[Sequence[str]], pair_probs: Sequence[torch.Tensor],
                     steps: int = DARTS_STEPS) -> List[Tuple[str, int]]:
    """DOTS's rule: per node the input pair with the largest topology probability (``pair_probs[node]`` over
    :func:`node_pairs`), each edge with its best non-``none`` op."""
    genes = []
    for node in range(steps):
        pair = node_pairs(node)[int(torch.argmax(pair_probs[node]))]
        genes += [(_best_op(probs[edge_index(node, src)], edge_ops[edge_index(node, src)])[1], src) for src in pair]
    return genes


def concat_states(steps: int = DARTS_STEPS) -> List[int]:
    """States concatenated into a cell's output: its intermediate nodes."""
    return list(range(2, steps + 2))

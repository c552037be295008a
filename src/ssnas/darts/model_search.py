"""DARTS's search network over a (RobustDARTS) search space, optionally with DOTS's decoupled topology.

It implements the same engine contract as the segmentation supernet (``arch_parameters``/``weight_parameters``,
``arch_distributions``, ``freeze_architecture``, ``genotype``) so one training engine searches both.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.darts.genotypes import (CELL_TYPES, DARTS_STEPS, Genotype, concat_states, derive_cell, derive_cell_dots,
                                   edge_index, get_space, node_pairs, num_edges)
from ssnas.darts.operations import FactorizedReduce, ReLUConvBN, build_operation
from ssnas.errors import UserError

ARCH_INIT_SCALE = 1e-3  # DARTS initialises α ~ 1e-3·N(0, 1): a near-uniform mixture
DOTS_TEMPERATURE_START = 10.0
DOTS_TEMPERATURE_END = 0.02
TOPOLOGIES = ("none", "dots")


def dots_temperature(progress: float, start: float = DOTS_TEMPERATURE_START, end: float = DOTS_TEMPERATURE_END) -> float:
    """DOTS's annealing: exponential decay from ``start`` (progress 0) to ``end`` (progress 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return start * (end / start) ** progress


class MixedOp(nn.Module):
    """One edge: the α-weighted sum of its candidate ops (DARTS's continuous relaxation)."""

    def __init__(self, C: int, stride: int, op_names: Sequence[str]):
        super().__init__()
        self.op_names = list(op_names)
        self.ops = nn.ModuleList(build_operation(name, C, stride) for name in op_names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class SearchCell(nn.Module):
    """A DARTS cell: ``steps`` nodes, each the sum of its mixed edges from all earlier states."""

    def __init__(self, steps: int, multiplier: int, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool, edge_ops: Sequence[Sequence[str]]):
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = (FactorizedReduce(C_prev_prev, C) if reduction_prev
                            else ReLUConvBN(C_prev_prev, C, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        self.edges = nn.ModuleList()
        for node in range(steps):
            for src in range(node + 2):
                stride = 2 if reduction and src < 2 else 1
                self.edges.append(MixedOp(C, stride, edge_ops[edge_index(node, src)]))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """``weights``: (edges, K) op mixture; ``edge_weights[node]``: DOTS weight of each of its inputs."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.steps):
            terms = []
            for src, h in enumerate(states):
                e = edge_index(node, src)
                out = self.edges[e](h, weights[e])
                terms.append(out if edge_weights is None else edge_weights[node][src] * out)
            states.append(sum(terms))
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSearchNetwork(nn.Module):
    """DARTS's CIFAR search network: stem, ``layers`` cells (reduction at 1/3 and 2/3 depth), pooled classifier.

    α_normal and α_reduce have shape (14, K), K = ops per edge of ``space``. With ``topology="dots"`` each cell
    type also has 20 topology logits, one per input pair of each node (1+3+6+10); a node's pair distribution is
    ``softmax(logits / T)`` and an edge's weight is the summed probability of the pairs that contain it.
    """

    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8, space: str = "darts",
                 steps: int = DARTS_STEPS, multiplier: int = 4, stem_multiplier: int = 3, in_channels: int = 3,
                 topology: str = "none", dots_temperature: float = DOTS_TEMPERATURE_START):
        super().__init__()
        if topology not in TOPOLOGIES:
            raise UserError(f"darts topology: unknown value {topology!r}, expected one of {list(TOPOLOGIES)}")
        if steps != DARTS_STEPS:
            raise UserError(f"darts steps: {steps} given, expected {DARTS_STEPS} (the spaces define 14 edges)")
        self.space_name, self.steps, self.multiplier, self.topology = space, steps, multiplier, topology
        self.space = get_space(space)
        widths = {len(ops) for cell in CELL_TYPES for ops in self.space[cell]}
        if len(widths) != 1:
            raise ValueError(f"space {space!r} mixes edges with {sorted(widths)} ops; all edges must have the same")
        self.num_ops = widths.pop()
        self.arch_frozen = False
        self.temperature = dots_temperature

        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell_type = "reduce" if reduction else "normal"
            self.cells.append(SearchCell(steps, multiplier, C_prev_prev, C_prev, C_curr, reduction, reduction_prev,
                                         self.space[cell_type]))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.classifier = nn.Linear(C_prev, num_classes)

        n_edges = num_edges(steps)
        self.alpha_normal = nn.Parameter(ARCH_INIT_SCALE * torch.randn(n_edges, self.num_ops))
        self.alpha_reduce = nn.Parameter(ARCH_INIT_SCALE * torch.randn(n_edges, self.num_ops))
        self.pairs = [node_pairs(node) for node in range(steps)]
        if topology == "dots":
            n_pairs = sum(len(p) for p in self.pairs)
            self.topology_normal = nn.Parameter(ARCH_INIT_SCALE * torch.randn(n_pairs))
            self.topology_reduce = nn.Parameter(ARCH_INIT_SCALE * torch.randn(n_pairs))
        for node, pairs in enumerate(self.pairs):  # incidence[pair, input] = 1 if the pair contains the input
            incidence = torch.zeros(len(pairs), node + 2)
            for p, pair in enumerate(pairs):
                incidence[p, list(pair)] = 1.0
            self.register_buffer(f"incidence_{node}", incidence, persistent=False)

    # --- architecture -------------------------------------------------------------------------------------
    def arch_parameters(self) -> List[nn.Parameter]:
        params = [self.alpha_normal, self.alpha_reduce]
        if self.topology == "dots":
            params += [self.topology_normal, self.topology_reduce]
        return params

    def weight_parameters(self) -> List[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def set_topology_temperature(self, temperature: float) -> None:
        """Set DOTS's softmax temperature (see :func:`dots_temperature` for the annealing schedule)."""
        if not temperature > 0:
            raise UserError(f"dots temperature: {temperature} given, expected a positive number")
        self.temperature = float(temperature)

    def pair_probabilities(self, cell_type: str) -> List[torch.Tensor]:
        """Per node, the tempered softmax over its input pairs (DOTS)."""
        logits = getattr(self, f"topology_{cell_type}")
        sizes = [len(p) for p in self.pairs]
        return [F.softmax(chunk / self.temperature, dim=-1) for chunk in torch.split(logits, sizes)]

    def edge_weights(self, cell_type: str) -> List[torch.Tensor]:
        """Per node, each input's weight = sum of the probabilities of the pairs containing it (sums to 2)."""
        return [p @ getattr(self, f"incidence_{node}")
                for node, p in enumerate(self.pair_probabilities(cell_type))]

    def arch_distributions(self) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
        """name → (probabilities (N, K), valid (N, K) bool) of every architecture distribution."""
        out = {}
        for cell_type in CELL_TYPES:
            probs = F.softmax(getattr(self, f"alpha_{cell_type}"), dim=-1)
            out[f"alpha_{cell_type}"] = (probs, torch.ones_like(probs, dtype=torch.bool))
        if self.topology == "dots":
            max_pairs = max(len(p) for p in self.pairs)
            for cell_type in CELL_TYPES:
                rows = self.pair_probabilities(cell_type)
                probs = torch.stack([F.pad(r, (0, max_pairs - r.numel())) for r in rows])
                valid = torch.zeros(len(rows), max_pairs, dtype=torch.bool, device=probs.device)
                for node, r in enumerate(rows):
                    valid[node, :r.numel()] = True
                out[f"topology_{cell_type}"] = (probs, valid)
        return out

    def freeze_architecture(self) -> None:
        for p in self.arch_parameters():
            p.requires_grad_(False)
        self.arch_frozen = True

    def genotype(self) -> Genotype:
        cells = {}
        with torch.no_grad():
            for cell_type in CELL_TYPES:
                probs = F.softmax(getattr(self, f"alpha_{cell_type}"), dim=-1).cpu()
                if self.topology == "dots":
                    pairs = [p.cpu() for p in self.pair_probabilities(cell_type)]
                    cells[cell_type] = derive_cell_dots(probs, self.space[cell_type], pairs, self.steps)
                else:
                    cells[cell_type] = derive_cell(probs, self.space[cell_type], self.steps)
        concat = concat_states(self.steps)
        return Genotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"], reduce_concat=concat)

    def describe_architecture(self) -> dict:
        """``architecture.json`` of a DARTS search: its genotype and the entropies of α."""
        from ssnas.arch import arch_entropies
        from ssnas.space.architecture import FORMAT, VERSION

        genotype = {k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, list) else list(v)
                    for k, v in self.genotype()._asdict().items()}
        return {"format": FORMAT, "version": VERSION, "space": "darts", "genotype": genotype,
                "entropy": arch_entropies(self)}

    # --- forward --------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = {c: F.softmax(getattr(self, f"alpha_{c}"), dim=-1) for c in CELL_TYPES}
        edges = {c: self.edge_weights(c) if self.topology == "dots" else None for c in CELL_TYPES}
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            cell_type = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[cell_type], edges[cell_type])
        out = F.adaptive_avg_pool2d(s1, 1).flatten(1)
        return self.classifier(out)


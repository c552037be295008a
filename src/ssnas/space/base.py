"""Search spaces as plug-ins: the ``SPACES`` registry and the protocol a space implements.

A search space is one file in ``src/ssnas/space/`` that registers a builder::

    @register_space("dense", fused=FusedDenseNet)
    def build(variant="small", num_classes=19, **overrides) -> DenseSuperNet: ...

``variant`` is a variant name (``configs/variants/<name>.yaml``, see :func:`~ssnas.space.variants.load_variant`),
a dict of the space's hyperparameters (a checkpoint's ``space`` record) or the space's own config object;
``overrides`` are the non-None ``model.*`` keys of the experiment config plus its free-form ``model.options``
(the space validates them: an unknown key is a one-line UserError). ``fused`` is the class that rebuilds the
space's fused network from its ``spec`` (``load_fused``); a spec without ``"space"`` is the grid's. Optional
``meta``: ``tiny`` — ``create_model`` keyword arguments of a tiny instance (the registry-wide tests build it
at 64×64), ``check_checkpoint(space, state, path)`` — a cheap check of a checkpoint's record against its
tensors before anything is built.

Everything the engine, the studies, ``export`` and ``profile`` need from a model is :class:`SearchSpace`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, Tuple, runtime_checkable

import torch
from torch import Tensor, nn

from ssnas.arch import keep_strongest, prune_weakest
from ssnas.errors import UserError
from ssnas.registry import Registry

DEFAULT_SPACE = "grid"   # the paper's space; a checkpoint or fused spec that names none is a grid
FUSED_FORMAT, FUSED_VERSION = "ssnas-fused", 1   # the header of a fused network's spec and file

SPACES = Registry("search space", packages=("ssnas.space",), key="model.space", default=DEFAULT_SPACE)


def register_space(name: str, fused: Optional[type] = None, **meta):
    """Decorator registering a space's builder (see the module docstring)."""
    return SPACES.register(name, fused=fused, **meta)


def list_spaces() -> List[str]:
    return SPACES.names()


@runtime_checkable
class SearchSpace(Protocol):
    """What a searchable segmentation supernet provides (the grid ``SuperNet`` is the reference).

    Architecture (Eq. 2-3, §3.2): α/β-like parameters apart from the weights, their normalized
    distributions for the entropies and Eq. 4, and a flag freezing them for the fine-tune phase.
    Discretization (the studies): masks that keep the strongest choices. Deployment: ``fuse()`` folds the
    trained supernet into a plain network with the same eval-mode logits. Cost: ``cost_groups()`` names the
    modules ``profile`` counts per component.
    """

    space_name: str          # the registered name (written into checkpoints)
    cfg: Any                 # the space's hyperparameters: ``in_channels``, ``num_classes``, ``to_dict()``

    def arch_parameters(self) -> List[nn.Parameter]:
        """The architecture parameters (updated by Adam on batches from B)."""

    def weight_parameters(self) -> List[nn.Parameter]:
        """Everything else that trains (SGD on batches from A)."""

    def arch_distributions(self) -> Dict[str, Tuple[Tensor, Tensor]]:
        """name → (probs (N, K), valid (N, K) bool), one row per decision; names starting with ``alpha`` are
        operation-level (entropy coefficient c_alpha), the others edge-level (c_beta)."""

    @property
    def arch_frozen(self) -> bool: ...

    def freeze_architecture(self) -> None: ...

    def unfreeze_architecture(self) -> None: ...

    def arch_state_keys(self) -> Tuple[str, ...]:
        """The state-dict entries that are the architecture (parameters and masks): what
        ``model.architecture_from`` copies into a freshly initialized network."""

    def discretize(self, edges_per_cell: Optional[int] = 1, ops: bool = True) -> None:
        """Keep the top ``edges_per_cell`` incoming edges of every cell and (``ops``) its top operation."""

    def prune_edges(self, fraction: float) -> int:
        """Drop that fraction of the kept edges with the weakest weights; returns how many were dropped."""

    def num_edges(self) -> int:
        """The edges currently kept."""

    def fuse(self, **options) -> nn.Module:
        """The deployable network (eval-mode logits equal to the supernet's), with a JSON-able ``spec``
        (``spec["space"]`` = ``space_name``, ``spec["in_channels"]``, ``spec["num_classes"]``) from which the
        registered ``fused`` class rebuilds it (``cls(spec)`` then ``load_state_dict``), and ``num_edges()``."""

    def cost_groups(self) -> Dict[str, str]:
        """Module name (as in ``named_modules``) → component, for ``profile``: each named module's FLOPs and
        parameters are counted once under its component; parameters outside every group are ``arch``."""

    def describe_architecture(self) -> dict:
        """The searched architecture as JSON-able data (``architecture.json``)."""

    def architecture_graph(self) -> dict:
        """The architecture as a weighted graph over (layer, level) for the run's ``architecture.png``
        (``engine/plots.py`` draws any space from it): ``layers``, ``levels`` (row labels, finest first),
        ``edges`` [[from_layer, from_level, layer, level, weight, kept]] (layer 0 is the stem), optional
        ``op_labels`` and ``ops`` [[layer, level, [weight per op label]]], ``path`` [[layer, level]] (the
        strongest path) and ``text`` (lines printed under the plot)."""

    def forward(self, x: Tensor) -> Tensor: ...


class ArchitectureMixin:
    """The architecture bookkeeping every space shares (one implementation): ``alpha``/``beta`` apart from the
    weights, discretization and pruning on the ``edge_mask``/``op_mask`` buffers, and the ``frozen`` buffer of
    the fine-tune phase. ``frozen`` is in the state dict, so a resumed fine-tune stays frozen: loading re-applies
    it to ``requires_grad``. A space registers ``alpha``, ``beta`` and the ``edge_mask``, ``op_mask`` and
    ``frozen`` (a 0-d bool tensor) buffers in its ``__init__``."""

    def arch_parameters(self) -> List[nn.Parameter]:
        return [self.alpha, self.beta]

    def weight_parameters(self) -> List[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    @property
    def arch_frozen(self) -> bool:
        return bool(self.frozen)

    def freeze_architecture(self) -> None:
        """Fine-tune phase: α, β stop receiving gradients (and are never stepped)."""
        self.frozen.fill_(True)
        self._apply_frozen_flag()

    def unfreeze_architecture(self) -> None:
        self.frozen.fill_(False)
        self._apply_frozen_flag()

    def _apply_frozen_flag(self) -> None:
        """Keep requires_grad in line with the ``frozen`` buffer (after freezing or loading a state dict)."""
        for p in self.arch_parameters():
            p.requires_grad_(not self.arch_frozen)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._apply_frozen_flag()
        return result

    # ----------------------------------------------------------------- discretization (every space's rule)
    def discretize(self, edges_per_cell: Optional[int] = 1, ops: bool = True) -> None:
        """Keep the top ``edges_per_cell`` incoming edges of every cell by β̂ (None: all; a cell with fewer keeps
        all of its own) and, if ``ops``, the cell's operations by ``_top_ops``. Masked choices get weight 0;
        the rest are renormalized. More edges than any cell of the space has is a typo, not "keep all": one
        line, in every space alike."""
        with torch.no_grad():
            if edges_per_cell is not None:
                most = self.edge_mask.shape[-1]
                if not 1 <= edges_per_cell <= most:
                    raise UserError(f"model.discretize_edges: {edges_per_cell}, expected 1 to {most} (the most "
                                    f"incoming edges a cell of this search space has)")
                self.edge_mask &= keep_strongest(self.edge_mask, self.beta_hat(), edges_per_cell)
            if ops:
                self.op_mask &= self._top_ops()

    def _top_ops(self) -> Tensor:
        """The operations ``discretize`` keeps, as a mask like ``op_mask``: each cell's top kernel by α̂."""
        return keep_strongest(self.op_mask, self.alpha_hat(), 1)

    def prune_edges(self, fraction: float) -> int:
        """§4.2: drop the ``fraction`` of kept edges with the weakest β̂ (ranked within their cell, the paper's
        approximation), never a cell's last one. Returns the number dropped."""
        with torch.no_grad():
            mask, dropped = prune_weakest(self.edge_mask, self.beta_hat(), fraction)
            self.edge_mask.copy_(mask)
        return dropped

    def num_edges(self) -> int:
        return int(self.edge_mask.sum())


@runtime_checkable
class CostAware(Protocol):
    """A space that cost-aware search (``cost/``, docs/cost-aware.md) and budgets can use: a table of what
    each candidate costs, the differentiable expectation of the fused network's cost under the architecture
    distribution, and the exact cost of the network as currently masked. Optional: a space without these
    methods searches and exports as usual, and ``cost.weight``/``cost.budget`` on it are a one-line error."""

    def cost_table(self, metric: str, input_size) -> Any:
        """The ``CostTable`` of ``metric`` (flops, params) per candidate, counted at ``input_size`` (H, W)."""

    def expected_cost(self, tensors: dict) -> Tensor:
        """E[cost] from ``CostTable.tensors()``, differentiable in the architecture parameters."""

    def discrete_cost(self, table: Any) -> float:
        """The exact cost, by ``table``, of the fused network of the model as currently masked."""


@runtime_checkable
class Fusable(Protocol):
    """A block that folds itself for deployment (timm's ``reparameterize``): ``fuse()`` returns a new module
    with the same eval-mode output (BatchNorm folded into the convolutions, fixed mixtures collapsed); the
    block itself is left unchanged. Blocks whose fold depends on the architecture take it as arguments
    (an inverted bottleneck's α̂, an edge's β̂)."""

    def fuse(self, *args, **kwargs) -> nn.Module: ...


def create_model(variant: Any = "small", space: str = DEFAULT_SPACE, **overrides) -> nn.Module:
    """Build a supernet of the registered ``space`` (timm's ``create_model``)::

        create_model("small", num_classes=19)            # the paper's grid, variant small
        create_model("small", space="dense", options...)  # another registered space
    """
    return SPACES.get(space)(variant, **overrides)


def fused_class(spec: dict) -> type:
    """The class that rebuilds a fused network from its ``spec`` (a spec naming no space is the grid's)."""
    name = spec.get("space", DEFAULT_SPACE) if isinstance(spec, dict) else DEFAULT_SPACE
    if name not in SPACES:
        raise UserError(f"its spec names the search space {name!r}, which this ssnas does not have (expected one "
                        f"of {', '.join(SPACES.names())})")
    cls = SPACES.entry(name).meta.get("fused")
    if cls is None:
        raise KeyError(f"search space {name!r} registers no fused network")
    return cls

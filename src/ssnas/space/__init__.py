"""Search spaces: the ``SPACES`` registry (``base.py``) and the paper's grid of §3.1 (``grid.py``: stem →
backbone grid of cells, Eq. 1-3 → prediction head). A new space is one registered module here."""
from ssnas.space.base import SPACES, SearchSpace, create_model, list_spaces, register_space
from ssnas.space.supernet import SpaceConfig, SuperNet
from ssnas.space.variants import list_variants, load_variant

__all__ = ["SPACES", "SearchSpace", "SpaceConfig", "SuperNet", "create_model", "list_spaces", "list_variants",
           "load_variant", "register_space"]

"""The search space of §3.1: stem → backbone grid of cells (Eq. 1-3) → prediction head."""
from ssnas.space.supernet import SpaceConfig, SuperNet
from ssnas.space.variants import create_model, list_variants, load_variant

__all__ = ["SpaceConfig", "SuperNet", "create_model", "list_variants", "load_variant"]

"""DARTS and RobustDARTS (S1-S4) search spaces with optional DOTS topology, for the paper's §4.5 / Fig. 4 study.

The search network implements the same engine contract as the segmentation supernet, so the one training
engine (``ssnas.engine``) searches both; the Hessian's dominant eigenvalue lives in ``ssnas.hessian``.
Datasets (``ssnas.darts.data``) and plotting (``ssnas.darts.plot``) are imported on demand: they pull in
matplotlib (and, for digits, scikit-learn).
"""
from ssnas.darts.genotypes import PRIMITIVES, SPACES, Genotype
from ssnas.darts.model_search import DartsSearchNetwork, dots_temperature

__all__ = ["PRIMITIVES", "SPACES", "DartsSearchNetwork", "Genotype", "dots_temperature"]

"""Auto-DeepLab (Liu et al., CVPR 2019) as an ssnas search space: its cell, network-level trellis, stem and
ASPP heads (``network``), the fused export (``fuse``), the published retrained networks (``retrained``), and
its registration as the search space ``autodeeplab`` (``builder``)."""
from ssnas.space.autodeeplab.builder import build_autodeeplab, list_variants
from ssnas.space.autodeeplab.cell import PRIMITIVES
from ssnas.space.autodeeplab.network import AutoDeepLab
from ssnas.space.autodeeplab.topology import AutoDeepLabConfig

__all__ = ["PRIMITIVES", "AutoDeepLab", "AutoDeepLabConfig", "build_autodeeplab", "list_variants"]

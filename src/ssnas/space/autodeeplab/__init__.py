"""Auto-DeepLab (Liu et al., CVPR 2019) as an ssnas search space: its cell, network-level trellis, stem and
ASPP heads (``network``), the fused export (``fuse``) and the published retrained networks (``retrained``)."""
from ssnas.space.autodeeplab.cell import PRIMITIVES
from ssnas.space.autodeeplab.network import AutoDeepLab, AutoDeepLabConfig

__all__ = ["PRIMITIVES", "AutoDeepLab", "AutoDeepLabConfig"]

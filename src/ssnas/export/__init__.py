"""Deployment of a trained supernet: fold it into a plain network, save it, export it to ONNX.

``fuse_supernet(model)`` → the space's fused network (``model.fuse()``; the grid's :class:`FusedSegNet`: same
eval-mode logits, no α/β); ``save_fused`` /
``load_fused`` write and read it as a weights-only torch file; ``export_onnx`` / ``check_onnx`` (in
``ssnas.export.onnx``, imported lazily: onnx is an optional dependency) write and verify an ONNX file.
"""
from ssnas.export.fuse import FusedSegNet, fuse_supernet, load_fused, save_fused

__all__ = ["FusedSegNet", "fuse_supernet", "load_fused", "save_fused"]

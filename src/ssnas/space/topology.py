"""The grid's topology, named once: its levels (strides) and the kinds of edge that enter a cell (§3.1).

Level i ∈ {0 .. LEVELS-1} has stride ``STEM_STRIDE · 2^i`` (4, 8, 16, 32). A cell at level i receives an edge
from level i-1 (stride s/2: ``DOWN``, downsampled), from level i (``SAME``) and from level i+1 (stride 2s:
``UP``, upsampled), in that order along β's last axis (``EDGE_OFFSETS``). Every other module reads these
names instead of a bare 3 or 4.
"""
from __future__ import annotations

LEVELS = 4                             # stride 4, 8, 16, 32
STEM_STRIDE = 4                        # the stride of level 0 (the stem's output)
OUTPUT_STRIDE = STEM_STRIDE * 2 ** (LEVELS - 1)   # the coarsest stride: inputs are padded to a multiple of it

EDGE_OFFSETS = (-1, 0, 1)              # source level - target level, per slot of β's last axis
EDGE_NAMES = ("down", "same", "up")    # from stride s/2 (finer), s, 2s (coarser)
DOWN, SAME, UP = range(len(EDGE_OFFSETS))
EDGE_KINDS = len(EDGE_OFFSETS)         # 3 incoming edge slots per cell (2 valid at the border levels)
EDGE_SLOTS = tuple((1, offset) for offset in EDGE_OFFSETS)   # (layers back, level offset): the previous layer only


def padded_size(size, multiple: int = OUTPUT_STRIDE) -> tuple[int, int]:
    """(H, W) rounded up to a multiple of the coarsest stride, so that every level's size halves exactly."""
    return tuple(int(n) + (-int(n)) % multiple for n in size)


def pad_to_stride(x, multiple: int = OUTPUT_STRIDE, always: bool = False):
    """``x`` zero-padded right and bottom to :func:`padded_size`; the caller crops its logits back with
    ``[..., :h, :w]``. ``always`` pads even by zero, so that a graph traced at one size (an exported network)
    stays valid for every size; otherwise an input already of that size is returned as is."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if (always or ph or pw) else x


def stride(level: int) -> int:
    """The output stride of ``level``."""
    return STEM_STRIDE * 2 ** level


def edge_source(level: int, slot: int, levels: int = LEVELS) -> int | None:
    """The level that edge ``slot`` of a cell at ``level`` comes from; None where it would leave the grid."""
    src = level + EDGE_OFFSETS[slot]
    return src if 0 <= src < levels else None


def slot_exists(layer: int, level: int, slot: tuple[int, int], levels: int = LEVELS) -> bool:
    """Whether the incoming slot ``(d, Δ)`` of the cell at (``layer``, ``level``) has a source: ``layer - d + 1
    >= 0`` (``layer`` counts cells from 0; 0 - 1 + 1 = 0 is the stem) and a level inside the grid."""
    d, off = slot
    return layer + 1 - d >= 0 and 0 <= level + off < levels


def slot_valid_mask(layers: int, levels: int, slots):
    """(layers, levels, len(slots)) bool: the slots that exist (:func:`slot_exists`)."""
    import torch

    return torch.tensor([[[slot_exists(l, i, s, levels) for s in slots] for i in range(levels)]
                         for l in range(layers)], dtype=torch.bool).reshape(layers, levels, len(slots))

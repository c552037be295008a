"""Auto-DeepLab's trellis, named once (Liu et al., CVPR 2019, §3.2): its levels, transitions, node widths and
the supernet's hyperparameters. Plain Python (no modules), so the supernet (``network.py``) and its fused form
(``fuse.py``) both read it without importing each other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ssnas.space.autodeeplab.cell import PRIMITIVES

LEVELS = 4
OUTPUT_STRIDE = 32                 # coarsest level; inputs are padded to a multiple of it
EDGE_OFFSETS = (-1, 0, 1)          # β's last axis: from level i-1 (stride s/2), i (s), i+1 (2s)
NORMALIZATIONS = ("outgoing", "incoming")


@dataclass
class AutoDeepLabConfig:
    """Hyperparameters of the Auto-DeepLab supernet (its search: L = 12, B = 5, F = 8)."""
    layers: int = 12
    filters: int = 8                        # F: block width at stride 4 (C_i = F·2^i)
    blocks: int = 5                         # B
    stem_channels: int = 64                 # the stem's widths: 64, 64, 128
    aspp_rate_base: int = 96                # the search ASPP's atrous rate at stride s: 96 / s
    beta_normalization: str = "outgoing"    # Auto-DeepLab Eq. 7
    primitives: tuple = field(default=PRIMITIVES)
    num_classes: int = 19
    in_channels: int = 3

    def widths(self) -> list[int]:
        return [self.filters * 2 ** i for i in range(LEVELS)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["primitives"] = list(self.primitives)
        return d


def levels_at(layer: int) -> range:
    """Levels present at ``layer`` (0 = the stem's stride-4 output)."""
    return range(min(layer, LEVELS - 1) + 1)


def transitions(layers: int) -> list:
    """[t][i][j] (plain bools): transition (t, i, j) into node (t+1, i) from node (t, i + EDGE_OFFSETS[j]) exists.
    Plain Python, so that a model can be built under ``torch.device("meta")``."""
    return [[[i in levels_at(t + 1) and (i + off) in levels_at(t) for off in EDGE_OFFSETS] for i in range(LEVELS)]
            for t in range(layers)]


def outgoing_index(layers: int) -> tuple[list, list]:
    """β in source-major order: ``index`` [t][k][m] into the flat destination-major β, and its validity.
    Row (t, k) lists the transitions out of node (t, k) to levels k-1, k, k+1; the one to level k + d is
    stored at destination (t, k + d), slot of offset -d."""
    valid_dst = transitions(layers)
    index = [[[0] * 3 for _ in range(LEVELS)] for _ in range(layers)]
    valid = [[[False] * 3 for _ in range(LEVELS)] for _ in range(layers)]
    for t in range(layers):
        for k in range(LEVELS):
            for m, d in enumerate(EDGE_OFFSETS):
                i, j = k + d, EDGE_OFFSETS.index(-d)
                if 0 <= i < LEVELS and valid_dst[t][i][j]:
                    index[t][k][m] = (t * LEVELS + i) * 3 + j
                    valid[t][k][m] = True
    return index, valid


def node_channels(cfg: AutoDeepLabConfig, layer: int, level: int) -> int:
    """Output channels of node (layer, level); layer 0 is the stem's stride-4 output, -1 its stride-2 one."""
    if layer == -1:
        return cfg.stem_channels
    if layer == 0:
        return 2 * cfg.stem_channels
    return cfg.blocks * cfg.widths()[level]


def prev_prev_level(layer: int, level: int) -> int:
    """The level of H^{l-2} used by node (layer, level): the same level, or the finest existing one."""
    return min(level, max(levels_at(max(layer - 2, 0))))


def aspp_rate(cfg: AutoDeepLabConfig, level: int) -> int:
    return max(1, cfg.aspp_rate_base // (4 * 2 ** level))

"""The published Auto-DeepLab networks, as retrained (Liu et al., CVPR 2019, Fig. 3 and Table 2).

The searched cell (Fig. 3, right; the released ``hnasnet``) and network path (Fig. 3, left: the level of each
of the 12 layers, 0 = stride 4 … 3 = stride 32) are data below. Auto-DeepLab-S/M/L differ only in the filter
multiplier F = 20/32/48 (``configs/autodeeplab/variants/retrained-{s,m,l}.yaml``). As in the released network:
- a cell's inputs are the previous two cells *of the path* (the stem's outputs for the first two);
- block width F·2^level, cell output 5 blocks concatenated; the width follows the path's level;
- "atrous" operations are dense 3×3 / 5×5 convolutions with rate 2 (ReLU-Conv-BN), "sep" ones DARTS's two
  stacked depthwise-separable convolutions; every BN is affine (a retrained network, not a search);
- DeepLabv3+'s head on the last cell (stride 8): ASPP with rates 12, 24, 36 and 256 channels, the decoder
  taking the last stride-4 cell of the path as its low-level features.
Resolution changes happen at the cell's inputs (``cell.Preprocess``) instead of by stride-2 operations: the
same multiply-adds for every convolution of the operations.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import Tensor, nn

from ssnas.ops import build_op
from ssnas.errors import UserError
from ssnas.space.autodeeplab.cell import Cell, Preprocess
from ssnas.space.autodeeplab.heads import DeepLabV3PlusHead, Stem, upsample_to
from ssnas.space.autodeeplab.topology import OUTPUT_STRIDE
from ssnas.space.topology import pad_to_stride

# Fig. 3: block b = op_1(input_1) + op_2(input_2); inputs 0 = H^{l-2}, 1 = H^{l-1}, 2 + k = block k.
SEARCHED_CELL = (
    ((0, "atrous_5x5"), (1, "sep_conv_3x3")),
    ((0, "sep_conv_3x3"), (1, "atrous_3x3")),
    ((3, "sep_conv_3x3"), (0, "sep_conv_3x3")),
    ((4, "sep_conv_5x5"), (2, "sep_conv_5x5")),
    ((3, "sep_conv_5x5"), (5, "atrous_5x5")),
)
SEARCHED_PATH = (0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1)
VARIANTS_DIR = Path(__file__).resolve().parents[2] / "configs" / "autodeeplab" / "variants"


class AtrousConv(nn.Sequential):
    """The retrained network's atrous k×k: ReLU → dense conv, rate 2 → BN."""

    def __init__(self, channels: int, kernel: int, rate: int = 2):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(channels, channels, kernel, padding=rate * (kernel // 2), dilation=rate, bias=False),
                         nn.BatchNorm2d(channels))


RETRAINED_OPS = {
    "sep_conv_3x3": lambda C: build_op("sep_conv_3x3", C, 1, affine=True),
    "sep_conv_5x5": lambda C: build_op("sep_conv_5x5", C, 1, affine=True),
    "atrous_3x3": lambda C: AtrousConv(C, 3),
    "atrous_5x5": lambda C: AtrousConv(C, 5),
    "skip_connect": lambda C: nn.Identity(),
    "max_pool_3x3": lambda C: nn.MaxPool2d(3, 1, 1),
    "avg_pool_3x3": lambda C: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
}


@dataclass
class RetrainedConfig:
    filters: int = 20
    cell: tuple = field(default=SEARCHED_CELL)
    path: tuple = field(default=SEARCHED_PATH)
    stem_channels: int = 64
    aspp_rates: tuple = (12, 24, 36)         # DeepLabv3+ at output stride 8
    head_channels: int = 256
    low_level_channels: int = 48
    num_classes: int = 19
    in_channels: int = 3

    def to_dict(self) -> dict:
        return {**asdict(self), "cell": [[list(op) for op in block] for block in self.cell], "path": list(self.path),
                "aspp_rates": list(self.aspp_rates)}


class RetrainedAutoDeepLab(nn.Module):
    """Stem → the cells of the path → DeepLabv3+ head, the decoder fed by the path's last stride-4 cell.
    ``paper``: the published parameters and multiply-adds (1024×2048), when known."""

    space_name = "autodeeplab"

    def __init__(self, cfg: RetrainedConfig, paper: dict | None = None):
        super().__init__()
        self.cfg, self.paper = cfg, paper
        blocks = len(cfg.cell)
        self.stem = Stem(cfg.in_channels, cfg.stem_channels)
        channels = [cfg.stem_channels, 2 * cfg.stem_channels]
        self.cells = nn.ModuleList()
        for level in cfg.path:
            width = cfg.filters * 2 ** level
            ops = [[RETRAINED_OPS[name](width) for _, name in block] for block in cfg.cell]
            spec = [[(j, 1.0) for j, _ in block] for block in cfg.cell]
            self.cells.append(Cell(Preprocess(channels[-2], width, affine=True),
                                   Preprocess(channels[-1], width, affine=True), ops, spec))
            channels.append(blocks * width)
        low = [n for n, level in enumerate(cfg.path) if level == 0]
        if not low:
            raise ValueError("the path has no stride-4 cell for the decoder's low-level features")
        self.low_level_cell = low[-1]
        self.head = DeepLabV3PlusHead(channels[-1], channels[2 + self.low_level_cell], cfg.num_classes,
                                      tuple(cfg.aspp_rates), cfg.head_channels, cfg.low_level_channels)

    def arch_parameters(self) -> list:
        return []          # a retrained network: its architecture is fixed

    def cost_groups(self) -> dict[str, str]:
        """Module name → component, for ``profile``: the modules that are called."""
        return {"stem": "stem", **{f"cells.{n}": "cells" for n in range(len(self.cells))}, "head": "head"}

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pad_to_stride(x, OUTPUT_STRIDE)
        H, W = x.shape[-2:]
        outs = list(self.stem(x))
        for cell, level in zip(self.cells, self.cfg.path):
            outs.append(cell(outs[-2], outs[-1], (H // (4 * 2 ** level), W // (4 * 2 ** level))))
        logits = upsample_to(self.head(nn.functional.relu(outs[-1]), outs[2 + self.low_level_cell]), (H, W))
        return logits[..., :h, :w] if x.shape[-2:] != (h, w) else logits


def list_retrained() -> list[str]:
    return sorted(p.stem.removeprefix("retrained-") for p in VARIANTS_DIR.glob("retrained-*.yaml"))


def load_retrained(name: str) -> tuple[dict, dict | None]:
    """(the variant's keys, its published figures) of ``configs/autodeeplab/variants/retrained-<name>.yaml``."""
    from ssnas.config import read_yaml

    path = VARIANTS_DIR / f"retrained-{str(name).lower()}.yaml"
    if not path.is_file():
        raise UserError(f"unknown Auto-DeepLab variant {name!r}, expected one of {', '.join(list_retrained())}")
    data = read_yaml(path, "variant")
    data.pop("description", None)
    paper = data.pop("paper", None)
    return data, paper


def create_retrained(name: str, **overrides) -> RetrainedAutoDeepLab:
    """``create_retrained("s", num_classes=19)``: Auto-DeepLab-S/M/L as retrained."""
    data, _ = load_retrained(name)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return RetrainedAutoDeepLab(RetrainedConfig(**data))

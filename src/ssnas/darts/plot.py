"""Draw a derived DARTS genotype (normal and reduce cell) as a PNG with matplotlib (no graphviz dependency)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Tuple

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ssnas.darts.genotypes import Genotype
from ssnas.errors import UserError

INPUT_NAMES = ("c_{k-2}", "c_{k-1}")
OUTPUT_NAME = "c_{k}"
NODE_Y_OFFSET = 0.8  # intermediate nodes zig-zag so that edges skipping a node stay visible
FIGURE_SIZE = (14, 5)
DPI = 120
COLORS = {"input": "#a6cee3", "node": "#fdbf6f", "output": "#b2df8a"}


def _positions(n_nodes: int) -> Dict[str, Tuple[float, float]]:
    pos = {INPUT_NAMES[0]: (0.0, 1.5), INPUT_NAMES[1]: (0.0, -1.5), OUTPUT_NAME: (n_nodes + 1.0, 0.0)}
    for i in range(n_nodes):
        pos[str(i)] = (i + 1.0, NODE_Y_OFFSET * (1 if i % 2 == 0 else -1))
    return pos


def _state_name(index: int) -> str:
    """Genotype input index → drawn name (0, 1 = cell inputs; j ≥ 2 = intermediate node j − 2)."""
    return INPUT_NAMES[index] if index < 2 else str(index - 2)


def draw_cell(ax: Axes, genes: Sequence[Tuple[str, int]], concat: Sequence[int], title: str) -> None:
    """Draw one cell: ``genes`` holds two (op, input) pairs per intermediate node, ``concat`` the output states."""
    n_nodes = len(genes) // 2
    pos = _positions(n_nodes)
    arrow = dict(arrowstyle="-|>", color="0.3", shrinkA=14, shrinkB=14, lw=1.2)
    for k, (op, src) in enumerate(genes):
        start, end = pos[_state_name(src)], pos[str(k // 2)]
        ax.annotate("", xy=end, xytext=start, arrowprops=arrow)
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        ax.text(*mid, op, fontsize=8, ha="center", va="center", bbox=dict(fc="white", ec="none", alpha=0.8))
    for state in concat:
        ax.annotate("", xy=pos[OUTPUT_NAME], xytext=pos[_state_name(state)], arrowprops={**arrow, "color": "0.6"})
    for name, (x, y) in pos.items():
        kind = "input" if name in INPUT_NAMES else "output" if name == OUTPUT_NAME else "node"
        label = f"${name}$" if kind != "node" else name
        ax.text(x, y, label, ha="center", va="center", fontsize=11,
                bbox=dict(boxstyle="round,pad=0.4", fc=COLORS[kind], ec="0.2"))
    ax.set_title(title)
    ax.set_xlim(-0.7, n_nodes + 1.7)
    ax.set_ylim(-2.3, 2.3)
    ax.axis("off")


def plot_genotype(genotype: Genotype, path, title: str = "", overwrite: bool = False) -> Path:
    """Write ``genotype``'s normal and reduce cells side by side to the PNG ``path``; returns the path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists, expected a new file name (or overwrite=True)")
    fig = Figure(figsize=FIGURE_SIZE)
    normal_ax, reduce_ax = fig.subplots(1, 2)
    draw_cell(normal_ax, genotype.normal, genotype.normal_concat, "normal cell")
    draw_cell(reduce_ax, genotype.reduce, genotype.reduce_concat, "reduction cell")
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path

"""Plots of a run: entropy curves (Fig. 3), training curves, and the searched architecture."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ssnas.engine.logger import read_metrics  # noqa: E402

PHASE_COLORS = {"warmup": "#f2e6d9", "search": "#dde9f5", "finetune": "#e3f1e0"}


def _shade_phases(ax, phases) -> None:
    for name, (a, b) in phases.ranges().items():
        ax.axvspan(a + 0.5, b + 0.5, color=PHASE_COLORS[name], zorder=0, label=name)


def plot_entropy(records: list, phases, path: Path) -> Path:
    """Mean normalized entropy of each architecture distribution per epoch (Fig. 3)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    _shade_phases(ax, phases)
    names = sorted({n for r in records for n in r.get("entropy", {})})
    for name in names:
        xs = [r["epoch"] for r in records if name in r.get("entropy", {})]
        ys = [r["entropy"][name]["normalized"] for r in records if name in r.get("entropy", {})]
        ax.plot(xs, ys, marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("entropy / ln(#choices)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Architecture entropy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training(records: list, phases, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax in axes:
        _shade_phases(ax, phases)
    for key in ("loss_w", "loss_a", "entropy_loss"):
        pts = [(r["epoch"], r[key]) for r in records if key in r]
        if pts:
            axes[0].plot(*zip(*pts), marker=".", label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_title("losses")
    axes[0].legend(fontsize=8)
    pts = [(r["epoch"], r["score"]) for r in records if "score" in r]
    if pts:
        axes[1].plot(*zip(*pts), marker="o", color="C3")
    axes[1].set_xlabel("epoch")
    axes[1].set_title("validation score (mIoU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_architecture(graph: dict, path: Path) -> Path:
    """Any space's ``architecture_graph()``: edge width ∝ its weight (β̂), bars of the operation weights (α̂)
    inside each cell, the strongest path dashed, the space's text lines under the plot."""
    layers, levels = graph["layers"], graph["levels"]
    text = graph.get("text", [])
    line = 0.2   # inches per text line under the plot
    height = 4.2 + line * len(text)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * layers + 2), height))
    for x0, y0, x1, y1, w, kept in graph["edges"]:
        if kept and w > 0:
            ax.plot([x0, x1], [y0, y1], color="C0", lw=0.5 + 5 * w, alpha=0.25 + 0.75 * w, zorder=1)
    labels = graph.get("op_labels", [])
    width = 0.36 / max(1, len(labels))
    for x, y, weights in graph.get("ops", []):
        for k, a in enumerate(weights):
            ax.add_patch(plt.Rectangle((x - 0.18 + width * k, y - 0.2), 0.8 * width, 0.4 * max(a, 0.0),
                                       color=f"C{k + 1}", zorder=3))
    for k, label in enumerate(labels):
        ax.bar([0], [0], color=f"C{k + 1}", label=f"α̂ {label}")
    if graph.get("path"):
        xs, ys = zip(*graph["path"])
        ax.plot(xs, ys, color="C3", ls="--", lw=1.2, zorder=4, label="strongest path")
    stem = sorted({y0 for x0, y0, *_ in graph["edges"] if x0 == 0})
    ax.scatter([0] * len(stem), stem, s=60, color="gray", zorder=2)
    ax.set_yticks(range(len(levels)), levels)
    ax.set_xticks(range(layers + 1), ["stem"] + [str(l + 1) for l in range(layers)])
    ax.set_xlim(-0.5, layers + 0.5)
    ax.set_ylim(len(levels) - 0.5, -0.5)
    ax.set_xlabel("layer")
    ax.set_title("Searched architecture: edge width ∝ β̂" + (", bars = α̂ per cell" if labels else ""))
    if labels or graph.get("path"):
        ax.legend(fontsize=7, loc="lower right")
    for n, words in enumerate(text):
        fig.text(0.01, (0.08 + line * (len(text) - 1 - n)) / height, words, fontsize=7)
    fig.tight_layout(rect=(0, (0.1 + line * len(text)) / height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()
def plot_run(run_dir, model, phases) -> dict:
    run_dir.plots.mkdir(parents=True, exist_ok=True)
    records = read_metrics(run_dir.path / "metrics.jsonl")
    out = {
        "entropy": str(plot_entropy(records, phases, run_dir.plots / "entropy.png")),
        "training": str(plot_training(records, phases, run_dir.plots / "training.png")),
    }
    from ssnas.space.base import SearchSpace
    if isinstance(model, SearchSpace):   # any registered space draws itself through its graph
        out["architecture"] = str(plot_architecture(model.architecture_graph(), run_dir.plots / "architecture.png"))
    return out

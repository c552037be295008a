"""Plots of a run: entropy curves (Fig. 3), training curves, and the searched architecture."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ssnas.engine.logger import read_metrics  # noqa: E402
from ssnas.space.topology import EDGE_KINDS, edge_source, stride  # noqa: E402

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


def plot_supernet_architecture(model, path: Path) -> Path:
    """β̂ on the grid of cells (edge width and label) and α̂ per cell (bars of the kernel weights)."""
    beta = model.beta_hat().detach().cpu()
    alpha = model.alpha_hat().detach().cpu()
    layers, levels, _ = beta.shape
    kernels = list(model.cfg.kernel_sizes)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * layers + 2), 4.2))
    for l in range(layers):
        for i in range(levels):
            for j in range(EDGE_KINDS):
                src = edge_source(i, j, levels)
                if src is None or not model.edge_mask[l, i, j]:
                    continue
                w = float(beta[l, i, j])
                ax.plot([l, l + 1], [src, i], color="C0", lw=0.5 + 5 * w, alpha=0.25 + 0.75 * w, zorder=1)
            # α̂ as tiny bars inside the cell marker
            for k, a in enumerate(alpha[l, i].tolist()):
                ax.add_patch(plt.Rectangle((l + 1 - 0.18 + 0.12 * k, i - 0.2), 0.1, 0.4 * a,
                                           color=f"C{k + 1}", zorder=3))
    ax.scatter([0] * levels, range(levels), s=60, color="gray", zorder=2)
    for k, ks in enumerate(kernels):
        ax.bar([0], [0], color=f"C{k + 1}", label=f"α̂ {ks}x{ks}")
    ax.set_yticks(range(levels), [f"stride {stride(i)}" for i in range(levels)])
    ax.set_xticks(range(layers + 1), ["stem"] + [str(l + 1) for l in range(layers)])
    ax.invert_yaxis()
    ax.set_xlabel("layer")
    ax.set_title("Searched architecture: edge width ∝ β̂, bars = α̂ per cell")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
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
    from ssnas.space.supernet import SuperNet
    if isinstance(model, SuperNet):   # the grid's picture (β̂ on the grid, α̂ per cell)
        out["architecture"] = str(plot_supernet_architecture(model, run_dir.plots / "architecture.png"))
    return out

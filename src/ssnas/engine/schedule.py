"""Time in the single-stage protocol (§3.2-3.3): phase boundaries, the entropy scaling f(t), poly LR.

Epoch boundaries come from fractions of the total: warmup ends at round(warmup·E), search at
round((warmup+search)·E); the rest is fine-tuning. Entropy regularization is active from
round(entropy_start·E) — it only matters in the search phase, where the architecture is updated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

WARMUP, SEARCH, FINETUNE = "warmup", "search", "finetune"


@dataclass(frozen=True)
class Phases:
    epochs: int
    warmup_end: int
    search_end: int
    entropy_start: int

    @classmethod
    def from_config(cls, protocol) -> "Phases":
        e = protocol.epochs
        warmup_end = round(protocol.warmup * e)
        search_end = min(e, round((protocol.warmup + protocol.search) * e))
        return cls(e, warmup_end, search_end, round(protocol.entropy_start * e))

    def phase(self, epoch: int) -> str:
        if epoch < self.warmup_end:
            return WARMUP
        if epoch < self.search_end:
            return SEARCH
        return FINETUNE

    def ranges(self) -> dict:
        """{phase: [first_epoch, end_epoch)} for the phases that have epochs."""
        spans = {WARMUP: [0, self.warmup_end], SEARCH: [self.warmup_end, self.search_end],
                 FINETUNE: [self.search_end, self.epochs]}
        return {k: v for k, v in spans.items() if v[1] > v[0]}


def arch_steps(phases: Phases, iters_per_epoch: int) -> int:
    """The number of architecture (Adam) steps of a run: one per iteration of the search phase."""
    return (phases.search_end - phases.warmup_end) * iters_per_epoch


def scaled_arch_lr(lr: float, reference_steps: int | None, steps: int) -> float:
    """The architecture learning rate under the equal-travel rule: ``lr * reference_steps / steps``.

    Adam's update is about ``lr`` per step whatever the gradient's scale, so ``lr * steps`` bounds how far a
    logit can move in a search; keeping it equal to the reference run's (the paper: 0.003 x 38,850) lets a
    short search move the architecture as far as the long one could. Without a reference, ``lr`` as given."""
    if reference_steps is None or steps <= 0:
        return lr
    return lr * reference_steps / steps


def entropy_scale(kind: str, t: float, phases: Phases) -> float:
    """f(t) of Eq. 4 at fractional epoch ``t``: 0 before ``entropy_start``; then ``constant`` = 1, or
    ``linear`` rising from 0 at ``entropy_start`` to 1 at the end of the search phase."""
    start, end = phases.entropy_start, phases.search_end
    if t < start:
        return 0.0
    if kind == "constant":
        return 1.0
    if end <= start:
        return 1.0
    return min(1.0, (t - start) / (end - start))


def poly_lr_factor(step: int, total_steps: int, power: float, base_lr: float, min_lr: float = 0.0) -> float:
    """Multiplier of the base LR: (1 - step/total)^power, floored at min_lr."""
    frac = min(step, total_steps) / max(1, total_steps)
    lr = (base_lr - min_lr) * (1.0 - frac) ** power + min_lr
    return lr / base_lr


def cosine_lr_factor(step: int, total_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Multiplier of the base LR along half a cosine, base_lr at step 0 to min_lr at the end (SGDR without
    restarts, as DARTS/RobustDARTS search: 0.025 → 0.001); per step here, per epoch in DARTS."""
    frac = min(step, total_steps) / max(1, total_steps)
    lr = min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr / base_lr

"""The cost penalty of the architecture step: L_B plus a term in E[cost]/T (T = ``cost.target``).

With r = E[cost] / T (E[cost]: ``cost/expected.py``, differentiable in α, β), the forms (``cost.penalty``):

- ``hinge``  (default): L_B + λ · max(0, r − 1) — no pressure while the expected network fits the budget;
- ``linear``: L_B + λ · r — ProxylessNAS's additive expected-latency regularizer (λ·E[LAT]), with the
  cost in units of the target;
- ``log``: L_B · (1 + α · ln r)^β = L_B · (α · ln(E[cost] / (T·e^(−1/α))))^β — FBNet's multiplicative form
  CE · α log(LAT)^β (Wu et al. 2019; α = 0.2, β = 0.6 there) read as (α·log LAT)^β, with LAT in units of
  T·e^(−1/α) so that the factor is 1 at the target. (Read as α·(log LAT)^β, α would scale the whole loss,
  which Adam's steps ignore.) The base is clamped at 1e-6 (no gradient) below r = e^(−1/α) (0.7 % of the
  target at α = 0.2).

λ or α is ``cost.weight``, β is ``cost.power``. The entropy loss (Eq. 4) is added after: L = [above] + L_ent.
With ``cost.weight: 0`` (the default) no term exists and the architecture step is exactly the paper's.
"""
from __future__ import annotations

import torch

from ssnas.cost import cost_table, expected_cost
from ssnas.cost.units import parse_cost
from ssnas.errors import UserError

PENALTIES = ("hinge", "linear", "log")
LOG_FLOOR = 1e-6


def cost_input_size(cfg) -> tuple:
    """The H, W that FLOPs are counted at: ``cost.input_size``, else the training crop (as in summary.json)."""
    return tuple(cfg.cost.input_size or cfg.data.crop_size)


class CostTerm:
    def __init__(self, cfg, model):
        c = cfg.cost
        if c.penalty not in PENALTIES:
            raise UserError(f"cost.penalty: {c.penalty!r} is not one of {', '.join(PENALTIES)}")
        self.metric, self.penalty, self.weight, self.power = c.metric, c.penalty, c.weight, c.power
        self.target = parse_cost(c.target, c.metric, "cost.target")
        self.table = cost_table(model, c.metric, cost_input_size(cfg), c.table)
        device = next(model.parameters()).device
        self.tensors = self.table.tensors(torch.float64, device)

    def expected(self, model) -> torch.Tensor:
        return expected_cost(model, self.tensors)

    def objective(self, model, loss: torch.Tensor, ent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the architecture step's loss with the cost term, E[cost] detached); ``loss`` is L_B."""
        e = self.expected(model)
        r = e / self.target
        if self.penalty == "log":
            factor = (1 + self.weight * torch.log(r)).clamp_min(LOG_FLOOR) ** self.power
            return loss * factor.to(loss.dtype) + ent, e.detach()
        pen = self.weight * (torch.relu(r - 1) if self.penalty == "hinge" else r)
        return loss + pen.to(loss.dtype) + ent, e.detach()


def build_cost_term(cfg, model) -> CostTerm | None:
    """The run's cost term, or None when ``cost.weight`` is 0 (off: nothing is built or computed)."""
    if getattr(cfg, "cost", None) is None or cfg.cost.weight == 0:
        return None
    return CostTerm(cfg, model)

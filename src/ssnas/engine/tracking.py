"""The Hessian's dominant eigenvalue during a search (RobustDARTS; paper §4.5, Fig. 4), and DARTS-ES.

RobustDARTS relates architecture degeneration to the sharpness of the validation loss in α: it logs the
largest eigenvalue of ∇²_α L_valid every 2 epochs. :class:`HessianTracker` is an engine hook that does the
same for any task: α = *all* of the model's ``arch_parameters()`` (DARTS: α_normal, α_reduce and, with DOTS,
the topology logits; the segmentation supernet: α and β). The batch is FIXED for the whole run — the first
``batch`` images of a seeded permutation of the architecture's training set (stream B; A when there is none),
each augmented with its own fixed seed — so that the curve shows the loss landscape changing, not batch noise.
(RobustDARTS uses the last 64-image validation batch of each epoch, a different batch every time.) As in
RobustDARTS the matrix includes the architecture's weight decay (+wd·I, ``arch_optim.weight_decay``).

DARTS-ES (RobustDARTS §5.1 and its ``EVLocalAvg.early_stop``): λ̄ = mean of ``window`` consecutive
measurements; stop when λ̄(now) / λ̄(``delta`` measurements earlier) > ``factor`` (1.3, i.e. earlier/now < 0.75),
once the earlier λ̄'s epoch (its window's centre) is ≥ ``start``. The run ends there; the architecture
RobustDARTS keeps is the one at that earlier epoch (``rollback_epoch``; its genotype is in metrics.jsonl).

Config: ``run.hessian_every`` for every task (the one key); the task chooses the rest (``Task.hessian_settings``):
``darts.hessian_batch`` / ``hessian_method`` / ``early_stop*`` for ``task: darts``, a batch of
``data.batch_size`` images, method auto and no early stopping for the segmentation supernet.
Epochs here are 1-based, as in metrics.jsonl: a measurement after epoch e is logged in e's record.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import List, Optional

import torch

from ssnas.engine.hooks import Hook
from ssnas.engine.streams import SeededSamples, collate, stable_seed
from ssnas.hessian import MAX_EXACT_DIM, dominant_eigenvalue


@dataclass(frozen=True)
class EarlyStopRule:
    """RobustDARTS's DARTS-ES criterion on the sequence of measured eigenvalues."""
    factor: float = 1.3
    window: int = 5
    delta: int = 4
    start: int = 10

    def check(self, history: List[List[float]]) -> Optional[dict]:
        """``history``: [epoch, eigenvalue] per measurement, in order. A dict when the rule fires, else None."""
        if len(history) < self.window + self.delta:
            return None
        values = [v for _, v in history]
        now = statistics.fmean(values[-self.window:])
        earlier = statistics.fmean(values[-self.window - self.delta:-self.delta])
        earlier_epoch = int(history[-self.delta - 1 - self.window // 2][0])  # the earlier window's centre
        if earlier_epoch < self.start or earlier <= 0:
            return None
        ratio = now / earlier
        if ratio <= self.factor:
            return None
        return {"epoch": int(history[-1][0]), "rollback_epoch": earlier_epoch, "ratio": ratio,
                "local_average": now, "earlier_local_average": earlier}


@dataclass(frozen=True)
class HessianSettings:
    every: int                      # measure after epochs 1, 1+every, 1+2·every, … and the last (0: off)
    batch: int                      # images in the fixed batch
    method: str = "auto"            # auto | exact | power (see ssnas.hessian.dominant_eigenvalue)
    weight_decay: float = 0.0       # + wd·I, as RobustDARTS logs it
    early_stop: Optional[EarlyStopRule] = None


def fixed_batch(stream, size: int, seed: int) -> dict:
    """``size`` images of ``stream``'s index set (a seeded choice), each augmented with a fixed seed."""
    g = torch.Generator().manual_seed(stable_seed(seed, "hessian"))
    order = torch.randperm(len(stream.indices), generator=g)[:size].tolist()
    samples = SeededSamples(stream.dataset)
    return collate([samples[(stream.indices[i], stable_seed(seed, "hessian", i))] for i in order])


class HessianTracker(Hook):
    """Engine hook (epoch end): logs ``hessian_eigenvalue`` (+ ``_method``, ``_dims``, ``_time``) every ``every`` epochs and
    applies DARTS-ES. The measurements live in ``trainer.state["hessian_history"]`` (checkpointed: a resumed
    run keeps its early-stopping history)."""

    def __init__(self, settings: HessianSettings):
        self.settings = settings
        self._batch = None
        self._said_fallback = False
        self._broken = False

    def due(self, epoch: int, total: int) -> bool:
        """``epoch`` 1-based: after the first epoch, every ``every`` epochs from there, and after the last."""
        return (epoch - 1) % self.settings.every == 0 or epoch == total

    def epoch_end(self, trainer, epoch: int, record: dict) -> Optional[dict]:
        e = epoch + 1
        if not self.due(e, trainer.phases.epochs):
            return None
        if self._broken:
            return None
        try:
            value, method, dims, seconds = self.measure(trainer)
        except RuntimeError as exc:  # an op without a second derivative: the run goes on without the curve
            if "derivative for" not in str(exc):
                raise
            self._broken = True
            trainer.logger.message(f"[ssnas] Hessian not measured from epoch {e} on: {str(exc).splitlines()[0]}")
            return None
        history = trainer.state.setdefault("hessian_history", [])
        history.append([e, value])
        out = {"hessian_eigenvalue": value, "hessian_method": method, "hessian_dims": dims, "hessian_time": seconds}
        rule = self.settings.early_stop
        fired = rule.check(history) if rule is not None else None
        if fired:
            trainer.state["early_stop"] = fired
            out["early_stop"] = fired
            trainer.logger.message(f"[ssnas] DARTS-ES: eigenvalue local average {fired['ratio']:.2f}x that of "
                                   f"epoch {fired['rollback_epoch']} (> {rule.factor}): search stopped at epoch {e}; "
                                   f"RobustDARTS keeps the architecture of epoch {fired['rollback_epoch']}")
        return out

    def measure(self, trainer) -> tuple:
        """(eigenvalue, method used, dimensions, seconds) on the fixed batch; leaves the model, its BN
        statistics and the RNG exactly as they were."""
        s, model = self.settings, trainer.model
        if self._batch is None:
            stream = trainer.streams.get("b") or trainer.streams["a"]
            self._batch = fixed_batch(stream, s.batch, trainer.cfg.seed)
        device = trainer.device
        batch = self._batch
        if "seed" in batch:  # the same fixed augmentation every time
            batch = trainer.task.augment(batch, device)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        arch = list(model.arch_parameters())
        dims = sum(p.numel() for p in arch)
        method = s.method
        if method == "exact" and dims > MAX_EXACT_DIM:
            method = "power"
            if not self._said_fallback:
                trainer.logger.message(f"[ssnas] Hessian: {dims} architecture parameters > {MAX_EXACT_DIM}, "
                                       f"using power iteration instead of the exact matrix")
                self._said_fallback = True
        params = list(model.parameters())
        saved_grad = [p.requires_grad for p in params]
        buffers = {k: v.clone() for k, v in model.state_dict().items() if k in dict(model.named_buffers())}
        was_training = model.training
        channels_last = trainer.cfg.run.channels_last
        start = time.time()
        try:
            if channels_last:  # the exact Hessian's batched (vmap) backward supports only NCHW
                model.to(memory_format=torch.contiguous_format)
            for p in params:  # a graph through α only: the weights are constants here
                p.requires_grad_(False)
            for p in arch:
                p.requires_grad_(True)
            model.train()  # as in the architecture step (batch statistics)

            def loss_fn():
                logits = model(batch["image"])
                return trainer.task.loss(logits.float(), batch)

            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.enable_grad():
                value, used = dominant_eigenvalue(loss_fn, arch, method=method, weight_decay=s.weight_decay)
        finally:
            for p, r in zip(params, saved_grad):
                p.requires_grad_(r)
            model.load_state_dict(buffers, strict=False)
            model.train(was_training)
            if channels_last:
                model.to(memory_format=torch.channels_last)
        return value, used, dims, time.time() - start

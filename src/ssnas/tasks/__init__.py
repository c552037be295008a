"""Tasks: what the one training engine trains (the ``TASKS`` registry, config key ``task``).

A task couples a search space with its data, its objective and its metric; the engine (``ssnas.engine``)
runs the same protocol loop for every task. A new task is one module in this package::

    @register_task("depth")
    class DepthTask(TaskBase): ...

``segmentation.py`` is the paper's (a registered search space on a segmentation dataset), ``darts.py`` the
DARTS / RobustDARTS classification search of §4.5. The contract is :class:`Task`; :class:`TaskBase` gives
its optional parts a default.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Protocol, runtime_checkable

import torch
from torch import nn

from ssnas.registry import Registry

TASKS = Registry("task", packages=("ssnas.tasks",), key="task", default="segmentation")


def register_task(name: str, **meta):
    """Decorator registering a task class ``cls(cfg)`` under ``name``."""
    return TASKS.register(name, **meta)


def build_task(cfg) -> "Task":
    """The task ``cfg.task`` names, built for ``cfg``."""
    return TASKS.get(cfg.task)(cfg)


@runtime_checkable
class Task(Protocol):
    """What the engine needs from a task.

    - ``build_model()`` — an ``nn.Module`` with ``arch_parameters()``, ``weight_parameters()``,
      ``arch_distributions()``, ``freeze_architecture()``, ``arch_frozen``, ``describe_architecture()`` (a
      registered search space implements all of it: ``ssnas.space.base.SearchSpace``);
    - ``build_streams(rank, world)`` — ``{"a", "b", "finetune"}`` BatchStreams of dict batches with ``"image"``
      and ``"label"`` (``"b"`` None when there is no search phase);
    - ``augment(batch, device)`` — a training batch augmented on the device (identity by default);
    - ``loss(logits, batch)`` — the training criterion;
    - ``evaluate(model, rank, world)`` — a dict with ``"score"`` (higher is better) and the task's metrics;
    - ``describe()`` — JSON-able facts stored in checkpoints (e.g. the class table);
    - ``space_record(model)`` — the checkpoint's ``space`` (what rebuilds the model);
    - ``hooks()`` — the task's engine hooks (``ssnas.engine.hooks.Hook``), Hessian tracking included;
    - ``check()`` — raise ``UserError`` for a config mistake that only the task can see (a space's own keys),
      before the engine makes the run folder, so a corrected rerun into the same folder is not refused.
    """

    cfg: object

    def build_model(self) -> nn.Module: ...

    def build_streams(self, rank: int = 0, world: int = 1) -> Dict[str, Optional[object]]: ...

    def augment(self, batch: dict, device) -> dict: ...

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor: ...

    def evaluate(self, model, rank: int = 0, world: int = 1) -> dict: ...

    def describe(self) -> dict: ...

    def space_record(self, model) -> dict: ...

    def hooks(self) -> List[object]: ...

    def check(self) -> None: ...


class TaskBase:
    """Defaults for a task's optional parts."""

    def __init__(self, cfg):
        self.cfg = cfg

    def augment(self, batch: dict, device) -> dict:
        return batch

    def check(self) -> None:
        """Nothing beyond ``config.validate`` by default."""

    def describe(self) -> dict:
        return {}

    def space_record(self, model) -> dict:
        return model.cfg.to_dict()

    def hooks(self) -> list:
        """Hessian tracking when ``run.hessian_every`` > 0 (``engine/tracking.py``), with this task's
        settings (:meth:`hessian_settings`)."""
        from ssnas.engine.tracking import HessianTracker
        settings = self.hessian_settings()
        return [HessianTracker(settings)] if settings.every > 0 else []

    def hessian_settings(self):
        """The segmentation defaults: a batch of ``data.batch_size`` images, method auto, no early stopping."""
        from ssnas.engine.tracking import HessianSettings
        cfg = self.cfg
        return HessianSettings(cfg.run.hessian_every, cfg.data.batch_size, "auto", cfg.arch_optim.weight_decay)

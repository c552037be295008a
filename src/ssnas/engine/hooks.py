"""Hooks: named points of the engine's loop where tasks and tracking act without editing it
(detectron2's ``HookBase``). Subclass :class:`Hook` and override the points you need; every point does
nothing by default.

    run_start(trainer)                   after set-up (model, streams, a resumed state), before the first epoch
    epoch_start(trainer, epoch)          before the epoch's first step (0-based epoch; also on resume)
    after_step(trainer, info)            after every iteration: info = {"epoch", "iter", "step", "phase",
                                         "loss_w", "loss_a"} (losses None when skipped or absent)
    epoch_end(trainer, epoch, record)    after evaluation; a returned dict is added to the epoch's record
    run_end(trainer, summary)            when the run finished (not when it stopped on a signal); a returned
                                         dict is added to the summary
"""
from __future__ import annotations

from typing import Callable, Optional


class Hook:
    """Base class of the engine's hooks (see the module docstring)."""

    def run_start(self, trainer) -> None:
        pass

    def epoch_start(self, trainer, epoch: int) -> None:
        pass

    def after_step(self, trainer, info: dict) -> None:
        pass

    def epoch_end(self, trainer, epoch: int, record: dict) -> Optional[dict]:
        return None

    def run_end(self, trainer, summary: dict) -> Optional[dict]:
        return None


class EpochEndHook(Hook):
    """A plain function ``fn(trainer, epoch, record) -> dict | None`` as an epoch-end hook (the form hooks
    had before this class; ``Trainer(hooks=[fn])`` still accepts it)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def epoch_end(self, trainer, epoch: int, record: dict) -> Optional[dict]:
        return self.fn(trainer, epoch, record)


def as_hook(hook) -> Hook:
    if isinstance(hook, Hook):
        return hook
    if callable(hook):
        return EpochEndHook(hook)
    raise TypeError(f"{hook!r} is neither a Hook nor a function (trainer, epoch, record)")

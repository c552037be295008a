"""DARTS / RobustDARTS search as a task of the one training engine (``task: darts``; paper §4.5, Fig. 4).

The engine's search phase is DARTS's first-order search: per iteration an SGD step of the weights w on a batch
from A, then an Adam step of α on a separate batch from B. ``protocol.split`` picks the data:
``split`` — A and B are disjoint seeded halves of the training set (DARTS and RobustDARTS: w on one half, α on
the other); ``joint`` — both draw separate batches from the whole training set (the paper's §4.5 proposal).
The metric is top-1 accuracy on the test split (digits: its held-out 20%). With ``darts.topology: dots``
a hook anneals DOTS's temperature 10 → 0.02 over the search phase.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from ssnas.darts.genotypes import NONE_OP
from ssnas.darts.model_search import DartsSearchNetwork, dots_temperature
from ssnas.engine import distributed
from ssnas.engine.hooks import Hook
from ssnas.engine.streams import BatchStream, collate, split_indices
from ssnas.tasks import TaskBase, register_task

PARAMETER_FREE_OPS = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "noise", NONE_OP)


@dataclass(frozen=True)
class DartsSpec:
    """What a checkpoint's "space" records about the DARTS network (the engine calls ``to_dict()``)."""
    space: str
    channels: int
    layers: int
    topology: str
    num_classes: int

    def to_dict(self) -> dict:
        return asdict(self)


def genotype_dict(genotype) -> dict:
    """A Genotype as JSON-able data: {"normal": [[op, input], …], "normal_concat": […], …}."""
    return {k: [list(g) if isinstance(g, tuple) else g for g in v] for k, v in genotype._asdict().items()}


def count_ops(genes, ops=PARAMETER_FREE_OPS) -> int:
    """How many of a cell's genes (``[op, input]`` pairs) use one of ``ops``."""
    return sum(1 for op, _ in genes if op in ops)


@register_task("darts")
class DartsTask(TaskBase):
    """The engine task for ``task: darts`` (the contract: :class:`ssnas.tasks.Task`)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self._datasets = {}
        self.model = None

    def dataset(self, split: str):
        """'train' (augmented as DARTS does, per sample seeded by the streams) or 'test'."""
        if split not in self._datasets:
            from ssnas.darts.data import build_darts_dataset
            g = self.cfg.darts
            self._datasets[split] = build_darts_dataset(g.dataset, g.data_root or None, split)
        return self._datasets[split]

    def augment(self, batch: dict, device) -> dict:
        """A training batch augmented on ``device`` with its per-sample seeds (``DartsAugment``)."""
        from ssnas.darts.data import DartsAugment
        ds = self.dataset("train")
        if not ds.augment:
            return batch
        return {**batch, "image": DartsAugment(ds)(batch["image"], batch["seed"], device)}

    def num_classes(self) -> int:
        return len(self.dataset("train").classes)

    def build_model(self) -> DartsSearchNetwork:
        g = self.cfg.darts
        model = DartsSearchNetwork(C=g.channels, num_classes=self.num_classes(), layers=g.layers, space=g.space,
                                   topology=g.topology)
        model.cfg = DartsSpec(g.space, g.channels, g.layers, g.topology, self.num_classes())
        self.model = model
        return model

    def build_streams(self, rank: int = 0, world: int = 1) -> dict:
        ds, p, seed = self.dataset("train"), self.cfg.protocol, self.cfg.seed
        a_idx, b_idx = split_indices(len(ds), p.split, seed)
        pin = torch.cuda.is_available()
        bs, workers = self.cfg.darts.batch_size, self.cfg.data.workers
        a = BatchStream(ds, a_idx, bs, seed, "A", workers, rank, world, pin)
        b = BatchStream(ds, b_idx, bs, seed, "B", workers, rank, world, pin) if p.search > 0 else None
        return {"a": a, "b": b, "finetune": a}

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(logits, batch["label"])

    def evaluate(self, model, rank: int = 0, world: int = 1) -> dict:
        """Top-1 accuracy on the test split (at most ``eval.max_images`` images)."""
        ds = self.dataset("test")
        n = len(ds) if self.cfg.eval.max_images is None else min(len(ds), self.cfg.eval.max_images)
        loader = DataLoader(Subset(ds, list(range(rank, n, world))), batch_size=self.cfg.darts.batch_size,
                            collate_fn=collate, generator=torch.Generator())
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for batch in loader:
                pred = model(batch["image"].to(device)).argmax(1).cpu()
                correct += int((pred == batch["label"]).sum())
                total += len(pred)
        model.train(was_training)
        if world > 1:
            correct, total = (float(distributed.sum_over_ranks(torch.tensor(float(x)))) for x in (correct, total))
        acc = correct / max(1, total)
        return {"score": acc, "accuracy": acc}

    def space_record(self, model) -> dict:
        """The checkpoint's ``space``: what the DARTS network was built with (``DartsSpec``)."""
        return model.cfg.to_dict()

    def describe(self) -> dict:
        """The current genotype (DARTS's or DOTS's rule) and its parameter-free op counts per cell."""
        if self.model is None:
            return {}
        genotype = genotype_dict(self.model.genotype())
        return {"genotype": genotype,
                "parameter_free": {c: count_ops(genotype[c]) for c in ("normal", "reduce")},
                "skip_connections": {c: count_ops(genotype[c], ("skip_connect",)) for c in ("normal", "reduce")}}

    def hooks(self) -> list:
        hooks = [GenotypeLogger()] + super().hooks()   # + Hessian tracking (run.hessian_every)
        if self.cfg.darts.topology == "dots":
            hooks.insert(0, DotsAnnealing())
        return hooks

    def hessian_settings(self):
        """RobustDARTS's: ``darts.hessian_batch`` images, ``darts.hessian_method``, DARTS-ES when
        ``darts.early_stop``."""
        from ssnas.engine.tracking import EarlyStopRule, HessianSettings
        g = self.cfg.darts
        rule = (EarlyStopRule(g.early_stop_factor, g.early_stop_window, g.early_stop_delta, g.early_stop_start)
                if g.early_stop else None)
        return HessianSettings(self.cfg.run.hessian_every, g.hessian_batch, g.hessian_method,
                               self.cfg.arch_optim.weight_decay, rule)


class GenotypeLogger(Hook):
    """Every epoch's genotype in metrics.jsonl (DARTS-ES keeps an earlier epoch's architecture)."""

    def epoch_end(self, trainer, epoch: int, record: dict) -> dict:
        return trainer.task.describe()


class DotsAnnealing(Hook):
    """DOTS's temperature for each search epoch: T = 10·(0.02/10)^progress, progress 0 at the first search
    epoch and 1 at the last (``dots_temperature``); set at the start of the epoch, logged at its end."""

    def epoch_start(self, trainer, epoch: int) -> None:
        trainer.model.set_topology_temperature(self.temperature(trainer.phases, epoch))

    @staticmethod
    def temperature(phases, epoch: int) -> float:
        first, last = phases.warmup_end, phases.search_end - 1
        return dots_temperature((epoch - first) / max(1, last - first))

    def epoch_end(self, trainer, epoch: int, record: dict) -> dict:
        return {"dots_temperature": trainer.model.temperature}

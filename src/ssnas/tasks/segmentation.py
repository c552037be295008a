"""The paper's task (``task: segmentation``): a registered search space (``model.space``, the grid by default)
on a segmentation dataset (``data.format``), scored by mIoU. Also the one place that rebuilds a supernet
from a checkpoint (:func:`load_model`). The contract is :class:`ssnas.tasks.Task`.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from ssnas.engine import distributed
from ssnas.engine.checkpoint import check_fields, load_checkpoint
from ssnas.engine.streams import BatchStream, collate, split_indices
from ssnas.errors import UserError
from ssnas.tasks import TaskBase, register_task


# From this many classes up, ATen's softmax over the last (class) dim is the faster layout for channels-last
# logits; below it, its kernel over dim 1 (vectorized across pixels) was faster: 6-8x with AVX-512 kernels
# (4-12 classes, bit-equal), 1.2-6x with AVX2 kernels except at exactly 8 classes (0.93x)
# (bench/bench_loss.py, docs/benchmarks.md).
NHWC_MIN_CLASSES = 16


def cross_entropy(logits: torch.Tensor, label: torch.Tensor, ignore_index: int, reduction: str = "mean"):
    """``F.cross_entropy`` over dim 1. Channels-last logits (the engine's layout) with ``NHWC_MIN_CLASSES`` or
    more classes go through their NHWC view, so the softmax runs over contiguous memory with no layout copy (the
    loss of a 256×512 batch of 19 classes: 1.8x faster)."""
    if (logits.dim() == 4 and logits.stride(1) == 1 and not logits.is_contiguous()
            and (logits.device.type != "cpu" or logits.shape[1] >= NHWC_MIN_CLASSES)):
        flat = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
        return F.cross_entropy(flat, label.reshape(-1), ignore_index=ignore_index, reduction=reduction)
    return F.cross_entropy(logits, label, ignore_index=ignore_index, reduction=reduction)


@register_task("segmentation")
class SegmentationTask(TaskBase):
    """The paper's task: a supernet (§3.1) on a segmentation dataset (Cityscapes or a folder dataset)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self._datasets = {}
        self.classes = None
        self._augment = None

    # ------------------------------------------------------------------ data
    def _prepare_data(self) -> None:
        d = self.cfg.data
        if d.make_demo and d.root and not Path(d.root).exists():  # a dataset already there is used as it is
            from ssnas.data.demo import make_demo_dataset
            from ssnas.data.demo_presets import PRESETS
            print(f"[ssnas] writing the embedded demo dataset ({d.demo_preset}) to {d.root}", flush=True)
            make_demo_dataset(d.root, seed=0, **PRESETS[d.demo_preset])

    def dataset(self, role: str):
        """Cached datasets: 'fine', 'coarse', 'both' (train split, augmented) and 'val'."""
        if role not in self._datasets:
            from ssnas.data import build_dataset
            d = self.cfg.data
            if not self._datasets:
                self._prepare_data()
            if role == "val":
                ds = build_dataset(d, d.val_split, train=False, labels="fine")
            else:
                ds = build_dataset(d, d.train_split, train=True, labels=role)
            if len(ds) == 0:
                raise UserError(f"{d.root}: split {d.val_split if role == 'val' else d.train_split!r} "
                                f"({role}) holds no image/label pairs")
            self._datasets[role] = ds
            self.classes = ds.classes
        return self._datasets[role]

    def num_classes(self) -> int:
        return self.dataset("val").classes.num_classes

    def build_streams(self, rank: int = 0, world: int = 1) -> dict:
        p, d = self.cfg.protocol, self.cfg.data
        pin = torch.cuda.is_available()

        def stream(labels, indices_of, name):
            if labels == "none":
                return None
            ds = self.dataset(labels)
            idx = indices_of(len(ds))
            return BatchStream(ds, idx, d.batch_size, self.cfg.seed, name, d.workers, rank, world, pin)

        a = stream(p.weight_labels, lambda n: split_indices(n, p.split, self.cfg.seed)[0], "A")
        b = None
        if p.search > 0:
            b = stream(p.arch_labels, lambda n: split_indices(n, p.split, self.cfg.seed)[1], "B")
        if a is None:
            raise UserError("protocol.weight_labels: 'none' leaves the weights without data, expected fine, "
                            "coarse or both")
        if p.search > 0 and b is None:
            raise UserError("protocol.arch_labels: 'none' leaves the architecture without data during the "
                            "search phase, expected fine, coarse or both")
        # Table 7: with fine+coarse weights, the fine-tune phase uses the fine labels only.
        finetune = a
        if p.weight_labels == "both":
            finetune = stream("fine", lambda n: split_indices(n, p.split, self.cfg.seed)[0], "finetune")
        return {"a": a, "b": b, "finetune": finetune}

    # ------------------------------------------------------------------ model
    def _create(self, num_classes: int):
        from ssnas.space.base import create_model

        m = self.cfg.model
        overrides = {k: getattr(m, k) for k in ("layers", "filters", "expansion", "sampling", "kernel_sizes",
                                                "mixture", "head_channels", "squeeze_excite", "shared_kernels")}
        return create_model(m.variant, space=m.space, num_classes=num_classes, **overrides, **m.options)

    def check(self) -> None:
        """The space's own keys (``model.options``) are checked by its builder: build it on the meta device
        (no memory, no data) before the run folder exists; so are ``model.discretize_edges`` against the space's
        cells and whether it can carry a cost term."""
        with torch.device("meta"):
            model = self._create(num_classes=2)
            if self.cfg.model.discretize_edges is not None:
                model.discretize(edges_per_cell=self.cfg.model.discretize_edges, ops=False)
        if self.cfg.cost.weight != 0 or self.cfg.cost.budget is not None:
            from ssnas.cost import cost_aware
            cost_aware(model, self.cfg.cost.metric)

    def build_model(self):
        m = self.cfg.model
        model = self._create(self.num_classes())
        if m.init_checkpoint:
            payload = load_checkpoint(m.init_checkpoint)
            _load_into(model, payload["model"], m.init_checkpoint, arch_only=False)
        if m.architecture_from:
            payload = load_checkpoint(m.architecture_from)
            _load_into(model, payload["model"], m.architecture_from, arch_only=True)
        if m.discretize_edges is not None or m.discretize_ops:
            model.discretize(edges_per_cell=m.discretize_edges, ops=m.discretize_ops)
        if m.prune_edges > 0:
            model.prune_edges(m.prune_edges)
        if self.cfg.cost.budget is not None:   # greedy discretization to a cost budget (export/budget.py)
            from ssnas.export.budget import apply_budget
            apply_budget(model, self.cfg)
        return model

    def augment(self, batch: dict, device) -> dict:
        """A training batch (uint8, with per-sample seeds) augmented on ``device`` (``data/augment.py``)."""
        if self._augment is None:
            from ssnas.data.augment import BatchAugment
            self._augment = BatchAugment(self.cfg.data)
        image, label = self._augment(batch["image"], batch["label"], batch["seed"], device)
        return {**batch, "image": image, "label": label}

    # ------------------------------------------------------------------ objective and metric
    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Cross-entropy averaged over the valid pixels of the whole (global) batch.

        Under DDP the ranks' gradients are averaged, and ranks hold different numbers of ignore pixels:
        each rank's summed loss is divided by the global count / world, so the average is exactly the
        one-process mean over the doubled batch (a per-rank mean would weight pixels unequally)."""
        label, ignore = batch["label"], self.cfg.data.ignore_index
        world = distributed.world_size()
        if world == 1:
            return cross_entropy(logits, label, ignore)
        total = cross_entropy(logits, label, ignore, reduction="sum")
        count = distributed.sum_over_ranks((label != ignore).sum().to(total.dtype))
        return total * world / count

    def val_loader(self, rank: int = 0, world: int = 1) -> DataLoader:
        ds = self.dataset("val")
        n = len(ds) if self.cfg.eval.max_images is None else min(len(ds), self.cfg.eval.max_images)
        shard = list(range(rank, n, world))
        return DataLoader(Subset(ds, shard), batch_size=self.cfg.data.eval_batch_size,
                          num_workers=min(self.cfg.data.workers, 2), collate_fn=collate,
                          generator=torch.Generator())  # leaves the global RNG alone (see streams.py)

    def evaluate(self, model, rank: int = 0, world: int = 1, **kwargs) -> dict:
        from ssnas.evaluation.inference import evaluate
        e = self.cfg.eval
        r = evaluate(model, self.val_loader(rank, world), self.num_classes(), scales=tuple(e.scales), flip=e.flip,
                     ignore_index=self.cfg.data.ignore_index, **kwargs)
        return {"score": r["miou"], **r}

    def space_record(self, model) -> dict:
        """The checkpoint's ``space``: the space's hyperparameters and its registered name (what
        ``checkpoint.model_from_checkpoint`` rebuilds the supernet from)."""
        return {**model.cfg.to_dict(), "search_space": model.space_name}

    def describe(self) -> dict:
        c = self.dataset("val").classes
        return {"classes": {"names": list(c.names), "colors": [list(map(int, col)) for col in c.colors],
                            "ignore_index": int(c.ignore_index)}}


def _load_into(model, state: dict, source: str, arch_only: bool) -> None:
    """Copy a checkpoint's weights and/or architecture (``arch_state_keys()``: α, β, masks) into ``model``."""
    keys = model.arch_state_keys()
    if arch_only:
        own = model.state_dict()
        for k in keys:
            if k not in state or state[k].shape != own[k].shape:
                found = tuple(state[k].shape) if k in state else "missing"
                raise UserError(f"{source}: its architecture ({k}: {found}) does not fit this model's "
                                f"({tuple(own[k].shape)}), expected the same search space and size")
        with torch.no_grad():
            for k in keys:
                own[k].copy_(state[k])
        return
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{source}: weights do not fit this model ({str(exc).splitlines()[0][:160]})") from None
    model.unfreeze_architecture()  # the protocol of this run decides when the architecture is frozen


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """(supernet with the checkpoint's weights and architecture, the checkpoint dict)."""
    payload = load_checkpoint(path, map_location, require=("model", "space"))
    return model_from_checkpoint(payload, path).to(map_location), payload


def model_from_checkpoint(payload: dict, path: str | Path):
    """The supernet a loaded checkpoint describes (its ``space`` record names the registered search space,
    ``search_space``; none: the grid), with its weights and architecture.

    The stored record is checked against the stored tensors (the space's ``check_checkpoint``, then the
    shapes of a copy built on the meta device: no memory) before the model is built: a crafted ``space``
    asking for a million layers is refused, not built until killed."""
    from ssnas.space.base import DEFAULT_SPACE, SPACES, create_model

    check_fields(payload, path, require=("model", "space"))
    space, state = dict(payload["space"]), payload["model"]
    name = space.pop("search_space", DEFAULT_SPACE)
    if name not in SPACES:
        raise UserError(f"{path}: written by a search space {name!r} this ssnas does not have, expected one of "
                        f"{', '.join(SPACES.names())}")
    check = SPACES.entry(name).meta.get("check_checkpoint")
    if check is not None:
        check(space, state, path)
    try:
        with torch.device("meta"):
            probe = create_model(space, space=name)
    except UserError as exc:
        raise UserError(f"{path}: stored space: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if expected != stored:
        diff = sorted(set(expected.items()) ^ set(stored.items()))[0]
        raise UserError(f"{path}: weights do not fit the stored space (first difference: {diff[0]} "
                        f"{'expected ' + str(expected.get(diff[0])) if diff[0] in expected else 'unexpected'}, "
                        f"stored {stored.get(diff[0], 'missing')})")
    model = create_model(space, space=name)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit the stored space ({str(exc).splitlines()[0][:160]})") from None
    return model

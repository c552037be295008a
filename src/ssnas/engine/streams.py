"""Batch streams A and B of the bilevel search (§3.2, Table 7), resumable to the exact batch.

A stream draws batches from a list of dataset indices forever, one seeded permutation per pass. Its
state is (pass, batches consumed), so a resumed run replays exactly the batches an uninterrupted run
would see. Each sample's augmentation is seeded from (seed, stream, pass, position), so the images are the
same too, whatever the number of workers. Under DDP each rank takes a disjoint shard of every batch list.
"""
from __future__ import annotations

import hashlib

import torch
from torch.utils.data import DataLoader, Dataset

from ssnas.errors import UserError


def stable_seed(*parts) -> int:
    """A 63-bit seed from any printable parts (stable across processes and Python runs)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` carries that seed as ``"seed"``: the task augments
    it on the training device with it (``data/augment.py``, ``darts/data.py``)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        return {**self.dataset[index], "seed": seed}


def collate(samples: list) -> dict:
    """Stack tensors of one shape; tensors of different shapes (training images of a folder dataset, before
    their crop) stay a list, other values too."""
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        same = isinstance(values[0], torch.Tensor) and all(v.shape == values[0].shape for v in values)
        out[key] = torch.stack(values) if same else values
    return out


class BatchStream:
    """Endless batches over ``indices`` of ``dataset``; ``state_dict()`` pins the position."""

    def __init__(self, dataset, indices, batch_size: int, seed: int, name: str, workers: int = 0,
                 rank: int = 0, world: int = 1, pin_memory: bool = False):
        self.dataset, self.indices = dataset, list(indices)
        self.batch_size, self.seed, self.name = batch_size, seed, name
        self.workers, self.rank, self.world, self.pin_memory = workers, rank, world, pin_memory
        per_pass = len(self.indices) // (batch_size * world)
        if per_pass == 0:
            raise UserError(f"data: stream {name!r} has {len(self.indices)} samples, fewer than one batch "
                            f"({batch_size} x {world} process(es)); lower data.batch_size")
        self.batches_per_pass = per_pass
        self.pass_index, self.consumed = 0, 0
        self._iter = None

    def _pass_batches(self, pass_index: int) -> list:
        g = torch.Generator().manual_seed(stable_seed(self.seed, self.name, pass_index))
        order = torch.randperm(len(self.indices), generator=g).tolist()
        global_bs = self.batch_size * self.world
        batches = []
        for b in range(self.batches_per_pass):
            chunk = order[b * global_bs:(b + 1) * global_bs]
            mine = chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            batches.append([(self.indices[i], stable_seed(self.seed, self.name, pass_index, b, i)) for i in mine])
        return batches

    def _start(self):
        batches = self._pass_batches(self.pass_index)[self.consumed:]
        # an own generator: starting an iterator draws a seed from it, not from the global RNG, so a
        # resumed run (which starts an extra iterator mid-pass) keeps the RNG of an uninterrupted one
        loader = DataLoader(SeededSamples(self.dataset), batch_sampler=batches, num_workers=self.workers,
                            collate_fn=collate, pin_memory=self.pin_memory,
                            persistent_workers=False,
                            generator=torch.Generator().manual_seed(stable_seed(self.seed, self.name,
                                                                                self.pass_index)))
        self._iter = iter(loader)

    def next(self) -> dict:
        if self._iter is None:
            self._start()
        try:
            batch = next(self._iter)
        except StopIteration:
            self.pass_index, self.consumed = self.pass_index + 1, 0
            self._start()
            batch = next(self._iter)
        self.consumed += 1
        if self.consumed == self.batches_per_pass:
            self.pass_index, self.consumed, self._iter = self.pass_index + 1, 0, None
        return batch

    def state_dict(self) -> dict:
        return {"pass": self.pass_index, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.pass_index, self.consumed = int(state["pass"]), int(state["consumed"])
        self._iter = None


def split_indices(n: int, mode: str, seed: int) -> tuple[list, list]:
    """Indices for weights (A) and architecture (B) by data-split mode (Table 7).

    ``joint``: A = B = everything (batches drawn separately). ``split``: disjoint seeded halves.
    ``half``: A = B = the same seeded half — the data budget of ``split`` without its disjointness.
    """
    if mode == "joint":
        return list(range(n)), list(range(n))
    g = torch.Generator().manual_seed(stable_seed(seed, "split"))
    perm = torch.randperm(n, generator=g).tolist()
    half = n // 2
    if half == 0:
        raise UserError(f"protocol.split={mode!r} needs at least 2 training images, found {n}")
    if mode == "split":
        return sorted(perm[:half]), sorted(perm[half:2 * half])
    if mode == "half":
        return sorted(perm[:half]), sorted(perm[:half])
    raise UserError(f"protocol.split: {mode!r}, expected joint, split or half")

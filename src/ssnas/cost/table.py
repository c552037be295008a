"""A per-candidate cost table: what each choice of the search space costs in the fused network.

The fused network (``export/fuse.py``) is a sum of parts, each present or not depending on the architecture:
the head (always), a stem branch per level, and per cell of the grid its incoming edges and its block(s).
The table holds the cost of each part *as folded* (BatchNorm in the convs, the up edge convolving before its
upsampling): ``head``, ``stem[i]``, ``edges[l][i][j]``, ``ops[l][i][k]`` (the block of kernel k),
``cell[l][i]`` (what a live cell costs besides its edges and block: nothing for FLOPs and parameters, the
ReLU its consumers apply for latency) and ``merge[l][i]`` (what is saved when a cell's down and same edges
run as one conv over their concatenated inputs: one bias for parameters). Where an entry does not exist
(an edge leaving the grid) it is 0.

A table is computed from the model for FLOPs and parameters (``cost/grid.py``, ``cost/dense.py``: the FLOP counter on each
part of the fused network) and measured on a device for latency (``cost/latency.py``, ``ssnas profile
--latency``), which writes it as JSON; ``cost.table`` reads it back.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ssnas.errors import UserError, check_version

FORMAT = "ssnas-cost-table"
VERSION = 1
# Space keys a table must agree on with the model it is used for (the head's classes are a few convs of a
# 1×1 kernel: a table measured for another number of classes is refused too, to keep sums exact).
SPACE_KEYS = ("layers", "filters", "expansion", "sampling", "kernel_sizes", "mixture", "head_channels",
              "squeeze_excite", "num_classes", "in_channels", "k", "level_span")   # the last two: dense only


@dataclass
class CostTable:
    metric: str
    input_size: list
    head: float
    stem: list
    edges: list
    ops: list
    cell: list
    merge: list
    space: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)   # how: counter / device, threads, runtime, repeats

    def tensors(self, dtype=torch.float64, device=None) -> dict:
        """The table as tensors (``stem`` (levels,), ``edges`` (L, levels, 3), ``ops`` (L, levels, K), …)."""
        kw = dict(dtype=dtype, device=device)
        return {k: torch.tensor(getattr(self, k), **kw) for k in ("head", "stem", "edges", "ops", "cell", "merge")}

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def save(self, path: str | Path) -> None:
        from ssnas.engine.checkpoint import atomic_write_bytes

        text = json.dumps(self.to_json(), indent=1).encode()
        atomic_write_bytes(path, lambda f: f.write(text))

    @classmethod
    def load(cls, path: str | Path, key: str = "cost.table") -> "CostTable":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{key}: {path} not found, expected a cost table written by `ssnas profile --latency`")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{key}: {path} is not JSON, expected a cost table written by `ssnas profile "
                            f"--latency`") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{key}: {path} is not an ssnas cost table (no '{FORMAT}' header)")
        check_version(data.get("version", 0), VERSION, f"{key}: {path}: cost table")
        data.pop("format"), data.pop("version")
        try:
            table = cls(**data)
            table.tensors()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{key}: {path} is a damaged cost table ({str(exc).splitlines()[0][:120]})") from None
        return table

    def check_space(self, space: dict, key: str = "cost.table") -> None:
        """Refuse a table made for another search space (one line naming the first differing key)."""
        for k in SPACE_KEYS:
            mine, theirs = self.space.get(k), space.get(k)
            if isinstance(mine, (list, tuple)) or isinstance(theirs, (list, tuple)):
                mine, theirs = list(mine or []), list(theirs or [])
            if mine != theirs:
                raise UserError(f"{key}: the table was made for {k}={mine!r}, this model has {k}={theirs!r}; "
                                f"measure one for this model (ssnas profile --latency --checkpoint RUN)")

"""Latency tables: each candidate of the grid timed in its fused form on one device (``ssnas profile
--latency``), and the latency of a whole fused network timed the same way (for checks and budgets).

Every part of the fused network (``export/fuse.py``) is a small module that runs exactly what
``FusedSegNet.forward`` runs for it, on inputs of the shapes it sees there:

- head: the input's padding, the upsampling and concatenation of the four levels, ``head_fuse`` → ReLU →
  ``classifier``, the final upsampling and crop;
- stem branch i: the input's resampling to 1/2^i and the branch, then the ReLU that layer 0 applies to it;
- edge (l, i, j): down: average pooling then the 1×1 conv; same: the conv; up: the conv at the coarse
  level then the bilinear upsampling;
- merge (l, i): the down and same edges as one conv over their concatenated inputs, recorded as what it
  saves against the two edges timed apart;
- block (l, i, k): the residual block of kernel k (``x + block(x)``);
- cell (l, i): what a live cell adds besides: the ReLU its consumers apply to its output (not in the last
  layer) and, with channel sampling, the concatenation of the bypassed channels.

Timing: eval mode, batch 1, under ``inference_mode``; one call per sample, in rounds that visit every part
once (so a load spike hits all parts alike, and a part's inputs and weights are not cache-hot from calling it
again and again, which in the network they are not either: timing each part in a tight loop made the table's
sums 7-38 % low on the development machine), and a part's latency is the median of its samples. The clock:
on the CPU at one compute thread the process's CPU time is taken (``measured.clock: process``): on a busy
machine the wall time of a 40-ms network includes the other processes' time slices while that of a 50-µs
part mostly does not, which made the sums ~55 % low on the loaded 2-core development machine; elsewhere
(several threads, CUDA with synchronization) the wall clock, so measure those on a quiet machine. Parts of
equal shapes (the grid's layers are alike) are timed once and their value copied, which the table's ``measured.shared`` records. ``--onnxruntime`` times
each part as its own ONNX model in an ONNX Runtime session instead; each ``session.run`` has a fixed cost
that a whole network pays once, so the cost of running a one-element model (``measured.call_overhead_ms``)
is taken off every part but the head.

Calibration: a sum of parts timed apart misses what a whole network does across part boundaries. With
ONNX Runtime (each part its own session: no node fusion across parts, no shared memory plan) the sums were
19-31 % above the measured networks, a steady bias that ranked architectures rightly but made budgets
pessimistic (docs/cost-aware.md). So the fused networks of a few reference architectures (random one-hot
ones, one edge and one kernel per cell, drawn with fixed seeds) are timed in the same rounds as the parts,
and every entry is scaled by Σ measured / Σ table sum over them (``measured.calibration`` keeps the figures
and the scale; the raw entries are the stored ones divided by it). A search's own argmax would be a poor
reference: on an unsearched model it is one extreme path. The architectures that check a table
(``bench/bench_cost_latency.py``) are drawn with other seeds.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.cost.expected import discrete_cost, kept_choices
from ssnas.cost.grid import complete_spec
from ssnas.cost.table import CostTable
from ssnas.space.fused import FusedSegNet, _conv
from ssnas.space.backbone import EDGE_OFFSETS
from ssnas.space.topology import DOWN, SAME, UP, pad_to_stride, padded_size



# ---------------------------------------------------------------------------- the parts
class _Head(nn.Module):
    def __init__(self, net: FusedSegNet):
        super().__init__()
        self.head_fuse, self.classifier = net.head_fuse, net.classifier

    def forward(self, x, f0, f1, f2, f3):
        h, w = x.shape[-2:]
        x = pad_to_stride(x, always=True)
        base = f0.shape[-2:]
        ups = [f0] + [F.interpolate(f, size=base, mode="bilinear", align_corners=False) for f in (f1, f2, f3)]
        logits = self.classifier(F.relu(self.head_fuse(torch.cat(ups, 1))))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


class _Stem(nn.Module):
    def __init__(self, branch, level: int):
        super().__init__()
        self.branch, self.level = branch, level

    def forward(self, x):
        xi = x if self.level == 0 else F.interpolate(x, scale_factor=0.5 ** self.level, mode="bilinear",
                                                     align_corners=False)
        return F.relu(self.branch(xi))


class _Edge(nn.Module):
    def __init__(self, conv, slot: int, size):
        super().__init__()
        self.conv, self.slot, self.size = conv, slot, list(size)

    def forward(self, a):
        if self.slot == DOWN:
            return self.conv(F.avg_pool2d(a, 2))
        if self.slot == UP:
            return F.interpolate(self.conv(a), size=self.size, mode="bilinear", align_corners=False)
        return self.conv(a)


class _Merged(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _conv(cin, cout)

    def forward(self, finer, same):
        return self.conv(torch.cat([F.avg_pool2d(finer, 2), same], 1))


class _Block(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


class _Nothing(nn.Module):
    """A one-element add: what an ONNX Runtime ``session.run`` costs besides the work."""

    def forward(self, x):
        return x + 1


class _CellRest(nn.Module):
    def __init__(self, op_channels: int, relu: bool):
        super().__init__()
        self.op_channels, self.relu = op_channels, relu

    def forward(self, x):
        if self.op_channels < x.shape[1]:
            x = torch.cat([x[:, : self.op_channels], x[:, self.op_channels:]], 1)
        return F.relu(x) if self.relu else x


def level_shapes(spec: dict, input_size) -> list:
    """(C, H, W) of each level's feature map in the fused network for an H×W input (padded to 32)."""
    h, w = padded_size(input_size)
    return [(c, h // (4 * 2 ** i), w // (4 * 2 ** i)) for i, c in enumerate(spec["widths"])]


def parts(model, input_size, device="cpu") -> list:
    """[(name, signature, module, inputs)] for every candidate part of ``model``'s grid (module docstring)."""
    spec = complete_spec(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = FusedSegNet(spec).eval().to(device)
    shapes = level_shapes(spec, input_size)
    widths, levels, L = spec["widths"], len(spec["widths"]), len(spec["cells"])
    x = torch.randn(1, spec["in_channels"], *input_size, device=device)
    feat = [torch.randn(1, *s, device=device) for s in shapes]
    out = [("head", ("head",), _Head(net), (x, *feat))]
    for i in range(levels):
        out.append((f"stem.{i}", ("stem", i), _Stem(net.stem[str(i)], i), (x,)))
    for l in range(L):
        for i in range(levels):
            fcell, cell = net.layers[l][str(i)], spec["cells"][l][i]
            fine = [j for j in cell["edges"] if j != UP]
            for n, j in enumerate(fine):
                src = i + EDGE_OFFSETS[j]
                out.append((f"edges.{l}.{i}.{j}", ("edge", i, j), _Edge(fcell.fine[n], j, shapes[i][1:]), (feat[src],)))
            if UP in cell["edges"]:
                out.append((f"edges.{l}.{i}.{UP}", ("edge", i, UP), _Edge(fcell.up, UP, shapes[i][1:]),
                            (feat[i + 1],)))
            if DOWN in fine and SAME in fine:
                merged = _Merged(widths[i - 1] + widths[i], widths[i]).eval().to(device)
                out.append((f"merged.{l}.{i}", ("merged", i), merged, (feat[i - 1], feat[i])))
            sampled = torch.randn(1, cell["op_channels"], *shapes[i][1:], device=device)
            for k, block in enumerate(fcell.blocks):
                out.append((f"ops.{l}.{i}.{k}", ("op", i, k), _Block(block), (sampled,)))
            out.append((f"cell.{l}.{i}", ("cell", i, l < L - 1), _CellRest(cell["op_channels"], l < L - 1),
                        (feat[i],)))
    return out


# ---------------------------------------------------------------------------- timing
def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _ort_runner(module, inputs, threads: int, tmp: Path, name: str):
    import onnxruntime as ort

    path = tmp / f"{name}.onnx"
    names = [f"in{n}" for n in range(len(inputs))]
    import warnings

    with warnings.catch_warnings():   # the tracer's notes on shape-dependent branches: shapes are fixed here
        warnings.simplefilter("ignore")
        torch.onnx.export(module.cpu(), tuple(t.cpu() for t in inputs), str(path), input_names=names, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {n: t.cpu().numpy() for n, t in zip(names, inputs)}
    return lambda: session.run(None, feed)


def pick_clock(device, threads: int | None, runtime: str) -> str:
    """``process`` (this process's CPU time) on the CPU with one compute thread — torch's ops then run in the
    calling thread, ONNX Runtime's in one thread of its own — so that other processes on a busy machine do not
    count; ``wall`` otherwise (several threads, or CUDA)."""
    one = (threads or torch.get_num_threads()) == 1
    return "process" if str(device).startswith("cpu") and one else "wall"


def time_callables(fns: dict, device="cpu", rounds: int = 30, warmup: int = 3, clock: str = "wall") -> dict:
    """Median ms of each zero-argument callable: one call per sample, in interleaved rounds (module docstring).

    ``clock``: ``wall`` (perf_counter) or ``process`` (process_time: CPU time of this process, see
    :func:`pick_clock`)."""
    now = time.process_time if clock == "process" else time.perf_counter
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            start = now()
            fn()
            _sync(device)
            samples[name].append((now() - start) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


CALIBRATION_SEEDS = (1001, 1002, 1003)   # the reference architectures; checks use seeds 0, 1, …


def random_one_hot(model, seed: int):
    """A copy of ``model`` with random α, β (seeded), decoded to one edge and one kernel per cell."""
    import copy

    ref = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ref.alpha.copy_(torch.randn(ref.alpha.shape, generator=g))
        ref.beta.copy_(torch.randn(ref.beta.shape, generator=g))
    ref.discretize(edges_per_cell=1, ops=True)
    return ref


def measure_table(model, input_size, device="cpu", threads: int | None = None, runtime: str = "torch",
                  rounds: int = 30, warmup: int = 3, progress=None, extra: dict | None = None,
                  calibrate: bool = True) -> CostTable:
    """The latency table (ms) of ``model``'s candidates at ``input_size`` on ``device`` (module docstring).

    ``extra``: more zero-argument callables timed in the same rounds (e.g. whole networks, for a check that
    is not skewed by load drifting between two sessions); their medians land in ``table.measured["extra"]``.
    ``calibrate``: scale the entries so that they add up to the measured reference networks (docstring)."""
    from ssnas.export import fuse_supernet   # here: export's budget imports this package

    if threads:
        torch.set_num_threads(threads)
    all_parts = parts(model, input_size, device)
    extra = extra or {}
    references = {("reference", seed): random_one_hot(model, seed) for seed in CALIBRATION_SEEDS} if calibrate \
        else {}
    networks = {**extra, **{k: network_callable(fuse_supernet(m), input_size, device, runtime, threads)
                            for k, m in references.items()}}   # timed in the same rounds as the parts
    unique = {}
    for name, sig, module, inputs in all_parts:
        unique.setdefault(sig, (name, module, inputs))
    fns = {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for sig, (name, module, inputs) in unique.items():
            if runtime == "onnxruntime":
                with torch.inference_mode(False), torch.no_grad():
                    fns[sig] = _ort_runner(module, inputs, threads or torch.get_num_threads(), Path(tmp), name)
            else:
                fns[sig] = (lambda m, a: (lambda: m(*a)))(module, inputs)
        if runtime == "onnxruntime":   # what one session.run costs by itself: paid once by a whole network
            with torch.inference_mode(False), torch.no_grad():
                fns[("call",)] = _ort_runner(_Nothing(), (torch.zeros(1),), threads or torch.get_num_threads(),
                                             Path(tmp), "nothing")
        if progress:
            progress(f"timing {len(fns)} distinct parts ({len(all_parts)} in all), {rounds} rounds")
        clock = pick_clock(device, threads, runtime)
        ms = time_callables({**fns, **{("extra", k): f for k, f in networks.items()}}, device, rounds, warmup,
                            clock)
    spec = complete_spec(model)
    L, levels, K = len(spec["cells"]), len(spec["widths"]), len(model.cfg.kernel_sizes)
    table = CostTable(metric="latency", input_size=list(input_size), head=0.0, stem=[0.0] * levels,
                      edges=[[[0.0] * len(EDGE_OFFSETS) for _ in range(levels)] for _ in range(L)],
                      ops=[[[0.0] * K for _ in range(levels)] for _ in range(L)],
                      cell=[[0.0] * levels for _ in range(L)], merge=[[0.0] * levels for _ in range(L)],
                      space=model.cfg.to_dict())
    call = ms.get(("call",), 0.0)
    for name, sig, _, _ in all_parts:
        v = ms[sig] if name == "head" else max(0.0, ms[sig] - call)   # one call's overhead per network (head's)
        kind, *idx = name.split(".")
        idx = [int(n) for n in idx]
        if kind == "head":
            table.head = v
        elif kind == "stem":
            table.stem[idx[0]] = v
        elif kind == "edges":
            table.edges[idx[0]][idx[1]][idx[2]] = v
        elif kind == "ops":
            table.ops[idx[0]][idx[1]][idx[2]] = v
        elif kind == "cell":
            table.cell[idx[0]][idx[1]] = v
    for name, sig, _, _ in all_parts:
        if name.startswith("merged."):
            l, i = (int(n) for n in name.split(".")[1:])
            table.merge[l][i] = table.edges[l][i][DOWN] + table.edges[l][i][SAME] - max(0.0, ms[sig] - call)
    table.measured = {"how": "timed", "device": str(device), "runtime": runtime,
                      "threads": threads or torch.get_num_threads(), "rounds": rounds, "statistic": "median",
                      "clock": clock,
                      "torch": torch.__version__, "shared": f"{len(unique)} distinct parts timed for {len(all_parts)}"}
    if runtime == "onnxruntime":
        table.measured["call_overhead_ms"] = call
    if references:
        network = [ms[("extra", k)] for k in references]
        raw = [discrete_cost(table, *kept_choices(m), m.slots) for m in references.values()]
        scale = sum(network) / sum(raw) if sum(raw) > 0 else 1.0
        for key in ("stem", "edges", "ops", "cell", "merge"):
            setattr(table, key, _scaled(getattr(table, key), scale))
        table.head *= scale
        table.measured["calibration"] = {"references": "random one-hot architectures, seeds "
                                         f"{list(CALIBRATION_SEEDS)}", "network_ms": network, "parts_sum_ms": raw,
                                         "scale": scale}
    if extra:
        table.measured["extra"] = {k: ms[("extra", k)] for k in extra}
    return table


def _scaled(entries, scale: float):
    return [_scaled(e, scale) for e in entries] if isinstance(entries, list) else entries * scale


def network_callable(net, input_size, device="cpu", runtime: str = "torch", threads: int | None = None):
    """A zero-argument callable running one forward of ``net`` (a fused network) as the parts run."""
    net = net.eval().to(device)
    x = torch.randn(1, net.spec["in_channels"], *input_size, device=device)
    if runtime == "onnxruntime":
        tmp = tempfile.mkdtemp(prefix="ssnas-latency-")
        with torch.no_grad():
            return _ort_runner(net, (x,), threads or torch.get_num_threads(), Path(tmp), "net")

    def run():
        with torch.inference_mode():
            return net(x)
    return run


def network_latency(net, input_size, device="cpu", runtime: str = "torch", threads: int | None = None,
                    rounds: int = 30, warmup: int = 3) -> float:
    """Median ms of one forward of ``net`` (a fused network) on a 1×C×H×W input, timed as the parts are."""
    if threads:
        torch.set_num_threads(threads)
    return time_callables({"net": network_callable(net, input_size, device, runtime, threads)}, device, rounds,
                          warmup, pick_clock(device, threads, runtime))["net"]

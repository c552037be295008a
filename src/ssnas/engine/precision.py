"""``run.amp: auto``: train in bf16 autocast only where it is faster than fp32 on this machine.

- CUDA: by capability. bf16 tensor cores exist from compute capability 8.0 (Ampere) on; older GPUs get fp32.
- CPU: by a short measured probe, because the instruction set does not decide it: on AVX-512-BF16 and even AMX
  CPUs bf16 autocast was slower than fp32 for the supernet's small depthwise/1x1 convolutions (the casts around
  every convolution and the BatchNorms in fp32 cost more than the narrower arithmetic saves;
  docs/benchmarks.md, "bf16 on CPU"). The probe times forward + backward of the supernet's own cell operation
  in fp32 and in bf16 autocast, interleaved, and picks bf16 only if it is at least ``BF16_MARGIN`` faster. The
  verdict is cached per CPU model, instruction set, torch version and thread count under the user's cache
  directory (``$XDG_CACHE_HOME/ssnas`` or ``~/.cache/ssnas``), so the probe runs once per machine.

fp16 is never chosen automatically: it needs a gradient scaler and has a narrower range; ask for it by name.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from ssnas.hardware import cpu_model, cpu_tag

CUDA_BF16_CAPABILITY = (8, 0)   # Ampere: first GPUs with bf16 tensor cores
BF16_MARGIN = 1.10              # bf16 must be >= 10% faster (it also rounds to 8 mantissa bits)
PROBE_SHAPE = (2, 32, 64, 64)   # batch, channels, height, width of the probe's cell input (level-0 like)
PROBE_EXPANSION = 3             # the variants' expansion ratio
PROBE_KERNELS = (3, 5, 7)
PROBE_ROUNDS = 5                # interleaved fp32/bf16 rounds after one warm-up each
CACHE_FILE = "amp_probe.json"


def cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "ssnas" / CACHE_FILE


def resolve_amp(setting: str, device: torch.device) -> tuple[str, str]:
    """(amp actually used: none | bf16 | fp16, why). ``setting`` other than ``auto`` is kept as it is."""
    if setting != "auto":
        return setting, "set in the config"
    if device.type == "cuda":
        cap = torch.cuda.get_device_capability(device)
        if cap >= CUDA_BF16_CAPABILITY and torch.cuda.is_bf16_supported():
            return "bf16", f"CUDA capability {cap[0]}.{cap[1]} has bf16 tensor cores"
        return "none", f"CUDA capability {cap[0]}.{cap[1]} has no bf16 tensor cores"
    if device.type != "cpu":
        return "none", f"no bf16 rule for device {device.type}"
    probe = cpu_probe()
    ratio = probe["fp32_s"] / probe["bf16_s"]
    choice = "bf16" if ratio >= BF16_MARGIN else "none"
    return choice, (f"CPU probe ({probe['cpu']}, {probe['threads']} thread(s)): bf16 autocast {ratio:.2f}x the "
                    f"speed of fp32 (bf16 needs >= {BF16_MARGIN:.2f}x){' [cached]' if probe.get('cached') else ''}")


def _cache_key() -> str:
    return f"{cpu_model()}|{cpu_tag()}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def cpu_probe(use_cache: bool = True) -> dict:
    """Seconds (CPU time, median) of the probe in fp32 and bf16 autocast; cached per ``_cache_key()``."""
    path, key = cache_path(), _cache_key()
    cache = {}
    if use_cache:
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
        if isinstance(cache, dict) and isinstance(cache.get(key), dict):
            return {**cache[key], "cached": True}
    result = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              **_measure(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if not isinstance(cache, dict):
        cache = {}
    cache[key] = result
    try:  # a cache that cannot be written only means the probe runs again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass
    return result


def _measure() -> dict:
    """Forward + backward of one cell operation (the supernet's InvertedBottleneck), fp32 vs bf16 autocast,
    interleaved round by round; CPU time, so other jobs on the machine distort it less."""
    from ssnas.space.operations import InvertedBottleneck

    gen = torch.Generator().manual_seed(0)
    b, c, h, w = PROBE_SHAPE
    with torch.random.fork_rng():   # the probe must not move the run's random stream
        torch.manual_seed(0)
        op = InvertedBottleneck(c, PROBE_EXPANSION, PROBE_KERNELS).to(memory_format=torch.channels_last)
    x = torch.randn(b, c, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    mix = torch.full((len(PROBE_KERNELS),), 1.0 / len(PROBE_KERNELS))

    def step(dtype):
        op.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
            y = op(x, mix)
        y.float().square().mean().backward()

    times = {torch.float32: [], torch.bfloat16: []}
    for r in range(PROBE_ROUNDS + 1):
        for dtype in times:
            start = time.process_time()
            step(dtype)
            if r:
                times[dtype].append(time.process_time() - start)
    return {"fp32_s": statistics.median(times[torch.float32]), "bf16_s": statistics.median(times[torch.bfloat16])}

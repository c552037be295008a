"""What the host CPU is, for caches of machine-specific results (compiled kernels, the bf16 probe)."""
from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()`` or the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=None)
def cpu_tag() -> str:
    """A short hash of the CPU model and its instruction-set flags: code built with ``-march=native`` on one
    machine must not be loaded on another with a different instruction set (a shared home directory)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return hashlib.sha1(f"{cpu_model()}|{platform.machine()}|{flags}".encode()).hexdigest()[:10]


STEADY_ALLOCATOR = "glibc, fixed mmap/trim thresholds"   # a latency table's ``measured.allocator`` after it


def steady_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds (1 GiB) for this process; True if it took effect.

    By default glibc adapts its mmap threshold to past frees, so a network's large buffers may be mapped,
    unmapped and page-faulted again on every call, depending on what ran before in the process: a fused
    network measured 9.8 ms in one process state and 8.0 ms in another (docs/cost-aware.md). Latency
    measurement calls this once, in its own process, so that parts and whole networks are timed alike; CPU
    training calls it at set-up (``run.steady_allocator``), so that a step's large activations and gradients
    are reused from the heap instead of being page-faulted anew (docs/benchmarks.md). Results do not change:
    only where the memory comes from."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):   # not glibc (musl has no mallopt)
        return False

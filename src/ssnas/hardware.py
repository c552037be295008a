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

"""The depthwise convolution of a cell, with a faster weight gradient on CPU.

On CPU, oneDNN's depthwise *weight*-gradient kernel took 5-16x the time of the forward convolution at the
supernet's shapes: a quarter of a whole search iteration (docs/benchmarks.md, "Faster search iteration").
``depthwise_conv`` computes the same convolution as a C++ autograd operator (``torch.ops.ssnas.dw_conv``):
its backward takes the input gradient from ATen and the weight gradient from a small C++ loop
(``csrc/depthwise_weight_grad.cpp``), built once with torch's extension builder and cached under the user's
torch extensions directory.

The plain ATen path is used where the loop does not apply or cannot be built: on GPUs, other dtypes or
autocast, kernel
sizes it was not compiled for, under ``torch.compile``, without autograd, and for double backward (the Hessian
tracking differentiates twice: the backward then falls back to differentiable ATen ops). ``SSNAS_CPU_KERNELS=0``
turns the loop off (e.g. to compare against ATen).
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ssnas.hardware import cpu_tag

KERNEL_SIZES = (3, 5, 7, 9)      # compiled into the C++ loop (template instances)
SOURCE = Path(__file__).resolve().parent / "csrc" / "depthwise_weight_grad.cpp"
ENV_SWITCH = "SSNAS_CPU_KERNELS"
EXTENSION_NAME = "ssnas_depthwise_weight_grad"
# ATen's parallel_for is a header template: without -fopenmp it compiles to a serial loop, and the kernel
# took as long at 2 threads as at 1 (docs/benchmarks.md). torch's Linux wheels ship GNU OpenMP (libgomp.so.1),
# which the build links against by soname, so the loop joins torch's own thread pool. Elsewhere: serial.
OPENMP_FLAGS = ("-fopenmp",) if sys.platform.startswith("linux") else ()


@functools.lru_cache(maxsize=None)
def _extension():
    """The compiled operators (``torch.ops.ssnas``: ``dw_conv``, ``dw_weight_grad``), or None (no compiler, build
    error, switched off): one message, then ATen."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    # built with -march=native: one build per instruction set; and per source text and location, so that two
    # ssnas checkouts on one machine never rebuild each other's copy (ninja rebuilds when the path changes)
    source_hash = hashlib.sha1(SOURCE.read_bytes() + str(SOURCE).encode()).hexdigest()[:8]
    name = f"{EXTENSION_NAME}_{cpu_tag()}_{source_hash}"
    try:
        from torch.utils import cpp_extension

        try:
            built = any(Path(cpp_extension._get_build_directory(name, False)).glob(f"{name}*.so"))
        except Exception:
            built = False
        if not built:
            print("[ssnas] building the depthwise CPU kernel (once per machine, about a minute)", file=sys.stderr)
        cpp_extension.load(name, [str(SOURCE)], extra_cflags=["-O3", "-march=native", *OPENMP_FLAGS],
                           extra_ldflags=list(OPENMP_FLAGS), verbose=False, is_python_module=False)
        return torch.ops.ssnas
    except Exception as exc:  # a missing compiler must not stop training: ATen computes the same gradient
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        print(f"[ssnas] depthwise CPU kernel not built ({first}); using ATen's (slower) weight gradient",
              file=sys.stderr)
        return None


def cpu_kernel_available() -> bool:
    return _extension() is not None


def _applies(x: Tensor, weight: Tensor) -> bool:
    k = weight.shape[-1]
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")   # bf16 autocast: ATen's bf16 kernels
            and x.dim() == 4 and weight.shape[-2] == k and k in KERNEL_SIZES and torch.is_grad_enabled()
            and (x.requires_grad or weight.requires_grad) and _extension() is not None)


def depthwise_conv(x: Tensor, weight: Tensor) -> Tensor:
    """Stride-1 depthwise convolution with "same" zero padding: ``F.conv2d(x, weight, None, 1, k // 2, 1, C)``."""
    if not torch.compiler.is_compiling() and _applies(x, weight):   # checked first: Dynamo traces nothing else
        return _extension().dw_conv(x, weight)
    k = weight.shape[-1]
    return F.conv2d(x, weight, None, 1, k // 2, 1, x.shape[1])


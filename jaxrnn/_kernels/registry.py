"""The kernels by name, the settings value of the Pallas kernels, and where ``auto`` picks one.

Adding a kernel is one module implementing :class:`jaxrnn._kernels.interface.Kernel`
and one line in :data:`_MODULES`.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from jaxrnn._kernels.interface import PRECISIONS

TARGETS = ("gpu", "tpu")

# kernel name -> module; imported on first use, so that `import jaxrnn` loads no Pallas.
_MODULES = {
    "xla": "jaxrnn._kernels.xla",
    "gpu": "jaxrnn._kernels.pallas_gpu",
    "tpu": "jaxrnn._kernels.pallas_tpu",
    "cpu": "jaxrnn._kernels.cpu",
}

_PLATFORM_TARGET = {"gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}

# Where backend="auto" picks the Pallas kernel: (target, kind) -> the largest hidden size
# at which a committed device benchmark (benchmarks/results/) measured the kernel faster
# than the XLA path. No device run has been committed yet, so "auto" is XLA everywhere.
AUTO_PALLAS: dict = {}

# Where backend="auto" picks the C++ CPU kernel on a CPU: the built-in kinds for which the
# committed CPU benchmark measured it faster than the XLA path, fwd+bwd, at every shape it ran
# (benchmarks/results/cpu-2026-11-30/cpu_kernel/: LSTM and GRU 0.26-0.73x of the XLA path's
# time; Elman 0.67-1.17x, so Elman stays on XLA).
AUTO_CPU: frozenset = frozenset({"lstm", "gru"})


class Pallas(NamedTuple):
    """Settings of the fused Pallas kernels: ``jr.rnn(..., backend=jr.Pallas(...))``.

    ``backend="pallas"`` is ``Pallas()``: the kernels for the default device's
    platform, compiled, in full float32.

    Attributes:
      target: ``"gpu"`` (Triton kernels: time loop and recurrent weights inside one
        program per batch tile) or ``"tpu"`` (Mosaic kernels: weights in VMEM, time
        a sequential grid axis); None: the default device's platform.
      interpret: run the kernels in Pallas interpret mode (any platform, CPU
        included; slow; what the tests use).
      precision: ``"highest"`` (full float32 products) or ``"fast"`` (TF32 on GPU,
        bfloat16 products on TPU; float32 accumulation). The errors of each against
        a float64 reference are measured in the README.

    Example:
      >>> import jaxrnn as jr
      >>> jr.Pallas(target="tpu", interpret=True)
      Pallas(target='tpu', interpret=True, precision='highest')
    """

    target: str | None = None
    interpret: bool = False
    precision: str = "highest"

    def checked(self) -> Pallas:
        """This value, or a ValueError naming the field that is out of range."""
        if self.target is not None and self.target not in TARGETS:
            raise ValueError(f"Pallas target must be one of {TARGETS} or None, got {self.target!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Pallas precision must be one of {PRECISIONS}, got {self.precision!r}.")
        return self


class CPUKernel(NamedTuple):
    """Settings of the C++ CPU kernel: ``jr.rnn(..., backend=jr.CPUKernel(...))``.

    ``backend="cpu"`` is ``CPUKernel()``. The kernel is compiled on first use into a
    per-user cache (a C++17 compiler is needed once; see the README).

    Attributes:
      threads: the most threads one call uses, taken from XLA's own intra-op pool
        (None: as many as the pool has; 1: the calling thread only).

    Example:
      >>> import jaxrnn as jr
      >>> jr.CPUKernel(threads=1)
      CPUKernel(threads=1)
    """

    threads: int | None = None

    def checked(self) -> CPUKernel:
        """This value, or a ValueError naming the field that is out of range."""
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ValueError(f"CPUKernel threads must be a positive int or None, got {self.threads!r}.")
        return self


def kernel(name: str):
    """The kernel module called ``name`` (``"xla"``, ``"gpu"``, ``"tpu"`` or ``"cpu"``), imported on first use."""
    return importlib.import_module(_MODULES[name])


def pallas_target(platform: str) -> str | None:
    """The Pallas kernels for a device platform (``"gpu"`` or ``"tpu"``), None where there are none."""
    return _PLATFORM_TARGET.get(platform)

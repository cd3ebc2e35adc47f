"""How a run covers time and is differentiated: one frozen value, resolved in one place.

The keyword arguments of :func:`jaxrnn.rnn` (``grad``, ``truncate``, ``remat``,
``residuals``, ``unroll``, ``backend``, ``solver``) are the user's shorthand. :func:`resolve`
turns them into one :class:`Strategy`, refusing invalid combinations with a
message that names the fix, and the time loop (:mod:`jaxrnn._core.loop`) reads
only that value. As with diffrax's adjoints, a strategy carries its options.
A new way to run the loop (a parallel solver, a kernel) adds a field value here
and one line in :func:`jaxrnn._core.loop.dispatch`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._core import newton
from jaxrnn._core.cells import builtin_kind
from jaxrnn._core.checks import check_positive_int
from jaxrnn._kernels import registry, sharding
from jaxrnn._kernels.registry import CPUKernel, Pallas

GRAD_MODES = ("bptt", "autodiff")
RESIDUALS = ("states", "gates")
SOLVERS = ("sequential", "parallel")
BACKENDS = ("auto", "xla", "pallas", "cpu")

# lax.scan unroll by backend. CPU: measured in benchmarks/NOTES.md ("unroll on CPU").
# GPU/TPU: BASELINES.md measured unroll 8 near the best at batch >= 16 on an H100.
_DEFAULT_UNROLL = {"cpu": 1, "gpu": 8, "cuda": 8, "rocm": 8, "tpu": 8}


def default_unroll() -> int:
    """The ``lax.scan`` unroll that :func:`jaxrnn.rnn` uses on the default backend.

    Returns:
      An int: the measured best on CPU, 8 on GPU and TPU (see ``benchmarks/NOTES.md``).

    Example:
      >>> import jaxrnn as jr
      >>> jr.default_unroll() >= 1
      True
    """
    return _DEFAULT_UNROLL.get(jax.default_backend(), 1)


class Strategy(NamedTuple):
    """How one run of the time loop is executed and differentiated (frozen, hashable).

    Made by :func:`resolve` from the keyword arguments of :func:`jaxrnn.rnn`.
    """

    grad: str = "bptt"  # "bptt" (hand-written reverse) | "autodiff" (jax.grad of the plain scan)
    truncate: int | None = None  # gradient horizon in steps, or None
    remat: int | None = None  # recompute chunks of this many steps in the backward pass, or None
    residuals: str = "gates"  # what the forward keeps for the reverse: "gates" | "states"
    unroll: int | bool = 1  # lax.scan unroll of the sequential loops
    # how the forward covers time: "sequential" (a scan), "parallel" (an associative scan) or a
    # Newton solver (jr.DEER, jr.QuasiDEER, jr.ELK, jr.QuasiELK; its guess kept out, so hashable)
    solver: Any = "sequential"
    # the kernel of a sequential loop: "xla", a Pallas with its target, or the C++ CPUKernel
    backend: str | Pallas | CPUKernel = "xla"


def check_backend(backend) -> str | Pallas | CPUKernel:
    """``backend`` as ``"auto"``, ``"xla"``, a checked :class:`Pallas` or :class:`CPUKernel`; else a ValueError."""
    if isinstance(backend, (Pallas, CPUKernel)):
        return backend.checked()
    if backend == "pallas":
        return Pallas()
    if backend == "cpu":
        return CPUKernel()
    if isinstance(backend, str) and backend in BACKENDS:
        return backend
    raise ValueError(f"backend must be one of {BACKENDS}, a jr.Pallas(...) or a jr.CPUKernel(...), got {backend!r}.")


def _check_options(grad, truncate, remat, residuals, unroll):
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}.")
    if residuals not in RESIDUALS:
        raise ValueError(f"residuals must be one of {RESIDUALS}, got {residuals!r}.")
    truncate = check_positive_int(truncate, "truncate", allow_none=True)
    remat = check_positive_int(remat, "remat", allow_none=True)
    if remat is not None and truncate is not None and remat % truncate:
        raise ValueError(
            f"remat must be a multiple of truncate, so that truncation points line up with the "
            f"recomputed chunks; got remat={remat} and truncate={truncate}. Try remat={truncate * max(1, remat // truncate)}."
        )
    if unroll is None:
        unroll = default_unroll()
    elif not isinstance(unroll, bool):
        unroll = check_positive_int(unroll, "unroll")
    return truncate, remat, unroll


def _cell_name(cell) -> str:
    return getattr(cell, "name", type(cell).__name__)


def _check_time_split(name: str, remat, num_steps: int) -> None:
    """The ambient mesh's sequence axis can split this call's time axis for solver ``name``."""
    if sharding.sequence_axis_is_explicit():
        raise ValueError(
            f"solver={name!r} under a mesh whose axis {sharding.SEQUENCE_AXIS!r} is Explicit: the solver splits "
            f"time over it itself and needs it Auto. Make the mesh with axis_types=(jax.sharding.AxisType.Auto,) * "
            f"len(axis_names), e.g. jax.make_mesh(shape, names, axis_types=...)."
        )
    devices = sharding.sequence_devices()
    if devices > 1:
        if num_steps % devices:
            raise ValueError(
                f"xs has {num_steps} time steps, which the mesh axis {sharding.SEQUENCE_AXIS!r} of "
                f"{devices} devices does not divide: solver={name!r} splits time into equal chunks. "
                f"Pad xs to {-(-num_steps // devices) * devices} steps (and pass lengths) or change the mesh."
            )
        if remat is not None:
            raise ValueError(
                f"remat={remat} with solver={name!r} under the mesh axis {sharding.SEQUENCE_AXIS!r}: the "
                f"time axis is already split over {devices} devices, each holding T/{devices} steps; drop remat."
            )


def _resolve_newton(solver, grad: str, remat, backend, num_steps: int):
    """A checked Newton solver without its guess (a value of the frozen strategy)."""
    solver = newton.check_solver(solver)._replace(guess=None)
    name = type(solver).__name__
    if grad != "bptt":
        raise ValueError(
            f"solver=jr.{name}(...) needs grad='bptt': its gradient is implicit, the BPTT equations at the "
            f"converged trajectory, never a differentiation through the iterations. grad='autodiff' is the "
            f"sequential reference: use solver='sequential' with it."
        )
    if remat is not None:
        raise ValueError(
            f"remat={remat} with solver=jr.{name}(...): a Newton solver holds the whole trajectory while it "
            f"iterates, so recomputing chunks saves nothing; drop remat (or use solver='sequential')."
        )
    if backend not in ("auto", "xla"):
        raise ValueError(
            f"backend={backend!r} runs a sequential step loop; solver=jr.{name}(...) runs parallel scans in XLA. "
            f"Use backend='auto' with it, or solver='sequential' with this backend."
        )
    _check_time_split(name, remat, num_steps)
    return solver


def _resolve_solver(solver, cell, grad: str, truncate, remat, backend, num_steps: int):
    """``"sequential"``, ``"parallel"`` or a Newton solver; None picks the parallel scan for a linear-recurrence cell under BPTT.

    The autodiff reference stays the plain sequential scan unless the parallel
    solver is asked for by name.
    """
    linear = getattr(cell, "recurrence", None) is not None
    if newton.is_newton(solver) or (isinstance(solver, str) and solver in newton.NEWTON_NAMES):
        return _resolve_newton(solver, grad, remat, backend, num_steps)
    if solver is None:
        solver = "parallel" if linear and grad == "bptt" else "sequential"
    elif not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(
            f"solver must be one of {SOLVERS + tuple(newton.NEWTON_NAMES)}, a jr.DEER, jr.QuasiDEER, jr.ELK or "
            f"jr.QuasiELK(...), or None; got {solver!r}."
        )
    if solver == "sequential":
        return solver
    if not linear:
        raise ValueError(
            f"solver='parallel' needs a cell that declares a linear recurrence h_t = a_t*h_(t-1) + b_t "
            f"(cell.recurrence, as jr.mingru, jr.minlstm and jr.lru do); the {_cell_name(cell)} cell declares none. "
            f"Use solver='sequential' (or None), or a Newton solver (solver='quasi-deer') for any cell."
        )
    if grad == "autodiff" and truncate is not None:
        raise ValueError(
            "truncate with solver='parallel' needs grad='bptt' (its hand-written reverse scan cuts the "
            "gradient); grad='autodiff' differentiates the associative scan, which has no cut points."
        )
    if backend not in ("auto", "xla"):
        raise ValueError(
            f"backend={backend!r} runs a sequential step loop; solver='parallel' runs an associative scan "
            f"in XLA. Use backend='auto' with it, or solver='sequential' with this backend."
        )
    _check_time_split("parallel", remat, num_steps)
    return solver


def _dtype_problem(w_dtype, xs_dtype) -> str | None:
    if jnp.dtype(xs_dtype) == jnp.float64 or jnp.dtype(w_dtype) == jnp.float64:
        return "the kernels compute in float32 (and bfloat16); float64 runs on the XLA path"
    return None


def _no_kernel(cell) -> str:
    return f"the {_cell_name(cell)} cell has no fused kernel (only jr.elman, jr.lstm and jr.gru do, with their own functions)"


def _cpu_problem(cell, batch: int, w_dtype, xs_dtype) -> str | None:
    """Why the C++ CPU kernel cannot run this call (None when it can); builds it on the first call."""
    kind = builtin_kind(cell)
    if kind is None:
        return _no_kernel(cell)
    if jax.default_backend() != "cpu":
        return f"the default device is {jax.default_backend()!r}; the CPU kernel runs on the CPU only"
    if jnp.dtype(xs_dtype) != jnp.float32:  # the weights' dtype: the kernel's own unsupported()
        return f"the CPU kernel computes in float32 and xs are {jnp.dtype(xs_dtype).name} (the XLA path runs them)"
    return registry.kernel("cpu").unsupported(kind, batch, cell.hidden_size, jnp.dtype(w_dtype))


def _auto_cpu(cell, grad: str, residuals: str, batch: int, w_dtype, xs_dtype) -> str | CPUKernel:
    """``backend="auto"`` on a CPU: the C++ kernel where the committed benchmark measured it faster, else XLA.

    A kernel whose build failed warns once (how to get it) and leaves the XLA path;
    a call it cannot run for another reason (a dtype) leaves it silently.
    """
    if grad != "bptt" or residuals != "gates" or builtin_kind(cell) not in registry.AUTO_CPU:
        return "xla"
    if _cpu_problem(cell, batch, w_dtype, xs_dtype) is None:
        return CPUKernel()
    registry.kernel("cpu").warn_if_not_built()
    return "xla"


def _kernel_problem(cell, pallas: Pallas, batch: int, w_dtype, xs_dtype) -> tuple:
    """``(target, None)`` when the Pallas kernel can run this call, else ``(target, reason)``."""
    target = pallas.target or registry.pallas_target(jax.default_backend())
    kind = builtin_kind(cell)
    if kind is None:
        return target, _no_kernel(cell)
    if target is None:
        return None, (
            f"the default device is {jax.default_backend()!r}; Pallas kernels compile for GPU and TPU only "
            f"(on CPU, jr.Pallas(target='gpu' or 'tpu', interpret=True) runs them in interpret mode, slowly)"
        )
    reason = _dtype_problem(w_dtype, xs_dtype)
    if reason:
        return target, reason
    module = registry.kernel(target)
    if not module.AVAILABLE:
        return target, f"Pallas for {target} is not available in this JAX: {module.WHY_UNAVAILABLE}"
    return target, module.unsupported(kind, batch, cell.hidden_size, jnp.dtype(w_dtype), pallas.precision)


def _resolve_backend(backend, cell, grad: str, residuals: str, batch: int, w_dtype, xs_dtype):
    """``"xla"``, a :class:`Pallas` with its target set, or a :class:`CPUKernel`.

    ``"auto"`` picks a Pallas kernel only where :data:`jaxrnn._kernels.registry.AUTO_PALLAS`
    says a committed device benchmark measured it faster, and the C++ CPU kernel where
    :data:`jaxrnn._kernels.registry.AUTO_CPU` says so for a CPU; otherwise XLA, silently
    (but for a CPU kernel that could not be built: one warning). An explicit kernel
    backend that cannot run the call raises a ValueError that says why.
    """
    if backend == "xla":
        return "xla"
    if backend == "auto":
        target = registry.pallas_target(jax.default_backend())
        if target is None and jax.default_backend() == "cpu":
            return _auto_cpu(cell, grad, residuals, batch, w_dtype, xs_dtype)
        limit = registry.AUTO_PALLAS.get((target, builtin_kind(cell)))
        if grad != "bptt" or residuals != "gates" or limit is None or cell.hidden_size > limit:
            return "xla"
        target, reason = _kernel_problem(cell, Pallas(), batch, w_dtype, xs_dtype)
        return "xla" if reason else Pallas(target=target)
    if grad != "bptt":
        raise ValueError(
            f"backend={backend!r} needs grad='bptt' (the kernels carry their own reverse pass); "
            f"grad={grad!r} differentiates the XLA scan: use backend='xla' with it."
        )
    if residuals != "gates":
        raise ValueError(
            f"backend={backend!r} keeps the recurrent projections for its reverse pass (residuals='gates'); "
            f"residuals={residuals!r} applies to the XLA path only. For less memory, use remat=k."
        )
    if isinstance(backend, CPUKernel):
        reason = _cpu_problem(cell, batch, w_dtype, xs_dtype)
        target = None
    else:
        target, reason = _kernel_problem(cell, backend, batch, w_dtype, xs_dtype)
    if reason:
        raise ValueError(f"backend={backend!r} cannot run this call: {reason}. Use backend='auto' or 'xla'.")
    return backend if isinstance(backend, CPUKernel) else backend._replace(target=target)


def resolve(
    cell,
    *,
    grad: str = "bptt",
    truncate: int | None = None,
    remat: int | None = None,
    residuals: str = "gates",
    unroll: int | bool | None = None,
    solver: str | None = None,
    backend: str | Pallas | CPUKernel = "auto",
    batch: int = 1,
    num_steps: int = 1,
    w_dtype=jnp.float32,
    xs_dtype=jnp.float32,
) -> Strategy:
    """The :class:`Strategy` of one call of :func:`jaxrnn.rnn`, every option checked.

    ``batch``, ``w_dtype`` and ``xs_dtype`` (of the call's inputs) decide whether a
    kernel can run it; ``num_steps`` (T) whether the ambient mesh can split time.

    Raises:
      ValueError: an unknown ``grad``, ``residuals``, ``solver`` or ``backend``; a
        non-positive ``truncate``, ``remat`` or ``unroll``; ``remat`` not a
        multiple of ``truncate``; a Pallas backend with ``grad="autodiff"``,
        ``residuals="states"`` or a call it cannot run (the message says why);
        ``solver="parallel"`` for a cell without a linear recurrence, with a
        kernel backend, with ``truncate`` under ``grad="autodiff"``, or under a
        sequence mesh axis that does not divide T or with ``remat``.
    """
    truncate, remat, unroll = _check_options(grad, truncate, remat, residuals, unroll)
    backend = check_backend(backend)
    solver = _resolve_solver(solver, cell, grad, truncate, remat, backend, num_steps)
    backend = (
        _resolve_backend(backend, cell, grad, residuals, batch, w_dtype, xs_dtype) if solver == "sequential" else "xla"
    )
    return Strategy(
        grad=grad, truncate=truncate, remat=remat, residuals=residuals, unroll=unroll, solver=solver, backend=backend
    )

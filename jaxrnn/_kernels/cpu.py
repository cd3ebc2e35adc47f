"""The fused recurrence on the CPU: C++ kernels called through XLA's FFI.

Implements :class:`jaxrnn._kernels.interface.Kernel` for the built-in cells
(Elman tanh and relu, LSTM, GRU) in float32. Each call of :func:`forward` or
:func:`backward` is one XLA custom call that runs the whole time loop of a layer
in ``csrc/rnn_cpu.cc``: per step, the product of the state with the recurrent
weights (packed once per call into panels of 16 hidden units, a register-blocked
loop of AVX-512 FMAs, or of the machine's widest vectors) fused with one
vectorised pass over the gates. The forward keeps the activated gates (LSTM: i,
f, g, o; GRU: r, z, n and the recurrent n-projection), so the reverse loop
recomputes nothing but the LSTM's ``tanh(c)``.

Threads: a step's hidden units are split into shares, one per thread, run by
XLA's own intra-op thread pool (the FFI's ``ThreadPool``), so the kernel never
runs more threads than XLA has; ``threads`` (:class:`jaxrnn.CPUKernel`) caps them.

The library is compiled on first use (:mod:`jaxrnn._kernels.cpu_build`).
``vmap`` runs the whole batch of calls through one custom call
(``vmap_method="broadcast_all"``: the C++ loops over the leading axes).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._core import gates
from jaxrnn._kernels import arguments, cpu_build

AVAILABLE = hasattr(jax, "ffi") and hasattr(jax.ffi, "ffi_call")
WHY_UNAVAILABLE: str | None = None if AVAILABLE else "this JAX has no jax.ffi"
# "gates": the forward keeps the activated gates, which the backward reads; "states": it keeps
# nothing beyond the states (the time loop asks for that when no reverse pass follows: a forward
# pass alone). The backward needs the gates: it does not recompute them.
RESIDUALS = ("gates", "states")
KIND_CODES = {"elman_tanh": 0, "elman_relu": 1, "lstm": 2, "gru": 3}  # csrc/rnn_cpu.cc's Kind


def unsupported(kind: str, batch: int, hidden_size: int, w_dtype, precision: str | None = None) -> str | None:
    """Why the kernel cannot run the configuration (None when it can); builds the library on the first call."""
    if not AVAILABLE:
        return f"the CPU kernel cannot run: {WHY_UNAVAILABLE}"
    if kind not in gates.KINDS:
        return f"no kernel for kind {kind!r} (kinds: {gates.KINDS})"
    if jnp.dtype(w_dtype) != jnp.float32:
        return f"the CPU kernel computes in float32, the weights are {jnp.dtype(w_dtype).name} (the XLA path runs them)"
    reason = cpu_build.problem()
    return None if reason is None else _not_built(reason)


def _not_built(reason: str) -> str:
    return f"the CPU kernel could not be built: {reason}"


_warned: list = []


def warn_if_not_built() -> None:
    """Warn, once per process, when this process's build of the kernel failed, and how to get it; never builds."""
    failure = cpu_build.failure()
    if failure is None or _warned:
        return
    _warned.append(failure)
    warnings.warn(
        f"jaxrnn: {_not_built(failure)}; the XLA path runs instead. To get the kernel, {cpu_build.HOW_TO_GET_IT}.",
        RuntimeWarning,
        stacklevel=3,
    )


def needs_px(residuals: str) -> bool:
    """The backward reads the kept gates, never ``px``."""
    return False


def _empty(dtype=jnp.float32):
    """A placeholder operand for what a call does not have (the LSTM's cell state, a mask)."""
    return jnp.zeros((0,), dtype)


def _attrs(kind: str, threads: int | None, mask) -> dict:
    return dict(kind=np.int64(KIND_CODES[kind]), threads=np.int64(threads or 0), has_mask=np.int64(mask is not None))


def _call(name: str, results: tuple, args: tuple, attrs: dict):
    cpu_build.load()
    shapes = tuple(jax.ShapeDtypeStruct(shape, jnp.float32) for shape in results)
    return jax.ffi.ffi_call(name, shapes, vmap_method="broadcast_all")(*args, **attrs)


def forward(
    kind,
    px,
    w_hh,
    b_hh,
    h0,
    c0,
    mask,
    *,
    residuals: str = "gates",
    precision: str | None = None,
    interpret: bool = False,
    unroll: int = 1,
    threads: int | None = None,
):
    """``(h_all, c_all, act)``: the states after every step and the activated gates (None for Elman)."""
    del precision, interpret, unroll  # float32 products; no interpret mode; no scan to unroll
    fn = "jaxrnn CPU kernel forward"
    steps, batch, hidden = arguments.check_common(fn, kind, px, w_hh, h0, c0, mask, w_dtypes=(jnp.float32,))
    g, lstm = gates.NUM_GATES[kind], kind == "lstm"
    arguments.check_shape(fn, "b_hh", b_hh, (g * hidden,), f"[{g}*H] for kind {kind!r}")
    arguments.check_dtype(fn, "b_hh", b_hh, (jnp.float32,))
    if residuals not in RESIDUALS:
        raise ValueError(f"{fn}: residuals must be one of {RESIDUALS}, got {residuals!r}.")
    acts = 0 if kind.startswith("elman") or residuals == "states" else gates.NUM_ACTIVATIONS[kind]
    seq = (steps, batch, hidden)
    results = (seq, seq if lstm else (0,), (steps, batch, acts * hidden) if acts else (0,))
    args = (px, w_hh, b_hh, h0, c0 if lstm else _empty(), _empty(jnp.bool_) if mask is None else mask)
    h_all, c_all, act = _call("jaxrnn_cpu_forward", results, args, _attrs(kind, threads, mask))
    return h_all, (c_all if lstm else None), (act if acts else None)


def backward(
    kind,
    px,
    residual,
    w_hh,
    b_hh,
    h0,
    c0,
    h_all,
    c_all,
    mask,
    d_h_all,
    d_c_last,
    *,
    truncate: int | None = None,
    precision: str | None = None,
    interpret: bool = False,
    unroll: int = 1,
    threads: int | None = None,
):
    """``(d_px, d_rec, d_h0, d_c0)`` from the gates :func:`forward` kept (``residual``)."""
    del px, b_hh, precision, interpret, unroll
    fn = "jaxrnn CPU kernel backward"
    g, lstm, gru = gates.NUM_GATES[kind], kind == "lstm", kind == "gru"
    if getattr(d_h_all, "ndim", None) != 3 or getattr(w_hh, "ndim", None) != 2:
        raise ValueError(
            f"{fn}: d_h_all must be [T, B, H] and w_hh [G*H, H], got shapes "
            f"{getattr(d_h_all, 'shape', None)} and {getattr(w_hh, 'shape', None)}."
        )
    gate_shape = jax.ShapeDtypeStruct(d_h_all.shape[:2] + (g * w_hh.shape[1],), jnp.float32)
    steps, batch, hidden = arguments.check_common(fn, kind, gate_shape, w_hh, h0, c0, mask, w_dtypes=(jnp.float32,))
    seq = (steps, batch, hidden)
    acts = 0 if kind.startswith("elman") else gates.NUM_ACTIVATIONS[kind]
    for name, a in (("d_h_all", d_h_all), ("h_all", h_all)) + ((("c_all", c_all),) if lstm else ()):
        arguments.check_shape(fn, name, a, seq, "[T, B, H]")
        arguments.check_dtype(fn, name, a, (jnp.float32,))
    if acts and residual is None:
        raise ValueError(f"{fn}: residual is None; the backward reads the gates its forward kept (residuals='gates').")
    if acts:
        arguments.check_shape(
            fn, "residual", residual, (steps, batch, acts * hidden), f"[T, B, {acts}*H] (the kept gates)"
        )
        arguments.check_dtype(fn, "residual", residual, (jnp.float32,))
    if lstm:
        arguments.check_shape(fn, "d_c_last", d_c_last, (batch, hidden), "[B, H] (LSTM)")
        arguments.check_dtype(fn, "d_c_last", d_c_last, (jnp.float32,))
    gate_seq, state = (steps, batch, g * hidden), (batch, hidden)
    results = (gate_seq, gate_seq if gru else (0,), state, state if lstm else (0,))
    args = (
        residual if acts else _empty(),
        w_hh,
        h0,
        c0 if lstm else _empty(),
        h_all,
        c_all if lstm else _empty(),
        _empty(jnp.bool_) if mask is None else mask,
        d_h_all,
        d_c_last if lstm else _empty(),
    )
    attrs = dict(_attrs(kind, threads, mask), truncate=np.int64(truncate or 0))
    d_px, d_rec, d_h0, d_c0 = _call("jaxrnn_cpu_backward", results, args, attrs)
    return d_px, (d_rec if gru else d_px), d_h0, (d_c0 if lstm else None)


def activations(x):
    """The kernel's own ``(sigmoid(x), tanh(x))`` on a float32 array (what the tests measure against float64)."""
    x = jnp.asarray(x, jnp.float32)
    return _call("jaxrnn_cpu_activations", (x.shape, x.shape), (x,), {})

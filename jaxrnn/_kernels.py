"""Backends of the time loop: XLA's ``lax.scan``, or a fused Pallas kernel.

``jr.rnn(..., backend=...)`` takes ``"auto"``, ``"xla"``, ``"pallas"`` or a
:class:`Pallas` value with explicit settings. A Pallas backend runs only the
sequential part of a layer in a kernel (:mod:`jaxrnn._kernel_ref` states the
contract): the input projection before the loop and the weight gradients after
it are large XLA matmuls here, around a ``jax.custom_vjp``:

- forward: ``px = x W_ih^T + b_ih`` (one matmul), then the kernel's forward,
  which returns the state after every step and the recurrent projection of
  every step (kept for the backward pass);
- backward: the kernel's reverse loop returns the gate deltas ``d_px`` and
  ``d_rec``; then ``dW_ih = d_px^T x``, ``dx = d_px W_ih``,
  ``dW_hh = d_rec^T h_{t-1}`` and the bias sums, each one matmul or reduction
  over all ``T * B`` rows.

Under a mesh with a ``"data"`` axis (:mod:`jaxrnn._parallel`, used by data-parallel
training), the kernels run per batch shard through ``jax.shard_map``: a
``pallas_call`` is opaque to XLA's partitioner, which would otherwise gather
the batch and run it whole on every device.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxrnn import _kernel_ref
from jaxrnn._cells import HiddenState, LSTMState, builtin_kernel
from jaxrnn._parallel import DATA_AXIS

BACKENDS = ("auto", "xla", "pallas")
TARGETS = ("gpu", "tpu")

_PLATFORM_TARGET = {"gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}

# Where backend="auto" picks the Pallas kernel: (target, kind) -> the largest hidden size
# at which a committed device benchmark (benchmarks/results/) measured the kernel faster
# than the XLA path. No device run has been committed yet, so "auto" is XLA everywhere.
_AUTO_PALLAS: dict = {}


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
    """

    target: Optional[str] = None
    interpret: bool = False
    precision: str = "highest"


class Scan(NamedTuple):
    """The XLA backend of the built-in cells: the tuned ``lax.scan`` of :mod:`jaxrnn._scan_kernel`."""

    unroll: int = 1


def _kernel_module(target: str):
    if target == "gpu":
        from jaxrnn import _pallas_gpu as module
    elif target == "tpu":
        from jaxrnn import _pallas_tpu as module
    else:
        from jaxrnn import _scan_kernel as module
    return module


def _module_and_options(backend):
    """The kernel module that runs ``backend`` and its keyword options."""
    if isinstance(backend, Scan):
        return _kernel_module("scan"), dict(unroll=backend.unroll)
    return _kernel_module(backend.target), dict(precision=backend.precision, interpret=backend.interpret)


def pallas_target(platform: str) -> Optional[str]:
    """The Pallas kernels for a device platform (``"gpu"`` or ``"tpu"``), None where there are none."""
    return _PLATFORM_TARGET.get(platform)


def _default_target() -> Optional[str]:
    return pallas_target(jax.default_backend())


def check_backend(backend) -> Any:
    """``backend`` as ``"auto"``, ``"xla"`` or a :class:`Pallas`; a ValueError for anything else."""
    if isinstance(backend, Pallas):
        if backend.target is not None and backend.target not in TARGETS:
            raise ValueError(f"Pallas target must be one of {TARGETS} or None, got {backend.target!r}.")
        if backend.precision not in _kernel_ref.PRECISIONS:
            raise ValueError(f"Pallas precision must be one of {_kernel_ref.PRECISIONS}, got {backend.precision!r}.")
        return backend
    if backend == "pallas":
        return Pallas()
    if isinstance(backend, str) and backend in BACKENDS:
        return backend
    raise ValueError(f"backend must be one of {BACKENDS} or a jr.Pallas(...), got {backend!r}.")


def _dtype_problem(w_dtype, xs_dtype) -> Optional[str]:
    if jnp.dtype(xs_dtype) == jnp.float64 or jnp.dtype(w_dtype) == jnp.float64:
        return "the kernels compute in float32 (and bfloat16); float64 runs on the XLA path"
    return None


def _kernel_problem(cell, backend: Pallas, batch: int, w_dtype, xs_dtype) -> tuple[Optional[str], Optional[str]]:
    """``(target, None)`` when the kernel can run this call, else ``(target, reason)``."""
    target = backend.target or _default_target()
    kind = builtin_kernel(cell)
    if kind is None:
        return target, (
            f"the {getattr(cell, 'name', type(cell).__name__)} cell has no fused kernel "
            f"(only jr.elman, jr.lstm and jr.gru do, with their own functions)"
        )
    if target is None:
        return None, (
            f"the default device is {jax.default_backend()!r}; Pallas kernels compile for GPU and TPU only "
            f"(on CPU, jr.Pallas(target='gpu' or 'tpu', interpret=True) runs them in interpret mode, slowly)"
        )
    reason = _dtype_problem(w_dtype, xs_dtype)
    if reason:
        return target, reason
    module = _kernel_module(target)
    if not module.AVAILABLE:
        return target, f"Pallas for {target} is not available in this JAX: {module.WHY_UNAVAILABLE}"
    reason = module.unsupported(kind, batch, cell.hidden_size, jnp.dtype(w_dtype), backend.precision)
    return target, reason


def resolve(backend, cell, grad: str, residuals: str, batch: int, w_dtype, xs_dtype):
    """The backend that runs this call: ``"xla"`` or a :class:`Pallas` with its target set.

    ``"auto"`` falls back to XLA silently; an explicit Pallas backend that cannot run
    this call raises a ValueError that says why.
    """
    if backend == "xla":
        return "xla"
    if backend == "auto":
        kind = builtin_kernel(cell)
        target = _default_target()
        limit = _AUTO_PALLAS.get((target, kind))
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
    target, reason = _kernel_problem(cell, backend, batch, w_dtype, xs_dtype)
    if reason:
        raise ValueError(f"backend={backend!r} cannot run this call: {reason}. Use backend='auto' or 'xla'.")
    return backend._replace(target=target)


def _data_mesh():
    """The ambient mesh when it has a ``"data"`` axis of size > 1, else None."""
    get = getattr(jax.sharding, "get_abstract_mesh", None)
    mesh = get() if get is not None else None
    if mesh is None or DATA_AXIS not in tuple(getattr(mesh, "axis_names", ())):
        return None
    return mesh if dict(zip(mesh.axis_names, mesh.axis_sizes))[DATA_AXIS] > 1 else None


def _per_shard(backend, fn, in_specs, out_specs):
    """``fn`` run per batch shard under a data-parallel mesh for a Pallas backend, else as is.

    The XLA scan needs no help: the partitioner splits it along the batch itself.
    """
    mesh = _data_mesh() if isinstance(backend, Pallas) else None
    if mesh is None:
        return fn
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def _spec(a, batch_axis: int):
    """The PartitionSpec of ``a`` sharded along ``batch_axis`` (None for a missing operand)."""
    if a is None:
        return None
    spec = [None] * a.ndim
    spec[batch_axis] = DATA_AXIS
    return P(*spec)


def _kernel_forward(kind, backend, px, w_hh, b_hh, h0, c0, mask):
    module, options = _module_and_options(backend)

    def run(px, w_hh, b_hh, h0, c0, mask):
        return module.forward(kind, px, w_hh, b_hh, h0, c0, mask, **options)

    seq = _spec(px, 1)
    in_specs = (seq, P(), P(), _spec(h0, 0), _spec(c0, 0), _spec(mask, 1))
    out_specs = (seq, _spec(c0 if c0 is None else px, 1), seq)
    return _per_shard(backend, run, in_specs, out_specs)(px, w_hh, b_hh, h0, c0, mask)


def _kernel_backward(kind, backend, truncate, px, rec_all, w_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last):
    module, options = _module_and_options(backend)

    def run(px, rec_all, w_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last):
        return module.backward(
            kind, px, rec_all, w_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last, truncate=truncate, **options
        )

    seq = _spec(h_all, 1)
    state = _spec(h0, 0)
    in_specs = (_spec(px, 1), seq, P(), state, _spec(c0, 0), seq, _spec(c_all, 1), _spec(mask, 1), seq,
                _spec(d_c_last, 0))
    out_specs = (seq, seq, state, _spec(c0, 0))
    return _per_shard(backend, run, in_specs, out_specs)(px, rec_all, w_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last)


def _final_state(kind, h_all, c_all):
    if kind == "lstm":
        return LSTMState(h_all[-1], c_all[-1])
    return HiddenState(h_all[-1])


def _run(cell, backend, params, state, xs, lengths):
    kind = builtin_kernel(cell)
    px = cell.project(params, xs)
    c0 = state.c if kind == "lstm" else None
    mask = _kernel_ref.step_masks(lengths, xs.shape[0])
    h_all, c_all, rec_all = _kernel_forward(kind, backend, px, params.w_hh, params.b_hh, state.h, c0, mask)
    ys = _kernel_ref.zero_where_masked(mask, h_all)
    return (ys, _final_state(kind, h_all, c_all)), (px, rec_all, h_all, c_all, mask)


def _weight_gradients(params, xs, h_prev, d_px, d_rec):
    """The gradients of the weights and inputs: one large matmul each, over all ``T * B`` rows.

    The sequences are flattened to 2-D first: XLA:CPU runs ``[T*B, G*H]^T @ [T*B, I]``
    about twice as fast as the same contraction over the two axes ``t, b``
    (``benchmarks/NOTES.md``). Products accumulate in the carry dtype; the
    gradients take the dtype of what they belong to.
    """
    rows = d_px.shape[0] * d_px.shape[1]
    d_px2 = d_px.reshape(rows, d_px.shape[-1])
    d_rec2 = d_px2 if d_rec is d_px else d_rec.reshape(rows, d_rec.shape[-1])
    acc = d_px.dtype

    def grad_t(d2, a):  # d2^T @ a
        a2 = a.reshape(rows, a.shape[-1]).astype(acc)
        return jax.lax.dot_general(d2, a2, (((0,), (0,)), ((), ())), preferred_element_type=acc)

    d_xs = jax.lax.dot_general(
        d_px2.astype(params.w_ih.dtype), params.w_ih, (((1,), (0,)), ((), ())), preferred_element_type=acc
    )
    d_params = type(params)(
        w_ih=grad_t(d_px2, xs).astype(params.w_ih.dtype),
        w_hh=grad_t(d_rec2, h_prev).astype(params.w_hh.dtype),
        b_ih=jnp.sum(d_px2, axis=0).astype(params.b_ih.dtype),
        b_hh=jnp.sum(d_rec2, axis=0).astype(params.b_hh.dtype),
    )
    return d_params, d_xs.reshape(xs.shape).astype(xs.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _kernel_scan(cell, backend, truncate, params, state, xs, lengths):
    return _run(cell, backend, params, state, xs, lengths)[0]


def _kernel_scan_fwd(cell, backend, truncate, params, state, xs, lengths):
    out, (px, rec_all, h_all, c_all, mask) = _run(cell, backend, params, state, xs, lengths)
    if not getattr(_module_and_options(backend)[0], "NEEDS_PX", True):
        px = None  # not kept: the backward pass does not read it
    return out, (params, state, xs, lengths, px, rec_all, h_all, c_all, mask)


def _kernel_scan_bwd(cell, backend, truncate, res, cotangents):
    params, state, xs, lengths, px, rec_all, h_all, c_all, mask = res
    d_ys, d_final = cotangents
    kind = builtin_kernel(cell)
    c0 = state.c if kind == "lstm" else None
    d_h_all = _kernel_ref.zero_where_masked(mask, d_ys.astype(h_all.dtype))
    d_h_all = d_h_all.at[-1].add(d_final.h.astype(h_all.dtype))
    d_c_last = d_final.c.astype(c_all.dtype) if kind == "lstm" else None
    d_px, d_rec, d_h0, d_c0 = _kernel_backward(
        kind, backend, truncate, px, rec_all, params.w_hh, state.h, c0, h_all, c_all, mask, d_h_all, d_c_last
    )
    h_prev = jnp.concatenate([state.h[None], h_all[:-1]], axis=0)
    d_params, d_xs = _weight_gradients(params, xs, h_prev, d_px, d_rec)
    d_state = LSTMState(d_h0, d_c0) if kind == "lstm" else HiddenState(d_h0)
    d_state = jax.tree_util.tree_map(lambda d, s: d.astype(s.dtype), d_state, state)
    return d_params, d_state, d_xs, None


_kernel_scan.defvjp(_kernel_scan_fwd, _kernel_scan_bwd)


def kernel_scan(cell, backend, truncate: Optional[int], params, state, xs, lengths):
    """The time loop of a built-in cell on a kernel (:class:`Pallas` or :class:`Scan`); inputs as in
    :func:`jaxrnn._bptt.run_scan`.

    ``xs [T, *batch, I]`` with ``batch`` of rank 0 or 1; returns ``(ys, final_state)``.
    """
    if xs.ndim == 2:
        state = jax.tree_util.tree_map(lambda s: s[None], state)
        lengths = None if lengths is None else lengths[None]
        ys, final = _kernel_scan(cell, backend, truncate, params, state, xs[:, None], lengths)
        return ys[:, 0], jax.tree_util.tree_map(lambda s: s[0], final)
    return _kernel_scan(cell, backend, truncate, params, state, xs, lengths)

"""Fused recurrence kernels for TPU: Pallas on the Mosaic backend.

Implements :class:`jaxrnn._kernels.interface.Kernel` (``forward``, ``backward``,
``unsupported``) for the built-in cells. One ``pallas_call`` runs the whole time
loop of a layer:

- the grid is ``(batch tiles, time blocks)``: batch tiles are independent
  (``"parallel"``, split across the TensorCores of a megacore chip or v7x) and time
  blocks run in order (``"arbitrary"``); each grid step runs ``time_block`` steps
  in a ``lax.fori_loop``, which amortises the fixed cost of a grid step (about
  0.35 µs) over several time steps;
- the recurrent weights are one block with a constant index map: Pallas copies
  them into VMEM once and keeps a single buffer of them there for the whole
  sequence; each step's ``h @ W_hh^T`` (forward) or ``d_rec @ W_hh`` (backward)
  reads them from VMEM. They are laid out so both products are plain
  ``[M, K] @ [K, N]`` matmuls (the forward gets ``W_hh^T``);
- the state (``h`` and, for LSTM, ``c``; in the backward pass the carried
  cotangents ``dh`` and ``dc``) lives in VMEM scratch across grid steps, set at the
  first time block of each batch tile;
- gate arithmetic is fused into the step (:func:`jaxrnn._core.gates.forward`
  and ``gates_backward``, the same code as the reference);
- the backward pass walks the time blocks in reverse through its index maps and
  each block in reverse. It reads the forward's ``rec_all`` (no recomputation of
  the recurrent matmul), and of the saved states only what the gate reverse needs:
  ``c_{t-1}`` for LSTM, ``h_{t-1}`` for GRU, nothing for Elman. The state entering a
  block's first step comes from a small per-block array built outside the kernel.
  Weight gradients are not computed here: they are large matmuls in XLA.

Shapes are padded to what TPU tiles want and sliced back, so callers see the
contract's shapes exactly: the hidden size per gate to a multiple of 128 (lanes;
:func:`jaxrnn._kernels.pallas_common.pad_gates`), the batch to a multiple of 8 (sublanes)
and of the batch tile, and time to a multiple of the time block. Padded time
steps come after the real ones and leave the state unchanged (masked off, or
skipped when there is no mask), and the truncation of the backward pass counts
real steps only. A mask travels as ``int32 [T, B, 1]``, so that a step's mask is a
column that broadcasts along lanes.

Precision: ``"highest"`` multiplies in float32 (``Precision.HIGHEST``);
``"fast"``, and any bfloat16 ``w_hh``, multiplies bfloat16 by bfloat16 into a
float32 accumulator (with ``"fast"`` the weights are cast to bfloat16 before the
kernel, which halves their VMEM). Gate arithmetic and the state are float32.

VMEM budget: the kernels ask Mosaic for ``VMEM_LIMIT_BYTES`` (48 MiB) of scoped
VMEM and plan their blocks to fit ``VMEM_BUDGET_BYTES`` (40 MiB), leaving the rest
for Mosaic's own temporaries. The default scoped limit (16 MiB on v5e, 32 MiB on
v6e) would cap the weights far lower, and 48 MiB stays under the physical VMEM of
every current TPU (128 MiB on v5e and v6e, 64 MiB per core on v5p and v7x);
v4 and older chips (16 MiB) are not targets. The weights take ``G * H'^2`` times
their item size (one buffer; ``H'`` the padded hidden size); the time-step blocks
take ``2 (double buffering) * time_block * batch_tile * 4 bytes`` per float32 column
of every per-step input and output. :func:`unsupported` refuses a hidden size
whose weights leave no room for the smallest blocks (``time_block = 1``,
``batch_tile = 8``): H above 1536 for LSTM, 1664 for GRU and 3072 for Elman with
float32 weights; above 2048, 2432 and 4224 with bfloat16 weights or ``"fast"``.

Tiles: ``time_block`` (default: up to 16 steps) and ``batch_block`` (default: up
to 256 rows, the height of v6e's matrix unit; two passes of v5e's) are keyword
arguments of :func:`forward` and :func:`backward`. When not given, they are
shrunk (time block to 4 first, then the batch tile, then the time block) until
the blocks fit the budget, and chosen to pad as little as possible. These
defaults are reasoned, not measured: no TPU was at hand. Sweep them on a device.

Nothing here raises at import: without Pallas TPU in this JAX, ``AVAILABLE`` is
False, ``WHY_UNAVAILABLE`` says why, and the functions raise a RuntimeError.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._core import gates as ref
from jaxrnn._core.checks import check_positive_int
from jaxrnn._kernels import arguments
from jaxrnn._kernels.interface import PRECISIONS
from jaxrnn._kernels.pallas_common import pad_axis, pad_gates, round_up, unpad_gates

try:
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import tpu as pltpu

    # Names moved between JAX versions: CompilerParams was TPUCompilerParams (JAX < 0.6),
    # pltpu.VMEM was pltpu.TPUMemorySpace.VMEM.
    _CompilerParams = getattr(pltpu, "CompilerParams", None) or pltpu.TPUCompilerParams  # type: ignore[attr-defined]
    _VMEM = getattr(pltpu, "VMEM", None) or pltpu.TPUMemorySpace.VMEM  # type: ignore[attr-defined]
    _InterpretParams = getattr(pltpu, "InterpretParams", None)
except (ImportError, AttributeError) as e:  # pragma: no cover - depends on the installed JAX
    AVAILABLE = False
    WHY_UNAVAILABLE: str | None = f"jax.experimental.pallas.tpu is not usable in JAX {jax.__version__}: {e}"
else:
    AVAILABLE = True
    WHY_UNAVAILABLE = None

VMEM_LIMIT_BYTES = 48 * 2**20
VMEM_BUDGET_BYTES = 40 * 2**20
DEFAULT_TIME_BLOCK = 16
DEFAULT_BATCH_BLOCK = 256
_LANES = 128
_SUBLANES = 8


class _Plan(NamedTuple):
    """Padded sizes and tiles of one call."""

    num_gates: int
    hidden: int  # H, the caller's hidden size
    hidden_padded: int  # H', a multiple of 128
    steps: int  # T
    time_block: int  # Tc
    time_blocks: int  # T' / Tc
    batch: int  # B
    batch_block: int  # a multiple of 8
    batch_blocks: int  # B' / batch_block

    @property
    def steps_padded(self) -> int:
        return self.time_block * self.time_blocks

    @property
    def batch_padded(self) -> int:
        return self.batch_block * self.batch_blocks

    @property
    def time_padded(self) -> bool:
        return self.steps_padded != self.steps


def _vmem_bytes(kind: str, time_block: int, batch_block: int, hidden_padded: int, w_itemsize: int) -> int:
    """An upper estimate of the VMEM that the larger of the two kernels needs."""
    gates = ref.NUM_GATES[kind] * hidden_padded
    weights = gates * hidden_padded * w_itemsize + _SUBLANES * gates * 4
    # float32 columns per time step and batch row of the backward's blocks (the larger):
    # px, rec, d_px, d_rec (GRU only), d_h, a saved state (LSTM, GRU), the mask (one
    # padded lane tile).
    columns = 3 * gates + (gates if kind == "gru" else 0) + 2 * hidden_padded + _LANES
    step_blocks = 2 * time_block * batch_block * 4 * columns
    # Per-tile arrays (initial state, its cotangent, the entering state; double-buffered)
    # and the scratch state.
    state = (2 * 6 + 2) * batch_block * hidden_padded * 4
    # Values of a step that Mosaic may keep in VMEM: gate pre-activations and deltas.
    temporaries = 8 * batch_block * gates * 4
    return weights + step_blocks + state + temporaries


def _shrink(kind, time_block, batch_block, hidden_padded, w_itemsize, fixed_time, fixed_batch):
    """The tiles, shrunk until their blocks fit the VMEM budget (None if nothing fits)."""
    while _vmem_bytes(kind, time_block, batch_block, hidden_padded, w_itemsize) > VMEM_BUDGET_BYTES:
        if time_block > 4 and not fixed_time:
            time_block //= 2
        elif batch_block > _SUBLANES and not fixed_batch:
            batch_block = max(_SUBLANES, round_up(batch_block // 2, _SUBLANES))
        elif time_block > 1 and not fixed_time:
            time_block //= 2
        else:
            return None
    return time_block, batch_block


def _kernel_w_dtype(w_dtype, precision: str):
    return jnp.dtype(jnp.bfloat16) if precision == "fast" else jnp.dtype(w_dtype)


RESIDUALS = ("gates",)  # the backward reads the recurrent projections kept by the forward


def needs_px(residuals: str) -> bool:
    """The backward recomputes the gates from ``px`` and the kept ``rec_all``."""
    return True


def unsupported(kind: str, batch: int, hidden_size: int, w_dtype, precision: str = "highest") -> str | None:
    """Why the TPU kernels cannot run this layer, or None when they can.

    The limit is VMEM: the recurrent weights stay there for the whole sequence
    (see the module docstring for the budget).
    """
    if not AVAILABLE:
        return WHY_UNAVAILABLE
    if kind not in ref.KINDS:
        return f"no TPU kernel for cell kind {kind!r} (kinds: {', '.join(ref.KINDS)})"
    if precision not in PRECISIONS:
        return f"precision must be one of {PRECISIONS}, got {precision!r}"
    if jnp.dtype(w_dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        return f"the TPU kernels take float32 or bfloat16 weights, got {jnp.dtype(w_dtype)}"
    if batch < 1 or hidden_size < 1:
        return f"batch and hidden size must be positive, got batch={batch}, hidden_size={hidden_size}"
    itemsize = _kernel_w_dtype(w_dtype, precision).itemsize
    hidden_padded = round_up(hidden_size, _LANES)
    if _shrink(kind, 1, _SUBLANES, hidden_padded, itemsize, False, False) is None:
        weights_mib = ref.NUM_GATES[kind] * hidden_padded**2 * itemsize / 2**20
        return (
            f"hidden size {hidden_size} is too large for the TPU kernel: its {kind} recurrent weights "
            f"({weights_mib:.0f} MiB as padded to {hidden_padded}) and the smallest blocks do not fit the "
            f"{VMEM_BUDGET_BYTES // 2**20} MiB VMEM budget"
        )
    return None


def _plan(kind, steps, batch, hidden, w_dtype, time_block, batch_block) -> _Plan:
    hidden_padded = round_up(hidden, _LANES)
    batch_rows = round_up(batch, _SUBLANES)
    want_time = (
        DEFAULT_TIME_BLOCK if time_block is None else check_positive_int(time_block, "time_block", allow_none=True)
    )
    want_batch = (
        DEFAULT_BATCH_BLOCK if batch_block is None else check_positive_int(batch_block, "batch_block", allow_none=True)
    )
    if batch_block is not None and batch_block % _SUBLANES:
        raise ValueError(f"batch_block must be a multiple of {_SUBLANES} (TPU sublanes), got {batch_block}.")
    tiles = _shrink(
        kind,
        min(want_time, steps),
        min(want_batch, batch_rows),
        hidden_padded,
        jnp.dtype(w_dtype).itemsize,
        time_block is not None,
        batch_block is not None,
    )
    if tiles is None:
        raise ValueError(
            f"time_block={time_block} and batch_block={batch_block} need more than the "
            f"{VMEM_BUDGET_BYTES // 2**20} MiB VMEM budget at hidden size {hidden}; give smaller ones or None."
        )
    # As many blocks as the largest tiles need, then tiles as even as possible: least padding.
    time_blocks = -(-steps // tiles[0])
    batch_blocks = -(-batch_rows // tiles[1])
    return _Plan(
        num_gates=ref.NUM_GATES[kind],
        hidden=hidden,
        hidden_padded=hidden_padded,
        steps=steps,
        time_block=-(-steps // time_blocks),
        time_blocks=time_blocks,
        batch=batch,
        batch_block=round_up(-(-batch_rows // batch_blocks), _SUBLANES),
        batch_blocks=batch_blocks,
    )


# ---------------------------------------------------------------------------------------------
# Argument checks (static shapes, before any work)


def _require_available():
    if not AVAILABLE:
        raise RuntimeError(f"The Pallas TPU kernels cannot run: {WHY_UNAVAILABLE}")


def _check_common(fn: str, kind: str, px, w_hh, h0, c0, mask, precision: str) -> tuple:
    """``(T, B, H)`` after checking the arguments shared by forward and backward."""
    _require_available()
    if precision not in PRECISIONS:
        raise ValueError(f"{fn}: precision must be one of {PRECISIONS}, got {precision!r}.")
    return arguments.check_common(fn, kind, px, w_hh, h0, c0, mask, w_dtypes=(jnp.float32, jnp.bfloat16))


# ---------------------------------------------------------------------------------------------
# Kernels


def _matmul(a, w):
    """``a @ w`` with float32 accumulation; float32 products for float32 ``w``, else bfloat16."""
    exact = w.dtype == jnp.float32
    return lax.dot_general(
        a.astype(w.dtype),
        w,
        (((1,), (0,)), ((), ())),
        precision=lax.Precision.HIGHEST if exact else lax.Precision.DEFAULT,
        preferred_element_type=jnp.float32,
    )


def _keep(active, new, old):
    """``new`` where the step runs, ``old`` where it is masked off (``active`` int32 [bt, 1] or None)."""
    if active is None or new is None:
        return new
    return jnp.where(jnp.broadcast_to(active, new.shape) != 0, new, old)


def _store_carry(plan: _Plan, has_mask: bool, t, pairs):
    """Write the carried values ``pairs`` (``(scratch_ref, value)``, None ref skipped) after step ``t``.

    A padded step past the end must leave the carry as it was: a mask, if any, masks
    it off; without one, the write is skipped.
    """

    def store():
        for scratch, value in pairs:
            if scratch is not None:
                scratch[...] = value

    if plan.time_padded and not has_mask:
        pl.when(t < plan.steps)(store)
    else:
        store()


def _forward_kernel(*all_refs, kind: str, plan: _Plan, has_mask: bool):
    lstm = kind == "lstm"
    refs = iter(all_refs)
    px_ref = next(refs)
    mask_ref = next(refs) if has_mask else None
    w_ref, b_ref, h0_ref = next(refs), next(refs), next(refs)
    c0_ref = next(refs) if lstm else None
    h_out = next(refs)
    c_out = next(refs) if lstm else None
    rec_out = next(refs)
    h_scr = next(refs)
    c_scr = next(refs) if lstm else None
    block = pl.program_id(1)

    @pl.when(block == 0)
    def _():
        h_scr[...] = h0_ref[...]
        if lstm:
            c_scr[...] = c0_ref[...]

    def step(s, carry):
        h = h_scr[...]
        c = c_scr[...] if lstm else None
        rec = _matmul(h, w_ref[...]) + b_ref[...]
        h_new, c_new, _ = ref.forward(kind, px_ref[s], rec, h, c)
        active = mask_ref[s] if has_mask else None
        h_new, c_new = _keep(active, h_new, h), _keep(active, c_new, c)
        rec_out[s] = rec
        h_out[s] = h_new
        if lstm:
            c_out[s] = c_new

        _store_carry(plan, has_mask, block * plan.time_block + s, ((h_scr, h_new), (c_scr, c_new)))
        return carry

    lax.fori_loop(jnp.int32(0), jnp.int32(plan.time_block), step, jnp.int32(0))


def _backward_kernel(*all_refs, kind: str, plan: _Plan, has_mask: bool, truncate: int | None):
    lstm, gru = kind == "lstm", kind == "gru"
    saves_state = lstm or gru  # the gate reverse needs c_{t-1} (LSTM) or h_{t-1} (GRU)
    refs = iter(all_refs)
    px_ref, rec_ref, dh_all_ref = next(refs), next(refs), next(refs)
    mask_ref = next(refs) if has_mask else None
    w_ref = next(refs)
    state_ref = next(refs) if saves_state else None
    entering_ref = next(refs) if saves_state else None
    dc_last_ref = next(refs) if lstm else None
    d_px_out = next(refs)
    d_rec_out = next(refs) if gru else None
    d_h0_out = next(refs)
    d_c0_out = next(refs) if lstm else None
    dh_scr = next(refs)
    dc_scr = next(refs) if lstm else None
    i = pl.program_id(1)
    block = plan.time_blocks - 1 - i

    @pl.when(i == 0)
    def _():
        dh_scr[...] = jnp.zeros(dh_scr.shape, jnp.float32)
        if lstm:
            dc_scr[...] = dc_last_ref[...]

    def step(s, prev):
        """Step ``block * Tc + s`` in reverse; ``prev`` the state entering it (None for Elman)."""
        t = block * plan.time_block + s
        dh = dh_scr[...] + dh_all_ref[s]
        dc = dc_scr[...] if lstm else None
        # Only the GRU reads h_{t-1}; the others use the h argument for its shape alone.
        d_px, d_rec, dh_prev, dc_prev = ref.step_backward(
            kind, px_ref[s], rec_ref[s], prev if gru else dh, prev if lstm else None, dh, dc
        )
        dh_prev = dh_prev + _matmul(d_rec, w_ref[...])
        if has_mask:
            active = mask_ref[s]
            zeros = jnp.zeros(d_px.shape, jnp.float32)
            d_px, d_rec = _keep(active, d_px, zeros), _keep(active, d_rec, zeros)
            dh_prev, dc_prev = _keep(active, dh_prev, dh), _keep(active, dc_prev, dc)
        d_px_out[s] = d_px
        if gru:
            d_rec_out[s] = d_rec

        _store_carry(plan, has_mask, t, ((dh_scr, dh_prev), (dc_scr, dc_prev)))
        # Padded steps are no truncation points: steps count from the start of the sequence.
        if truncate is not None:
            cut = jnp.logical_and(t > 0, lax.rem(t, jnp.int32(truncate)) == 0)
            if plan.time_padded:
                cut = jnp.logical_and(cut, t < plan.steps)

            @pl.when(cut)
            def _():
                dh_scr[...] = jnp.zeros(dh_scr.shape, jnp.float32)
                if lstm:
                    dc_scr[...] = jnp.zeros(dc_scr.shape, jnp.float32)

    def inner(j, carry):
        s = plan.time_block - 1 - j
        step(s, state_ref[s - 1] if saves_state else None)
        return carry

    # Steps Tc-1 .. 1 read the state entering them from this block; step 0 from the
    # small per-block array of entering states.
    lax.fori_loop(jnp.int32(0), jnp.int32(plan.time_block - 1), inner, jnp.int32(0))
    step(jnp.int32(0), entering_ref[0] if entering_ref is not None else None)

    @pl.when(i == plan.time_blocks - 1)
    def _():
        d_h0_out[...] = dh_scr[...]
        if lstm:
            d_c0_out[...] = dc_scr[...]


# ---------------------------------------------------------------------------------------------
# Calls: padding, specs, slicing back


def _call(kernel, name: str, kind: str, plan: _Plan, interpret, inputs, in_specs, out_shape, out_specs):
    """The ``pallas_call`` of either kernel: grid (batch tiles, time blocks), the carry in scratch."""
    if interpret is True and _InterpretParams is not None:
        # Pallas's TPU interpreter: it simulates VMEM, block copies and the grid order.
        interpret = _InterpretParams()
    carries = 2 if kind == "lstm" else 1  # h and c, or their cotangents
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(plan.batch_blocks, plan.time_blocks),
        in_specs=in_specs,
        out_specs=out_specs,
        scratch_shapes=[_VMEM((plan.batch_block, plan.hidden_padded), jnp.float32)] * carries,
        compiler_params=_CompilerParams(
            dimension_semantics=("parallel", "arbitrary"), vmem_limit_bytes=VMEM_LIMIT_BYTES
        ),
        interpret=interpret,
        name=name,
    )(*inputs)


def _pad_seq(a, plan: _Plan, gates: bool):
    """``[T, B, G*H]`` (``gates``) or ``[T, B, H]`` padded to ``[T', B', G*H']`` / ``[T', B', H']``."""
    if gates:
        a = pad_gates(a, 2, plan.num_gates, plan.hidden, plan.hidden_padded)
    else:
        a = pad_axis(a, 2, plan.hidden_padded)
    return pad_axis(pad_axis(a, 1, plan.batch_padded), 0, plan.steps_padded)


def _pad_state(a, plan: _Plan):
    return pad_axis(pad_axis(a, 1, plan.hidden_padded), 0, plan.batch_padded)


def _pad_mask(mask, plan: _Plan):
    """``bool [T, B]`` as ``int32 [T', B', 1]``: padded steps and rows are masked off."""
    padded = pad_axis(pad_axis(mask.astype(jnp.int32), 1, plan.batch_padded), 0, plan.steps_padded)
    return padded[:, :, None]


def _pad_weights(w_hh, plan: _Plan, precision: str):
    w = pad_gates(w_hh, 0, plan.num_gates, plan.hidden, plan.hidden_padded)
    return pad_axis(w, 1, plan.hidden_padded).astype(_kernel_w_dtype(w_hh.dtype, precision))


def _unpad_seq(a, plan: _Plan, gates: bool):
    a = a[: plan.steps, : plan.batch]
    if gates:
        return unpad_gates(a, 2, plan.num_gates, plan.hidden, plan.hidden_padded)
    return a[:, :, : plan.hidden]


def _specs(plan: _Plan, reverse: bool):
    """BlockSpec makers for per-step arrays, per-tile arrays and whole (resident) arrays."""
    nt = plan.time_blocks

    def time_index(i):
        return nt - 1 - i if reverse else i

    def seq(width):
        return pl.BlockSpec((plan.time_block, plan.batch_block, width), lambda b, i: (time_index(i), b, 0))

    def tile():
        return pl.BlockSpec((plan.batch_block, plan.hidden_padded), lambda b, i: (b, 0))

    def entering():
        return pl.BlockSpec((1, plan.batch_block, plan.hidden_padded), lambda b, i: (time_index(i), b, 0))

    def whole(shape):
        # A full block at a constant (literal zero) index: copied in once, single-buffered.
        return pl.BlockSpec(shape, lambda b, i: (0,) * len(shape))

    return seq, tile, entering, whole


def forward(
    kind: str,
    px,
    w_hh,
    b_hh,
    h0,
    c0,
    mask,
    *,
    residuals: str = "gates",
    precision: str = "highest",
    interpret: Any = False,
    unroll: int = 1,
    time_block: int | None = None,
    batch_block: int | None = None,
):
    """The fused forward pass on TPU: ``(h_all, c_all, rec_all)``; see :mod:`jaxrnn._kernels.interface`.

    The residual is ``rec_all``, the recurrent projection of every step
    (``residuals`` must be ``"gates"``; ``unroll`` does not apply).

    Args:
      kind, px, w_hh, b_hh, h0, c0, mask, precision: as in the contract.
      interpret: False (compile for TPU), True (Pallas's TPU interpreter, on any
        platform) or a ``pltpu.InterpretParams``.
      time_block: steps per grid step (default: up to 16, fitted to VMEM).
      batch_block: batch rows per tile, a multiple of 8 (default: up to 256, fitted to VMEM).

    Raises:
      ValueError: a bad kind, precision, shape or dtype, or tiles that do not fit VMEM.
      RuntimeError: Pallas TPU is not available in this JAX.
    """
    fn = "jaxrnn._kernels.pallas_tpu.forward"
    if residuals not in RESIDUALS:
        raise ValueError(f"{fn}: residuals must be one of {RESIDUALS} (the kernel keeps rec_all), got {residuals!r}.")
    del unroll
    steps, batch, hidden = _check_common(fn, kind, px, w_hh, h0, c0, mask, precision)
    g = ref.NUM_GATES[kind]
    arguments.check_shape(fn, "b_hh", b_hh, (g * hidden,), f"[{g}*H] for kind {kind!r}")
    arguments.check_dtype(fn, "b_hh", b_hh, (jnp.float32,))
    lstm, has_mask = kind == "lstm", mask is not None
    plan = _plan(kind, steps, batch, hidden, _kernel_w_dtype(w_hh.dtype, precision), time_block, batch_block)
    hp, gates = plan.hidden_padded, plan.num_gates * plan.hidden_padded
    seq, tile, _, whole = _specs(plan, reverse=False)

    w_t = _pad_weights(w_hh, plan, precision).T
    b = pad_gates(b_hh, 0, plan.num_gates, hidden, hp)[None, :]
    inputs = [_pad_seq(px, plan, True)] + ([_pad_mask(mask, plan)] if has_mask else [])
    inputs += [w_t, b, _pad_state(h0, plan)] + ([_pad_state(c0, plan)] if lstm else [])
    in_specs = [seq(gates)] + ([seq(1)] if has_mask else []) + [whole(w_t.shape), whole(b.shape), tile()]
    in_specs += [tile()] if lstm else []

    seq_shape = jax.ShapeDtypeStruct((plan.steps_padded, plan.batch_padded, hp), jnp.float32)
    rec_shape = jax.ShapeDtypeStruct((plan.steps_padded, plan.batch_padded, gates), jnp.float32)
    out_shape = [seq_shape] + ([seq_shape] if lstm else []) + [rec_shape]
    out_specs = [seq(hp)] + ([seq(hp)] if lstm else []) + [seq(gates)]
    kernel = functools.partial(_forward_kernel, kind=kind, plan=plan, has_mask=has_mask)
    outs = _call(kernel, f"jaxrnn_tpu_{kind}_forward", kind, plan, interpret, inputs, in_specs, out_shape, out_specs)
    h_all, rec_all = outs[0], outs[-1]
    c_all = _unpad_seq(outs[1], plan, False) if lstm else None
    return _unpad_seq(h_all, plan, False), c_all, _unpad_seq(rec_all, plan, True)


def backward(
    kind: str,
    px,
    rec_all,
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
    precision: str = "highest",
    interpret: Any = False,
    unroll: int = 1,
    time_block: int | None = None,
    batch_block: int | None = None,
):
    """The fused backward pass on TPU: ``(d_px, d_rec, d_h0, d_c0)``; see :mod:`jaxrnn._kernels.interface`.

    ``b_hh`` is not read: ``rec_all`` holds the biased recurrent projections.

    Arguments as in :func:`forward`, plus the contract's ``rec_all``, ``h_all``,
    ``c_all``, ``d_h_all``, ``d_c_last`` and ``truncate``. For Elman and LSTM
    ``d_rec`` is ``d_px`` (the same array).
    """
    fn = "jaxrnn._kernels.pallas_tpu.backward"
    steps, batch, hidden = _check_common(fn, kind, px, w_hh, h0, c0, mask, precision)
    g = ref.NUM_GATES[kind]
    lstm, gru, has_mask = kind == "lstm", kind == "gru", mask is not None
    arguments.check_shape(fn, "rec_all", rec_all, (steps, batch, g * hidden), f"[T, B, {g}*H] for kind {kind!r}")
    arguments.check_shape(fn, "h_all", h_all, (steps, batch, hidden), "[T, B, H]")
    arguments.check_shape(fn, "d_h_all", d_h_all, (steps, batch, hidden), "[T, B, H]")
    if lstm:
        arguments.check_shape(fn, "c_all", c_all, (steps, batch, hidden), "[T, B, H] (LSTM)")
        arguments.check_shape(fn, "d_c_last", d_c_last, (batch, hidden), "[B, H] (LSTM)")
    elif c_all is not None or d_c_last is not None:
        raise ValueError(f"{fn}: c_all and d_c_last must be None for kind {kind!r} (only LSTM has a cell state).")
    for name, a in (("rec_all", rec_all), ("h_all", h_all), ("c_all", c_all), ("d_h_all", d_h_all)):
        arguments.check_dtype(fn, name, a, (jnp.float32,))
    arguments.check_dtype(fn, "d_c_last", d_c_last, (jnp.float32,))
    del b_hh, unroll
    truncate = check_positive_int(truncate, f"{fn}: truncate", allow_none=True)

    plan = _plan(kind, steps, batch, hidden, _kernel_w_dtype(w_hh.dtype, precision), time_block, batch_block)
    hp, gates = plan.hidden_padded, plan.num_gates * plan.hidden_padded
    seq, tile, entering, whole = _specs(plan, reverse=True)

    w = _pad_weights(w_hh, plan, precision)
    inputs = [_pad_seq(px, plan, True), _pad_seq(rec_all, plan, True), _pad_seq(d_h_all, plan, False)]
    in_specs = [seq(gates), seq(gates), seq(hp)]
    if has_mask:
        inputs.append(_pad_mask(mask, plan))
        in_specs.append(seq(1))
    inputs.append(w)
    in_specs.append(whole(w.shape))
    if lstm or gru:
        saved, first = (c_all, c0) if lstm else (h_all, h0)
        saved = _pad_seq(saved, plan, False)
        # The state entering each time block: the initial state, then every block's last state.
        blocks_entering = jnp.concatenate(
            [_pad_state(first, plan)[None], saved[plan.time_block - 1 :: plan.time_block][:-1]], axis=0
        )
        inputs += [saved, blocks_entering]
        in_specs += [seq(hp), entering()]
    if lstm:
        inputs.append(_pad_state(d_c_last, plan))
        in_specs.append(tile())

    gate_shape = jax.ShapeDtypeStruct((plan.steps_padded, plan.batch_padded, gates), jnp.float32)
    state_shape = jax.ShapeDtypeStruct((plan.batch_padded, hp), jnp.float32)
    out_shape = [gate_shape] * (2 if gru else 1) + [state_shape] * (2 if lstm else 1)
    out_specs = [seq(gates)] * (2 if gru else 1) + [tile()] * (2 if lstm else 1)
    kernel = functools.partial(_backward_kernel, kind=kind, plan=plan, has_mask=has_mask, truncate=truncate)
    outs = _call(kernel, f"jaxrnn_tpu_{kind}_backward", kind, plan, interpret, inputs, in_specs, out_shape, out_specs)
    d_px = _unpad_seq(outs[0], plan, True)
    d_rec = _unpad_seq(outs[1], plan, True) if gru else d_px
    d_h0 = outs[-2 if lstm else -1][:batch, :hidden]
    d_c0 = outs[-1][:batch, :hidden] if lstm else None
    return d_px, d_rec, d_h0, d_c0

"""Fused recurrence kernels for NVIDIA GPUs: Pallas on its Triton backend.

Implements :class:`jaxrnn._kernels.interface.Kernel` for the Elman, LSTM and GRU
cells. Triton cannot slice values, so the kernels load one block per gate and
call the gate equations in their per-gate form,
:func:`jaxrnn._core.gates.forward_blocks` and :func:`jaxrnn._core.gates.reverse_blocks`.

Design:

- One program per batch tile (``grid = (B_padded / block_batch,)``); the whole
  time loop runs inside the program (``lax.fori_loop`` over T in one kernel
  launch), so there is no launch or host round trip per step, and the tiles run
  on different SMs at once.
- The recurrent weights are loaded once, before the loop, one ``[Hp, Hp]`` block
  per gate (the forward multiplies by ``W_hh^T``, passed pre-transposed so both
  passes are plain ``a @ b`` products), and stay on chip for all T steps. The
  state ``h`` (and ``c``) is the loop carry, in registers.
- Per step the forward reads ``px[t]``, does one ``[bt, Hp] @ [Hp, Hp]`` product
  per gate, the gate arithmetic and the mask select in registers, and writes
  ``h_all[t]``, ``c_all[t]`` and ``rec_all[t]``. The backward runs the reverse
  loop: it reads ``px[t]``, the saved ``rec_all[t]`` (no recurrent matmul is
  recomputed), ``h_all[t-1]`` and ``c_all[t-1]``, writes ``d_px[t]`` (and, for
  the GRU only, ``d_rec[t]``: the other cells' ``d_rec`` is ``d_px``, so it is
  returned as the same array instead of written twice), and carries
  ``dh_{t-1} = dh_direct + sum_g d_rec_g @ W_g``. Weight gradients are left to
  the caller (one large matmul each, outside the kernel).
- Triton wants power-of-2 block shapes and ``tl.dot`` at least 16 along every
  dimension, so ``forward`` and ``backward`` pad the hidden size of each gate to
  ``Hp = next_power_of_2(H, 16)`` and the batch to a multiple of ``block_batch``
  (at least 16) with :mod:`jaxrnn._kernels.pallas_common`, which is exact, and slice the
  results back. The padding is a copy of the sequences in memory when ``H`` or
  ``B`` is not already aligned (a batch of 1 is stored as 16 rows): a masked-load
  path that avoids it is left for device tuning.

Resident-weight limit (:data:`MAX_RESIDENT_BYTES` = 128 KiB of padded ``W_hh``,
``G * Hp * Hp * itemsize``). An H100 SM has 256 KiB of registers (64K 32-bit)
and 228 KiB of shared memory, at most 227 KiB of it for one program. The
weights are a loop-invariant value: Triton keeps it in registers, split across
the program's threads (at 8 warps, 128 KiB is 128 of a thread's 255 registers,
which leaves the rest for the state, the step's inputs and the products), or,
where the dot wants an operand in shared memory, as one hoisted shared-memory
copy (128 KiB leaves room for the staging of ``px``). Twice that (256 KiB) would
fill the whole register file or exceed shared memory, so it would spill to
local memory and be re-read every step: the slow kernel of BASELINES.md. The
tests check, on the Triton IR lowered from CPU, that every step's products use
weights loaded before the loop; where Triton then places them (registers,
shared memory, or spilled: the FMA path of ``"highest"`` may replicate an
operand across threads) is for the device check to read from ptxas's spill
report or the TTGIR dump (``MLIR_ENABLE_DUMP=1``). What fits (``Hp`` after
padding):

=================  ========  ========
cell               float32   bfloat16
=================  ========  ========
Elman (G=1)        H ≤ 128   H ≤ 256
GRU (G=3)          H ≤ 64    H ≤ 128
LSTM (G=4)         H ≤ 64    H ≤ 128
=================  ========  ========

Precision: ``"highest"`` multiplies float32 weights in IEEE float32
(``lax.Precision.HIGHEST``, Triton ``input_precision="ieee"``: FMA units, no
tensor cores); ``"fast"`` in TF32 on the tensor cores (``Precision.DEFAULT``,
Triton ``"tf32"``); both accumulate in float32. With bfloat16 weights the state
or delta is rounded to bfloat16 for the product (as the XLA kernel
does) and products accumulate in float32, whatever ``precision`` says. The gate
arithmetic and the state are float32 throughout.

Launch parameters (keyword arguments of :func:`forward` and :func:`backward`, to
be swept on a device; none has been measured yet):

- ``block_batch``: rows per program. Default: 16, the smallest ``tl.dot`` tile;
  the step is latency-bound at small batch, so more, smaller tiles on more SMs
  are faster than fewer large ones; raised (up to 64) only when the batch would
  need more programs than an H100 has SMs (132), since programs beyond one wave
  would run after the first wave's full T-step loops, doubling the time.
- ``num_warps``: 4 when the padded weights take at most 32 KiB (64 registers a
  thread at 128 threads), else 8 (at most 128 registers a thread at the 128 KiB
  limit). More warps also split each step's products further, which shortens
  the step's critical path until the per-step synchronisation dominates.
- ``num_stages``: 2. The loads of ``px[t]`` (and of the saved sequences in the
  backward) do not depend on the recurrence, so one stage of prefetch lets
  Triton's pipeliner, where it applies to them, hide the global-memory latency
  of the next step behind this step's arithmetic; deeper buffers only take
  shared memory away from the weights.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._core import gates
from jaxrnn._core.checks import check_positive_int
from jaxrnn._kernels.interface import PRECISIONS
from jaxrnn._kernels.pallas_common import next_power_of_2, pad_axis, pad_gates, round_up, unpad_gates

try:
    from jax.experimental import pallas as pl

    try:
        from jax.experimental.pallas import triton as _triton
    except ImportError:  # older jax named it "gpu" (with TritonCompilerParams)
        from jax.experimental.pallas import gpu as _triton  # type: ignore[attr-defined,no-redef]
    _CompilerParams = getattr(_triton, "CompilerParams", None) or _triton.TritonCompilerParams  # type: ignore[attr-defined]
    AVAILABLE = True
    WHY_UNAVAILABLE: str | None = None
except Exception as err:  # any failure here means: no Pallas Triton in this jax
    pl = None  # type: ignore[assignment]
    _CompilerParams = None
    AVAILABLE = False
    WHY_UNAVAILABLE = f"jax {jax.__version__} has no usable Pallas Triton backend ({type(err).__name__}: {err})"

MIN_TILE = 16  # tl.dot wants every dimension >= 16
MAX_RESIDENT_BYTES = 128 * 1024  # padded W_hh kept on chip for the whole loop (see the module docstring)
MAX_BLOCK_BATCH = 64
_NUM_SMS = 132  # H100 SXM; the default tile keeps the programs within one wave
_W_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


def resident_bytes(kind: str, hidden_size: int, w_dtype) -> int:
    """Bytes of the padded recurrent weights that a program keeps on chip."""
    hp = next_power_of_2(hidden_size, MIN_TILE)
    return gates.NUM_GATES[kind] * hp * hp * jnp.dtype(w_dtype).itemsize


RESIDUALS = ("gates",)  # the backward reads the recurrent projections kept by the forward


def needs_px(residuals: str) -> bool:
    """The backward recomputes the gates from ``px`` and the kept ``rec_all``."""
    return True


def unsupported(kind: str, batch: int, hidden_size: int, w_dtype, precision: str = "highest") -> str | None:
    """Why the kernels cannot run this configuration, or None when they can."""
    if not AVAILABLE:
        return WHY_UNAVAILABLE
    if kind not in gates.KINDS:
        return f"no kernel for kind {kind!r} (kinds: {gates.KINDS})"
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r} (precisions: {PRECISIONS})"
    if jnp.dtype(w_dtype) not in _W_DTYPES:
        return f"recurrent weights of dtype {jnp.dtype(w_dtype)} (the kernels take float32 or bfloat16)"
    if batch < 1 or hidden_size < 1:
        return f"empty batch or state (batch={batch}, hidden_size={hidden_size})"
    size = resident_bytes(kind, hidden_size, w_dtype)
    if size > MAX_RESIDENT_BYTES:
        g, hp = gates.NUM_GATES[kind], next_power_of_2(hidden_size, MIN_TILE)
        return (
            f"the recurrent weights ({g} x {hp} x {hp} {jnp.dtype(w_dtype)} after padding hidden_size={hidden_size} "
            f"to {hp}: {size // 1024} KiB) exceed the {MAX_RESIDENT_BYTES // 1024} KiB that stay resident on chip"
            + ("; bfloat16 weights take half" if jnp.dtype(w_dtype) == jnp.float32 else "")
        )
    return None


def default_block_batch(batch: int) -> int:
    """16 rows per program, more only when the programs would not fit in one wave of SMs."""
    bt = MIN_TILE
    while bt < MAX_BLOCK_BATCH and -(-batch // bt) > _NUM_SMS:
        bt *= 2
    return bt


def default_num_warps(kind: str, hidden_size: int, w_dtype) -> int:
    return 4 if resident_bytes(kind, hidden_size, w_dtype) <= 32 * 1024 else 8


# ----------------------------------------------------------------------------- argument checks


def _require_available():
    if not AVAILABLE:
        raise RuntimeError(f"jaxrnn's GPU kernels need Pallas with its Triton backend: {WHY_UNAVAILABLE}")


def _check_shape(name: str, a, expected: tuple, why: str = ""):
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(a.shape)}, expected {tuple(expected)}{why}.")


def _check_float32(name: str, a):
    if a.dtype != jnp.float32:
        raise TypeError(f"{name} has dtype {a.dtype}, expected float32 (the kernels carry state in float32).")


def _check_lstm_only(kind: str, name: str, a):
    if (a is None) == (kind == "lstm"):
        want = "an array" if kind == "lstm" else "None"
        raise ValueError(f"{name} must be {want} for kind={kind!r}, got {'None' if a is None else 'an array'}.")


def _check_common(kind, px, w_hh, b_hh, h0, c0, mask, precision):
    """Check the arguments both passes share (``b_hh`` None in the backward); return ``(T, B, H, G)``."""
    if kind not in gates.KINDS:
        raise ValueError(f"kind must be one of {gates.KINDS}, got {kind!r}.")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    g = gates.NUM_GATES[kind]
    if w_hh.ndim != 2 or w_hh.shape[0] != g * w_hh.shape[1]:
        raise ValueError(f"w_hh has shape {tuple(w_hh.shape)}, expected ({g} * H, H) for kind={kind!r} (G={g} gates).")
    if jnp.dtype(w_hh.dtype) not in _W_DTYPES:
        raise TypeError(f"w_hh has dtype {w_hh.dtype}, expected float32 or bfloat16.")
    hidden = w_hh.shape[1]
    if px.ndim != 3:
        raise ValueError(f"px has shape {tuple(px.shape)}, expected (T, B, {g * hidden}) (time-major).")
    num_steps, batch = px.shape[:2]
    _check_shape("px", px, (num_steps, batch, g * hidden), f" (G * H with H={hidden} from w_hh)")
    if b_hh is not None:
        _check_shape("b_hh", b_hh, (g * hidden,))
        if jnp.dtype(b_hh.dtype) not in _W_DTYPES:
            raise TypeError(f"b_hh has dtype {b_hh.dtype}, expected float32 or bfloat16.")
    _check_shape("h0", h0, (batch, hidden), " (B from px, H from w_hh)")
    _check_lstm_only(kind, "c0", c0)
    if c0 is not None:
        _check_shape("c0", c0, (batch, hidden))
    if mask is not None:
        _check_shape("mask", mask, (num_steps, batch), " (time-major, like px)")
        if mask.dtype != jnp.bool_:
            raise TypeError(f"mask has dtype {mask.dtype}, expected bool.")
    for name, a in (("px", px), ("h0", h0), ("c0", c0)):
        if a is not None:
            _check_float32(name, a)
    return num_steps, batch, hidden, g


# ----------------------------------------------------------------------------- gate arithmetic


def _dot(a, w, dot_precision):
    """``a @ w`` with ``a`` rounded to ``w``'s dtype, accumulated in float32."""
    return lax.dot_general(
        a.astype(w.dtype), w, (((1,), (0,)), ((), ())), precision=dot_precision, preferred_element_type=jnp.float32
    )


def _gates_backward(kind: str, px, rec, h, c, dh, dc):
    """One step's reverse on per-gate blocks, the activations recomputed from ``px`` and ``rec``."""
    _, c_new, act = gates.forward_blocks(kind, px, rec, h, c)
    return gates.reverse_blocks(kind, act, h, c, c_new, dh, dc)


# ----------------------------------------------------------------------------- kernels


def _named_refs(refs, names):
    assert len(refs) == len(names), (len(refs), names)
    return dict(zip(names, refs))


def _forward_names(kind: str, has_mask: bool):
    lstm = kind == "lstm"
    inputs = ["px", "w", "b", "h0"] + ["c0"] * lstm + ["mask"] * has_mask
    return inputs, ["h_all", "rec_all"] + ["c_all"] * lstm


def _backward_names(kind: str, has_mask: bool):
    lstm, gru = kind == "lstm", kind == "gru"
    inputs = (
        ["px", "rec_all", "w", "h0"]
        + ["c0"] * lstm
        + ["h_all"]
        + ["c_all"] * lstm
        + ["mask"] * has_mask
        + ["d_h_all"]
        + ["d_c_last"] * lstm
    )
    return inputs, ["d_px"] + ["d_rec"] * gru + ["d_h0"] + ["d_c0"] * lstm


def _forward_kernel(*refs, kind, hp, num_steps, has_mask, dot_precision):
    inputs, outputs = _forward_names(kind, has_mask)
    r = _named_refs(refs, inputs + outputs)
    blocks = [pl.ds(g * hp, hp) for g in range(gates.NUM_GATES[kind])]
    # Loaded once; resident for the whole loop: W_hh^T and b_hh, one [Hp, Hp] / [1, Hp] block per gate.
    w = [r["w"][:, blk] for blk in blocks]
    b = [r["b"][:, blk] for blk in blocks]

    def step(t, carry):
        h, c = carry
        h_w = h.astype(w[0].dtype)  # rounded once for all gates (bfloat16 weights)
        rec = [_dot(h_w, w_g, dot_precision) + b_g for w_g, b_g in zip(w, b)]
        px = [r["px"][t, :, blk] for blk in blocks]
        h_new, c_new, _ = gates.forward_blocks(kind, px, rec, h, c)
        if has_mask:
            keep = r["mask"][t] > 0.0  # [bt, 1]
            h_new = jnp.where(keep, h_new, h)
            c_new = None if c is None else jnp.where(keep, c_new, c)
        r["h_all"][t] = h_new
        if c is not None:
            r["c_all"][t] = c_new
        for blk, rec_g in zip(blocks, rec):
            r["rec_all"][t, :, blk] = rec_g
        return h_new, c_new

    c0 = r["c0"][...] if kind == "lstm" else None
    lax.fori_loop(jnp.int32(0), jnp.int32(num_steps), step, (r["h0"][...], c0))


def _backward_kernel(*refs, kind, hp, num_steps, has_mask, truncate, dot_precision):
    inputs, outputs = _backward_names(kind, has_mask)
    r = _named_refs(refs, inputs + outputs)
    lstm = kind == "lstm"
    blocks = [pl.ds(g * hp, hp) for g in range(gates.NUM_GATES[kind])]
    w = [r["w"][blk, :] for blk in blocks]  # resident: W_hh, one [Hp, Hp] block of rows per gate
    h0 = r["h0"][...]
    c0 = r["c0"][...] if lstm else None

    def step(s, carry):
        t = num_steps - 1 - s
        dh, dc = carry
        dh = dh + r["d_h_all"][t]
        first = t == 0
        before = jnp.maximum(t - 1, 0)
        h = jnp.where(first, h0, r["h_all"][before])
        c = jnp.where(first, c0, r["c_all"][before]) if lstm else None
        px = [r["px"][t, :, blk] for blk in blocks]
        rec = [r["rec_all"][t, :, blk] for blk in blocks]
        d_px, d_rec, dh_prev, dc_prev = _gates_backward(kind, px, rec, h, c, dh, dc)
        for d_g, w_g in zip(d_rec, w):
            through_rec = _dot(d_g, w_g, dot_precision)
            dh_prev = through_rec if dh_prev is None else dh_prev + through_rec
        if has_mask:
            keep = r["mask"][t] > 0.0  # [bt, 1]
            d_px = [jnp.where(keep, d, 0.0) for d in d_px]
            d_rec = [jnp.where(keep, d, 0.0) for d in d_rec]
            dh_prev = jnp.where(keep, dh_prev, dh)
            dc_prev = jnp.where(keep, dc_prev, dc) if lstm else None
        if truncate is not None:
            cut = jnp.logical_and(t > 0, t % truncate == 0)
            dh_prev = jnp.where(cut, 0.0, dh_prev)
            dc_prev = jnp.where(cut, 0.0, dc_prev) if lstm else None
        for blk, d_g in zip(blocks, d_px):
            r["d_px"][t, :, blk] = d_g
        if kind == "gru":
            for blk, d_g in zip(blocks, d_rec):
                r["d_rec"][t, :, blk] = d_g
        return dh_prev, dc_prev

    dc_last = r["d_c_last"][...] if lstm else None
    dh0, dc0 = lax.fori_loop(jnp.int32(0), jnp.int32(num_steps), step, (jnp.zeros_like(h0), dc_last))
    r["d_h0"][...] = dh0
    if lstm:
        r["d_c0"][...] = dc0


# ----------------------------------------------------------------------------- launch


def _dot_precision(precision: str):
    # bfloat16 operands ignore it (Triton takes input_precision for float32 dots only).
    return lax.Precision.HIGHEST if precision == "highest" else lax.Precision.DEFAULT


class _Plan:
    """One call's padded sizes and launch settings; pads its arrays and launches its kernel."""

    def __init__(self, kind, num_steps, batch, hidden, w_hh, mask, precision, launch):
        block_batch, num_warps, num_stages = launch["block_batch"], launch["num_warps"], launch["num_stages"]
        if block_batch is not None and (block_batch < MIN_TILE or block_batch & (block_batch - 1)):
            raise ValueError(f"block_batch must be a power of 2 >= {MIN_TILE} (a tl.dot tile), got {block_batch}.")
        if num_warps is not None and (num_warps < 1 or num_warps & (num_warps - 1)):
            raise ValueError(f"num_warps must be a power of 2, got {num_warps}.")
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}.")
        self.kind, self.g = kind, gates.NUM_GATES[kind]
        self.batch, self.hidden = batch, hidden
        self.hp = next_power_of_2(hidden, MIN_TILE)
        self.bt = block_batch or default_block_batch(batch)
        self.bp = round_up(batch, self.bt)
        self.num_warps = num_warps or default_num_warps(kind, hidden, w_hh.dtype)
        self.num_stages, self.interpret, self.debug = num_stages, launch["interpret"], launch["debug"]
        # What every kernel body takes as static arguments.
        self.statics = dict(kind=kind, hp=self.hp, num_steps=num_steps, has_mask=mask is not None)
        self.statics["dot_precision"] = _dot_precision(precision)

    def pad(self, a, num_gates: int = 1):
        """``[..., B, num_gates * H]`` padded to ``[..., Bp, num_gates * Hp]`` (None stays None)."""
        if a is None:
            return None
        return pad_axis(pad_gates(a, -1, num_gates, self.hidden, self.hp), -2, self.bp)

    def unpad(self, a, num_gates: int = 1):
        if a is None:
            return None
        return unpad_gates(a[..., : self.batch, :], -1, num_gates, self.hidden, self.hp)

    def weights(self, w_hh):
        """``w_hh [G*H, H]`` padded to ``[G*Hp, Hp]``."""
        return pad_axis(pad_gates(w_hh, 0, self.g, self.hidden, self.hp), 1, self.hp)

    def mask(self, mask):
        """``[T, B]`` bool as ``[T, Bp, 1]`` float32 (padded rows masked off)."""
        if mask is None:
            return None
        return pad_axis(mask.astype(jnp.float32), 1, self.bp)[:, :, None]

    def spec(self, a, role: str):
        """The BlockSpec of a padded array: a batch tile of a ``"seq"`` or a ``"state"``, or ``"all"`` of it."""
        if role == "seq":
            return pl.BlockSpec((a.shape[0], self.bt, a.shape[2]), lambda i: (0, i, 0))
        if role == "state":
            return pl.BlockSpec((self.bt, a.shape[1]), lambda i: (i, 0))
        return pl.BlockSpec(a.shape, lambda i: (0,) * a.ndim)

    def call(self, kernel, name: str, inputs, outputs, **statics):
        """Launch ``kernel`` over the batch tiles; ``inputs``, ``outputs``: ``(array or shape, role)`` pairs."""
        inputs = [(a, role) for a, role in inputs if a is not None]
        outs = [(jax.ShapeDtypeStruct(shape, jnp.float32), role) for shape, role in outputs]
        return pl.pallas_call(
            functools.partial(kernel, **self.statics, **statics),
            out_shape=[o for o, _ in outs],
            grid=(self.bp // self.bt,),
            in_specs=[self.spec(a, role) for a, role in inputs],
            out_specs=[self.spec(o, role) for o, role in outs],
            compiler_params=_CompilerParams(num_warps=self.num_warps, num_stages=self.num_stages),
            interpret=self.interpret,
            debug=self.debug,
            name=f"jaxrnn_{self.kind}_{name}",
        )(*[a for a, _ in inputs])


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
    interpret: bool = False,
    unroll: int = 1,
    block_batch: int | None = None,
    num_warps: int | None = None,
    num_stages: int = 2,
    debug: bool = False,
):
    """The fused forward: ``(h_all, c_all, rec_all)`` (:mod:`jaxrnn._kernels.interface`).

    The residual is ``rec_all``, the recurrent projection of every step
    (``residuals`` must be ``"gates"``; ``unroll`` does not apply).

    Args beyond the contract: ``block_batch`` (rows per program, a power of 2
    >= 16; None: :func:`default_block_batch`), ``num_warps`` (None:
    :func:`default_num_warps`), ``num_stages`` (Triton's software pipelining),
    ``debug`` (Pallas prints the kernel's jaxpr and Triton IR when it lowers).

    Raises:
      RuntimeError: Pallas Triton is not available in this jax.
      ValueError, TypeError: an argument of the wrong kind, shape or dtype.
    """
    _require_available()
    if residuals not in RESIDUALS:
        raise ValueError(f"residuals must be one of {RESIDUALS} (the kernel keeps rec_all), got {residuals!r}.")
    del unroll
    num_steps, batch, hidden, g = _check_common(kind, px, w_hh, b_hh, h0, c0, mask, precision)
    launch = dict(block_batch=block_batch, num_warps=num_warps, num_stages=num_stages, interpret=interpret, debug=debug)
    plan = _Plan(kind, num_steps, batch, hidden, w_hh, mask, precision, launch)
    if num_steps == 0:
        empty = jnp.zeros((0, batch, hidden), jnp.float32)
        return empty, (empty if kind == "lstm" else None), jnp.zeros((0, batch, g * hidden), jnp.float32)
    b = pad_gates(b_hh.astype(jnp.float32), 0, g, hidden, plan.hp)[None, :]
    inputs = [
        (plan.pad(px, g), "seq"),
        (plan.weights(w_hh).T, "all"),
        (b, "all"),
        (plan.pad(h0), "state"),
        (plan.pad(c0), "state"),
        (plan.mask(mask), "seq"),
    ]
    seq = ((num_steps, plan.bp, plan.hp), "seq")
    outputs = [seq, ((num_steps, plan.bp, g * plan.hp), "seq")] + [seq] * (kind == "lstm")
    outs = plan.call(_forward_kernel, "forward", inputs, outputs)
    h_all, rec_all = outs[0], outs[1]
    c_all = outs[2] if kind == "lstm" else None
    return plan.unpad(h_all), plan.unpad(c_all), plan.unpad(rec_all, g)


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
    interpret: bool = False,
    unroll: int = 1,
    block_batch: int | None = None,
    num_warps: int | None = None,
    num_stages: int = 2,
    debug: bool = False,
):
    """The fused reverse loop: ``(d_px, d_rec, d_h0, d_c0)`` (:mod:`jaxrnn._kernels.interface`).

    For every cell but the GRU, ``d_rec`` is ``d_px`` (the same array). ``b_hh``
    is not read (``rec_all`` holds the biased projections). Launch arguments as
    in :func:`forward`.

    Raises:
      RuntimeError: Pallas Triton is not available in this jax.
      ValueError, TypeError: an argument of the wrong kind, shape or dtype.
    """
    _require_available()
    num_steps, batch, hidden, g = _check_common(kind, px, w_hh, None, h0, c0, mask, precision)
    del b_hh, unroll
    truncate = check_positive_int(truncate, "truncate", allow_none=True)
    seq = (num_steps, batch, hidden)
    _check_shape("rec_all", rec_all, px.shape, " (the shape of px)")
    _check_shape("h_all", h_all, seq)
    _check_shape("d_h_all", d_h_all, seq)
    _check_lstm_only(kind, "c_all", c_all)
    _check_lstm_only(kind, "d_c_last", d_c_last)
    if kind == "lstm":
        _check_shape("c_all", c_all, seq)
        _check_shape("d_c_last", d_c_last, (batch, hidden))
    residuals = dict(rec_all=rec_all, h_all=h_all, c_all=c_all, d_h_all=d_h_all, d_c_last=d_c_last)
    for name, a in residuals.items():
        if a is not None:
            _check_float32(name, a)
    launch = dict(block_batch=block_batch, num_warps=num_warps, num_stages=num_stages, interpret=interpret, debug=debug)
    plan = _Plan(kind, num_steps, batch, hidden, w_hh, mask, precision, launch)
    if num_steps == 0:
        return px, rec_all, jnp.zeros_like(h0), d_c_last
    inputs = [
        (plan.pad(px, g), "seq"),
        (plan.pad(rec_all, g), "seq"),
        (plan.weights(w_hh), "all"),
        (plan.pad(h0), "state"),
        (plan.pad(c0), "state"),
        (plan.pad(h_all), "seq"),
        (plan.pad(c_all), "seq"),
        (plan.mask(mask), "seq"),
        (plan.pad(d_h_all), "seq"),
        (plan.pad(d_c_last), "state"),
    ]
    state = ((plan.bp, plan.hp), "state")
    gates = ((num_steps, plan.bp, g * plan.hp), "seq")
    outputs = [gates] + [gates] * (kind == "gru") + [state] + [state] * (kind == "lstm")
    outs = plan.call(_backward_kernel, "backward", inputs, outputs, truncate=truncate)
    d_px = plan.unpad(outs[0], g)
    d_rec = plan.unpad(outs[1], g) if kind == "gru" else d_px
    d_h0 = plan.unpad(outs[-2] if kind == "lstm" else outs[-1])
    d_c0 = plan.unpad(outs[-1]) if kind == "lstm" else None
    return d_px, d_rec, d_h0, d_c0

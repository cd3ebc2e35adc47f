"""Recurrent cells: pure ``init`` / ``initial_state`` / ``step`` functions.

A cell is a :class:`Cell` NamedTuple of pure functions made by a factory
(:func:`elman`, :func:`lstm`, :func:`gru`, :func:`layer_norm_lstm`). Weights follow
PyTorch's layout and gate order, so conversion to and from ``torch.nn`` is a copy.

The built-in cells are *split*: their step is made of parts the time loop
(:mod:`jaxrnn._core.loop`) can reorganise:

- ``project(params, xs)``: the input projection ``xs @ w_ih.T + b_ih`` for any
  number of leading axes, so the loop computes it for all time steps in one
  matmul, outside the sequential loop;
- ``project_state(params, state)``: the recurrent projection ``h @ w_hh.T + b_hh``
  (for a diagonal-recurrent cell, ``h * w_hh + b_hh`` elementwise, ``h`` repeated per gate);
- ``update(state, px, rec)``: the elementwise gate arithmetic, returning
  ``(new_state, y)``;
- ``update_bwd(state, px, rec, d_new_state, d_y)``: its hand-written reverse,
  returning ``(d_state, d_px, d_rec)``: the cotangent of the previous state through
  the direct path (not through ``rec``), and the gate deltas.

``step(params, state, x) == update(state, project(params, x), project_state(params, state))``.
A user-defined cell needs only ``init``, ``initial_state`` and ``step``; see
:class:`Cell`. The gate equations of the built-in cells are
:mod:`jaxrnn._core.gates`, shared with the kernels.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._core import gates
from jaxrnn._core.checks import carry_dtype, check_positive_int, float_dtype

Array = jax.Array


class Cell(NamedTuple):
    r"""A recurrent cell as a NamedTuple of pure functions.

    The protocol that :func:`jaxrnn.rnn` relies on is the first four fields; any
    object with them (a class, a NamedTuple, a module) works as a cell:

    - ``hidden_size``: int.
    - ``init(key, input_size, dtype=None) -> params``: a pytree; ``dtype`` None
      is JAX's default float (float32, or float64 with ``jax_enable_x64``).
    - ``initial_state(batch_shape=(), dtype=None) -> state``: a pytree of
      arrays with leading shape ``batch_shape``.
    - ``step(params, state, x) -> (state, y)``: one time step, the signature of a
      ``lax.scan`` body; ``x`` has shape ``batch_shape + (input_size,)``.

    The remaining fields are optional. A *split* cell defines ``project``,
    ``project_state`` and ``update`` (see the module docstring): it gets the
    input projection hoisted out of the loop and the weight gradients as large
    matmuls after it, with ``update_bwd`` as the step's reverse where it is given
    and ``jax.vjp`` of ``update`` where not; any other cell gets ``jax.vjp`` of
    ``step`` inside the same reverse scan. ``name`` names the cell in messages
    and reports (the built-in cells: ``"elman_tanh"``, ``"elman_relu"``,
    ``"lstm"``, ``"gru"``, their diagonal-recurrent variants
    ``"elman_tanh_diagonal"``, ``"elman_relu_diagonal"``, ``"lstm_diagonal"``,
    ``"gru_diagonal"``, ``"layer_norm_lstm"``, ``"mingru"``, ``"minlstm"``,
    ``"lru"``). ``recurrence`` (a :class:`LinearRecurrence`) declares that the
    state follows :math:`h_t = a_t \odot h_{t-1} + b_t` with ``a_t, b_t`` from the
    input alone, which lets :func:`jaxrnn.rnn` run the cell as a parallel scan
    (``solver="parallel"``).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> def step(params, state, x):  # a leaky integrator, y_t = h_t
      ...     h = 0.9 * state.h + x @ params
      ...     return jr.HiddenState(h), h
      >>> cell = jr.Cell(hidden_size=3, init=lambda key, input_size, dtype=None: jnp.eye(input_size, 3),
      ...                initial_state=lambda batch_shape=(), dtype=None: jr.HiddenState(jnp.zeros((*batch_shape, 3))),
      ...                step=step, name="leaky")
      >>> ys, final = jr.rnn(cell, cell.init(None, 3), jnp.ones((2, 4, 3)))
      >>> ys.shape
      (2, 4, 3)
    """

    hidden_size: int
    init: Callable[..., Any]
    initial_state: Callable[..., Any]
    step: Callable[..., Any]
    project: Callable[..., Any] | None = None
    project_state: Callable[..., Any] | None = None
    update: Callable[..., Any] | None = None
    update_bwd: Callable[..., Any] | None = None
    name: str = "cell"
    recurrence: LinearRecurrence | None = None


class LinearRecurrence(NamedTuple):
    r"""A cell's declaration that its state follows a linear recurrence in time.

    .. math::
        h_t = a_t \odot h_{t-1} + b_t, \qquad y_t = \mathrm{output}(h_t, x_t)

    with ``a_t`` and ``b_t`` functions of the input ``x_t`` alone (real or
    complex, of the shape of ``h``). The parallel solver of :func:`jaxrnn.rnn`
    computes all ``a, b`` as one projection, runs the recurrence as an
    associative scan (depth :math:`O(\log T)`) and its adjoint as a reverse one.
    The cell's ``step`` must be this recurrence: :func:`linear_step` builds it.
    """

    coefficients: Callable[..., Any]  # (params, xs [..., I]) -> (a, b), each [..., N], real or complex
    output: Callable[..., Any]  # (params, h [..., N], xs [..., I]) -> y [..., H]
    to_state: Callable[..., Any]  # h [..., N] -> the cell's state pytree
    from_state: Callable[..., Any]  # the cell's state -> h [..., N]
    # (params, xs) -> (log a, log b) for a cell whose a and b are positive, or None. Given, the
    # forward pass runs in log space (a cumulative log-sum-exp), as Feng et al. (2024) do for long
    # sequences; the gradient is the same hand-written reverse scan.
    log_coefficients: Callable[..., Any] | None = None


def is_split(cell) -> bool:
    """Whether ``cell`` splits its step into ``project`` / ``project_state`` / ``update`` (see :class:`Cell`)."""
    return all(getattr(cell, name, None) is not None for name in ("project", "project_state", "update"))


def linear_step(recurrence: LinearRecurrence) -> Callable[..., Any]:
    """The ``step(params, state, x) -> (state, y)`` of a cell with this linear ``recurrence``."""

    def step(params, state, x):
        a, b = recurrence.coefficients(params, x)
        h = a * recurrence.from_state(state) + b
        return recurrence.to_state(h), recurrence.output(params, h, x)

    return step


class CellParams(NamedTuple):
    """Parameters of the built-in cells, in PyTorch's layout.

    ``G`` is the number of gates: 1 for Elman, 4 for LSTM (order i, f, g, o),
    3 for GRU (order r, z, n); ``H`` the hidden size, ``I`` the input size. A
    diagonal-recurrent cell (``recurrent="diagonal"``) has one recurrent weight
    per gate and unit, ``w_hh [G*H]``, which torch has no counterpart for.
    """

    w_ih: Array  # [G*H, I] input-to-hidden weights (torch: weight_ih_l0)
    w_hh: Array  # [G*H, H] hidden-to-hidden weights (torch: weight_hh_l0); [G*H] for recurrent="diagonal"
    b_ih: Array  # [G*H] input bias (torch: bias_ih_l0)
    b_hh: Array  # [G*H] recurrent bias (torch: bias_hh_l0)


class LayerNormLSTMParams(NamedTuple):
    """Parameters of :func:`layer_norm_lstm` (``H`` hidden size, ``I`` input size)."""

    w_ih: Array  # [4H, I] input-to-hidden weights, gate order i, f, g, o
    w_hh: Array  # [4H, H] hidden-to-hidden weights
    bias: Array  # [4H] gate bias (forget block initialised to forget_bias)
    ln_ih_scale: Array  # [4H] layer-norm gain on the input projection
    ln_hh_scale: Array  # [4H] layer-norm gain on the recurrent projection


class HiddenState(NamedTuple):
    """State of the Elman and GRU cells: the hidden state ``h [*batch, H]``, also the output."""

    h: Array  # [*batch, H] hidden state


class LSTMState(NamedTuple):
    """State of the LSTM cells: hidden state ``h [*batch, H]`` (the output) and cell state ``c [*batch, H]``."""

    h: Array  # [*batch, H] hidden state (the output)
    c: Array  # [*batch, H] cell state


def _matmul_t(a: Array, w: Array, b: Array | None = None) -> Array:
    """``a @ w.T (+ b)`` in ``w``'s dtype with accumulation in the carry dtype; ``b`` is ``[out]``.

    The leading axes are flattened first, so over a whole sequence this is one 2-D
    matmul and so is its transpose, the weight gradient: XLA:CPU runs
    ``[T*B, G*H]^T @ [T*B, I]`` about twice as fast as the same contraction over
    the two axes ``t, b`` (``benchmarks/NOTES.md``). The bias is added to the 2-D
    rows too, so its gradient is a sum over one axis of rows (see :func:`_scale_features`).
    """
    out_dtype = carry_dtype(w.dtype)
    rows = a.reshape((-1, a.shape[-1])).astype(w.dtype)
    out = jax.lax.dot_general(rows, w, (((1,), (1,)), ((), ())), preferred_element_type=out_dtype)
    if b is not None:
        out = out + b.astype(out_dtype)[None]
    return out.reshape(a.shape[:-1] + (w.shape[0],))


def _affine(a: Array, w: Array, b: Array) -> Array:
    """``a @ w.T + b`` in ``w``'s dtype, accumulated in the carry dtype; ``b`` is ``[out]``."""
    return _matmul_t(a, w, b)


def _scale_features(a: Array, v: Array) -> Array:
    """``a * v`` for a vector ``v`` over the last axis, computed on ``a``'s rows flattened to 2-D.

    Its VJP sums ``v``'s gradient over all rows at once: XLA:CPU runs the fused
    multiply-and-sum over the leading axis of a ``[T, 1, H]`` array (batch 1)
    about 85x slower than over ``[T, H]`` (``benchmarks/parallel_choices.py``).
    """
    rows = a.reshape((-1, a.shape[-1]))
    return (rows * v.astype(a.dtype)[None]).reshape(a.shape)


def _expand(v: Array, ndim: int) -> Array:
    """A vector over the last axis, reshaped to rank ``ndim`` (rank promotion made explicit)."""
    return v.reshape((1,) * (ndim - 1) + v.shape)


def _orthogonal_blocks(key: Array, num_gates: int, hidden_size: int, dtype) -> Array:
    """``num_gates`` independent orthogonal ``[H, H]`` blocks stacked to ``[G*H, H]``."""
    keys = jax.random.split(key, num_gates)
    ortho = jax.nn.initializers.orthogonal()
    blocks = [ortho(k, (hidden_size, hidden_size), jnp.float32) for k in keys]
    return jnp.concatenate(blocks, axis=0).astype(dtype)


def _lecun_normal(key: Array, shape, dtype) -> Array:
    return jax.nn.initializers.lecun_normal(in_axis=1, out_axis=0)(key, shape, jnp.float32).astype(dtype)


def _make_initial_state(state_type, hidden_size: int):
    def initial_state(batch_shape: Sequence[int] = (), dtype=None):
        dtype = float_dtype(dtype)
        shape = tuple(batch_shape) + (hidden_size,)
        zeros = jnp.zeros(shape, dtype)
        return state_type(*([zeros] * len(state_type._fields)))

    initial_state.__doc__ = (
        f"Zero ``{state_type.__name__}`` with leaves of shape ``batch_shape + ({hidden_size},)`` "
        f"and ``dtype`` (None: JAX's default float)."
    )
    return initial_state


def _check_input_weight(cell_name: str, w: Array, rows: int, hidden_size: int, x: Array, field: str = "w_ih") -> None:
    """``params.<field>`` (``w``) is ``[rows, input_size]`` and ``x`` has ``input_size`` features (static shapes)."""
    if w.ndim != 2 or w.shape[0] != rows:
        raise ValueError(
            f"params.{field} has shape {w.shape}, but the {cell_name} cell with "
            f"hidden_size={hidden_size} expects ({rows}, input_size). Were these params "
            f"made by another cell?"
        )
    if x.shape[-1:] != (w.shape[1],):
        raise ValueError(
            f"inputs have size {x.shape[-1] if x.ndim else 'scalar'} on their last axis "
            f"(shape {x.shape}), but params expect input_size={w.shape[1]} "
            f"(params.{field} has shape {w.shape})."
        )


def _param_checkers(cell_name: str, num_gates: int, hidden_size: int, *, diagonal: bool = False):
    """Shape checks for the projections, run in Python on static shapes: ``(check_input, check_state, check_w_hh)``.

    ``diagonal``: the cell's ``w_hh`` is a vector ``[G*H]`` (``recurrent="diagonal"``), not ``[G*H, H]``.
    """
    gh = num_gates * hidden_size
    expected = (gh,) if diagonal else (gh, hidden_size)
    # The other form of w_hh, and the recurrent= that makes it: params made by the other variant.
    other, other_recurrent = ((gh, hidden_size), "dense") if diagonal else ((gh,), "diagonal")

    def check_input(params, x):
        _check_input_weight(cell_name, params.w_ih, gh, hidden_size, x)

    def check_w_hh(params):
        w = params.w_hh
        if w.shape != expected:
            hint = (
                f" That is the shape of a recurrent={other_recurrent!r} cell's w_hh: were these params made "
                f"by that variant?"
                if w.shape == other
                else ""
            )
            raise ValueError(
                f"params.w_hh has shape {w.shape}, but the {cell_name} cell with "
                f"hidden_size={hidden_size} expects {expected}.{hint}"
            )

    def check_state(params, h):
        check_w_hh(params)
        if h.shape[-1:] != (hidden_size,):
            raise ValueError(
                f"state has hidden size {h.shape[-1] if h.ndim else 'scalar'} (shape {h.shape}), "
                f"but the {cell_name} cell has hidden_size={hidden_size}."
            )

    return check_input, check_state, check_w_hh


def _split_cell(name, hidden_size, state_type, init, project, project_state, update, update_bwd) -> Cell:
    """A :class:`Cell` whose ``step`` is ``update(state, project(x), project_state(state))``."""

    def step(params, state, x: Array):
        return update(state, project(params, x), project_state(params, state))

    return Cell(
        hidden_size=hidden_size,
        init=init,
        initial_state=_make_initial_state(state_type, hidden_size),
        step=step,
        project=project,
        project_state=project_state,
        update=update,
        update_bwd=update_bwd,
        name=name,
    )


def _state_type(kind: str):
    return LSTMState if kind == "lstm" else HiddenState


def _gate_functions(kind: str):
    """``update`` and ``update_bwd`` of a built-in cell from the gate equations of :mod:`jaxrnn._core.gates`."""
    state_type = _state_type(kind)

    def update(state, px: Array, rec: Array):
        h, c, _ = gates.forward(kind, px, rec, state.h, getattr(state, "c", None))
        new = LSTMState(h, c) if state_type is LSTMState else HiddenState(h)
        return new, h

    def update_bwd(state, px: Array, rec: Array, d_new, d_y: Array):
        c = getattr(state, "c", None)
        _, c_new, act = gates.forward(kind, px, rec, state.h, c)
        d_px, d_rec, dh_direct, dc_prev = gates.reverse(
            kind, act, state.h, c, c_new, d_new.h + d_y, getattr(d_new, "c", None)
        )
        dh = jnp.zeros_like(state.h) if dh_direct is None else dh_direct
        return (LSTMState(dh, dc_prev) if state_type is LSTMState else HiddenState(dh)), d_px, d_rec

    return update, update_bwd


def _diagonal_affine(a: Array, w: Array, b: Array, num_gates: int) -> Array:
    """``rec[..., g*H + i] = a[..., i] * w[g*H + i] + b[g*H + i]``: the recurrent projection of a diagonal cell.

    ``a`` is rounded to ``w``'s dtype, as :func:`_matmul_t` rounds it, and the
    products are taken in the carry dtype (exact for bfloat16 factors). The state
    is tiled over the gates on its rows flattened to 2-D, so the VJP sums the
    gradients of ``w`` and ``b`` over 2-D rows (see :func:`_scale_features`).
    """
    out_dtype = carry_dtype(w.dtype)
    rows = a.reshape((-1, a.shape[-1])).astype(w.dtype).astype(out_dtype)
    out = _scale_features(jnp.tile(rows, (1, num_gates)), w) + b.astype(out_dtype)[None]
    return out.reshape(a.shape[:-1] + w.shape)


# |w_hh| of a diagonal cell at initialisation; see elman's docstring.
_DIAGONAL_INIT_BOUND = 0.9
_RECURRENT = ("dense", "diagonal")


def _check_recurrent(recurrent) -> bool:
    """Whether ``recurrent`` is ``"diagonal"``; a ValueError for anything but ``"dense"`` and ``"diagonal"``."""
    if not isinstance(recurrent, str) or recurrent not in _RECURRENT:
        raise ValueError(f"recurrent must be one of {list(_RECURRENT)}, got {recurrent!r}.")
    return recurrent == "diagonal"


class UnitStructure(NamedTuple):
    """How a built-in cell's step couples state entries (for the Newton solvers' Jacobians).

    ``rec`` is the recurrent projection (``project_state``), ``h`` the hidden
    state; both functions return arrays in the dtype of ``params.w_hh``.
    ``recurrent_blocks`` is dense for every cell, a diagonal cell's weights on the
    diagonals of its blocks.
    """

    kind: str  # the gate equations of its update, one of gates.KINDS
    diagonal: bool  # recurrent="diagonal": the step Jacobian couples only the state entries of one unit
    recurrent_diagonal: Callable[..., Array]  # params -> [G, H]: d rec[g*H + i] / d h[i]
    recurrent_blocks: Callable[..., Array]  # params -> [G, H, H]: d rec[g*H + i] / d h[j]


def _unit_structure(kind: str, num_gates: int, hidden_size: int, diagonal: bool, check_w_hh) -> UnitStructure:
    """The :class:`UnitStructure` of a built-in cell: ``d rec / d h`` read off ``w_hh``, in its dtype."""

    def recurrent_diagonal(params: CellParams) -> Array:
        check_w_hh(params)
        if diagonal:
            return params.w_hh.reshape(num_gates, hidden_size)
        return jnp.diagonal(params.w_hh.reshape(num_gates, hidden_size, hidden_size), axis1=1, axis2=2)

    def recurrent_blocks(params: CellParams) -> Array:
        check_w_hh(params)
        if diagonal:
            return jax.vmap(jnp.diag)(params.w_hh.reshape(num_gates, hidden_size))
        return params.w_hh.reshape(num_gates, hidden_size, hidden_size)

    return UnitStructure(kind, diagonal, recurrent_diagonal, recurrent_blocks)


def _linear_cell(kind: str, hidden_size: int, bias_init: Callable[[int], Array], recurrent: str) -> Cell:
    """A built-in cell of ``kind`` whose projections are the affine maps of :class:`CellParams`.

    ``recurrent="diagonal"``: ``w_hh`` is a vector ``[G*H]`` and the recurrent
    projection elementwise (:func:`_diagonal_affine`); the cell is named ``kind + "_diagonal"``.
    """
    diagonal = _check_recurrent(recurrent)
    name = f"{kind}_diagonal" if diagonal else kind
    num_gates = gates.NUM_GATES[kind]
    gh = num_gates * hidden_size
    state_type = _state_type(kind)
    update, update_bwd = _gate_functions(kind)
    check_input, check_state, check_w_hh = _param_checkers(name, num_gates, hidden_size, diagonal=diagonal)

    def init(key: Array, input_size: int, dtype=None) -> CellParams:
        input_size = check_positive_int(input_size, "input_size")
        dtype = float_dtype(dtype)
        k_ih, k_hh = jax.random.split(key)
        if diagonal:
            bound = _DIAGONAL_INIT_BOUND
            w_hh = jax.random.uniform(k_hh, (gh,), jnp.float32, -bound, bound).astype(dtype)
        else:
            w_hh = _orthogonal_blocks(k_hh, num_gates, hidden_size, dtype)
        return CellParams(
            w_ih=_lecun_normal(k_ih, (gh, input_size), dtype),
            w_hh=w_hh,
            b_ih=bias_init(hidden_size).astype(dtype),
            b_hh=jnp.zeros((gh,), dtype),
        )

    def project(params: CellParams, xs: Array) -> Array:
        check_input(params, xs)
        return _affine(xs, params.w_ih, params.b_ih)

    def project_state(params: CellParams, state) -> Array:
        check_state(params, state.h)
        if diagonal:
            return _diagonal_affine(state.h, params.w_hh, params.b_hh, num_gates)
        return _affine(state.h, params.w_hh, params.b_hh)

    cell = _split_cell(name, hidden_size, state_type, init, project, project_state, update, update_bwd)
    structure = _unit_structure(kind, num_gates, hidden_size, diagonal, check_w_hh)
    _BUILTIN[cell.step] = (structure, (project, project_state, update, update_bwd))
    return cell


# step -> the UnitStructure and the functions of the built-in cell that step belongs to. A cell whose
# functions were replaced (cell._replace(update=...)) no longer matches and runs its own functions.
_BUILTIN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def unit_structure(cell) -> UnitStructure | None:
    """The :class:`UnitStructure` of a built-in Elman, LSTM or GRU cell (dense or diagonal), None for any other cell.

    Any other cell: the layer-norm LSTM, the linear-recurrence cells, a user's
    cell, and a built-in cell with one of its functions replaced.
    """
    try:
        entry = _BUILTIN.get(getattr(cell, "step", None))
    except TypeError:  # a step that cannot be weakly referenced is not one of ours
        return None
    functions = tuple(getattr(cell, name, None) for name in ("project", "project_state", "update", "update_bwd"))
    if entry is None or entry[1] != functions:
        return None
    return entry[0]


def builtin_kind(cell) -> str | None:
    """The kind (:data:`jaxrnn._core.gates.KINDS`) of a built-in cell that the fused kernels run, None for any other cell.

    The kernels run the dense cells only: a diagonal cell's ``w_hh`` is not a matrix.
    """
    structure = unit_structure(cell)
    return None if structure is None or structure.diagonal else structure.kind


_ACTIVATIONS = ("tanh", "relu")


def elman(hidden_size: int, *, activation: str = "tanh", recurrent: str = "dense") -> Cell:
    r"""The Elman (simple) recurrent cell, as ``torch.nn.RNN``, or its diagonal-recurrent variant.

    .. math::
        h_t = f(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}), \qquad y_t = h_t

    with :math:`f` = tanh or relu. With ``recurrent="diagonal"`` the recurrent
    weights are one per unit, a vector :math:`w_{hh}`:

    .. math::
        h_t = f(W_{ih} x_t + b_{ih} + w_{hh} \odot h_{t-1} + b_{hh})

    so each unit's step reads its own state alone (the IndRNN of Li et al., 2018;
    the diagonal recurrences of ParaRNN, Danieli et al., 2025): the step's
    Jacobian with respect to the state is diagonal, and a Newton solver that keeps
    only the Jacobian's diagonal (quasi-DEER) takes exact Newton steps on it.

    Default initialisers: ``w_ih`` LeCun normal (variance 1/input_size), ``w_hh``
    orthogonal, biases zero. A diagonal ``w_hh`` is uniform on :math:`[-0.9, 0.9]`,
    one of ParaRNN's initialisers of its diagonal recurrences: with
    :math:`|w_{hh}| < 1` the recurrence is contractive at initialisation
    (:math:`|\partial h_t / \partial h_{t-1}| = |f'|\,|w_{hh}| \le 0.9`), so
    states and gradients cannot grow along the sequence, and parallel Newton
    solvers, whose convergence rests on that stability (Gonzalez et al., 2025),
    converge in few iterations.

    Args:
      hidden_size: H, the size of the state.
      activation: ``"tanh"`` or ``"relu"``.
      recurrent: ``"dense"`` (a matrix ``w_hh``, as torch) or ``"diagonal"`` (a
        vector ``w_hh``; the cell is named ``"elman_tanh_diagonal"`` or
        ``"elman_relu_diagonal"``).

    Returns:
      A :class:`Cell` with :class:`CellParams` (``w_ih [H, I]``, ``w_hh [H, H]``
      or ``[H]`` for a diagonal cell, ``b_ih [H]``, ``b_hh [H]``) and state
      :class:`HiddenState` (``h [*batch, H]``).

    Raises:
      ValueError: unknown ``activation`` or ``recurrent``, or a ``hidden_size``
        that is not a positive int.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.elman(8, activation="relu")
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=3)
      >>> state, y = cell.step(params, cell.initial_state((2,)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)

    References:
      Li, Li, Cook, Zhu & Gao, "Independently recurrent neural network (IndRNN)", CVPR 2018.
      Danieli, Rodriguez, Sarabia, Suau & Zappella, "ParaRNN: Unlocking parallel
      training of nonlinear RNNs for large language models", 2025.
      Gonzalez, Kozachkov, Zoltowski, Clarkson & Linderman, "Predictability
      enables parallelization of nonlinear state space models", 2025.
    """
    hidden_size = check_positive_int(hidden_size, "hidden_size")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
    return _linear_cell(f"elman_{activation}", hidden_size, lambda h: jnp.zeros((h,), jnp.float32), recurrent)


def _forget_bias_init(forget_bias: float):
    def bias_init(hidden_size: int) -> Array:
        zeros = jnp.zeros((hidden_size,), jnp.float32)
        return jnp.concatenate([zeros, zeros + forget_bias, zeros, zeros])

    return bias_init


def lstm(hidden_size: int, *, forget_bias: float = 1.0, recurrent: str = "dense") -> Cell:
    r"""The long short-term memory cell, as ``torch.nn.LSTM`` (gate order i, f, g, o), or its diagonal-recurrent variant.

    .. math::
        (a_i, a_f, a_g, a_o) &= W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} \\
        i, f, o &= \sigma(a_i), \sigma(a_f), \sigma(a_o), \qquad g = \tanh(a_g) \\
        c_t &= f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t), \qquad y_t = h_t

    With ``recurrent="diagonal"`` each gate has one recurrent weight per unit,
    :math:`a_k = W_{ik} x_t + b_{ik} + w_{hk} \odot h_{t-1} + b_{hk}` for
    :math:`k = i, f, g, o`, so unit :math:`j`'s step reads only its own
    :math:`(h_j, c_j)`: the step's Jacobian with respect to the state is
    block-diagonal, one 2x2 block per unit (see :func:`elman`).

    Default initialisers: ``w_ih`` LeCun normal, ``w_hh`` an orthogonal block per
    gate (a diagonal ``w_hh`` uniform on :math:`[-0.9, 0.9]`, as for
    :func:`elman`), ``b_hh`` zero, ``b_ih`` zero except the forget block, set to
    ``forget_bias`` (Jozefowicz et al., 2015: a forget bias of 1 helps gradients
    flow early in training).

    Args:
      hidden_size: H.
      forget_bias: initial value of the forget-gate block of ``b_ih``.
      recurrent: ``"dense"`` (a matrix ``w_hh``, as torch) or ``"diagonal"`` (a
        vector ``w_hh``; the cell is named ``"lstm_diagonal"``).

    Returns:
      A :class:`Cell` with :class:`CellParams` (``w_ih [4H, I]``, ``w_hh [4H, H]``
      or ``[4H]`` for a diagonal cell, ``b_ih [4H]``, ``b_hh [4H]``) and state
      :class:`LSTMState` (``h, c [*batch, H]``).

    Raises:
      ValueError: unknown ``recurrent`` or a ``hidden_size`` that is not a positive int.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.lstm(16)
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=4)
      >>> state, y = cell.step(params, cell.initial_state((3,)), jnp.ones((3, 4)))
      >>> state.c.shape, y.shape
      ((3, 16), (3, 16))

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", 1997.
      Jozefowicz, Zaremba & Sutskever, "An empirical exploration of recurrent
      network architectures", ICML 2015.
      Danieli et al., "ParaRNN: Unlocking parallel training of nonlinear RNNs
      for large language models", 2025.
    """
    hidden_size = check_positive_int(hidden_size, "hidden_size")
    return _linear_cell("lstm", hidden_size, _forget_bias_init(float(forget_bias)), recurrent)


def gru(hidden_size: int, *, recurrent: str = "dense") -> Cell:
    r"""The gated recurrent unit in its cuDNN / PyTorch form (gate order r, z, n), or its diagonal-recurrent variant.

    The reset gate multiplies the recurrent projection *after* the matmul:

    .. math::
        r &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n &= \tanh(W_{in} x_t + b_{in} + r \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}, \qquad y_t = h_t

    With ``recurrent="diagonal"`` the recurrent weights are one per gate and
    unit: :math:`W_{hk} h_{t-1}` becomes :math:`w_{hk} \odot h_{t-1}` for
    :math:`k = r, z, n`, so each unit's step reads its own state alone and the
    step's Jacobian with respect to the state is diagonal (see :func:`elman`).

    Default initialisers: ``w_ih`` LeCun normal, ``w_hh`` an orthogonal block per
    gate (a diagonal ``w_hh`` uniform on :math:`[-0.9, 0.9]`, as for
    :func:`elman`), biases zero.

    Args:
      hidden_size: H.
      recurrent: ``"dense"`` (a matrix ``w_hh``, as torch) or ``"diagonal"`` (a
        vector ``w_hh``; the cell is named ``"gru_diagonal"``).

    Returns:
      A :class:`Cell` with :class:`CellParams` (``w_ih [3H, I]``, ``w_hh [3H, H]``
      or ``[3H]`` for a diagonal cell, ``b_ih [3H]``, ``b_hh [3H]``) and state
      :class:`HiddenState` (``h [*batch, H]``).

    Raises:
      ValueError: unknown ``recurrent`` or a ``hidden_size`` that is not a positive int.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.gru(8)
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=2)
      >>> state, y = cell.step(params, cell.initial_state(), jnp.ones(2))
      >>> y.shape
      (8,)
      >>> jr.gru(8, recurrent="diagonal").init(jax.random.PRNGKey(0), input_size=2).w_hh.shape
      (24,)

    References:
      Cho et al., "Learning phrase representations using RNN encoder-decoder", 2014.
      Danieli et al., "ParaRNN: Unlocking parallel training of nonlinear RNNs
      for large language models", 2025.
    """
    hidden_size = check_positive_int(hidden_size, "hidden_size")
    return _linear_cell("gru", hidden_size, lambda h: jnp.zeros((3 * h,), jnp.float32), recurrent)


def _layer_norm(a: Array, scale: Array, eps: float) -> Array:
    mean = jnp.mean(a, axis=-1, keepdims=True)
    centred = a - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return _scale_features(centred * jax.lax.rsqrt(var + eps), scale)


def layer_norm_lstm(hidden_size: int, *, forget_bias: float = 1.0, eps: float = 1e-5) -> Cell:
    r"""An LSTM with layer normalisation of the input and recurrent projections.

    .. math::
        a &= \mathrm{LN}(W_{ih} x_t; \gamma_{ih}) + \mathrm{LN}(W_{hh} h_{t-1}; \gamma_{hh}) + b

    followed by the gate equations of :func:`lstm`. Each ``LN`` normalises over all
    ``4H`` gate pre-activations (mean 0, variance 1) and scales by its gain; the
    shared bias ``b`` plays the role of the layer norms' offsets.

    Default initialisers: ``w_ih`` LeCun normal, ``w_hh`` an orthogonal block per
    gate, gains one, ``bias`` zero except the forget block (``forget_bias``).

    The recurrent projection is not linear, so this cell's BPTT uses the
    hand-written LSTM gate deltas with ``jax.vjp`` of the layer norm.

    Args:
      hidden_size: H.
      forget_bias: initial value of the forget-gate block of ``bias``.
      eps: the layer norms' variance epsilon.

    Returns:
      A :class:`Cell` with :class:`LayerNormLSTMParams` and state :class:`LSTMState`.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.layer_norm_lstm(8)
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=3)
      >>> ys, final = jr.rnn(cell, params, jnp.ones((2, 5, 3)))
      >>> ys.shape
      (2, 5, 8)

    References:
      Ba, Kiros & Hinton, "Layer normalization", 2016.
    """
    hidden_size = check_positive_int(hidden_size, "hidden_size")
    check_input, check_state, _ = _param_checkers("layer_norm_lstm", 4, hidden_size)
    bias_init = _forget_bias_init(float(forget_bias))

    def init(key: Array, input_size: int, dtype=None) -> LayerNormLSTMParams:
        input_size = check_positive_int(input_size, "input_size")
        dtype = float_dtype(dtype)
        k_ih, k_hh = jax.random.split(key)
        ones = jnp.ones((4 * hidden_size,), dtype)
        return LayerNormLSTMParams(
            w_ih=_lecun_normal(k_ih, (4 * hidden_size, input_size), dtype),
            w_hh=_orthogonal_blocks(k_hh, 4, hidden_size, dtype),
            bias=bias_init(hidden_size).astype(dtype),
            ln_ih_scale=ones,
            ln_hh_scale=ones,
        )

    def project(params: LayerNormLSTMParams, xs: Array) -> Array:
        check_input(params, xs)
        normed = _layer_norm(_matmul_t(xs, params.w_ih), params.ln_ih_scale, eps)
        return normed + _expand(params.bias.astype(normed.dtype), normed.ndim)

    def project_state(params: LayerNormLSTMParams, state: LSTMState) -> Array:
        check_state(params, state.h)
        return _layer_norm(_matmul_t(state.h, params.w_hh), params.ln_hh_scale, eps)

    update, update_bwd = _gate_functions("lstm")
    return _split_cell("layer_norm_lstm", hidden_size, LSTMState, init, project, project_state, update, update_bwd)


class ReadoutParams(NamedTuple):
    """Parameters of :func:`readout`: ``weight [O, H]`` (V) and ``bias [O]`` (c)."""

    weight: Array  # [O, H]
    bias: Array  # [O]


class Readout(NamedTuple):
    """A per-step output layer ``o_t = g(V h_t + c)``; see :func:`readout`."""

    output_size: int
    init: Callable[..., ReadoutParams]
    apply: Callable[..., Array]


_READOUT_ACTIVATIONS = {
    None: lambda a: a,
    "identity": lambda a: a,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "softmax": lambda a: jax.nn.softmax(a, axis=-1),
    "log_softmax": lambda a: jax.nn.log_softmax(a, axis=-1),
}


def readout(output_size: int, *, activation: str | None = None) -> Readout:
    r"""A readout layer applied to every step's output: :math:`o_t = g(V h_t + c)`.

    It is not recurrent, so it runs after :func:`jaxrnn.rnn` on all steps at once
    (one matmul) and is differentiated by JAX.

    Default initialisers: ``V`` LeCun normal, ``c`` zero.

    Args:
      output_size: O.
      activation: ``g``: ``None`` (identity), ``"tanh"``, ``"sigmoid"``, ``"relu"``,
        ``"softmax"`` or ``"log_softmax"``.

    Returns:
      A :class:`Readout` with ``init(key, hidden_size, dtype=None) -> ReadoutParams``
      and ``apply(params, ys [..., H]) -> [..., O]``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> head = jr.readout(10, activation="log_softmax")
      >>> p = head.init(jax.random.PRNGKey(0), hidden_size=32)
      >>> head.apply(p, jnp.zeros((4, 7, 32))).shape
      (4, 7, 10)
    """
    output_size = check_positive_int(output_size, "output_size")
    if activation not in _READOUT_ACTIVATIONS:
        names = sorted(k for k in _READOUT_ACTIVATIONS if k is not None)
        raise ValueError(f"activation must be None or one of {names}, got {activation!r}.")
    g = _READOUT_ACTIVATIONS[activation]

    def init(key: Array, hidden_size: int, dtype=None) -> ReadoutParams:
        hidden_size = check_positive_int(hidden_size, "hidden_size")
        dtype = float_dtype(dtype)
        return ReadoutParams(
            weight=_lecun_normal(key, (output_size, hidden_size), dtype),
            bias=jnp.zeros((output_size,), dtype),
        )

    def apply(params: ReadoutParams, ys: Array) -> Array:
        if ys.shape[-1:] != params.weight.shape[1:]:
            raise ValueError(
                f"ys have size {ys.shape[-1] if ys.ndim else 'scalar'} on their last axis "
                f"(shape {ys.shape}), but the readout expects {params.weight.shape[1]} "
                f"(params.weight has shape {params.weight.shape})."
            )
        return g(_affine(ys, params.weight, params.bias))

    return Readout(output_size=output_size, init=init, apply=apply)

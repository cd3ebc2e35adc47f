r"""Newton solvers in time: DEER, quasi-DEER, ELK and quasi-ELK for any cell.

The states :math:`s_1 \dots s_T` of a recurrence :math:`s_t = f(s_{t-1}, x_t)`
are the root of :math:`r_t(s) = s_t - f(s_{t-1}, x_t)`. Newton's method
linearises :math:`f` at the current trajectory :math:`\bar s` and solves

.. math::
    s_t = J_t s_{t-1} + \big(f(\bar s_{t-1}) - J_t \bar s_{t-1}\big), \qquad J_t = \partial f / \partial s \,(\bar s_{t-1}),

itself a linear recurrence, with a parallel scan (:mod:`jaxrnn._kernels.associative`):
depth :math:`O(\log T)` per iteration instead of :math:`T` sequential steps
(Lim et al., 2024, "DEER"). After iteration :math:`k` the first :math:`k` states
are exact, so :math:`T` iterations always suffice; in practice far fewer do.

- :class:`DEER`: the full Jacobians, ``[T, B, N, N]``: :math:`O(T N^2)` memory and
  :math:`O(N^3 \log T)` depth per iteration (``N`` the state size: ``H``, or
  ``2H`` for an LSTM's ``(h, c)``).
- :class:`QuasiDEER`: each hidden unit's block of the Jacobian's diagonal
  (``1 x 1``, or ``2 x 2`` coupling an LSTM unit's ``h_i`` and ``c_i``):
  :math:`O(T N)` memory (Gonzalez et al., 2024). Exact Newton for a cell whose
  step Jacobian is block-diagonal by construction (``recurrent="diagonal"``, as
  in ParaRNN, Danieli et al., 2025), a quasi-Newton method otherwise.
- :class:`ELK` and :class:`QuasiELK`: the same, damped for stability as in
  Levenberg-Marquardt (Gonzalez et al., 2024, "ELK"): each iteration is a Kalman
  filter of the linearised dynamics (unit process noise) that observes the current
  trajectory with noise variance ``1 / damping``, its filtered means the next
  trajectory, as the authors' implementation does. The observations keep a step
  bounded where unstable Jacobians make DEER's overflow; ``damping=0`` is DEER's step.

The gradient is implicit: at the converged trajectory the cotangents satisfy the
BPTT equations, one reverse linear recurrence with the true step Jacobians
(never a differentiation through the iterations). On the CPU it runs as the
hand-written reverse loop of the sequential solver; elsewhere as a reverse
parallel scan of the transposed Jacobians (per-unit blocks for a diagonal cell,
full ``N x N`` otherwise).

For the built-in Elman, LSTM and GRU cells (dense or diagonal) the Jacobians are
assembled from ``K + G`` Jacobian-vector products of the elementwise gate update
and the recurrent weights (``K`` state leaves, ``G`` gates); for any other cell
they are ``jax.jacfwd`` of its step (``N`` products per step, so a quasi solver
then costs as much per iteration as DEER, though it keeps only the diagonal).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrnn._core.cells import is_split, unit_structure
from jaxrnn._core.checks import check_positive_int
from jaxrnn._core.masking import select, truncation_cut, zero_where_masked
from jaxrnn._kernels import associative, sharding

tree_map = jax.tree_util.tree_map
Array = jax.Array

_ARGS = """
    Args:
      max_iters: the most Newton iterations (linear solves); a positive int.
      tol: the iterations stop once the largest residual :math:`\\max_t |s_t - f(s_{t-1}, x_t)|`
        is at most ``tol``; None: 1e-5 for float32 states, 1e-10 for float64.
      guess: the initial trajectory, a pytree like the state with a time axis
        where ``ys`` has it (``[B, T, ...]``; ``[T, B, ...]`` time-major; ``[T, ...]``
        for one sequence), e.g. ``info.states`` of a previous call (a warm start);
        None: zeros."""

_DAMPING = """
      damping: the pull towards the current trajectory, a float >= 0: the
        precision of the Kalman filter's observations of it (0: DEER's step;
        the default 1e-8 is the authors' ``sigmasq = 1e8``)."""


class DEER(NamedTuple):
    max_iters: int = 100
    tol: float | None = None
    guess: Any = None

    @property
    def jacobian(self) -> str:
        return "full"

    @property
    def damping(self) -> float:
        return 0.0


class QuasiDEER(NamedTuple):
    max_iters: int = 100
    tol: float | None = None
    guess: Any = None

    @property
    def jacobian(self) -> str:
        return "diagonal"

    @property
    def damping(self) -> float:
        return 0.0


class ELK(NamedTuple):
    max_iters: int = 100
    tol: float | None = None
    damping: float = 1e-8
    guess: Any = None

    @property
    def jacobian(self) -> str:
        return "full"


class QuasiELK(NamedTuple):
    max_iters: int = 100
    tol: float | None = None
    damping: float = 1e-8
    guess: Any = None

    @property
    def jacobian(self) -> str:
        return "diagonal"


DEER.__doc__ = (
    """Newton's method in time with the full step Jacobians (Lim et al., ICLR 2024).

    Pass it as ``jr.rnn(..., solver=jr.DEER())`` (or ``solver="deer"``). Memory
    :math:`O(T B N^2)`, depth :math:`O(N^3 \\log T)` per iteration; exact after at
    most ``T`` iterations.
"""
    + _ARGS
)
QuasiDEER.__doc__ = (
    """Newton's method in time with each unit's block of the Jacobian's diagonal (Gonzalez et al., NeurIPS 2024).

    Pass it as ``jr.rnn(..., solver=jr.QuasiDEER())`` (or ``"quasi-deer"``). Memory
    :math:`O(T B N)`; exact Newton for ``recurrent="diagonal"`` cells; exact
    after at most ``T`` iterations, like DEER.
"""
    + _ARGS
)
ELK.__doc__ = (
    """DEER damped for stability, each step a Kalman filter (Gonzalez et al., NeurIPS 2024).

    Pass it as ``jr.rnn(..., solver=jr.ELK(damping=...))`` (or ``"elk"``). It
    converges where unstable Jacobians make DEER's steps overflow. The filter is
    an associative scan (in order on the CPU); under a ``"sequence"`` mesh axis
    it splits time over the devices as DEER's scans do.
"""
    + _ARGS
    + _DAMPING
)
QuasiELK.__doc__ = (
    """Quasi-DEER damped for stability, each step a Kalman filter per unit (Gonzalez et al., NeurIPS 2024).

    Pass it as ``jr.rnn(..., solver=jr.QuasiELK(damping=...))`` (or ``"quasi-elk"``).
"""
    + _ARGS
    + _DAMPING
)


NEWTON_SOLVERS = (DEER, QuasiDEER, ELK, QuasiELK)
NEWTON_NAMES = {"deer": DEER, "quasi-deer": QuasiDEER, "elk": ELK, "quasi-elk": QuasiELK}


class SolverInfo(NamedTuple):
    """What a Newton solver did: ``jr.rnn(..., solver=..., return_info=True)`` returns it third.

    Under ``vmap`` every field gains the mapped axis.
    """

    iterations: Array  # [] int32: linear solves done
    residual: Array  # [] the largest |s_t - f(s_(t-1), x_t)| of the returned trajectory
    converged: Array  # [] bool: residual <= tol (False after max_iters, or on a non-finite residual)
    states: Any  # the trajectory: the state after every step, laid out as ys (not differentiated)


def is_newton(solver) -> bool:
    return isinstance(solver, NEWTON_SOLVERS)


def check_solver(solver):
    """A Newton solver from its name or value, its options checked; ``guess`` is kept."""
    if isinstance(solver, str):
        solver = NEWTON_NAMES[solver]()
    check_positive_int(solver.max_iters, f"{type(solver).__name__}: max_iters")
    for name in ("tol", "damping"):
        value = getattr(solver, name)
        if name == "tol" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"{type(solver).__name__}: {name} must be a float >= 0, got {value!r}.")
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{type(solver).__name__}: {name} must be a finite float >= 0, got {value!r}.")
    return solver


def check_guess(guess, state, num_steps: int, batch_major: bool):
    """A Newton solver's ``guess`` checked against the state and made time-major (None stays None)."""
    if guess is None:
        return None
    want_leaves, want_def = jax.tree_util.tree_flatten(state)
    leaves, treedef = jax.tree_util.tree_flatten(guess)
    if str(treedef) != str(want_def):
        raise ValueError(
            f"guess must be a trajectory with the structure of the state, {want_def}, got {treedef}. "
            f"Pass info.states of a previous call with return_info=True."
        )
    out = []
    for got, want in zip(leaves, want_leaves):
        shape = want.shape[:1] + (num_steps,) + want.shape[1:] if batch_major else (num_steps,) + want.shape
        if tuple(jnp.shape(got)) != shape:
            raise ValueError(
                f"guess leaf has shape {tuple(jnp.shape(got))}, expected {shape}: the state's shape with the "
                f"time axis of ys ({num_steps} steps). Pass info.states of a previous call with return_info=True."
            )
        got = jnp.asarray(got)
        if not jnp.issubdtype(got.dtype, jnp.floating):
            raise TypeError(f"guess leaves must be floating, got dtype {got.dtype}.")
        out.append(jnp.swapaxes(got, 0, 1).astype(want.dtype) if batch_major else got.astype(want.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def check_differentiable(cell, params, state, x) -> None:
    """The Jacobian of the cell's step with respect to its state exists (forward mode), checked on shapes."""

    def tangent(params, state, x):
        return jax.jvp(lambda s: cell.step(params, s, x)[0], (state,), (state,))

    shapes = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), (params, state, x)
    )
    try:  # lowered, not only traced: a custom_vjp function refuses forward mode only when lowered
        jax.jit(tangent).trace(*shapes).lower()
    except Exception as error:  # any failure to trace the JVP means no Jacobian for the Newton solver
        name = getattr(cell, "name", type(cell).__name__)
        raise ValueError(
            f"a Newton solver needs the Jacobian of the {name} cell's step with respect to its state, but "
            f"jax.jvp of cell.step fails: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
            f"Use solver='sequential' for this cell."
        ) from error


def not_converged_message(solver, info: SolverInfo, dtype) -> str:
    tol = default_tol(dtype) if solver.tol is None else solver.tol
    return (
        f"{type(solver).__name__} stopped after {int(info.iterations)} iterations with residual "
        f"{float(info.residual):.3g} above tol={tol:.3g} (max_iters={solver.max_iters}): the outputs are not the "
        f"recurrence's to that tolerance. Raise max_iters, damp the steps (jr.ELK, jr.QuasiELK) or use "
        f"solver='sequential'; with return_info=True, info.converged reports it inside jit."
    )


def default_tol(dtype) -> float:
    return 1e-10 if jnp.dtype(dtype) == jnp.float64 else 1e-5


class _Layout(NamedTuple):
    """A state pytree as one array ``[..., K, H]``: its ``K`` leaves stacked (or concatenated when sizes differ)."""

    treedef: Any
    sizes: tuple
    stacked: bool

    @staticmethod
    def of(state) -> _Layout:
        leaves, treedef = jax.tree_util.tree_flatten(state)
        sizes = tuple(leaf.shape[-1] for leaf in leaves)
        return _Layout(treedef, sizes, len(set(sizes)) == 1)

    @property
    def shape(self) -> tuple:
        return (len(self.sizes), self.sizes[0]) if self.stacked else (1, sum(self.sizes))

    def flat(self, tree) -> Array:
        leaves = jax.tree_util.tree_leaves(tree)
        if self.stacked:
            return jnp.stack(leaves, axis=-2)
        return jnp.concatenate(leaves, axis=-1)[..., None, :]

    def tree(self, v: Array):
        if self.stacked:
            leaves = [v[..., k, :] for k in range(len(self.sizes))]
        else:
            ends = np.cumsum(self.sizes)
            leaves = [v[..., 0, end - size : end] for size, end in zip(self.sizes, ends)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _eye_like(a: Array) -> Array:
    return jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)


def _matvec(a: Array, v: Array) -> Array:
    return jnp.einsum("...ij,...j->...i", a, v)


class _Problem(NamedTuple):
    """One call's recurrence: how to evaluate the step and its Jacobians over all steps at once."""

    cell: Any
    params: Any
    px: Any  # the input projection [T, B, G*H] of a split cell, else the inputs
    layout: _Layout
    mask: Any  # [T, B] bool or None

    def step(self, prev, px):
        """``(new_state, y)`` of every step from the states entering them (any leading shape)."""
        cell = self.cell
        if is_split(cell):
            return cell.update(prev, px, cell.project_state(self.params, prev))
        return cell.step(self.params, prev, px)

    def evaluate(self, prev_v: Array) -> Array:
        """``f`` of every step, ``[T, B, K, H]``; a skipped step carries its state."""
        new = self.layout.flat(self.step(self.layout.tree(prev_v), self.px)[0])
        return select(self.mask, new, prev_v)

    def _structured(self, structure, prev_v: Array):
        """``(f, D_direct [K, T, B, K, H], D_rec [G, T, B, K, H])``: one unit's partial derivatives.

        The gate update of a built-in cell couples only the entries of one unit,
        so ones on one state leaf (one gate block) as the tangent give that
        leaf's (block's) derivative for every unit at once.
        """
        cell, layout = self.cell, self.layout
        prev = layout.tree(prev_v)
        rec = cell.project_state(self.params, prev)
        num_leaves, hidden = layout.shape
        num_gates = rec.shape[-1] // hidden

        def update(s, r):
            return layout.flat(cell.update(layout.tree(s), self.px, r)[0])

        new, jvp = jax.linearize(update, prev_v, rec)
        eye_leaves = jnp.eye(num_leaves, dtype=prev_v.dtype)[:, None, None, :, None]
        t_state = jnp.broadcast_to(eye_leaves, (num_leaves,) + prev_v.shape)
        d_direct = jax.vmap(lambda t: jvp(t, jnp.zeros_like(rec)))(t_state)
        eye_gates = jnp.repeat(jnp.eye(num_gates, dtype=rec.dtype), hidden, axis=1)[:, None, None, :]
        t_rec = jnp.broadcast_to(eye_gates, (num_gates,) + rec.shape)
        d_rec = jax.vmap(lambda t: jvp(jnp.zeros_like(prev_v), t))(t_rec)
        return select(self.mask, new, prev_v), d_direct, d_rec

    def linearise(self, prev_v: Array, jacobian: str):
        """``(f, J)`` at the states entering every step.

        ``jacobian="full"``: ``J [T, B, N, N]`` (``N = K*H``, leaf-major);
        ``"diagonal"``: each unit's block ``[T, B, H, K, K]``. A skipped step's is
        the identity.
        """
        num_leaves, hidden = self.layout.shape
        structure = unit_structure(self.cell)
        if structure is not None:
            f, d_direct, d_rec = self._structured(structure, prev_v)
            if jacobian == "diagonal":
                w = structure.recurrent_diagonal(self.params).astype(prev_v.dtype)  # [G, H]
                via_rec = jnp.einsum("gtbki,gi->tbik", d_rec, w)
                blocks = jnp.einsum("ltbki->tbikl", d_direct)
                jac = blocks.at[..., 0].add(via_rec)  # the recurrent projection reads leaf 0, h
            else:
                w = structure.recurrent_blocks(self.params).astype(prev_v.dtype)  # [G, H, H]
                eye = jnp.eye(hidden, dtype=prev_v.dtype)
                full = jnp.einsum("ltbki,ij->tbkilj", d_direct, eye)
                full = full.at[..., 0, :].add(jnp.einsum("gtbki,gij->tbkij", d_rec, w))
                n = num_leaves * hidden
                jac = full.reshape(full.shape[:2] + (n, n))
        else:
            f = self.evaluate(prev_v)
            jac = self._dense(prev_v)
            if jacobian == "diagonal":
                t, b = jac.shape[:2]
                six = jac.reshape((t, b, num_leaves, hidden, num_leaves, hidden))
                jac = jnp.diagonal(six, axis1=3, axis2=5).transpose(0, 1, 4, 2, 3)  # [T, B, H, K, K]
        return f, select(self.mask, jac, _eye_like(jac))

    def _dense(self, prev_v: Array) -> Array:
        """``jax.jacfwd`` of one step, for every step and example: ``[T, B, N, N]``."""
        layout = self.layout
        shape = layout.shape
        n = shape[0] * shape[1]

        def one(v, px):
            return layout.flat(self.step(layout.tree(v.reshape(shape)), px)[0]).reshape(n)

        t, b = prev_v.shape[:2]
        return jax.vmap(jax.vmap(jax.jacfwd(one)))(prev_v.reshape((t, b, n)), self.px)


def _shift(s_v: Array, s0_v: Array) -> Array:
    """The states entering every step: ``s0`` then all but the last."""
    return jnp.concatenate([s0_v[None], s_v[:-1]], axis=0)


def _blocks_scan(a: Array, c: Array, h0: Array, *, reverse: bool = False) -> Array:
    """The linear recurrence with per-unit blocks: ``a [T, B, H, K, K]``, ``c [T, B, K, H]``, ``h0 [B, K, H]``."""
    if a.shape[-1] == 1:
        return associative.linear_scan(a[..., 0, 0][:, :, None], c, h0, reverse=reverse)
    c_u = jnp.swapaxes(c, -1, -2)  # [T, B, H, K]
    h = associative.matrix_linear_scan(a, c_u, jnp.swapaxes(h0, -1, -2), reverse=reverse)
    return jnp.swapaxes(h, -1, -2)


def _full_scan(a: Array, c: Array, h0: Array, *, reverse: bool = False) -> Array:
    """The linear recurrence with full matrices: ``a [T, B, N, N]``, ``c [T, B, K, H]``, ``h0 [B, K, H]``."""
    n = a.shape[-1]
    h = associative.matrix_linear_scan(
        a, c.reshape(c.shape[:2] + (n,)), h0.reshape(h0.shape[:1] + (n,)), reverse=reverse
    )
    return h.reshape(c.shape)


def _apply(jac: Array, v: Array, jacobian: str) -> Array:
    """``J v`` for ``v [..., K, H]``."""
    if jacobian == "diagonal":
        return jnp.swapaxes(_matvec(jac, jnp.swapaxes(v, -1, -2)), -1, -2)
    return _matvec(jac, v.reshape(v.shape[:-2] + (-1,))).reshape(v.shape)


def _kalman_filter(a: Array, c: Array, s_bar: Array, s0: Array, damping: float) -> Array:
    r"""The filtered means of :math:`s_t = a_t s_{t-1} + c_t + w_t`, observed as :math:`\bar s_t = s_t + v_t`.

    Unit process noise :math:`w_t`, observation noise :math:`v_t` of variance
    ``1 / damping``, :math:`s_0` known. Vectors ``[T, *batch, M]``, matrices
    ``[T, *batch, M, M]``; in order along time on the CPU, elsewhere as an
    associative scan (:func:`_associative_kalman_filter`), which under a mesh
    with a sequence axis splits time over it. The mean predicted for step 1 is
    :math:`f(s_0)`, exact, and every filtered mean depends only on the steps before
    it, as the sequential recurrence does.
    """
    if associative.default_method() == "associative" or sharding.sequence_mesh() is not None:
        return _associative_kalman_filter(a, c, s_bar, s0, damping)
    if a.shape[-1] == 1:  # 1 x 1 blocks (quasi-ELK of a one-leaf cell): scalars, no solves
        return _scalar_kalman_filter(a[..., 0, 0], c[..., 0], s_bar[..., 0], s0[..., 0], damping)[..., None]
    eye = _eye_like(a[0])
    lam = jnp.asarray(damping, a.dtype)

    def step(carry, inp):
        m, p = carry
        a_t, c_t, y_t = inp
        m_pred = _matvec(a_t, m) + c_t
        p_pred = a_t @ p @ jnp.swapaxes(a_t, -1, -2) + eye
        # gain = lam P (lam P + I)^-1 = lam (lam P + I)^-1 P (they commute); 0 at damping 0
        gain = lam * jnp.linalg.solve(lam * p_pred + eye, p_pred)
        m_new = m_pred + _matvec(gain, y_t - m_pred)
        p_new = p_pred - gain @ p_pred
        return (m_new, 0.5 * (p_new + jnp.swapaxes(p_new, -1, -2))), m_new

    return lax.scan(step, (s0, jnp.zeros_like(eye)), (a, c, s_bar))[1]


def _scalar_kalman_filter(a: Array, c: Array, s_bar: Array, s0: Array, damping: float) -> Array:
    """:func:`_kalman_filter` of independent scalar states (``a, c, s_bar [T, *batch]``), elementwise."""
    lam = jnp.asarray(damping, a.dtype)

    def step(carry, inp):
        m, p = carry
        a_t, c_t, y_t = inp
        m_pred = a_t * m + c_t
        p_pred = a_t * a_t * p + 1
        gain = lam * p_pred / (lam * p_pred + 1)
        m_new = m_pred + gain * (y_t - m_pred)
        return (m_new, p_pred - gain * p_pred), m_new

    return lax.scan(step, (s0, jnp.zeros_like(s0)), (a, c, s_bar))[1]


def _kalman_combine(earlier, later):
    r"""Two filter elements :math:`(A, b, C, \eta, J)` composed, the earlier first (Särkkä & García-Fernández, 2021)."""
    a_i, b_i, c_i, eta_i, j_i = earlier
    a_j, b_j, c_j, eta_j, j_j = later
    identity = _eye_like(a_i)
    # a_j (I + c_i j_j)^-1 and a_i^T (I + j_j c_i)^-1, by solves
    m = jnp.swapaxes(jnp.linalg.solve(jnp.swapaxes(identity + c_i @ j_j, -1, -2), jnp.swapaxes(a_j, -1, -2)), -1, -2)
    n = jnp.swapaxes(jnp.linalg.solve(jnp.swapaxes(identity + j_j @ c_i, -1, -2), a_i), -1, -2)
    return (
        m @ a_i,
        _matvec(m, b_i + _matvec(c_i, eta_j)) + b_j,
        m @ c_i @ jnp.swapaxes(a_j, -1, -2) + c_j,
        _matvec(n, eta_j - _matvec(j_j, b_i)) + eta_i,
        n @ j_j @ a_i + j_i,
    )


def _kalman_identity(element):
    a, b, c, eta, j = element
    return _eye_like(a), jnp.zeros_like(b), jnp.zeros_like(c), jnp.zeros_like(eta), jnp.zeros_like(j)


def _kalman_enter(s0, element):
    """The element entered from a known state: :math:`(0, A s_0 + b, C, 0, 0)`, its composition after :math:`(0, s_0, 0, 0, 0)`."""
    a, b, c, eta, j = element
    return jnp.zeros_like(a), _matvec(a, s0) + b, c, jnp.zeros_like(eta), jnp.zeros_like(j)


_KALMAN = associative.Associative(_kalman_combine, _kalman_identity, _kalman_enter)


def _associative_kalman_filter(a: Array, c: Array, s_bar: Array, s0: Array, damping: float) -> Array:
    r""":func:`_kalman_filter` as an associative scan (Särkkä & García-Fernández, 2021): depth :math:`O(\log T)`.

    Each step is the element :math:`(A, b, C, \eta, J)` of the filter conditioned
    on the previous state; with unit process noise and observations of precision
    :math:`\lambda` the gain is :math:`\kappa = \lambda / (1 + \lambda)`, so
    :math:`A = (1-\kappa) a_t`, :math:`b = (1-\kappa) c_t + \kappa \bar s_t`,
    :math:`C = (1-\kappa) I`, :math:`\eta = \kappa a_t^T (\bar s_t - c_t)`,
    :math:`J = \kappa a_t^T a_t`. The first is entered from the known :math:`s_0`,
    and the ``b`` of the composed prefixes are the filtered means. Under a mesh
    with a sequence axis each device composes its chunk of time
    (:func:`jaxrnn._kernels.associative.prefix_scan`).
    """
    return associative.prefix_scan(_KALMAN, s0, _kalman_elements(a, c, s_bar, damping), batched=c.ndim > 2)[1]


def _kalman_elements(a: Array, c: Array, s_bar: Array, damping: float):
    """The filter elements of every step, for :func:`_associative_kalman_filter`."""
    eye = _eye_like(a)
    kappa = jnp.asarray(damping / (1.0 + damping), a.dtype)
    keep = 1 - kappa
    a_t = jnp.swapaxes(a, -1, -2)
    return keep * a, keep * c + kappa * s_bar, keep * eye, kappa * _matvec(a_t, s_bar - c), kappa * a_t @ a


def _damped_solve(jac: Array, c: Array, s_bar: Array, s0: Array, jacobian: str, damping: float) -> Array:
    """One ELK step: the Kalman filter on per-unit blocks or on full matrices; vectors ``[T, B, K, H]``."""
    if jacobian == "diagonal":

        def units(v):
            return jnp.swapaxes(v, -1, -2)  # [..., H, K]

        s = _kalman_filter(jac, units(c), units(s_bar), units(s0), damping)
        return jnp.swapaxes(s, -1, -2)
    shape = c.shape
    n = jac.shape[-1]
    flat = _kalman_filter(
        jac, c.reshape(shape[:2] + (n,)), s_bar.reshape(shape[:2] + (n,)), s0.reshape(shape[1:2] + (n,)), damping
    )
    return flat.reshape(shape)


def solve(solver, problem: _Problem, s0_v: Array, guess_v: Array | None):
    """Newton's iterations from ``guess_v`` (zeros if None): ``(states [T, B, K, H], iterations, residual, converged)``.

    A damped solver's step is :func:`_kalman_filter` of the linearised dynamics
    observing the current trajectory.
    """
    jacobian, damped = solver.jacobian, float(solver.damping) > 0
    dtype = s0_v.dtype
    tol = jnp.asarray(default_tol(dtype) if solver.tol is None else solver.tol, dtype)
    num_steps = jax.tree_util.tree_leaves(problem.px)[0].shape[0]
    s_v = jnp.zeros((num_steps,) + s0_v.shape, dtype) if guess_v is None else guess_v.astype(dtype)

    def linearise(s_v):
        f, jac = problem.linearise(_shift(s_v, s0_v), jacobian)
        return f, jac, jnp.max(jnp.abs(s_v - f), initial=jnp.zeros((), dtype))

    def iterate(carry):
        k, s_v, f, jac, _ = carry
        prev = _shift(s_v, s0_v)
        c = f - _apply(jac, prev, jacobian)
        if damped:
            s_new = _damped_solve(jac, c, s_v, s0_v, jacobian, solver.damping)
        elif jacobian == "diagonal":
            s_new = _blocks_scan(jac, c, s0_v)
        else:
            s_new = _full_scan(jac, c, s0_v)
        return (k + 1, s_new) + linearise(s_new)

    def again(carry):
        k, r = carry[0], carry[4]
        return jnp.logical_and(k < solver.max_iters, r > tol)  # False on a NaN residual: it stops

    start = (jnp.zeros((), jnp.int32), s_v) + linearise(s_v)
    k, s_v, _, _, r = lax.while_loop(again, iterate, start)
    return s_v, k, r, r <= tol


class NewtonSteps(NamedTuple):
    """A Newton solver as a step implementation of the time loop (:class:`jaxrnn._core.loop.Steps`).

    ``sequential`` is the sequential implementation of the same cell (the
    loop's :class:`jaxrnn._core.loop.CellSteps`): its projections, and on the
    CPU its hand-written reverse loop, which at the converged trajectory is the
    implicit gradient. Elsewhere, and under a sequence mesh axis, the gradient is
    :meth:`_parallel_backward`, whose scans split time over the mesh.
    """

    cell: Any
    strategy: Any
    sequential: Any

    def project(self, params, xs):
        return self.sequential.project(params, xs)

    def project_state(self, params, states):
        return self.sequential.project_state(params, states)

    def needs_px(self) -> bool:
        return True

    def forward(self, params, state, px, mask, guess=None):
        """``(ys, final, (states_prev, info))`` with ``info = (iterations, residual, converged, states)``."""
        layout = _Layout.of(state)
        problem = _Problem(self.cell, params, px, layout, mask)
        s0_v = layout.flat(state)
        guess_v = None if guess is None else layout.flat(guess)
        s_v, iterations, residual, converged = solve(self.strategy.solver, problem, s0_v, guess_v)
        s_v = lax.stop_gradient(s_v)
        prev = layout.tree(_shift(s_v, s0_v))
        ys = problem.step(prev, px)[1]
        states = layout.tree(s_v)
        final = tree_map(lambda a: a[-1], states)
        info = (iterations, residual, converged, states)
        return zero_where_masked(mask, ys), final, (prev, info)

    def backward(self, params, state, px, residual, mask, d_ys, d_final):
        states_prev, _ = residual
        # In order on the CPU, unless time is split over a sequence mesh: the reverse scan splits as the forward's.
        if associative.default_method() == "sequential" and sharding.sequence_mesh() is None:
            return self.sequential.backward(params, state, px, (states_prev, None), mask, d_ys, d_final)
        return self._parallel_backward(params, state, px, states_prev, mask, d_ys, d_final)

    def _parallel_backward(self, params, state, px, states_prev, mask, d_ys, d_final):
        r"""The BPTT equations as one reverse linear recurrence, solved by a parallel scan.

        :math:`\nu_t = J_t^T \nu_{t+1} + e_t` from :math:`\nu_{T+1}` = the final
        state's cotangent, where :math:`\nu_t` is the cotangent of the state
        entering step :math:`t` and :math:`e_t` what reaches it from that step's
        output; the identity on a skipped step, zero where ``truncate`` cuts. Then
        every step's own reverse (gate deltas, or ``jax.vjp`` of its step) at once.
        """
        cell, truncate = self.cell, self.strategy.truncate
        layout = _Layout.of(state)
        problem = _Problem(cell, params, px, layout, mask)
        prev_v = layout.flat(states_prev)
        structure = unit_structure(cell)
        jacobian = "diagonal" if structure is not None and structure.diagonal else "full"
        _, jac = problem.linearise(prev_v, jacobian)
        jac_t = jnp.swapaxes(jac, -1, -2)
        d_ys = zero_where_masked(mask, d_ys)

        _, step_vjp = jax.vjp(lambda s: problem.step(s, px), states_prev)
        new_shape = jax.eval_shape(lambda s: problem.step(s, px)[0], states_prev)
        (e_tree,) = step_vjp((tree_map(lambda a: jnp.zeros(a.shape, a.dtype), new_shape), d_ys))
        e_v = layout.flat(e_tree)
        if truncate is not None:
            cut = truncation_cut(jnp.arange(jac.shape[0]), truncate)
            cut_m = cut.reshape((-1,) + (1,) * (jac_t.ndim - 1))
            jac_t = jnp.where(cut_m, jnp.zeros_like(jac_t), jac_t)
            e_v = jnp.where(cut.reshape((-1,) + (1,) * (e_v.ndim - 1)), jnp.zeros_like(e_v), e_v)
        d_final_v = layout.flat(d_final).astype(prev_v.dtype)
        scan = _blocks_scan if jacobian == "diagonal" else _full_scan
        nu = scan(jac_t, e_v, d_final_v, reverse=True)
        d_new = layout.tree(jnp.concatenate([nu[1:], d_final_v[None]], axis=0))
        d_state0 = layout.tree(nu[0])
        d_new = zero_where_masked(mask, d_new)
        if not is_split(cell):
            _, vjp = jax.vjp(lambda p, x: cell.step(p, states_prev, x), params, px)
            d_params, d_xs = vjp((d_new, d_ys))
            return d_xs, None, d_state0, d_params, None
        rec = cell.project_state(params, states_prev)
        update_bwd = self.sequential._update_bwd()
        _, d_px, d_rec = update_bwd(states_prev, px, rec, d_new, d_ys)
        return d_px, d_rec, d_state0, None, states_prev

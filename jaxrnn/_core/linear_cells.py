r"""Linear-recurrence cells: minGRU, minLSTM and the LRU.

Their state follows :math:`h_t = a_t \odot h_{t-1} + b_t` with ``a_t`` and
``b_t`` functions of the input alone, declared by a :class:`LinearRecurrence`.
They are ordinary cells (``init`` / ``initial_state`` / ``step``), so the
sequential loop, models, flax layers and every command run them as any other
cell; :func:`jaxrnn.rnn` runs them as an associative scan over time by default
(``solver="parallel"``, :mod:`jaxrnn._kernels.associative`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._core.cells import (
    Cell,
    HiddenState,
    LinearRecurrence,
    _affine,
    _check_input_weight,
    _lecun_normal,
    _make_initial_state,
    _matmul_t,
    _scale_features,
    linear_step,
)
from jaxrnn._core.checks import carry_dtype, check_positive_int, float_dtype

Array = jax.Array


class MinRNNParams(NamedTuple):
    """Parameters of :func:`mingru` (``G = 2``: z, h̃) and :func:`minlstm` (``G = 3``: f, i, h̃)."""

    w_ih: Array  # [G*H, I] input weights of the gates and the candidate, stacked
    b_ih: Array  # [G*H] their biases


class LRUParams(NamedTuple):
    """Parameters of :func:`lru`: ``N`` the state size, ``H`` the output size, ``I`` the input size."""

    nu_log: Array  # [N] log(-log|lambda|): the eigenvalues' magnitudes
    theta_log: Array  # [N] log(arg lambda): their phases
    gamma_log: Array  # [N] log of the input normalisation sqrt(1 - |lambda|^2)
    b_re: Array  # [N, I] input matrix B, real part
    b_im: Array  # [N, I] input matrix B, imaginary part
    c_re: Array  # [H, N] output matrix C, real part
    c_im: Array  # [H, N] output matrix C, imaginary part
    d: Array  # [H] diagonal feedthrough D when I == H (the paper's); [H, I] dense otherwise


class LRUState(NamedTuple):
    """State of :func:`lru`: the complex state ``h [*batch, N]`` as its real and imaginary parts."""

    re: Array  # [*batch, N] real part
    im: Array  # [*batch, N] imaginary part


def _log_g(k: Array) -> Array:
    """``log g(k)`` for the positive activation ``g(k) = k + 1/2`` (k >= 0), ``sigmoid(k)`` (k < 0)."""
    return jnp.where(k >= 0, jnp.log(jax.nn.relu(k) + 0.5), -jax.nn.softplus(-k))


def _g(k: Array) -> Array:
    return jnp.where(k >= 0, jax.nn.relu(k) + 0.5, jax.nn.sigmoid(k))


def _min_cell(name: str, hidden_size: int, num_gates: int, log_space: bool, gates_to_ab) -> Cell:
    """A minGRU / minLSTM cell: ``gates_to_ab(k_gates..., candidate, log) -> (a, b)`` from the projections."""

    def init(key: Array, input_size: int, dtype=None) -> MinRNNParams:
        input_size = check_positive_int(input_size, "input_size")
        dtype = float_dtype(dtype)
        return MinRNNParams(
            w_ih=_lecun_normal(key, (num_gates * hidden_size, input_size), dtype),
            b_ih=jnp.zeros((num_gates * hidden_size,), dtype),
        )

    def projections(params: MinRNNParams, xs: Array) -> list:
        _check_input_weight(name, params.w_ih, num_gates * hidden_size, hidden_size, xs)
        k = _affine(xs, params.w_ih, params.b_ih)
        return jnp.split(k, num_gates, axis=-1)

    def coefficients(params, xs):
        *k_gates, k_h = projections(params, xs)
        return gates_to_ab(*k_gates, _g(k_h) if log_space else k_h, log=False)

    def log_coefficients(params, xs):
        *k_gates, k_h = projections(params, xs)
        return gates_to_ab(*k_gates, _log_g(k_h), log=True)

    recurrence = LinearRecurrence(
        coefficients=coefficients,
        output=lambda params, h, xs: h,
        to_state=HiddenState,
        from_state=lambda state: state.h,
        log_coefficients=log_coefficients if log_space else None,
    )
    return Cell(
        hidden_size=hidden_size,
        init=init,
        initial_state=_make_initial_state(HiddenState, hidden_size),
        step=linear_step(recurrence),
        name=name,
        recurrence=recurrence,
    )


def mingru(hidden_size: int, *, log_space: bool = False) -> Cell:
    r"""minGRU: a GRU whose gates see only the input, so its recurrence is linear.

    .. math::
        z_t &= \sigma(W_z x_t + b_z), \qquad \tilde h_t = W_h x_t + b_h \\
        h_t &= (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t, \qquad y_t = h_t

    that is :math:`a_t = 1 - z_t`, :math:`b_t = z_t \odot \tilde h_t`. With
    ``log_space=True`` the candidate is :math:`g(W_h x_t + b_h)` with
    :math:`g(k) = k + \tfrac12` for :math:`k \ge 0` and :math:`\sigma(k)` below, so
    :math:`b_t > 0`, and the parallel forward pass runs on :math:`\log a_t`,
    :math:`\log b_t` as a cumulative log-sum-exp (the paper's form for long
    sequences); the initial state may have any sign. In float32 its states carry
    a relative error of about :math:`\epsilon \sum_t |\log a_t|` (the paper's
    cancellation of two cumulative sums): use it where ``T`` times the mean
    :math:`|\log a_t|` stays below about :math:`10^3`.

    Default initialisers: ``w_ih`` LeCun normal, ``b_ih`` zero.

    Args:
      hidden_size: H.
      log_space: the paper's positive candidate and log-space forward pass.

    Returns:
      A :class:`Cell` with :class:`MinRNNParams` (``w_ih [2H, I]``, order z, h̃;
      ``b_ih [2H]``), state :class:`HiddenState` and a :class:`LinearRecurrence`.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.mingru(16)
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=4)
      >>> ys, final = jr.rnn(cell, params, jnp.ones((2, 100, 4)))  # an associative scan over time
      >>> ys.shape
      (2, 100, 16)

    References:
      Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?", 2024.
    """
    hidden_size = check_positive_int(hidden_size, "hidden_size")

    def gates_to_ab(k_z, candidate, *, log):
        if log:
            return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + candidate
        return jax.nn.sigmoid(-k_z), jax.nn.sigmoid(k_z) * candidate

    return _min_cell("mingru", hidden_size, 2, bool(log_space), gates_to_ab)


def minlstm(hidden_size: int, *, log_space: bool = False) -> Cell:
    r"""minLSTM: an LSTM whose gates see only the input, normalised so the state's scale is free of time.

    .. math::
        f_t &= \sigma(W_f x_t + b_f), \quad i_t = \sigma(W_i x_t + b_i), \quad \tilde h_t = W_h x_t + b_h \\
        f'_t &= \frac{f_t}{f_t + i_t}, \quad i'_t = \frac{i_t}{f_t + i_t}, \qquad
        h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t, \qquad y_t = h_t

    computed stably as :math:`f'_t = \sigma(\delta_t)`, :math:`i'_t = \sigma(-\delta_t)`
    with :math:`\delta_t = \log f_t - \log i_t`. ``log_space`` as in :func:`mingru`.

    Default initialisers: ``w_ih`` LeCun normal, ``b_ih`` zero.

    Args:
      hidden_size: H.
      log_space: the paper's positive candidate and log-space forward pass.

    Returns:
      A :class:`Cell` with :class:`MinRNNParams` (``w_ih [3H, I]``, order f, i, h̃;
      ``b_ih [3H]``), state :class:`HiddenState` and a :class:`LinearRecurrence`.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.minlstm(8, log_space=True)
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=3)
      >>> ys, final = jr.rnn(cell, params, jnp.ones((5, 3)))
      >>> bool((ys > 0).all())  # the log-space form keeps the state positive from h_0 = 0
      True

    References:
      Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?", 2024.
    """
    hidden_size = check_positive_int(hidden_size, "hidden_size")

    def gates_to_ab(k_f, k_i, candidate, *, log):
        delta = jax.nn.softplus(-k_i) - jax.nn.softplus(-k_f)  # log f - log i
        if log:
            return -jax.nn.softplus(-delta), -jax.nn.softplus(delta) + candidate
        return jax.nn.sigmoid(delta), jax.nn.sigmoid(-delta) * candidate

    return _min_cell("minlstm", hidden_size, 3, bool(log_space), gates_to_ab)


def lru(
    hidden_size: int,
    *,
    state_size: int | None = None,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
) -> Cell:
    r"""The linear recurrent unit: a complex diagonal recurrence with real outputs.

    .. math::
        \lambda &= \exp(-\exp(\nu^{\log}) + i \exp(\theta^{\log})), \qquad
        \gamma = \exp(\gamma^{\log}) \\
        h_t &= \lambda \odot h_{t-1} + \gamma \odot (B x_t), \qquad
        y_t = \mathrm{Re}(C h_t) + D x_t

    with :math:`h_t \in \mathbb{C}^N`. The exponential parametrisation keeps
    :math:`|\lambda| < 1` (a stable recurrence) for any parameters. At init the
    eigenvalues are uniform on the ring :math:`r_{\min} \le |\lambda| \le r_{\max}`
    with phases in :math:`[0, \text{max\_phase}]`, and :math:`\gamma^{\log} = \log
    \sqrt{1 - |\lambda|^2}` normalises the state's variance (the paper's choices).
    ``B`` is complex normal with variance :math:`1/(2I)` per part, ``C`` with
    :math:`1/N`, ``D`` standard normal. The paper's ``D`` is a vector (an
    elementwise skip, input and output of one size): so it is here when
    ``input_size == hidden_size``; for other input sizes it is a dense ``[H, I]``
    matrix (LeCun normal), so that the cell works for any input size, as every
    jaxrnn cell does.

    Args:
      hidden_size: H, the size of the outputs.
      state_size: N, the size of the complex state; default ``hidden_size``.
      r_min, r_max: the ring of the eigenvalues' magnitudes at init, ``0 <= r_min < r_max <= 1``.
      max_phase: the largest phase at init.

    Returns:
      A :class:`Cell` with :class:`LRUParams`, state :class:`LRUState`
      (``re, im [*batch, N]``) and a :class:`LinearRecurrence`.

    Raises:
      ValueError: a non-positive size, or ``r_min``, ``r_max``, ``max_phase`` out of range.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.lru(8, state_size=16, r_min=0.9, r_max=0.999)
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=3)
      >>> ys, final = jr.rnn(cell, params, jnp.ones((2, 50, 3)))
      >>> ys.shape, final.re.shape
      ((2, 50, 8), (2, 16))

    References:
      Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De, "Resurrecting recurrent
      neural networks for long sequences", ICML 2023.
    """
    hidden_size = check_positive_int(hidden_size, "hidden_size")
    state_size = hidden_size if state_size is None else check_positive_int(state_size, "state_size")
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(f"r_min and r_max must satisfy 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}.")
    if not max_phase > 0.0:
        raise ValueError(f"max_phase must be positive, got {max_phase}.")
    n = state_size

    def init(key: Array, input_size: int, dtype=None) -> LRUParams:
        input_size = check_positive_int(input_size, "input_size")
        dtype = float_dtype(dtype)
        k_u1, k_u2, k_bre, k_bim, k_cre, k_cim, k_d = jax.random.split(key, 7)
        f32 = jnp.float32
        # |lambda|^2 uniform on [r_min^2, r_max^2]; kept inside (0, 1) so every log is finite.
        u1 = jax.random.uniform(k_u1, (n,), f32, minval=1e-6)
        u2 = jax.random.uniform(k_u2, (n,), f32, minval=1e-6)
        radius_sq = jnp.clip(u1 * (r_max**2 - r_min**2) + r_min**2, 1e-12, 1.0 - 1e-6)
        nu_log = jnp.log(-0.5 * jnp.log(radius_sq))
        theta_log = jnp.log(max_phase * u2)
        gamma_log = 0.5 * jnp.log(1.0 - radius_sq)

        def normal(k, shape, var):
            return (jax.random.normal(k, shape, f32) * math.sqrt(var)).astype(dtype)

        return LRUParams(
            nu_log=nu_log.astype(dtype),
            theta_log=theta_log.astype(dtype),
            gamma_log=gamma_log.astype(dtype),
            b_re=normal(k_bre, (n, input_size), 1.0 / (2 * input_size)),
            b_im=normal(k_bim, (n, input_size), 1.0 / (2 * input_size)),
            c_re=normal(k_cre, (hidden_size, n), 1.0 / n),
            c_im=normal(k_cim, (hidden_size, n), 1.0 / n),
            d=(
                jax.random.normal(k_d, (hidden_size,), f32).astype(dtype)
                if input_size == hidden_size
                else _lecun_normal(k_d, (hidden_size, input_size), dtype)
            ),
        )

    def coefficients(params: LRUParams, xs: Array):
        _check_input_weight("lru", params.b_re, n, hidden_size, xs, field="b_re")
        dtype = carry_dtype(params.b_re.dtype)
        # One matmul for both parts, with gamma folded into the weights: XLA:CPU ran the two
        # separate products and their scaling (and their transposes) 3-5x slower (benchmarks/NOTES.md).
        gamma = jnp.exp(params.gamma_log.astype(dtype))[:, None]
        w = jnp.concatenate([params.b_re.astype(dtype) * gamma, params.b_im.astype(dtype) * gamma], axis=0)
        k = _matmul_t(xs, w.astype(params.b_re.dtype))
        b = lax.complex(k[..., :n], k[..., n:])
        lam = jnp.exp(lax.complex(-jnp.exp(params.nu_log.astype(dtype)), jnp.exp(params.theta_log.astype(dtype))))
        return jnp.broadcast_to(lam, b.shape), b

    def output(params: LRUParams, h: Array, xs: Array) -> Array:
        if params.c_re.shape != (hidden_size, n):
            raise ValueError(
                f"params.c_re has shape {params.c_re.shape}, but the lru cell with hidden_size={hidden_size} "
                f"and state_size={n} expects {(hidden_size, n)}."
            )
        # Re(C h) as one matmul: [Re h, Im h] @ [C_re, -C_im]^T.
        y = _matmul_t(
            jnp.concatenate([jnp.real(h), jnp.imag(h)], axis=-1), jnp.concatenate([params.c_re, -params.c_im], axis=1)
        )
        if params.d.ndim == 1:
            if params.d.shape != (xs.shape[-1],):
                raise ValueError(
                    f"params.d has shape {params.d.shape}: a diagonal D needs input_size == hidden_size "
                    f"({hidden_size}), but the inputs have size {xs.shape[-1]}. Were these params made for another "
                    f"input size?"
                )
            return y + _scale_features(xs.astype(y.dtype), params.d)
        return y + _matmul_t(xs, params.d)

    recurrence = LinearRecurrence(
        coefficients=coefficients,
        output=output,
        to_state=lambda h: LRUState(jnp.real(h), jnp.imag(h)),
        from_state=lambda state: lax.complex(state.re, state.im),
    )
    return Cell(
        hidden_size=hidden_size,
        init=init,
        initial_state=_make_initial_state(LRUState, n),
        step=linear_step(recurrence),
        name="lru",
        recurrence=recurrence,
    )

"""Multi-layer and bidirectional recurrent models built on :func:`jaxrnn.rnn`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._core import cells as _cells
from jaxrnn._core import newton
from jaxrnn._core.cells import Cell
from jaxrnn._core.checks import check_positive_int
from jaxrnn._core.rnn import rnn

MERGES = ("concat", "sum")


class Bidirectional(NamedTuple):
    """A pair of per-direction values (params, states) of a bidirectional layer."""

    forward: Any  # the left-to-right direction
    backward: Any  # the right-to-left direction


@dataclasses.dataclass(frozen=True)
class StackedRNN:
    """A stack of recurrent layers; made by :func:`LSTM`, :func:`GRU` or :func:`RNN`.

    ``init(key)`` returns a tuple with one entry per layer: the layer's cell params,
    or :class:`Bidirectional` ``(forward, backward)`` of them. ``apply`` returns
    ``(ys, finals)`` where ``finals`` has the same per-layer structure with states.

    Attributes:
      cells: one cell per layer.
      input_size: I, the size of the inputs of the first layer.
      bidirectional: each layer runs both directions.
      merge: how directions combine: ``"concat"`` (output size 2H) or ``"sum"`` (H).
      dropout: dropout rate on the inputs of every layer but the first (applied
        only when ``apply`` gets a ``key``).
      residual: add each layer's input to its output, for every layer but the
        first (their sizes must match).
      time_major: the default layout of ``apply``: ``[T, B, I]`` instead of ``[B, T, I]``.
    """

    cells: tuple
    input_size: int
    bidirectional: bool = False
    merge: str = "concat"
    dropout: float = 0.0
    residual: bool = False
    time_major: bool = False

    def __post_init__(self):
        check_positive_int(self.input_size, "input_size")
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}.")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}.")
        if not self.cells:
            raise ValueError("num_layers must be a positive int, got 0 layers.")
        if self.residual:
            sizes = self.layer_input_sizes
            for layer in range(1, len(self.cells)):
                out = self._layer_output_size(layer)
                if out != sizes[layer]:
                    raise ValueError(
                        f"residual=True needs each layer after the first to output as many features as "
                        f"it takes, but layer {layer} takes {sizes[layer]} and outputs {out}; use equal "
                        f"hidden sizes (and merge='sum' with bidirectional layers)."
                    )

    @property
    def num_layers(self) -> int:
        return len(self.cells)

    def _layer_output_size(self, layer: int) -> int:
        hidden = self.cells[layer].hidden_size
        return 2 * hidden if self.bidirectional and self.merge == "concat" else hidden

    @property
    def output_size(self) -> int:
        """The feature size of ``ys``."""
        return self._layer_output_size(self.num_layers - 1)

    @property
    def layer_input_sizes(self) -> tuple:
        """The input size of each layer."""
        return (self.input_size,) + tuple(self._layer_output_size(i) for i in range(self.num_layers - 1))

    def init(self, key: jax.Array, dtype=None) -> tuple:
        """Parameters: a tuple over layers of cell params or ``Bidirectional`` pairs."""
        keys = jax.random.split(key, self.num_layers)
        params = []
        for cell, size, k in zip(self.cells, self.layer_input_sizes, keys):
            if self.bidirectional:
                k_f, k_b = jax.random.split(k)
                params.append(Bidirectional(cell.init(k_f, size, dtype), cell.init(k_b, size, dtype)))
            else:
                params.append(cell.init(k, size, dtype))
        return tuple(params)

    def initial_state(self, batch_shape: Sequence[int] = (), dtype=None) -> tuple:
        """Zero states, with the per-layer structure of ``apply``'s ``finals``."""
        states = []
        for cell in self.cells:
            s = cell.initial_state(batch_shape, dtype=dtype)
            states.append(Bidirectional(s, s) if self.bidirectional else s)
        return tuple(states)

    def apply(
        self,
        params: tuple,
        xs: jax.Array,
        lengths: jax.Array | None = None,
        key: jax.Array | None = None,
        *,
        state: tuple | None = None,
        time_major: bool | None = None,
        grad: str = "bptt",
        truncate: int | None = None,
        unroll: int | None = None,
        residuals: str = "gates",
        remat: int | None = None,
        backend: Any = "auto",
        solver: Any = None,
        return_info: bool = False,
    ) -> tuple:
        """Run the stack.

        Args:
          params: from :meth:`init`.
          xs: ``[B, T, I]`` (``[T, B, I]`` if time-major), or ``[T, I]`` for one sequence.
          lengths: int ``[B]``, valid steps per sequence (see :func:`jaxrnn.rnn`).
          key: PRNG key for dropout; without it dropout is off (evaluation).
          state: initial states with the structure of :meth:`initial_state`; zeros if None.
          time_major: override the model's ``time_major``.
          grad, truncate, unroll, residuals, remat, backend, solver: as in
            :func:`jaxrnn.rnn`, for every layer. A Newton solver's ``guess`` is a
            tuple over layers, each entry None (zeros), the layer's trajectory, or
            for a bidirectional layer a ``Bidirectional`` pair of them: the
            trajectories of a previous call, ``jax.tree.map(lambda i: i.states,
            infos, is_leaf=lambda i: isinstance(i, jr.SolverInfo))``.
          return_info: also return each layer's :class:`jaxrnn.SolverInfo` (a Newton
            solver only, as in :func:`jaxrnn.rnn`).

        Returns:
          ``(ys, finals)``: ``ys [B, T, output_size]`` and a tuple over layers of final
          states (``Bidirectional`` pairs for bidirectional layers); with
          ``return_info``, ``(ys, finals, infos)``, ``infos`` a tuple over layers of
          ``SolverInfo`` (``Bidirectional`` pairs for bidirectional layers).

        Raises:
          ValueError: ``params`` or ``state`` without one entry per layer; a Newton
            solver's ``guess`` that is not a tuple over layers (or a bidirectional
            layer's entry not a ``Bidirectional`` pair); :func:`jaxrnn.rnn`'s errors.

        Example:
          >>> import jax, jax.numpy as jnp, jaxrnn as jr
          >>> model = jr.GRU(input_size=2, hidden_size=8, num_layers=2)
          >>> params, xs = model.init(jax.random.PRNGKey(0)), jnp.ones((3, 20, 2))
          >>> ys, _, infos = model.apply(params, xs, solver=jr.QuasiDEER(), return_info=True)
          >>> guess = jax.tree.map(lambda i: i.states, infos, is_leaf=lambda i: isinstance(i, jr.SolverInfo))
          >>> _, _, warm = model.apply(params, xs, solver=jr.QuasiDEER(guess=guess), return_info=True)
          >>> [int(i.iterations) for i in warm]  # started at the solution
          [0, 0]
        """
        time_major = self.time_major if time_major is None else time_major
        if not isinstance(params, (tuple, list)) or len(params) != self.num_layers:
            got = (
                f"a {type(params).__name__} of length {len(params)}"
                if isinstance(params, (tuple, list))
                else type(params).__name__
            )
            raise ValueError(f"params must be a tuple with one entry per layer ({self.num_layers}), got {got}.")
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != self.num_layers):
            raise ValueError(
                f"state must be a tuple with one entry per layer ({self.num_layers}); build it with "
                f"model.initial_state(batch_shape)."
            )
        use_dropout = key is not None and self.dropout > 0.0
        keys = jax.random.split(key, self.num_layers) if key is not None and use_dropout else [None] * self.num_layers
        run = dict(
            lengths=lengths,
            time_major=time_major,
            grad=grad,
            truncate=truncate,
            unroll=unroll,
            residuals=residuals,
            remat=remat,
            backend=backend,
            return_info=return_info,
        )
        guesses = self._guesses(solver)
        finals, infos = [], []
        inputs = xs
        for layer, (cell, layer_params) in enumerate(zip(self.cells, params)):
            layer_state = None if state is None else state[layer]
            if layer > 0 and use_dropout:
                keep = jax.random.bernoulli(keys[layer], 1.0 - self.dropout, inputs.shape)  # type: ignore[arg-type]
                inputs = jnp.where(keep, inputs / (1.0 - self.dropout), jnp.zeros_like(inputs))
            guess = None if guesses is None else guesses[layer]
            if self.bidirectional:
                s_f, s_b = (None, None) if layer_state is None else layer_state
                g_f, g_b = (None, None) if guess is None else guess
                out_f = rnn(cell, layer_params.forward, inputs, s_f, solver=_with_guess(solver, g_f), **run)
                out_b = rnn(
                    cell, layer_params.backward, inputs, s_b, reverse=True, solver=_with_guess(solver, g_b), **run
                )
                y_f, y_b = out_f[0], out_b[0]
                ys = jnp.concatenate([y_f, y_b], axis=-1) if self.merge == "concat" else y_f + y_b
                finals.append(Bidirectional(out_f[1], out_b[1]))
                infos.append(Bidirectional(out_f[2], out_b[2]) if return_info else None)
            else:
                out = rnn(cell, layer_params, inputs, layer_state, solver=_with_guess(solver, guess), **run)
                ys = out[0]
                finals.append(out[1])
                infos.append(out[2] if return_info else None)
            if self.residual and layer > 0:
                ys = ys + inputs.astype(ys.dtype)
            inputs = ys
        if return_info:
            return inputs, tuple(finals), tuple(infos)
        return inputs, tuple(finals)

    def _guesses(self, solver) -> tuple | None:
        """A Newton solver's ``guess`` checked as one entry per layer; None without one."""
        guess = getattr(solver, "guess", None) if newton.is_newton(solver) else None
        if guess is None:
            return None
        entry = "a Bidirectional pair of the directions' trajectories" if self.bidirectional else "its trajectory"
        expected = f"a tuple with one entry per layer ({self.num_layers}), each None or {entry}"
        fix = (
            "Pass the trajectories of a previous call with return_info=True: "
            "jax.tree.map(lambda i: i.states, infos, is_leaf=lambda i: isinstance(i, jr.SolverInfo))."
        )
        # A NamedTuple is one layer's state (LSTMState) or a Bidirectional pair, not the tuple over layers.
        if type(guess) not in (tuple, list) or len(guess) != self.num_layers:
            got = f"a {type(guess).__name__}" + (f" of length {len(guess)}" if isinstance(guess, (tuple, list)) else "")
            raise ValueError(f"solver.guess must be {expected}; got {got}. {fix}")
        for layer, got in enumerate(guess):
            if got is not None and isinstance(got, Bidirectional) != self.bidirectional:
                raise ValueError(f"solver.guess[{layer}] must be None or {entry}; got a {type(got).__name__}. {fix}")
        return tuple(guess)


def _with_guess(solver, guess):
    """``solver`` with one layer's (direction's) ``guess``; any other solver as it is."""
    return solver._replace(guess=guess) if newton.is_newton(solver) else solver


def _layer_sizes(hidden_size, num_layers) -> tuple:
    if isinstance(hidden_size, (list, tuple)):
        sizes = tuple(check_positive_int(h, "hidden_size") for h in hidden_size)
        if num_layers is not None and num_layers != len(sizes):
            raise ValueError(
                f"num_layers={num_layers} does not match the {len(sizes)} per-layer sizes in hidden_size={hidden_size}."
            )
        if not sizes:
            raise ValueError("hidden_size must name at least one layer size, got an empty sequence.")
        return sizes
    num_layers = 1 if num_layers is None else check_positive_int(num_layers, "num_layers")
    return (check_positive_int(hidden_size, "hidden_size"),) * num_layers


def _stack(make_cell, input_size, hidden_size, num_layers, **options) -> StackedRNN:
    cells = tuple(make_cell(h) for h in _layer_sizes(hidden_size, num_layers))
    return StackedRNN(cells=cells, input_size=input_size, **options)


_DOC_OPTIONS = """
    Args:
      input_size: I, the feature size of the inputs.
      hidden_size: H for every layer, or a sequence of per-layer sizes.
      num_layers: number of layers (default 1, or ``len(hidden_size)``).
      bidirectional: run each layer in both directions (padding-aware with ``lengths``).
      merge: ``"concat"`` (output 2H) or ``"sum"`` (output H) of the two directions.
      dropout: rate on the inputs of every layer but the first; active only when
        ``apply`` gets a ``key``.
      residual: add each layer's input to its output (layers after the first).
      recurrent: ``"dense"`` (torch's cells) or ``"diagonal"`` (one recurrent
        weight per gate and unit; see :func:`jaxrnn.elman`).
      time_major: default layout ``[T, B, I]`` (PyTorch's ``batch_first=False``).

    Returns:
      A :class:`StackedRNN` with ``init(key, dtype=None)`` (JAX's default float) and
      ``apply(params, xs, lengths=None, key=None) -> (ys, finals)``.
"""


def LSTM(
    input_size: int,
    hidden_size: int | Sequence[int],
    num_layers: int | None = None,
    *,
    bidirectional: bool = False,
    merge: str = "concat",
    dropout: float = 0.0,
    residual: bool = False,
    layer_norm: bool = False,
    forget_bias: float = 1.0,
    recurrent: str = "dense",
    time_major: bool = False,
) -> StackedRNN:
    """A stack of LSTM layers (:func:`jaxrnn.lstm`, or :func:`jaxrnn.layer_norm_lstm`
    with ``layer_norm=True``), the counterpart of ``torch.nn.LSTM``.
    """
    if layer_norm and recurrent != "dense":
        raise ValueError(
            f"layer_norm=True has only a dense recurrence (jr.layer_norm_lstm), got recurrent={recurrent!r}; "
            f"use recurrent='dense' or layer_norm=False."
        )

    def make(h: int) -> Cell:
        if layer_norm:
            return _cells.layer_norm_lstm(h, forget_bias=forget_bias)
        return _cells.lstm(h, forget_bias=forget_bias, recurrent=recurrent)

    return _stack(
        make,
        input_size,
        hidden_size,
        num_layers,
        bidirectional=bidirectional,
        merge=merge,
        dropout=dropout,
        residual=residual,
        time_major=time_major,
    )


def GRU(
    input_size: int,
    hidden_size: int | Sequence[int],
    num_layers: int | None = None,
    *,
    bidirectional: bool = False,
    merge: str = "concat",
    dropout: float = 0.0,
    residual: bool = False,
    recurrent: str = "dense",
    time_major: bool = False,
) -> StackedRNN:
    """A stack of GRU layers (:func:`jaxrnn.gru`), the counterpart of ``torch.nn.GRU``."""
    return _stack(
        lambda h: _cells.gru(h, recurrent=recurrent),
        input_size,
        hidden_size,
        num_layers,
        bidirectional=bidirectional,
        merge=merge,
        dropout=dropout,
        residual=residual,
        time_major=time_major,
    )


def RNN(
    input_size: int,
    hidden_size: int | Sequence[int],
    num_layers: int | None = None,
    *,
    activation: str = "tanh",
    bidirectional: bool = False,
    merge: str = "concat",
    dropout: float = 0.0,
    residual: bool = False,
    recurrent: str = "dense",
    time_major: bool = False,
) -> StackedRNN:
    """A stack of Elman layers (:func:`jaxrnn.elman` with ``activation`` "tanh" or
    "relu"), the counterpart of ``torch.nn.RNN``.
    """
    return _stack(
        lambda h: _cells.elman(h, activation=activation, recurrent=recurrent),
        input_size,
        hidden_size,
        num_layers,
        bidirectional=bidirectional,
        merge=merge,
        dropout=dropout,
        residual=residual,
        time_major=time_major,
    )


for _factory in (LSTM, GRU, RNN):
    _factory.__doc__ = (
        (_factory.__doc__ or "").rstrip()
        + "\n"
        + _DOC_OPTIONS
        + """
    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> model = jr.{name}(input_size=4, hidden_size=8, num_layers=2, bidirectional=True)
      >>> params = model.init(jax.random.PRNGKey(0))
      >>> ys, finals = model.apply(params, jnp.ones((3, 5, 4)), lengths=jnp.array([5, 2, 4]))
      >>> ys.shape, len(finals)
      ((3, 5, 16), 2)
    """.replace("{name}", _factory.__name__)
    )

"""Flax wrappers: a :class:`jaxrnn.StackedRNN` as a layer of an ``nnx`` or ``linen`` model.

The wrappers hold the model's parameters in flax's containers and call
:meth:`jaxrnn.StackedRNN.apply`, so a flax model gets jaxrnn's hand-written BPTT
(or, with ``grad="autodiff"``, the plain scan) and the same outputs as the pure
functions for the same parameters. Any stack works, whatever its cells
(``jaxrnn.StackedRNN(cells=(jaxrnn.mingru(8),), input_size=4)`` as well as
``jaxrnn.LSTM(...)``): the wrappers hold whatever pytree ``model.init``
returns. Import this submodule explicitly
(``import jaxrnn.flax``). Works with flax 0.10.7 (the last release for Python
3.10) and newer.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from jaxrnn._core.models import StackedRNN

# flax >= 0.11.2 wants pytrees of Variables held by a Module marked as data;
# older flax has no marker and needs none.
_as_data = getattr(nnx, "data", lambda tree: tree)


def _values(tree):
    """The arrays inside a pytree of ``nnx.Param``."""
    return jax.tree.map(lambda v: v[...], tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


class Recurrent(nnx.Module):
    """A :class:`jaxrnn.StackedRNN` as an ``nnx`` layer.

    Each array of ``model.init(key)`` becomes one :class:`flax.nnx.Param`, kept in
    the structure ``init`` returns, so ``nnx.state``, ``nnx.Optimizer`` and
    ``nnx.value_and_grad`` see ordinary parameters with paths such as
    ``params/0/forward/w_ih`` (layer 0, forward direction, input weights).

    Args:
      model: the stack, e.g. ``jaxrnn.LSTM(input_size, hidden_size, ...)``.
      rngs: its ``params`` stream seeds ``model.init``.
      param_dtype: dtype of the parameters (the matmuls run in it; the
        recurrent state carries in float32, or float64 for float64); None:
        JAX's default float (float64 with ``jax_enable_x64``, else float32).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> from flax import nnx
      >>> from jaxrnn.flax import Recurrent
      >>> model = jr.LSTM(input_size=4, hidden_size=8, num_layers=2, bidirectional=True, dropout=0.2)
      >>> layer = Recurrent(model, rngs=nnx.Rngs(0))
      >>> xs = jnp.ones((3, 5, 4), jnp.float32)
      >>> ys, finals = layer(xs, jnp.array([5, 2, 4]))
      >>> ys.shape, finals[1].backward.h.shape
      ((3, 5, 16), (3, 8))
      >>> ys_train, _ = layer(xs, rngs=nnx.Rngs(dropout=1))  # with dropout
      >>> layer.params[0].forward.w_ih.shape  # layer 0, [4H, I] as in jaxrnn.CellParams
      (32, 4)
      >>> sum(p.size for p in jax.tree.leaves(nnx.state(layer, nnx.Param)))
      2560
    """

    def __init__(self, model: StackedRNN, *, rngs: nnx.Rngs, param_dtype: Any = None):
        self.model = model
        params = model.init(rngs.params(), param_dtype)
        self.params = _as_data(jax.tree.map(nnx.Param, params))

    def __call__(
        self,
        xs: jax.Array,
        lengths: jax.Array | None = None,
        *,
        state: tuple | None = None,
        rngs: nnx.Rngs | None = None,
        grad: str = "bptt",
        truncate: int | None = None,
        unroll: int | None = None,
        residuals: str = "gates",
        remat: int | None = None,
        backend: Any = "auto",
        solver: str | None = None,
    ) -> tuple:
        """Run the stack on ``xs``.

        Args:
          xs: ``[B, T, I]`` (``[T, B, I]`` for a time-major model), or ``[T, I]``.
          lengths: int ``[B]``, valid steps per sequence.
          state: initial states, the structure of ``model.initial_state((B,))``;
            zeros if None.
          rngs: draws the dropout key from its ``dropout`` stream; without it
            dropout is off (evaluation).
          grad, truncate, unroll, residuals, remat, backend, solver: as in :func:`jaxrnn.rnn`.

        Returns:
          ``(ys, finals)`` of :meth:`jaxrnn.StackedRNN.apply`.
        """
        key = None if rngs is None else rngs.dropout()
        return self.model.apply(
            _values(self.params),
            xs,
            lengths,
            key,
            state=state,
            grad=grad,
            truncate=truncate,
            unroll=unroll,
            residuals=residuals,
            remat=remat,
            backend=backend,
            solver=solver,
        )


class LinenRecurrent(nn.Module):
    """A :class:`jaxrnn.StackedRNN` as a ``linen`` module.

    The parameters are one entry ``"rnn"`` of the ``params`` collection: the
    pytree of ``model.init(key)`` (a tuple over layers of cell params or
    :class:`jaxrnn.Bidirectional` pairs).

    Attributes:
      model: the stack, e.g. ``jaxrnn.LSTM(input_size, hidden_size, ...)``.
      grad, truncate, unroll, residuals, remat, backend, solver: as in :func:`jaxrnn.rnn`.
      param_dtype: dtype of the parameters; None: JAX's default float.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> from jaxrnn.flax import LinenRecurrent
      >>> model = jr.GRU(input_size=4, hidden_size=8, num_layers=2, dropout=0.2)
      >>> layer = LinenRecurrent(model)
      >>> xs = jnp.ones((3, 5, 4), jnp.float32)
      >>> variables = layer.init(jax.random.key(0), xs)
      >>> ys, finals = layer.apply(variables, xs, jnp.array([5, 2, 4]))
      >>> ys.shape, finals[1].h.shape
      ((3, 5, 8), (3, 8))
      >>> ys_train, _ = layer.apply(variables, xs, deterministic=False, rngs={"dropout": jax.random.key(1)})
    """

    model: StackedRNN
    grad: str = "bptt"
    truncate: int | None = None
    unroll: int | None = None
    residuals: str = "gates"
    remat: int | None = None
    backend: Any = "auto"
    solver: str | None = None
    param_dtype: Any = None

    @nn.compact
    def __call__(
        self,
        xs: jax.Array,
        lengths: jax.Array | None = None,
        *,
        state: tuple | None = None,
        deterministic: bool = True,
    ) -> tuple:
        """Run the stack on ``xs``.

        Args:
          xs: ``[B, T, I]`` (``[T, B, I]`` for a time-major model), or ``[T, I]``.
          lengths: int ``[B]``, valid steps per sequence.
          state: initial states, the structure of ``model.initial_state((B,))``;
            zeros if None.
          deterministic: without dropout; with ``False`` the key comes from the
            ``"dropout"`` rng.

        Returns:
          ``(ys, finals)`` of :meth:`jaxrnn.StackedRNN.apply`.
        """
        params = self.param("rnn", lambda key: self.model.init(key, self.param_dtype))
        key = None if deterministic else self.make_rng("dropout")
        return self.model.apply(
            params,
            xs,
            lengths,
            key,
            state=state,
            grad=self.grad,
            truncate=self.truncate,
            unroll=self.unroll,
            residuals=self.residuals,
            remat=self.remat,
            backend=self.backend,
            solver=self.solver,
        )

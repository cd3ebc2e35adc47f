"""JAX peers for ``jaxrnn bench``: other JAX implementations run with jaxrnn's weights.

A peer is a :class:`Peer` made by :func:`make_peer` from jaxrnn :class:`~jaxrnn.CellParams`
(PyTorch layout): the weights converted exactly to the peer's own layout, its jitted
forward and gradient, and the map of its gradient back to PyTorch's layout, so that
timings compare the same computation and the gradients can be checked against jaxrnn.

The peers:

- ``flax-LSTMCell``, ``flax-OptimizedLSTMCell``, ``flax-GRUCell``, ``flax-SimpleCell``:
  ``flax.linen.RNN(cell)`` over batch-major inputs from the zero carry, as a flax user
  writes it. Flax keeps one ``Dense`` per gate with kernels ``[in, out]`` (the
  transpose of a PyTorch block) and one bias where the two projections are summed:

  - LSTM cells: ``ii, if, ig, io`` (no bias) and ``hi, hf, hg, ho`` (bias
    ``b_ih + b_hh``). ``OptimizedLSTMCell`` has the same parameters and concatenates
    them into one kernel per projection inside each step.
  - ``GRUCell``: ``ir, iz`` (bias ``b_ih + b_hh``), ``in`` (bias ``b_in``), ``hr, hz``
    (no bias), ``hn`` (bias ``b_hn``). The reset gate multiplies
    ``W_hn h + b_hn`` after the matmul, as in PyTorch and cuDNN: the same function.
  - ``SimpleCell``: ``i`` (bias ``b_ih + b_hh``), ``h`` (no bias), with tanh for
    ``elman_tanh`` and relu for ``elman_relu``.

  A merged bias has the gradient of both of PyTorch's, so the canonical ``b_ih``
  gradient is the merged one; GRU's ``b_hn`` gradient (``hn`` bias) is the only
  native gradient that the canonical dict leaves out.
- ``jax-cudnn``: ``jax.experimental.rnn.lstm``, cuDNN's LSTM (GPU and float32 only),
  on the flat weight vector ``[w_ih, w_hh, b_ih, b_hh]`` (each raveled row-major, gate
  order i, f, g, o: PyTorch's layout, both biases kept). cuDNN may use TF32 unless the
  call is traced under ``jax.default_matmul_precision("highest")`` (or ``"float32"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental import rnn as jax_rnn

from jaxrnn._app.cells import CELLS
from jaxrnn._core.cells import CellParams
from jaxrnn._core.checks import check_positive_int

Array = jax.Array


class Peer(NamedTuple):
    """Another implementation of a cell, set up with jaxrnn's weights.

    ``G`` is the number of gates, ``H`` the hidden size, ``I`` the input size.
    """

    name: str  # e.g. "flax-OptimizedLSTMCell"
    params: Any  # the peer's native parameter pytree, converted from jaxrnn's
    forward: Callable[..., Array]  # jitted (params, xs [B, T, I]) -> ys [B, T, H]
    loss_and_grad: Callable[..., Any]  # jitted (params, xs) -> (sum(ys**2), (native grads, d_xs))
    to_canonical: Callable[[Any], dict]  # native grads -> dict(w_ih [G*H, I], w_hh [G*H, H], b_ih [G*H])


class _FlaxGate(NamedTuple):
    """Where one gate block of :class:`CellParams` lives in a flax cell."""

    input_dense: str  # name of the Dense on x (kernel [I, H])
    hidden_dense: str  # name of the Dense on h (kernel [H, H])
    bias: str  # "input" or "hidden": that Dense has b_ih + b_hh; "both": each its own


_FLAX_GATES = {
    "lstm": tuple(_FlaxGate("i" + g, "h" + g, "hidden") for g in "ifgo"),
    "gru": (_FlaxGate("ir", "hr", "input"), _FlaxGate("iz", "hz", "input"), _FlaxGate("in", "hn", "both")),
    "elman_tanh": (_FlaxGate("i", "h", "input"),),
    "elman_relu": (_FlaxGate("i", "h", "input"),),
}

# peer name -> (the cells it runs, its flax cell class)
_FLAX_CELLS = {
    "flax-LSTMCell": (("lstm",), nn.LSTMCell),
    "flax-OptimizedLSTMCell": (("lstm",), nn.OptimizedLSTMCell),
    "flax-GRUCell": (("gru",), nn.GRUCell),
    "flax-SimpleCell": (("elman_tanh", "elman_relu"), nn.SimpleCell),
}
# The options of a flax cell class that make it compute a jaxrnn cell.
_FLAX_OPTIONS = {"elman_relu": {"activation_fn": nn.relu}}

_CUDNN = "jax-cudnn"


def available_peers(cell: str, backend: str) -> list[str]:
    """The names of the peers of ``cell`` that run on ``backend``.

    Args:
      cell: a name of :data:`jaxrnn._app.cells.CELLS` (``"lstm"``, ``"elman_tanh"``, ...).
      backend: ``jax.default_backend()``: ``"cpu"``, ``"gpu"`` or ``"tpu"``.

    Returns:
      Peer names for :func:`make_peer`; ``"jax-cudnn"`` only for the LSTM on ``"gpu"``;
      none for ``"layer_norm_lstm"``, which no peer implements.

    Raises:
      ValueError: unknown ``cell``.

    Example:
      >>> from jaxrnn._bench.peers import available_peers
      >>> available_peers("lstm", "gpu")
      ['flax-LSTMCell', 'flax-OptimizedLSTMCell', 'jax-cudnn']
    """
    _check_cell(cell)
    names = [name for name, (kinds, _) in _FLAX_CELLS.items() if cell in kinds]
    if cell == "lstm" and backend == "gpu":
        names.append(_CUDNN)
    return names


def make_peer(name: str, cell: str, params: CellParams, *, unroll: int = 1) -> Peer:
    """The peer ``name`` of ``cell``, with ``params`` converted to its layout.

    Args:
      name: one of :func:`available_peers` for ``cell``.
      cell: ``"lstm"``, ``"gru"``, ``"elman_tanh"`` or ``"elman_relu"``.
      params: jaxrnn :class:`~jaxrnn.CellParams` of that cell (PyTorch layout); their
        dtype is the peer's parameter and computation dtype.
      unroll: ``lax.scan`` unroll of the flax peers; cuDNN has no scan and ignores it.

    Returns:
      A :class:`Peer`. ``loss_and_grad`` differentiates ``sum(ys**2)`` over all outputs.

    Raises:
      ValueError: unknown ``name`` or ``cell``, a peer of another cell, ``params`` of
        the wrong shape for ``cell``, a non-positive ``unroll``.
      TypeError: ``jax-cudnn`` with params that are not float32.

    Example:
      >>> import jax, jaxrnn as jr
      >>> from jaxrnn._bench.peers import make_peer
      >>> params = jr.gru(8).init(jax.random.PRNGKey(0), input_size=3)
      >>> peer = make_peer("flax-GRUCell", "gru", params)
      >>> peer.forward(peer.params, jax.numpy.ones((2, 5, 3))).shape
      (2, 5, 8)
    """
    _check_cell(cell)
    unroll = check_positive_int(unroll, "unroll")
    known = {**{n: kinds for n, (kinds, _) in _FLAX_CELLS.items()}, _CUDNN: ("lstm",)}
    if name not in known:
        raise ValueError(f"unknown peer {name!r}; the peers are {sorted(known)}.")
    if cell not in known[name]:
        raise ValueError(
            f"peer {name!r} runs {' or '.join(known[name])} cells, not {cell}; the {cell} peers are "
            f"{available_peers(cell, 'gpu')}."
        )
    num_gates = len(_FLAX_GATES[cell])
    hidden_size = _check_params(params, cell, num_gates)
    if name == _CUDNN:
        return _cudnn_peer(params, hidden_size)
    return _flax_peer(name, cell, params, hidden_size, unroll)


def _check_cell(cell: str) -> None:
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {list(CELLS)}, got {cell!r}.")


def _check_params(params: CellParams, cell: str, num_gates: int) -> int:
    """The hidden size of ``params``, after checking their shapes against ``cell``."""
    gh, hidden_size = params.w_hh.shape
    input_size = params.w_ih.shape[-1]
    expected = ((gh, input_size), (gh, hidden_size), (gh,), (gh,))
    got = tuple(a.shape for a in params)
    if gh != num_gates * hidden_size or got != expected:
        raise ValueError(
            f"params have shapes (w_ih, w_hh, b_ih, b_hh) = {got}, but a {cell} cell "
            f"with {num_gates} gate(s) needs (G*H, I), (G*H, H), (G*H,), (G*H,) with G={num_gates}. "
            f"Were these params made by another cell?"
        )
    return hidden_size


def _sum_of_squares(forward):
    return lambda params, xs: jnp.sum(forward(params, xs) ** 2)


def _peer(name, params, forward, to_canonical) -> Peer:
    loss_and_grad = jax.value_and_grad(_sum_of_squares(forward), argnums=(0, 1))
    return Peer(name, params, jax.jit(forward), jax.jit(loss_and_grad), to_canonical)


def _flax_peer(name: str, cell: str, params: CellParams, hidden_size: int, unroll: int) -> Peer:
    gates = _FLAX_GATES[cell]
    blocks = [jnp.split(a, len(gates)) for a in params]
    native = {}
    for gate, (w_ih, w_hh, b_ih, b_hh) in zip(gates, zip(*blocks)):
        native[gate.input_dense] = {"kernel": w_ih.T}
        native[gate.hidden_dense] = {"kernel": w_hh.T}
        if gate.bias == "both":
            native[gate.input_dense]["bias"] = b_ih
            native[gate.hidden_dense]["bias"] = b_hh
        else:
            merged = gate.input_dense if gate.bias == "input" else gate.hidden_dense
            native[merged]["bias"] = b_ih + b_hh

    flax_cell = _FLAX_CELLS[name][1](features=hidden_size, param_dtype=params.w_ih.dtype, **_FLAX_OPTIONS.get(cell, {}))
    model = nn.RNN(flax_cell, unroll=unroll)

    def forward(native_params, xs):
        return model.apply({"params": native_params}, xs)

    def to_canonical(grads) -> dict:
        grads = grads["cell"]
        b_ih = [grads[g.hidden_dense if g.bias == "hidden" else g.input_dense]["bias"] for g in gates]
        return dict(
            w_ih=jnp.concatenate([grads[g.input_dense]["kernel"].T for g in gates]),
            w_hh=jnp.concatenate([grads[g.hidden_dense]["kernel"].T for g in gates]),
            b_ih=jnp.concatenate(b_ih),
        )

    return _peer(name, {"cell": native}, forward, to_canonical)


def _cudnn_peer(params: CellParams, hidden_size: int) -> Peer:
    if any(a.dtype != jnp.float32 for a in params):
        raise TypeError(
            f"peer {_CUDNN!r} runs cuDNN's float32 LSTM only, got params of dtype "
            f"{params.w_ih.dtype}; cast them with .astype(jnp.float32)."
        )
    input_size = params.w_ih.shape[1]
    sizes: dict[str, Any] = dict(input_size=input_size, hidden_size=hidden_size, num_layers=1, bidirectional=False)
    weights = jnp.concatenate([a.reshape(-1) for a in params])

    def forward(weights, xs):
        batch_size, num_steps = xs.shape[:2]
        zeros = jnp.zeros((1, batch_size, hidden_size), jnp.float32)
        seq_lengths = jnp.full((batch_size,), num_steps, jnp.int32)
        ys, _, _ = jax_rnn.lstm(xs, zeros, zeros, weights, seq_lengths, dropout=0.0, **sizes)
        return ys

    def to_canonical(grads) -> dict:
        # The b_hh slot holds the same gradient as b_ih: the two biases are summed.
        w_ih, w_hh, b_ih, _ = jax_rnn.unpack_lstm_weights(grads, **sizes)
        return dict(w_ih=w_ih[0], w_hh=w_hh[0], b_ih=b_ih[0])

    return _peer(_CUDNN, weights, forward, to_canonical)

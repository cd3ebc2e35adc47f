"""PyTorch interop: :func:`from_torch` and :func:`to_torch`.

:class:`jaxrnn.CellParams` has PyTorch's layout and gate order, so a conversion is
a copy of each weight, in its dtype. Layer ``k`` of a ``torch.nn.LSTM``, ``GRU`` or
``RNN`` with ``D`` directions maps to ``params[k]`` and ``finals[k]`` of
:meth:`jaxrnn.StackedRNN.apply`:

- ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` are
  ``params[k].w_ih``, ``.w_hh``, ``.b_ih``, ``.b_hh`` (``params[k].forward.*`` when
  bidirectional); the ``_reverse`` weights are ``params[k].backward.*``;
- ``h_n[k * D + d]`` is ``finals[k].h`` (``finals[k].forward.h`` for ``d = 0``,
  ``finals[k].backward.h`` for ``d = 1``), and ``c_n`` likewise ``.c``;
- ``batch_first`` is ``not time_major``.

PyTorch is an optional dependency (``pip install 'jaxrnn[torch]'``), imported only
when one of these functions is called.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._core.cells import CellParams
from jaxrnn._core.models import GRU, LSTM, RNN, Bidirectional, StackedRNN

# cell.name -> (torch class name, extra constructor arguments, number of gates)
_TORCH_KINDS = {
    "lstm": ("LSTM", {}, 4),
    "gru": ("GRU", {}, 3),
    "elman_tanh": ("RNN", {"nonlinearity": "tanh"}, 1),
    "elman_relu": ("RNN", {"nonlinearity": "relu"}, 1),
}

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _import_torch(caller: str):
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"jaxrnn.{caller} needs PyTorch: pip install 'jaxrnn[torch]'") from e
    return torch


def _x64_enabled() -> bool:
    return jax.dtypes.canonicalize_dtype(np.float64) == np.float64


def _module_dtype(module) -> str:
    """The one floating dtype of ``module``'s weights, as a name shared by torch and JAX."""
    names = sorted({str(p.dtype).removeprefix("torch.") for p in module.parameters()})
    if len(names) != 1 or names[0] not in _FLOAT_DTYPES:
        raise TypeError(
            f"from_torch needs a module whose weights share one floating dtype ({', '.join(_FLOAT_DTYPES)}), "
            f"got {', '.join(names) or 'no weights'}; cast it first, e.g. module.float()."
        )
    if names[0] == "float64" and not _x64_enabled():
        raise TypeError(
            "from_torch got a float64 module, but JAX has 64-bit floats disabled, so its weights would "
            "silently become float32. Enable them first with jax.config.update('jax_enable_x64', True), "
            "or cast the module to float32 (module.float())."
        )
    return names[0]


def from_torch(module):
    """Convert a ``torch.nn.RNN``, ``torch.nn.LSTM`` or ``torch.nn.GRU`` to jaxrnn.

    The model has the module's sizes, ``num_layers``, ``bidirectional``,
    ``dropout`` and layout (``time_major = not batch_first``); ``torch.nn.RNN``'s
    ``nonlinearity`` becomes ``activation``. The weights are copied in their
    dtype; a module with ``bias=False`` gets zero biases. With the same inputs,
    ``model.apply(params, xs)`` gives torch's outputs, and its ``finals`` hold
    torch's ``h_n`` (and ``c_n``) split by layer and direction (see the module
    docstring). Padded batches given as ``lengths`` match torch's packed sequences
    (``torch.nn.utils.rnn.pack_padded_sequence``).

    Args:
      module: a ``torch.nn.RNN`` (tanh or relu), ``torch.nn.LSTM`` (without
        ``proj_size``) or ``torch.nn.GRU``, on any device.

    Returns:
      ``(model, params)``: a :class:`jaxrnn.StackedRNN` made by :func:`jaxrnn.LSTM`,
      :func:`jaxrnn.GRU` or :func:`jaxrnn.RNN`, and a tuple over layers of
      :class:`jaxrnn.CellParams` (``w_ih [G*H, I_k]``, ``w_hh [G*H, H]``,
      ``b_ih [G*H]``, ``b_hh [G*H]``), or :class:`jaxrnn.Bidirectional` pairs of
      them for bidirectional modules.

    Raises:
      ImportError: PyTorch is not installed.
      TypeError: ``module`` is not one of the three classes; its weights are not
        of one floating dtype; they are float64 while ``jax_enable_x64`` is off.
      ValueError: an LSTM with ``proj_size > 0``.

    Example:
      Convert a module and run it on a padded batch:

      .. code-block:: python

        import jax.numpy as jnp
        import torch
        import jaxrnn as jr

        module = torch.nn.GRU(4, 8, num_layers=2, batch_first=True, bidirectional=True)
        model, params = jr.from_torch(module)
        ys, finals = model.apply(params, jnp.ones((3, 5, 4)), lengths=jnp.array([5, 2, 4]))
        ys.shape          # (3, 5, 16), as torch's padded output
        finals[1].backward.h  # torch's h_n[3]
    """
    torch = _import_torch("from_torch")
    classes = (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)
    if not isinstance(module, classes):
        got = type(module)
        raise TypeError(
            f"from_torch expects a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got "
            f"{got.__module__}.{got.__qualname__}."
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"from_torch does not support LSTMs with proj_size={module.proj_size}: jaxrnn's LSTM outputs "
            f"its hidden state (size hidden_size) unprojected. Use proj_size=0."
        )
    dtype = _module_dtype(module)
    options = dict(
        bidirectional=bool(module.bidirectional),
        dropout=float(module.dropout),
        time_major=not module.batch_first,
    )
    sizes = (module.input_size, module.hidden_size, module.num_layers)
    if isinstance(module, torch.nn.LSTM):
        model = LSTM(*sizes, **options)
    elif isinstance(module, torch.nn.GRU):
        model = GRU(*sizes, **options)
    else:
        model = RNN(*sizes, activation=module.nonlinearity, **options)

    def copy(tensor):
        # float32 on the host holds float16 and bfloat16 exactly; numpy has no bfloat16.
        host = tensor.detach().to("cpu", torch.float64 if dtype == "float64" else torch.float32)
        return jnp.asarray(host.numpy(), dtype)

    def direction(layer: int, suffix: str) -> CellParams:
        name = f"l{layer}{suffix}"
        w_ih = copy(getattr(module, f"weight_ih_{name}"))
        w_hh = copy(getattr(module, f"weight_hh_{name}"))
        if module.bias:
            b_ih = copy(getattr(module, f"bias_ih_{name}"))
            b_hh = copy(getattr(module, f"bias_hh_{name}"))
        else:
            b_ih = b_hh = jnp.zeros(w_ih.shape[:1], dtype)
        return CellParams(w_ih, w_hh, b_ih, b_hh)

    params = tuple(
        Bidirectional(direction(k, ""), direction(k, "_reverse")) if module.bidirectional else direction(k, "")
        for k in range(module.num_layers)
    )
    return model, params


def _check_convertible(model) -> tuple:
    """The torch class name, constructor extras, gate count and hidden size of ``model``."""
    if not isinstance(model, StackedRNN):
        raise TypeError(
            f"to_torch expects a jaxrnn.StackedRNN (made by jr.LSTM, jr.GRU or jr.RNN), got {type(model).__name__}."
        )
    names = tuple(getattr(cell, "name", type(cell).__name__) for cell in model.cells)
    if "layer_norm_lstm" in names:
        raise ValueError(
            "to_torch cannot convert layer-normalised LSTM cells (jr.LSTM(..., layer_norm=True)): "
            "torch.nn.LSTM has no layer normalisation."
        )
    for name in names:
        dense = name.removesuffix("_diagonal")
        if name != dense and dense in _TORCH_KINDS:
            raise ValueError(
                f"to_torch cannot convert {name!r} cells (recurrent='diagonal'): their w_hh holds one weight "
                f"per gate and unit, but torch.nn.{_TORCH_KINDS[dense][0]}'s weight_hh is a dense matrix."
            )
    unknown = sorted(set(names) - set(_TORCH_KINDS))
    if unknown:
        raise ValueError(f"to_torch converts cells {sorted(_TORCH_KINDS)}, got {unknown[0]!r}.")
    if len(set(names)) > 1:
        raise ValueError(f"to_torch needs the same cell in every layer, got {names}.")
    hidden_sizes = tuple(cell.hidden_size for cell in model.cells)
    if len(set(hidden_sizes)) > 1:
        raise ValueError(
            f"to_torch needs one hidden size for all layers (torch modules have a single hidden_size), "
            f"got per-layer sizes {hidden_sizes}."
        )
    if model.bidirectional and model.merge != "concat":
        raise ValueError(
            f"to_torch cannot convert merge={model.merge!r}: torch's bidirectional layers concatenate "
            f"the two directions (merge='concat')."
        )
    if model.residual and model.num_layers > 1:
        raise ValueError(
            "to_torch cannot convert residual=True: torch modules have no residual connections between layers."
        )
    cls, extra, gates = _TORCH_KINDS[names[0]]
    return cls, extra, gates, hidden_sizes[0]


def to_torch(model, params):
    """Convert a jaxrnn model and its params to a ``torch.nn.RNN``, ``LSTM`` or ``GRU``.

    The inverse of :func:`from_torch`: the module has ``bias=True``,
    ``batch_first = not model.time_major``, ``dropout = model.dropout``, the
    model's sizes and directions, and the params copied in their dtype, on the
    CPU. ``forget_bias`` needs no counterpart: it only sets the initial params.

    Args:
      model: a :class:`jaxrnn.StackedRNN` from :func:`jaxrnn.LSTM`,
        :func:`jaxrnn.GRU` or :func:`jaxrnn.RNN`.
      params: its params, as from ``model.init`` or :func:`from_torch`.

    Returns:
      A ``torch.nn.LSTM``, ``torch.nn.GRU`` or ``torch.nn.RNN`` (``nonlinearity``
      from the Elman cells' activation) that computes what ``model.apply`` does.

    Raises:
      ImportError: PyTorch is not installed.
      TypeError: ``model`` is not a :class:`jaxrnn.StackedRNN`; params that are
        not floating arrays of one dtype.
      ValueError: a model torch cannot represent: layer-normalised LSTM cells,
        diagonal-recurrent cells (``recurrent="diagonal"``), other cells than
        LSTM, GRU and Elman, different hidden sizes per layer,
        bidirectional layers with ``merge="sum"``, or ``residual=True`` with more
        than one layer; params whose structure or shapes do not match the model.

    Example:
      Train in JAX, then hand the weights to PyTorch code:

      .. code-block:: python

        import jax
        import torch
        import jaxrnn as jr

        model = jr.LSTM(input_size=4, hidden_size=8, num_layers=2)
        params = model.init(jax.random.PRNGKey(0))
        module = jr.to_torch(model, params)  # torch.nn.LSTM(4, 8, 2, batch_first=True)
        out, (h_n, c_n) = module(torch.ones(3, 5, 4))
    """
    torch = _import_torch("to_torch")
    cls, extra, gates, hidden_size = _check_convertible(model)
    if not isinstance(params, (tuple, list)) or len(params) != model.num_layers:
        got = type(params).__name__
        if isinstance(params, (tuple, list)):
            got += f" of length {len(params)}"
        raise ValueError(f"params must be a tuple with one entry per layer ({model.num_layers}), got a {got}.")

    tensors = {}
    for layer, (layer_params, input_size) in enumerate(zip(params, model.layer_input_sizes)):
        if model.bidirectional:
            if not isinstance(layer_params, Bidirectional):
                raise ValueError(
                    f"params[{layer}] must be a jaxrnn.Bidirectional pair for a bidirectional model, got "
                    f"{type(layer_params).__name__}."
                )
            directions = (("", layer_params.forward), ("_reverse", layer_params.backward))
        else:
            directions = (("", layer_params),)
        expected = dict(
            w_ih=(gates * hidden_size, input_size),
            w_hh=(gates * hidden_size, hidden_size),
            b_ih=(gates * hidden_size,),
            b_hh=(gates * hidden_size,),
        )
        for suffix, p in directions:
            if not isinstance(p, CellParams):
                raise ValueError(f"params[{layer}] must hold jaxrnn.CellParams, got {type(p).__name__}.")
            for field, shape in expected.items():
                value = getattr(p, field)
                if tuple(np.shape(value)) != shape:
                    raise ValueError(
                        f"params[{layer}]{'.backward' if suffix else ''}.{field} has shape "
                        f"{tuple(np.shape(value))}, but layer {layer} of this model expects {shape}."
                    )
            torch_name = f"l{layer}{suffix}"
            tensors[f"weight_ih_{torch_name}"] = p.w_ih
            tensors[f"weight_hh_{torch_name}"] = p.w_hh
            tensors[f"bias_ih_{torch_name}"] = p.b_ih
            tensors[f"bias_hh_{torch_name}"] = p.b_hh

    dtypes = sorted({str(jnp.asarray(v).dtype) for v in tensors.values()})
    if len(dtypes) != 1 or dtypes[0] not in _FLOAT_DTYPES:
        raise TypeError(
            f"to_torch needs params of one floating dtype ({', '.join(_FLOAT_DTYPES)}), got {', '.join(dtypes)}; "
            f"cast them first, e.g. jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)."
        )
    dtype = dtypes[0]
    module = getattr(torch.nn, cls)(
        model.input_size,
        hidden_size,
        model.num_layers,
        bias=True,
        batch_first=not model.time_major,
        dropout=float(model.dropout),
        bidirectional=model.bidirectional,
        dtype=getattr(torch, dtype),
        **extra,
    )
    # numpy has no bfloat16; float32 holds bfloat16 and float16 exactly.
    host_dtype = np.float64 if dtype == "float64" else np.float32
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(module, name).copy_(torch.from_numpy(np.array(value, host_dtype)))
    return module

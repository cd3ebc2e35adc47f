"""The linear-recurrence cells (mingru, minlstm, lru) outside the core: in stacks with
every layer option, in both flax layers, in the tasks and through ``jaxrnn train``;
and the places that cannot take them say so by name."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import TINY_TRAIN, assert_trees_close, loop_rnn, loop_rnn_padded
from test_csv_tasks import text_config, texts_csv

import jaxrnn as jr
import jaxrnn.flax as jrf
from jaxrnn import train
from jaxrnn._app import cells, cli, trainer
from jaxrnn._app.tasks import TASKS

B, T, I, H = 3, 5, 3, 4
LENGTHS = np.array([5, 2, 4], np.int32)
# Each cell once, with a non-default option where it has one: the log-space form, a state
# larger than the output.
VARIANTS = {
    "mingru": lambda h: jr.mingru(h),
    "minlstm_log": lambda h: jr.minlstm(h, log_space=True),
    "lru": lambda h: jr.lru(h, state_size=6, r_min=0.5),
}


def _stack(make, **options):
    """Two layers whose second takes the first's output, so ``residual`` applies to it."""
    return jr.StackedRNN(cells=(make(H), make(H)), input_size=I, **options)


def _normal_like(tree, seed):
    """Normal draws (standard deviation 0.7, float64) in the shapes of ``tree`` (arrays or shape
    structs), made in NumPy: params and states of any value, without compiling an initialiser."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: 0.7 * rng.standard_normal(a.shape), tree)


def _problem(model):
    """Params, inputs ``[B, T, I]`` and initial states of ``model``, all float64 NumPy."""
    params = _normal_like(jax.eval_shape(model.init, jax.random.key(0)), 0)
    state = _normal_like(jax.eval_shape(lambda: model.initial_state((B,))), 1)
    return params, np.random.default_rng(2).standard_normal((B, T, I)), state


def _jitted(cell):
    """``cell`` with its step jitted: one compile instead of one per eager op and step."""
    return cell._replace(step=jax.jit(cell.step))


def _loop_direction(cell, params, xs, state, *, reverse):
    """Each sequence alone through ``cell.step`` (reversed within its length if ``reverse``), re-padded."""
    ys, finals = loop_rnn_padded(_jitted(cell), params, xs, LENGTHS, reverse=reverse, state=state)
    return np.asarray(ys), finals


def _loop_stack(model, params, xs, state, key=None):
    """The bidirectional stack written out as step loops, with the documented dropout
    (one key per layer, a Bernoulli keep mask, inverted scaling) and residual sum."""
    keys = None if key is None else jax.random.split(key, model.num_layers)
    inputs, finals = xs, []
    for layer, (cell, p, s) in enumerate(zip(model.cells, params, state)):
        if layer > 0 and keys is not None:
            keep = np.asarray(jax.random.bernoulli(keys[layer], 1.0 - model.dropout, inputs.shape))
            inputs = np.where(keep, inputs / (1.0 - model.dropout), 0.0)
        y_f, s_f = _loop_direction(cell, p.forward, inputs, s.forward, reverse=False)
        y_b, s_b = _loop_direction(cell, p.backward, inputs, s.backward, reverse=True)
        ys = np.concatenate([y_f, y_b], -1) if model.merge == "concat" else y_f + y_b
        inputs = ys + inputs if model.residual and layer > 0 else ys
        finals.append(jr.Bidirectional(s_f, s_b))
    return inputs, tuple(finals)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bidirectional_residual_dropout_stack_equals_step_loops(variant):
    model = _stack(VARIANTS[variant], bidirectional=True, merge="sum", residual=True, dropout=0.4)
    params, xs, state = _problem(model)
    key = jax.random.key(3)
    got = jax.jit(model.apply)(params, xs, LENGTHS, key, state=state)  # the parallel solver, by default
    assert_trees_close(got, _loop_stack(model, params, xs, state, key), rtol=1e-9, atol=1e-12)


class _NNX:
    """The nnx layer as a pure ``run(variables, xs, state, solver)``; its parameters drawn by :func:`_normal_like`."""

    def __init__(self, model):
        self.model = model
        abstract = nnx.eval_shape(lambda: jrf.Recurrent(model, rngs=nnx.Rngs(0), param_dtype=jnp.float64))
        self.graphdef, variables = nnx.split(abstract)
        self.variables = _normal_like(variables, 0)

    def params(self, variables):
        layer = nnx.merge(self.graphdef, variables)
        return jax.tree.map(lambda v: v[...], layer.params, is_leaf=lambda x: isinstance(x, nnx.Variable))

    def run(self, variables, xs, state, solver=None):
        return nnx.merge(self.graphdef, variables)(xs, LENGTHS, state=state, solver=solver)


class _Linen:
    """The linen module as a pure ``run(variables, xs, state, solver)``; its parameters drawn by :func:`_normal_like`."""

    def __init__(self, model):
        self.model, self.module = model, jrf.LinenRecurrent(model, param_dtype=jnp.float64)
        self.variables = _normal_like(jax.eval_shape(self.module.init, jax.random.key(0), np.zeros((B, T, I))), 0)

    def params(self, variables):
        return variables["params"]["rnn"]

    def run(self, variables, xs, state, solver=None):
        return self.module.clone(solver=solver).apply(variables, xs, LENGTHS, state=state)


@pytest.mark.parametrize("wrapper, variant", [(_NNX, "lru"), (_Linen, "minlstm_log")], ids=["nnx-lru", "linen-minlstm"])
def test_flax_layers_equal_step_loops(wrapper, variant):
    model = _stack(VARIANTS[variant], bidirectional=True, merge="concat")
    w = wrapper(model)
    params = w.params(w.variables)
    assert jax.tree.structure(params) == jax.tree.structure(jax.eval_shape(model.init, jax.random.key(0)))
    _, xs, state = _problem(model)
    got = jax.jit(w.run)(w.variables, xs, state)  # the parallel solver, by default
    assert_trees_close(got, _loop_stack(model, params, xs, state), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("wrapper", [_NNX, _Linen], ids=["nnx", "linen"])
def test_flax_layers_pass_the_solver_on(wrapper):
    # The core refuses solver="parallel" for a cell without a linear recurrence, while tracing:
    # the layer passes it on if that refusal reaches here.
    w = wrapper(jr.LSTM(I, H))
    _, xs, _ = _problem(w.model)
    with pytest.raises(ValueError, match=r"^solver='parallel' needs a cell that declares a linear recurrence"):
        jax.eval_shape(lambda variables: w.run(variables, xs, None, "parallel"), w.variables)


# ------------------------------------------------------------------------ tasks and commands

LINEAR = ["mingru", "minlstm", "lru"]


@pytest.mark.parametrize("name", ["lru"])  # the cell with its own state type and output map; the suite's budget
def test_train_command_runs_the_cell_end_to_end(name, tmp_path, capsys):
    argv = [name if arg == "elman_tanh" else arg for arg in TINY_TRAIN]  # 6 steps of the adding problem
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes a Python float and an int32 count
        assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "summary.json").read_text())
    config = json.loads((tmp_path / "config.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 6 and config["cell"] == name

    # The checkpoint holds this cell's params; the plain scan (grad="autodiff" runs the cell
    # step by step) scores them as the run's validation did with the parallel solver.
    setup = TASKS["adding"].build(config)
    params = trainer.latest_params(tmp_path, setup.init_params, None, config)
    model, head = cells.stack(name, 2, config["hidden"]), jr.readout(1)

    @jax.jit
    def val_mse(batch):
        ys, _ = model.apply(params.rnn, batch["xs"], grad="autodiff")
        return train.mse(head.apply(params.head, ys[:, -1])[:, 0], batch["targets"])

    scored = np.mean([float(val_mse(batch)) for batch in setup.eval_batches])
    assert summary["best"]["metric"] == "mse"
    np.testing.assert_allclose(scored, summary["best"]["value"], rtol=1e-5)
    assert np.isfinite(summary["report"]["test_mse"])


def test_text_task_reads_the_output_at_each_texts_last_character(tmp_path):
    # lru's output is a readout of its state, so the class must come from the outputs, not the final state.
    config = text_config(texts_csv(tmp_path / "texts.csv"), cell="lru", length=6)
    setup = TASKS["text"].build(config)
    params = setup.init_params(jax.random.key(0))
    batch = setup.train_batch(0)
    assert len(set(batch["lengths"].tolist())) > 1  # padded
    loss, _ = jax.jit(setup.loss_fn)(params, batch, None)

    cell, head = _jitted(cells.CELLS["lru"](config["hidden"])), jr.readout(params.head.weight.shape[0])
    vocab = params.rnn[0].b_re.shape[1]
    logits = []
    for ids, n in zip(batch["ids"], batch["lengths"]):
        ys, _ = loop_rnn(cell, params.rnn[0], np.eye(vocab, dtype=np.float32)[ids[:n]])
        logits.append(np.asarray(head.apply(params.head, ys[-1]), np.float64))
    logits = np.stack(logits)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.mean(log_p[np.arange(len(logits)), batch["labels"]])
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


CHOICES = "lstm, gru, elman_tanh, elman_relu, layer_norm_lstm, lstm_diagonal, gru_diagonal, mingru, minlstm, lru"


def test_cell_options_list_the_linear_cells(tmp_path, capsys):
    assert cli.main(["train", "--cell", "min_gru", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"jaxrnn train: error: --cell must be one of {CHOICES}, got 'min_gru'\n"
    with pytest.raises(SystemExit):
        cli.main(["demo", "--cell", "minGRU"])
    assert f"argument --cell: --cell must be one of {CHOICES}, got 'minGRU'" in capsys.readouterr().err


def test_to_torch_refuses_the_linear_cells_by_name():
    pytest.importorskip("torch")
    for name in LINEAR:
        model = jr.StackedRNN(cells=(cells.CELLS[name](H),), input_size=I)
        message = rf"^to_torch converts cells \['elman_relu', 'elman_tanh', 'gru', 'lstm'\], got '{name}'\.$"
        with pytest.raises(ValueError, match=message):
            jr.to_torch(model, jax.eval_shape(model.init, jax.random.key(0)))

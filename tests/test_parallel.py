"""Data parallelism (jaxrnn.train._parallel): the mesh, the placement of batches and
state, the train / eval / stream steps with ``mesh=``, ``jaxrnn train --devices``
and ``jaxrnn bench --devices``.

This process has one CPU device, so the 8-device checks run this file as a
script in one subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
set before JAX starts (one interpreter for all of them, so JAX starts once); each
``_case_*`` there returns its measurements, printed together as JSON, and the
``_check_*`` functions compare them with the one-device run, the independent reference.
Their inputs are drawn with NumPy: there each ``jax.random`` draw of a new shape
compiles a program of its own (about 0.2 s).
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import TINY_TRAIN

from jaxrnn import train
from jaxrnn.train import _parallel

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEVICES = 8


# ------------------------------------------------------------------ the 8-device cases


def _case_steps(out_dir):
    """make_train_step / make_stream_train_step / make_eval_step on 8 devices against 1."""
    import jax.numpy as jnp

    import jaxrnn as jr
    from jaxrnn import data
    from jaxrnn._app import trainer
    from jaxrnn._app.tasks import TASKS

    mesh = train.make_mesh(DEVICES)
    model, head = jr.RNN(input_size=2, hidden_size=8), jr.readout(1)
    seen = {"traces": 0}

    def loss_fn(params, batch, rng):
        seen["traces"] += 1
        seen["axes"] = list(jax.sharding.get_abstract_mesh().axis_names)
        jax.debug.inspect_array_sharding(
            batch["xs"], callback=lambda s: seen.__setitem__("xs_shard", list(s.shard_shape(batch["xs"].shape)))
        )
        ys, _ = model.apply(params[0], batch["xs"])
        return train.mse(head.apply(params[1], ys[:, -1])[:, 0], batch["targets"]), {}

    params = (model.init(jax.random.PRNGKey(0), jnp.float32), head.init(jax.random.PRNGKey(1), 8, jnp.float32))
    optimizer = train.default_optimizer(1e-2)
    batches = [dict(zip(("xs", "targets"), data.adding(i, batch=16, length=6))) for i in range(5)]
    result = {}
    for name, step_mesh in (("one", None), ("mesh", mesh)):
        seen.update(traces=0, axes=None, xs_shard=None)
        state = train.init_state(params, optimizer, jax.random.key(2))
        step = train.make_train_step(loss_fn, optimizer, mesh=step_mesh)
        losses = []
        for i, batch in enumerate(batches):
            state, metrics = step(state, batch)
            losses.append(float(metrics["loss"]))
            if i == 0:
                traced_once = seen["traces"]
        leaves = jax.tree_util.tree_leaves(state)
        result[name] = {
            "losses": losses,
            "retraces": seen["traces"] - traced_once,
            "axes": seen["axes"],
            "xs_shard": seen["xs_shard"],
            "params": [np.asarray(p).tolist() for p in jax.tree_util.tree_leaves(state.params)],
            "state_devices": sorted({len(leaf.sharding.device_set) for leaf in leaves}),
            "state_replicated": all(leaf.sharding.is_fully_replicated for leaf in leaves),
        }

    placed = train.shard_batch(batches[0], mesh)
    result["placed"] = {
        "spec": list(placed["xs"].sharding.spec),
        "shards": sorted({tuple(s.data.shape) for s in placed["xs"].addressable_shards}),
        "devices": len(placed["xs"].sharding.device_set),
        "equal": bool(np.array_equal(np.asarray(placed["xs"]), np.asarray(batches[0]["xs"]))),
    }
    try:
        train.make_train_step(loss_fn, optimizer, mesh=mesh)(
            train.init_state(params, optimizer, jax.random.key(2)), {k: v[:12] for k, v in batches[0].items()}
        )
    except ValueError as error:
        result["uneven_error"] = str(error)
    try:
        train.shard_batch({"xs": batches[0]["xs"], "table": jnp.zeros(3)}, mesh)
    except ValueError as error:
        result["ragged_error"] = str(error)

    # Truncated BPTT over a stream: the carried state is split over the devices with the rows.
    text = jnp.asarray(np.random.default_rng(8).integers(0, 4, 400), jnp.int32)
    chunks = train.stream_chunks(text, batch_size=8, chunk_length=10)[:3]
    lm, lm_head = jr.GRU(4, 8), jr.readout(4)
    lm_params = train.StreamParams(
        lm.init(jax.random.key(3), jnp.float32), lm_head.init(jax.random.key(4), 8, jnp.float32)
    )
    for name, step_mesh in (("one", None), ("mesh", mesh)):
        state = train.init_state(lm_params, optimizer, jax.random.key(5))
        step = train.make_stream_train_step(lm, lm_head, optimizer, mesh=step_mesh)
        carry, losses = None, []
        for chunk in chunks:
            state, carry, metrics = step(state, chunk, carry)
            losses.append(float(metrics["loss"]))
        result[f"stream_{name}"] = {
            "losses": losses,
            "carry": np.asarray(carry[0].h).tolist(),
            "carry_shard": list(carry[0].h.addressable_shards[0].data.shape),
        }

    # Evaluation: a batch of 12 rows cannot be split over 8 devices, so it runs replicated.
    def metric_fn(p, batch):
        seen["eval_axes"] = list(jax.sharding.get_abstract_mesh().axis_names)
        ys, _ = model.apply(p[0], batch["xs"])
        return {"mse": train.mse(head.apply(p[1], ys[:, -1])[:, 0], batch["targets"])}

    batch = {k: v[:12] for k, v in batches[1].items()}
    result["eval_12"] = [float(train.make_eval_step(metric_fn, mesh=m)(params, batch)["mse"]) for m in (None, mesh)]
    result["eval_12_axes"] = seen["eval_axes"]

    # The training loop's step for a task that carries state between batches (charlm):
    # the carry rides with the batch, so it is split over the devices row by row.
    task = TASKS["charlm"]
    setup = task.build({**task.defaults, "cell": "elman_tanh", "hidden": 8, "length": 8, "batch_size": 8})
    for name, step_mesh in (("one", None), ("mesh", mesh)):
        state = train.init_state(setup.init_params(jax.random.key(6)), optimizer, jax.random.key(7))
        step, carry, losses = trainer.make_step(setup, optimizer, mesh=step_mesh), setup.initial_carry, []
        for i in range(3):
            state, carry, metrics = step(state, carry, setup.train_batch(i))
            losses.append(float(metrics["loss"]))
        result[f"charlm_{name}"] = {"losses": losses, "carry_shard": list(carry[0].h.addressable_shards[0].data.shape)}
    return result


def _train(argv):
    """``jaxrnn ARGV`` in this process: (exit code, stdout and stderr)."""
    import contextlib
    import io

    from jaxrnn._app.cli import main

    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
        code = main(argv)
    return code, text.getvalue()


def _losses(run_dir):
    lines = (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r.get("loss", r.get("mse"))) for r in map(json.loads, lines)]


TRAIN = TINY_TRAIN


def _case_cli(out_dir):
    """jaxrnn train --devices 8 against one device; resuming on 8 and on 2 devices; bad device counts."""
    import shutil

    out_dir = pathlib.Path(out_dir)
    result = {}
    for name, extra in (("one", []), ("eight", ["--devices", "8"])):
        code, text = _train(TRAIN + ["--out", str(out_dir / name)] + extra)
        result[name] = {
            "code": code,
            "text": text,
            "losses": _losses(out_dir / name),
            "summary": json.loads((out_dir / name / "summary.json").read_text()),
        }
    for name, devices in (("resumed_8", "8"), ("resumed_2", "2")):
        shutil.copytree(out_dir / "eight", out_dir / name)
        (out_dir / name / "checkpoints" / "ckpt-00000006.ckpt").unlink()
        code, text = _train(TRAIN + ["--out", str(out_dir / name), "--devices", devices])
        result[name] = {"code": code, "text": text, "losses": _losses(out_dir / name)}
    result["uneven"] = _train(TRAIN + ["--out", str(out_dir / "uneven"), "--devices", "8", "--batch-size", "12"])
    result["too_many"] = _train(TRAIN + ["--out", str(out_dir / "too_many"), "--devices", "9"])
    return result


def _case_bench(out_dir):
    """jaxrnn bench --devices 4 on a tiny shape."""
    out = pathlib.Path(out_dir) / "scaling"
    code, text = _train(
        ["bench", "--devices", "4", "--cells", "elman_tanh", "--shapes", "2x8x8", "--repeats", "1", "--out", str(out)]
    )
    return {
        "code": code,
        "text": text,
        "files": sorted(p.name for p in out.iterdir()),
        "result": json.loads((out / "scaling.json").read_text()),
    }


def _case_pallas(out_dir):
    """The Pallas backend and the C++ CPU kernel under an 8-device mesh: per shard, not replicated."""
    import jax.numpy as jnp

    import jaxrnn as jr
    from jaxrnn._kernels import cpu_build

    cell = jr.lstm(20)
    params = cell.init(jax.random.PRNGKey(0), 6, jnp.float32)
    xs = jnp.asarray(np.random.default_rng(1).normal(size=(16, 7, 6)), jnp.float32)
    lengths = jnp.arange(16, dtype=jnp.int32) % 8

    def loss(p, x, backend):
        ys, final = jr.rnn(cell, p, x, lengths=lengths, backend=backend)
        return jnp.sum(ys * ys) + jnp.sum(final.c)

    grad = jax.value_and_grad(loss, argnums=(0, 1))
    want = jax.jit(grad, static_argnums=2)(params, xs, "xla")
    mesh = _parallel.make_mesh(DEVICES)
    placed = _parallel.shard_batch(xs, mesh)
    flat = lambda tree: [np.asarray(a, np.float64).ravel().tolist() for a in jax.tree_util.tree_leaves(tree)]
    kernels = {"pallas": (jr.Pallas(target="gpu", interpret=True), "pallas_call")}
    if cpu_build.problem() is None:
        kernels["cpu"] = (jr.CPUKernel(), "jaxrnn_cpu_")
    result = {"cpu_kernel_problem": cpu_build.problem()}
    for name, (kernel, call) in kernels.items():
        with _parallel.mesh_context(mesh):
            got = jax.jit(grad, static_argnums=2)(params, placed, kernel)
            jaxpr = str(jax.make_jaxpr(grad, static_argnums=2)(params, placed, kernel))
        result[name] = {
            "got": flat(got),
            "want": flat(want),
            "shard_maps": jaxpr.count("shard_map"),
            "per_shard_px": "f32[7,2,80]" in jaxpr,
            "whole_px_in_kernel": jaxpr.count(call),
            "outside": str(jax.make_jaxpr(grad, static_argnums=2)(params, xs, kernel)).count("shard_map"),
        }
    return result


def _case_sequence(out_dir):
    """The parallel solver with time split over a 'sequence' mesh axis, alone and with a 'data' axis."""
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import jaxrnn as jr
    from jaxrnn._kernels import associative

    flat = lambda tree: [np.asarray(a, np.float64).ravel().tolist() for a in jax.tree_util.tree_leaves(tree)]

    def mesh_of(shape):
        names = ("sequence",) if len(shape) == 1 else ("data", "sequence")
        return jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * len(shape))

    def measure(fn, args, placed, shape, chunk, reference=None):
        """``fn`` under the mesh ``shape`` (``placed``), its split program, and on one device (``args``).

        On one device ``reference`` runs instead of ``fn`` where given.
        """
        want = jax.jit(reference or fn)(*args)
        with _parallel.mesh_context(mesh_of(shape)):
            compiled = jax.jit(fn).lower(*placed).compile()
            got = compiled(*placed)
            jaxpr = str(jax.make_jaxpr(fn)(*placed))
        return {
            "got": flat(got),
            "want": flat(want),
            "shard_maps": jaxpr.count("shard_map"),
            "local_chunk": chunk in jaxpr,
            "all_gathers": compiled.as_text().count("all-gather"),
            "loops": jaxpr.count(" scan["),
        }

    lengths = jnp.array([16, 9, 0, 13], jnp.int32)
    xs = jnp.asarray(np.random.default_rng(1).normal(size=(4, 16, 3)), jnp.float32)
    cells = {"mingru": jr.mingru(8), "lru": jr.lru(8, state_size=6)}
    result = {}
    # Forward and reverse scans, each mesh shape, each evaluation order inside a chunk (the CPU's
    # in-order scan and the accelerators' associative scan), the real and the complex cell.
    cases = (("mingru", True, (2, 4), "associative"), ("lru", False, (8,), "sequential"))
    for name, reverse, shape, method in cases:
        associative._DEFAULT_METHOD["cpu"] = method
        cell = cells[name]
        params = cell.init(jax.random.PRNGKey(0), 3, jnp.float32)

        def loss(p, x, cell=cell, reverse=reverse):
            ys, final = jr.rnn(cell, p, x, lengths=lengths, reverse=reverse)
            return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(final))

        batch_axis = "data" if len(shape) == 2 else None
        placed = jax.device_put(xs, NamedSharding(mesh_of(shape), P(batch_axis, "sequence")))
        chunk = f"[{16 // shape[-1]},{4 // (shape[0] if len(shape) == 2 else 1)},{8 if name == 'mingru' else 6}]"
        grad = jax.value_and_grad(loss, argnums=(0, 1))
        key = f"{name}_{'reverse' if reverse else 'forward'}_{'x'.join(map(str, shape))}"
        result[key] = measure(grad, (params, xs), (params, placed), shape, chunk)

    # Matrix coefficients (DEER's Newton systems, K = 2): both orders, forward and reverse, in one
    # program, one state over 8 devices (the Newton case below has a batch over a data axis too).
    def matrix_scans(a, b, h0):
        return [
            associative.matrix_linear_scan(a, b, h0, reverse=reverse, method=method)
            for method in associative.METHODS
            for reverse in (False, True)
        ]

    rng = np.random.default_rng(2)
    a, b, h0 = 0.6 * rng.normal(size=(16, 2, 2)), rng.normal(size=(16, 2)), rng.normal(size=2)
    args = tuple(jnp.asarray(v, jnp.float32) for v in (a, b, h0))
    result["matrix_8"] = measure(matrix_scans, args, args, (8,), "[2,2,2]")

    # The Newton solvers split their scans, forward and implicit reverse, the same way (the CPU's
    # in-order chunks), on an LSTM's 2 x 2 blocks per unit: quasi-DEER's linear scans and quasi-ELK's
    # Kalman filter, each against the sequential scan on one device.
    associative._DEFAULT_METHOD["cpu"] = "sequential"
    lstm = jr.lstm(4)
    lstm_params = lstm.init(jax.random.PRNGKey(0), 3, jnp.float32)

    solvers = (jr.QuasiDEER(tol=1e-6), jr.QuasiELK(tol=1e-6, damping=0.5))

    def newton_grads(p, x, solvers=solvers):
        def loss(p, x, solver):
            ys, final = jr.rnn(lstm, p, x, lengths=lengths, solver=solver)
            return jnp.sum(ys * jnp.cos(ys)) + jnp.sum(final.c)

        return [jax.value_and_grad(loss, argnums=(0, 1))(p, x, solver) for solver in solvers]

    placed = jax.device_put(xs, NamedSharding(mesh_of((2, 4)), P("data", "sequence")))
    result["newton_2x4"] = measure(
        newton_grads,
        (lstm_params, xs),
        (lstm_params, placed),
        (2, 4),
        "[4,2,4,2,2]",
        reference=lambda p, x: len(solvers) * newton_grads(p, x, ("sequential",)),
    )

    cell = jr.mingru(8)
    params = cell.init(jax.random.PRNGKey(0), 3, jnp.float32)
    with _parallel.mesh_context(mesh_of((8,))):
        try:
            jr.rnn(cell, params, xs[:, :12])
        except ValueError as error:
            result["indivisible"] = str(error)
    return result


CASES = ("steps", "cli", "bench", "pallas", "sequence")


def run_cases(tmp_path):
    """Run every ``_case_NAME`` in one fresh interpreter with 8 CPU devices; returns ``{NAME: its result}``."""
    # The suite's XLA flags (conftest.py) stay; the device count is added to them.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={DEVICES}".strip()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    done = subprocess.run(
        [sys.executable, __file__, str(tmp_path), *CASES],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.splitlines()[-1])


if __name__ == "__main__":
    directory, *cases = sys.argv[1:]
    results = {}
    for case in cases:
        os.makedirs(os.path.join(directory, case))
        results[case] = globals()[f"_case_{case}"](os.path.join(directory, case))
    print(json.dumps(results))
    sys.exit(0)


# ----------------------------------------------------------------------------- tests


def _close(got, want, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol)


def test_eight_devices(tmp_path):
    """All the 8-device cases, run in one subprocess; each ``_check_*`` below states what it checks."""
    results = run_cases(tmp_path)
    _check_steps(results["steps"])
    _check_cli(results["cli"])
    _check_bench(results["bench"])
    _check_pallas(results["pallas"])
    _check_sequence(results["sequence"])


def _check_steps(result):
    """Eight devices train as one, with the batch split and the state replicated."""
    one, mesh = result["one"], result["mesh"]

    _close(mesh["losses"], one["losses"])
    for got, want in zip(mesh["params"], one["params"]):
        _close(got, want, rtol=1e-4)
    assert len(set(one["losses"])) == 5  # the steps really trained
    # Inside the step: each device holds 16 / 8 = 2 rows, and the mesh's data axis is visible while tracing.
    assert mesh["xs_shard"] == [2, 6, 2] and one["xs_shard"] == [16, 6, 2]
    assert mesh["axes"] == [_parallel.DATA_AXIS] and one["axes"] == []
    assert mesh["state_devices"] == [8] and mesh["state_replicated"]
    assert mesh["retraces"] == one["retraces"] == 0  # placing the inputs at each call does not retrace
    assert result["placed"] == {"spec": ["data"], "shards": [[2, 6, 2]], "devices": 8, "equal": True}

    _close(result["stream_mesh"]["losses"], result["stream_one"]["losses"])
    _close(result["stream_mesh"]["carry"], result["stream_one"]["carry"], rtol=1e-4)
    assert result["stream_mesh"]["carry_shard"] == [1, 8]  # 8 rows over 8 devices
    _close(result["eval_12"][1], result["eval_12"][0])  # 12 rows over 8 devices: evaluated replicated,
    assert result["eval_12_axes"] == []  # with no data axis in sight, so nothing tries to split them
    _close(result["charlm_mesh"]["losses"], result["charlm_one"]["losses"])
    assert result["charlm_mesh"]["carry_shard"] == [1, 8] and result["charlm_one"]["carry_shard"] == [8, 8]

    assert result["uneven_error"] == (
        "the batch size (the leading axis of every array of the batch) must be divisible by the number of devices, "
        "8, so that each device gets an equal share of the batch; got 12. Use a multiple of 8 (8 or 16), or 1, 2, "
        "3, 4 or 6 devices."
    )
    assert result["ragged_error"] == (
        "every array of a batch must have the batch size as its leading axis, got leading sizes 3 at ['table'], "
        "16 at ['xs']; keep arrays of other sizes out of the batch (e.g. in the loss function's closure)."
    )


def _check_cli(result):
    """``jaxrnn train`` on eight devices matches one device and resumes on any count."""
    one, eight = result["one"], result["eight"]

    assert one["code"] == eight["code"] == 0, eight["text"][-2000:]
    assert "data parallel over 8 cpu devices: batch 16, 2 per device" in eight["text"]
    assert [s for s, _ in eight["losses"]] == [s for s, _ in one["losses"]] == [1, 2, 3, 3, 4, 5, 6, 6]
    _close([v for _, v in eight["losses"]], [v for _, v in one["losses"]])
    _close(eight["summary"]["report"]["test_mse"], one["summary"]["report"]["test_mse"])

    resumed = result["resumed_8"]
    assert resumed["code"] == 0 and "resumed from step 3" in resumed["text"]
    assert resumed["losses"] == eight["losses"]  # the same device count: bit for bit
    other = result["resumed_2"]
    assert other["code"] == 0 and "resumed from step 3" in other["text"]
    assert "data parallel over 2 cpu devices: batch 16, 8 per device" in other["text"]
    _close([v for _, v in other["losses"]], [v for _, v in eight["losses"]])

    code, text = result["uneven"]
    assert code == 2 and text == (
        "jaxrnn train: error: --batch-size must be divisible by the number of devices, 8, so that each device gets "
        "an equal share of the batch; got 12. Use a multiple of 8 (8 or 16), or 1, 2, 3, 4 or 6 devices.\n"
    )
    code, text = result["too_many"]
    assert code == 2 and text == (
        "jaxrnn train: error: --devices 9 asks for more devices than this process has: "
        "8 (cpu); use --devices 8 or fewer, or 'all'.\n"
    )


def _check_bench(result):
    """``jaxrnn bench --devices`` reports scaling over device counts."""
    assert result["code"] == 0, result["text"][-2000:]
    assert result["files"] == ["scaling.json", "scaling.md", "scaling_elman_tanh.png"]
    scaling = result["result"]
    assert scaling["counts"] == [1, 2, 4]
    rows = {(r["series"], r["devices"]): r for r in scaling["rows"]}
    assert sorted(rows) == sorted((s, n) for s in ("per_device", "global") for n in (1, 2, 4))
    for n in (1, 2, 4):
        weak, strong = rows["per_device", n], rows["global", n]
        assert (weak["batch"], weak["batch_per_device"]) == (2 * n, 2)
        assert (strong["batch"], strong["batch_per_device"]) == (8, 8 // n)
        assert strong["status"] == "ok" and strong["rel_error"] < 1e-5  # against 1 device, the same batch
        for row in (weak, strong):
            expected = row["tokens_per_s"] / rows[row["series"], 1]["tokens_per_s"]
            assert row["speedup"] == pytest.approx(expected) and row["efficiency"] == pytest.approx(expected / n)
    assert "| devices | global batch | fixed batch per device: ms |" in result["text"]


def _check_pallas(result):
    """The Pallas kernels and the C++ CPU kernel run per shard under a data mesh."""
    assert result.pop("cpu_kernel_problem") is None, "the CPU kernel should build where the tests run"
    assert set(result) == {"pallas", "cpu"}
    for case in result.values():
        for got, want in zip(case["got"], case["want"]):
            _close(got, want, rtol=1e-5, atol=1e-5)
        # The forward and the backward kernel each run inside a shard_map, on 16 / 8 = 2 rows each
        # (px per shard [T=7, 2, 4H=80]); without a mesh, no shard_map.
        assert case["shard_maps"] >= 2 and case["per_shard_px"] and case["whole_px_in_kernel"] >= 2
        assert case["outside"] == 0


# -------------------------------------------------------- one device: this process


def _check_sequence(result):
    """Time split over 8 devices (and over 4 with the batch over 2) gives the one-device values and gradients."""
    assert result.pop("indivisible").startswith("xs has 12 time steps, which the mesh axis 'sequence' of 8")
    assert len(result) == 4
    for name, case in result.items():
        for got, want in zip(case["got"], case["want"], strict=True):
            _close(got, want, rtol=1e-4, atol=1e-5)
        # Forward and reverse scans split along time (4 in the matrix case; each Newton solver's forward,
        # quasi-ELK's a Kalman filter, and its implicit reverse): a chunk of T / devices steps on each
        # device, and only the chunk summaries gathered across devices.
        assert case["shard_maps"] >= {"matrix_8": 4, "newton_2x4": 4}.get(name, 2), name
        assert case["local_chunk"] and case["all_gathers"] >= 2, name
    # The only loops of the associative cases compose the devices' summaries, forward and reverse;
    # the in-order cases scan their chunks too.
    assert result["mingru_reverse_2x4"]["loops"] == 2 and result["lru_forward_8"]["loops"] == 4
    assert result["matrix_8"]["loops"] == 2 + 4


@pytest.fixture(autouse=True)
def _optax_promotion():
    # optax's Adam mixes a Python float with an int32 step count, which the strict
    # promotion of conftest.py rejects; jaxrnn never changes JAX's settings itself.
    with jax.numpy_dtype_promotion("standard"):
        yield


def test_a_one_device_mesh_traces_the_step_inside_the_mesh_context():
    axes = {}

    def loss_fn(params, batch, rng):
        axes.setdefault(batch["name"], set()).add(jax.sharding.get_abstract_mesh().axis_names)
        return train.mse(batch["x"] * params, batch["y"]), {}

    optimizer = train.default_optimizer(0.1)
    state = train.init_state(jax.numpy.ones(()), optimizer, jax.random.key(0))
    batch = {"x": np.arange(4.0), "y": np.zeros(4)}
    step = train.make_train_step(lambda p, b, r: loss_fn(p, {**b, "name": "plain"}, r), optimizer)
    plain, _ = step(state, batch)
    step = train.make_train_step(
        lambda p, b, r: loss_fn(p, {**b, "name": "mesh"}, r), optimizer, mesh=train.make_mesh("all")
    )
    meshed, _ = step(state, batch)
    assert axes == {"plain": {()}, "mesh": {(train.DATA_AXIS,)}}
    assert float(meshed.params) == float(plain.params) != 1.0


@pytest.mark.parametrize(
    "devices, message",
    [
        (2, "devices 2 asks for more devices than this process has: 1 (cpu); use devices 1 or fewer, or 'all'."),
        (0, "devices (or 'all') must be a positive int, got 0."),
        ("some", "devices (or 'all') must be a positive int, got 'some'."),
    ],
)
def test_make_mesh_errors(devices, message):
    with pytest.raises(ValueError) as error:
        _parallel.make_mesh(devices)
    assert str(error.value) == message


@pytest.mark.parametrize("text", ["0", "-2", "many"])
def test_devices_option_refuses_what_is_not_a_count(text, capsys):
    from jaxrnn._app.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--devices", text])
    assert exit_info.value.code == 2
    assert f"--devices must be a positive integer or 'all', got '{text}'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (
            ["--devices", "2"],
            {},
            "--devices 2 asks for more devices than this process has: 1 (cpu); use --devices 1 or fewer, or 'all'.",
        ),
        (
            ["--num-processes", "2", "--process-id", "2"],
            {},
            "--process-id must lie in [0, 2) for --num-processes 2, got 2.",
        ),
        (["--num-processes", "0"], {}, "--num-processes must be a positive int, got 0."),
        (
            ["--num-processes", "2"],
            {"JAX_PROCESS_ID": "first"},
            "--process-id (JAX_PROCESS_ID) must be an integer, got 'first'.",
        ),
    ],
)
def test_train_command_parallel_usage_errors(tmp_path, monkeypatch, capsys, argv, environ, message):
    from jaxrnn._app.cli import main

    for name in _parallel.DISTRIBUTED_ENV.values():
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--task", "adding", *argv]) == 2
    assert capsys.readouterr().err == f"jaxrnn train: error: {message}\n"


def test_a_failed_distributed_start_names_the_options(monkeypatch):
    def refuse(**given):
        assert given == {"coordinator_address": None, "num_processes": None, "process_id": None}
        raise ValueError("coordinator_address should be defined.")

    for name in _parallel.DISTRIBUTED_ENV.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(jax.distributed, "initialize", refuse)
    assert _parallel.initialize_distributed() is False  # nothing given nor required: nothing started
    with pytest.raises(ValueError) as error:
        _parallel.initialize_distributed(required=True)
    assert str(error.value) == (
        "jax.distributed.initialize failed: coordinator_address should be defined. Give --coordinator-address "
        "HOST:PORT (process 0's), --num-processes and --process-id, or set JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES, JAX_PROCESS_ID."
    )

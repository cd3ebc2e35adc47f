"""The ``jaxrnn`` command (also ``python -m jaxrnn``).

- ``jaxrnn`` or ``jaxrnn demo``: a short demo that trains a small model;
- ``jaxrnn train`` / ``tasks`` / ``sweep`` / ``compare`` / ``generate``: training on the
  built-in tasks and users' CSV data (:mod:`jaxrnn._trainer`, :mod:`jaxrnn._tasks`,
  :mod:`jaxrnn._sweep`);
- ``jaxrnn bench``: the benchmark suite (:mod:`jaxrnn._bench`).

The demo trains a recurrent network on the adding problem (two marked values among T
random ones; the target is their sum; :func:`jaxrnn.data.adding`) with the train step
of :mod:`jaxrnn.train` (Optax Adam with gradient clipping) and the hand-written BPTT,
and prints the loss as it falls. The MSE of always predicting the mean is 1/6.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp

import jaxrnn as jr
from jaxrnn import data
from jaxrnn import train as training

CELLS = {"lstm": jr.LSTM, "gru": jr.GRU, "elman": jr.RNN}


def train(cell: str = "lstm", *, steps: int = 400, length: int = 30, hidden: int = 32, batch: int = 64,
          learning_rate: float = 1e-2, seed: int = 0, log_every: int = 50, out=sys.stdout) -> list:
    """Train on the adding problem with :mod:`jaxrnn.train`; returns ``[(step, loss), ...]`` as printed."""
    model = CELLS[cell](input_size=2, hidden_size=hidden)
    head = jr.readout(1)
    k_model, k_head, k_state = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = (model.init(k_model), head.init(k_head, model.output_size))

    def loss_fn(params, batch, rng):
        rnn_params, head_params = params
        ys, _ = model.apply(rnn_params, batch["xs"])
        prediction = head.apply(head_params, ys[:, -1])[:, 0]
        return training.mse(prediction, batch["targets"]), {}

    optimizer = training.default_optimizer(learning_rate)
    state = training.init_state(params, optimizer, k_state)
    train_step = training.make_train_step(loss_fn, optimizer)

    print(f"adding problem, T={length}: {cell} with {hidden} units, batch {batch}, {steps} Adam steps "
          f"(predicting the mean scores {data.ADDING_BASELINE_MSE:.3f})", file=out)
    history, start, running = [], time.perf_counter(), []
    for step in range(1, steps + 1):
        xs, targets = data.adding(seed * 1_000_003 + step, batch, length)
        state, metrics = train_step(state, {"xs": xs, "targets": targets})
        running.append(metrics["loss"])
        if step % log_every == 0 or step == steps:
            mean = float(jnp.mean(jnp.stack(running)))
            running = []
            history.append((step, mean))
            print(f"step {step:5d}  train MSE {mean:.4f}  ({time.perf_counter() - start:.1f} s)", file=out)
    return history


def _comma_list(choices):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}, got {text!r}")
        return items

    return parse


def _add_demo_options(parser):
    parser.add_argument("--cell", choices=sorted(CELLS), default="lstm", help="recurrent cell (default lstm)")
    parser.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    parser.add_argument("--length", type=int, default=50, help="sequence length T (default 50)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _add_bench_options(parser):
    from jaxrnn import _bench  # heavy imports (flax, peers) only for this command
    from jaxrnn._trainer import argument_type

    impls = list(_bench.ALL_IMPLS)
    parser.add_argument("--cells", type=_comma_list(list(_bench.CELLS)), default=list(_bench.CELLS),
                        help="cells to measure (default lstm,gru,elman)")
    parser.add_argument("--shapes", type=argument_type(_bench.parse_shapes), default=None,
                        help="table rows BxTxH, comma-separated (default per backend)")
    parser.add_argument("--sweep", type=argument_type(_bench.parse_sweep), default=None,
                        help="sequence-length sweep BATCHxHIDDEN:T1,T2,... (default per backend)")
    parser.add_argument("--impls", type=_comma_list(impls), default=None,
                        help=f"implementations (default: all available; {', '.join(impls)}); "
                             "jaxrnn-autodiff always runs as the correctness reference")
    parser.add_argument("--backend", choices=["cpu", "gpu", "tpu"], default=None,
                        help="device to run on (default: JAX's default backend)")
    parser.add_argument("--precision", choices=["default", "highest", "bf16"], default="default",
                        help="float32 at the backend default (TF32 on NVIDIA GPUs), float32 at full "
                             "precision, or bfloat16 weights and inputs")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke test in about a minute on 2 CPU cores")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="folder for bench.json, bench.md and plots (default ./bench-BACKEND-DATE)")
    from jaxrnn._trainer import add_parallel_arguments

    add_parallel_arguments(parser, what="instead of the comparison with the peers, how jaxrnn's fwd+bwd scales "
                                        "from 1 to N devices (B of --shapes is then the batch per device)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="jaxrnn",
        description="jaxrnn: recurrent networks in JAX. Without a command, runs the demo.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="train a small network on the adding problem and print its loss (default)",
                               description="Train a small recurrent network on the adding problem and print its loss.")
    _add_demo_options(demo)
    bench = commands.add_parser("bench", help="throughput and memory against flax, cuDNN and PyTorch",
                                description="Time jaxrnn against its peers on the same weights and inputs; "
                                            "writes JSON, a markdown table and plots.")
    train_parser = commands.add_parser(
        "train", help="train a model on a built-in task (default: the adding problem, about a minute)",
        description="Train a recurrent network on a built-in task with progress, metrics, plots and "
                    "checkpoints; running the same command again resumes the run.")
    commands.add_parser("tasks", help="list the built-in tasks and their defaults",
                        description="List the built-in tasks, their defaults and the metric they stop early on.")
    sweep_parser = commands.add_parser(
        "sweep", help="train one task at several hidden sizes: validation metric and time per size",
        description="How to choose the hidden size: train the task at each size; writes a table and a plot.")
    compare_parser = commands.add_parser(
        "compare", help="train several cells on one task and plot their validation curves together",
        description="Train each cell on the same task and config; one figure of their validation curves.")
    generate_parser = commands.add_parser(
        "generate", help="sample text from a trained charlm run",
        description="Sample text from the latest checkpoint of a charlm run, with a temperature.")
    if argv[:1] == ["bench"]:
        _add_bench_options(bench)
    # Each command's options import its module, so `jaxrnn demo` stays light.
    if argv[:1] == ["train"]:
        from jaxrnn import _trainer

        _trainer.add_train_arguments(train_parser)
    elif argv[:1] == ["generate"]:
        from jaxrnn import _trainer

        _trainer.add_generate_arguments(generate_parser)
    elif argv[:1] in (["sweep"], ["compare"]):
        from jaxrnn import _sweep

        _sweep.add_sweep_arguments(sweep_parser)
        _sweep.add_compare_arguments(compare_parser)
    args = parser.parse_args(argv or ["demo"])
    if args.command in ("train", "tasks", "generate"):
        from jaxrnn import _trainer

        run_command = {"train": _trainer.main_train, "generate": _trainer.main_generate}.get(args.command)
        return run_command(args) if run_command else _trainer.main_tasks()
    if args.command in ("sweep", "compare"):
        from jaxrnn import _sweep

        return _sweep.main_sweep(args) if args.command == "sweep" else _sweep.main_compare(args)
    if args.command == "bench":
        from jaxrnn import _bench

        if args.repeats is not None and args.repeats < 1:
            bench.error(f"--repeats must be at least 1, got {args.repeats}")
        return _bench.main(args)
    for name in ("steps", "length", "hidden"):
        if getattr(args, name) < (2 if name == "length" else 1):
            demo.error(f"--{name} must be at least {2 if name == 'length' else 1}, got {getattr(args, name)}")
    train(args.cell, steps=args.steps, length=args.length, hidden=args.hidden, seed=args.seed,
          log_every=max(1, args.steps // 8))
    return 0


if __name__ == "__main__":
    sys.exit(main())

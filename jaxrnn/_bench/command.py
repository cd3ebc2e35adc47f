"""The options of ``jaxrnn bench`` and the study it runs: the peers, the parallel suite or, with ``--devices``, scaling."""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys

import jax

from jaxrnn._app import cells, options
from jaxrnn._bench import parallel, run, scaling

SUITES = ("peers", "parallel")
# The options that only some studies take: the scaling study is --devices.
_STUDY_OPTIONS = {
    "peers": {"--shapes", "--sweep", "--impls"},
    "scaling": {"--shapes"},
    "parallel": {"--lengths", "--batches", "--hidden", "--solvers"},
}


def _comma_list(choices):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}, got {text!r}")
        return items

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``jaxrnn bench`` to ``parser``."""
    impls = list(run.ALL_IMPLS)
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default="peers",
        help="peers: jaxrnn against flax, cuDNN and PyTorch (default); parallel: the linear-recurrence "
        "cells with solver='parallel' against jaxrnn's sequential GRU and LSTM, fwd+bwd against T "
        "(options --lengths, --batches, --hidden, --solvers)",
    )
    parser.add_argument(
        "--cells",
        type=options.argument_type(cells.parse_cells),
        default=None,
        metavar="CELL,...",
        help=f"cells to measure, of {', '.join(cells.CELLS)} (default {','.join(run.DEFAULT_CELLS)}; "
        f"with --suite parallel {','.join(parallel.DEFAULT_CELLS)})",
    )
    parser.add_argument(
        "--shapes",
        type=options.argument_type(run.parse_shapes),
        default=None,
        help="table rows BxTxH, comma-separated (default per backend)",
    )
    parser.add_argument(
        "--sweep",
        type=options.argument_type(run.parse_sweep),
        default=None,
        help="sequence-length sweep BATCHxHIDDEN:T1,T2,... (default per backend)",
    )
    parser.add_argument(
        "--impls",
        type=_comma_list(impls),
        default=None,
        help=f"implementations (default: all available; {', '.join(impls)}); "
        "jaxrnn-autodiff always runs as the correctness reference",
    )
    parser.add_argument(
        "--backend",
        choices=["cpu", "gpu", "tpu"],
        default=None,
        help="device to run on (default: JAX's default backend)",
    )
    parser.add_argument(
        "--precision",
        choices=["default", "highest", "bf16"],
        default="default",
        help="float32 at the backend default (TF32 on NVIDIA GPUs), float32 at full "
        "precision, or bfloat16 weights and inputs",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes: a smoke test in about a minute on 2 CPU cores"
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="folder for bench.json, bench.md and plots (default ./bench-BACKEND-DATE)",
    )
    sizes = "comma-separated, default per backend; --suite parallel only"
    for option, metavar, what in (("--lengths", "T,...", "sequence lengths"), ("--batches", "B,...", "batch sizes")):
        parser.add_argument(
            option,
            type=options.argument_type(functools.partial(parallel.parse_sizes, name=option)),
            default=None,
            metavar=metavar,
            help=f"{what} ({sizes})",
        )
    parser.add_argument(
        "--hidden", type=int, default=None, metavar="H", help="hidden size = input size (--suite parallel only)"
    )
    parser.add_argument(
        "--solvers",
        type=options.argument_type(parallel.parse_solvers),
        default=None,
        metavar="SOLVER,...",
        help=(
            "solvers: parallel (default) and sequential for the linear-recurrence cells; deer, quasi-deer, elk, "
            "quasi-elk for the others, beside their sequential row; SOLVER@BxT+T limits one to some shapes "
            "(--suite parallel only)"
        ),
    )
    options.add_parallel_arguments(
        parser,
        what="instead of the comparison with the peers, how jaxrnn's fwd+bwd "
        "scales from 1 to N devices (B of --shapes is then the batch per device)",
    )


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``jaxrnn bench`` with ``args`` parsed by ``parser`` (which reports a bad option); the exit code."""
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.hidden is not None and args.hidden < 1:
        parser.error(f"--hidden must be at least 1, got {args.hidden}")
    given = {option for option in set().union(*_STUDY_OPTIONS.values()) if getattr(args, option[2:]) is not None}
    if args.devices is not None and args.suite != "peers":
        parser.error(f"--devices measures scaling over devices; it does not combine with --suite {args.suite}")
    mine = _STUDY_OPTIONS["scaling" if args.devices is not None else args.suite]
    if given - mine:
        what = "--devices" if args.devices is not None else f"--suite {args.suite}"
        parser.error(f"{', '.join(sorted(given - mine))} do not apply to {what}; it takes {', '.join(sorted(mine))}")
    if args.cells is None:
        args.cells = list(parallel.DEFAULT_CELLS if args.suite == "parallel" else run.DEFAULT_CELLS)
    if args.devices is not None:
        return scaling.main(args)
    args.backend = args.backend or jax.default_backend()
    try:
        jax.devices(args.backend)
    except RuntimeError as e:
        print(f"jaxrnn bench: error: --backend {args.backend}: no such device here ({e})", file=sys.stderr)
        return 2
    return parallel.main(args) if args.suite == "parallel" else run.main(args)

"""The options of ``jaxrnn bench``, and which study it runs: the peers, or scaling with ``--devices``."""

from __future__ import annotations

import argparse
import pathlib

from jaxrnn._app import cells, options
from jaxrnn._bench import run, scaling


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
        "--cells",
        type=options.argument_type(cells.parse_cells),
        default=list(run.DEFAULT_CELLS),
        metavar="CELL,...",
        help=f"cells to measure, of {', '.join(cells.CELLS)} (default {','.join(run.DEFAULT_CELLS)})",
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
    options.add_parallel_arguments(
        parser,
        what="instead of the comparison with the peers, how jaxrnn's fwd+bwd "
        "scales from 1 to N devices (B of --shapes is then the batch per device)",
    )


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``jaxrnn bench`` with ``args`` parsed by ``parser`` (which reports a bad ``--repeats``); the exit code."""
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return scaling.main(args) if args.devices is not None else run.main(args)

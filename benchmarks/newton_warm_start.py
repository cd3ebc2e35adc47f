"""Newton iterations per training step with and without ``jaxrnn train --warm-start``.

Runs ``jaxrnn train --task adding --solver quasi-deer`` for each cell, cold (each
step's Newton solves start from zeros) and warm (from the previous step's
trajectories), with the same seed and settings, and reads each run's
``metrics.jsonl``: the iterations of every step (``newton_iterations_mean``), their
mean over the first and the last ``--window`` steps, the training step time (median
of consecutive logged steps, compile excluded), the command's wall time, and how far
the warm run's losses drift from the cold run's. Writes one JSON file and prints a
table.

Run: ``python -m benchmarks.newton_warm_start --out FILE [--quick]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax

CELLS = ("gru", "gru_diagonal")


def _run(cell: str, warm: bool, settings: dict, out_dir: pathlib.Path, timeout: float) -> dict:
    argv = [sys.executable, "-m", "jaxrnn", "train", "--task", "adding", "--cell", cell, "--solver", "quasi-deer"]
    for key, value in settings.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    argv += ["--warm-start"] * warm + ["--out", str(out_dir)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    if [r["step"] for r in train] != list(range(1, settings["steps"] + 1)):
        raise RuntimeError(f"{out_dir}: not every step was logged; use --steps <= 50 * log_every")
    summary = json.loads((out_dir / "summary.json").read_text())
    return {
        "cell": cell,
        "warm_start": warm,
        "command": " ".join(["jaxrnn"] + argv[3:-2]),
        "iterations": [r["newton_iterations_mean"] for r in train],
        "loss": [r["loss"] for r in train],
        "step_ms": 1e3 * statistics.median(b["time_s"] - a["time_s"] for a, b in zip(train[1:], train[2:])),
        "run_time_s": summary["time_s"],
        "wall_s": wall,
        "load_start": load,
        "load_end": os.getloadavg()[0],
        "test_mse": summary["report"]["test_mse"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="the JSON file to write")
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=10, help="steps averaged at the start and at the end")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds each run may take")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.length, args.hidden, args.batch_size, args.steps, args.window = 8, 4, 4, 4, 2
    settings = {
        "length": args.length,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "seed": args.seed,
    }
    w = args.window
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for cell in CELLS:
            for warm in (False, True):
                row = _run(cell, warm, settings, pathlib.Path(scratch) / f"{cell}-{warm}", args.timeout)
                row["iterations_first"] = statistics.mean(row["iterations"][:w])
                row["iterations_last"] = statistics.mean(row["iterations"][-w:])
                rows.append(row)
            cold, warm_row = rows[-2], rows[-1]
            warm_row["loss_max_rel_diff_vs_cold"] = max(
                abs(a - b) / abs(b) for a, b in zip(warm_row["loss"], cold["loss"])
            )
    result = {
        "what": "Newton (quasi-DEER) iterations per training step of jaxrnn train --task adding, cold against "
        "--warm-start (each step's solves start from the previous step's trajectories), same seed and settings",
        "date": datetime.date.today().isoformat(),
        "device": f"{jax.devices()[0].device_kind} ({jax.devices()[0].platform}), {os.cpu_count()} cores, shared",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "settings": settings,
        "fields": {
            "iterations": "newton_iterations_mean of every step (one layer: the layer's iterations)",
            "iterations_first, iterations_last": f"their mean over the first and the last {w} steps",
            "step_ms": "median time between consecutive logged steps (compile excluded)",
            "run_time_s": "summary.json's time_s: compile, training and the final evaluation",
            "wall_s": "the command's wall time: start-up, compiles, training, evaluation and the test report",
            "load_start, load_end": "1-minute load average before and after the run",
            "loss_max_rel_diff_vs_cold": "the largest relative difference of a step's loss from the cold run's",
        },
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'cell':14} {'warm':5} {'iters first':>11} {'iters last':>10} {'step ms':>8} {'wall s':>7}")
    for r in rows:
        print(
            f"{r['cell']:14} {str(r['warm_start']):5} {r['iterations_first']:11.1f} {r['iterations_last']:10.1f} "
            f"{r['step_ms']:8.1f} {r['wall_s']:7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

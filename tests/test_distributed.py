"""More than one process: ``jaxrnn train`` with ``jax.distributed`` on this machine.

Two processes, one CPU device each, talk over the loopback interface (JAX's
coordinator and, for the collectives, gloo); together they must train exactly
as one process does on the same global batch, resume in step, and only process
0 may write files.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY_TRAIN

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "jaxrnn", *TINY_TRAIN]
TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(**extra):
    """This environment without JAX's settings and with one CPU device per process (the suite's other
    XLA flags, from conftest.py, stay)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    return {**env, "XLA_FLAGS": " ".join(flags), "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **extra}


def _start(argv, env, cwd):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)


def _finish(processes):
    """Wait for every process; on a timeout stop them all. Returns their (exit code, output)."""
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=TIMEOUT)
            results.append((process.returncode, output))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def _pair(tmp_path, out_0, out_1, *, with_reference=False):
    """Processes 0 and 1 of a 2-process run: one by flags, the other by JAX_* variables."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Bind the coordinator to the loopback address only (JAX's default is every interface).
    first = _start(
        TRAIN + ["--out", str(out_0), "--coordinator-address", address, "--num-processes", "2", "--process-id", "0"],
        _env(JAX_COORDINATOR_BIND_ADDRESS=address),
        tmp_path,
    )
    second = _start(
        TRAIN + ["--out", str(out_1)],
        _env(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1"),
        tmp_path,
    )
    processes = [first, second]
    if with_reference:
        processes.append(_start(TRAIN + ["--out", str(tmp_path / "reference")], _env(), tmp_path))
    return _finish(processes)


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _values(records):
    return [(r["step"], r["split"], r.get("loss", r.get("mse"))) for r in records]


@pytest.fixture(autouse=True)
def _loopback_only():
    # gloo connects the processes through the address this host's name resolves to.
    address = socket.gethostbyname(socket.gethostname())
    if not address.startswith("127."):
        pytest.skip(
            f"this host's name resolves to {address}, not a loopback address; the 2-process test "
            f"talks over loopback only"
        )


def test_two_processes_train_in_step_as_one_and_resume(tmp_path):
    out_0, out_1 = tmp_path / "process-0", tmp_path / "process-1"
    (code_0, text_0), (code_1, text_1), (code_ref, text_ref) = _pair(tmp_path, out_0, out_1, with_reference=True)
    assert code_0 == 0, text_0[-3000:]
    assert code_1 == 0, text_1[-3000:]
    assert code_ref == 0, text_ref[-3000:]

    assert "data parallel over 2 cpu devices in 2 processes: batch 16, 8 per device" in text_0
    assert not out_1.exists()  # checkpoints, metrics and plots are written once, by process 0
    assert "step 6/6" in text_0 and "step 6/6" not in text_1  # and it alone logs
    got, want = _values(_records(out_0)), _values(_records(tmp_path / "reference"))
    assert (
        [(s, split) for s, split, _ in got]
        == [(s, split) for s, split, _ in want]
        == [(1, "train"), (2, "train"), (3, "train"), (3, "val"), (4, "train"), (5, "train"), (6, "train"), (6, "val")]
    )
    np.testing.assert_allclose([v for *_, v in got], [v for *_, v in want], rtol=1e-5, atol=1e-6)
    summary = json.loads((out_0 / "summary.json").read_text())
    reference = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert summary["report"]["test_mse"] == pytest.approx(reference["report"]["test_mse"], rel=1e-5)

    # Resume: process 0 reads its last checkpoint and hands the state to process 1,
    # whose --out holds nothing; the run continues exactly as before.
    before = _records(out_0)
    (out_0 / "checkpoints" / "ckpt-00000006.ckpt").unlink()
    (code_0, text_0), (code_1, text_1) = _pair(tmp_path, out_0, out_1)
    assert code_0 == 0 and code_1 == 0, (text_0 + text_1)[-3000:]
    assert "resumed from step 3" in text_0 and not out_1.exists()
    assert _values(_records(out_0)) == _values(before)  # bit for bit

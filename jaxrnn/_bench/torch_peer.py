"""PyTorch as a benchmark peer, timed in a separate process: :func:`run_torch`.

The process that runs JAX calls :func:`run_torch`: it checks the request
(:func:`check_spec`), writes it to a temporary folder and starts the worker,
:mod:`jaxrnn._bench.torch_worker` run by path, which builds ``torch.nn.LSTM``,
``GRU`` or ``RNN`` modules from the same weights, times them and writes the results
back. The request and result formats are described in the worker's docstring.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxrnn._bench import torch_worker
from jaxrnn._core.checks import check_positive_int

_STDERR_TAIL = 4000


def run_torch(
    cases: list[dict],
    weights_and_inputs: Mapping[str, np.ndarray],
    *,
    device: str,
    precision: str,
    repeats: int,
    timeout: float,
    threads: int | None = None,
) -> dict:
    """Time ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` on the given weights, in a worker process.

    Args:
      cases: ``[{"id", "cell", "batch", "steps", "hidden", "input", "weights"}, ...]``
        as in :mod:`jaxrnn._bench.torch_worker`'s SPEC.json.
      weights_and_inputs: float32 arrays keyed ``PREFIX/w_ih``, ``PREFIX/w_hh``,
        ``PREFIX/b_ih``, ``PREFIX/b_hh``, ``PREFIX/xs0``, ``PREFIX/xs1``, ...
        (PyTorch layout, inputs ``[B, T, I]``); only the keys of ``cases`` are
        sent to the worker.
      device: ``"cpu"`` or ``"cuda"``.
      precision: ``"highest"`` or ``"bf16"``, and on CUDA also ``"tf32"``, ``"fp16"``.
      repeats: timed calls per case and pass (forward, fwd+bwd).
      timeout: seconds the worker may run in all.
      threads: ``torch.set_num_threads`` in the worker; None keeps torch's default.

    Returns:
      OUT.json's dict (see :mod:`jaxrnn._bench.torch_worker`) where each case also has
      ``"loss"`` (a float32 array of shape ``[]``) and ``"grads"``
      (``{"w_ih", "w_hh", "b_ih", "b_hh", "xs"}``, float32, PyTorch layout), for
      input ``xs0``; or ``{"available": False, "reason": ...}`` when the worker
      cannot import torch or, for ``device="cuda"``, sees no GPU.

    Raises:
      ValueError: an unknown device, precision or cell, a precision other than
        ``"highest"`` on CPU, sizes that are not positive ints, duplicate ids,
        missing arrays, arrays of the wrong shape or not float32.
      RuntimeError: the worker failed or ran past ``timeout``; the message ends
        with the tail of its stderr.

    Example:
      .. code-block:: python

        arrays = {"w/w_ih": ..., "w/w_hh": ..., "w/b_ih": ..., "w/b_hh": ..., "w/xs0": ..., "w/xs1": ...}
        case = {"id": "lstm-16x1024x256", "cell": "lstm", "batch": 16, "steps": 1024,
                "hidden": 256, "input": 256, "weights": "w"}
        result = run_torch([case], arrays, device="cpu", precision="highest", repeats=5, timeout=600)
        result["cases"]["lstm-16x1024x256"]["fwd_bwd"]["median_ms"]
    """
    spec = {
        "device": device,
        "precision": precision,
        "repeats": repeats,
        "threads": threads,
        "inputs": "inputs.npz",
        "cases": list(cases),
    }
    keys = check_spec(spec, weights_and_inputs)
    sent: dict[str, Any] = {key: np.asarray(weights_and_inputs[key]) for key in keys}
    with tempfile.TemporaryDirectory(prefix="jaxrnn-bench-torch-") as name:
        folder = pathlib.Path(name)
        spec_path, out_path = folder / "spec.json", folder / "out.npz"
        spec_path.write_text(json.dumps(spec, indent=1))
        with open(folder / "inputs.npz", "wb") as f:
            np.savez(f, **sent)
        # Run this file by path, not with -m, so the worker never imports the jaxrnn
        # package and JAX with it; the folder as cwd keeps stray modules off sys.path.
        launcher = (
            f"import runpy; runpy.run_path({str(pathlib.Path(torch_worker.__file__).resolve())!r}, run_name='__main__')"
        )
        command = [sys.executable, "-c", launcher, str(spec_path), str(out_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=folder)
        except subprocess.TimeoutExpired as e:
            stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
            raise RuntimeError(
                f"the torch benchmark worker ran past timeout={timeout} s; stderr tail:\n{stderr[-_STDERR_TAIL:]}"
            ) from e
        if done.returncode != 0:
            raise RuntimeError(
                f"the torch benchmark worker failed with exit status {done.returncode}; stderr tail:\n"
                f"{done.stderr[-_STDERR_TAIL:]}"
            )
        result = json.loads(out_path.with_suffix(".json").read_text())
        if result["available"]:
            with np.load(out_path) as arrays:
                for case_id, case in result["cases"].items():
                    case["loss"] = arrays[f"{case_id}/loss"]
                    case["grads"] = {name: arrays[f"{case_id}/grad/{name}"] for name in (*torch_worker.PARAMS, "xs")}
    return result


def check_spec(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Check a SPEC.json dict against its arrays; return the array keys the cases use.

    Raises:
      ValueError: as listed in :func:`run_torch`.
    """
    device, precision = spec.get("device"), spec.get("precision")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if precision not in torch_worker.PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(torch_worker.PRECISIONS)}, got {precision!r}.")
    if device == "cpu" and precision not in ("highest", "bf16"):
        raise ValueError(
            f"precision={precision!r} needs device='cuda': on CPU the torch peer runs in float32 or bfloat16; "
            f"use precision='highest' or 'bf16'."
        )
    check_positive_int(spec.get("repeats"), "repeats")
    check_positive_int(spec.get("threads"), "threads", allow_none=True)
    cases = spec.get("cases")
    if not isinstance(cases, list) or not cases or not all(isinstance(case, dict) for case in cases):
        raise ValueError(f"cases must be a non-empty list of dicts, got {cases!r}.")
    keys, ids = [], set()
    for case in cases:
        case_id = case.get("id")
        if not isinstance(case_id, str) or not case_id or case_id in ids:
            raise ValueError(f"each case needs a unique non-empty str 'id', got {case_id!r} in {case!r}.")
        ids.add(case_id)
        if case.get("cell") not in torch_worker.CELLS:
            raise ValueError(
                f"case {case_id!r}: cell must be one of {list(torch_worker.CELLS)}, got {case.get('cell')!r}."
            )
        for size in torch_worker.SIZES:
            check_positive_int(case.get(size), f"case {case_id!r}: {size!r}")
        prefix = case.get("weights")
        if not isinstance(prefix, str):
            raise ValueError(f"case {case_id!r}: 'weights' must be the str prefix of its arrays, got {prefix!r}.")
        required = torch_worker.expected_shapes(case)
        extra_inputs = {key: required[f"{prefix}/xs0"] for key in torch_worker.input_keys(case, arrays)[1:]}
        for key, shape in {**required, **extra_inputs}.items():
            if key not in arrays:
                raise ValueError(
                    f"case {case_id!r} needs the array {key!r}, which is missing; the arrays of prefix "
                    f"{prefix!r} are {sorted(k for k in arrays if k.startswith(prefix + '/'))}."
                )
            array = arrays[key]
            if np.shape(array) != shape or np.asarray(array).dtype != np.float32:
                raise ValueError(
                    f"case {case_id!r}: {key!r} must be float32 of shape {shape}, got "
                    f"{np.asarray(array).dtype} of shape {np.shape(array)}; inputs are batch-first [B, T, I] "
                    f"and weights in PyTorch's layout."
                )
            if key not in keys:
                keys.append(key)
    return keys

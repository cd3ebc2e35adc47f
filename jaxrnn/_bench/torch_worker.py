"""PyTorch as a benchmark peer, timed in a separate process: :func:`run_torch`.

The parent process (the one running JAX) calls :func:`run_torch`; it writes the
request to a temporary folder and starts a worker process that builds
``torch.nn.LSTM``, ``GRU`` or ``RNN`` (tanh) modules from the same weights,
times them and writes the results back. In its own process torch's thread pools
do not compete with XLA's, and its memory is measured apart from JAX's. The
worker imports only numpy and torch: it is this file run by path
(``runpy.run_path``), so the ``jaxrnn`` package, and with it JAX, is never
imported there. By hand it runs as::

    python -m jaxrnn._bench_torch SPEC.json OUT.npz

(which imports ``jaxrnn`` and so JAX, but runs nothing in it).

**SPEC.json**::

    {"device": "cpu" | "cuda",
     "precision": "highest" | "tf32" | "bf16" | "fp16",   # "highest" or "bf16" on CPU
     "repeats": int >= 1,
     "threads": int >= 1 | null,      # torch.set_num_threads; null keeps torch's default
     "inputs": "inputs.npz",          # relative to SPEC.json's folder, or absolute
     "cases": [{"id": str, "cell": "lstm" | "gru" | "elman",
                "batch": B, "steps": T, "hidden": H, "input": I,
                "weights": PREFIX}, ...]}

**The inputs npz** holds float32 arrays in PyTorch's layout (that of
:class:`jaxrnn.CellParams`; ``G`` = 4 for LSTM with gates i, f, g, o, 3 for GRU
with r, z, n, 1 for Elman), under keys that start with the case's ``PREFIX``:

- ``PREFIX/w_ih [G*H, I]`` (``weight_ih_l0``), ``PREFIX/w_hh [G*H, H]``
  (``weight_hh_l0``), ``PREFIX/b_ih [G*H]``, ``PREFIX/b_hh [G*H]``;
- ``PREFIX/xs0``, ``PREFIX/xs1``, ... ``[B, T, I]``, batch-first: the inputs.
  ``xs0`` is required; the timed runs use ``xs0, xs1, ...`` in turn, so that no
  call sees the previous call's input.

Cases may share a prefix.

**OUT.npz** holds, for each case, float32 arrays: ``ID/loss`` (shape ``[]``) and
``ID/grad/w_ih``, ``ID/grad/w_hh``, ``ID/grad/b_ih``, ``ID/grad/b_hh``,
``ID/grad/xs`` (PyTorch layout, shapes as above): the loss
``sum(ys**2)`` over all outputs and its gradient for input ``xs0``.
**OUT.json** (``OUT.npz`` with its suffix replaced by ``.json``) holds everything else::

    {"available": true,
     "worker": {"torch", "cudnn", "python", "device", "device_name", "threads",
                "interop_threads", "precision", "dtype", "flags": {...}, "jax_imported"},
     "cases": {ID: {"cell", "batch", "steps", "hidden", "input", "repeats", "inputs",
                    "forward": TIMES, "fwd_bwd": TIMES, "memory": MEMORY}}}

or ``{"available": false, "reason": str}`` when torch cannot be imported or sees
no CUDA device (the worker then exits with status 0 and writes no OUT.npz).
``TIMES`` is ``{"first_call_ms", "median_ms", "min_ms", "max_ms", "times_ms"}``.

**What is timed.** ``forward``: outputs and loss under ``torch.no_grad()`` with
the module in ``eval()`` mode (cuDNN's inference path). ``fwd_bwd``: outputs,
loss, and ``torch.autograd.grad`` of the loss with respect to the four
parameters and the input, with the module in ``train()`` mode (dropout is 0; the
mode selects cuDNN's training kernels, which backward needs). Gradients are
fresh tensors each call, never accumulated into ``.grad``. Each is first called
once on ``xs0`` (``first_call_ms``: first-use cost for this shape, e.g. cuDNN
plans; library start-up is paid before the first case by a tiny run of each
cell), then ``repeats`` times on rotating inputs, the device synchronised before
and after each call on CUDA (``times_ms``, and their median, min and max).

**Precision** (``flags`` records torch's settings as they were):

- ``"highest"``: float32, TF32 off (``torch.backends.cuda.matmul.allow_tf32``
  and ``torch.backends.cudnn.allow_tf32`` False);
- ``"tf32"``: float32, both flags True (CUDA only);
- ``"bf16"`` / ``"fp16"``: module and inputs cast to bfloat16 / float16, the
  loss summed in float32, TF32 off, gradients returned as float32 (``"fp16"``
  on CUDA only).
  Not autocast: torch's autocast runs cuDNN RNNs in float16 whatever dtype it
  is given. Whether cuDNN or torch's own kernels run bfloat16 RNNs depends on
  the torch build.

**Memory** of one fwd+bwd on ``xs0``, measured after the first calls and before
the timed loops: ``{"method", "before_bytes", "peak_bytes", "growth_bytes"}``,
``growth = peak - before``.

- CUDA (``"cuda_max_memory_allocated"``): ``before`` is
  ``torch.cuda.memory_allocated()`` (weights, every input); ``peak`` is
  ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``: the
  largest total of live tensors during the call, cuDNN's workspace and reserve
  and the returned gradients included, the caching allocator's spare blocks not.
- CPU, Linux (``"vmhwm"``): the resident set size before, and its high-water
  mark during the call. This is the counter behind ``getrusage``'s
  ``ru_maxrss``, but ``ru_maxrss`` only ever grows, so in one process it would
  hide every case smaller than an earlier one (or than the warm-up of the same
  case). Instead the worker resets the mark to the current RSS
  (``echo 5 > /proc/self/clear_refs``) right before the call, after handing
  freed heap back to the system (``malloc_trim``; otherwise the call would
  reuse pages that earlier calls freed and its growth would not show). It is a
  process measure and so an upper bound of sorts: it counts every page the
  process touches meanwhile (allocator slack, first-touch library buffers), and
  pages are 4 KiB, so tiny cases read as 0 or a few pages.
- CPU elsewhere (``"ru_maxrss"``): growth of ``ru_maxrss``, which is 0 unless
  the call sets a new peak for the process; a lower bound at best.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping

import numpy as np

CELLS = ("lstm", "gru", "elman")
_GATES = {"lstm": 4, "gru": 3, "elman": 1}
_TORCH_MODULES = {"lstm": ("LSTM", {}), "gru": ("GRU", {}), "elman": ("RNN", {"nonlinearity": "tanh"})}
# precision -> (torch dtype of module and inputs, TF32 allowed)
_PRECISIONS = {
    "highest": ("float32", False),
    "tf32": ("float32", True),
    "bf16": ("bfloat16", False),
    "fp16": ("float16", False),
}
_PARAMS = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
_SIZES = ("batch", "steps", "hidden", "input")
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
        as in the module docstring's SPEC.json.
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
      OUT.json's dict (see the module docstring) where each case also has
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
    with tempfile.TemporaryDirectory(prefix="jaxrnn-bench-torch-") as folder:
        folder = pathlib.Path(folder)
        spec_path, out_path = folder / "spec.json", folder / "out.npz"
        spec_path.write_text(json.dumps(spec, indent=1))
        with open(folder / spec["inputs"], "wb") as f:
            np.savez(f, **{key: np.asarray(weights_and_inputs[key]) for key in keys})
        # Run this file by path, not with -m, so the worker never imports the jaxrnn
        # package and JAX with it; the folder as cwd keeps stray modules off sys.path.
        launcher = f"import runpy; runpy.run_path({str(pathlib.Path(__file__).resolve())!r}, run_name='__main__')"
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
                    case["grads"] = {name: arrays[f"{case_id}/grad/{name}"] for name in (*_PARAMS, "xs")}
    return result


def check_spec(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Check a SPEC.json dict against its arrays; return the array keys the cases use.

    Raises:
      ValueError: as listed in :func:`run_torch`.
    """
    device, precision = spec.get("device"), spec.get("precision")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}.")
    if device == "cpu" and precision not in ("highest", "bf16"):
        raise ValueError(
            f"precision={precision!r} needs device='cuda': on CPU the torch peer runs in float32 or bfloat16; "
            f"use precision='highest' or 'bf16'."
        )
    if not _positive_int(spec.get("repeats")):
        raise ValueError(f"repeats must be a positive int, got {spec.get('repeats')!r}.")
    if spec.get("threads") is not None and not _positive_int(spec["threads"]):
        raise ValueError(f"threads must be a positive int or None, got {spec['threads']!r}.")
    cases = spec.get("cases")
    if not isinstance(cases, list) or not cases or not all(isinstance(case, dict) for case in cases):
        raise ValueError(f"cases must be a non-empty list of dicts, got {cases!r}.")
    keys, ids = [], set()
    for case in cases:
        case_id = case.get("id")
        if not isinstance(case_id, str) or not case_id or case_id in ids:
            raise ValueError(f"each case needs a unique non-empty str 'id', got {case_id!r} in {case!r}.")
        ids.add(case_id)
        if case.get("cell") not in CELLS:
            raise ValueError(f"case {case_id!r}: cell must be one of {list(CELLS)}, got {case.get('cell')!r}.")
        for size in _SIZES:
            if not _positive_int(case.get(size)):
                raise ValueError(f"case {case_id!r}: {size!r} must be a positive int, got {case.get(size)!r}.")
        prefix = case.get("weights")
        if not isinstance(prefix, str):
            raise ValueError(f"case {case_id!r}: 'weights' must be the str prefix of its arrays, got {prefix!r}.")
        required = _expected_shapes(case)
        extra_inputs = {key: required[f"{prefix}/xs0"] for key in _input_keys(case, arrays)[1:]}
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


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _expected_shapes(case: Mapping[str, Any]) -> dict[str, tuple]:
    """The required arrays of ``case`` (weights and ``xs0``) and their shapes."""
    gh, i, prefix = _GATES[case["cell"]] * case["hidden"], case["input"], case["weights"]
    return {
        f"{prefix}/w_ih": (gh, i),
        f"{prefix}/w_hh": (gh, case["hidden"]),
        f"{prefix}/b_ih": (gh,),
        f"{prefix}/b_hh": (gh,),
        f"{prefix}/xs0": (case["batch"], case["steps"], i),
    }


def _input_keys(case: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[str]:
    """``PREFIX/xs0``, ``PREFIX/xs1``, ... as far as they go without a gap."""
    keys = []
    while f"{case['weights']}/xs{len(keys)}" in arrays:
        keys.append(f"{case['weights']}/xs{len(keys)}")
    return keys


# ---------------------------------------------------------------- the worker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The torch benchmark worker (see jaxrnn._bench_torch).")
    parser.add_argument("spec", type=pathlib.Path, help="SPEC.json")
    parser.add_argument("out", type=pathlib.Path, help="OUT.npz; OUT.json is written beside it")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    with np.load(args.spec.parent / spec["inputs"]) as npz:
        arrays = {key: npz[key] for key in npz.files}
    check_spec(spec, arrays)
    result, out_arrays = _measure(spec, arrays)
    if out_arrays:
        with open(args.out, "wb") as f:
            np.savez(f, **out_arrays)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return 0


def _measure(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    try:
        import torch
    except ImportError as e:
        return {"available": False, "reason": f"PyTorch cannot be imported ({e}); pip install 'jaxrnn[torch]'."}, {}
    if spec["device"] == "cuda" and not torch.cuda.is_available():
        reason = f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)."
        return {"available": False, "reason": reason}, {}
    if spec["threads"] is not None:
        torch.set_num_threads(spec["threads"])
    dtype_name, tf32 = _PRECISIONS[spec["precision"]]
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    device = torch.device(spec["device"])
    dtype = getattr(torch, dtype_name)
    if device.type == "cuda":
        torch.cuda.init()
    _warm_up(torch, device, dtype, {case["cell"] for case in spec["cases"]})

    cases, out_arrays = {}, {}
    for case in spec["cases"]:
        timings, loss, grads = _run_case(torch, device, dtype, case, arrays, spec["repeats"])
        cases[case["id"]] = timings
        out_arrays[f"{case['id']}/loss"] = loss
        out_arrays.update({f"{case['id']}/grad/{name}": g for name, g in grads.items()})
    worker = {
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "precision": spec["precision"],
        "dtype": dtype_name,
        "flags": {
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn.enabled": torch.backends.cudnn.enabled,
            "cudnn.benchmark": torch.backends.cudnn.benchmark,
            "cudnn.deterministic": torch.backends.cudnn.deterministic,
        },
        "jax_imported": "jax" in sys.modules,
    }
    return {"available": True, "worker": worker, "cases": cases}, out_arrays


def _module(torch, device, dtype, case, weights: Mapping[str, np.ndarray] | None = None):
    """``torch.nn.LSTM`` / ``GRU`` / ``RNN`` for ``case``, with ``weights`` (PyTorch layout) if given."""
    name, extra = _TORCH_MODULES[case["cell"]]
    module = getattr(torch.nn, name)(
        case["input"], case["hidden"], batch_first=True, device=device, dtype=dtype, **extra
    )
    if weights is not None:
        with torch.no_grad():
            for field, torch_name in _PARAMS.items():
                getattr(module, torch_name).copy_(torch.from_numpy(weights[field]))
    return module


def _passes(torch, module, params):
    """The two timed functions of ``xs``: forward (loss), and fwd+bwd (loss, grads)."""

    def loss_of(xs):
        ys, _ = module(xs)
        return ys.float().square().sum()

    def forward(xs):
        with torch.no_grad():
            return loss_of(xs)

    def fwd_bwd(xs):
        loss = loss_of(xs)
        return loss, torch.autograd.grad(loss, [*params, xs])

    return forward, fwd_bwd


def _warm_up(torch, device, dtype, cells) -> None:
    """Pay library start-up (CUDA context, cuDNN and BLAS handles, thread pools) before any case."""
    for cell in sorted(cells):
        module = _module(torch, device, dtype, {"cell": cell, "input": 2, "hidden": 2})
        forward, fwd_bwd = _passes(torch, module, list(module.parameters()))
        xs = torch.ones(1, 2, 2, device=device, dtype=dtype, requires_grad=True)
        module.eval()
        forward(xs)
        module.train()
        fwd_bwd(xs)
    _synchronize(torch, device)


def _run_case(torch, device, dtype, case, arrays, repeats):
    prefix = case["weights"]
    module = _module(torch, device, dtype, case, {f: arrays[f"{prefix}/{f}"] for f in _PARAMS})
    params = [getattr(module, torch_name) for torch_name in _PARAMS.values()]
    xs_list = [
        torch.from_numpy(arrays[key]).to(device, dtype).requires_grad_() for key in _input_keys(case, arrays)
    ]
    forward, fwd_bwd = _passes(torch, module, params)

    module.eval()
    forward_first, _ = _timed(torch, device, forward, xs_list[0])
    module.train()
    fwd_bwd_first, (loss, grads) = _timed(torch, device, fwd_bwd, xs_list[0])
    loss = loss.detach().cpu().numpy()
    grads = {name: g.float().cpu().numpy() for name, g in zip((*_PARAMS, "xs"), grads)}

    memory = _memory(torch, device, lambda: fwd_bwd(xs_list[0]))
    module.eval()
    forward_times = [_timed(torch, device, forward, xs_list[i % len(xs_list)])[0] for i in range(repeats)]
    module.train()
    fwd_bwd_times = [_timed(torch, device, fwd_bwd, xs_list[i % len(xs_list)])[0] for i in range(repeats)]
    timings = {
        **{field: case[field] for field in ("cell", *_SIZES)},
        "repeats": repeats,
        "inputs": len(xs_list),
        "forward": _summary(forward_first, forward_times),
        "fwd_bwd": _summary(fwd_bwd_first, fwd_bwd_times),
        "memory": memory,
    }
    return timings, loss, grads


def _synchronize(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(torch, device, fn, xs) -> tuple[float, Any]:
    """Milliseconds of ``fn(xs)`` with the device idle before and synchronised after; its result."""
    _synchronize(torch, device)
    start = time.perf_counter()
    out = fn(xs)
    _synchronize(torch, device)
    return (time.perf_counter() - start) * 1e3, out


def _summary(first_ms: float, times: list[float]) -> dict:
    return {
        "first_call_ms": first_ms,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "times_ms": times,
    }


def _memory(torch, device, run) -> dict:
    """Peak memory of ``run()`` (see the module docstring for each method)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        method, peak = "cuda_max_memory_allocated", torch.cuda.max_memory_allocated(device)
    else:
        _release_free_heap()
        try:
            pathlib.Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            import resource

            scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
            run()
            method, peak = "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        else:
            before = _proc_status_bytes("VmHWM")  # just reset: the current RSS
            run()
            method, peak = "vmhwm", _proc_status_bytes("VmHWM")
    return {"method": method, "before_bytes": before, "peak_bytes": peak, "growth_bytes": peak - before}


def _release_free_heap() -> None:
    """Hand memory that malloc keeps after ``free`` back to the system (glibc only)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def _proc_status_bytes(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # "VmHWM:   123456 kB"
    raise RuntimeError(f"/proc/self/status has no {field} line.")


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())

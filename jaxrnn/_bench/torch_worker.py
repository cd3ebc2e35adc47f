"""The PyTorch benchmark worker: times ``torch.nn.LSTM``, ``GRU`` or ``RNN`` on given weights.

:func:`jaxrnn._bench.torch_peer.run_torch`, in the process that runs JAX, checks a
request, writes it to a temporary folder and starts this file as a worker process,
which builds torch modules from the same weights, times them and writes the results
back. In its own process torch's thread pools do not compete with XLA's, and its
memory is measured apart from JAX's. The worker imports only numpy and torch: it is
this file run by path (``runpy.run_path``), so the ``jaxrnn`` package, and with it
JAX, is never imported there; and it trusts its request, which ``run_torch``
checked (:func:`jaxrnn._bench.torch_peer.check_spec`). By hand it runs as::

    python -m jaxrnn._bench.torch_worker SPEC.json OUT.npz

(which imports ``jaxrnn`` and so JAX, but runs nothing in it).

**SPEC.json**::

    {"device": "cpu" | "cuda",
     "precision": "highest" | "tf32" | "bf16" | "fp16",   # "highest" or "bf16" on CPU
     "repeats": int >= 1,
     "threads": int >= 1 | null,      # torch.set_num_threads; null keeps torch's default
     "inputs": "inputs.npz",          # relative to SPEC.json's folder, or absolute
     "cases": [{"id": str, "cell": "lstm" | "gru" | "elman_tanh" | "elman_relu",
                "batch": B, "steps": T, "hidden": H, "input": I,
                "weights": PREFIX}, ...]}

**The inputs npz** holds float32 arrays in PyTorch's layout (that of
:class:`jaxrnn.CellParams`; ``G`` = 4 for LSTM with gates i, f, g, o, 3 for GRU
with r, z, n, 1 for Elman, tanh or relu), under keys that start with the case's ``PREFIX``:

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
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

# The cells the worker builds, by jaxrnn's names: their gate count and torch module.
GATES = {"lstm": 4, "gru": 3, "elman_tanh": 1, "elman_relu": 1}
TORCH_MODULES = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "elman_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "elman_relu": ("RNN", {"nonlinearity": "relu"}),
}
CELLS = tuple(GATES)
# precision -> (torch dtype of module and inputs, TF32 allowed)
PRECISIONS = {
    "highest": ("float32", False),
    "tf32": ("float32", True),
    "bf16": ("bfloat16", False),
    "fp16": ("float16", False),
}
PARAMS = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
SIZES = ("batch", "steps", "hidden", "input")


def expected_shapes(case: Mapping[str, Any]) -> dict[str, tuple]:
    """The required arrays of ``case`` (weights and ``xs0``) and their shapes."""
    gh, i, prefix = GATES[case["cell"]] * case["hidden"], case["input"], case["weights"]
    return {
        f"{prefix}/w_ih": (gh, i),
        f"{prefix}/w_hh": (gh, case["hidden"]),
        f"{prefix}/b_ih": (gh,),
        f"{prefix}/b_hh": (gh,),
        f"{prefix}/xs0": (case["batch"], case["steps"], i),
    }


def input_keys(case: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[str]:
    """``PREFIX/xs0``, ``PREFIX/xs1``, ... as far as they go without a gap."""
    keys: list[str] = []
    while f"{case['weights']}/xs{len(keys)}" in arrays:
        keys.append(f"{case['weights']}/xs{len(keys)}")
    return keys


# ---------------------------------------------------------------- the worker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The torch benchmark worker (see jaxrnn._bench.torch_worker).")
    parser.add_argument("spec", type=pathlib.Path, help="SPEC.json")
    parser.add_argument("out", type=pathlib.Path, help="OUT.npz; OUT.json is written beside it")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    with np.load(args.spec.parent / spec["inputs"]) as npz:
        arrays = {key: npz[key] for key in npz.files}
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
    dtype_name, tf32 = PRECISIONS[spec["precision"]]
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
    name, extra = TORCH_MODULES[case["cell"]]
    module = getattr(torch.nn, name)(
        case["input"], case["hidden"], batch_first=True, device=device, dtype=dtype, **extra
    )
    if weights is not None:
        with torch.no_grad():
            for field, torch_name in PARAMS.items():
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
    module = _module(torch, device, dtype, case, {f: arrays[f"{prefix}/{f}"] for f in PARAMS})
    params = [getattr(module, torch_name) for torch_name in PARAMS.values()]
    xs_list = [torch.from_numpy(arrays[key]).to(device, dtype).requires_grad_() for key in input_keys(case, arrays)]
    forward, fwd_bwd = _passes(torch, module, params)

    module.eval()
    forward_first, _ = _timed(torch, device, forward, xs_list[0])
    module.train()
    fwd_bwd_first, (loss, grads) = _timed(torch, device, fwd_bwd, xs_list[0])
    loss = loss.detach().cpu().numpy()
    grads = {name: g.float().cpu().numpy() for name, g in zip((*PARAMS, "xs"), grads)}

    memory = _memory(torch, device, lambda: fwd_bwd(xs_list[0]))
    module.eval()
    forward_times = [_timed(torch, device, forward, xs_list[i % len(xs_list)])[0] for i in range(repeats)]
    module.train()
    fwd_bwd_times = [_timed(torch, device, fwd_bwd, xs_list[i % len(xs_list)])[0] for i in range(repeats)]
    timings = {
        **{field: case[field] for field in ("cell", *SIZES)},
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

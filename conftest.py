"""Test settings.

Tests run with float64 available and with silent broadcasting or dtype promotion
raising errors (as equinox's tests do), so such bugs in jaxrnn show up as failures.
Docstring examples run with JAX's default settings, as a user would run them.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

# The tests' programs are tiny, so their time is XLA's compile time. At optimisation level 0
# LLVM skips its optimisation passes; XLA:CPU's elemental emitters compile a fusion in about
# half the time of its MLIR fusion emitters, and one codegen split per program starts no
# threads for a few lines of IR (tests/test_bptt.py on 2 cores: 101 CPU-seconds at level 0
# alone, 55 with both). Every program computes the same values, to rounding. A jaxlib aborts
# at start-up on a flag it does not know, so the last two are tried in a throwaway
# interpreter first. Set before JAX starts, by the controller; the xdist workers and the
# tests' subprocesses inherit them.
_LEVEL_0 = "--xla_backend_optimization_level=0"
_FAST_CODEGEN = "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"


def _xla_accepts(flags: str) -> bool:
    probe = [sys.executable, "-c", "import jax; jax.devices('cpu')"]
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(probe, env=env, capture_output=True).returncode == 0


if _LEVEL_0 not in os.environ.get("XLA_FLAGS", ""):
    _flags = f"{os.environ.get('XLA_FLAGS', '')} {_LEVEL_0}".strip()
    os.environ["XLA_FLAGS"] = f"{_flags} {_FAST_CODEGEN}" if _xla_accepts(f"{_flags} {_FAST_CODEGEN}") else _flags

# Many tests compile the same program (the same cell, shapes and options) in different
# test functions, xdist workers and subprocesses. One compilation cache for the run,
# made by the controller before the workers start, serves them all; it is removed at
# the end (benchmarks/NOTES.md has the figures).
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxrnn-tests-xla-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402  (after the XLA and cache settings above)
import jax.experimental  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture(autouse=True)
def _user_defaults_for_doctests(request):
    if isinstance(request.node, pytest.DoctestItem):
        with contextlib.ExitStack() as stack:
            # jax.enable_x64 is new; jax 0.7 (Colab's) has it in jax.experimental.
            enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64
            stack.enter_context(enable_x64(False))
            stack.enter_context(jax.numpy_rank_promotion("allow"))
            stack.enter_context(jax.numpy_dtype_promotion("standard"))
            yield
    else:
        yield


def pytest_unconfigure(config):
    if _OWN_CACHE and not hasattr(config, "workerinput"):  # the controller, which made it
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

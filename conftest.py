"""Test settings.

Tests run with float64 available and with silent broadcasting or dtype promotion
raising errors (as equinox's tests do), so such bugs in jaxrnn show up as failures.
Docstring examples run with JAX's default settings, as a user would run them.
"""

import contextlib
import os
import shutil
import tempfile

# The tests' programs are tiny, so their time is XLA's compile time, most of it LLVM's
# optimisation passes; at level 0 every program compiles faster and computes the same
# values. Set before JAX starts, and inherited by the tests' subprocesses.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

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

"""Test settings.

Tests run with float64 available and with silent broadcasting or dtype promotion
raising errors (as equinox's tests do), so such bugs in jaxrnn show up as failures.
Docstring examples run with JAX's default settings, as a user would run them.
"""

import contextlib
import os

# The tests' programs are tiny, so their time is XLA's compile time, most of it LLVM's
# optimisation passes; at level 0 every program compiles faster and computes the same
# values. Set before JAX starts, and inherited by the tests' subprocesses.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import jax
import jax.experimental
import pytest

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

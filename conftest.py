"""Test settings.

Tests run with float64 available and with silent broadcasting or dtype promotion
raising errors (as equinox's tests do), so such bugs in jaxrnn show up as failures.
Docstring examples run with JAX's default settings, as a user would run them.
"""

import contextlib

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

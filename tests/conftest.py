"""Test settings: float64 available, and silent broadcasting or promotion raise (as equinox's tests)."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

"""The kernel interface: what every backend of the fused recurrence implements.

A kernel runs the sequential part of one layer of a built-in cell: everything
that cannot be a large matmul. The input projection before the loop and the
weight and input gradients after it stay in the time loop
(:mod:`jaxrnn._core.loop`), as large XLA matmuls. A kernel is a module with the
attributes of :class:`Kernel`; ``tests/test_kernels.py`` checks every backend
against it and against the oracle in ``tests/kernel_oracle.py``.

Shapes (``T`` steps, ``B`` batch, ``H`` hidden size, ``G`` gates):

- ``kind``: one of :data:`jaxrnn._core.gates.KINDS` (static).
- ``px [T, B, G*H]``: the input projection ``x_t W_ih^T + b_ih``.
- ``w_hh [G*H, H]`` (PyTorch layout), ``b_hh [G*H]``.
- ``h0 [B, H]``; ``c0 [B, H]`` for the LSTM, None otherwise.
- ``mask [T, B]`` bool or None: where False the step is skipped and the state
  carried unchanged.
- ``h_all [T, B, H]``: the state after every step; ``c_all`` likewise (LSTM;
  None otherwise).
- ``residual``: whatever the kernel's forward keeps for its backward (its own
  business: the XLA kernel keeps the activated gates, or nothing with
  ``residuals="states"``; the Pallas kernels the recurrent projections).
- ``d_h_all [T, B, H]``: the cotangent of ``h_all``; ``d_c_last [B, H]``: of
  ``c_all[T-1]`` (LSTM; None otherwise).
- ``truncate``: None or k: the cotangent carried into the state entering step
  ``t`` is zeroed when ``t > 0`` and ``t % k == 0``.
- The backward returns ``d_px``, ``d_rec [T, B, G*H]``: the gate deltas of the
  input and the recurrent projection (the same array but for the GRU), zero on
  skipped steps; ``d_h0``, ``d_c0``: the cotangents of the initial state.
- ``precision``: ``"highest"`` (full float32 products) or ``"fast"`` (TF32 on
  GPU, bfloat16 products on TPU; float32 accumulation either way).
- ``interpret`` (Pallas: run in interpret mode) and ``unroll`` (XLA: the
  ``lax.scan`` unroll) are accepted by every kernel and used by those they
  concern.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

PRECISIONS = ("highest", "fast")


@runtime_checkable
class Kernel(Protocol):
    """A backend of the fused recurrence (the module docstring gives the shapes).

    Attributes:
      AVAILABLE: whether this JAX can run it at all.
      WHY_UNAVAILABLE: the reason when it cannot, else None.
      RESIDUALS: the values of ``residuals`` its forward accepts (``"gates"``:
        keep what makes the reverse cheap; ``"states"``: keep no more than the
        states and recompute the rest).
    """

    AVAILABLE: bool
    WHY_UNAVAILABLE: str | None
    RESIDUALS: tuple

    def unsupported(self, kind: str, batch: int, hidden_size: int, w_dtype: Any, precision: str) -> str | None:
        """Why this kernel cannot run the configuration; None when it can."""

    def needs_px(self, residuals: str) -> bool:
        """Whether :meth:`backward` reads ``px`` (else the time loop does not keep it)."""

    def forward(
        self, kind: str, px, w_hh, b_hh, h0, c0, mask, *, residuals: str, precision: str, interpret: bool, unroll: int
    ) -> tuple:
        """``(h_all, c_all, residual)``."""

    def backward(
        self,
        kind: str,
        px,
        residual,
        w_hh,
        b_hh,
        h0,
        c0,
        h_all,
        c_all,
        mask,
        d_h_all,
        d_c_last,
        *,
        truncate: int | None,
        precision: str,
        interpret: bool,
        unroll: int,
    ) -> tuple:
        """``(d_px, d_rec, d_h0, d_c0)``."""

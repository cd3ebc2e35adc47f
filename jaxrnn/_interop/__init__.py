"""Interop: weights to and from PyTorch (:mod:`jaxrnn._interop.torch`); the flax layers live in :mod:`jaxrnn.flax`."""

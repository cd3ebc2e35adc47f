"""Kernels: the ways a sequential time loop of a built-in cell can run.

Every kernel implements :class:`jaxrnn._kernels.interface.Kernel`. This layer
imports only the core's gate equations, masking and dtype helpers; the time loop
(:mod:`jaxrnn._core.loop`) picks a kernel through :mod:`jaxrnn._kernels.registry`
and imports the Pallas modules only when one is asked for.
"""

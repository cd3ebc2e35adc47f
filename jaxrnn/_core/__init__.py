"""The core: cells, gate equations, masking, input checks, the time loop and models.

Imports only downward: the gate equations, masking and checks import nothing of
jaxrnn; the kernels layer (:mod:`jaxrnn._kernels`) imports only those; the cells,
strategy, loop, runner and models import them and the kernels' registry.
"""

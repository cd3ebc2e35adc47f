"""``jaxrnn bench``: throughput and memory of jaxrnn's recurrent layers against their peers.

:mod:`~jaxrnn._bench.command` holds the command's options and picks what it runs:
the comparison with the peers (:mod:`~jaxrnn._bench.run`, with the JAX peers of
:mod:`~jaxrnn._bench.peers` and PyTorch through :mod:`~jaxrnn._bench.torch_peer`,
whose worker process is :mod:`~jaxrnn._bench.torch_worker`), with ``--suite parallel``
the linear-recurrence cells in parallel over time against sequential RNNs
(:mod:`~jaxrnn._bench.parallel`), or, with ``--devices``, data-parallel scaling
(:mod:`~jaxrnn._bench.scaling`).
"""

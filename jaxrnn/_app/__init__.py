"""The application: the ``jaxrnn`` command and what it runs.

:mod:`~jaxrnn._app.cli` parses the command line and starts a command;
:mod:`~jaxrnn._app.trainer` is the training loop of ``jaxrnn train``,
:mod:`~jaxrnn._app.generate` samples a trained character model, :mod:`~jaxrnn._app.sweep`
runs ``jaxrnn sweep`` / ``compare``, and :mod:`~jaxrnn._app.tasks` holds the built-in
tasks behind a registry. :mod:`~jaxrnn._app.cells` names the cells the commands
accept, :mod:`~jaxrnn._app.options` the command-line pieces they share,
:mod:`~jaxrnn._app.plotting` and :mod:`~jaxrnn._app.progress` draw figures and
progress bars. ``jaxrnn bench`` lives in :mod:`jaxrnn._bench`.

The application imports the training library (:mod:`jaxrnn.train`, :mod:`jaxrnn.data`)
and the core; nothing below imports it, and ``import jaxrnn`` loads none of it.
matplotlib and tqdm are imported only inside the functions that draw.
"""

"""``python -m jaxrnn`` and the ``jaxrnn`` console script: the command lives in :mod:`jaxrnn._app.cli`."""

from jaxrnn._app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

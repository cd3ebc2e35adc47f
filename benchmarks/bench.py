"""``python -m benchmarks.bench [options]``: the same as ``jaxrnn bench [options]``, from a checkout."""

import sys

from jaxrnn._app.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))

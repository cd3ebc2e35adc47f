"""The package's layers: every import (function-level ones too) points down, and none forms a cycle.

The layers, bottom first (``docs/architecture.md``):

0. the core's base: gate equations, masking, input checks (they import nothing of jaxrnn);
1. kernels (``jaxrnn._kernels``): import only the core's base;
2. core (``jaxrnn._core``): cells, strategy, the time loop, the runner, models;
3. interop (``jaxrnn._interop``, ``jaxrnn.flax``) and the package's public face (``jaxrnn``);
4. training library (``jaxrnn.train``, ``jaxrnn.data``);
5. application (``jaxrnn._app``, ``jaxrnn._bench``, ``jaxrnn.__main__``).
"""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxrnn"

LAYERS = [  # (module prefix, layer); the longest matching prefix wins
    ("jaxrnn._core.gates", 0),
    ("jaxrnn._core.masking", 0),
    ("jaxrnn._core.checks", 0),
    ("jaxrnn._kernels", 1),
    ("jaxrnn._core", 2),
    ("jaxrnn._interop", 3),
    ("jaxrnn.flax", 3),
    ("jaxrnn.train", 4),
    ("jaxrnn.data", 4),
    ("jaxrnn._app", 5),
    ("jaxrnn._bench", 5),
    ("jaxrnn.__main__", 5),
]


def _modules() -> dict:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _layer(module: str) -> int:
    if module == "jaxrnn":
        return 3
    matches = [(len(prefix), layer) for prefix, layer in LAYERS if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return max(matches)[1]


def _imports(module: str, path: pathlib.Path, mods: dict) -> set:
    """The jaxrnn modules that ``module`` imports, wherever the import statement stands."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from a import b` imports module a.b when there is one, else a name of a.
            names = [f"{source}.{a.name}" if f"{source}.{a.name}" in mods else source for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in mods:
                name = name.rsplit(".", 1)[0] if "." in name else ""
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: _imports(m, p, _modules()) for m, p in _modules().items()}


def test_every_import_points_down():
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in sorted(GRAPH.items())
        for b in sorted(targets)
        if _layer(b) > _layer(a)
    ]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open":
                cycles.append(" -> ".join(stack[stack.index(n) :] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_rule_catches_an_upward_edge():
    assert _layer("jaxrnn._core.loop") < _layer("jaxrnn.train._parallel") < _layer("jaxrnn._app.cli")
    assert _layer("jaxrnn._core.gates") < _layer("jaxrnn._kernels.xla") < _layer("jaxrnn._core.loop")
    with pytest.raises(AssertionError, match="belongs to no layer"):
        _layer("jaxrnn._new_thing")


def test_import_jaxrnn_loads_the_core_only():
    """``import jaxrnn`` loads neither the application nor its heavy dependencies, nor the Pallas kernels."""
    script = "import sys, jaxrnn; print('\\n'.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120
        ).stdout.split()
    )
    for forbidden in (
        "jaxrnn._app",
        "jaxrnn._bench",
        "jaxrnn.train",
        "jaxrnn.data",
        "jaxrnn.flax",
        "matplotlib",
        "tqdm",
        "jax.experimental.multihost_utils",
        "jaxrnn._kernels.pallas_gpu",
        "jaxrnn._kernels.pallas_tpu",
        "torch",
        "flax",
        "optax",
    ):
        assert not any(m == forbidden or m.startswith(forbidden + ".") for m in loaded), forbidden
    assert "jaxrnn._core.loop" in loaded and "jaxrnn._kernels.registry" in loaded

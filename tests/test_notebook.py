"""examples/colab_tpu.ipynb runs from top to bottom, as on Colab, here on the CPU.

Its install cell is pointed at this checkout with ``pip install --dry-run``
(pip builds jaxrnn's metadata and resolves its dependencies against this
environment, but changes nothing), and the benchmark and the training run get
small settings through the notebook's environment variables.
"""

import json
import pathlib
import re

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "colab_tpu.ipynb"
COLAB_URL = "https://colab.research.google.com/github/jaxrnn/jaxrnn/blob/main/examples/colab_tpu.ipynb"


def _text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output["output_type"] == "stream")


def test_colab_notebook_runs_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("JAXRNN_SOURCE", ROOT.as_uri())
    monkeypatch.setenv("JAXRNN_PIP_OPTIONS", "--dry-run")
    monkeypatch.setenv(
        "JAXRNN_BENCH_ARGS", "--quick --cells elman_tanh --shapes 2x16x8 --sweep 2x8:16 --impls jaxrnn-bptt --repeats 1"
    )
    monkeypatch.setenv("JAXRNN_PARALLEL_ARGS", "--cells minlstm --lengths 16 --batches 2 --hidden 8 --repeats 1")
    monkeypatch.setenv("JAXRNN_STEPS", "10")
    monkeypatch.setenv("JAXRNN_TRAIN_ARGS", "--length 10 --hidden 8 --eval-every 5")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises on any cell's error

    outputs = "\n".join(_text(cell) for cell in notebook.cells if cell.cell_type == "code")
    assert "Would install jaxrnn-0.1.0" in outputs  # the install cell's pip command, checked against this checkout
    assert re.search(r"backend: cpu\n  0: cpu \(cpu\), process 0", outputs)
    bench = json.loads((tmp_path / "bench-cpu" / "bench.json").read_text())
    assert {(r["impl"], r["status"]) for r in bench["rows"]} == {("jaxrnn-autodiff", "ok"), ("jaxrnn-bptt", "ok")}
    assert (tmp_path / "bench-cpu" / "sweep_elman_tanh.png").exists()
    parallel = json.loads((tmp_path / "bench-parallel-cpu" / "parallel.json").read_text())
    assert [(r["impl"], r["status"], r["steps"]) for r in parallel["rows"]] == [("minlstm (parallel)", "ok", 16)]
    summary = json.loads((tmp_path / "runs" / "adding-lstm" / "summary.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 10
    assert "done after 10 steps" in outputs and "predicting the mean: 0.1667" in outputs
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the sweep's plot, the parallel suite's and the training curves
    folders = f"{tmp_path / 'bench-cpu'} and {tmp_path / 'bench-parallel-cpu'}"
    assert f"the benchmark results are in {folders}" in outputs  # no google.colab here


def test_colab_badge_opens_this_notebook():
    first = nbformat.read(NOTEBOOK, as_version=4).cells[0]
    assert first.cell_type == "markdown" and f"]({COLAB_URL})" in first.source
    assert f"]({COLAB_URL})" in (ROOT / "examples" / "README.md").read_text()

"""The Colab quickstart notebook: stored clean, and run top to bottom at smoke size on CPU."""

import base64
import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"
KERNEL_NAME = "jaxgan-test-venv"


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_stored_without_outputs_and_with_one_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("SMOKE =", "EPOCHS =", "WORKDIR ="):
        assert name in tagged[0].source
    setup = code_cells(notebook)[0].source
    # A Colab form field, empty until the user types an address: no placeholder to clone.
    assert 'REPO_URL = ""  # @param {type:"string"}\n' in setup
    assert "OWNER/REPO" not in NOTEBOOK.read_text()


def _register_venv_kernel(jupyter_dir: Path) -> None:
    """A kernelspec whose Python is this test's (the venv's), found through JUPYTER_PATH."""
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jaxgan test venv",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _stderr(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.get("name") == "stderr")


def _run_setup_cell(tmp_path, monkeypatch, cwd: Path) -> dict:
    """Runs only the notebook's set-up cell in a kernel started in `cwd`; its last output."""
    _register_venv_kernel(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells = code_cells(notebook)[:1]
    client = NotebookClient(
        notebook, timeout=300, kernel_name=KERNEL_NAME, allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )  # fmt: skip
    client.execute()
    return notebook.cells[0].outputs[-1]


def test_on_colab_an_empty_repo_url_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_test")  # What Colab's kernels have.
    output = _run_setup_cell(tmp_path, monkeypatch, cwd=tmp_path)  # Not inside a checkout.
    assert output.output_type == "error"
    (line,) = output.traceback
    assert line.startswith("Set-up stopped: REPO_URL is empty") and "field above" in line


def test_in_a_checkout_its_own_code_is_used(tmp_path, monkeypatch):
    """Jupyter starts the kernel in the notebook's folder: that clone's jaxgan is imported,
    not the one the environment has installed."""
    clone = tmp_path / "clone"
    for folder in ("jaxgan", "experiments"):
        shutil.copytree(REPO_ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("__py*"))
    (clone / "notebooks").mkdir()
    output = _run_setup_cell(tmp_path, monkeypatch, cwd=clone / "notebooks")
    assert output.output_type == "stream" and output.text == f"jaxgan 0.1.0 from {clone}\n"


@pytest.mark.slow
def test_runs_top_to_bottom_at_smoke_size(tmp_path, monkeypatch):
    _register_venv_kernel(tmp_path / "jupyter")
    workdir = tmp_path / "run"
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JAXGAN_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("JAXGAN_NOTEBOOK_WORKDIR", str(workdir))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # This checkout's jaxgan, whatever else the venv has installed.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # Raises CellExecutionError on the first failing cell.

    cells = code_cells(notebook)
    assert f"from {REPO_ROOT}" in _text(cells[0])
    # Orbax's INFO lines (dozens per save and restore) are silenced by the set-up cell.
    logged = [line for cell in cells for line in _stderr(cell).splitlines()]
    assert [line for line in logged if "[process=" in line or "orbax" in line.lower()] == []
    assert not [line for line in logged if "checkpoint" in line.lower()], logged
    run_dir = workdir / "smoke"
    assert (run_dir / "checkpoints" / "32").is_dir()
    assert not (workdir / "dcgan").exists()  # SMOKE skips the real epochs.

    shown = [
        base64.b64decode(o["data"]["image/png"])
        for o in cells[3].outputs
        if "image/png" in o.get("data", {})
    ]
    assert shown == [
        (run_dir / "fashion_mnist_samples.png").read_bytes(),
        (run_dir / "curves.png").read_bytes(),
    ]
    fid_text = _text(cells[4])
    assert "FID at step 32:" in fid_text and "N = 16 generated images" in fid_text
    assert "biased upwards" in fid_text
    steps = [line for line in _text(cells[5]).splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in steps] == ["step 1", "step 2", "step 3"]
    assert all("'d_loss'" in line and "'g_loss'" in line for line in steps)

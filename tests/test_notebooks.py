"""Every notebook in notebooks/ runs top to bottom on CPU at tiny sizes, offline, and shows what it promises."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

# notebook -> (run directories it must finish, relative to its workdir; text its outputs must contain)
EXPECTED = {
    "01_vae_quickstart.ipynb": (["vae2d"], ["restored state == trained state: True", "resumed at step 20, now at step 30"]),
    "02_gan_vs_vae.ipynb": (
        ["vae", "dcgan", "vqvae", "vqvae/vqvae", "gan_ring8"],
        ["| VAE |", "| DCGAN |", "| VQ-VAE |", "'modes_captured'"],
    ),
    "03_vqvae_codebook.ipynb": (["restarts", "restarts/vqvae", "no_restarts"], ["| restarts |", "| no restarts |", "prior: test code_nll"]),
    "04_which_when.ipynb": (
        ["runs/vae/n200/setting0/seed0", "runs/gan/n500/setting1/seed0"],
        ["(on a CPU: ", "## When: sample quality", "For sample quality with 200 training images the best is", "## Does the search work?"],
    ),
}
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))


def test_every_notebook_is_tested_and_committed_without_outputs():
    assert [os.path.basename(path) for path in NOTEBOOKS] == sorted(EXPECTED)
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        assert all(not cell.outputs and cell.execution_count is None for cell in cells if cell.cell_type == "code"), path


def output_text(output) -> str:
    return output.get("text", "") + output.get("data", {}).get("text/markdown", "") + output.get("data", {}).get("text/plain", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    # The kernel inherits this environment: tiny sizes, the embedded data (no network), this repository's genjax,
    # and the session's CPU platform, compilation cache and classifier cache (conftest).
    monkeypatch.setenv("GENJAX_NOTEBOOK_STEPS", "20")
    monkeypatch.setenv("GENJAX_NOTEBOOK_WORKDIR", str(tmp_path))
    monkeypatch.setenv("GENJAX_NOTEBOOK_SOURCE", "embedded")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    plotting_cells = [cell for cell in notebook.cells if cell.cell_type == "code" and "plt.show()" in cell.source]
    assert all(any("image/png" in output.get("data", {}) for output in cell.outputs) for cell in plotting_cells)
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 3
    run_dirs, texts = EXPECTED[os.path.basename(path)]
    for run_dir in run_dirs:
        assert (tmp_path / run_dir / "summary.json").exists(), run_dir
    text = "".join(map(output_text, outputs))
    for expected in texts:
        assert expected in text

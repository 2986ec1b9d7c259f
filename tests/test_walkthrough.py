"""walkthrough.ipynb runs top to bottom on a CPU, so it cannot fall out of step with the code."""

import shutil

import pytest

from conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat (requirements-dev.txt)")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (requirements-dev.txt)")


def test_the_walkthrough_notebook_runs_top_to_bottom(tmp_path):
    # a copy of the repository, so the notebook's data/ and out-walkthrough/ land in tmp_path
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, repo, ignore=shutil.ignore_patterns(".git", "data", "out*", "tests", "docs",
                                                                   "__pycache__", "*.pt"))
    notebook = nbformat.read(repo / "walkthrough.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(repo)}}).execute()
    outputs = {i: "".join(o.get("text", "") for o in cell.get("outputs", []))
               for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    text = "\n".join(outputs.values())
    assert "h.0.attn.softmax" in text and "(2, 4, 16, 16)" in text  # the shape trace of one batch
    assert "vocabulary of 65" in text
    images = sum(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
                 for cell in notebook.cells for o in cell.get("outputs", []))
    assert images == 4  # the encoding, the masks, one head's weights, the loss curve: every picture drew
    log = (repo / "out-walkthrough" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4 and (repo / "out-walkthrough" / "samples.txt").read_text().count("=== iter") == 4
    assert "after 300 steps:\nROMEO:" in text

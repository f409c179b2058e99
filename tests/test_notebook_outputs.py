"""The tutorials' stored outputs are clean (issue 23): no absolute path, progress bars in their final
state, no repeated noise — the check `scripts/render_notebooks.sh` runs after rendering."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
_spec = importlib.util.spec_from_file_location("check_notebook_outputs", ROOT / "scripts" / "check_notebook_outputs.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def test_the_check_finds_each_kind_of_problem(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("") for _ in range(4)])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="saved /work/me/tutorials/work/x.nii.gz\n")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stderr",
                                                  text="embed:   0%|          | 0/9\rembed:  44%|####  | 4/9\n")]
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
        "text/plain": "evaluate:   0%|          | 0/1 [00:00<?, ?case/s]"})]
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="embedding store work/x: 30 slices, 0 to compute\n" * 3)]
    path = tmp_path / "01_x.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    found = check.problems(path)
    assert any("absolute path '/work/me" in p for p in found)
    assert any("progress bar stored at 44 %" in p for p in found)
    assert any("progress-bar widget" in p for p in found)
    assert any("stored 3 times" in p for p in found)
    for cell in nb.cells:   # the same outputs, clean
        cell.outputs = [nbformat.v4.new_output("stream", text="saved work/x.nii.gz\nembed: 100%|####| 9/9\n")]
    nb.cells = nb.cells[:2]
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert check.problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_clean(path):
    found = check.problems(path)
    assert not found, "\n".join(found) + "\n(re-render with scripts/render_notebooks.sh after fixing the cell)"

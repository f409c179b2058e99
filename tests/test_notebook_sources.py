"""The committed notebooks are their jupytext sources plus the outputs of a clean run.

Each ``tutorials/NN_name.ipynb`` is paired with ``tutorials/NN_name.py`` (percent format): the code
cells must be the same, in the same order; no stored output may hold an error; the notebooks 02–08
open with one settings cell (``tutorial.settings()``, which reads ``tutorials/settings.toml``), and
all of them run on any data from the settings alone: no sample-specific literal below it.
"""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
WITH_SETTINGS = ("02", "03", "04", "05", "06", "07", "08")
FROM_SETTINGS_ALONE = WITH_SETTINGS   # 08 too: its scan, boxes and reference are in the settings file
# what would tie a notebook to the samples below its settings cell
SAMPLE_LITERALS = re.compile(r"sub-\d\d|brain_mri|sample_dataset|samples\.|[\"']work[/\"']|\.truth\[\d\]|== ?3\b")


def code_cells(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells if c.cell_type == "code"]


def differences(ipynb_path: Path, py_path: Path) -> list[str]:
    """Human-readable differences between a notebook's code cells and its jupytext source."""
    stored = code_cells(nbformat.read(ipynb_path, as_version=4))
    source = code_cells(jupytext.read(py_path))
    if len(stored) != len(source):
        return [f"{len(stored)} code cells in {ipynb_path.name}, {len(source)} in {py_path.name}"]
    return [f"code cell {i} differs:\n--- ipynb\n{a}\n--- py\n{b}"
            for i, (a, b) in enumerate(zip(stored, source)) if a != b]


def errors(nb) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            if out.get("output_type") == "error" or "Traceback (most recent call last)" in text:
                found.append(f"cell {i}: {out.get('ename', '')} {out.get('evalue', text[-300:])}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_matches_its_source(path):
    py = path.with_suffix(".py")
    assert py.exists(), f"{path.name} has no jupytext source {py.name}: `jupytext --set-formats ipynb,py:percent`"
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    diff = differences(path, py)
    assert not diff, (f"{path.name} is out of date with {py.name}; run `jupytext --sync {py}` "
                      "(or scripts/render_notebooks.sh):\n" + "\n".join(diff))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_hold_no_error(path):
    assert not errors(nbformat.read(path, as_version=4)), errors(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name[:2] in WITH_SETTINGS], ids=lambda p: p.name)
def test_one_settings_cell_and_nothing_sample_specific_below_it(path):
    cells = code_cells(jupytext.read(path.with_suffix(".py")))
    settings = [i for i, c in enumerate(cells) if "tutorial.settings(" in c]
    assert settings == [1], f"{path.name}: the settings cell must be the first code cell after the install cell"
    assert re.search(r"^S = tutorial\.settings\(\)$", cells[1], re.M), \
        f"{path.name}: the settings come from the settings file alone (`S = tutorial.settings()`), not the notebook"
    if path.name[:2] not in FROM_SETTINGS_ALONE:
        return
    for i, cell in enumerate(cells[2:], start=2):
        hit = SAMPLE_LITERALS.search(cell)
        assert not hit, f"{path.name} code cell {i} uses {hit.group(0)!r}; derive it from the settings `S`:\n{cell}"


def test_the_checks_catch_a_stale_notebook_and_an_error(tmp_path):
    """The comparison and the error scan fail on a notebook edited behind its source's back."""
    src = NOTEBOOKS[0]
    nb = nbformat.read(src, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code" and "load_model" in c.source)
    code.source += "\nprint('edited in the ipynb only')"
    code.outputs = [nbformat.v4.new_output("error", ename="KeyError", evalue="3", traceback=["KeyError: 3"])]
    stale = tmp_path / src.name
    nbformat.write(nb, stale)
    assert differences(stale, src.with_suffix(".py"))
    assert errors(nbformat.read(stale, as_version=4)) == [f"cell {nb.cells.index(code)}: KeyError 3"]
    assert not differences(src, src.with_suffix(".py"))

"""Every tutorial opens on Colab in one click and has a Colab-only install cell."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))


def _slug():
    url = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Repository"]
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)/?", url)
    assert m, f"project.urls.Repository must be a GitHub URL, got {url}"
    return m.group(1)


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "01_quickstart.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_and_install_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    expected = f"https://colab.research.google.com/github/{_slug()}/blob/main/tutorials/{path.name}"
    assert f"]({expected})" in first.source, f"{path.name}: badge must point to {expected}"
    assert "colab-badge.svg" in first.source
    install = nb.cells[1]
    assert install.cell_type == "code"
    assert "skip-execution" in install.metadata.get("tags", [])
    assert f"github.com/{_slug()}" in install.source and "pip install" in install.source
    assert "enable_custom_widget_manager" in install.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_do_not_redefine_package_logic(path):
    """Helpers belong in the package: notebooks call it and define no functions or classes."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(def|class) ", cell.source, re.M), f"{path.name} defines:\n{cell.source}"

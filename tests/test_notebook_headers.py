"""Every tutorial opens on Colab in one click, and its first code cell installs it there (only there)."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest

from medsam_lite.app import tutorial

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))


def _repo_url():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Repository"]


def _slug():
    url = _repo_url()
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)/?", url)
    assert m, f"project.urls.Repository must be a GitHub URL, got {url}"
    return m.group(1)


def _install_cell(path):
    return nbformat.read(path, as_version=4).cells[1]


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "01_quickstart.ipynb"
    assert len(NOTEBOOKS) == 8 and NOTEBOOKS[-1].name == "08_annotate_without_labels.ipynb"


def test_the_package_knows_the_repository_url():
    assert tutorial.REPO_URL == _repo_url()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_and_install_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    expected = f"https://colab.research.google.com/github/{_slug()}/blob/main/tutorials/{path.name}"
    assert f"]({expected})" in first.source, f"{path.name}: badge must point to {expected}"
    assert "colab-badge.svg" in first.source
    install = nb.cells[1]
    src = install.source
    assert install.cell_type == "code"
    # runs everywhere (no skip tag) and does nothing outside Colab
    assert "skip-execution" not in install.metadata.get("tags", [])
    assert re.search(r'^if "google\.colab" in sys\.modules:\n', src, re.M)
    body = src[src.index('if "google.colab" in sys.modules:'):]
    assert all(line.startswith("    ") for line in body.splitlines()[1:] if line.strip()), \
        f"{path.name}: everything after the Colab check must be inside it"
    # the URL once, overridable; a regular install (importable without a restart), torch kept
    assert f'os.environ.get("MEDSAM_LITE_REPO", "{_repo_url()}")' in src
    assert src.count("github.com") == 1
    assert '"pip", "install"' in src and "-e" not in re.findall(r'"(-\w+)"', src)
    assert "torch==" in src and "importlib.invalidate_caches()" in src
    assert "enable_custom_widget_manager" in src and "drive.mount" in src and "GPU" in src
    assert "MEDSAM_LITE_SAMPLES" in src


def test_install_cells_are_identical():
    """Written once: a change to one notebook's install cell must be made in all of them."""
    sources = {p.name: _install_cell(p).source for p in NOTEBOOKS}
    assert len(set(sources.values())) == 1, sorted(sources)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_do_not_redefine_package_logic(path):
    """Helpers belong in the package: notebooks call it and define no functions or classes."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(def|class|lambda) ", cell.source, re.M), f"{path.name} defines:\n{cell.source}"

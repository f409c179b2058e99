"""Build tutorial notebooks with the shared header (Colab badge + Colab-only install cell).

Usage from a builder script::

    from nbtools import header_cells, md, code, write_notebook
    write_notebook("tutorials/01_quickstart.ipynb", "Quickstart", "intro…", [code("…"), md("…")])

The GitHub owner/name comes from ``project.urls.Repository`` in pyproject.toml (one source of
truth; tests/test_notebook_headers.py checks every notebook against it).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def repo_slug() -> str:
    """``owner/name`` from pyproject.toml's ``project.urls.Repository``."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    url = data["project"]["urls"]["Repository"]
    m = re.match(r"https://github\.com/([^/]+/[^/]+?)/?$", url)
    assert m, url
    return m.group(1)


def colab_url(notebook: str) -> str:
    return f"https://colab.research.google.com/github/{repo_slug()}/blob/main/tutorials/{notebook}"


def badge_markdown(notebook: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})"


def install_source() -> str:
    slug = repo_slug()
    name = slug.split("/")[1]
    return (
        "# Colab only (does nothing elsewhere): get the code and the sample data, install,\n"
        "# and enable custom widgets.\n"
        "import sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    !git clone --depth 1 https://github.com/{slug}.git\n"
        f"    %cd {name}/tutorials\n"
        "    !pip install -q -e ..\n"
        "    from google.colab import output\n"
        "    output.enable_custom_widget_manager()"
    )


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, tags: list[str] | None = None):
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    return cell


def header_cells(notebook: str, title: str, intro: str):
    return [
        md(f"# {title}\n\n{badge_markdown(notebook)}\n\n{intro.strip()}"),
        code(install_source(), tags=["skip-execution"]),
    ]


def write_notebook(path: str | Path, title: str, intro: str, cells) -> Path:
    path = Path(path)
    nb = nbformat.v4.new_notebook()
    nb.cells = header_cells(path.name, title, intro) + list(cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path

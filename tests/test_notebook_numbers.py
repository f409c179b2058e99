"""Numbers in a notebook's prose come from its own outputs (issue 23).

The rule, for the markdown cells of every ``tutorials/NN_name.ipynb``:

* **Checked** — a result a reader could take as measured: every decimal number (``0.847``,
  ``1.5``), every percentage (``90 %``), every number with a time unit (``41 s``, ``350 ms``,
  ``2 min``) and every ratio with a trailing ``×`` (``3×``). Each must appear in the outputs
  the same notebook stores (stream text and ``text/plain``), **written as printed**: ``0.77`` does
  not match a printed ``0.770``; a time must be printed with its unit.
* **Not checked** — definitions and settings, which are not results: anything inside a code span
  or a fenced code block (write a setting or a constant as code: `` `lr=1e-4` ``, `` `0.5–99.5` ``
  percentiles, `` `[-500, 1000]` `` HU, `` `3 mm` ``); headings (section numbers); link targets and
  image paths; plain integers without a unit (counts, notebook numbers, years); sizes such as
  ``256×256`` (a ``×`` followed by a digit).

A prose number that no cell prints is either a stale claim or a setting to write as code.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))

_FENCED = re.compile(r"```.*?```", re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_TAG = re.compile(r"<[^>]+>")
_NUM = r"\d+(?:\.\d+)?"
_UNITS = r"(?:ms|s|min|minutes?|seconds?|h|hours?)"
CLAIM = re.compile(
    rf"(?<![\w.])(?P<num>{_NUM})(?:\s?(?P<pct>%)|\s?(?P<unit>{_UNITS})\b|(?P<times>×)(?!\s?\d))"
    rf"|(?<![\w.])(?P<dec>\d+\.\d+)(?![\w.]*\d)"
)


def prose(markdown: str) -> str:
    """A markdown cell without what the rule exempts: fenced code, code spans, headings, links, tags."""
    text = _FENCED.sub(" ", markdown)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return _TAG.sub(" ", _LINK_TARGET.sub("]", _CODE_SPAN.sub(" ", text)))


def claims(markdown: str) -> list[tuple[str, str]]:
    """``[(as written, pattern that must match the outputs)]`` for every checked number."""
    found = []
    for m in CLAIM.finditer(prose(markdown)):
        num = m.group("num") or m.group("dec")
        exact = rf"(?<![\d.]){re.escape(num)}(?![\d])(?!\.\d)"
        if m.group("unit"):
            found.append((m.group(0), exact + rf"\s?{re.escape(m.group('unit'))}\b"))
        else:
            found.append((m.group(0), exact))
    return found


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            parts.append("".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def unprinted(nb) -> list[str]:
    """The checked prose numbers of ``nb`` that its stored outputs do not print."""
    printed = outputs_text(nb)
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for written, pattern in claims(cell.source):
            if not re.search(pattern, printed):
                missing.append(f"markdown cell {i}: {written!r}")
    return missing


def test_the_rule_on_examples():
    text = ("Dice 0.847 here, ≈ 90 % of that, in 41 s (350 ms per box), 3× faster; "
            "`lr=1e-4`, `0.5–99.5` percentiles, 256×256 pixels, 8 cases, notebook 02, year 2024.\n"
            "## 3. A heading with 0.5\n```python\nx = 0.25\n```\n[link](https://x.org/v1.2)")
    assert [w for w, _ in claims(text)] == ["0.847", "90 %", "41 s", "350 ms", "3×"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text), nbformat.v4.new_code_cell("")])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="dice 0.847, ratio 0.90 (90 %), 41 s, 350 ms, 3×\n")]
    assert unprinted(nb) == []
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="dice 0.8470, 90 %, 41.2 s, 350 ms, 3×\n")]
    assert unprinted(nb) == ["markdown cell 0: '0.847'", "markdown cell 0: '41 s'"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_number_in_the_prose_is_printed_by_the_notebook(path):
    missing = unprinted(nbformat.read(path, as_version=4))
    assert not missing, (f"{path.name}: numbers in the prose that no stored output prints (print them in the "
                         "cell that measures them, write settings as `code`, or re-render):\n" + "\n".join(missing))

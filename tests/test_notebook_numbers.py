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


# ---------------------------------------------------------------- the README and the demo (issue 34)
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "RESULTS.md"
#: One run's printout of ``python -m medsam_lite.app.demo`` (its ``printout.txt``), beside the README's figure.
DEMO_PRINTOUT = ROOT / "tutorials" / "images" / "demo_printout.txt"
#: README sections whose numbers are results: the first screen and the sample-data results.
CHECKED_SECTIONS = ("", "## First result", "## What it does on the sample data")


def readme_sections(text: str) -> dict[str, str]:
    """``{heading line: body}`` of a markdown file (``""``: what comes before the first heading)."""
    out, head, body = {}, "", []
    for line in text.splitlines():
        if line.startswith("## "):
            out[head] = "\n".join(body)
            head, body = line, []
        else:
            body.append(line)
    out[head] = "\n".join(body)
    return out


def unsourced(markdown: str, sources: str) -> list[str]:
    """Checked numbers of ``markdown`` (the notebooks' rule) that ``sources`` never writes (as a number:
    tables put the unit in their header)."""
    missing = []
    for written, _ in claims(markdown):
        num = re.match(r"\d+(?:\.\d+)?", written).group(0)
        if not re.search(rf"(?<![\d.]){re.escape(num)}(?![\d])(?!\.\d)", sources):
            missing.append(written)
    return missing


def test_readme_numbers_come_from_bench_results_or_the_demo_printout():
    sections = readme_sections(README.read_text(encoding="utf-8"))
    checked = [body for head, body in sections.items() if any(head.startswith(c) for c in CHECKED_SECTIONS if c)
               or head == ""]
    assert len(checked) == len(CHECKED_SECTIONS), [h for h in sections][:5]
    sources = RESULTS.read_text(encoding="utf-8") + DEMO_PRINTOUT.read_text(encoding="utf-8")
    missing = [w for body in checked for w in unsourced(body, sources)]
    assert not missing, f"README numbers neither bench/RESULTS.md nor the demo printout holds: {missing}"


def test_the_readme_check_catches_an_invented_number():
    assert unsourced("the decoder takes 12.345 ms per box, 99 % of the time", "12.345 in a table") == ["99 %"]


def test_the_demo_printout_is_clean_and_says_what_it_measured():
    text = DEMO_PRINTOUT.read_text(encoding="utf-8")
    assert not re.search(r"Warning|\x1b|\[A|it/s|%\|", text), "dependency warnings or progress bars in the printout"
    assert "NSD at" in text and "mm" in text            # the tolerance is printed with the NSD
    assert "NSD pretrained" in text                      # and a pretrained column beside the fine-tuned one
    assert "kidney_right" in text                        # every trained organ is in the table (or said missing)

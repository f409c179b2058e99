"""Check the stored outputs of the tutorials: what a reader on GitHub sees must be clean.

    python scripts/check_notebook_outputs.py [tutorials/NN_name.ipynb ...]   # default: every tutorial

Fails (exit 1, one line per problem) on:

* an **absolute path** in an output (``/work/…``, ``/root/…``, ``/tmp/…``, ``/home/…``, ``/content/…``,
  the repository's or the user's home folder, ``C:\\…``): print paths relative to ``tutorials/``
  (``medsam_lite.app.tutorial.short_path``);
* a **progress bar not in its final state**: a tqdm widget (its state is not stored: GitHub shows
  it empty — pass ``progress=False`` and print the time), or a text bar whose last state is under 100 %;
* **repeated noise**: the same line of stream output (30 characters or more) three times or more in
  one notebook.

Used by ``scripts/render_notebooks.sh`` after rendering and by ``tests/test_notebook_outputs.py``.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ROOTS = ("work", "root", "tmp", "home", "Users", "content", "private", "var", "mnt", "opt", "srv")
ABSOLUTE = re.compile(r"(?<![\w.~])/(?:%s)/[^\s'\"]*|\b[A-Za-z]:\\\\?[^\s'\"]+" % "|".join(_ROOTS))
BAR = re.compile(r"(\d{1,3})%\|")


def _text(out: dict) -> str:
    text = out.get("text", "")
    plain = out.get("data", {}).get("text/plain", "")
    return ("".join(text) if isinstance(text, list) else text) + ("".join(plain) if isinstance(plain, list) else plain)


def problems(path: Path) -> list[str]:
    """Every problem of one notebook's stored outputs, as ``name cell N: what``."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    name, found, lines = Path(path).name, [], Counter()
    private = {str(ROOT), str(Path.home())} - {"/", ""}
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            text = _text(out)
            hits = ABSOLUTE.findall(text) or [p for p in private if p in text]
            found += [f"{name} cell {i}: absolute path {hit!r}" for hit in hits]
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                if BAR.search(text):
                    found.append(f"{name} cell {i}: a progress-bar widget (stored empty); use progress=False")
                continue
            for line in re.split(r"\n", text):
                states = [s for s in line.split("\r") if s.strip()]
                if states and BAR.search(states[-1]) and BAR.search(states[-1]).group(1) != "100":
                    found.append(f"{name} cell {i}: progress bar stored at {BAR.search(states[-1]).group(1)} %")
            if out.get("output_type") == "stream":
                lines.update(s.strip() for s in re.split(r"[\r\n]", text) if len(s.strip()) >= 30)
    found += [f"{name}: the line {line[:80]!r} is stored {n} times" for line, n in lines.items() if n >= 3]
    return found


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
    found = [p for path in paths for p in problems(path)]
    for line in found:
        print(line, file=sys.stderr)
    print(f"checked {len(paths)} notebooks: {len(found)} problems in their stored outputs")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

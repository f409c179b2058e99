"""List public functions (and methods) of medsam_lite that nothing references: a dead-code check.

Usage: ``python scripts/unreferenced.py`` from the repository root. A name counts as referenced when
it appears (as a word) anywhere in the package, the tests, the notebooks' sources, bench/, scripts/
or the README beyond its own ``def`` line. Prints ``module:line name`` per candidate; exit code 1 when
there is one. Special methods, ``__all__`` entries and the package root's exports are not listed.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1  # occurrences: the def itself


def main() -> int:
    package = sorted((ROOT / "medsam_lite").rglob("*.py"))
    others = (sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "tutorials").glob("*.py"))
              + sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py")) + [ROOT / "README.md"])
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in package + others)
    counts: dict[str, int] = {}
    for word in re.findall(r"\b[A-Za-z_]\w*\b", corpus):
        counts[word] = counts.get(word, 0) + 1
    found = []
    for path in package:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exported = {e.value for n in tree.body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets) for e in n.value.elts}
        defs = [(n, None) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        defs += [(m, n) for n in tree.body if isinstance(n, ast.ClassDef) for m in n.body
                 if isinstance(m, ast.FunctionDef)]
        for node, owner in defs:
            name = node.name
            if name.startswith("_") or name in exported or name.startswith("test"):
                continue
            if any(isinstance(d, ast.Name) and d.id in ("property", "classmethod", "staticmethod") or
                   isinstance(d, ast.Attribute) for d in node.decorator_list) and owner is not None:
                pass
            if counts.get(name, 0) <= LIMIT:
                where = f"{owner.name}." if owner is not None else ""
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {where}{name}")
    print("\n".join(found) or "no unreferenced public function")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

"""The package's shape: subpackages by concern, no import cycle, small modules, no private names
imported across subpackages (issue 18)."""

from __future__ import annotations

import ast
from pathlib import Path

import medsam_lite as ml

PACKAGE = Path(ml.__file__).parent
MAX_LINES = 420  # "~400": a module past this is split


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``[(absolute module, [imported names], line)]`` for every import of medsam_lite in ``path``."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "medsam_lite":
                continue
            names = [a.name for a in node.names]
            # `from . import io` names a submodule
            subs = [f"{target}.{n}" for n in names if (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).exists()
                    or (PACKAGE.parent / (f"{target}.{n}".replace(".", "/") + ".py")).exists()]
            out.append((target, names, node.lineno))
            out.extend((s, [], node.lineno) for s in subs)
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "medsam_lite")
    return out


def _graph() -> dict[str, set[str]]:
    """Module → modules it imports, at module level or inside a function (a deferred import that
    closes a circle is still a circle in the design). The package root only re-exports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        graph[me] = {t for t, _, _ in _imports(path) if t != me and t != "medsam_lite"}
    return graph


def test_no_import_cycle():
    graph = _graph()
    modules = set(graph)
    graph = {m: {t for t in ts if t in modules} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_modules_are_small():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > MAX_LINES} == {}


def test_subpackages_read_as_the_architecture():
    for sub in ("io", "model", "data", "train", "interactive"):
        assert (PACKAGE / sub / "__init__.py").is_file(), sub
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 12, loose


def test_no_private_names_across_subpackages():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        my_sub = me.split(".")[1] if me.count(".") >= 1 else ""
        for target, names, line in _imports(path):
            their_sub = target.split(".")[1] if target.count(".") >= 1 else ""
            if their_sub != my_sub:
                bad += [f"{me}:{line} imports {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert bad == []

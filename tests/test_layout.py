"""The package's shape: the dependency direction, no import cycle, no private name across modules.

The rule is what a module may import, not how long it is::

    app/                       cli · challenge runner · config · notebook helpers · demo
      │
    (root modules: evaluate, clicks, plotting, samples, downloads, checks)
      │
    interactive/ ──▶ model, io          train/ ──▶ data, model, io
                                          │
                                        data/ ──▶ model, io
                                          │
                                        model/ ──▶ io
                                          │
                                        io/
    leaves: errors · fileutil · metrics · distributed   (import only other leaves)

``ALLOWED`` below is that picture as data; a subpackage importing one above it (``data`` → ``train``,
``io`` → ``model``, anything → ``app``) fails :func:`test_dependency_direction`. A module's size is
not a rule: :func:`test_long_modules_are_only_noted` prints the longest ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import medsam_lite as ml

PACKAGE = Path(ml.__file__).parent

#: Shared leaves: they import nothing of the package but one another (``errors`` nothing at all).
LEAVES = {"errors", "fileutil", "metrics", "distributed"}
#: Root modules between the subpackages and ``app`` (they use the library, the library does not use them).
ROOT = {"evaluate", "clicks", "plotting", "samples", "downloads", "checks"}
#: Layer → the layers it may import (besides itself). ``medsam_lite`` is the package root (public API).
ALLOWED = {
    "errors": set(),
    "fileutil": {"errors"},
    "metrics": {"errors"},
    "distributed": {"errors"},
    "checks": {"errors"},
    "samples": {"errors"},
    "downloads": {"errors", "fileutil"},
    "io": LEAVES | {"checks"},
    # the model table fetches a checkpoint on first use (medsam_lite.downloads)
    "model": LEAVES | {"checks", "io", "downloads"},
    "data": LEAVES | {"checks", "io", "model"},
    "train": LEAVES | {"checks", "io", "model", "data", "clicks"},
    # plotting draws; canvas (the widget) uses its colours
    "interactive": LEAVES | {"checks", "io", "model", "plotting"},
    "clicks": LEAVES | {"checks", "io", "model", "interactive"},
    "plotting": LEAVES | {"checks", "io", "model", "data"},
    "evaluate": LEAVES | {"checks", "io", "model", "data", "clicks", "interactive"},
    "app": LEAVES | ROOT | {"io", "model", "data", "train", "interactive", "root"},
    "root": LEAVES | ROOT | {"io", "model", "data", "train", "interactive", "app"},
}
#: Modules a predict path loads: none of them may import training code (``train``).
PREDICT = ("medsam_lite.interactive.predict", "medsam_lite.interactive.volume", "medsam_lite.interactive.labelmaps",
           "medsam_lite.model.models", "medsam_lite.model.inference")
SOFT_NOTE_LINES = 600


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    """``medsam_lite.data.store`` → ``data``; ``medsam_lite`` → ``root``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def _imports(path: Path, root: Path = PACKAGE) -> list[tuple[str, list[str], int]]:
    """``[(absolute module, [imported names], line)]`` for every import of medsam_lite in ``path``."""
    me = _module_name(path, root)
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
            subs = [f"{target}.{n}" for n in names if (root.parent / f"{target}.{n}".replace(".", "/")).exists()
                    or (root.parent / (f"{target}.{n}".replace(".", "/") + ".py")).exists()]
            out.append((target, [] if subs and len(subs) == len(names) else names, node.lineno))
            out.extend((s, [], node.lineno) for s in subs)
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "medsam_lite")
    return out


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → modules it imports, at module level or inside a function (a deferred import that
    closes a circle is still a circle in the design). The package root only re-exports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        me = _module_name(path, package)
        graph[me] = {t for t, _, _ in _imports(path, package) if t != me and t != "medsam_lite"}
    return graph


def direction_violations(package: Path = PACKAGE) -> list[str]:
    """Every import that goes against :data:`ALLOWED` (``me:line imports target``)."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        me = _module_name(path, package)
        mine = _layer(me)
        assert mine in ALLOWED, f"{me}: a new top-level module or subpackage; give its layer in ALLOWED"
        for target, names, line in _imports(path, package):
            theirs = _layer(target)
            if target == "medsam_lite" and (mine == "root" or names == ["__version__"]):  # set before any submodule loads
                continue
            if theirs != mine and theirs not in ALLOWED[mine]:
                bad.append(f"{me}:{line} imports {target} ({mine} may import {sorted(ALLOWED[mine]) or 'nothing'})")
    return bad


def test_dependency_direction():
    assert direction_violations() == []


def test_data_does_not_import_train_and_predict_does_not_reach_training_code():
    graph = _graph()
    assert not [t for m, ts in graph.items() if _layer(m) == "data" for t in ts if _layer(t) == "train"]
    seen, todo = set(), list(PREDICT)
    while todo:
        m = todo.pop()
        if m in seen or m not in graph:
            continue
        seen.add(m)
        todo.extend(graph[m])
    assert sorted(m for m in seen if _layer(m) in ("train", "app")) == []


def test_the_layout_test_fails_on_a_violation(tmp_path):
    """A copy of the package in which ``data/embed.py`` imports ``train`` (and ``io`` imports
    ``model``) is caught: the rule is not vacuous."""
    import shutil

    copy = tmp_path / "medsam_lite"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    embed = copy / "data" / "embed.py"
    embed.write_text(embed.read_text(encoding="utf-8") + "\nfrom ..train.finetune import finetune\n", encoding="utf-8")
    cases = copy / "io" / "cases.py"
    cases.write_text(cases.read_text(encoding="utf-8") + "\nfrom ..model.models import load_model\n", encoding="utf-8")
    bad = direction_violations(copy)
    assert any(b.startswith("medsam_lite.data.embed:") and "medsam_lite.train.finetune" in b for b in bad), bad
    assert any(b.startswith("medsam_lite.io.cases:") and "medsam_lite.model.models" in b for b in bad), bad


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


def test_long_modules_are_only_noted(capsys):
    """Size is not a rule (a long cohesive module is fine): the longest modules are printed."""
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    long = {k: v for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]) if v > SOFT_NOTE_LINES}
    with capsys.disabled():
        if long:
            print(f"\nnote: modules over {SOFT_NOTE_LINES} lines (not a rule; split where a concern ends): {long}")


def test_subpackages_read_as_the_architecture():
    for sub in ("io", "model", "data", "train", "interactive", "app"):
        assert (PACKAGE / sub / "__init__.py").is_file(), sub
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert loose <= LEAVES | ROOT, sorted(loose - LEAVES - ROOT)


def test_no_private_names_across_modules():
    """No ``_private`` name is imported from another module (a split module is not a private half)."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        for target, names, line in _imports(path):
            if target != me:
                bad += [f"{me}:{line} imports {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert bad == []

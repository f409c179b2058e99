"""Nothing stale: every dotted ``medsam_lite.*`` path that the package's docstrings and messages,
README.md, the notebooks' sources and the scripts name can be imported (a module, or a name in one).

A module that moves leaves no stub behind, so a path in a message or a docstring that still names
the old place would send a user to nothing; this test finds it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import medsam_lite as ml

ROOT = Path(ml.__file__).parent.parent
PATH = re.compile(r"(?<![\w/.-])medsam_lite(?:\.[A-Za-z_]\w*)+(?![\w/])")
#: Not Python paths: file formats and tags that carry the package's name.
NOT_PATHS: set[str] = set()  # a format tag ("medsam_lite.dataset/1") is skipped by the pattern


def _sources() -> list[Path]:
    files = sorted((ROOT / "medsam_lite").rglob("*.py")) + [ROOT / "README.md"]
    files += sorted((ROOT / "tutorials").glob("*.py")) + sorted((ROOT / "tutorials").glob("*.ipynb"))
    files += sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    return [f for f in files if f.is_file()]


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def named_paths() -> dict[str, list[str]]:
    """``{dotted path: [file:line, …]}`` of every ``medsam_lite.*`` path in the sources."""
    out: dict[str, list[str]] = {}
    for path in _sources():
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for m in PATH.finditer(line):
                dotted = m.group(0).rstrip(".")
                if dotted not in NOT_PATHS:
                    out.setdefault(dotted, []).append(f"{path.relative_to(ROOT)}:{i}")
    return out


def test_the_scan_finds_the_paths():
    paths = named_paths()
    assert "medsam_lite.io.formats.label_writer" in paths and len(paths) > 30


def test_every_named_medsam_lite_path_imports():
    stale = {p: where[:3] for p, where in sorted(named_paths().items()) if not _resolves(p)}
    assert stale == {}


@pytest.mark.parametrize("gone", ["medsam_lite.transforms", "medsam_lite.tutorial", "medsam_lite.train.distributed"])
def test_a_gone_module_does_not_resolve(gone):
    assert not _resolves(gone)

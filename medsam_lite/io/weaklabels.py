"""Weak labels on disk: per-case boxes (2D or 3D) and RECIST lines, as CSV or JSON.

These are what hospitals hold by the thousand instead of masks; :func:`medsam_lite.preprocess`
reads them with ``weak=<file>`` (marking their targets ``weak`` in the manifest) and
:func:`medsam_lite.finetune` trains the decoder on them (``BoxSupervisedLoss``).
:meth:`medsam_lite.interactive.session.AnnotationSession.save_boxes` writes the boxes drawn in the widget.

Coordinates: ``x`` = column, ``y`` = row, in **original pixels of a slice** (XYXY, inclusive);
``slice`` (and ``z0``/``z1``) = the slice index along the axis ``preprocess`` cuts the volume on
(array order; ``z`` of a ``(z, y, x)`` volume for axial scans, ``0`` for a 2D image).

CSV (one row per annotation; a header line; empty cells where a column does not apply)::

    case,label,kind,slice,x0,y0,x1,y1,x2,y2,x3,y3,z0,z1
    sub-01,3,box,40,100,80,140,120,,,,,,
    sub-01,3,box3d,,100,80,140,120,,,,,36,44
    sub-02,3,recist,41,102,90,138,110,118,86,122,114,,

* ``box``: ``x0,y0,x1,y1`` on ``slice``;
* ``box3d``: ``x0,y0,x1,y1`` on every slice ``z0 … z1`` (inclusive; the same box on each slice,
  so the ends of the range get a box larger than the object — prefer 2D boxes where you have them);
* ``recist``: the long axis from ``(x0, y0)`` to ``(x1, y1)`` on ``slice``, and optionally the
  short axis from ``(x2, y2)`` to ``(x3, y3)``. The target's box is the bounding box of both
  lines (with the long axis only: of the rectangle 0.8 × its length wide around it); the line
  pixels are foreground evidence.

``label``: a label value (integer ≥ 1) or a label name given in ``preprocess(labels={...})``.

Several annotations of one label on one slice (e.g. one box per ventricle, as an annotator draws
two separate structures) are allowed: each is stored as its own row, and ``finetune`` trains them as
**one** target whose prompt is their bounding box and whose loss constrains each box (nothing
between or outside the boxes is the object) — unless the dataset was prepared with
``split_components=True``, where each annotation is its own target (as each mask component is).

JSON: ``{"<case>": [annotation, ...]}`` with annotations ``{"label": 3, "kind": "box", "slice": 40,
"box": [x0, y0, x1, y1]}``, ``{"label": 3, "kind": "box3d", "box": [x0, y0, z0, x1, y1, z1]}`` or
``{"label": 3, "kind": "recist", "slice": 41, "long": [[x, y], [x, y]], "short": [[x, y], [x, y]]}``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_write_text

__all__ = ["WeakAnnotation", "read_weak_labels", "write_weak_labels", "WEAK_KINDS", "CSV_COLUMNS"]

WEAK_KINDS = ("box", "box3d", "recist")
CSV_COLUMNS = ["case", "label", "kind", "slice", "x0", "y0", "x1", "y1", "x2", "y2", "x3", "y3", "z0", "z1"]
#: Width of a RECIST target across its long axis when no short axis is given (× the long axis).
RECIST_RATIO = 0.8


@dataclass(frozen=True)
class WeakAnnotation:
    """One weak annotation (see the module docstring for the coordinates).

    Attributes:
        case: the case name.
        label: label value (int) or name (str).
        kind: ``"box"``, ``"box3d"`` or ``"recist"``.
        slice: the slice index (``box``/``recist``); None for ``box3d``.
        box: ``(x0, y0, x1, y1)`` float, XYXY original slice pixels (for ``recist``: derived).
        z_range: ``(z0, z1)`` inclusive for ``box3d``, else None.
        lines: for ``recist``: ``((x, y), (x, y))`` per line (long axis first), else ``()``.
    """

    case: str
    label: int | str
    kind: str
    slice: int | None
    box: tuple
    z_range: tuple | None = None
    lines: tuple = ()

    def slices(self) -> list[int]:
        """The slice indices this annotation lies on."""
        return list(range(self.z_range[0], self.z_range[1] + 1)) if self.kind == "box3d" else [int(self.slice)]


def _num(value, what: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {what} must be a number, got {value!r}.") from None
    if not math.isfinite(v):
        raise InputError(f"{where}: {what} must be finite, got {value!r}.")
    return v


def _int(value, what: str, where: str) -> int:
    v = _num(value, what, where)
    if v != round(v) or v < 0:
        raise InputError(f"{where}: {what} must be an integer ≥ 0, got {value!r}.")
    return int(v)


def _label(value, where: str) -> int | str:
    if isinstance(value, str) and value.strip() and not value.strip().lstrip("-").isdigit():
        return value.strip()
    v = _int(value, "label", where)
    if v == 0:
        raise InputError(f"{where}: label 0 is the background; give the label value (≥ 1) or its name.")
    return v


def _recist_box(lines, where: str) -> tuple:
    (a, b), rest = lines[0], lines[1:]
    a, b = np.asarray(a, float), np.asarray(b, float)
    length = float(np.hypot(*(b - a)))
    if length == 0:
        raise InputError(f"{where}: the RECIST long axis has two identical end points.")
    if rest:
        pts = np.array([a, b, *[np.asarray(p, float) for p in rest[0]]])
    else:  # the rectangle RECIST_RATIO × length wide, centred on the long axis
        u = (b - a) / length
        n = np.array([-u[1], u[0]]) * RECIST_RATIO * length / 2
        pts = np.array([a + n, a - n, b + n, b - n])
    return tuple(float(v) for v in (*pts.min(0), *pts.max(0)))


def _make(case, label, kind, slice_, coords: dict, where: str) -> WeakAnnotation:
    if not isinstance(case, str) or not case:
        raise InputError(f"{where}: case must be a case name, got {case!r}.")
    kind = str(kind).strip().lower()
    if kind not in WEAK_KINDS:
        raise InputError(f"{where}: kind must be one of {list(WEAK_KINDS)}, got {kind!r}.")
    label = _label(label, where)
    if kind == "recist":
        lines = tuple(tuple((_num(p[0], "x", where), _num(p[1], "y", where)) for p in line)
                      for line in coords["lines"])
        box = _recist_box(lines, where)
        return WeakAnnotation(case, label, kind, _int(slice_, "slice", where), box, None, lines)
    box = tuple(_num(v, n, where) for v, n in zip(coords["box"], ("x0", "y0", "x1", "y1")))
    if box[0] > box[2] or box[1] > box[3]:
        raise InputError(f"{where}: box {list(box)} is inverted; give XYXY (x0 ≤ x1, y0 ≤ y1).")
    if kind == "box3d":
        z0, z1 = _int(coords["z0"], "z0", where), _int(coords["z1"], "z1", where)
        if z0 > z1:
            raise InputError(f"{where}: z0 {z0} > z1 {z1}.")
        return WeakAnnotation(case, label, kind, None, box, (z0, z1))
    return WeakAnnotation(case, label, kind, _int(slice_, "slice", where), box)


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def read_weak_labels(path) -> list[WeakAnnotation]:
    """Read a weak-label file (``.csv`` or ``.json``, see the module docstring).

    Raises:
        InputError: a missing or unreadable file, an unknown kind, a missing or non-numeric
            coordinate, an inverted box — naming the row (CSV line or JSON case and index).
    """
    if isinstance(path, (list, tuple)) and all(isinstance(a, WeakAnnotation) for a in path):
        return list(path)
    p = Path(path)
    if not p.is_file():
        raise InputError(f"weak-label file {p} not found; give a .csv or .json file (see "
                         "help(medsam_lite.io.weaklabels)).")
    out = []
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{p} is not valid JSON ({exc}).") from None
        if not isinstance(data, dict):
            raise InputError(f"{p} must hold an object {{case: [annotation, …]}}.")
        for case, items in data.items():
            for i, a in enumerate(items if isinstance(items, list) else [items]):
                where = f"{p.name} [{case!r}][{i}]"
                if not isinstance(a, dict):
                    raise InputError(f"{where}: an annotation must be an object, got {a!r}.")
                kind = str(a.get("kind", "box")).lower()
                try:
                    if kind == "recist":
                        coords = {"lines": [a["long"]] + ([a["short"]] if a.get("short") else [])}
                    elif kind == "box3d":
                        x0, y0, z0, x1, y1, z1 = a["box"]
                        coords = {"box": (x0, y0, x1, y1), "z0": z0, "z1": z1}
                    else:
                        coords = {"box": list(a["box"])}
                        if len(coords["box"]) != 4:
                            raise ValueError("box: expected [x0, y0, x1, y1]")
                except (KeyError, TypeError, ValueError) as exc:
                    raise InputError(f"{where}: missing or malformed {exc} for kind {kind!r}.") from None
                out.append(_make(case, a.get("label"), kind, a.get("slice"), coords, where))
        return out
    if p.suffix.lower() != ".csv":
        raise InputError(f"weak-label file {p} must end in .csv or .json.")
    with p.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"case", "label", "kind", "x0", "y0", "x1", "y1"} <= set(rows[0]):
        raise InputError(f"{p} needs the columns {CSV_COLUMNS} (header line first); it has {list(rows[0])}.")
    for i, r in enumerate(rows, start=2):
        where = f"{p.name} line {i}"
        kind = str(r.get("kind", "")).strip().lower()
        if kind == "recist":
            lines = [((r["x0"], r["y0"]), (r["x1"], r["y1"]))]
            if not all(_blank(r.get(k)) for k in ("x2", "y2", "x3", "y3")):
                lines.append(((r.get("x2"), r.get("y2")), (r.get("x3"), r.get("y3"))))
            coords = {"lines": lines}
        else:
            coords = {"box": (r["x0"], r["y0"], r["x1"], r["y1"]), "z0": r.get("z0"), "z1": r.get("z1")}
        out.append(_make(str(r.get("case", "")).strip(), r.get("label"), kind, r.get("slice"), coords, where))
    return out


def write_weak_labels(path, annotations) -> Path:
    """Write annotations as a weak-label CSV or JSON (by ``path``'s suffix), atomically; returns the path."""
    p = Path(path)
    anns = list(annotations)
    if p.suffix.lower() == ".json":
        data: dict = {}
        for a in anns:
            item = {"label": a.label, "kind": a.kind}
            if a.kind == "recist":
                item.update(slice=a.slice, long=[list(q) for q in a.lines[0]],
                            **({"short": [list(q) for q in a.lines[1]]} if len(a.lines) > 1 else {}))
            elif a.kind == "box3d":
                item["box"] = [*a.box[:2], a.z_range[0], *a.box[2:], a.z_range[1]]
            else:
                item.update(slice=a.slice, box=list(a.box))
            data.setdefault(a.case, []).append(item)
        atomic_write_text(p, json.dumps(data, indent=1))
        return p
    if p.suffix.lower() != ".csv":
        raise InputError(f"weak-label file {p} must end in .csv or .json.")

    def fmt(v):
        return "" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

    lines = [",".join(CSV_COLUMNS)]
    for a in anns:
        row = dict.fromkeys(CSV_COLUMNS)
        row.update(case=a.case, label=a.label, kind=a.kind, slice=a.slice)
        if a.kind == "recist":
            pts = [q for line in a.lines for q in line]
            for k, (x, y) in enumerate(pts[:4]):
                row[f"x{k}"], row[f"y{k}"] = x, y
        else:
            row.update(x0=a.box[0], y0=a.box[1], x1=a.box[2], y1=a.box[3])
            if a.kind == "box3d":
                row.update(z0=a.z_range[0], z1=a.z_range[1])
        if any("," in str(row[k]) or '"' in str(row[k]) for k in ("case", "label")):
            raise InputError(f"case / label names with commas or quotes cannot go into the CSV: {a.case!r}, "
                             f"{a.label!r}; write a .json file instead.")
        lines.append(",".join(fmt(row[k]) for k in CSV_COLUMNS))
    atomic_write_text(p, "\n".join(lines) + "\n")
    return p

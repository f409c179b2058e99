"""Weak labels in ``preprocess``: cases with boxes / RECIST lines only, the annotations checked
against their volume, and the weak targets written beside the mask targets (see
:mod:`medsam_lite.io.weaklabels` for the file format and :func:`medsam_lite.preprocess`'s ``weak=``).

A stored weak target is a ``uint8`` PNG of the stored slice's size: 0 outside the box, 128 inside it,
255 on RECIST line pixels; its manifest row has ``weak`` = ``"box"`` / ``"recist"``, the box in
original slice pixels, ``component`` = 1000 + k.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.cases import Case

__all__ = ["weak_mask_image", "check_weak", "weak_rows", "weak_only_cases", "weak_by_case"]


def weak_mask_image(ann, value: int, h: int, w: int, hw: tuple[int, int]) -> np.ndarray:
    """The stored weak target of one annotation: ``hw`` uint8, 128 inside the box, 255 on RECIST lines."""
    sy, sx = hw[0] / h, hw[1] / w
    x0, y0, x1, y1 = ann.box
    out = np.zeros(hw, np.uint8)
    r0, r1 = int(math.floor(y0 * sy)), min(hw[0] - 1, max(int(math.floor(y0 * sy)), int(math.ceil((y1 + 1) * sy)) - 1))
    c0, c1 = int(math.floor(x0 * sx)), min(hw[1] - 1, max(int(math.floor(x0 * sx)), int(math.ceil((x1 + 1) * sx)) - 1))
    out[max(r0, 0):r1 + 1, max(c0, 0):c1 + 1] = 128
    for (ax, ay), (bx, by) in ann.lines:  # pixel centres along each line, at stored resolution
        n = int(math.ceil(max(abs(bx - ax) * sx, abs(by - ay) * sy) * 2)) + 2
        xs = np.clip(np.rint((np.linspace(ax, bx, n) + 0.5) * sx - 0.5), 0, hw[1] - 1).astype(int)
        ys = np.clip(np.rint((np.linspace(ay, by, n) + 0.5) * sy - 0.5), 0, hw[0] - 1).astype(int)
        out[ys, xs] = 255
    return out


def check_weak(weak: list, case: Case, shape: tuple, axis: int, labels: dict[int, str]) -> None:
    """Every weak annotation of ``case`` on a slice of the volume and inside it, with a known label."""
    n = shape[axis]
    h, w = (shape[a] for a in range(3) if a != axis)
    for a in weak:
        where = f"case {case.name}: {a.kind} annotation of label {a.label!r}"
        bad = [z for z in a.slices() if z >= n]
        if bad:
            raise InputError(f"{where} lies on slice {bad[0]}, but the case has {n} slices along axis {axis} "
                             "(slice indices count from 0 along preprocess's slicing axis).")
        x0, y0, x1, y1 = a.box
        if x0 < 0 or y0 < 0 or x1 > w - 1 or y1 > h - 1 or a.kind == "recist" and any(
                not (0 <= x <= w - 1 and 0 <= y <= h - 1) for line in a.lines for x, y in line):
            raise InputError(f"{where} on slice(s) {a.slices()[:3]} has coordinates outside the {w}×{h} slice "
                             f"(x in [0, {w - 1}], y in [0, {h - 1}]; original slice pixels, x = column).")


def weak_only_cases(source, has_weak: bool):
    """``(source without weak-only cases, [Case(name, image, None)])``: entries ``{case: (image, None)}``
    (or ``{case: image}``) of a dict source are cases with weak labels only."""
    if not isinstance(source, dict):
        return source, []
    only = {k: v for k, v in source.items()
            if isinstance(v, (str, os.PathLike)) or (isinstance(v, (tuple, list)) and len(v) == 2 and v[1] is None)}
    if only and not has_weak:
        raise InputError(f"case(s) {sorted(only)[:5]} have no label map; give one, or weak labels with weak=<file>.")
    cases = []
    for name, v in only.items():
        image = Path(v if isinstance(v, (str, os.PathLike)) else v[0])
        if not image.exists():
            raise InputError(f"image {image} of case {name!r} not found.")
        cases.append(Case(str(name), image, None))
    rest = {k: v for k, v in source.items() if k not in only}
    return rest, cases


def weak_by_case(weak_list: list, cases: list, labels) -> dict:
    """Weak annotations per case, with label names turned into values; unknown cases / names refused."""
    names = {c.name for c in cases}
    values = {str(v): int(k) for k, v in labels.items()} if isinstance(labels, dict) else {}
    out: dict = {}
    for a in weak_list:
        if a.case not in names:
            raise InputError(f"weak labels name case {a.case!r}, which is not a case of the source "
                             f"({sorted(names)[:10]}).")
        label = a.label
        if isinstance(label, str):
            if label not in values:
                raise InputError(f"weak label {label!r} (case {a.case}) is a name: give labels={{value: name}} to "
                                 f"preprocess naming it, or use the label value (known names: {sorted(values)}).")
            label = values[label]
        out.setdefault(a.case, []).append(dataclasses.replace(a, label=int(label)))
    return out


def weak_rows(anns: list, case: str, i: int, out: Path, labels: dict, split: str, counts: dict, hw_orig, hw,
              spacings, axis: int, image_rel: str, save_png) -> list[dict]:
    """Write slice ``i``'s weak targets (one per annotation) and return their manifest rows."""
    (h, w), rows = hw_orig, []
    for k, a in enumerate(anns, start=1):
        mask_rel = f"masks/{case}/{i:04d}_l{a.label}_w{k}.png"
        save_png(weak_mask_image(a, a.label, h, w, hw), out / mask_rel)
        x0, y0, x1, y1 = a.box
        counts[a.label]["weak"] = counts[a.label].get("weak", 0) + 1
        rows.append(dict(
            case=case, slice=i, label=a.label, label_name=labels[a.label], component=1000 + k, split=split,
            pixels=int(round((x1 - x0 + 1) * (y1 - y0 + 1))), x0=float(x0), y0=float(y0), x1=float(x1),
            y1=float(y1), height=h, width=w, spacing_row=spacings[0], spacing_col=spacings[1],
            slice_spacing=spacings[2], axis=axis, image=image_rel, mask=mask_rel,
            weak="recist" if a.kind == "recist" else "box"))
    return rows

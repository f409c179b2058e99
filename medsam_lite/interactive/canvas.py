"""The edge to jupyter-bbox-widget: its canvas (with clicks) and its XYWH boxes.

The widget's boxes are ``{"x", "y", "width", "height", "label"}`` integers (XYWH, top-left
corner, natural image pixels); the package's are XYXY floats (:func:`~medsam_lite.xywh_to_xyxy`).
The widget only sends a 0×0 box on mouse-down and the real one on mouse-up: a click without drag
is reported by a few lines of JavaScript wrapped around the widget's module (:class:`Canvas`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
from jupyter_bbox_widget import BBoxWidget

from ..errors import InputError
from ..model.geometry import check_boxes
from ..plotting import color

#: JavaScript wrapped around the widget's renderer: a mouse-up within 4 CSS px of its mouse-down on
#: the image or inside a box sends ``{"type": "medsam-lite-click", "x", "y", "shift"}`` (pixel
#: centres, natural image pixels), after the widget's own mouse-up handler.
_CLICK_JS = r"""
function __medsamLiteRender(base, ctx) {
  const { model, el } = ctx;
  const cleanup = base.render(ctx);
  let down = null;
  const onDown = (ev) => {
    const t = ev.target, tag = (t.tagName || '').toLowerCase();
    down = ev.button === 0 && (tag === 'img' || tag === 'svg' || (t.classList && t.classList.contains('movable')))
      ? { x: ev.clientX, y: ev.clientY } : null;
  };
  const onUp = (ev) => {
    const d = down; down = null;
    if (!d || ev.button !== 0 || Math.hypot(ev.clientX - d.x, ev.clientY - d.y) > 4) return;
    const img = el.querySelector('img[alt="annotate me"]');
    if (!img || !img.naturalWidth) return;
    const r = img.getBoundingClientRect();
    const x = (ev.clientX - r.left) * img.naturalWidth / r.width - 0.5;
    const y = (ev.clientY - r.top) * img.naturalHeight / r.height - 0.5;
    if (x < -0.5 || y < -0.5 || x > img.naturalWidth - 0.5 || y > img.naturalHeight - 0.5) return;
    model.send({ type: 'medsam-lite-click', x, y, shift: ev.shiftKey });
  };
  el.addEventListener('mousedown', onDown, true);
  window.addEventListener('mouseup', onUp);
  return () => {
    el.removeEventListener('mousedown', onDown, true);
    window.removeEventListener('mouseup', onUp);
    if (typeof cleanup === 'function') cleanup();
  };
}
"""
_EXPORT = re.compile(r"export\s*\{\s*(\w+)\s+as\s+default\s*\};?\s*$")
CLICKS_IN_BROWSER = bool(_EXPORT.search(BBoxWidget._esm))  # False: a widget version whose module we cannot wrap


class Canvas(BBoxWidget):
    """The bbox widget, shown at least 512 CSS px wide (boxes stay in image pixels), reporting clicks."""

    _css = BBoxWidget._css + "\n.medsam-lite-canvas img { width: 512px; max-width: 100%; }\n"
    _esm = _EXPORT.sub(lambda m: _CLICK_JS + "export default { render: (ctx) => __medsamLiteRender("
                       + m.group(1) + ", ctx) };\n", BBoxWidget._esm)

    def __init__(self, on_click: Callable[[dict], None], **kwargs):
        self._on_click = on_click
        super().__init__(**kwargs)

    def _handle_custom_msg(self, content, buffers):
        if isinstance(content, dict) and content.get("type") == "medsam-lite-click":
            self._on_click(content)
        else:
            super()._handle_custom_msg(content, buffers)


class View:
    """Array pixels ↔ the widget's display pixels of one ``H×W`` slice: the image is shown flipped
    (``flip_rows``, ``flip_cols``: radiological orientation, :func:`medsam_lite.io.display.display_flips`),
    and every box and click crossing the widget's edge is converted here, so the session, the
    prompts and the masks stay in array pixels.

    Widget boxes (XYWH ints) are flipped as pixel-edge intervals (``x' = W − x − width``), clicks
    (pixel centres) as ``x' = W − 1 − x``; both are their own inverse.
    """

    def __init__(self, hw: tuple[int, int], flip_rows: bool = False, flip_cols: bool = False):
        self.hw, self.flip_rows, self.flip_cols = tuple(hw), bool(flip_rows), bool(flip_cols)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """An ``H×W(×3)`` array-order image as displayed."""
        return np.ascontiguousarray(rgb[::-1 if self.flip_rows else 1, ::-1 if self.flip_cols else 1])

    def box(self, b: dict) -> dict:
        """A widget box (XYWH dict) between array and display pixels (either way)."""
        h, w = self.hw
        out = dict(b)
        try:
            if self.flip_cols:
                out["x"] = w - int(b["x"]) - int(b["width"])
            if self.flip_rows:
                out["y"] = h - int(b["y"]) - int(b["height"])
        except (KeyError, TypeError, ValueError):
            return dict(b)  # malformed: reported by the view as it is
        return out

    def boxes(self, boxes) -> list[dict]:
        return [self.box(b) for b in boxes]

    def point(self, x: float, y: float) -> tuple[float, float]:
        """A click (pixel centre) between array and display pixels (either way)."""
        h, w = self.hw
        return ((w - 1) - x if self.flip_cols else x), ((h - 1) - y if self.flip_rows else y)


def hex_color(i: int) -> str:
    r, g, b = (int(round(v * 255)) for v in color(i))
    return f"#{r:02x}{g:02x}{b:02x}"


def key(box: dict) -> tuple[int, int, int, int]:
    return (box["x"], box["y"], box["width"], box["height"])


def blank_note(z: int) -> str:
    return f"slice {z} is blank (constant): there is nothing to segment, boxes drawn on it are ignored."


def to_widget_box(box, label: str, hw: tuple[int, int]) -> dict:
    """A widget box (XYWH ints) from an XYXY box in original pixels, rounded to whole pixels."""
    xyxy = check_boxes(box, hw)[0]
    x0, y0, x1, y1 = (int(round(float(v))) for v in xyxy)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"box {list(map(float, xyxy))} is less than a pixel wide or high once rounded to "
                         "whole pixels; draw a bigger box.")
    return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "label": label}


def split_box_item(item) -> tuple:
    """``(box, label or None, slice or None)`` from ``box``, ``(box, label)`` or ``(box, label, z)``."""
    try:
        if len(item) == 4 and all(np.ndim(v) == 0 and not isinstance(v, str) for v in item):
            return item, None, None
        if len(item) in (2, 3) and np.shape(item[0]) == (4,):
            return item[0], item[1], (item[2] if len(item) == 3 else None)
    except (TypeError, KeyError, IndexError, ValueError):
        pass
    raise InputError(f"a box must be [x0, y0, x1, y1] (XYXY), (box, label) or (box, label, slice); got {item!r}.")


def is_click_box(w: int, h: int, hw: tuple[int, int]) -> bool:
    """The 0×0 box of a mouse-down, or the few-pixel box a click without drag leaves (the image
    is shown ≥ 512 CSS px wide; a click moves ≤ 4 CSS px)."""
    return w <= 0 or h <= 0 or max(w, h) <= max(2, -(-4 * max(hw) // 512))

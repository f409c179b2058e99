"""Draw a box, get a mask, click to correct it: :class:`BoxPrompter`, a view over an
:class:`~medsam_lite.interactive.session.AnnotationSession`, which holds the objects, prompts and masks.

The view holds what is shown: the bbox widget (:mod:`.canvas`: XYWH boxes and clicks in the pixels
of the radiological view become XYXY array pixels at this edge; every API takes array pixels), a
slice slider, the click mode, an undo button, the overlay image and a status line. Without a front
end (``nbmake``, a script) ``default_boxes``, :meth:`BoxPrompter.add_box` and :meth:`BoxPrompter.click` give masks.
"""

from __future__ import annotations

import html
import io as _io
import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import numpy as np
from PIL import Image

from ..errors import InputError
from ..model.clickrule import clicked_pixel
from ..model.geometry import check_boxes, xywh_to_xyxy
from ..model.models import SamModel
from ..io.display import display_flips, display_window, radiological_flips
from ..plotting import overlay
from .canvas import Canvas, View, blank_note, hex_color, is_click_box, key, split_box_item, to_widget_box
from .predict import resolve_preset
from .session import AnnotationSession


def click_note(before: np.ndarray, after: np.ndarray, positive: bool, xy: tuple) -> str:
    """The status line's account of a click: the pixels it added to and removed from its object's mask, and,
    where it changed at most the clicked pixel or the mask already agreed with it, why and what to do (a click
    is never silent).

    Args:
        before, after: ``H×W`` bool, the object's mask before and after the click (original pixels).
        positive: the click's side (``True`` foreground).
        xy: the click, XY in the same pixels.
    """
    added, removed = int(np.count_nonzero(after & ~before)), int(np.count_nonzero(before & ~after))
    kind = "foreground" if positive else "background"
    text = f"last click ({kind} at {xy[0]:.0f}, {xy[1]:.0f}): +{added} / −{removed} px"
    if bool(before[clicked_pixel(*xy, before.shape)]) == bool(positive):
        return text + (" — the mask already agreed with it there: a foreground click goes where the mask misses the "
                       "target, a background click where it covers too much")
    if added + removed <= 1:
        return text + (" — at most the clicked pixel: on the mask's 1-px rim, or where the image cannot tell the tissue "
                       "there from the other side, a click changes little; click deeper in the error, or undo")
    return text


class BoxPrompter(widgets.VBox):
    """Draw boxes on an image or volume slices, see their masks live, correct them with clicks.

    Example::

        prompter = BoxPrompter(image, labels=["tumour", "liver"], default_boxes=[([40, 52, 90, 110], "tumour")])
        prompter                                    # draw, move, delete boxes; click to correct
        prompter.label_map                          # H×W uint8, 1 = tumour, 2 = liver
        prompter.save("tumour_mask.png")

    Display: a slice slider (3D only), the drawing canvas, the click mode and an undo button, and
    a status line (time of the last mask update, image encoder runs; after a click, the pixels it added
    and removed, and why where it changed at most the clicked pixel or the mask already agreed with it:
    :func:`click_note`). Keys in the canvas (from
    jupyter-bbox-widget): ``1``–``9`` choose the class of the next box, ``Delete`` removes the
    selected box, ``C`` gives it the current class. A **click** without drag adds a point to the
    selected object (the box last drawn or clicked): foreground, or background with the
    "background" click mode or Shift; the mask is decoded again from the box, every click and the
    previous mask. Undo takes back the last box, move or click. A blank (constant) slice is shown
    but not encoded: boxes drawn on it are ignored, with a note in the status line.

    Args:
        image: a 2D image (``H×W`` any real dtype, or ``H×W×3`` ``uint8``), a ``(z, y, x)`` volume, a
            :class:`~medsam_lite.io.Volume` or a path (its geometry is kept for :meth:`save`).
        model: a :class:`~medsam_lite.SamModel` (default: ``load_model()``, LiteMedSAM).
        labels: class names, in order: class ``k`` (1-based) of :attr:`label_map` is
            ``labels[k - 1]``; or ``{value: name}`` for other label values. Default ``["target"]``.
        modality, window: intensity normalization (see :func:`~medsam_lite.normalize_intensity`);
            ignored for ``uint8`` input.
        default_boxes: boxes put in the widget at start, each ``[x0, y0, x1, y1]`` (XYXY, original
            pixels; class ``labels[0]``), ``(box, label)``, or for a volume ``(box, label, z)``
            (without ``z``: the start slice), rounded to whole pixels as the widget stores them.
        slice_index: the slice shown first (default: the first default box's slice, else the
            middle slice). Ignored for 2D images.
        alpha: opacity of the mask overlay.
        direction: show the image in radiological orientation as this direction says (an axial
            slice of a volume: ``scan.direction``); default: a volume's own geometry, none for 2D.
        max_cached_embeddings, prefetch: see :class:`~medsam_lite.interactive.session.AnnotationSession`
            (``prefetch``: slices on each side of the shown one encoded in the background).

    Attributes:
        session: the :class:`~medsam_lite.interactive.session.AnnotationSession` holding objects,
            prompts and masks (headless: usable without this view).
        predictor: the session's :class:`~medsam_lite.Predictor`.
        canvas: the ``BBoxWidget``; ``canvas.bboxes``: the shown slice's boxes (XYWH, display pixels).
        view: the :class:`~medsam_lite.interactive.canvas.View` between array and display pixels.
        slider: the ``IntSlider`` choosing the slice (``None`` for 2D images).
        click_mode: ``ToggleButtons``, ``"foreground"`` or ``"background"``.
        status: the ``HTML`` status line.
        timings: milliseconds of the last update: ``decode_ms``, ``render_ms``, ``update_ms``, and
            ``encode_ms`` of the last encoder run.
    """

    def __init__(self, image, model: SamModel | None = None, labels: Sequence[str] = ("target",), *,
                 modality: str | None = None, window=None, default_boxes=None, slice_index: int | None = None,
                 alpha: float = 0.45, max_cached_embeddings: int = 32, prefetch: int = 0, direction=None):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0 <= float(alpha) <= 1:
            raise InputError(f"alpha (mask opacity) must be a number in [0, 1], got {alpha!r}.")
        self.alpha = float(alpha)
        self.session = s = AnnotationSession(image, model, labels, modality=modality, window=window,
                                             max_cached_embeddings=max_cached_embeddings, prefetch=prefetch)
        self.timings = s.timings
        self.timings.update(render_ms=0.0, update_ms=0.0)
        self._shown: dict[int, list[tuple[dict, int]]] = {}  # slice → [(widget box, object id)]
        self._callbacks: list[Callable] = []
        self._syncing, self._message, self._click_note = False, "", ""
        self._selected: int | None = None  # id of the object clicks go to

        items = [split_box_item(item) for item in (default_boxes if default_boxes is not None else [])]
        if not s.is_volume:
            s.z = 0
        elif slice_index is not None:
            s.z = s.check_slice(slice_index)
        else:
            s.z = next((s.check_slice(z) for _, _, z in items if z is not None), s.z)
        defaults: dict[int, list[dict]] = {s.z: []}
        for box, label, z in items:
            defaults.setdefault(s.check_slice(z), []).append(to_widget_box(box, s.check_label(label), self.hw))

        self._display_ct = s.array.dtype != np.uint8 and resolve_preset(s.predictor.model, modality, window).modality == "CT"
        self._painted = None  # the last paint (_paint): (slice, opacity, classes, shape), masks, picture, slice image
        flips = radiological_flips(direction) if direction is not None else display_flips(s.source) if s.is_volume else ()
        self.view = View(self.hw, *flips)
        self.canvas = Canvas(self._on_click, classes=list(s.labels),
                             colors=[hex_color(name) for name in s.labels], hide_buttons=True)
        self.canvas.add_class("medsam-lite-canvas")
        self.status = widgets.HTML()
        self.slider = None
        if s.is_volume:
            self.slider = widgets.IntSlider(value=s.z, min=0, max=s.n_slices - 1, description="slice",
                                            continuous_update=False)
        self.click_mode = widgets.ToggleButtons(options=[("+ foreground click", "foreground"),
                                                         ("− background click (or Shift)", "background")],
                                                style={"button_width": "auto"})
        self.undo_button = widgets.Button(description="undo", icon="undo", layout=widgets.Layout(width="90px"))
        self.undo_button.on_click(lambda _: self.undo())
        super().__init__([w for w in (self.slider, self.canvas, widgets.HBox([self.click_mode, self.undo_button]),
                                      self.status) if w is not None])

        for z in sorted(defaults, key=lambda k: (k != s.z, k)):  # the shown slice first
            self._update(z, defaults[z], keep_small=True)
        self._visit(s.z)  # encodes the shown slice even without boxes: the first box is fast
        self.canvas.observe(self._on_bboxes, names=["bboxes"])
        self.canvas.observe(lambda change: self._select_index(change["new"]), names=["selected_index"])
        if self.slider is not None:
            self.slider.observe(lambda change: self._visit(int(change["new"])), names=["value"])

    # -- the session's state, as the view's ------------------------------------------------------
    labels = property(lambda self: self.session.labels)
    shape = property(lambda self: self.session.shape)
    hw = property(lambda self: self.session.hw)
    is_volume = property(lambda self: self.session.is_volume)
    source = property(lambda self: self.session.source)
    predictor = property(lambda self: self.session.predictor)
    z = property(lambda self: self.session.z)
    prefetch = property(lambda self: self.session.prefetch)
    max_cached_embeddings = property(lambda self: self.session.max_cached_embeddings)
    _prefetcher = property(lambda self: self.session.prefetcher)
    _embeddings = property(lambda self: self.session.embeddings)

    encoder_calls = property(lambda self: self.session.encoder_calls,
                             doc="How many times the image encoder ran (once per slice visited, never per box).")
    decoder_calls = property(lambda self: self.session.decoder_calls,
                             doc="Masks decoded (a new box, a moved box, a click; an unchanged box never again).")
    prompts = property(lambda self: self.session.prompts,
                       doc="Every object's box and mask (:class:`~medsam_lite.interactive.session.Prompt`), by slice, in drawing order within one.")
    masks = property(lambda self: self.session.masks,
                     doc="``{label: bool mask}`` per label (union of its objects), ``H×W`` or ``(z, y, x)``.")

    @property
    def label_map(self) -> np.ndarray:
        """Class indices ``1…K`` (order of ``labels``), ``0`` for background, ``uint8``; the smaller mask wins."""
        return self.session.to_label_map()

    @property
    def selected(self):
        """The :class:`~medsam_lite.interactive.session.Annotation` clicks go to (``None`` if none)."""
        return next((o for o in self.session.objects if o.id == self._selected), None)

    # -- widget boxes → session ------------------------------------------------------------------
    def _update(self, z: int, raw_boxes, keep_small: bool = False) -> None:
        """Reconcile slice ``z``'s widget boxes with its objects: decode new boxes (one call), move,
        relabel or remove the others; repaint if ``z`` is shown. Boxes from code (``keep_small``)
        may be a few pixels; from the widget such a box is a click's."""
        t0 = time.perf_counter()
        s = self.session
        s.prefetcher.touch()
        boxes, problems = [], []
        for b in raw_boxes:
            try:
                x, y, w, h = (int(b[k]) for k in ("x", "y", "width", "height"))
            except (KeyError, TypeError, ValueError):
                problems.append(f"ignored malformed box {b!r}")
                continue
            if w <= 0 or h <= 0 or (not keep_small and is_click_box(w, h, self.hw)):
                continue  # a mouse-down (the real box follows on mouse-up) or a click
            try:
                label = s.check_label(b.get("label"))
                check_boxes(xywh_to_xyxy((x, y, w, h)), self.hw)
            except InputError as exc:
                problems.append(str(exc))
                continue
            boxes.append({"x": x, "y": y, "width": w, "height": h, "label": label})
        old = self._shown.get(z, [])
        ids: list[int | None] = [None] * len(boxes)
        free = list(range(len(old)))
        for i, b in enumerate(boxes):  # unchanged positions keep their object (and its clicks)
            j = next((j for j in free if key(old[j][0]) == key(b)), None)
            if j is not None:
                free.remove(j)
                ids[i] = old[j][1]
        new = [i for i, v in enumerate(ids) if v is None]
        if new and s.is_blank(z):
            problems.append(blank_note(z))
            boxes, ids, new = [b for b, v in zip(boxes, ids) if v is not None], [v for v in ids if v is not None], []
        message = "; ".join(problems)
        if z in self._shown and [b for b, _ in old] == boxes and message == self._message:
            return  # nothing changed (e.g. the 0×0 box of a mouse-down)
        s.timings["decode_ms"] = 0.0
        if len(new) == 1 and len(free) == 1 and len(boxes) == len(old):  # one box moved or resized
            ids[new[0]] = old[free.pop()][1]
            s.move_box(ids[new[0]], xywh_to_xyxy(key(boxes[new[0]])))
            new = []
        for j in free:
            s.remove(old[j][1])
        if new:
            made = s.add_boxes(np.stack([xywh_to_xyxy(key(boxes[i])) for i in new]),
                               [boxes[i]["label"] for i in new], z)
            for i, obj in zip(new, made):
                ids[i] = obj.id
        for b, oid in zip(boxes, ids):
            if s.get(oid).label != b["label"]:
                s.relabel(oid, b["label"])
        self._shown[z] = list(zip(boxes, ids))
        self._message, self._click_note = message, ""
        if z == self.z:
            self._select_index(self.canvas.selected_index)
        self._changed(z, t0)

    def _changed(self, z: int, t0: float) -> None:
        if z == self.z:
            self._render()
        self.timings["update_ms"] = (time.perf_counter() - t0) * 1000
        self._show_status()
        for callback in self._callbacks:
            callback(self)
        if z == self.z:  # shown: the next click's mask input is made while the user aims it
            objs = self.session.objects_on(z)
            target = self.selected if self.selected in objs else (objs[0] if len(objs) == 1 else None)
            if target is not None:
                self.session.ready_click(target)

    def _sync(self, z: int) -> None:
        """Session → widget: slice ``z``'s boxes as the session has them (after a click or an undo)."""
        alive, old, entries = {o.id: o for o in self.session.objects_on(z)}, self._shown.get(z, []), []
        i, shown = self.canvas.selected_index, self.canvas.bboxes  # keep the selection (a click's box: its object)
        target = (next((o for b, o in old if key(b) == key(self.view.box(shown[i]))), self._selected)
                  if 0 <= i < len(shown) else None)
        for b, oid in old:
            obj = alive.pop(oid, None)
            if obj is None:
                continue
            if not np.array_equal(check_boxes(xywh_to_xyxy(key(b)), self.hw)[0], obj.box):
                b = to_widget_box(obj.box, obj.label, self.hw)
            entries.append(({**b, "label": obj.label}, oid))
        entries += [(to_widget_box(o.box, o.label, self.hw), o.id) for o in alive.values()]
        self._shown[z] = entries
        if z == self.z:
            self._syncing = True
            self.canvas.bboxes = self.view.boxes(b for b, _ in entries)
            self.canvas.selected_index = next((i for i, (_, oid) in enumerate(entries) if oid == target), -1)
            self._syncing = False

    def _select_index(self, index: int) -> None:
        """The canvas selected box ``index``: clicks go to its object (a click's own box changes nothing)."""
        bboxes = self.canvas.bboxes
        if self._syncing or not 0 <= index < len(bboxes):
            return
        oid = next((oid for b, oid in self._shown.get(self.z, []) if key(b) == key(self.view.box(bboxes[index]))), None)
        if oid is not None:
            self._selected = oid

    def _render(self) -> None:
        """Paint the shown slice's masks (larger first) and clicks into the widget image (PNG bytes)."""
        t0 = time.perf_counter()
        objs = sorted(self.session.objects_on(self.z), key=lambda o: -int(np.count_nonzero(o.mask)))
        masks = np.asarray([o.mask for o in objs], bool).reshape(-1, *self.hw)
        rgb = self._paint(masks, [o.label for o in objs])
        for o in objs:  # a 5-pixel cross per click: green foreground, red background
            for (x, y), positive in zip(np.round(o.points).astype(int), o.point_labels):
                c = (0, 220, 0) if positive else (230, 0, 0)
                rgb[y, max(x - 2, 0):x + 3] = c
                rgb[max(y - 2, 0):y + 3, x] = c
        buffer = _io.BytesIO()
        Image.fromarray(self.view.image(rgb)).save(buffer, format="PNG", compress_level=1)
        self.canvas.image_bytes = buffer.getvalue()
        self.timings["render_ms"] = (time.perf_counter() - t0) * 1000

    def _paint(self, masks: np.ndarray, labels: list) -> np.ndarray:
        """The shown slice with ``masks`` (``N×H×W`` bool, in drawing order) blended in (:func:`overlay`),
        ``H×W×3`` uint8, array order. Only the rows where a mask changed since the last paint of this slice
        (same classes, order and opacity) are blended again: a click changes the mask near it (the click
        rule), a moved box along its outline; ``overlay`` is per pixel, so the picture is the same."""
        key = (self.z, self.alpha, tuple(labels), masks.shape)
        if self._painted is None or self._painted[0] != key:
            display = self._display_slice(self.z)
            self._painted = (key, masks, overlay(display, masks, self.alpha, list(labels)), display)
        else:
            _, before, rgb, display = self._painted
            rows = np.flatnonzero((before != masks).any(axis=(0, 2)))
            if rows.size:
                r0, r1 = int(rows[0]), int(rows[-1]) + 1
                rgb[r0:r1] = overlay(display[r0:r1], masks[:, r0:r1], self.alpha, list(labels))
            self._painted = (key, masks, rgb, display)
        return self._painted[2].copy()  # the caller draws the clicks on it

    def _display_slice(self, z: int) -> np.ndarray:
        """Slice ``z`` as shown: a CT in the soft-tissue display window, not the model's; others as encoded."""
        s = self.session
        return display_window(s.array[z] if s.is_volume else s.array, "CT") if self._display_ct else s.image[z]

    def _show_status(self) -> None:
        objs = self.session.objects_on(self.z)
        n, k = len(objs), sum(len(o.point_labels) for o in objs)
        where = f"slice {self.z} of {self.session.n_slices} · " if self.is_volume else ""
        clicks = f" · {k} click{'s' * (k != 1)}" if k else ""
        t = self.timings
        text = (f"{where}{n} box{'es' if n != 1 else ''}{clicks} · last mask update {t['update_ms']:.0f} ms "
                f"(decoder {t['decode_ms']:.0f} ms, overlay {t['render_ms']:.0f} ms) · image encoder runs: "
                f"{self.encoder_calls} (last {t['encode_ms'] / 1000:.1f} s)")
        if self._click_note:
            text += f"<br>{html.escape(self._click_note)}"
        if self._message:
            text += f"<br><span style='color:#c00'>{html.escape(self._message)}</span>"
        self.status.value = f"<span style='font-family:monospace;font-size:12px'>{text}</span>"

    # -- widget events -------------------------------------------------------------------------
    def _on_bboxes(self, change) -> None:
        if not self._syncing:
            self._update(self.z, self.view.boxes(change["new"]))  # display → array pixels

    def _on_click(self, content: dict) -> None:
        try:
            x, y = self.view.point(float(content["x"]), float(content["y"]))  # display → array pixels
            self.click(x, y, positive=False if content.get("shift") else None)
        except (InputError, KeyError, TypeError, ValueError) as exc:
            self._message = str(exc) if isinstance(exc, InputError) else f"ignored malformed click {content!r}"
            self._sync(self.z)  # the click's few-pixel box goes
            self._show_status()

    def _visit(self, z: int) -> None:
        self.session.z = z
        self._syncing = True
        self.canvas.bboxes = self.view.boxes(b for b, _ in self._shown.get(z, []))
        self._syncing = False
        self._render()
        if z not in self.session.embeddings:
            self.status.value = f"<span style='font-family:monospace;font-size:12px'>encoding slice {z}…</span>"
        self.session.set_slice(z)
        self._message, self._click_note = blank_note(z) if self.session.is_blank(z) else "", ""
        self._show_status()

    # -- public API ----------------------------------------------------------------------------
    def set_slice(self, z: int) -> None:
        """Show slice ``z`` of a volume (encodes it on the first visit, ~2 s on a CPU)."""
        z = self.session.check_slice(z)
        if self.slider is not None and self.slider.value != z:
            self.slider.value = z  # the slider's observer visits the slice
        elif z != self.z:
            self._visit(z)

    def set_boxes(self, boxes, slice: int | None = None) -> None:
        """Replace the boxes of ``slice`` (default: the shown one), as if drawn in the widget: a list of
        ``[x0, y0, x1, y1]`` (XYXY, original pixels, class ``labels[0]``) or ``(box, label)``; ``[]`` clears."""
        z = self.session.check_slice(slice)
        new = []
        for item in boxes:
            box, label, item_z = split_box_item(item)
            if item_z is not None and self.session.check_slice(item_z) != z:
                raise InputError(f"box {item!r} names slice {item_z}, but set_boxes was asked for slice {z}.")
            new.append(to_widget_box(box, self.session.check_label(label), self.hw))
        self._replace(z, new)

    def add_box(self, box, label: str | None = None, slice: int | None = None) -> None:
        """Add one box (``[x0, y0, x1, y1]``, XYXY, original pixels, rounded to whole pixels), as if
        drawn in the widget; class ``label`` (default ``labels[0]``), on ``slice`` (default: shown)."""
        z, box = self.session.check_slice(slice), to_widget_box(box, self.session.check_label(label), self.hw)
        self._replace(z, [b for b, _ in self._shown.get(z, [])] + [box])

    def _replace(self, z: int, boxes: list[dict]) -> None:
        if boxes:
            self.session.embed(z)  # raises InputError here (not in the widget) for a blank slice
        self._update(z, boxes, keep_small=True)
        if z == self.z:
            self._syncing = True
            self.canvas.bboxes = self.view.boxes(boxes)
            self._syncing = False

    def click(self, x: float, y: float, positive: bool | None = None, obj=None):
        """Add a click at ``(x, y)`` (original pixels of the shown slice) to an object, as a click in
        the widget does, and repaint. Returns the :class:`~medsam_lite.interactive.session.Annotation`.

        Args:
            positive: ``True`` foreground (the object misses this pixel), ``False`` background;
                default: as :attr:`click_mode` says.
            obj: the object (default: the selected one, else the smallest whose box holds the point).

        Raises:
            InputError: no object on this slice to click on, or a point outside the image.
        """
        t0 = time.perf_counter()
        objs = self.session.objects_on(self.z)
        obj = obj or (self.selected if self.selected in objs else None)
        if obj is None:
            inside = [o for o in objs if o.box[0] <= x <= o.box[2] and o.box[1] <= y <= o.box[3]]
            obj = min(inside, key=lambda o: int(o.mask.sum()), default=None)
        if obj is None:
            raise InputError("a click corrects an object's mask: draw a box around the target first (or select one).")
        before = obj.mask
        obj = self.session.add_click(obj, x, y, self.click_mode.value == "foreground" if positive is None else positive)
        self._selected, self._message = obj.id, ""
        self._click_note = click_note(before, obj.mask, bool(obj.point_labels[-1]), (x, y))
        self._sync(obj.slice)
        self._changed(obj.slice, t0)
        return obj

    def undo(self):
        """Take back the last box, move or click (see :meth:`AnnotationSession.undo`); returns its object."""
        t0, self.timings["decode_ms"] = time.perf_counter(), 0.0
        self._click_note = ""
        obj = self.session.undo()
        if obj is not None:
            self._sync(obj.slice)
            self._changed(obj.slice, t0)
        return obj

    def on_change(self, callback: Callable[["BoxPrompter"], None]) -> None:
        """Call ``callback(prompter)`` after every change of boxes or clicks (drawn, edited, deleted, set, undone)."""
        self._callbacks.append(callback)

    def __repr__(self) -> str:
        n = len(self.session.objects)
        return f"BoxPrompter({'×'.join(map(str, self.shape))}, labels={list(self.labels)}, {n} box{'es' * (n != 1)})"

    def summary(self) -> dict:
        """A JSON-ready description: labels, shown slice, counters, timings and each object."""
        return self.session.summary()

    def close(self) -> None:
        """Stop the background prefetch (after the slice being encoded), then close the widget."""
        if getattr(self, "session", None) is not None:
            self.session.close()
        super().close()

    def save(self, path):
        """Write :attr:`label_map` with the source's geometry (see :meth:`AnnotationSession.save`)."""
        return self.session.save(path)

    def save_case(self, folder, case: str | None = None):
        """Write the scan and its label map as a case ``preprocess`` reads (see :meth:`AnnotationSession.save_case`)."""
        return self.session.save_case(folder, case)

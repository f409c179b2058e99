"""Draw a box, get a mask: :class:`BoxPrompter`, interactive box prompting in a notebook.

Built on jupyter-bbox-widget, whose boxes are ``{"x", "y", "width", "height", "label"}`` integers
(XYWH, top-left corner, natural image pixels); they become XYXY with
:func:`~medsam_lite.transforms.xywh_to_xyxy` at this edge, as everywhere else in the package.
Without a front end (``nbmake``, a script) nobody draws: ``default_boxes`` give masks anyway.
"""

from __future__ import annotations

import html
import io as _io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from jupyter_bbox_widget import BBoxWidget
from PIL import Image

from ..errors import InputError
from ..io.labelfiles import write_label_map
from ..io.scans import Volume, read_volume
from ..model.models import SamModel
from ..plotting import color, overlay
from ..checks import check_int
from ..model.inference import EmbeddingCache, encode
from .prefetch import Prefetcher
from .predict import Predictor, resolve_preset
from ..model.geometry import check_boxes, xywh_to_xyxy

#: File endings :meth:`BoxPrompter.save` writes (``.png`` only for 2D images).
SAVE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".png")


class _Canvas(BBoxWidget):
    """The bbox widget, with the image shown at least 512 CSS px wide (boxes stay in image pixels)."""

    _css = BBoxWidget._css + "\n.medsam-lite-canvas img { width: 512px; max-width: 100%; }\n"


@dataclass(frozen=True)
class Prompt:
    """One box of a :class:`BoxPrompter` and the mask it gave.

    Attributes:
        slice: index ``z`` of the slice in a 3D volume, ``None`` for a 2D image.
        box: ``[x0, y0, x1, y1]`` float32, XYXY in original image pixels.
        label: the class name (one of the prompter's ``labels``).
        mask: ``H×W`` bool mask of this box.
        score: the model's predicted IoU for the mask.
    """

    slice: int | None
    box: np.ndarray
    label: str
    mask: np.ndarray
    score: float


def _hex(i: int) -> str:
    r, g, b = (int(round(v * 255)) for v in color(i))
    return f"#{r:02x}{g:02x}{b:02x}"


def _key(box: dict) -> tuple[int, int, int, int]:
    """A widget box's position, the key of its cached mask (the label does not change the mask)."""
    return (box["x"], box["y"], box["width"], box["height"])


def _blank(z: int) -> str:
    return f"slice {z} is blank (constant): there is nothing to segment, boxes drawn on it are ignored."


def _largest_first(items: list, key=lambda item: item[0]) -> list:
    """Paint order for overlapping masks: larger masks first, so smaller ones stay on top."""
    return sorted(items, key=lambda item: -int(np.count_nonzero(key(item))))


def _as_scan(image) -> tuple[np.ndarray, Volume | None, bool]:
    """``(array, source Volume or None, is_volume)`` from a path, a Volume or an array."""
    image = read_volume(image) if isinstance(image, (str, Path)) else image
    source = image if isinstance(image, Volume) else None
    array = np.asarray(image.array if source is not None else image)
    if array.dtype == bool or array.dtype.kind not in "uif":
        raise InputError(f"the image has dtype {array.dtype}; pass the scan (real numbers), not a mask or objects.")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8):
        return array, source, False
    if array.ndim == 3 and array.shape[2] in (3, 4):
        raise InputError(f"an image of shape {array.shape} and dtype {array.dtype} looks like colour: colour images "
                         "must be uint8 H×W×3 (np.clip(image, 0, 255).astype(np.uint8)); volumes are (z, y, x).")
    if array.ndim == 3 and min(array.shape[1:]) >= 2:
        return array, source, True
    raise InputError(f"expected a 2D image (H×W or H×W×3 uint8) or a 3D volume (z, y, x), got shape {array.shape}; "
                     "squeeze extra axes or pick a channel first.")


class BoxPrompter(widgets.VBox):
    """Draw boxes on an image or volume slices and see their masks live.

    Example::

        prompter = BoxPrompter(image, labels=["tumour", "liver"],
                               default_boxes=[([40, 52, 90, 110], "tumour")])
        prompter                                    # draw, move, delete boxes in the notebook
        prompter.label_map                          # H×W uint8, 1 = tumour, 2 = liver
        prompter.save("tumour_mask.png")

    Display: a slice slider (3D only), the drawing canvas, and a status line with the time of the
    last mask update and how often the image encoder has run. Keys in the canvas (from
    jupyter-bbox-widget): ``1``–``9`` choose the class of the next box, ``Delete`` removes the
    selected box, ``C`` gives the selected box the current class. A blank (constant) slice is
    shown but not encoded: boxes drawn on it are ignored, with a note in the status line.

    Args:
        image: a 2D image (``H×W`` of any real dtype, or ``H×W×3`` ``uint8``), a 3D volume
            ``(z, y, x)``, a :class:`~medsam_lite.io.Volume`, or a path that
            :func:`~medsam_lite.io.read_volume` reads. A Volume's (or file's) geometry is kept for
            :meth:`save`.
        model: a :class:`~medsam_lite.models.SamModel` (default: ``load_model()``, LiteMedSAM).
        labels: class names, in order: class ``k`` (1-based) of :attr:`label_map` is
            ``labels[k - 1]``. Default ``["target"]``.
        modality: ``"CT"`` (window in HU) or any other modality (0.5–99.5 percentiles over the
            whole volume's voxels > 0); ignored for ``uint8`` input. See
            :func:`~medsam_lite.transforms.normalize_intensity`.
        window: CT window name or ``(low, high)``; see ``normalize_intensity``.
        default_boxes: boxes put in the widget at start, each ``[x0, y0, x1, y1]`` (XYXY, original
            pixels; class ``labels[0]``), ``(box, label)``, or for a volume ``(box, label, z)``
            (without ``z``: the start slice). Coordinates are rounded to whole pixels, as the
            widget stores them.
        slice_index: the slice shown first (default: the first default box's slice, else the
            middle slice). Ignored for 2D images.
        alpha: opacity of the mask overlay.
        max_cached_embeddings: how many slice embeddings to keep (4 MiB each for LiteMedSAM; the
            least recently used is dropped first and re-encoded if visited again).
        prefetch: for a volume, how many slices on each side of the shown one to encode in a
            background thread (default 0), so stepping to the next slice shows its masks at once.

    Attributes:
        predictor: the :class:`~medsam_lite.predict.Predictor` holding the shown slice's embedding;
            :attr:`encoder_calls` counts image-encoder runs (one per slice encoded, never one per box).
        decoder_calls: how many boxes have been decoded (an unchanged box is never decoded again).
        canvas: the ``BBoxWidget``; ``canvas.bboxes`` holds the current slice's boxes (XYWH).
        slider: the ``IntSlider`` choosing the slice (``None`` for 2D images).
        status: the ``HTML`` status line.
        timings: milliseconds of the last update: ``decode_ms``, ``render_ms``, ``update_ms``, and
            ``encode_ms`` of the last encoder run.
    """

    def __init__(self, image, model: SamModel | None = None, labels: Sequence[str] = ("target",), *,
                 modality: str | None = None, window=None, default_boxes=None, slice_index: int | None = None,
                 alpha: float = 0.45, max_cached_embeddings: int = 32, prefetch: int = 0):
        array, self.source, self.is_volume = _as_scan(image)
        self.labels = self._check_labels(labels)
        if (isinstance(max_cached_embeddings, bool) or not isinstance(max_cached_embeddings, (int, np.integer))
                or max_cached_embeddings < 1):
            raise InputError(f"max_cached_embeddings must be an int ≥ 1 (slices whose embedding is kept), "
                             f"got {max_cached_embeddings!r}.")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0 <= float(alpha) <= 1:
            raise InputError(f"alpha (mask opacity) must be a number in [0, 1], got {alpha!r}.")
        self.alpha = float(alpha)
        self.max_cached_embeddings = int(max_cached_embeddings)
        self.predictor = Predictor(model)
        if array.dtype == np.uint8:
            display = array[..., :3] if array.ndim == 3 and not self.is_volume else array
        else:
            display = resolve_preset(self.predictor.model, modality, window).apply(array)
        self._display = display if self.is_volume else display[None]   # (z, y, x[, 3]) uint8
        self.shape = tuple(array.shape[:3] if self.is_volume else array.shape[:2])
        self.hw = tuple(self._display.shape[1:3])

        self.decoder_calls = 0
        self.timings = {"decode_ms": 0.0, "render_ms": 0.0, "update_ms": 0.0, "encode_ms": 0.0}
        self._embeddings = EmbeddingCache(self.max_cached_embeddings)  # slice → Embedding
        self.prefetch = check_int(prefetch, "prefetch (neighbouring slices to encode ahead)", 0)
        self._prefetcher = Prefetcher.owned(self, lambda bp, z: encode(bp.predictor.model, bp._display[z]), self._embeddings,
                                      max_pending=max(1, min(2 * self.prefetch, self.max_cached_embeddings - 1)),
                                      idle_seconds=0.3)  # a box drawn right after stepping decodes first
        self._predictor_slice: int | None = None
        self._boxes: dict[int, list[dict]] = {}           # slice → widget boxes (XYWH, > 0 area)
        self._decoded: dict[int, dict[tuple, tuple]] = {}  # slice → {(x, y, w, h): (mask, score)}
        self._callbacks: list[Callable] = []
        self._syncing = False
        self._message = ""

        items = [self._split_box_item(item) for item in (default_boxes if default_boxes is not None else [])]
        if not self.is_volume:
            self.z = 0
        elif slice_index is not None:
            self.z = self._check_slice(slice_index)
        else:
            self.z = next((self._check_slice(z) for _, _, z in items if z is not None), self._display.shape[0] // 2)
        defaults: dict[int, list[dict]] = {self.z: []}
        for box, label, z in items:
            defaults.setdefault(self.z if z is None else self._check_slice(z), []).append(self._to_widget_box(box, label))

        self.canvas = _Canvas(classes=list(self.labels), colors=[_hex(i) for i in range(len(self.labels))],
                              hide_buttons=True)
        self.canvas.add_class("medsam-lite-canvas")
        self.status = widgets.HTML()
        self.slider = None
        if self.is_volume:
            self.slider = widgets.IntSlider(value=self.z, min=0, max=self._display.shape[0] - 1,
                                            description="slice", continuous_update=False)
        super().__init__([w for w in (self.slider, self.canvas, self.status) if w is not None])

        for z in sorted(defaults, key=lambda k: (k != self.z, k)):  # the shown slice first
            self._update(z, defaults[z])
        self._visit(self.z)  # encodes the shown slice even without boxes: the first box is fast
        self.canvas.observe(self._on_bboxes, names=["bboxes"])
        if self.slider is not None:
            self.slider.observe(lambda change: self._visit(int(change["new"])), names=["value"])

    # -- input checks --------------------------------------------------------------------------
    @staticmethod
    def _check_labels(labels) -> tuple[str, ...]:
        if isinstance(labels, str):
            labels = (labels,)
        elif not isinstance(labels, (list, tuple)) or not all(isinstance(v, str) for v in labels):
            raise InputError(f"labels must be a class name or a list of names, e.g. ['tumour', 'liver']; got {labels!r}.")
        labels = tuple(labels)
        if not labels or not all(labels) or len(set(labels)) != len(labels):
            raise InputError(f"labels must be distinct, non-empty class names, e.g. ['tumour', 'liver']; got {labels!r}.")
        return labels

    def _check_slice(self, z) -> int:
        n = self._display.shape[0]
        if not self.is_volume:
            if z not in (None, 0):
                raise InputError(f"this is a 2D image: there is no slice {z}; leave the slice out.")
            return 0
        if isinstance(z, bool) or not isinstance(z, (int, np.integer)) or not 0 <= int(z) < n:
            raise InputError(f"slice {z!r} is not a slice index of this volume; use an int in [0, {n - 1}].")
        return int(z)

    def _check_label(self, label) -> str:
        label = self.labels[0] if label in (None, "") else str(label)
        if label not in self.labels:
            raise InputError(f"label {label!r} is not one of this prompter's labels {list(self.labels)}; "
                             "add it to labels=[…] when you create the BoxPrompter.")
        return label

    def _to_widget_box(self, box, label) -> dict:
        xyxy = check_boxes(box, self.hw)[0]
        x0, y0, x1, y1 = (int(round(float(v))) for v in xyxy)
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"box {list(map(float, xyxy))} is less than a pixel wide or high once rounded to "
                             "whole pixels; draw a bigger box.")
        return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "label": self._check_label(label)}

    @staticmethod
    def _split_box_item(item) -> tuple:
        """``(box, label or None, slice or None)`` from ``box``, ``(box, label)`` or ``(box, label, z)``."""
        try:
            if len(item) == 4 and all(np.ndim(v) == 0 and not isinstance(v, str) for v in item):
                return item, None, None
            if len(item) in (2, 3) and np.shape(item[0]) == (4,):
                return item[0], item[1], (item[2] if len(item) == 3 else None)
        except (TypeError, KeyError, IndexError, ValueError):
            pass
        raise InputError(f"a box must be [x0, y0, x1, y1] (XYXY), (box, label) or (box, label, slice); got {item!r}.")

    # -- embedding and decoding ----------------------------------------------------------------
    def _use_slice(self, z: int) -> None:
        """Point the predictor at slice ``z``'s embedding, encoding it on the first visit."""
        if self._predictor_slice == z:
            return
        t0, calls = time.perf_counter(), self._prefetcher.encoder_calls
        self.predictor.set_embedding(self._prefetcher.get(z))  # cached, prefetched, or encoded now
        if self._prefetcher.encoder_calls > calls:
            self.timings["encode_ms"] = (time.perf_counter() - t0) * 1000
        self._predictor_slice = z

    def _update(self, z: int, raw_boxes) -> None:
        """Decode the new boxes of slice ``z``, forget the deleted ones, repaint if ``z`` is shown."""
        t0 = time.perf_counter()
        self._prefetcher.touch()
        boxes, problems = [], []
        for b in raw_boxes:
            try:
                x, y, w, h = (int(b[k]) for k in ("x", "y", "width", "height"))
            except (KeyError, TypeError, ValueError):
                problems.append(f"ignored malformed box {b!r}")
                continue
            if w <= 0 or h <= 0:
                continue  # the widget sends a 0×0 box on mouse-down; the real one follows on mouse-up
            try:
                label = self._check_label(b.get("label"))
                check_boxes(xywh_to_xyxy((x, y, w, h)), self.hw)
            except InputError as exc:
                problems.append(str(exc))
                continue
            boxes.append({"x": x, "y": y, "width": w, "height": h, "label": label})
        cache = self._decoded.get(z, {})
        new = list(dict.fromkeys(_key(b) for b in boxes if _key(b) not in cache))
        if new:
            try:
                self._use_slice(z)
            except InputError:  # a blank slice: nothing to segment
                problems.append(_blank(z))
                boxes, new = [b for b in boxes if _key(b) in cache], []
        message = "; ".join(problems)
        if z in self._boxes and boxes == self._boxes[z] and message == self._message:
            return  # nothing changed (e.g. the 0×0 box of a mouse-down)
        keys = [_key(b) for b in boxes]
        t_decode = 0.0
        if new:
            t1 = time.perf_counter()
            masks, scores = self.predictor.predict(np.stack([xywh_to_xyxy(k) for k in new]))
            t_decode = time.perf_counter() - t1
            self.decoder_calls += len(new)
            cache.update({k: (m, float(s)) for k, m, s in zip(new, masks, scores)})
        self._decoded[z] = {k: cache[k] for k in keys}  # deleted boxes' masks go
        self._boxes[z] = boxes
        self._message = message
        self.timings["decode_ms"] = t_decode * 1000
        if z == self.z:
            self._render()
        self.timings["update_ms"] = (time.perf_counter() - t0) * 1000
        self._show_status()
        for callback in self._callbacks:
            callback(self)

    def _render(self) -> None:
        """Paint the shown slice's masks into the widget image (PNG bytes)."""
        t0 = time.perf_counter()
        z = self.z
        cache = self._decoded.get(z, {})
        boxes = self._boxes.get(z, [])
        pairs = _largest_first([(cache[_key(b)][0], self.labels.index(b["label"])) for b in boxes])
        masks = np.asarray([m for m, _ in pairs], bool).reshape(-1, *self.hw)
        rgb = overlay(self._display[z], masks, self.alpha, [k for _, k in pairs])
        buffer = _io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
        self.canvas.image_bytes = buffer.getvalue()
        self.timings["render_ms"] = (time.perf_counter() - t0) * 1000

    def _show_status(self) -> None:
        n = len(self._boxes.get(self.z, []))
        where = f"slice {self.z} of {self._display.shape[0]} · " if self.is_volume else ""
        t = self.timings
        text = (f"{where}{n} box{'es' if n != 1 else ''} · last mask update {t['update_ms']:.0f} ms "
                f"(decoder {t['decode_ms']:.0f} ms, overlay {t['render_ms']:.0f} ms) · image encoder runs: "
                f"{self.encoder_calls} (last {t['encode_ms'] / 1000:.1f} s)")
        if self._message:
            text += f"<br><span style='color:#c00'>{html.escape(self._message)}</span>"
        self.status.value = f"<span style='font-family:monospace;font-size:12px'>{text}</span>"

    # -- widget events -------------------------------------------------------------------------
    def _on_bboxes(self, change) -> None:
        if not self._syncing:
            self._update(self.z, change["new"])

    def _visit(self, z: int) -> None:
        self.z = z
        self._syncing = True
        self.canvas.bboxes = [dict(b) for b in self._boxes.get(z, [])]
        self._syncing = False
        self._render()
        if z not in self._embeddings:
            self.status.value = f"<span style='font-family:monospace;font-size:12px'>encoding slice {z}…</span>"
        try:
            self._use_slice(z)
            self._message = ""
        except InputError:  # a blank slice: shown, but not encoded
            self._message = _blank(z)
        self._show_status()
        self._prefetcher.touch()
        if self.is_volume and self.prefetch:  # the neighbours, while the user looks at this one
            near = [z + d * s for d in range(1, self.prefetch + 1) for s in (1, -1)]
            self._prefetcher.request([k for k in near if 0 <= k < self._display.shape[0]
                                      and self._display[k].min() != self._display[k].max()])

    # -- public API ----------------------------------------------------------------------------
    def set_slice(self, z: int) -> None:
        """Show slice ``z`` of a volume (encodes it on the first visit, ~2 s on a CPU)."""
        z = self._check_slice(z)
        if self.slider is not None and self.slider.value != z:
            self.slider.value = z  # the slider's observer visits the slice
        elif z != self.z:
            self._visit(z)

    def set_boxes(self, boxes, slice: int | None = None) -> None:
        """Replace the boxes of one slice (default: the shown one), as if drawn in the widget.

        Args:
            boxes: a list of ``[x0, y0, x1, y1]`` (XYXY, original pixels, class ``labels[0]``) or
                ``(box, label)`` pairs; ``[]`` removes all boxes of the slice.
            slice: the slice of a volume (default: the shown slice).
        """
        z = self.z if slice is None else self._check_slice(slice)
        new = []
        for item in boxes:
            box, label, item_z = self._split_box_item(item)
            if item_z is not None and self._check_slice(item_z) != z:
                raise InputError(f"box {item!r} names slice {item_z}, but set_boxes was asked for slice {z}.")
            new.append(self._to_widget_box(box, label))
        self._replace(z, new)

    def add_box(self, box, label: str | None = None, slice: int | None = None) -> None:
        """Add one box, as if drawn in the widget.

        Args:
            box: ``[x0, y0, x1, y1]``, XYXY in original pixels (rounded to whole pixels).
            label: its class (default: ``labels[0]``).
            slice: the slice of a volume (default: the shown slice).
        """
        z = self.z if slice is None else self._check_slice(slice)
        self._replace(z, self._boxes.get(z, []) + [self._to_widget_box(box, label)])

    def _replace(self, z: int, boxes: list[dict]) -> None:
        if boxes:
            self._use_slice(z)  # raises InputError here (not in the widget) for a blank slice
        if z == self.z:
            self.canvas.bboxes = [dict(b) for b in boxes]  # the observer decodes and repaints
        else:
            self._update(z, boxes)

    def on_change(self, callback: Callable[["BoxPrompter"], None]) -> None:
        """Call ``callback(prompter)`` after every change of boxes (drawn, edited, deleted, set)."""
        self._callbacks.append(callback)

    def __repr__(self) -> str:
        n = sum(len(b) for b in self._boxes.values())
        return f"BoxPrompter({'×'.join(map(str, self.shape))}, labels={list(self.labels)}, {n} box{'es' * (n != 1)})"

    @property
    def encoder_calls(self) -> int:
        """How many times the image encoder ran (once per slice visited)."""
        return self._prefetcher.encoder_calls

    @property
    def prompts(self) -> list[Prompt]:
        """Every box with its mask, by slice, in drawing order within a slice."""
        out = []
        for z in sorted(self._boxes):
            for b in self._boxes[z]:
                mask, score = self._decoded[z][_key(b)]
                box = check_boxes(xywh_to_xyxy(_key(b)), self.hw)[0]  # clipped to the image, as decoded
                out.append(Prompt(z if self.is_volume else None, box, b["label"], mask, score))
        return out

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """``{label: bool mask}`` for every label, the union of that class's boxes.

        Each mask has the image's shape: ``H×W`` for a 2D image, ``(z, y, x)`` for a volume. A
        label without boxes maps to an empty mask.
        """
        full = self.shape if self.is_volume else self.hw
        out = {label: np.zeros(full, bool) for label in self.labels}
        for p in self.prompts:
            target = out[p.label] if not self.is_volume else out[p.label][p.slice]
            target |= p.mask
        return out

    @property
    def label_map(self) -> np.ndarray:
        """Class indices ``1…K`` (order of ``labels``), ``0`` for background; ``uint8``.

        Shape ``H×W`` for a 2D image, ``(z, y, x)`` for a volume. Where masks overlap, the smaller
        mask wins (a structure boxed inside a larger one keeps its class), as in the widget's image.
        """
        full = self.shape if self.is_volume else self.hw
        out = np.zeros(full, np.uint8 if len(self.labels) < 256 else np.uint16)
        for p in _largest_first(self.prompts, key=lambda p: p.mask):
            target = out if not self.is_volume else out[p.slice]
            target[p.mask] = self.labels.index(p.label) + 1
        return out

    def close(self) -> None:
        """Stop the background prefetch (after the slice being encoded), then close the widget."""
        if getattr(self, "_prefetcher", None) is not None:
            self._prefetcher.close()
        super().close()

    def summary(self) -> dict:
        """A JSON-ready description: labels, shown slice, counters, timings and each box."""
        return {
            "labels": list(self.labels),
            "slice": self.z if self.is_volume else None,
            "encoder_calls": self.encoder_calls,
            "decoder_calls": self.decoder_calls,
            "cached_embeddings": sorted(self._embeddings),
            "timings": dict(self.timings),
            "prompts": [{"slice": p.slice, "box": [float(v) for v in p.box], "label": p.label,
                         "score": round(p.score, 4), "area": int(p.mask.sum())} for p in self.prompts],
        }

    def save(self, path) -> Path:
        """Write :attr:`label_map`: NIfTI / NRRD / MHA with the source's geometry, or PNG for 2D.

        The source geometry (spacing, origin, direction) is the one of the Volume or file the
        prompter was made from (identity geometry for a bare array). Returns the written path.
        """
        path = Path(path)
        name = path.name.lower()
        if not name.endswith(SAVE_SUFFIXES):
            raise InputError(f"cannot save a label map as {path.name!r}; use one of {', '.join(SAVE_SUFFIXES)}.")
        if name.endswith(".png") and self.is_volume:
            raise InputError("a PNG holds one 2D image, but this is a volume; save it as .nii.gz (or .nrrd, .mha).")
        like = self.source if self.source is not None and self.source.array.shape[:len(self.shape)] == self.shape else None
        return write_label_map(self.label_map, path, like=like)  # one writer decides the encoding

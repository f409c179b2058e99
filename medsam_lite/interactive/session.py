"""A headless annotation session: objects, their prompts, their masks, undo, and a label map to save.

:class:`AnnotationSession` holds what an annotator builds on an image or a volume, without any
display: the normalized slices, the current slice, one :class:`Annotation` per object (its class,
its slice, its box and clicks, the mask they give), the order of prompts for
:meth:`~AnnotationSession.undo`, and the label map written with the scan's geometry
(:meth:`~AnnotationSession.save`) or as one case of a folder :func:`~medsam_lite.preprocess` reads
(:meth:`~AnnotationSession.save_case`; the files are written by :mod:`.annotations`): label a few
slices of an unlabelled scan, then fine-tune. :class:`~medsam_lite.interactive.widgets.BoxPrompter`
is a view over it.

Conventions: boxes are XYXY and clicks XY, float, in **original** pixels of a slice (``x`` = column,
``y`` = row); slices are indices ``z`` of a ``(z, y, x)`` volume (``0`` for a 2D image). The session
decodes only through :class:`~medsam_lite.Predictor` and encodes each slice once, through the seam's
:func:`~medsam_lite.encode`, into an :class:`~medsam_lite.model.inference.EmbeddingCache`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..checks import check_int
from ..errors import InputError
from ..model.geometry import check_boxes
from ..model.inference import EmbeddingCache, encode, mask_input_maker
from ..model.models import SamModel
from .annotations import Prompt
from .annotations import Annotation, as_scan, check_class_names, save_case, save_label_map
from .predict import Predictor, resolve_preset
from .prefetch import Prefetcher


class AnnotationSession:
    """Objects, prompts and masks on one image or volume, without a display.

    Example::

        session = AnnotationSession("scan.nii.gz", model, labels={5: "liver"}, modality="CT")
        liver = session.add_box([40, 52, 90, 110], "liver", slice=12)   # decoded at once
        session.add_click(liver, 61, 80)                                 # a missed part: foreground
        session.undo()                                                   # … taken back
        session.save_case("my_scans")    # my_scans/scan.nii.gz + scan_label.nii.gz + labels.json

    Args:
        image: a 2D image (``H×W`` of any real dtype, or ``H×W×3`` ``uint8``), a ``(z, y, x)``
            volume, a :class:`~medsam_lite.io.Volume`, or a path :func:`~medsam_lite.io.read_volume`
            reads; a Volume's (file's) geometry is kept for :meth:`save`.
        model: a :class:`~medsam_lite.SamModel` (default: ``load_model()``, LiteMedSAM).
        labels: class names (label values 1, 2, … in order) or ``{value: name}`` (e.g. the values of
            a dataset the scan joins). Default ``["target"]``.
        modality, window: intensity normalization of the whole image or volume once (see
            :func:`~medsam_lite.normalize_intensity`); ignored for ``uint8`` input.
        max_cached_embeddings: slice embeddings kept (4 MiB each; least recently used dropped).
        prefetch: slices on each side of the current one to encode in a background thread.

    Attributes:
        image: the normalized slices, ``(z, y, x)`` (or ``(1, H, W[, 3])`` for a 2D image) ``uint8``.
        array: the image as given (original intensities), ``(z, y, x)``, ``H×W`` or ``H×W×3``.
        source: the :class:`~medsam_lite.io.Volume` given (or read), ``None`` for a bare array.
        is_volume, shape, hw: 3D or 2D; the image's shape; ``(H, W)`` of one slice.
        labels: the class names; :attr:`label_values` maps each to its value in the label map.
        z: the current slice (see :meth:`set_slice`).
        predictor: the :class:`~medsam_lite.Predictor` every mask is decoded with.
        decoder_calls: objects decoded (a box, a moved box or a click: one each).
        timings: milliseconds of the last ``decode_ms`` and ``encode_ms``.
    """

    def __init__(self, image, model: SamModel | None = None, labels=("target",), *, modality: str | None = None,
                 window=None, max_cached_embeddings: int = 32, prefetch: int = 0):
        array, self.source, self.is_volume = as_scan(image)
        self.array = array
        self.label_values = check_class_names(labels)
        self.labels = tuple(self.label_values)
        self.max_cached_embeddings = check_int(max_cached_embeddings, "max_cached_embeddings (slices whose "
                                               "embedding is kept)", 1)
        self.prefetch = check_int(prefetch, "prefetch (neighbouring slices to encode ahead)", 0)
        self.predictor = Predictor(model)
        if array.dtype == np.uint8:
            display = array[..., :3] if array.ndim == 3 and not self.is_volume else array
        else:
            display = resolve_preset(self.predictor.model, modality, window).apply(array)
        self.image = display if self.is_volume else display[None]
        self.shape = tuple(array.shape[:3] if self.is_volume else array.shape[:2])
        self.hw = tuple(self.image.shape[1:3])
        self.z = self.image.shape[0] // 2
        self.decoder_calls = 0
        self.timings = {"decode_ms": 0.0, "encode_ms": 0.0}
        self.embeddings = EmbeddingCache(self.max_cached_embeddings)
        # the worker reaches the session through a weak reference: collecting the session stops it
        # (each slice's embedding keeps its normalized image: the click rule reads the clicked tissue)
        self.prefetcher = Prefetcher.owned(self, lambda s, z: replace(encode(s.predictor.model, s.image[z]),
                                                                      image=s.image[z]), self.embeddings,
                                           max_pending=max(1, min(2 * self.prefetch, self.max_cached_embeddings - 1)),
                                           idle_seconds=0.3)  # a box drawn right after stepping decodes first
        self._objects: dict[int, Annotation] = {}  # creation order
        self._undo: list[int] = []                 # object ids, one per prompt
        self._next_id = 1
        self._predictor_slice: int | None = None
        self._ready: dict[int, tuple] = {}         # object id → (its logits, the next click's mask input: a future)
        self._ready_pool = None                    # one thread, made on first use (ready_click)

    # -- checks ------------------------------------------------------------------------------
    @property
    def n_slices(self) -> int:
        return self.image.shape[0]

    def check_slice(self, z) -> int:
        """``z`` as a slice index (``None`` → the current slice; a 2D image has only slice 0)."""
        if z is None:
            return self.z
        if not self.is_volume:
            if not (isinstance(z, (int, np.integer)) and not isinstance(z, bool) and z == 0):
                raise InputError(f"this is a 2D image: there is no slice {z}; leave the slice out.")
            return 0
        if isinstance(z, bool) or not isinstance(z, (int, np.integer)) or not 0 <= int(z) < self.n_slices:
            raise InputError(f"slice {z!r} is not a slice index of this volume; use an int in "
                             f"[0, {self.n_slices - 1}].")
        return int(z)

    def check_label(self, label) -> str:
        label = self.labels[0] if label in (None, "") else str(label)
        if label not in self.label_values:
            raise InputError(f"label {label!r} is not one of this session's labels {list(self.labels)}; "
                             "add it to labels=[…] when you create it.")
        return label

    def get(self, obj) -> Annotation:
        """The :class:`Annotation` of an object (itself or its id) still in this session."""
        found = self._objects.get(obj.id if isinstance(obj, Annotation) else obj)
        if found is None or (isinstance(obj, Annotation) and found is not obj):
            raise InputError(f"object {getattr(obj, 'id', obj)!r} is not in this session (removed or undone); "
                             f"its objects are {list(self._objects)}.")
        return found

    # -- slices and embeddings ---------------------------------------------------------------
    def is_blank(self, z) -> bool:
        """True if slice ``z`` is constant once normalized: nothing to segment, it is never encoded."""
        image = self.image[self.check_slice(z)]
        return bool(image.min() == image.max())

    @property
    def encoder_calls(self) -> int:
        """Slices encoded (each once while its embedding is cached; background prefetches included)."""
        return self.prefetcher.encoder_calls

    def _use(self, z: int) -> None:
        """Point the predictor at slice ``z``'s embedding (encoded on first use; blank → InputError)."""
        if self._predictor_slice == z:
            return
        t0, calls = time.perf_counter(), self.prefetcher.encoder_calls
        self.predictor.set_embedding(self.prefetcher.get(z))  # cached, prefetched, or encoded now
        if self.prefetcher.encoder_calls > calls:
            self.timings["encode_ms"] = (time.perf_counter() - t0) * 1000
        self._predictor_slice = z

    def embed(self, z):
        """Slice ``z``'s :class:`~medsam_lite.Embedding` (encoded once; InputError for a blank slice)."""
        self._use(self.check_slice(z))
        return self.predictor.embedding

    def set_slice(self, z) -> None:
        """Make ``z`` the current slice: encode it (unless blank) and prefetch its neighbours."""
        self.z = z = self.check_slice(z)
        if not self.is_blank(z):
            self._use(z)
        self.prefetcher.touch()
        if self.is_volume and self.prefetch:  # the neighbours, while the user looks at this one
            near = [z + d * s for d in range(1, self.prefetch + 1) for s in (1, -1)]
            self.prefetcher.request([k for k in near if 0 <= k < self.n_slices and not self.is_blank(k)])

    def _decode(self, z: int, boxes, **clicks):
        self.prefetcher.touch()
        self._use(z)
        t0 = time.perf_counter()
        if clicks:
            out = self.predictor.predict(boxes=boxes, return_logits=True, **clicks)
        else:
            out = self.predictor.predict(boxes, return_logits=True)
        self.timings["decode_ms"] = (time.perf_counter() - t0) * 1000
        self.decoder_calls += len(out[0])
        return out

    # -- prompts -------------------------------------------------------------------------------
    def add_boxes(self, boxes, labels=None, slice=None) -> list[Annotation]:
        """Add one object per box on one slice, decoded in one call (equal boxes once).

        Args:
            boxes: ``N×4`` XYXY, original pixels (clipped to the image).
            labels: one class name per box (default: ``labels[0]`` for each).
            slice: the slice (default: the current one).

        Raises:
            InputError: a bad box or class, or a blank slice (nothing to segment); nothing is added.
        """
        z = self.check_slice(slice)
        boxes = check_boxes(boxes, self.hw)
        labels = [self.check_label(v) for v in (labels if labels is not None else [None] * len(boxes))]
        if len(labels) != len(boxes):
            raise InputError(f"got {len(boxes)} boxes but {len(labels)} labels; give one label per box.")
        unique, index = np.unique(boxes, axis=0, return_inverse=True)
        masks, scores, logits = self._decode(z, unique)
        out = []
        for box, label, i in zip(boxes, labels, index.reshape(-1)):
            obj = Annotation(self._next_id, label, z, box, np.zeros((0, 2), np.float32), np.zeros(0, np.int32),
                             masks[i], float(scores[i]), logits[i])
            self._objects[obj.id] = obj
            self._undo.append(obj.id)
            self._next_id += 1
            out.append(obj)
        return out

    def add_box(self, box, label: str | None = None, slice: int | None = None) -> Annotation:
        """Add one object from a box (``[x0, y0, x1, y1]``, XYXY, original pixels); see :meth:`add_boxes`."""
        box = check_boxes(box, self.hw)
        if len(box) != 1:
            raise InputError(f"add_box takes one box [x0, y0, x1, y1], got {len(box)}; use add_boxes.")
        return self.add_boxes(box, None if label is None else [label], slice)[0]

    def move_box(self, obj, box) -> Annotation:
        """Give an object a new box: decoded from the box alone (its clicks go; :meth:`undo` restores them)."""
        obj = self.get(obj)
        box = check_boxes(box, self.hw)
        if len(box) != 1:
            raise InputError(f"move_box takes one box [x0, y0, x1, y1], got {len(box)}.")
        masks, scores, logits = self._decode(obj.slice, box)
        obj.push_state()
        obj.box, obj.points, obj.point_labels = box[0], np.zeros((0, 2), np.float32), np.zeros(0, np.int32)
        obj.mask, obj.score, obj.logits = masks[0], float(scores[0]), logits[0]
        self._undo.append(obj.id)
        return obj

    def add_click(self, obj, x: float, y: float, positive: bool = True) -> Annotation:
        """Correct an object's mask with a click: a foreground (``positive``) or background point.

        The object's box, every click so far and this one, and its current logits as the mask
        input, are decoded once (:meth:`~medsam_lite.Predictor.predict`); the model's click rule
        (:mod:`medsam_lite.model.clickrule`) keeps the previous mask away from the region the click
        corrects, and on the click's side of the object's box (a foreground click inside the box adds nothing
        outside it). ``x, y`` are original pixels of the object's slice (``x`` = column).

        Raises:
            InputError: an unknown object, a point outside the image, ``positive`` not a bool.
        """
        obj = self.get(obj)
        h, w = self.hw
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            raise InputError(f"a click is two numbers x, y (original pixels), got {x!r}, {y!r}.") from None
        if not (np.isfinite([x, y]).all() and 0 <= x <= w - 1 and 0 <= y <= h - 1):
            raise InputError(f"click ({x}, {y}) lies outside the {w}×{h} (W×H) image; clicks are XY in "
                             "original pixels.")
        if not isinstance(positive, (bool, np.bool_)):
            raise InputError(f"positive must be True (foreground) or False (background), got {positive!r}.")
        points = np.vstack([obj.points, np.float32([[x, y]])]).astype(np.float32)
        labels = np.append(obj.point_labels, np.int32(bool(positive))).astype(np.int32)
        masks, scores, logits = self._decode(obj.slice, obj.box[None], points=points[None],
                                             point_labels=labels[None], mask_input=self._mask_input(obj))
        obj.push_state()
        obj.points, obj.point_labels = points, labels
        obj.mask, obj.score, obj.logits = masks[0], float(scores[0]), logits[0]
        self._undo.append(obj.id)
        return obj

    def ready_click(self, obj) -> None:
        """Make the mask input of ``obj``'s next click now, in a background thread (numpy only), so that
        :meth:`add_click` runs the decoder without resizing the mask first. The widget calls it once a
        mask is shown: the user is still aiming. The same masks, bit for bit (the same function makes
        it); nothing is prepared where the model resizes its mask input with torch (it runs at the click),
        and a mask input made for older logits (the object changed since) is not used.
        """
        obj = self.get(obj)
        if self._predictor_slice != obj.slice or (obj.id in self._ready and self._ready[obj.id][0] is obj.logits):
            return  # another slice's embedding is in use (its click makes the input itself), or ready already
        make = mask_input_maker(self.predictor.model, self.predictor.embedding)
        if make is None:
            return
        if self._ready_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._ready_pool = ThreadPoolExecutor(1, thread_name_prefix="medsam-lite-click")
        for k in [k for k in self._ready if k not in self._objects]:  # objects removed since
            del self._ready[k]
        self._ready[obj.id] = (obj.logits, self._ready_pool.submit(make, obj.logits[None]))

    def _mask_input(self, obj: Annotation):
        """The mask input of a click on ``obj``: the one :meth:`ready_click` made for its current logits
        (waiting for it if it is still being made), else the logits themselves (resized by the decoder's
        call)."""
        logits, future = self._ready.pop(obj.id, (None, None))
        if future is not None and logits is obj.logits:
            try:
                return future.result()
            except Exception:  # noqa: BLE001 — made again in the foreground, where its error is raised
                pass
        return obj.logits[None]

    def undo(self) -> Annotation | None:
        """Take back the last prompt: a click or a move restores the object's previous state, a
        box removes its object. Returns the object (``None`` when there is nothing to undo)."""
        while self._undo:
            obj = self._objects.get(self._undo.pop())
            if obj is None:
                continue  # removed since
            if obj.history:
                obj.pop_state()
            else:
                del self._objects[obj.id]
            return obj
        return None

    def relabel(self, obj, label: str) -> Annotation:
        """Give an object another class (its mask stays: no decoding)."""
        obj = self.get(obj)
        obj.label = self.check_label(label)
        return obj

    def remove(self, obj) -> None:
        """Delete an object (and its prompts)."""
        del self._objects[self.get(obj).id]

    # -- results -------------------------------------------------------------------------------
    @property
    def objects(self) -> list[Annotation]:
        """Every object, by slice, in creation order within a slice."""
        return sorted(self._objects.values(), key=lambda o: o.slice)

    def objects_on(self, z=None) -> list[Annotation]:
        """The objects of slice ``z`` (default: the current one), in creation order."""
        z = self.check_slice(z)
        return [o for o in self._objects.values() if o.slice == z]

    @property
    def prompts(self) -> list[Prompt]:
        """Each object's box and mask, by slice, in creation order within a slice."""
        return [Prompt(o.slice if self.is_volume else None, o.box, o.label, o.mask, o.score) for o in self.objects]

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """``{label: bool mask}`` for every label, the union of its objects; ``H×W`` or ``(z, y, x)``."""
        out = {label: np.zeros(self.shape[:3] if self.is_volume else self.hw, bool) for label in self.labels}
        for o in self.objects:
            (out[o.label] if not self.is_volume else out[o.label][o.slice])[...] |= o.mask
        return out

    def to_label_map(self) -> np.ndarray:
        """The label map: each object's class value (:attr:`label_values`), 0 = background.

        ``uint8`` (``uint16`` for values over 255), ``H×W`` or ``(z, y, x)``. Where masks overlap
        the smaller mask wins (a structure boxed inside a larger one keeps its class).
        """
        full = self.shape[:3] if self.is_volume else self.hw
        out = np.zeros(full, np.uint8 if max(self.label_values.values()) < 256 else np.uint16)
        for o in sorted(self.objects, key=lambda o: -int(np.count_nonzero(o.mask))):
            (out if not self.is_volume else out[o.slice])[o.mask] = self.label_values[o.label]
        return out

    label_map = property(to_label_map)

    def summary(self) -> dict:
        """A JSON-ready description: labels, current slice, counters, timings and each object."""
        return {"labels": list(self.labels), "slice": self.z if self.is_volume else None,
                "encoder_calls": self.encoder_calls, "decoder_calls": self.decoder_calls,
                "cached_embeddings": sorted(self.embeddings), "timings": dict(self.timings),
                "prompts": [{"id": o.id, "slice": o.slice if self.is_volume else None,
                             "box": [float(v) for v in o.box], "label": o.label, "score": round(o.score, 4),
                             "area": int(o.mask.sum()), "clicks": [[float(x), float(y), int(k)] for (x, y), k
                                                                   in zip(o.points, o.point_labels)]}
                            for o in self.objects]}

    def save(self, path) -> Path:
        """Write :meth:`to_label_map` (NIfTI / NRRD / MHA with the scan's geometry, or PNG for 2D);
        see :func:`~medsam_lite.interactive.annotations.save_label_map`."""
        return save_label_map(self, path)

    def save_case(self, folder, case: str | None = None) -> tuple[Path, Path]:
        """Save the scan and its label map as one case of a folder :func:`~medsam_lite.preprocess`
        reads; see :func:`~medsam_lite.interactive.annotations.save_case`."""
        return save_case(self, folder, case)

    def save_boxes(self, path, case: str | None = None) -> Path:
        """Write every object's box as weak labels (training data without masks) for
        :func:`~medsam_lite.preprocess` ``(weak=path)``; see :mod:`medsam_lite.io.weaklabels`.

        One ``box`` row per object: its label value, its slice ``z`` and its XYXY box in original
        pixels — the slice index ``preprocess`` uses when it cuts the volume along ``z`` (axial
        scans; pass ``axis=0`` for others). An existing file (``.csv`` or ``.json``) keeps its other
        cases' rows; this case's rows are replaced.

        Args:
            path: the weak-label file (``.csv`` or ``.json``).
            case: the case name (default: the scan file's name without suffix, else ``"case"``).

        Returns:
            ``path``.
        """
        import re

        from ..io.weaklabels import WeakAnnotation, read_weak_labels, write_weak_labels

        if case is None:
            case = re.sub(r"(\.nii\.gz|\.[A-Za-z0-9]+)$", "", Path(self.source.path).name) if (
                self.source is not None and self.source.path) else "case"
        path = Path(path)
        kept = [a for a in read_weak_labels(path) if a.case != case] if path.is_file() else []
        new = [WeakAnnotation(str(case), int(self.label_values[o.label]), "box", int(o.slice),
                              tuple(float(v) for v in o.box)) for o in self.objects]
        return write_weak_labels(path, kept + new)

    def close(self) -> None:
        """Stop the background threads (the session stays usable; slices then encode on demand)."""
        self.prefetcher.close()
        if self._ready_pool is not None:
            self._ready_pool.shutdown(wait=True)
            self._ready_pool, self._ready = None, {}

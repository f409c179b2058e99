"""Segment a whole 3D scan from one box: slice-by-slice propagation over cached embeddings.

The model is 2D. :func:`predict_volume` segments a key slice from your box, then walks slice by
slice in both directions; each new box is the previous slice's mask box plus a margin (1 px + 5 %
of its side by default). It stops where the target vanishes — the mask has fewer than
``min_pixels`` pixels, or its mean intensity moved more than ``max_intensity_change`` grey levels
away from the mask on the user's slice (the model has slid onto another tissue), or the predicted
IoU is below ``min_score`` — or at the end of a 3D box's z-range. Every slice is encoded at most
once per :class:`VolumePredictor` and the embedding is reused for every target and every call.

The defaults were chosen on sample subjects sub-01/02 (``bench/bench_volume.py``): with a decoder
fine-tuned on the lateral ventricles, one box reaches 0.86–0.91 of the 3D Dice of a ground-truth
box on every slice (unseen sub-08: 0.90); without the intensity check the masks can leak on through
the head.

Conventions:

* Volumes are arrays ``(z, y, x)`` (SimpleITK order; spacing stays ``(x, y, z)``, see
  :mod:`medsam_lite.io`). ``axis`` is the array axis the slices are taken across (default: the one
  with the largest spacing for a :class:`~medsam_lite.io.Volume`, else 0). Slice ``i`` is the 2D
  array ``np.take(array, i, axis)``.
* A 2D box is ``XYXY`` in that slice's original pixels: ``x`` = column, ``y`` = row, inclusive of
  the target's extreme pixels (as :func:`~medsam_lite.model.geometry.box_from_mask` makes them).
* A 3D box is ``[x0, y0, z0, x1, y1, z1]`` as in the LiteMedSAM challenge: ``x, y`` as above, ``z``
  the slice index along ``axis``, all inclusive. The key slice is its middle,
  ``z0 + (z1 - z0) // 2``, and propagation never leaves ``[z0, z1]`` nor the box's ``x, y`` extent.
* Results have the array's shape: ``bool`` for one target, a label map for several.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..checks import check_int
from ..model.models import inference_model
from ..errors import InputError
from ..model.inference import (MASK_PAD_LOGIT, Embedding, EmbeddingCache, check_mask_input, check_points, decode,
                               encode)
from ..io.formats import label_writer
from ..io.scans import Volume, read_volume
from .predict import resolve_preset
from .embedcache import for_model
from .prefetch import Prefetcher
from .propagation import PackageRules, propagate
from .refine3d import refine_volume
from .volprompts import check_label_clicks, check_slice_clicks, parse_box_prompt
from ..model.geometry import check_boxes

if TYPE_CHECKING:  # (the torch model's class: imported only for type checkers)
    from ..model.sammodel import SamModel

#: Defaults of the propagation options (see :meth:`VolumePredictor.predict`).
DEFAULTS = {"margin": 1.0, "margin_ratio": 0.05, "min_pixels": 10, "min_score": 0.0,
            "max_intensity_change": 64.0, "largest_component": False}


class VolumePredictor:
    """A 3D scan, normalized once, whose slices are encoded on demand and cached.

    Example::

        vp = VolumePredictor(io.read_volume("scan.nii.gz"), model)
        liver = vp.predict([x0, y0, z0, x1, y1, z1])          # a 3D box
        kidney = vp.predict([x0, y0, x1, y1], slice_index=40)  # reuses the slices already encoded
        print(vp.encoder_calls, "slices encoded")

    Args:
        volume: a :class:`~medsam_lite.io.Volume`, a ``(z, y, x)`` array of any real dtype, or a
            path :func:`~medsam_lite.io.read_volume` reads (NIfTI, NRRD, MHA, DICOM series folder).
        model: a :class:`~medsam_lite.model.models.SamModel` (default: ``load_model()``, LiteMedSAM); a
            fine-tuned one loads with ``load_model(checkpoint=...)``.
        axis: the array axis slices are taken across (default: the largest spacing's axis for a
            ``Volume``, ties and plain arrays → 0).
        modality: ``"CT"`` (HU window) or another modality (percentiles over the whole volume's
            voxels > 0), as in :func:`~medsam_lite.normalize_intensity`. Default: the preset the
            model was fine-tuned with, else ``"MR"``. A ``uint8`` volume is taken as already normalized.
        window: CT window name or ``(low, high)``, see ``normalize_intensity``.
        prefetch: how many neighbouring slices on each side :meth:`prefetch_around` encodes in a
            background thread (default 0: none; the widget uses it while you look at a slice).
        disk_cache: also keep slice embeddings on disk across processes (:mod:`~medsam_lite.interactive.embedcache`):
            ``True`` (the cache folder), a folder, or ``False`` (default: memory only).

    Attributes:
        volume: the :class:`~medsam_lite.io.Volume` (geometry for writing the result with
            ``io.write_volume(mask, path, like=vp.volume)``).
        axis: the out-of-plane array axis.
        image: the normalized ``uint8`` volume, same shape as the input array.
        preset: the :class:`~medsam_lite.model.intensity.IntensityPreset` applied to the volume.
        embeddings: an :class:`~medsam_lite.model.inference.EmbeddingCache`, slice index →
            :class:`~medsam_lite.model.inference.Embedding`, filled on demand. They depend
            only on the image, the axis and the image encoder: a predictor of the same volume with a
            fine-tuned decoder can take them over (``other.embeddings.update(vp.embeddings)``).
        encoder_calls: how many slices were encoded (each at most once).
    """

    def __init__(self, volume, model: SamModel | None = None, axis: int | None = None,
                 modality: str | None = None, window=None, prefetch: int = 0, disk_cache=False):
        self.volume = _as_volume(volume)
        array = self.volume.array
        self.axis = self.volume.slice_axis(axis)  # the one rule (preprocess's too); slices ≥ 2×2
        self.model = inference_model(model)
        self.preset = resolve_preset(self.model, modality, window)
        self.prefetch = check_int(prefetch, "prefetch (neighbouring slices to encode ahead)", 0)
        self.disk = for_model(self.model, disk_cache)  # slice embeddings kept on disk, or None
        if self.disk is None and getattr(self.model, "torch_free", False):  # every slice asked for is encoded:
            self.model.runtime.preload_encoder()  # its session loads while the volume is normalised
        self.image = array if array.dtype == np.uint8 else self.preset.apply(array)
        self.embeddings = EmbeddingCache()
        self._prefetcher = Prefetcher.owned(self, lambda vp, z: encode(vp.model, vp.slice_image(z)) if vp.disk is None
                                            else vp.disk.embedding_of(vp.model, vp.slice_image(z)), self.embeddings)

    def close(self) -> None:
        """Stop the background prefetch (after the slice being encoded); also done when collected."""
        self._prefetcher.close()

    @property
    def encoder_calls(self) -> int:
        """How many slices were encoded (each at most once; background prefetches included)."""
        return self._prefetcher.encoder_calls

    def prefetch_around(self, index: int) -> None:
        """Encode the :attr:`prefetch` slices on each side of ``index`` in the background (nearest
        first, skipping blank and cached ones); a later call replaces what is still waiting."""
        index = self.check_index(index)
        order = [index + d * s for d in range(1, self.prefetch + 1) for s in (1, -1)]
        self._prefetcher.request([z for z in order if 0 <= z < self.n_slices and not self.is_blank(z)])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the volume array, ``(z, y, x)``."""
        return tuple(self.image.shape)

    @property
    def n_slices(self) -> int:
        """Number of slices along :attr:`axis`."""
        return self.image.shape[self.axis]

    @property
    def slice_hw(self) -> tuple[int, int]:
        """``(H, W)`` of one slice (rows, columns)."""
        return tuple(s for a, s in enumerate(self.image.shape) if a != self.axis)

    def slice_image(self, index: int) -> np.ndarray:
        """The normalized ``uint8`` slice ``index`` along :attr:`axis`, ``H×W``."""
        return np.take(self.image, self.check_index(index), axis=self.axis)

    def is_blank(self, index: int) -> bool:
        """True if slice ``index`` is constant once normalized (e.g. outside the body): nothing to segment."""
        image = self.slice_image(index)
        return bool(image.min() == image.max())

    def embed(self, index: int) -> Embedding:
        """The :class:`~medsam_lite.model.inference.Embedding` of slice ``index``; encodes only the first time.

        Raises:
            InputError: the slice is blank (see :meth:`is_blank`).
        """
        return self._prefetcher.get(self.check_index(index))

    def predict_slice(self, index: int, boxes=None, points=None, point_labels=None, mask_input=None,
                      return_logits: bool = False, space: str = "original", box_space: str | None = None,
                      click_rule=None):
        """Segment ``N`` targets on slice ``index`` from boxes, clicks, or both (encodes it if needed).

        Args:
            index: the slice along :attr:`axis`.
            boxes: one XYXY box or ``N×4``, the slice's **original** pixels; ``None``: clicks only.
            points: ``K×2`` (one target) or ``N×K×2`` (paired with ``N`` boxes) XY (column, row) in the
                slice's original pixels. point_labels: ``K`` or ``N×K``, 1 foreground / 0 background.
            mask_input: the ``N×H×W`` (``H×W``) logits a previous call returned for the same targets
                on this slice (``return_logits=True``): the decoder refines that mask.
            return_logits: also return the ``N×H×W`` float32 logits (original pixels).
            space: the pixel space of the prompts: ``"original"`` (the slice's pixels, default) or
                ``"model"`` (the decoder's own prompts in model pixels, used as given: the published
                challenge rules); see :func:`~medsam_lite.model.inference.decode`.
            box_space: deprecated, use ``space``.
            click_rule: how the clicks' answer joins the previous mask (:mod:`medsam_lite.model.clickrule`);
                default: the model's rule.

        Every prompt is checked before the slice is encoded, and goes through the one seam
        (:func:`~medsam_lite.model.inference.decode`): a box alone runs the published decoder, clicks or
        a mask input the model's click decoder. A blank slice is not encoded (the model would return
        a confident mask of nothing): its masks are empty, its scores 0 (its logits
        :data:`~medsam_lite.model.inference.MASK_PAD_LOGIT`).

        Returns:
            ``(masks N×H×W bool, scores N float32)`` as :meth:`Predictor.predict`, plus the logits
            with ``return_logits=True``.

        Raises:
            InputError: a slice outside the volume; no box and no points; a bad box; points outside the
                slice, labels other than 0/1, points without labels; a mask input of another shape.
        """
        index = self.check_index(index)
        if box_space is not None:
            warnings.warn("predict_slice(box_space=) is deprecated: pass space= (the pixel space of every prompt).",
                          DeprecationWarning, stacklevel=2)
            space = box_space
        if boxes is None and points is None:
            raise InputError("give a box (XYXY, the slice's original pixels), points with point_labels, or both.")
        if space == "model":  # the published challenge rules: model-pixel prompts, used as given
            boxes = None if boxes is None else np.reshape(np.asarray(boxes, np.float64), (-1, 4))
        elif space != "original":
            raise InputError(f"space must be 'original' or 'model', got {space!r}.")
        elif boxes is not None:
            boxes = check_boxes(boxes, self.slice_hw)
        n = None if boxes is None else len(boxes)
        if points is not None:
            bounds = self.slice_hw if space == "original" else self.model.geometry(self.slice_hw).resized_hw
            n = len(check_points(points, point_labels, n, bounds, space)[0])
        elif point_labels is not None:
            raise InputError("point_labels were given without points; pass points=[[x, y], …] too.")
        if mask_input is not None:
            check_mask_input(mask_input, n, self.slice_hw)
        if self.is_blank(index):
            empty = np.zeros((n, *self.slice_hw), bool), np.zeros(n, np.float32)
            return (*empty, np.full((n, *self.slice_hw), MASK_PAD_LOGIT, np.float32)) if return_logits else empty
        out = decode(self.model, self.embed(index), boxes, points=points, point_labels=point_labels,
                     mask_input=mask_input, logits=return_logits, space=space, click_rule=click_rule)
        return out if return_logits else out[:2]

    def predict(self, box, slice_index=None, *, margin: float = DEFAULTS["margin"],
                margin_ratio: float = DEFAULTS["margin_ratio"], min_pixels: int = DEFAULTS["min_pixels"],
                min_score: float = DEFAULTS["min_score"],
                max_intensity_change: float | None = DEFAULTS["max_intensity_change"],
                largest_component: bool = DEFAULTS["largest_component"], progress: bool = True,
                overlap: str = "last", clicks=None) -> np.ndarray:
        """Segment one target (or several) through the volume from a box prompt.

        Args:
            box: one of

                * ``[x0, y0, x1, y1]`` on slice ``slice_index`` (an int);
                * ``N×4`` boxes on the ``N`` slices listed in ``slice_index``: all are honoured
                  (they replace the propagated box on their slice) and propagation starts from the
                  middle one; a slice beyond a gap where the target vanished is still segmented;
                * ``[x0, y0, z0, x1, y1, z1]``, a 3D box (``slice_index`` optional: the key slice,
                  default its middle);
                * ``{label: prompt}`` for several targets, each ``prompt`` a 3D box or a
                  ``(box, slice_index)`` pair as above → a label map.
            slice_index: see ``box``; slice indices along :attr:`axis`.
            margin: original pixels added on every side of the previous slice's mask box
                (default 1).
            margin_ratio: plus this share of the box's width (height) on the left and right (top
                and bottom) (default 0.05): large targets need more room to grow between slices.
            min_pixels: a propagated mask with fewer pixels means the target has vanished: it is
                dropped and propagation stops in that direction (default 10; masks on user slices
                are always kept).
            min_score: likewise for a predicted IoU below this (default 0: off).
            max_intensity_change: likewise when the mean normalized intensity (0–255) inside the
                mask differs from that inside the mask on the nearest user slice by more than this
                (default 64, a quarter of the range; ``None``: off).
            largest_component: keep only the largest 3D connected component of each target (for a
                target known to be one piece; not for e.g. the two lateral ventricles).
            progress: show a progress bar over the slices.
            overlap: for a ``{label: prompt}`` dict, who gets a voxel two targets claim: ``"last"``
                (default: later targets overwrite earlier ones) or ``"score"`` (the target whose mask
                on that slice has the higher predicted IoU).
            clicks: corrective clicks per slice, ``{z: (points K×2, point_labels K)}`` (``{label: {z: …}}``
                for a ``{label: prompt}`` dict): XY (column, row) in slice ``z``'s original pixels, 1
                foreground / 0 background. On slice ``z`` the target is decoded from its box (the user's
                or the propagated one) plus these clicks, and the walk goes on from that corrected
                mask; a clicked slice the walk does not reach starts a walk of its own. To correct a
                propagated result, call again with the same box and ``clicks=`` (the slices' embeddings
                are cached: only the decoder runs again). See :mod:`medsam_lite.interactive.volprompts`.

        Returns:
            ``bool`` mask of the volume's shape for one target; for a ``{label: prompt}`` dict a
            ``uint8`` label map (``uint16`` for labels > 255), overlaps resolved by ``overlap``.

        Raises:
            InputError: a malformed box, a slice index outside the volume, a box outside the slice,
                a box on a blank slice; clicks that are malformed, outside their slice or the 3D box's
                z-range, or for a label without a prompt — all before any slice is encoded.
                (Propagation simply stops at a blank slice.)
        """
        options = dict(margin=margin, margin_ratio=margin_ratio, min_pixels=min_pixels, min_score=min_score,
                       max_intensity_change=max_intensity_change,
                       largest_component=largest_component, progress=progress)
        if overlap not in ("last", "score"):
            raise InputError(f"overlap must be 'last' or 'score', got {overlap!r}.")
        if isinstance(box, Mapping):
            if slice_index is not None:
                raise InputError("with a {label: prompt} dict give each target's slice inside it, as "
                                 "{label: (box, slice_index)}; slice_index= must stay None.")
            return self._predict_labels(box, options, overlap, clicks)
        return self._predict_target(self._prompt(box, slice_index, clicks), **options)[0]

    def refine(self, mask, clicks, **options) -> np.ndarray:
        """Correct a 3D mask with clicks at 3D array indices (z, y, x): :func:`~.refine3d.refine_volume`."""
        return refine_volume(self, mask, clicks, **options)

    # -- internals -------------------------------------------------------------------------------

    def check_index(self, index) -> int:
        """``index`` as an int slice index along :attr:`axis` (0 … n_slices − 1), else :class:`InputError`."""
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise InputError(f"slice index must be an int, got {index!r}.")
        if not 0 <= int(index) < self.n_slices:
            raise InputError(f"slice index {index} is outside the volume: axis {self.axis} has "
                             f"{self.n_slices} slices (0 … {self.n_slices - 1}).")
        return int(index)

    def _prompt(self, box, slice_index, clicks=None, checked_clicks=None):
        """One target's prompt, checked (before any work) → (user boxes, z-range, clip box, clicks)."""
        keys, z_range, clip = parse_box_prompt(self, box, slice_index)
        blank = [k for k in sorted(keys) if self.is_blank(k)]
        if blank:
            raise InputError(f"slice {blank[0]} (axis {self.axis}) is blank, with nothing to segment; draw the "
                             "box on a slice that shows the target.")
        if checked_clicks is None:
            checked_clicks = check_slice_clicks(self, clicks, z_range if clip is not None else None)
        return keys, z_range, clip, checked_clicks

    def _predict_labels(self, targets: Mapping, options: dict, overlap: str = "last", clicks=None) -> np.ndarray:
        if not targets:
            raise InputError("the {label: prompt} dict is empty; give at least one target.")
        labels = list(targets)
        for label in labels:
            if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or not 0 < label < 65536:
                raise InputError(f"label {label!r} must be an int in 1 … 65535 (0 is background).")
        prompts = {}
        for label in labels:  # every target's prompt is checked before the first is propagated
            prompt = targets[label]
            if isinstance(prompt, tuple) and len(prompt) == 2 and (np.ndim(prompt[1]) == 0 or np.ndim(prompt[0]) == 2):
                prompts[label] = self._prompt(*prompt, checked_clicks={})
            else:
                prompts[label] = self._prompt(prompt, None, checked_clicks={})
        ranges = {k: p[1] if p[2] is not None else None for k, p in prompts.items()}
        for label, checked in check_label_clicks(self, clicks, labels, ranges).items():
            prompts[label] = (*prompts[label][:3], checked)
        out = np.zeros(self.shape, np.uint8 if max(labels) < 256 else np.uint16)
        best = np.full(self.shape, -np.inf, np.float32)  # the predicted IoU of the target holding each voxel
        for label in labels:
            mask, scores = self._predict_target(prompts[label], **options)
            if overlap == "score":
                shape = [1, 1, 1]
                shape[self.axis] = self.n_slices
                score = np.broadcast_to(scores.reshape(shape), self.shape)
                mask = mask & (score > best)
                best[mask] = score[mask]
            out[mask] = label
        return out

    def _predict_target(self, prompt, *, progress, **options) -> np.ndarray:
        """One checked prompt through the volume by the package's rules (:class:`~.propagation.PackageRules`,
        ``options`` as :meth:`predict`'s) → ``(bool mask, scores per slice)``."""
        keys, z_range, clip, clicks = prompt
        return propagate(self, keys, z_range, PackageRules(clip=clip, **options), clicks=clicks, progress=progress)


def predict_volume(volume, box, slice_index=None, axis: int | None = None, model: SamModel | None = None,
                   *, modality: str | None = None, window=None, out=None, format: str | None = None,
                   names: dict | None = None, **options) -> np.ndarray:
    """Segment a target through a 3D scan from a box on one slice (or a 3D box).

    The one-call form of :class:`VolumePredictor`: segments the key slice, then moves slice by
    slice both ways, each box taken from the previous slice's mask (plus a margin), until the
    target vanishes or leaves the 3D box.

    Example::

        scan = io.read_volume("sub-08.nii.gz")
        mask = predict_volume(scan, [60, 70, 105, 125], slice_index=21)   # bool (z, y, x)
        io.write_volume(mask, "mask.nii.gz", like=scan)                    # same geometry

    Args:
        volume: a :class:`~medsam_lite.io.Volume`, a ``(z, y, x)`` array, a file path, or a
            :class:`VolumePredictor` (reuses the embeddings it has cached; then leave ``axis``,
            ``model``, ``modality`` and ``window`` unset).
        box: ``[x0, y0, x1, y1]`` (XYXY, original pixels of the slice) with ``slice_index``; ``N×4``
            boxes with ``N`` slice indices; a 3D box ``[x0, y0, z0, x1, y1, z1]``; or
            ``{label: prompt}`` for a label map. See :meth:`VolumePredictor.predict`.
        slice_index: the slice (or slices) the box is drawn on, along ``axis``.
        axis: out-of-plane array axis (default: largest spacing's axis for a ``Volume``, else 0).
        model: a :class:`~medsam_lite.model.models.SamModel` (default: the bundled LiteMedSAM).
        modality: ``"MR"`` (default) or ``"CT"``; with ``window``, the intensity preset.
        out, format, names: also write the result to ``out`` (``.dcm``: a DICOM-SEG of the source series,
            segments named by ``names``), checked before any work: :func:`medsam_lite.io.formats.label_writer`.
        **options: ``margin`` (1 px), ``margin_ratio`` (0.05), ``min_pixels`` (10), ``min_score``
            (0.0), ``max_intensity_change`` (64), ``largest_component`` (False), ``progress``
            (True), ``clicks`` (per-slice corrective clicks ``{z: (points K×2 XY, point_labels K)}``);
            see :meth:`VolumePredictor.predict`.

    Returns:
        A ``bool`` mask of the array's shape, or a ``uint8`` label map for a ``{label: prompt}`` dict.
    """
    if isinstance(volume, VolumePredictor):
        given = {k: v for k, v in dict(axis=axis, model=model, modality=modality, window=window).items()
                 if v is not None}
        if given:
            raise InputError(f"{sorted(given)} are already fixed by the VolumePredictor you passed; "
                             "leave them unset or build a new VolumePredictor.")
    source = volume.volume if isinstance(volume, VolumePredictor) else volume
    values = list(box) if isinstance(box, dict) else [1]  # a {label: prompt} map (keys checked by predict), or label 1
    writer = label_writer(out, format, source, names, values) if out is not None or format is not None else None
    predictor = volume if isinstance(volume, VolumePredictor) else VolumePredictor(
        volume, model=model, axis=axis, modality=modality, window=window)
    result = predictor.predict(box, slice_index, **options)
    if writer is not None:
        writer(result)
    return result


def _as_volume(volume) -> Volume:
    if isinstance(volume, (str, os.PathLike)):
        volume = read_volume(volume)
    if isinstance(volume, Volume):
        if volume.array.ndim != 3 or len(volume.spacing) != 3:
            raise InputError(f"{volume.path or 'the volume'} is not 3D (array {volume.array.shape}); "
                             "for a 2D image use Predictor or predict().")
        return volume
    if isinstance(volume, np.ndarray):
        if volume.ndim != 3:
            raise InputError(f"expected a 3D (z, y, x) array, got shape {volume.shape}; for a 2D image "
                             "use Predictor or predict().")
        return Volume(volume)
    raise InputError(f"volume must be a medsam_lite.io.Volume, a 3D numpy array or a file path, "
                     f"got {type(volume).__name__}.")

"""Many labels in one call: a label map (or boxes per label) in, a label map out.

* 2D: one box per label **and connected component** of a label map (original pixels, XYXY),
  all decoded in one decoder call on one embedding; where masks overlap, the pixel goes to the
  mask with the highest predicted IoU (score). Optional corrective clicks per label,
  ``{label: (points, point_labels)}`` (XY in original pixels).
* 3D: one 3D box per label (its extent in the label volume), propagated slice by slice by
  :class:`~medsam_lite.VolumePredictor` (each slice encoded once for every label); overlaps go to
  the label with the higher predicted IoU on that slice. Optional corrective clicks per label and
  slice, ``{label: {z: (points, point_labels)}}`` (XY in the slice's original pixels).

Label maps are integer arrays, 0 = background; outputs are ``uint8`` (``uint16`` above 255).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from ..checks import check_labels
from ..errors import InputError
from ..model.inference import decode
from .predict import Predictor
from .volprompts import check_target_clicks
from .prompts import box3d_from_mask
from ..model.geometry import box_from_mask


def _label_array(label_map, ndim: int) -> np.ndarray:
    arr = np.asarray(getattr(label_map, "array", label_map))
    if arr.ndim != ndim or arr.dtype.kind not in "biu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise InputError(f"a label map must be a {ndim}D array of whole numbers (0 = background), got "
                         f"shape {arr.shape} dtype {arr.dtype}.")
    return arr.astype(np.int64, copy=False)


def _chosen(arr: np.ndarray, labels) -> list[int]:
    present = [int(v) for v in np.unique(arr) if v > 0]
    if labels is None:
        chosen = present
    else:
        chosen = sorted(set(check_labels(labels)))  # whole numbers only: 1.7 is refused, not read as 1
        missing = sorted(set(chosen) - set(present))
        if missing:
            raise InputError(f"labels {missing} are not in the label map; it holds {present[:20]}.")
    if not chosen:
        raise InputError("the label map is empty (only 0): there is no target to put a box around.")
    if max(chosen) > 65535:
        raise InputError(f"label {max(chosen)} is above 65535; renumber the labels.")
    return chosen


def boxes_from_label_map(label_map, labels=None, min_pixels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One tight XYXY box per label and 8-connected component of a 2D label map.

    Args:
        label_map: ``H×W`` integer array (original pixels), 0 = background.
        labels: only these label values (default: every label present).
        min_pixels: skip components smaller than this.

    Returns:
        ``(labels N int64, boxes N×4 float32 XYXY original pixels)``, components largest first per label.
        A component one pixel wide or tall (e.g. a speck) has a zero-area box, too small to prompt:
        it is skipped, and the skipped components are counted per label in one warning.
    """
    arr = _label_array(label_map, 2)
    out_labels, out_boxes, thin = [], [], {}
    for value in _chosen(arr, labels):
        cc, n = ndimage.label(arr == value, structure=np.ones((3, 3), bool))
        sizes = np.bincount(cc.ravel(), minlength=n + 1)[1:]
        for k in np.argsort(-sizes):
            if sizes[k] >= max(1, min_pixels):
                box = box_from_mask(cc == k + 1)
                if box[2] <= box[0] or box[3] <= box[1]:
                    thin[value] = thin.get(value, 0) + 1
                    continue
                out_labels.append(value)
                out_boxes.append(box)
    _report_thin(thin, "component")
    if not out_boxes:
        raise InputError(f"no component of the label map has ≥ {min_pixels} pixels and a box at least 2 pixels "
                         "wide and tall (one-pixel-wide components are too small to prompt).")
    return np.asarray(out_labels, np.int64), np.stack(out_boxes).astype(np.float32)


def _report_thin(thin: dict, what: str) -> None:
    if thin:
        counts = ", ".join(f"label {k}: {v}" for k, v in sorted(thin.items()))
        warnings.warn(f"skipped {sum(thin.values())} {what}(s) one pixel wide or tall ({counts}): a box around "
                      "them has zero area, too small to prompt the model; they stay 0 in the output.", stacklevel=3)


def merge_by_score(masks: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``N×H×W`` bool masks of ``labels`` → one ``H×W`` label map; a pixel several masks cover goes to
    the mask with the highest score (predicted IoU)."""
    masks, scores, labels = np.asarray(masks, bool), np.asarray(scores, np.float32), np.asarray(labels)
    dtype = np.uint8 if labels.max() < 256 else np.uint16
    ranked = np.where(masks, scores[:, None, None], -np.inf)
    winner = ranked.argmax(axis=0)
    out = labels.astype(dtype)[winner]
    out[~masks.any(axis=0)] = 0
    return out


def predict_label_map(image, label_map, model=None, labels=None, modality=None, window=None,
                      predictor: Predictor | None = None, clicks=None) -> np.ndarray:
    """Segment every label (and connected component) of a 2D label map from its box, in one decoder call.

    Args:
        image: ``H×W`` any real dtype or ``H×W×3`` uint8 (ignored when ``predictor`` already holds it).
        label_map: ``H×W`` integer array whose labels give the boxes (e.g. a rough annotation, or
            another tool's output), original pixels.
        model: a :class:`~medsam_lite.SamModel` (default: the bundled LiteMedSAM).
        labels: only these label values (default: all).
        modality, window: intensity preset (see :meth:`Predictor.set_image`).
        predictor: a :class:`~medsam_lite.Predictor` whose image is set (reuses its embedding).
        clicks: corrective clicks per label, ``{label: (points K×2 XY original pixels, point_labels K
            of 1 foreground / 0 background)}``. That label (the component whose box holds most of the
            clicks, when it has several) is decoded as in the widget: its box alone, then box + clicks
            with those logits as the mask input (the click decoder).

    Returns:
        ``H×W`` ``uint8`` (``uint16``) label map, overlaps resolved by predicted IoU.

    Raises:
        InputError: sizes differ; clicks for a label that has no box, points outside the image,
            labels other than 0/1 (all before the encoder runs).
    """
    image_hw = predictor.embedding.original_hw if predictor is not None and predictor.embedding is not None \
        else tuple(np.shape(getattr(image, "array", image))[:2])
    if tuple(np.shape(getattr(label_map, "array", label_map))[:2]) != image_hw:  # before the encoder runs
        raise InputError(f"label map {np.shape(getattr(label_map, 'array', label_map))} and image {image_hw} differ in "
                         "size; resample the label map onto the image first.")
    values, boxes = boxes_from_label_map(label_map, labels)
    clicked = _check_map_clicks(clicks, values, boxes, image_hw)
    if predictor is None:
        predictor = Predictor(model)
        predictor.set_image(image, modality=modality, window=window)
    if predictor.embedding is None:
        raise InputError("the predictor has no image; call predictor.set_image(image) first.")
    if tuple(np.shape(label_map)[:2]) != predictor.embedding.original_hw:
        raise InputError(f"label map {np.shape(label_map)} and image {predictor.embedding.original_hw} differ in "
                         "size; resample the label map onto the image first.")
    masks, scores, _ = decode(predictor.model, predictor.embedding, boxes, logits=False)
    for i, (points, point_labels) in clicked.items():
        _, _, logits = decode(predictor.model, predictor.embedding, boxes[i], logits=True)
        m, sc, _ = decode(predictor.model, predictor.embedding, boxes[i], points=points, point_labels=point_labels,
                          mask_input=logits, logits=False)
        masks[i], scores[i] = m[0], sc[0]
    return merge_by_score(masks, scores, values)


def _check_map_clicks(clicks, values: np.ndarray, boxes: np.ndarray, image_hw) -> dict[int, tuple]:
    """``{label: (points, point_labels)}`` → ``{box index: (points 1×K×2, labels 1×K)}``, checked."""
    if clicks is None:
        return {}
    if not isinstance(clicks, dict):
        raise InputError("clicks must be {label: (points, point_labels)}: points K×2 XY in original pixels, "
                         f"point_labels K of 1/0; got {type(clicks).__name__}.")
    out = {}
    for label, prompt in clicks.items():
        rows = np.flatnonzero(values == label)
        if not len(rows):
            raise InputError(f"clicks for label {label!r}, which has no box in the label map; the labels are "
                             f"{sorted(set(values.tolist()))[:20]}.")
        points, point_labels = check_target_clicks(prompt, image_hw, f"clicks for label {label}")
        p = points[0]
        inside = [int(((p[:, 0] >= b[0]) & (p[:, 0] <= b[2]) & (p[:, 1] >= b[1]) & (p[:, 1] <= b[3])).sum())
                  for b in boxes[rows]]
        out[int(rows[int(np.argmax(inside))])] = (points, point_labels)  # ties → the largest component
    return out


def boxes3d_from_label_map(label_volume, axis: int = 0, labels=None) -> dict[int, list[float]]:
    """``{label: [x0, y0, z0, x1, y1, z1]}``: each label's 3D extent, ``z`` along ``axis`` and
    ``x, y`` the slice's column and row (the 3D-box format of :func:`~medsam_lite.predict_volume`)."""
    arr = _label_array(label_volume, 3)
    moved = np.moveaxis(arr, axis, 0)
    boxes, thin = {}, {}
    for value in _chosen(arr, labels):
        box = [float(c) for c in box3d_from_mask(moved == value)]
        if box[3] <= box[0] or box[4] <= box[1]:  # one voxel wide or tall in every slice: no box to prompt
            thin[value] = 1
        else:
            boxes[value] = box
    _report_thin(thin, "label")
    if not boxes:
        raise InputError("every chosen label is one voxel wide or tall within its slices: too small to prompt "
                         "with a box.")
    return boxes


def predict_volume_labels(volume, label_volume, model=None, labels=None, axis: int | None = None,
                          modality=None, window=None, out=None, format: str | None = None, names=None,
                          clicks=None, **options) -> np.ndarray:
    """Segment every label of a 3D label map through the volume, one 3D box per label.

    Args:
        volume: a :class:`~medsam_lite.io.Volume`, ``(z, y, x)`` array, file path or
            :class:`~medsam_lite.VolumePredictor` (reuses its encoded slices).
        label_volume: integer array (or ``Volume``) of the same shape whose labels give the 3D boxes.
        model, axis, modality, window, **options: as :func:`~medsam_lite.predict_volume`.
        out, format, names: write the label map to ``out`` too (``.dcm`` / ``format="dicom-seg"``: a
            DICOM-SEG referencing the source series), as :func:`~medsam_lite.predict_volume`; ``names``
            defaults to the names ``label_volume`` carries (an RTSTRUCT's ROIs, a SEG's segments).
        clicks: corrective clicks per label and slice, ``{label: {z: (points K×2, point_labels K)}}``:
            XY (column, row) in slice ``z``'s original pixels (``z`` along the slice axis), 1 foreground
            / 0 background. That label is decoded on slice ``z`` from its propagated box plus the clicks,
            and its walk goes on from the corrected mask (see
            :meth:`~medsam_lite.VolumePredictor.predict`). Checked before any slice is encoded.

    Returns:
        A ``uint8`` (``uint16``) label map of the volume's shape; overlaps go to the label with the
        higher predicted IoU on that slice.
    """
    from ..io.formats import label_writer
    from .volume import VolumePredictor

    writer = None
    if out is not None or format is not None:  # checked before any work
        source = volume.volume if isinstance(volume, VolumePredictor) else volume
        writer = label_writer(out, format, source, names if names is not None else getattr(label_volume, "names", None))
    vp = volume if isinstance(volume, VolumePredictor) else VolumePredictor(
        volume, model=model, axis=axis, modality=modality, window=window)
    arr = _label_array(label_volume, 3)
    if arr.shape != vp.shape:
        raise InputError(f"label map {arr.shape} and volume {vp.shape} differ in shape; resample the label map "
                         "onto the scan's grid first (io.read_volume aligns flipped label files).")
    result = vp.predict(boxes3d_from_label_map(arr, vp.axis, labels), overlap="score", clicks=clicks, **options)
    if writer is not None:
        writer(result)
    return result

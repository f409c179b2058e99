"""Box-prompted prediction: encode an image once, then segment any number of boxes.

Boxes are XYXY in original image pixels (see :mod:`medsam_lite.model.geometry`). Both forms here are
thin shells over the seam in :mod:`medsam_lite.model.inference` (:func:`~medsam_lite.model.inference.encode`,
:func:`~medsam_lite.model.inference.decode`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..model.inference import Embedding, as_embedding, decode, encode_images, prepare_image
from ..model.intensity import IntensityPreset
from ..model.models import is_model, load_model

if TYPE_CHECKING:
    from ..model.models import SamModel
from ..model.geometry import Geometry, check_boxes


def resolve_preset(model: SamModel, modality=None, window=None) -> IntensityPreset:
    """The intensity preset for ``model``: the one asked for, else the model's own (recorded by
    ``finetune`` in its checkpoint), else MR percentiles (MedSAM's default for non-CT)."""
    if modality is None and window is None:
        return model.preset or IntensityPreset.resolve("MR")
    if modality is None:
        modality = model.preset.modality if model.preset else ("CT" if isinstance(window, str) else "MR")
    return IntensityPreset.resolve(modality, window)


class Predictor:
    """Stateful predictor: :meth:`set_image` encodes once, :meth:`predict` runs per box.

    Example::

        predictor = Predictor(load_model())
        predictor.set_image(ct_slice_in_hu, modality="CT")
        masks, scores = predictor.predict([[40, 52, 90, 110]])

    Attributes:
        model: the :class:`~medsam_lite.model.sammodel.SamModel` (or the torch-free
            :class:`~medsam_lite.model.exported.ExportedModel` :func:`~medsam_lite.load_model` gives in a
            process without torch; embeddings are then numpy arrays).
        embedding: the current :class:`~medsam_lite.model.inference.Embedding` (``embedding.tensor`` is
            ``1×256×64×64`` float32), or ``None``.
        encoder_calls: how many times the image encoder ran (a new box does not add one).
    """

    def __init__(self, model: SamModel | None = None):
        if model is not None and not is_model(model):
            raise InputError(f"model must be a medsam_lite SamModel, got {type(model).__name__}; "
                             "make one with medsam_lite.load_model(name, checkpoint=...).")
        self.model = model if model is not None else load_model()
        self.embedding: Embedding | None = None
        self.encoder_calls = 0

    @property
    def geometry(self) -> Geometry | None:
        """:class:`~medsam_lite.model.geometry.Geometry` of the current image (``None`` before one is set)."""
        return None if self.embedding is None else self.embedding.geometry

    def set_image(self, image: np.ndarray, modality: str | None = None, window=None) -> None:
        """Encode one 2D image and keep its embedding.

        Args:
            image: ``H×W`` of any real dtype (a CT slice in HU, an MR slice, …; normalized unless
                ``uint8``) or ``H×W×3`` ``uint8``.
            modality: ``"CT"`` (window in HU) or any other modality (percentile clipping). Default:
                the preset the model was fine-tuned with (a checkpoint from ``finetune`` records it),
                else ``"MR"``.
            window: CT window name or ``(low, high)``; see :func:`~medsam_lite.normalize_intensity`.

        Raises:
            InputError: not a 2D image of real numbers; NaN/Inf; an empty or constant image.
        """
        preset = resolve_preset(self.model, modality, window)
        self.set_prepared(prepare_image(image, preset), preset)

    def set_prepared(self, rgb: np.ndarray, preset: IntensityPreset | None = None) -> None:
        """Encode an image already checked by :func:`~medsam_lite.model.inference.prepare_image` (``H×W×3`` uint8)."""
        self.embedding = replace(encode_images(self.model, [rgb], preset=preset)[0], image=rgb)  # for the click rule
        self.encoder_calls += 1

    def set_embedding(self, embedding, original_hw: tuple[int, int] | None = None, stored_hw=None) -> None:
        """Use a stored embedding instead of running the encoder.

        Args:
            embedding: an :class:`~medsam_lite.model.inference.Embedding`, or a ``256×64×64`` /
                ``1×256×64×64`` array or tensor, with ``original_hw``.
            original_hw: ``(H, W)`` of the original image (needed unless ``embedding`` is an Embedding).
            stored_hw: ``(h, w)`` of the stored slice the embedding was computed from, if resized.

        Raises:
            InputError: an embedding of another shape than this model's (e.g. another model's), with
                NaN/Inf, or ``original_hw`` that is not two positive integers.
        """
        if isinstance(embedding, Embedding):
            self.embedding = embedding
            return
        self.embedding = as_embedding(self.model, embedding, original_hw, stored_hw)

    def predict(self, boxes=None, points=None, point_labels=None, mask_input=None, return_logits: bool = False,
                click_rule=None):
        """Segment one mask per target from the stored embedding (no new encoding): a box, clicks, or both.

        Args:
            boxes: one XYXY box ``[x0, y0, x1, y1]`` or an ``N×4`` array, original image pixels.
            points: ``K×2`` (one target) or ``N×K×2`` (paired with ``N`` boxes) XY clicks, original pixels.
            point_labels: ``K`` or ``N×K``: 1 foreground (a miss to add), 0 background (to remove).
            mask_input: the ``N×H×W`` logits a previous call returned for the same target(s) with
                ``return_logits=True`` (``H×W`` for one): the decoder refines that mask.
            return_logits: also return the ``N×H×W`` float32 logits (the next call's ``mask_input``).
            click_rule: how the click decoder's answer joins the previous mask (``mask_input``'s, else the
                box's): default ``model.click_rule``, else :data:`~medsam_lite.model.clickrule.DEFAULT_RULE`
                (only the change in the region under each click, read from the image ``set_image`` kept;
                a stored embedding set with ``set_embedding`` has none: the masks-only rule);
                ``DecoderRule()`` keeps the whole answer.

        Returns:
            ``(masks, scores)``: ``masks`` is ``N×H×W`` bool at the original size, ``scores`` the
            model's predicted IoU per mask, ``N`` float32 (plus logits if asked). Box-only prompts
            run the published decoder; points or a mask input the model's click decoder
            (:func:`~medsam_lite.load_model`'s ``click_decoder``), combined with the previous mask by the
            click rule: away from the clicks the previous mask is kept, pixel for pixel.

        Raises:
            InputError: no image set; no box and no points; a point outside the image, labels other
                than 0/1, points without labels; a mask input of another shape.

        Example::

            masks, scores, logits = predictor.predict(box, return_logits=True)
            masks, scores = predictor.predict(box, points=[[120, 88]], point_labels=[1], mask_input=logits)
        """
        if self.embedding is None:
            raise InputError("no image is set; call predictor.set_image(image) first.")
        masks, scores, logits = decode(self.model, self.embedding, boxes, points=points, point_labels=point_labels,
                                       mask_input=mask_input, logits=return_logits, click_rule=click_rule)
        return (masks, scores, logits) if return_logits else (masks, scores)


def predict(image: np.ndarray, boxes, model: SamModel | None = None, modality: str | None = None, window=None):
    """One-call form: encode ``image`` and segment ``boxes``.

    Args:
        image: ``H×W`` (any real dtype) or ``H×W×3`` ``uint8``.
        boxes: one XYXY box or ``N×4``, original pixels.
        model: a :class:`SamModel` (default: ``load_model()``, the bundled LiteMedSAM).
        modality, window: intensity normalization, see :meth:`Predictor.set_image`.

    Returns:
        ``N×H×W`` bool masks (use ``masks[0]`` for a single box).
    """
    predictor = Predictor(model)
    preset = resolve_preset(predictor.model, modality, window)
    rgb = prepare_image(image, preset)
    boxes = check_boxes(boxes, rgb.shape[:2])  # a bad box is refused before the encoder runs
    predictor.set_prepared(rgb, preset)
    return decode(predictor.model, predictor.embedding, boxes, logits=False)[0]

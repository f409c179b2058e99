"""Box-prompted prediction: encode an image once, then segment any number of boxes.

Boxes are XYXY in original image pixels (see :mod:`medsam_lite.transforms`).
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError
from .models import SamModel, load_model
from .transforms import Geometry, check_boxes, to_rgb_uint8


class Predictor:
    """Stateful predictor: :meth:`set_image` encodes once, :meth:`predict` runs per box.

    Example::

        predictor = Predictor(load_model())
        predictor.set_image(ct_slice_in_hu, modality="CT")
        masks, scores = predictor.predict([[40, 52, 90, 110]])

    Attributes:
        model: the :class:`~medsam_lite.models.SamModel`.
        embedding: ``1×256×64×64`` float32 tensor of the current image, or ``None``.
        geometry: :class:`~medsam_lite.transforms.Geometry` of the current image.
        encoder_calls: how many times the image encoder ran (a new box does not add one).
    """

    def __init__(self, model: SamModel | None = None):
        self.model = model if model is not None else load_model()
        self.embedding: torch.Tensor | None = None
        self.geometry: Geometry | None = None
        self.encoder_calls = 0

    def set_image(self, image: np.ndarray, modality: str = "MR", window=None) -> None:
        """Encode one 2D image and keep its embedding.

        Args:
            image: ``H×W`` of any real dtype (a CT slice in HU, an MR slice, …; normalized with
                :func:`~medsam_lite.transforms.normalize_intensity` unless ``uint8``) or ``H×W×3``
                ``uint8``.
            modality: ``"CT"`` (window in HU) or any other modality (percentile clipping).
            window: CT window name or ``(low, high)``; see ``normalize_intensity``.
        """
        rgb = to_rgb_uint8(image, modality=modality, window=window)
        geometry = self.model.geometry(rgb.shape[:2])
        x = geometry.image_to_model(rgb)
        self.embedding = self.model.encode(x)
        self.geometry = geometry
        self.encoder_calls += 1

    def set_embedding(self, embedding, original_hw: tuple[int, int]) -> None:
        """Use a stored embedding (``256×64×64`` or ``1×256×64×64``) of an ``(H, W)`` image."""
        emb = torch.as_tensor(np.asarray(embedding) if not torch.is_tensor(embedding) else embedding).float()
        if emb.ndim == 3:
            emb = emb[None]
        if emb.ndim != 4 or emb.shape[0] != 1 or emb.shape[1] != 256:
            raise InputError(f"embedding must be 256×h×w or 1×256×h×w, got shape {tuple(emb.shape)}.")
        self.embedding = emb.to(self.model.device)
        self.geometry = self.model.geometry(original_hw)

    @torch.no_grad()
    def predict(self, boxes, return_logits: bool = False):
        """Segment one mask per box from the stored embedding (no new encoding).

        Args:
            boxes: one XYXY box ``[x0, y0, x1, y1]`` or an ``N×4`` array, original image pixels.
            return_logits: also return the ``N×H×W`` float32 logits.

        Returns:
            ``(masks, scores)``: ``masks`` is ``N×H×W`` bool at the original size, ``scores`` the
            model's predicted IoU per mask, ``N`` float32 (plus logits if asked).
        """
        if self.embedding is None or self.geometry is None:
            raise InputError("no image is set; call predictor.set_image(image) first.")
        boxes = check_boxes(boxes, self.geometry.original_hw)
        model_boxes = torch.from_numpy(self.geometry.box_to_model(boxes))
        n = model_boxes.shape[0]
        logits, iou = self.model.decode(self.embedding.expand(n, -1, -1, -1), model_boxes)
        full = self.geometry.logits_to_original(logits).cpu()
        masks = (full > 0).numpy()
        scores = iou[:, 0].float().cpu().numpy()
        if return_logits:
            return masks, scores, full.numpy()
        return masks, scores


def predict(image: np.ndarray, boxes, model: SamModel | None = None, modality: str = "MR", window=None):
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
    predictor.set_image(image, modality=modality, window=window)
    return predictor.predict(boxes)[0]

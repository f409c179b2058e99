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
        if model is not None and not isinstance(model, SamModel):
            raise InputError(f"model must be a medsam_lite SamModel, got {type(model).__name__}; "
                             "make one with medsam_lite.load_model(name, checkpoint=...).")
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

        Raises:
            InputError: not a 2D image of real numbers; NaN/Inf; an empty or constant image (a blank
                image has nothing to segment, yet the model would still return a mask for a box).
        """
        rgb = to_rgb_uint8(image, modality=modality, window=window)
        if rgb.min() == rgb.max():
            raise InputError(
                f"the image is constant (every pixel is {int(rgb.flat[0])} once normalized to uint8): there "
                "is nothing to segment, and the model would still return a mask for any box. Pass the "
                "scan itself (not a mask or an empty slice); for CT check that window= covers its HU range.")
        geometry = self.model.geometry(rgb.shape[:2])
        x = geometry.image_to_model(rgb)
        self.embedding = self.model.encode(x)
        self.geometry = geometry
        self.encoder_calls += 1

    def set_embedding(self, embedding, original_hw: tuple[int, int]) -> None:
        """Use a stored embedding (``256×64×64`` or ``1×256×64×64``) of an ``(H, W)`` image.

        Raises:
            InputError: an embedding of another shape than this model's (e.g. another model's), with
                NaN/Inf, or ``original_hw`` that is not two positive integers.
        """
        try:
            emb = torch.as_tensor(np.asarray(embedding) if not torch.is_tensor(embedding) else embedding).float()
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"embedding must be a numeric array or tensor, got {type(embedding).__name__}.") from None
        if emb.ndim == 3:
            emb = emb[None]
        expected = (int(self.model.prompt_encoder.embed_dim),
                    *(int(v) for v in self.model.prompt_encoder.image_embedding_size))
        if emb.ndim != 4 or emb.shape[0] != 1 or tuple(emb.shape[1:]) != expected:
            shape = "×".join(map(str, expected))
            raise InputError(f"embedding must be {shape} or 1×{shape} for {self.model.name}, got shape "
                             f"{tuple(emb.shape)}; was it computed by another model?")
        if not torch.isfinite(emb).all():
            raise InputError("embedding holds NaN or Inf; recompute it (embed(..., recompute=True)).")
        geometry = self.model.geometry(_check_hw(original_hw))
        self.embedding = emb.to(self.model.device)
        self.geometry = geometry

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


def _check_hw(original_hw) -> tuple[int, int]:
    try:
        h, w = original_hw
        if isinstance(h, (bool, np.bool_)) or isinstance(w, (bool, np.bool_)) or int(h) != h or int(w) != w:
            raise ValueError
        if int(h) < 1 or int(w) < 1:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"original_hw must be the (H, W) of the image the embedding was made from, two "
                         f"positive integers; got {original_hw!r}.") from None
    return int(h), int(w)


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
    rgb = to_rgb_uint8(image, modality=modality, window=window)
    check_boxes(boxes, rgb.shape[:2])  # a bad box is refused before the ~2 s encoder run
    predictor.set_image(rgb)
    return predictor.predict(boxes)[0]

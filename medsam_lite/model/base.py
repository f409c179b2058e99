"""What both model classes share: :class:`ModelBase`, answered from the model table's row.

The torch :class:`~medsam_lite.model.sammodel.SamModel` and the torch-free
:class:`~medsam_lite.model.exported.ExportedModel` both derive from it; this module imports no torch.
"""

from __future__ import annotations

from .geometry import Geometry


class ModelBase:
    """What both model classes answer from their ``spec``, the model table's row
    (:class:`~medsam_lite.model.models.ModelSpec`): the torch
    :class:`~medsam_lite.model.sammodel.SamModel` and the torch-free
    :class:`~medsam_lite.model.exported.ExportedModel` (this module imports no torch)."""

    @property
    def name(self) -> str:
        """The model table's key (``"lite_medsam"`` …)."""
        return self.spec.name

    @property
    def input_size(self) -> int:
        """``S``, the side of the square model input (256 or 1024)."""
        return self.spec.input_size

    def geometry(self, original_hw, stored_hw=None) -> Geometry:
        """The :class:`~medsam_lite.model.geometry.Geometry` mapping an ``(H, W)`` original slice
        (stored as ``stored_hw``, if ``preprocess`` resized it) onto this model's input."""
        return Geometry(original_hw, self.spec.input_size, self.spec.recipe, stored_hw)

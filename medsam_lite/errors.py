"""The documented error types of medsam_lite.

Every public function answers bad input with :class:`InputError` (a ``ValueError``) whose
message names the problem and the fix. More specific subclasses let callers tell cases apart.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input to a public function: the message says what is wrong and how to fix it."""


class CheckpointError(InputError):
    """A checkpoint file is missing, unreadable, unsafe, truncated or of another architecture."""


class StoreMismatchError(InputError):
    """Stored embeddings (or a dataset) were made with another model, preprocessing or data."""

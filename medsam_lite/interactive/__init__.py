"""Prompting a model: ``Predictor`` (2D), ``VolumePredictor`` (3D propagation), label maps, prompt
helpers (key slices, RECIST lines), background prefetch, and the notebook widget."""

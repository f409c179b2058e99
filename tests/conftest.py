"""Shared fixtures: the real LiteMedSAM model and the bundled sample data."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

# This machine has 2 cores; one pytest process uses both (never run two torch processes unpinned).
torch.set_num_threads(int(os.environ.get("MEDSAM_LITE_THREADS", "2")))


@pytest.fixture(scope="session")
def model():
    import medsam_lite as ml

    return ml.load_model()


@pytest.fixture(scope="session")
def brain_slice():
    """``(image uint8 H×W, label map uint8 H×W)`` of the bundled 2D sample."""
    from medsam_lite import io, samples

    image = io.read_volume(samples.sample_path("brain_slice.png")).array
    label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
    return image, label


@pytest.fixture(scope="session")
def brain_volume():
    """``(image Volume, label Volume)`` of sample subject sub-01."""
    from medsam_lite import io, samples

    d = samples.brain_mri_dir()
    return io.read_volume(d / "sub-01.nii.gz"), io.read_volume(d / "sub-01_label.nii.gz")


@pytest.fixture
def rng():
    return np.random.default_rng(0)

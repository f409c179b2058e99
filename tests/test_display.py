"""One display convention (issue 34): label colours a colour-blind reader tells apart, the CT
display window, and a demo whose terminal output carries no dependency warnings."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsam_lite import plotting
from medsam_lite.io.display import display_window

ROOT = Path(__file__).resolve().parents[1]
#: Machado, Oliveira & Fernandes 2009, severity 1.0, on linear RGB.
CVD = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}
#: Organs that touch or sit side by side on an abdominal slice (the tutorials' and the demo's).
NEIGHBOURS = [("liver", "kidney_right"), ("liver", "inferior_vena_cava"), ("aorta", "inferior_vena_cava"),
              ("spleen", "stomach"), ("spleen", "kidney_left"), ("liver", "stomach"), ("liver", "spleen"),
              ("kidney_right", "kidney_left"), ("aorta", "kidney_left"), ("stomach", "kidney_left")]


def _seen(rgb, matrix=None) -> np.ndarray:
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    if matrix is not None:
        lin = np.clip(np.asarray(matrix) @ lin, 0, 1)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def closest_pair(color_of, pairs) -> tuple[float, str]:
    """The smallest sRGB distance between two neighbours' colours, for normal vision and each deficiency."""
    worst = (np.inf, "")
    for vision, matrix in [("normal", None), *CVD.items()]:
        for a, b in pairs:
            d = float(np.linalg.norm(_seen(color_of(a), matrix) - _seen(color_of(b), matrix)))
            worst = min(worst, (d, f"{a}/{b} ({vision})"))
    return worst


def test_neighbouring_organs_stay_apart_for_colour_blind_readers():
    d, where = closest_pair(lambda name: np.asarray(plotting.color(name)), NEIGHBOURS)
    assert d > 0.3, where
    # the palette before issue 34 (by label index: aorta green next to IVC red) fails the same check
    old = {"aorta": [0.17, 0.80, 0.17], "inferior_vena_cava": [0.90, 0.10, 0.30]}
    assert closest_pair(lambda n: np.asarray(old[n]), [("aorta", "inferior_vena_cava")])[0] < 0.25
    assert len({tuple(plotting.color(n)) for n in ("liver", "spleen", "kidney_right", "kidney_left", "aorta",
                                                    "inferior_vena_cava", "stomach")}) == 7
    np.testing.assert_array_equal(plotting.color("Liver"), plotting.color("liver"))   # one colour, any spelling


def test_the_ct_display_window_is_soft_tissue_not_the_model_input_window():
    hu = np.array([-1000, -160, 40, 240, 1000], np.float32)
    np.testing.assert_array_equal(display_window(hu, "CT"), [0, 0, 127, 255, 255])
    mr = np.array([0, 10, 50, 100], np.float32)
    assert display_window(mr, "MR").max() == 255


@pytest.mark.slow
def test_importing_the_model_code_emits_no_dependency_future_warning():
    """timm's FutureWarnings (seen in every demo run) are silenced at the import that emits them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    code = "from medsam_lite.model.models import _tools; _tools(); print('quiet')"
    run = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0 and "quiet" in run.stdout, run.stderr[-2000:]

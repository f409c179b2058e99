"""io.cases: which scan goes with which label map in a source folder, and the label-name files
beside them (labels.json, dataset.json).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import io
from medsam_lite import samples


# ---- shared by the tests below (from test_faults2.py)
SLICE, SLICE_LABEL = samples.sample_path("brain_slice.png"), samples.sample_path("brain_slice_label.png")


def _png_source(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(SLICE, folder / "s1.png")
    shutil.copy(SLICE_LABEL, folder / "s1_label.png")
    return folder


def test_a_dataset_json_holding_a_list_is_warned_about_not_raised(tmp_path):
    src = _png_source(tmp_path / "src")
    (src / "dataset.json").write_text("[1, 2]")
    with pytest.warns(UserWarning, match=r"dataset\.json.*list"):
        ml.preprocess(src, tmp_path / "out", labels=[3], test_cases=["s1"], progress=False)


@pytest.mark.parametrize("fname, text, expect", [
    ("labels.json", "{1: 'wm'", "not valid JSON"),
    ("dataset.json", '{"labels": "1=wm"}', "str"),
    ("labels.json", '{"csf": [3]}', "pair no whole-number"),
])
def test_unusable_label_names_files_are_warned_about(tmp_path, fname, text, expect):
    from medsam_lite.io.cases import labels_from_files

    (tmp_path / fname).write_text(text)
    with pytest.warns(UserWarning, match=expect) as seen:
        assert labels_from_files([tmp_path]) == {}
    assert fname in str(seen[0].message)


def test_label_names_given_as_digit_strings_are_read(tmp_path):
    from medsam_lite.io.cases import labels_from_files

    (tmp_path / "labels.json").write_text(json.dumps({"ventricles": "3", "wm": "1"}))
    assert labels_from_files([tmp_path]) == {3: "ventricles", 1: "wm"}


def test_a_single_file_dicom_beside_its_label_is_a_case(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from medsam_lite.io.cases import find_cases

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct.dcm")
    image = io.read_volume(src / "ct.dcm")
    label = (image.array > np.percentile(image.array, 70)).astype(np.uint8)
    io.write_volume(label, src / "ct_label.nii.gz", like=image)
    cases = find_cases(src)
    assert [(c.name, c.image.name, c.label.name) for c in cases] == [("ct", "ct.dcm", "ct_label.nii.gz")]

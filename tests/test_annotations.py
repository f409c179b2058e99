"""``AnnotationSession.save_case`` (interactive/annotations.py), round 3 of the fault probe: a folder
that is a file (at any depth), case names in any script, a folder where a file goes (checked before the
scan is written), an empty session."""

from __future__ import annotations

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.interactive.session import AnnotationSession
from medsam_lite.io.cases import find_cases


@pytest.fixture(scope="module")
def session(model):
    label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
    s = AnnotationSession(io.read_volume(samples.sample_path("brain_slice.png")), model, ["brain"])
    s.add_box(ml.box_from_mask(label > 0))
    return s


@pytest.mark.parametrize("depth", ["f", "f/a", "f/a/b"])
def test_save_case_into_a_path_under_a_file_is_refused(tmp_path, session, depth):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(ml.InputError, match="is a file, not a folder"):
        session.save_case(tmp_path / depth, case="c1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"] and (tmp_path / "f").read_text() == "a file"


@pytest.mark.parametrize("case", ["Patient_é", "Пациент-01", "患者.7"])
def test_case_names_in_any_script_are_saved_and_found(tmp_path, session, case):
    image_path, label_path = session.save_case(tmp_path, case=case)
    [found] = find_cases(tmp_path)
    assert (found.name, found.image, found.label) == (case, image_path, label_path)
    np.testing.assert_array_equal(io.read_volume(label_path).array, session.to_label_map())


@pytest.mark.parametrize("where", ["label", "labels.json"])
def test_a_folder_where_a_file_goes_is_refused_before_the_scan_is_written(tmp_path, session, where):
    (tmp_path / ("c1_label.png" if where == "label" else "labels.json")).mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ml.InputError, match="is a folder .*Nothing was written"):
        session.save_case(tmp_path, case="c1")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no scan without its label


def test_an_empty_session_is_not_saved(tmp_path, model, session):
    empty = AnnotationSession(session.array, model, ["brain"])  # nothing annotated: not even encoded
    with pytest.raises(ml.InputError, match="nothing to save: the session's label map is empty"):
        empty.save_case(tmp_path / "out", case="c1")
    assert not (tmp_path / "out").exists()

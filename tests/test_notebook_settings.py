"""One settings file for the tutorials (issue 23): ``tutorials/settings.toml`` read by
``tutorial.settings()``, keywords for scripts, environment variables over both."""

from __future__ import annotations

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import samples
from medsam_lite.app import tutorial
from medsam_lite.app import config

from notebook_env import clean_env  # noqa: F401 (an autouse fixture: clears the notebook variables)

def test_the_repository_file_drives_the_notebooks_on_the_real_ct(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)            # no settings.toml here: the repository's tutorials/settings.toml
    s = tutorial.settings(threads=1)
    line = capsys.readouterr().out
    assert s.source.name == "settings.toml" and s.source.parent.name == "tutorials"
    assert s.data.resolve() == samples.ct_abdomen_dir().resolve() and s.modality == "CT"
    assert s.test_cases == ["case-03"] and s.min_mm2 == 64
    names = samples.sample_labels("ct_abdomen")
    assert s.labels and all(names[v] == n for v, n in s.labels.items())   # the file's names are the sample's
    assert s.preprocess_kwargs()["min_mm2"] == 64 and tutorial.finetune_kwargs(s)["batch_size"] == s.batch_size
    assert len(line.strip().splitlines()) == 1 and "modality CT" in line and "case-03" in line
    assert s.work.resolve() == (s.source.parent / "work").resolve()


def test_a_file_of_ones_own_with_keywords_and_environment_on_top(tmp_path, monkeypatch):
    data = tmp_path / "scans"
    data.mkdir()
    (tmp_path / "settings.toml").write_text(
        'data = "scans"\nmodality = "CT"\nlabels = { 5 = "liver", 52 = "aorta" }\ntest_cases = []\n'
        'min_mm2 = 0\nwork = "out"\nepochs = 7\nlr = 3e-4\nbatch_size = 4\nclicks = 2\nthreads = 1\n'
        'device = "cpu"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    s = tutorial.settings(verbose=False)
    assert (s.data, s.labels, s.test_cases, s.min_mm2, s.work) == \
        (tutorial.short_path(data), {5: "liver", 52: "aorta"}, None, None, tutorial.short_path(tmp_path / "out"))
    assert (s.epochs, s.lr, s.batch_size, s.clicks, s.threads, s.device) == (7, 3e-4, 4, 2, 1, "cpu")
    assert not s.data.is_absolute()              # printed paths stay relative
    s = tutorial.settings(verbose=False, epochs=3, labels=[5])   # keywords over the file
    assert s.epochs == 3 and s.labels == [5] and s.label_names() == {5: "label_5"}
    monkeypatch.setenv("MEDSAM_LITE_LABELS", '{"1": "spleen"}')   # the environment over both
    monkeypatch.setenv("MEDSAM_LITE_QUICK", "1")
    s = tutorial.settings(verbose=False, labels=[5])
    assert s.labels == {1: "spleen"} and s.quick and s.epochs == tutorial.QUICK_EPOCHS
    assert "MEDSAM_LITE_LABELS" in s.summary()
    other = tmp_path / "other.toml"
    other.write_text('data = "scans"\nmodality = "MR"\n', encoding="utf-8")
    monkeypatch.setenv("MEDSAM_LITE_SETTINGS", str(other))
    assert tutorial.settings(verbose=False).modality == "MR"


def test_scripts_keep_their_keywords_and_read_no_file(tmp_path):
    s = tutorial.settings(data=samples.brain_mri_dir(), work=tmp_path / "w", threads=1, verbose=False)
    assert s.source is None and s.modality == "MR" and s.labels is None and s.min_mm2 is None and s.epochs == 5


@pytest.mark.parametrize("text, match", [
    ('data = "x"\nepoch = 3\n', "unknown entries"),
    ('data = "x"\nepochs = "3"\n', "epochs"),
    ('data = "x"\nlabels = { one = "liver" }\n', "labels"),
    ('data = "x"\ndevice = "tpu"\n', "device"),
    ('data = "x\n', "cannot read"),
    ('data = "samples:nothing_here"\n', "nothing_here"),
])
def test_a_bad_file_is_refused_naming_the_entry(tmp_path, text, match):
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ml.InputError, match=match):
        config.read(path)


def test_a_missing_data_folder_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "settings.toml").write_text('data = "nope"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ml.InputError, match="settings.toml"):
        tutorial.settings(verbose=False)


def test_labels_by_name_in_the_file_resolve_through_the_datas_label_names(tmp_path, monkeypatch):
    """Issue 34 item 5: labels = ["Liver", "spleen"] (names, any case) as the CLI and preprocess take them."""
    (tmp_path / "settings.toml").write_text('data = "samples:ct_abdomen"\nmodality = "CT"\n'
                                            'labels = ["Liver", "spleen", 52]\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    s = tutorial.settings(verbose=False, threads=1)
    assert s.labels == {5: "liver", 1: "spleen", 52: "aorta"} and s.label_names() == s.labels
    monkeypatch.setenv("MEDSAM_LITE_LABELS", "aorta,inferior_vena_cava")
    assert tutorial.settings(verbose=False, threads=1).labels == {52: "aorta", 63: "inferior_vena_cava"}
    monkeypatch.delenv("MEDSAM_LITE_LABELS")
    (tmp_path / "settings.toml").write_text('data = "samples:ct_abdomen"\nlabels = ["livre"]\n', encoding="utf-8")
    with pytest.raises(ml.InputError, match=r"livre.*names are .*liver"):
        tutorial.settings(verbose=False, threads=1)
    with pytest.raises(ml.InputError, match="livre"):   # Python: refused before any work, nothing written
        ml.preprocess(samples.ct_abdomen_dir(), tmp_path / "ds", labels=["livre"], progress=False)
    assert not (tmp_path / "ds").exists()
    d = samples.ct_abdomen_dir()                          # and accepted by name: the values labels.json gives
    manifest = ml.preprocess([(d / "case-03.nii.gz", d / "case-03_label.nii.gz")], tmp_path / "ds2", modality="CT",
                             labels=["Liver", 52], min_mm2=64, progress=False)
    assert sorted(manifest["label"].unique()) == [5, 52] and set(manifest["label_name"]) == {"liver", "aorta"}


@pytest.mark.parametrize("text, match", [
    ('data = "x"\nlabels = [1.5, 5]\n', r"labels \[1.5\]"),            # was read as 1 and 5
    ('data = "x"\nlabels = [true]\n', "labels"),
    ('data = ""\n', "data = \"\" is empty"),                          # was the file's own folder
])
def test_issue29_settings_values_are_refused_not_guessed(tmp_path, text, match):
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ml.InputError, match=match):
        config.read(path)


def test_issue29_no_data_entry_is_refused_and_a_bom_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # the working directory must not become the data folder
    (tmp_path / "settings.toml").write_text('modality = "CT"\n', encoding="utf-8")
    with pytest.raises(ml.InputError, match="no `data` entry"):
        tutorial.settings(verbose=False, threads=1)
    (tmp_path / "settings.toml").write_bytes('\ufeffdata = "samples:ct_abdomen"\nlabels = [5]\n'.encode("utf-8"))
    assert config.read(tmp_path / "settings.toml")["labels"] == [5]   # was "Invalid statement (line 1, column 1)"


def test_settings_boxes_are_display_pixels_the_same_on_the_dicom_sample_and_its_nifti(monkeypatch, tmp_path):
    """Issue 34 item 1: [boxes] are read off the figures (radiological): the same numbers fit the
    organ on the LPS DICOM series (no flip) and on the RAS-stored NIfTI of the same slab (both flipped)."""
    from medsam_lite import io

    monkeypatch.chdir(tmp_path)
    s = tutorial.settings(verbose=False, threads=1)
    assert s.scan.name == "case-03" and s.reference.name == "case-03_label.dcm"     # the DICOM sample
    names = s.annotation_labels()
    dicom = io.read_volume(s.scan)
    ref = io.read_label(s.reference, reference=s.scan, names=names).array          # RTSTRUCT by ROI name
    nifti = io.read_volume(samples.ct_abdomen_dir() / "case-03.nii.gz")
    nifti_ref = io.read_volume(samples.ct_abdomen_dir() / "case-03_label.nii.gz").array
    for scan, label in ((dicom, ref), (nifti, nifti_ref)):
        for name, (z, box) in tutorial.boxes_on(s.boxes, scan).items():
            value = next(v for v, n in names.items() if n == name)
            tight = ml.box_from_mask(label[z] == value)
            assert np.abs(box - tight).max() <= 3, (name, box, tight)                # the box around the organ
    np.testing.assert_array_equal(dicom.array, nifti.array[:, ::-1, ::-1])          # the same slab, LPS-stored

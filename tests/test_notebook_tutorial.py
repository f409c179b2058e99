"""medsam_lite.app.tutorial: the settings the notebooks share, and their prerequisites built on demand."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.app import tutorial
from medsam_lite.errors import InputError

from notebook_env import clean_env  # noqa: F401 (an autouse fixture: clears the notebook variables)

@pytest.fixture()
def two_subjects(tmp_path):
    """A flat folder with two real sample subjects (a small dataset of the user's own)."""
    src, out = samples.brain_mri_dir(), tmp_path / "mine"
    out.mkdir()
    for case in ("sub-03", "sub-05"):
        for suffix in (".nii.gz", "_label.nii.gz"):
            (out / f"{case}{suffix}").symlink_to(src / f"{case}{suffix}")
    return out


def test_settings_take_the_cell_and_environment_overrides(tmp_path, two_subjects, clean_env):
    s = tutorial.settings(data=samples.brain_mri_dir(), test_cases=["sub-07"], work=tmp_path / "w",
                          threads=1, verbose=False)
    assert (s.data, s.modality, s.test_cases, s.quick, s.max_slices_per_case) == \
        (samples.brain_mri_dir(), "MR", ["sub-07"], False, None)
    assert s.dataset == tmp_path / "w" / "brain_mri_dataset" and s.epochs == 5
    clean_env.setenv("MEDSAM_LITE_DATA", str(two_subjects))
    clean_env.setenv("MEDSAM_LITE_TEST_CASES", "sub-05")
    clean_env.setenv("MEDSAM_LITE_LABELS", '{"3": "ventricles"}')
    clean_env.setenv("MEDSAM_LITE_QUICK", "1")
    clean_env.setenv("MEDSAM_LITE_THREADS", "1")
    s = tutorial.settings(data=samples.brain_mri_dir(), test_cases=["sub-07"], work=tmp_path / "w", verbose=False)
    assert s.data == two_subjects and s.test_cases == ["sub-05"] and s.labels == {3: "ventricles"}
    assert s.quick and s.max_slices_per_case == tutorial.QUICK_SLICES and s.epochs == tutorial.QUICK_EPOCHS
    assert s.threads == 1 and s.checkpoint == tmp_path / "w" / "mine_finetune_quick" / "best.pt"
    clean_env.setenv("MEDSAM_LITE_LABELS", "liver")
    with pytest.raises(ml.InputError, match="MEDSAM_LITE_LABELS"):
        tutorial.settings(data=two_subjects, verbose=False)


def test_settings_refuse_a_missing_folder(tmp_path):
    with pytest.raises(ml.InputError, match="settings cell"):
        tutorial.settings(data=tmp_path / "nope", verbose=False)


def test_a_ct_given_as_mr_gets_a_warning_naming_the_fix(tmp_path):
    """A real CT slice (pydicom's CT_small.dcm, HU) in a flat folder."""
    folder = tmp_path / "ct"
    folder.mkdir()
    ct = io.read_volume(pydicom.data.get_testdata_file("CT_small.dcm"))
    hu = ct.array.astype(np.int16)[None]
    img = sitk.GetImageFromArray(hu)
    sitk.WriteImage(img, str(folder / "ct1.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray((hu > 300).astype(np.uint8)), str(folder / "ct1_label.nii.gz"))
    with pytest.warns(UserWarning, match='modality="CT"'):
        tutorial.settings(data=folder, modality="MR", work=tmp_path / "w", verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = tutorial.settings(data=folder, modality="CT", work=tmp_path / "w", verbose=False)
    assert tutorial.check_modality(s)
    with pytest.warns(UserWarning, match='modality="MR"'):
        tutorial.settings(data=samples.brain_mri_dir(), modality="CT", work=tmp_path / "w", verbose=False)


def test_ensure_dataset_prepares_once_and_focus_label_follows_the_data(tmp_path, two_subjects, capsys):
    s = tutorial.settings(data=two_subjects, test_cases=["sub-05"], work=tmp_path / "w", threads=1, verbose=False)
    ds = tutorial.ensure_dataset(s)
    assert "preparing it now (notebook 02" in capsys.readouterr().out
    assert ds.meta["split"] == {"sub-03": "train", "sub-05": "test"}
    stamp = (s.dataset / "manifest.csv").stat().st_mtime_ns
    tutorial.ensure_dataset(s)
    assert (s.dataset / "manifest.csv").stat().st_mtime_ns == stamp
    counts = ds.manifest.groupby("label").size()
    assert tutorial.focus_label(ds) == int(counts.idxmin()) == 3      # the ventricles: fewest targets
    assert tutorial.focus_label(ds, among=[1, 2]) == int(counts[[1, 2]].idxmin())
    assert tutorial.case_paths(s)[0] == "sub-05"
    assert tutorial.ensure_checkpoint(s, train=False) is None
    assert "run notebook 04" in capsys.readouterr().out


def test_read_case_in_quick_mode_crops_around_the_target_and_keeps_geometry(tmp_path, two_subjects, clean_env):
    s = tutorial.settings(data=two_subjects, test_cases=["sub-05"], work=tmp_path / "w", threads=1, verbose=False)
    full_scan, full_label = tutorial.read_case(s)
    clean_env.setenv("MEDSAM_LITE_QUICK", "1")
    s = tutorial.settings(data=two_subjects, test_cases=["sub-05"], work=tmp_path / "w", threads=1, verbose=False)
    scan, label = tutorial.read_case(s)
    assert scan.array.shape[0] == 2 * tutorial.QUICK_HALF_SLICES + 1 and scan.array.shape[1:] == full_scan.array.shape[1:]
    key = int((full_label.array == 3).sum(axis=(1, 2)).argmax())
    lo = key - tutorial.QUICK_HALF_SLICES
    assert np.array_equal(scan.array, full_scan.array[lo:lo + scan.array.shape[0]])
    assert np.array_equal(label.array, full_label.array[lo:lo + scan.array.shape[0]])
    # the crop's first voxel sits where the full scan's voxel (lo, 0, 0) does
    assert np.allclose(scan.to_sitk().TransformIndexToPhysicalPoint((0, 0, 0)),
                       full_scan.to_sitk().TransformIndexToPhysicalPoint((0, 0, lo)))


def test_ensure_checkpoint_trains_once_then_reads_back(tmp_path, clean_env, capsys, model):
    """Notebook 05 or 07 opened first: the quick fine-tuning run is built, then reused."""
    src, data = samples.brain_mri_dir(), tmp_path / "three"
    data.mkdir()
    for case in ("sub-03", "sub-04", "sub-05"):
        for suffix in (".nii.gz", "_label.nii.gz"):
            (data / f"{case}{suffix}").symlink_to(src / f"{case}{suffix}")
    clean_env.setenv("MEDSAM_LITE_QUICK", "1")
    s = tutorial.settings(data=data, test_cases=["sub-05"], labels=[3], work=tmp_path / "w", threads=1,
                          verbose=False)
    best = tutorial.ensure_checkpoint(s, model)  # the session's loaded model
    assert best == s.checkpoint and best.exists()
    assert "training it now" in capsys.readouterr().out
    stamp = best.stat().st_mtime_ns
    assert tutorial.ensure_checkpoint(s, model) == best and best.stat().st_mtime_ns == stamp
    assert tutorial.ensure_checkpoint(s, train=False) == best
    tuned = ml.load_model(checkpoint=best, device="cpu")
    assert tuned.checkpoint == str(best)


@pytest.mark.parametrize("value", ["abc", "0", "-2"])
def test_medsam_lite_threads_that_is_not_a_positive_number_is_named(monkeypatch, value):
    from medsam_lite.app import tutorial

    monkeypatch.setenv("MEDSAM_LITE_THREADS", value)
    with pytest.raises(InputError, match="MEDSAM_LITE_THREADS"):
        tutorial.settings(samples.brain_mri_dir(), verbose=False)


@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False)])
def test_medsam_lite_quick_reads_the_usual_spellings(monkeypatch, value, quick):
    from medsam_lite.app import tutorial

    monkeypatch.setenv("MEDSAM_LITE_QUICK", value)
    monkeypatch.setenv("MEDSAM_LITE_THREADS", "1")
    assert tutorial.settings(samples.brain_mri_dir(), verbose=False).quick is quick


def test_medsam_lite_quick_that_is_neither_on_nor_off_is_named(monkeypatch):
    from medsam_lite.app import tutorial

    monkeypatch.setenv("MEDSAM_LITE_QUICK", "maybe")
    monkeypatch.setenv("MEDSAM_LITE_THREADS", "1")
    with pytest.raises(InputError, match="MEDSAM_LITE_QUICK"):
        tutorial.settings(samples.brain_mri_dir(), verbose=False)


def test_reading_settings_sets_no_torch_threads_and_one_table_gives_the_defaults():
    """Reading settings has no torch side effect (the CLI and a script inherit nothing); threads are
    set where work starts. The dataclass and settings() take their defaults from one table."""
    import torch

    from medsam_lite.app import config

    torch.set_num_threads(1)
    s = tutorial.settings(data=samples.ct_abdomen_dir(), modality="CT", threads=2, verbose=False)
    assert s.threads == 2 and torch.get_num_threads() == 1
    assert tutorial.setup_runtime(s.threads)[0] == 2 and torch.get_num_threads() == 2
    bare = tutorial.Settings(data=samples.ct_abdomen_dir())
    for key in ("modality", "epochs", "lr", "threads", "device", "batch_size", "clicks", "model", "min_mm2"):
        assert getattr(bare, key) == config.DEFAULTS[key], key

"""preprocess under faults and odd input (issues 12.6, 12.7, 15): each refusal before the first byte,
nothing half-written, per-label target counts, modality warnings, locks, case ids as strings."""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

import medsam_lite as ml
from medsam_lite import fileutil, samples
from medsam_lite.data.dataset import open_dataset

pp_module = importlib.import_module("medsam_lite.data.preprocess")
ORGANS = {1: "spleen", 5: "liver", 52: "aorta", 63: "inferior_vena_cava"}


def _files(root: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in Path(root).rglob("*")} if Path(root).exists() else {}


def _real_ct() -> tuple[Path, Path] | None:
    """The real 3 mm abdominal CT (TotalSegmentator's example) with its label map, if on this machine."""
    try:
        d = samples.data_samples_dir() / "ct_abdomen"
    except ml.InputError:
        d = Path("/nonexistent")
    candidates = [(d / "case-01.nii.gz", d / "case-01_label.nii.gz")]
    ref = os.environ.get("MEDSAM_LITE_TS_REFERENCE", "/tmp/ts/totalsegmentator-2.18.0/tests/reference_files")
    candidates.append((Path(ref) / "example_ct_sm.nii.gz", Path(ref) / "example_seg.nii.gz"))
    return next(((i, lab) for i, lab in candidates if i.is_file() and lab.is_file()), None)


@pytest.fixture(scope="module")
def ct_volume():
    """``(image sitk int16 HU, label sitk)``: a few axial slices of the real CT, all four organs in."""
    found = _real_ct()
    if found is None:
        pytest.skip("the real CT sample (data_samples/ct_abdomen or TotalSegmentator's example_ct_sm) is absent")
    image, label = sitk.ReadImage(str(found[0])), sitk.ReadImage(str(found[1]))
    lab = sitk.GetArrayFromImage(label)
    zs = [z for z in range(lab.shape[0]) if all((lab[z] == v).any() for v in ORGANS)]
    if not zs:
        pytest.skip("no slice of the CT sample holds spleen, liver, aorta and IVC together")
    z0 = zs[len(zs) // 2]
    sl = slice(max(z0 - 2, 0), z0 + 2)
    return image[:, :, sl], label[:, :, sl]


def _write_ct(folder: Path, image: sitk.Image, label: sitk.Image, name: str = "ct01", shift: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if shift:
        image = sitk.Cast(image, sitk.sitkInt32) + shift
    sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
    sitk.WriteImage(label, str(folder / f"{name}_label.nii.gz"))
    return folder


# ---------------------------------------------------------------- 12.7: min_mm2 and per-label counts
def test_per_label_counts_show_an_organ_that_min_pixels_drops(ct_volume, tmp_path):
    src = _write_ct(tmp_path / "src", *ct_volume)
    lab = sitk.GetArrayFromImage(ct_volume[1])
    present = {v: [int((lab[z] == v).sum()) for z in range(lab.shape[0]) if (lab[z] == v).any()] for v in ORGANS}
    assert max(present[52]) < 100  # the aorta never reaches 100 px at 3 mm

    with pytest.warns(UserWarning, match=r"no target kept for label\(s\) aorta .*min_mm2="):
        m = ml.preprocess(src, tmp_path / "px", modality="CT", labels=ORGANS, test_fraction=0, progress=False)
    meta = json.loads((tmp_path / "px" / "dataset.json").read_text())
    for value, name in ORGANS.items():
        kept = sum(n >= 100 for n in present[value])
        assert meta["targets_per_label"][name]["kept"] == kept == (m["label"] == value).sum()
        assert meta["targets_per_label"][name]["dropped"] == len(present[value]) - kept
    assert meta["targets_per_label"]["aorta"]["largest_dropped_pixels"] == max(present[52])
    assert meta["status"] == "done"

    # the minimum as an area: 64 mm² = 7.1 pixels of 3 × 3 mm
    m2 = ml.preprocess(src, tmp_path / "mm", modality="CT", labels=ORGANS, min_mm2=64, test_fraction=0,
                       progress=False)
    meta2 = json.loads((tmp_path / "mm" / "dataset.json").read_text())
    assert meta2["settings"]["min_mm2"] == 64 and meta2["settings"]["min_pixels"] == 1
    for value, name in ORGANS.items():
        kept = sum(n * 9.0 >= 64 for n in present[value])
        assert kept == (m2["label"] == value).sum() == meta2["targets_per_label"][name]["kept"]
    assert (m2["label"] == 52).sum() > 0 and (m2["pixels"] * 9.0 >= 64).all()
    # both rules at once: a target must pass both
    with pytest.warns(UserWarning, match=r"aorta .*min_pixels=50, min_mm2=64"):
        m3 = ml.preprocess(src, tmp_path / "both", modality="CT", labels=ORGANS, min_pixels=50, min_mm2=64,
                           test_fraction=0, progress=False)
    assert (m3["pixels"] >= 50).all() and len(m3) == sum(n >= 50 for ns in present.values() for n in ns)


def test_summary_is_printed(ct_volume, tmp_path, capsys):
    src = _write_ct(tmp_path / "src", *ct_volume)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml.preprocess(src, tmp_path / "out", modality="CT", labels=ORGANS, test_fraction=0, progress=True)
    out = capsys.readouterr().out
    assert "targets per label (min_pixels=100)" in out
    assert any(line.split()[:3] == ["aorta", "kept", "0"] for line in out.splitlines())


def test_bad_min_mm2_is_refused(tmp_path):
    src = samples.brain_mri_dir()
    for bad in ("64", -1, float("nan"), True):
        with pytest.raises(ml.InputError, match="min_mm2"):
            ml.preprocess(src, tmp_path / "o", min_mm2=bad, progress=False)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- 12.6: a likely wrong modality
def test_ct_passed_as_mr_warns_with_the_fix(ct_volume, tmp_path):
    src = _write_ct(tmp_path / "src", *ct_volume)
    with pytest.warns(UserWarning, match=r"this looks like CT in HU, pass modality='CT'"):
        ml.preprocess(src, tmp_path / "mr", modality="MR", labels=ORGANS, min_mm2=64, test_fraction=0,
                      progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right modality: no warning at all
        ml.preprocess(src, tmp_path / "ct", modality="CT", labels=ORGANS, min_mm2=64, test_fraction=0,
                      progress=False)


def test_ct_without_rescale_intercept_warns_that_the_window_clips(ct_volume, tmp_path):
    src = _write_ct(tmp_path / "src", *ct_volume, shift=1024)  # stored values, HU + 1024
    with pytest.warns(UserWarning, match=r"clips .* above its top.*RescaleIntercept"):
        ml.preprocess(src, tmp_path / "out", modality="CT", labels=ORGANS, min_mm2=64, test_fraction=0,
                      progress=False)


def test_mr_as_mr_gives_no_modality_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ml.preprocess({"sub-01": (samples.brain_mri_dir() / "sub-01.nii.gz",
                                  samples.brain_mri_dir() / "sub-01_label.nii.gz")},
                      tmp_path / "out", labels=[3], progress=False)


# ---------------------------------------------------------------- 15.3: case ids read back as text
def test_case_names_pandas_would_read_as_missing(tmp_path):
    d = samples.brain_mri_dir()
    names = ["NA", "nan", "null", "007"]
    source = {n: (d / f"sub-0{i + 1}.nii.gz", d / f"sub-0{i + 1}_label.nii.gz") for i, n in enumerate(names)}
    out = tmp_path / "out"
    m = ml.preprocess(source, out, labels=[3], test_cases=["null"], progress=False)
    assert sorted(m["case"].unique()) == sorted(names)
    ds = open_dataset(out)
    assert sorted(ds.manifest["case"].unique()) == sorted(names)
    assert set(ds.slices["case"]) == set(names) and ds.split("test")["case"].eq("null").all()
    before = _files(out)
    pd.testing.assert_frame_equal(ml.preprocess(source, out, labels=[3], test_cases=["null"], progress=False), m)
    assert _files(out) == before  # the re-run sees every case as done


# ---------------------------------------------------------------- 15.4 / 15.5: refused before writing
def test_short_side_that_vanishes_at_model_size_is_refused_before_writing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    img = np.tile(np.linspace(0, 255, 2000).astype(np.uint8), (3, 1))
    mask = np.zeros((3, 2000), np.uint8)
    mask[:, 100:400] = 255
    ml.io.write_volume(img, src / "strip.png")
    ml.io.write_volume(mask, src / "strip_mask.png")
    with pytest.raises(ml.InputError, match=r"3×2000 pixels.*short side becomes 0 px"):
        ml.preprocess(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_case_id_longer_than_a_file_name_is_refused_before_writing(tmp_path):
    d = samples.brain_mri_dir()
    with pytest.raises(ml.InputError, match=r"at most 255"):
        ml.preprocess({"x" * 300: (d / "sub-01.nii.gz", d / "sub-01_label.nii.gz")}, tmp_path / "out",
                      labels=[3], progress=False)
    assert not (tmp_path / "out").exists()
    # 255 bytes is still a valid name (multi-byte characters counted as bytes)
    with pytest.raises(ml.InputError, match=r"258 bytes"):
        ml.preprocess({"é" * 129: (d / "sub-01.nii.gz", d / "sub-01_label.nii.gz")}, tmp_path / "out",
                      labels=[3], progress=False)


# ---------------------------------------------------------------- kills, locks, full disks
def _one_case(tmp_path):
    d = samples.brain_mri_dir()
    return {"sub-01": (d / "sub-01.nii.gz", d / "sub-01_label.nii.gz"),
            "sub-02": (d / "sub-02.nii.gz", d / "sub-02_label.nii.gz")}


def test_a_kill_after_the_first_metadata_file_is_resumed(tmp_path, monkeypatch):
    source = _one_case(tmp_path)
    fresh = ml.preprocess(source, tmp_path / "fresh", labels=[3], progress=False)
    real = pp_module.atomic_write_text
    calls = []

    def dying(path, text, **kw):  # the process dies right after its first metadata file
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, text, **kw)

    monkeypatch.setattr(pp_module, "atomic_write_text", dying)
    with pytest.raises(KeyboardInterrupt):
        ml.preprocess(source, tmp_path / "out", labels=[3], progress=False)
    monkeypatch.setattr(pp_module, "atomic_write_text", real)
    assert calls[0] == "dataset.json"
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["status"] == "in progress"
    pd.testing.assert_frame_equal(ml.preprocess(source, tmp_path / "out", labels=[3], progress=False), fresh)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    source = _one_case(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    holder = ("import sys, time; from medsam_lite.fileutil import FolderLock\n"
              f"with FolderLock({str(out)!r}, 'preprocess'):\n    print('held', flush=True); time.sleep(60)\n")
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, encoding="utf-8",
                             env={**os.environ, "PYTHONPATH": str(Path(ml.__file__).parents[1])})
    try:
        assert other.stdout.readline().strip() == "held"  # another run really holds out/.lock
        before = _files(out)
        with pytest.raises(ml.InputError, match=rf"being written by another preprocess run \(pid {other.pid}"):
            ml.preprocess(source, out, labels=[3], progress=False)
        assert _files(out) == before  # nothing written, the other run's lock kept
    finally:
        other.kill()
        other.wait()
    # the other run is gone (killed, its lock files left behind): the rerun is not blocked and removes them
    assert (out / ".lock").exists() and (out / ".lock.owner").exists()
    m = ml.preprocess(source, out, labels=[3], progress=False)
    assert len(m) > 0 and not (out / ".lock").exists() and not (out / ".lock.owner").exists()


def test_lock_is_exclusive_within_one_process(tmp_path):
    with fileutil.FolderLock(tmp_path, "preprocess"):
        with pytest.raises(ml.InputError, match=f"pid {os.getpid()}"):
            fileutil.FolderLock(tmp_path, "preprocess").acquire()
        assert (tmp_path / ".lock").is_file()
    assert not (tmp_path / ".lock").exists()


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(fileutil.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=200_000))
    with pytest.raises(ml.InputError, match=r"no space left on the disk of .*MiB are free"):
        ml.preprocess(_one_case(tmp_path), tmp_path / "out", labels=[3], progress=False)
    assert not (tmp_path / "out").exists()


def test_a_disk_full_while_writing_leaves_nothing_half_written(tmp_path, monkeypatch):
    source = _one_case(tmp_path)
    fresh = ml.preprocess(source, tmp_path / "fresh", labels=[3], progress=False)
    out = tmp_path / "out"
    (tmp_path / "user.txt").write_text("a user's file beside the dataset")
    real_save = pp_module.Image.Image.save
    n = {"png": 0}

    def full_disk(self, fp, *args, **kwargs):  # the disk fills up in the middle of sub-02
        n["png"] += 1
        if n["png"] > (fresh["case"] == "sub-01").sum() * 2 + 5:
            fp.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(pp_module.Image.Image, "save", full_disk)
    with pytest.raises(ml.InputError, match=r"no space left .* re-run the same call to resume"):
        ml.preprocess(source, out, labels=[3], progress=False)
    monkeypatch.setattr(pp_module.Image.Image, "save", real_save)
    leftovers = [p for p in out.rglob("*") if p.name.startswith(fileutil.TMP_PREFIX) or p.name == ".lock"]
    assert leftovers == [] and not (out / "images" / "sub-02").exists()
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["cases"]["sub-01"]["status"] == "done" and meta["cases"]["sub-02"]["status"] == "pending"
    assert (tmp_path / "user.txt").read_text() == "a user's file beside the dataset"
    pd.testing.assert_frame_equal(ml.preprocess(source, out, labels=[3], progress=False), fresh)


def test_unwritable_folder_is_an_input_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(ml.InputError):
            ml.preprocess(_one_case(tmp_path), parent / "out", labels=[3], progress=False)
    finally:
        parent.chmod(0o700)


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def broken(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ml.InputError, match="no space left"):
        fileutil.atomic_write(target, broken)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    fileutil.atomic_write_text(target, "new")
    assert target.read_text() == "new"

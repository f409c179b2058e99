"""preprocess(): scans + label maps → a prepared dataset, on the real sample subjects.

Everything here reads data_samples/brain_mri (1×1×4 mm MRI, labels 1 = WM, 2 = GM, 3 = ventricles)
or volumes resampled / permuted / re-encoded from it in a tmp folder.
"""

from __future__ import annotations

import importlib
import json
import locale
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.data.dataset import MANIFEST_COLUMNS, open_dataset
from medsam_lite.data import prepcheck
from medsam_lite.io.cases import find_cases
from medsam_lite.io.scans import thick_axis
from medsam_lite.model.geometry import Geometry

pp_module = importlib.import_module("medsam_lite.data.preprocess")  # the attribute is the function
SUBJECTS = [f"sub-0{i}" for i in range(1, 9)]


def _link_flat(tmp_path, subjects, name="src"):
    """A flat folder ``<sub>.nii.gz`` + ``<sub>_label.nii.gz`` (symlinks to the samples)."""
    src = tmp_path / name
    src.mkdir()
    for s in subjects:
        for suffix in ("", "_label"):
            (src / f"{s}{suffix}.nii.gz").symlink_to(samples.brain_mri_dir() / f"{s}{suffix}.nii.gz")
    return src


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _assert_consistent(root, min_pixels=100):
    """The manifest and the files on disk agree, and every row obeys the format's rules."""
    ds = open_dataset(root)
    m = ds.manifest
    assert list(m.columns) == MANIFEST_COLUMNS
    assert len(m) > 0
    assert (m["pixels"] >= min_pixels).all()
    assert ((0 <= m.x0) & (m.x0 <= m.x1) & (m.x1 < m.width) & (0 <= m.y0) & (m.y0 <= m.y1) & (m.y1 < m.height)).all()
    assert not m.duplicated(["case", "slice", "label", "component"]).any()
    for case, split in m.groupby("case")["split"].unique().items():
        assert len(split) == 1, f"{case} is in two splits"
        assert ds.meta["split"][case] == split[0]
        assert ds.meta["cases"][case]["status"] == "done"
    for row in m.itertuples():
        image = ds.image(row.image)
        mask = ds.mask(row.mask)
        hw = Geometry((row.height, row.width), ds.image_size, "pad").resized_hw
        assert image.shape == hw == mask.shape
        assert max(hw) == ds.image_size
        # mask area scales with the resize: (model pixels / original pixels) ≈ scale²
        s = ds.image_size / max(row.height, row.width)
        assert mask.sum() == pytest.approx(row.pixels * s * s, rel=0.35, abs=30)
        box = Geometry((row.height, row.width), ds.image_size, "pad").box_to_model([[row.x0, row.y0, row.x1, row.y1]])[0]
        ys, xs = np.nonzero(mask)
        assert xs.min() >= box[0] - s - 1 and xs.max() <= box[2] + s + 1
        assert ys.min() >= box[1] - s - 1 and ys.max() <= box[3] + s + 1
    on_disk = {p.relative_to(root).as_posix() for p in root.glob("images/*/*.png")}
    assert on_disk == set(m["image"])
    assert {p.relative_to(root).as_posix() for p in root.glob("masks/*/*.png")} == set(m["mask"])
    return ds


@pytest.fixture(scope="module")
def sample_dataset(tmp_path_factory):
    """All 8 sample subjects prepared with the default settings."""
    out = tmp_path_factory.mktemp("ds") / "sample"
    manifest = ml.preprocess(samples.brain_mri_dir(), out, progress=False)
    return out, manifest


def test_sample_dataset_matches_the_label_maps(sample_dataset):
    out, manifest = sample_dataset
    ds = _assert_consistent(out)
    pd.testing.assert_frame_equal(manifest, ds.manifest)
    assert ds.meta["labels"] == {"1": "white_matter", "2": "grey_matter", "3": "lateral_ventricles"}
    assert set(manifest["case"]) == set(SUBJECTS)
    assert (manifest["axis"] == 0).all() and (manifest["slice_spacing"] == 4.0).all()
    assert (manifest[["spacing_row", "spacing_col"]] == 1.0).all().all()
    # Every row re-derived from sub-01's label map; every slice with a ≥ 100 px label is kept.
    label = io.read_volume(samples.brain_mri_dir() / "sub-01_label.nii.gz").array
    rows = manifest[manifest["case"] == "sub-01"]
    expected = {(z, k) for z in range(label.shape[0]) for k in (1, 2, 3) if (label[z] == k).sum() >= 100}
    assert set(zip(rows["slice"], rows["label"])) == expected
    for row in rows.itertuples():
        target = label[row.slice] == row.label
        assert row.pixels == target.sum()
        assert [row.x0, row.y0, row.x1, row.y1] == ml.box_from_mask(target).tolist()
        assert (row.height, row.width) == label.shape[1:]
    # The stored image is the volume-normalized slice, resized (not a per-slice normalization).
    image = io.read_volume(samples.brain_mri_dir() / "sub-01.nii.gz").array
    norm = ml.normalize_intensity(image, "MR")
    z = int(rows["slice"].iloc[len(rows) // 2])
    stored = ds.image(rows[rows["slice"] == z]["image"].iloc[0]).astype(int)
    hw = stored.shape
    ref = np.asarray(Image.fromarray(norm[z]).resize(hw[::-1], Image.BILINEAR)).astype(int)
    assert np.abs(stored - ref).mean() < 2.0
    assert stored.dtype == np.int64 and Image.open(out / rows["image"].iloc[0]).mode == "L"


def test_split_is_by_case_seeded_and_reproducible(sample_dataset, tmp_path):
    out, manifest = sample_dataset
    split = open_dataset(out).meta["split"]
    assert sorted(split.values()).count("test") == 2  # round(0.2 × 8)
    train = set(manifest.loc[manifest.split == "train", "case"])
    test = set(manifest.loc[manifest.split == "test", "case"])
    assert train.isdisjoint(test) and train | test == set(SUBJECTS)
    # The split depends on the case names and the seed only: same seed → same split.
    again = ml.preprocess(samples.brain_mri_dir(), tmp_path / "a", labels=[3], progress=False)
    assert open_dataset(tmp_path / "a").meta["split"] == split
    assert set(again.loc[again.split == "test", "case"]) == test
    splits = {json.dumps(prepcheck.assign_split(SUBJECTS, dict(test_cases=None, test_fraction=0.2, seed=s)))
              for s in range(5)}
    assert len(splits) > 1  # the seed matters
    fixed = ml.preprocess(samples.brain_mri_dir(), tmp_path / "b", labels=[3], test_cases=["sub-07", "sub-08"],
                          progress=False)
    assert set(fixed.loc[fixed.split == "test", "case"]) == {"sub-07", "sub-08"}
    assert open_dataset(tmp_path / "b").meta["labels"] == {"3": "lateral_ventricles"}
    assert set(fixed["label"]) == {3}


def _resample(image: sitk.Image, spacing, interpolator) -> sitk.Image:
    size = [int(round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
                         image.GetDirection(), 0, image.GetPixelID())


def _permute_thick_to_x(image: sitk.Image) -> sitk.Image:
    """Same voxels, array axes (z, y, x) → (y, x, z): the thick axis becomes the array's x."""
    arr = sitk.GetArrayFromImage(image).transpose(1, 2, 0)
    sz, sy, sx = reversed(image.GetSpacing())
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    out.SetSpacing((sz, sx, sy))  # (x', y', z') = (z, x, y) spacings
    return out


def test_unseen_anisotropic_volumes_are_cut_along_the_thick_axis(tmp_path):
    """Volumes resampled to 1×1×3 mm (never seen by the package), one permuted so x is thick."""
    src = tmp_path / "unseen"
    src.mkdir()
    d = samples.brain_mri_dir()
    for s in ("sub-02", "sub-05", "sub-06"):
        img = _resample(sitk.ReadImage(str(d / f"{s}.nii.gz")), (1.0, 1.0, 3.0), sitk.sitkLinear)
        lab = _resample(sitk.ReadImage(str(d / f"{s}_label.nii.gz")), (1.0, 1.0, 3.0), sitk.sitkNearestNeighbor)
        sitk.WriteImage(img, str(src / f"{s}.nii.gz"))
        sitk.WriteImage(lab, str(src / f"{s}_label.nii.gz"))
        if s == "sub-02":
            sitk.WriteImage(_permute_thick_to_x(img), str(src / "perm.nrrd"))
            sitk.WriteImage(_permute_thick_to_x(lab), str(src / "perm_label.nrrd"))
    out = tmp_path / "out"
    m = ml.preprocess(src, out, seed=3, progress=False)
    _assert_consistent(out)
    assert set(m["case"]) == {"sub-02", "sub-05", "sub-06", "perm"}
    assert (m["pixels"] >= 100).all()
    assert (m["slice_spacing"] == 3.0).all() and (m[["spacing_row", "spacing_col"]] == 1.0).all().all()
    assert (m.loc[m.case == "perm", "axis"] == 2).all() and (m.loc[m.case != "perm", "axis"] == 0).all()
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "sub-05_label.nii.gz")))
    assert lab.shape[0] > 50  # ~40 × 4 / 3 slices
    assert m.loc[m.case == "sub-05", "slice"].max() < lab.shape[0]
    # The permuted copy gives exactly the same slices, targets and boxes as its source.
    cols = ["slice", "label", "pixels", "x0", "y0", "x1", "y1", "height", "width"]
    a = m[m.case == "sub-02"][cols].reset_index(drop=True)
    b = m[m.case == "perm"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    ds = open_dataset(out)
    row = m[m.case == "perm"].iloc[len(b) // 2]
    assert np.array_equal(ds.image(row["image"]), ds.image(row["image"].replace("perm", "sub-02")))
    split = ds.meta["split"]
    assert sorted(split.values()).count("test") == 1  # round(0.2 × 4) = 1


def test_min_pixels_and_connected_components(tmp_path):
    src = _link_flat(tmp_path, ["sub-03"])
    everything = ml.preprocess(src, tmp_path / "all", min_pixels=0, progress=False)
    default = ml.preprocess(src, tmp_path / "default", progress=False)
    assert (everything["pixels"] < 100).any(), "sub-03 has small targets at the brain's edges"
    kept = everything[everything["pixels"] >= 100].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, default)
    comps = ml.preprocess(src, tmp_path / "cc", split_components=True, min_pixels=20, progress=False)
    _assert_consistent(tmp_path / "cc", min_pixels=20)
    assert (comps["component"] >= 1).all() and (default["component"] == 0).all()
    per_label = comps.groupby(["slice", "label"])["pixels"].agg(["sum", "size"])
    whole = everything.set_index(["slice", "label"])["pixels"]
    assert (per_label["sum"] <= whole.loc[per_label.index]).all()
    assert (per_label["size"] > 1).any()  # grey matter is cut into several components


def test_msd_nnunet_layout(tmp_path):
    src = tmp_path / "Task01_Brain"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    d = samples.brain_mri_dir()
    for s in ("sub-04", "sub-08"):
        (src / "imagesTr" / f"{s}_0000.nii.gz").symlink_to(d / f"{s}.nii.gz")
        (src / "imagesTr" / f"{s}_0001.nii.gz").symlink_to(d / f"{s}_label.nii.gz")  # 2nd channel: ignored
        (src / "labelsTr" / f"{s}.nii.gz").symlink_to(d / f"{s}_label.nii.gz")
    (src / "imagesTr" / "._sub-04_0000.nii.gz").write_bytes(b"macOS resource fork")  # as in MSD tarballs
    (src / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "WM": 1, "GM": 2, "LV": 3}}))
    cases = find_cases(src)
    assert [c.name for c in cases] == ["sub-04", "sub-08"]
    assert cases[0].image.name == "sub-04_0000.nii.gz" and cases[0].label.parent.name == "labelsTr"
    m = ml.preprocess(src, tmp_path / "out", progress=False)
    _assert_consistent(tmp_path / "out")
    assert set(m["label_name"]) == {"WM", "GM", "LV"}
    assert sorted(open_dataset(tmp_path / "out").meta["split"].values()) == ["test", "train"]


def test_2d_png_layout(tmp_path, brain_slice):
    image, label = brain_slice
    src = tmp_path / "png"
    src.mkdir()
    Image.fromarray(image).save(src / "a.png")
    Image.fromarray(label).save(src / "a_label.png")  # a label map 0..3
    Image.fromarray(image[:, ::-1].copy()).convert("RGB").save(src / "b.png")  # grey stored as RGB
    Image.fromarray(((label[:, ::-1] == 3) * 255).astype(np.uint8)).save(src / "b_mask.png")  # 0/255 → label 1
    m = ml.preprocess(src, tmp_path / "out", labels={1: "wm", 2: "gm", 3: "lv"}, test_fraction=0, progress=False)
    ds = _assert_consistent(tmp_path / "out")
    assert set(m["split"]) == {"train"}
    a, b = m[m.case == "a"], m[m.case == "b"]
    assert list(a["label"]) == [1, 2, 3] and list(b["label"]) == [1]
    assert (m["slice"] == 0).all() and m["slice_spacing"].isna().all()
    assert b["pixels"].iloc[0] == a.loc[a.label == 3, "pixels"].iloc[0] == (label == 3).sum()
    assert b["x1"].iloc[0] == label.shape[1] - 1 - a.loc[a.label == 3, "x0"].iloc[0]  # mirrored
    # an 8-bit 2D image is stored as it is, only resized
    ref = np.asarray(Image.fromarray(image).resize(ds.image(a["image"].iloc[0]).shape[::-1], Image.BILINEAR))
    assert np.abs(ds.image(a["image"].iloc[0]).astype(int) - ref).mean() < 2.0


def _write_dicom_series(image: sitk.Image, folder):
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer switches the process locale to "C"
    try:
        _write_dicom_files(image, folder)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_files(image: sitk.Image, folder):
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")
    d = image.GetDirection()
    for i in range(image.GetDepth()):
        s = image[:, :, i]
        tags = {"0008|0060": "MR", "0020|000d": "1.2.826.0.1.3680043.2.1125.1", "0020|000e": "1.2.826.0.1.3680043.2.1125.1.1",
                "0020|0037": "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
                "0020|0032": "\\".join(repr(float(v)) for v in image.TransformIndexToPhysicalPoint((0, 0, i))),
                "0020|0013": str(i + 1), "0018|0050": str(image.GetSpacing()[2])}
        for k, v in tags.items():
            s.SetMetaData(k, v)
        writer.SetFileName(str(folder / f"IM{i:04d}"))  # DICOM files often have no extension
        writer.Execute(s)


def test_dicom_series_folders(tmp_path):
    d = samples.brain_mri_dir()
    src = tmp_path / "dicom"
    src.mkdir()
    img = sitk.ReadImage(str(d / "sub-01.nii.gz"))[:, :, 14:30]
    lab = sitk.ReadImage(str(d / "sub-01_label.nii.gz"))[:, :, 14:30]
    _write_dicom_series(img, src / "patient1")
    sitk.WriteImage(lab, str(src / "patient1_label.nii.gz"))
    (src / "notes").mkdir()  # a folder without DICOM is not a case
    assert [c.name for c in find_cases(src)] == ["patient1"]
    m = ml.preprocess(src, tmp_path / "out", labels=[3], progress=False)
    _assert_consistent(tmp_path / "out")
    ref = sitk.GetArrayFromImage(lab)
    assert sorted(m["slice"]) == [z for z in range(ref.shape[0]) if (ref[z] == 3).sum() >= 100]
    assert list(m["pixels"]) == [(ref[z] == 3).sum() for z in m["slice"]]
    assert math.isclose(m["slice_spacing"].iloc[0], 4.0, rel_tol=1e-6)


def test_rerun_skips_done_cases_and_redoes_a_partial_one(tmp_path, monkeypatch):
    src = _link_flat(tmp_path, ["sub-01", "sub-02", "sub-03"])
    out = tmp_path / "out"
    fresh = ml.preprocess(src, tmp_path / "fresh", progress=False)

    calls = {"sub-03": 0}
    real_save = pp_module._save_png

    def dying_save(array, path):  # simulates a kill after 20 files of the third case
        if "sub-03" in str(path):
            calls["sub-03"] += 1
            if calls["sub-03"] > 20:
                raise KeyboardInterrupt
        real_save(array, path)

    monkeypatch.setattr(pp_module, "_save_png", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ml.preprocess(src, out, progress=False)
    monkeypatch.setattr(pp_module, "_save_png", real_save)
    meta = json.loads((out / "dataset.json").read_text())
    assert [meta["cases"][c]["status"] for c in ("sub-01", "sub-02", "sub-03")] == ["done", "done", "pending"]
    assert any((out / "images" / "sub-03").iterdir())  # partial files were written
    (out / "images" / "sub-03" / "9999.png").write_bytes(b"junk from the killed run")
    before = {p: t for p, t in _mtimes(out).items() if "sub-03" not in str(p)}

    m = ml.preprocess(src, out, progress=False)
    pd.testing.assert_frame_equal(m, fresh)
    _assert_consistent(out)
    assert not (out / "images" / "sub-03" / "9999.png").exists()
    after = _mtimes(out)
    assert {p: after[p] for p in before if p.suffix == ".png"} == {p: t for p, t in before.items() if p.suffix == ".png"}

    # a finished dataset: nothing is rewritten at all
    before = _mtimes(out)
    pd.testing.assert_frame_equal(ml.preprocess(src, out, progress=False), fresh)
    assert _mtimes(out) == before


def test_rerun_with_other_settings_or_cases_is_refused(tmp_path):
    src = _link_flat(tmp_path, ["sub-01", "sub-02"])
    out = tmp_path / "out"
    ml.preprocess(src, out, labels=[3], progress=False)
    before = _mtimes(out)
    with pytest.raises(ml.InputError, match=r"other settings \(min_pixels: 100 → 50"):
        ml.preprocess(src, out, labels=[3], min_pixels=50, progress=False)
    with pytest.raises(ml.InputError, match="test_cases"):
        ml.preprocess(src, out, labels=[3], test_cases=["sub-01"], progress=False)
    (src / "sub-03.nii.gz").symlink_to(samples.brain_mri_dir() / "sub-03.nii.gz")
    (src / "sub-03_label.nii.gz").symlink_to(samples.brain_mri_dir() / "sub-03_label.nii.gz")
    with pytest.raises(ml.InputError, match=r"other cases \(new: \['sub-03'\]"):
        ml.preprocess(src, out, labels=[3], progress=False)
    assert _mtimes(out) == before


def _bad_geometry(src):
    lab = sitk.ReadImage(str(samples.brain_mri_dir() / "sub-02_label.nii.gz"))
    lab.SetOrigin([o + 2.0 for o in lab.GetOrigin()])
    (src / "sub-02_label.nii.gz").unlink()
    sitk.WriteImage(lab, str(src / "sub-02_label.nii.gz"))


def _bad_shape(src):
    lab = sitk.ReadImage(str(samples.brain_mri_dir() / "sub-02_label.nii.gz"))[:, :-3, :]
    (src / "sub-02_label.nii.gz").unlink()
    sitk.WriteImage(lab, str(src / "sub-02_label.nii.gz"))


def _float_label(src):
    lab = sitk.ReadImage(str(samples.brain_mri_dir() / "sub-02_label.nii.gz"))
    soft = sitk.SmoothingRecursiveGaussian(sitk.Cast(lab, sitk.sitkFloat32), 1.0)  # a probability-like map
    (src / "sub-02_label.nii.gz").unlink()
    sitk.WriteImage(soft, str(src / "sub-02_label.nii.gz"))


def _missing_label(src):
    (src / "sub-02_label.nii.gz").unlink()


def _orphan_label(src):
    (src / "sub-02.nii.gz").unlink()


def _corrupt_image(src):
    (src / "sub-02.nii.gz").unlink()
    # cut inside the header (SimpleITK reads a .nii.gz cut after its header as zeros, unnoticed)
    (src / "sub-02.nii.gz").write_bytes((samples.brain_mri_dir() / "sub-02.nii.gz").read_bytes()[:100])


@pytest.mark.parametrize("spoil, message", [
    (_bad_geometry, "differ in geometry.*origin.*Resample"),
    (_bad_shape, "differ in geometry: shape"),
    (_float_label, "not integer-valued"),
    (_missing_label, "missing label file.*sub-02_label"),
    (_orphan_label, "label file.*without an image"),
    (_corrupt_image, "could not be read"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, spoil, message):
    """The spoiled case sorts last (sub-02 after sub-01): nothing of sub-01 may be written either."""
    src = _link_flat(tmp_path, ["sub-01", "sub-02"])
    spoil(src)
    out = tmp_path / "out"
    with pytest.raises(ml.InputError, match=message):
        ml.preprocess(src, out, progress=False)
    assert not out.exists()


def test_bad_arguments_are_refused(tmp_path):
    src = _link_flat(tmp_path, ["sub-01", "sub-02"])
    out = tmp_path / "out"
    for kwargs, message in [
        (dict(test_cases=["sub-09"]), r"test_cases \['sub-09'\] are not cases"),
        (dict(axis=3), "axis must be"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(window="nope", modality="CT"), "unknown CT window"),
        (dict(labels=[7]), "none of the labels \\[7\\] occur"),
        (dict(image_size=0), "image_size"),
    ]:
        with pytest.raises(ml.InputError, match=message):
            ml.preprocess(src, out, progress=False, **kwargs)
        assert not out.exists()
    out.mkdir()
    (out / "thesis.docx").write_text("not a dataset")
    with pytest.raises(ml.InputError, match="not a medsam_lite dataset"):
        ml.preprocess(src, out, progress=False)
    with pytest.raises(ml.InputError, match="missing file"):
        ml.preprocess([(src / "sub-01.nii.gz", src / "nope.nii.gz")], tmp_path / "o2", progress=False)
    assert not (tmp_path / "o2").exists()


def test_pairs_axis_choice_and_module_spelling(tmp_path):
    d = samples.brain_mri_dir()
    m = ml.prepare_dataset([(d / "sub-06.nii.gz", d / "sub-06_label.nii.gz")], tmp_path / "out",
                           axis="y", labels=[1], progress=False)
    label = io.read_volume(d / "sub-06_label.nii.gz").array
    assert (m["axis"] == 1).all() and (m["slice_spacing"] == 1.0).all() and (m["spacing_row"] == 4.0).all()
    assert (m["height"] == label.shape[0]).all() and (m["width"] == label.shape[2]).all()
    assert list(m["slice"]) == [y for y in range(label.shape[1]) if (label[:, y] == 1).sum() >= 100]
    assert thick_axis((4.0, 1.0, 1.0)) == 0 and thick_axis((1.0, 1.0, 3.0)) == 2
    assert thick_axis((2.0, 2.0, 2.0)) == 0 and thick_axis((1.0, 2.0, 2.0), shape=(5, 1, 9)) == 1
    # the module keeps the name although the package exports the preprocess function
    assert pp_module.normalize_intensity is ml.normalize_intensity
    assert os.path.basename(pp_module.__file__) == "preprocess.py"
    shutil.rmtree(tmp_path / "out")


def test_plot_helpers_show_every_label(sample_dataset):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from medsam_lite import plotting

    out, manifest = sample_dataset
    fig = plotting.plot_dataset_grid(out, n=6, ncols=3, split="test")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 6 and all("test" in t for t in titles)
    # each panel names its label by value and name ("1 white_matter")
    assert {"white_matter", "grey_matter", "lateral_ventricles"} <= {t.split("· ")[1].split("\n")[0].split(" ", 1)[1]
                                                                      for t in titles}
    assert sum(len(ax.patches) for ax in fig.axes) == 6  # one box per panel
    fig2 = plotting.plot_target_sizes(manifest, min_pixels=100)
    legend = [t.get_text() for t in fig2.axes[0].get_legend().get_texts()]
    assert set(legend) == {"1 white_matter", "2 grey_matter", "3 lateral_ventricles", "min_pixels = 100"}
    plt.close("all")

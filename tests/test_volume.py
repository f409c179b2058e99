"""3D propagation, RECIST boxes and volumes in/out, on real sample volumes with real LiteMedSAM.

One :class:`VolumePredictor` on the unseen subject sub-08 is shared by the module, so each slice is
encoded once for all the tests (about a dozen slices around the lateral ventricles). The
propagation defaults were chosen on sub-01 and sub-02 (``bench/bench_volume.py``). The one-box
criterion runs on the real CT sample (an organ the pretrained decoder segments), not on the ventricles.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.interactive.prompts import box_from_recist
from medsam_lite.interactive.volume import VolumePredictor, predict_volume

SUBJECT = "sub-08"
VENTRICLES, WHITE_MATTER = 3, 1


@pytest.fixture(scope="module")
def case():
    d = samples.brain_mri_dir()
    return io.read_volume(d / f"{SUBJECT}.nii.gz"), io.read_volume(d / f"{SUBJECT}_label.nii.gz")


@pytest.fixture(scope="module")
def vp(model, case):
    return VolumePredictor(case[0], model)


def _middle(truth: np.ndarray) -> int:
    zs = np.flatnonzero(truth.any(axis=(1, 2)))
    return int(zs.min() + (zs.max() - zs.min()) // 2)


def _per_slice_gt_boxes(vp, truth, min_pixels=10):
    out = np.zeros_like(truth)
    for z in np.flatnonzero(truth.sum(axis=(1, 2)) >= min_pixels):
        out[z] = vp.predict_slice(int(z), ml.box_from_mask(truth[z]))[0][0]
    return out


@pytest.fixture(scope="module")
def ventricles(vp, case):
    """Pretrained model: ventricles from a 3D box one slice wider than the target (11 slices)."""
    truth = case[1].array == VENTRICLES
    key = _middle(truth)
    zs = np.flatnonzero(truth.any(axis=(1, 2)))
    x0, y0, x1, y1 = ml.box_from_mask(truth[key])
    box3d = [x0, y0, int(zs.min()) - 1, x1, y1, int(zs.max()) + 1]
    prop = vp.predict(box3d, progress=False)
    return dict(truth=truth, key=key, box3d=box3d, prop=prop)


@pytest.fixture(scope="module")
def ct_scan():
    """The real CT sample's three slabs (case-01, -02, -03: consecutive 10-slice pieces of one scan,
    3 mm apart, as their origins show) stacked back into the 30-slice scan, with its label map."""
    d = samples.ct_abdomen_dir()
    scans = [io.read_volume(d / f"case-0{i}.nii.gz") for i in (1, 2, 3)]
    labels = [io.read_volume(d / f"case-0{i}_label.nii.gz").array for i in (1, 2, 3)]
    assert all(np.isclose(b.origin[2] - a.origin[2], 3 * 10) for a, b in zip(scans, scans[1:]))
    return dataclasses.replace(scans[0], array=np.concatenate([s.array for s in scans]), path=None), \
        np.concatenate(labels)


# -- propagation with the bundled model ----------------------------------------------------------

def test_brain_propagation_matches_per_slice_boxes(vp, case, ventricles):
    """A target the pretrained model does well (whole brain, Dice ≈ 0.8 per slice from a tight
    box), inside a 3D box over the slices already encoded: one box must do about as well as a box
    on every slice (measured ratio ≈ 1.0; a fixed 3-px margin instead of the default drifts to ≈ 0.5)."""
    brain = case[1].array > 0
    z0, z1 = min(vp.embeddings), max(vp.embeddings)
    truth = np.zeros_like(brain)
    truth[z0:z1 + 1] = brain[z0:z1 + 1]
    key = z0 + (z1 - z0) // 2
    x0, y0, x1, y1 = ml.box_from_mask(brain[key])
    calls = vp.encoder_calls
    prop = vp.predict([x0, y0, z0, x1, y1, z1], progress=False)
    gt = _per_slice_gt_boxes(vp, truth)
    assert vp.encoder_calls == calls  # every slice was already encoded
    assert ml.dice(prop, truth) >= 0.9 * ml.dice(gt, truth), (ml.dice(prop, truth), ml.dice(gt, truth))
    assert not prop[:z0].any() and not prop[z1 + 1:].any()


# -- each slice encoded once --------------------------------------------------------------------

def test_each_slice_is_encoded_once(vp, ventricles):
    assert vp.encoder_calls == len(vp.embeddings)
    z0, z1 = ventricles["box3d"][2], ventricles["box3d"][5]
    assert set(vp.embeddings) == set(range(z0, z1 + 1))  # only the 3D box's slices
    before = vp.encoder_calls
    again = vp.predict(ventricles["box3d"], progress=False)
    np.testing.assert_array_equal(again, ventricles["prop"])  # deterministic, and…
    assert vp.encoder_calls == before  # …no slice encoded twice
    # the one-call form reuses the predictor's cache too
    np.testing.assert_array_equal(predict_volume(vp, ventricles["box3d"], progress=False), ventricles["prop"])
    assert vp.encoder_calls == before


def test_label_map_of_several_targets_reuses_the_encodings(vp, case, ventricles):
    label = case[1].array
    z0, z1 = ventricles["box3d"][2], ventricles["box3d"][5]
    key = ventricles["key"]
    wm = ml.box_from_mask(label[key] == WHITE_MATTER)
    targets = {WHITE_MATTER: [wm[0], wm[1], z0 + 1, wm[2], wm[3], z1 - 1],   # a 3D box
               VENTRICLES: (ventricles["box3d"], key)}                      # (3D box, key slice)
    before = vp.encoder_calls
    out = vp.predict(targets, progress=False)
    assert vp.encoder_calls == before
    assert out.dtype == np.uint8 and out.shape == label.shape
    assert set(np.unique(out)) == {0, WHITE_MATTER, VENTRICLES}
    assert not out[:z0].any() and not out[z1 + 1:].any()
    assert not (out[:z0 + 1] == WHITE_MATTER).any() and not (out[z1:] == WHITE_MATTER).any()
    # the later target is painted last: its voxels are exactly its single-target mask
    np.testing.assert_array_equal(out == VENTRICLES, ventricles["prop"])
    wm_alone = vp.predict(targets[WHITE_MATTER], progress=False)
    np.testing.assert_array_equal(out == WHITE_MATTER, wm_alone & ~ventricles["prop"])
    wm_truth = label == WHITE_MATTER
    wm_truth[:z0 + 1] = wm_truth[z1:] = False
    assert ml.dice(wm_alone, wm_truth) > 0.2  # pretrained: ≈ 0.4 per slice from a tight box
    big = vp.predict({300: targets[WHITE_MATTER]}, progress=False)
    assert big.dtype == np.uint16 and set(np.unique(big)) == {0, 300}


# -- prompts ------------------------------------------------------------------------------------

def test_3d_box_limits_slices_and_extent(vp, ventricles):
    truth, key = ventricles["truth"], ventricles["key"]
    x0, y0, x1, y1 = ml.box_from_mask(truth[key])
    z0, z1 = key - 2, key + 1
    out = vp.predict([x0, y0, z0, x1, y1, z1], progress=False)
    assert out[z0:z1 + 1].any(axis=(1, 2)).all()
    assert not out[:z0].any() and not out[z1 + 1:].any()
    ys, xs = np.nonzero(out.any(axis=0))
    assert xs.min() >= x0 - 0.5 and xs.max() <= x1 + 0.5 and ys.min() >= y0 - 0.5 and ys.max() <= y1 + 0.5
    # the key slice is the box's middle, z0 + (z1 - z0) // 2, segmented from the box itself
    np.testing.assert_array_equal(out[key - 1], vp.predict_slice(key - 1, [x0, y0, x1, y1])[0][0])
    # an explicit key slice inside the 3D box
    out2 = vp.predict([x0, y0, z0, x1, y1, z1], slice_index=z1, progress=False)
    np.testing.assert_array_equal(out2[z1], vp.predict_slice(z1, [x0, y0, x1, y1])[0][0])


def test_user_boxes_on_several_slices_are_honoured(vp, ventricles):
    """With every propagated mask rejected (``min_pixels`` huge), only the user slices remain,
    each segmented from its own box; on ``key + 1`` the user boxes only the left ventricle."""
    truth, key = ventricles["truth"], ventricles["key"]
    box = ml.box_from_mask(truth[key])
    half = ml.box_from_mask(truth[key + 1]).copy()
    half[2] = (half[0] + half[2]) / 2
    out = vp.predict(np.stack([box, half]), slice_index=[key, key + 1], min_pixels=10**6, progress=False)
    np.testing.assert_array_equal(out[key + 1], vp.predict_slice(key + 1, half)[0][0])
    np.testing.assert_array_equal(out[key], vp.predict_slice(key, box)[0][0])
    assert out[key].any() and out[key + 1].any()
    assert not out[:key].any() and not out[key + 2:].any()
    assert not out[key + 1][:, int(half[2]) + 3:].any()


def test_the_walk_takes_its_rules_as_an_object(vp, ventricles):
    """``propagate`` walks, a rule object decides: ``PackageRules(**DEFAULTS)`` is ``predict``'s walk
    bit for bit; a rule whose next box is always ``None`` (the target gone at once) leaves the user
    slice alone; a rule name instead of an object is refused."""
    from medsam_lite.interactive.propagation import PackageRules, propagate
    from medsam_lite.interactive.volume import DEFAULTS

    class UserSliceOnly(PackageRules):
        def next_box(self, vp, trail, start_box):
            return None

    key, (x0, y0, z0, x1, y1, z1) = ventricles["key"], ventricles["box3d"]
    keys = {key: np.array([x0, y0, x1, y1], np.float32)}
    masks, _ = propagate(vp, keys, (z0, z1), PackageRules(clip=(x0, y0, x1, y1), **DEFAULTS))
    np.testing.assert_array_equal(masks, ventricles["prop"])
    alone, scores = propagate(vp, keys, (z0, z1), UserSliceOnly(**DEFAULTS))
    np.testing.assert_array_equal(alone[key], masks[key])
    assert not np.delete(alone, key, axis=0).any() and np.flatnonzero(scores).tolist() == [key]
    with pytest.raises(ml.InputError, match="PackageRules or PublishedRules"):
        propagate(vp, keys, (z0, z1), "published")


def test_predict_slice_takes_its_prompts_in_one_space(vp, ventricles):
    """``space="model"`` (the published rules' prompts) gives the original-pixel box's masks when the
    prompt is that box's ``Geometry.box_prompt``; ``box_space=`` still works, with a DeprecationWarning."""
    key = ventricles["key"]
    box = ml.box_from_mask(ventricles["truth"][key])
    prompt = vp.model.geometry(vp.slice_hw).box_prompt(box[None])
    want = vp.predict_slice(key, box)
    for got in (vp.predict_slice(key, prompt, space="model"), vp.predict_slice(key, box, space="original")):
        np.testing.assert_array_equal(got[0], want[0])
    with pytest.warns(DeprecationWarning, match="space="):
        np.testing.assert_array_equal(vp.predict_slice(key, prompt, box_space="model")[0], want[0])
    with pytest.raises(ml.InputError, match="space must be"):
        vp.predict_slice(key, box, space="image")


def test_a_user_slice_beyond_a_gap_is_still_segmented(vp, ventricles):
    """Propagation stops where the target 'vanishes', but a user box further on is honoured."""
    truth, key = ventricles["truth"], ventricles["key"]
    box = ml.box_from_mask(truth[key])
    far = key + 3
    calls = vp.encoder_calls
    out = vp.predict(np.stack([box, box]), slice_index=[key, far], min_pixels=10**6, progress=False)
    np.testing.assert_array_equal(out[far], vp.predict_slice(far, box)[0][0])
    assert out[far].any() and not out[key + 1:far].any()
    assert vp.encoder_calls == calls


def test_other_axis_gives_the_same_masks(vp, case, ventricles):
    """The same scan stored (y, z, x) with axis=1: same slices, same masks after moving axes back."""
    scan = case[0]
    moved = io.Volume(np.moveaxis(scan.array, 0, 1), (1.0, 4.0, 1.0))
    vp_t = VolumePredictor(moved, vp.model)
    assert vp_t.axis == 1 and vp_t.n_slices == scan.array.shape[0]  # the largest spacing
    key = ventricles["key"]
    np.testing.assert_array_equal(vp_t.slice_image(key), vp.slice_image(key))
    vp_t.embeddings.update(vp.embeddings)  # identical slices: share the cache instead of encoding again
    out = vp_t.predict(ventricles["box3d"], progress=False)
    assert vp_t.encoder_calls == 0 and out.shape == moved.array.shape
    np.testing.assert_array_equal(np.moveaxis(out, 1, 0), ventricles["prop"])
    # a plain array has no spacing: axis 0 unless told
    assert VolumePredictor(moved.array, vp.model).axis == 0


def test_largest_component(vp, ventricles):
    out = vp.predict(ventricles["box3d"], largest_component=True, progress=False)
    raw = ventricles["prop"]
    assert out.any() and not (out & ~raw).any()
    assert ndimage.label(out)[1] == 1
    n_raw = ndimage.label(raw)[1]
    assert (out.sum() < raw.sum()) == (n_raw > 1)


@pytest.mark.parametrize("kwargs, words", [
    (dict(box=[10, 10, 50, 50]), "slice_index"),
    (dict(box=[10, 10, 50, 50], slice_index=99), "outside the volume"),
    (dict(box=[10, 10, 50, 50], slice_index=1.5), "must be an int"),
    (dict(box=[10, 10, 300, 50, 50, 290]), "inverted"),
    (dict(box=[[10, 10, 50, 50], [12, 12, 40, 40]], slice_index=[3]), "2 slice indices"),
    (dict(box=[[10, 10, 50, 50], [12, 12, 40, 40]], slice_index=[3, 3]), "repeat"),
    (dict(box=[500, 500, 600, 600], slice_index=3), "outside"),
    (dict(box=[50, 10, 10, 50], slice_index=3), "inverted"),
    (dict(box=[1, 2, 3]), "not understood"),
    (dict(box={0: [10, 10, 0, 50, 50, 5]}), "label"),
    (dict(box={1: [10, 10, 0, 50, 50, 5]}, slice_index=2), "slice_index"),
    (dict(box=[10, 10, 50, 50], slice_index=3, margin=-1), "margin"),
])
def test_bad_prompts_raise_input_error(vp, kwargs, words):
    calls = vp.encoder_calls
    with pytest.raises(ml.InputError, match=words):
        vp.predict(**kwargs, progress=False)
    assert vp.encoder_calls == calls


def test_blank_slices_are_not_encoded(vp, case):
    """Slices outside the head are blank: no mask there (the model would invent one), no encoder
    run, and a user box on one is refused."""
    blank = [z for z in range(vp.n_slices) if not case[0].array[z].any()]
    assert blank and all(vp.is_blank(z) for z in blank) and not vp.is_blank(20)
    calls = vp.encoder_calls
    masks, scores = vp.predict_slice(blank[0], [[40, 50, 120, 150], [10, 10, 30, 30]])
    assert masks.shape == (2, *vp.slice_hw) and not masks.any() and not scores.any()
    assert vp.encoder_calls == calls and blank[0] not in vp.embeddings
    with pytest.raises(ml.InputError, match="blank"):
        vp.predict([40, 50, 120, 150], slice_index=blank[0], progress=False)
    with pytest.raises(ml.InputError, match="constant"):
        vp.embed(blank[0])


def test_bad_volumes_raise_input_error(case, model):
    with pytest.raises(ml.InputError, match="3D"):
        VolumePredictor(case[0].array[20], model)
    with pytest.raises(ml.InputError, match="axis"):
        VolumePredictor(case[0], model, axis=3)
    with pytest.raises(ml.InputError, match="does not exist"):
        VolumePredictor("no/such/scan.nii.gz", model)
    vp = VolumePredictor(case[0], model)
    with pytest.raises(ml.InputError, match="already fixed"):
        predict_volume(vp, [10, 10, 50, 50], 3, model=model)


# -- RECIST -------------------------------------------------------------------------------------

def test_recist_box_geometry():
    # horizontal long axis, 60 px: width 0.5 × 60 across it
    np.testing.assert_allclose(box_from_recist((10, 50), (70, 50), ratio=0.5), [10, 35, 70, 65])
    # 3-4-5 diagonal (length 50), half-width 10 along the normal (-0.8, 0.6)
    np.testing.assert_allclose(box_from_recist((0, 0), (30, 40), ratio=0.4), [-8, -6, 38, 46], atol=1e-5)
    np.testing.assert_allclose(box_from_recist((0, 0), (30, 40), ratio=0.4, image_shape=(40, 35)), [0, 0, 34, 39])
    # a short axis on one side only widens that side
    np.testing.assert_allclose(box_from_recist((10, 50), (70, 50), short_axis=((40, 50), (40, 62))), [10, 50, 70, 62])
    assert box_from_recist((70, 50), (10, 50)).dtype == np.float32  # end points in either order


@pytest.mark.parametrize("args, words", [
    (((5, 5), (5, 5)), "same point"),
    (((5, 5), (5,)), "p2"),
    (((5, np.nan), (9, 9)), "p1"),
])
def test_recist_bad_input(args, words):
    with pytest.raises(ml.InputError, match=words):
        box_from_recist(*args)
    with pytest.raises(ml.InputError, match="ratio"):
        box_from_recist((0, 0), (10, 0), ratio=0)
    with pytest.raises(ml.InputError, match="image_shape"):
        box_from_recist((0, 0), (10, 0), image_shape=(191,))
    with pytest.raises(ml.InputError, match="outside"):
        box_from_recist((300, 300), (350, 320), image_shape=(191, 164))
    with pytest.raises(ml.InputError, match="short axis"):
        box_from_recist((0, 5), (10, 5), short_axis=((3, 5), (6, 5)))


def test_recist_box_on_a_real_target(model, brain_slice):
    """Long axis = the brain's longest diameter, short axis = its widest perpendicular extent: the
    box contains the tight box, and segmenting from it is about as good."""
    from scipy.spatial import ConvexHull

    image, label = brain_slice
    brain = label > 0
    pts = np.argwhere(brain)[:, ::-1].astype(float)  # (x, y)
    hull = pts[ConvexHull(pts).vertices]
    d = np.linalg.norm(hull[:, None] - hull[None], axis=-1)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    p1, p2 = hull[i], hull[j]
    u = (p2 - p1) / np.linalg.norm(p2 - p1)
    off = (pts - p1) @ np.array([-u[1], u[0]])
    q1, q2 = pts[np.argmin(off)], pts[np.argmax(off)]
    box = box_from_recist(p1, p2, short_axis=(q1, q2), image_shape=image.shape)
    tight = ml.box_from_mask(brain)
    assert (box[:2] <= tight[:2] + 1e-3).all() and (box[2:] >= tight[2:] - 1e-3).all()
    predictor = ml.Predictor(model)
    predictor.set_image(image)
    (m_recist, m_tight), _ = predictor.predict(np.stack([box, tight]))
    assert ml.dice(m_recist, brain) >= ml.dice(m_tight, brain) - 0.1


# -- volumes in and out -------------------------------------------------------------------------

def _rotated(volume: io.Volume) -> io.Volume:
    """The same voxels with a non-identity direction, a non-zero origin and anisotropic spacing."""
    a, b = 0.3, 0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return io.Volume(volume.array, (0.9, 1.1, 4.0), (-12.5, 40.25, 7.0), tuple((rz @ rx).ravel()))


def _write_dicom_series(volume: io.Volume, folder) -> None:
    """One int16 DICOM file per slice with position/orientation tags (SimpleITK's recipe)."""
    image = volume.to_sitk()
    d = image.GetDirection()
    uid = f"1.2.826.0.1.3680043.2.1125.1.{int(time.time())}"
    tags = [("0008|0060", "MR"), ("0020|000e", uid), ("0020|000d", uid + ".0"),
            ("0020|0037", "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])))]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for i in range(image.GetDepth()):
        s = image[:, :, i]
        for k, v in tags:
            s.SetMetaData(k, v)
        s.SetMetaData("0020|0032", "\\".join(f"{v:.10f}" for v in image.TransformIndexToPhysicalPoint((0, 0, i))))
        s.SetMetaData("0020|0013", str(i + 1))
        writer.SetFileName(os.path.join(folder, f"slice{i:03d}.dcm"))
        writer.Execute(s)


def _assert_geometry(a: io.Volume, b: io.Volume):
    assert a.array.shape == b.array.shape
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-5)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-5)


@pytest.mark.parametrize("fmt", [".nii.gz", ".nrrd", ".mha", "dicom"])
def test_round_trip_and_mask_written_like_the_source(tmp_path, case, ventricles, fmt):
    source = _rotated(case[0])
    assert source.array.dtype == np.int16
    if fmt == "dicom":
        (tmp_path / "series").mkdir()
        _write_dicom_series(source, tmp_path / "series")
        path = tmp_path / "series"
    else:
        path = io.write_volume(source.array, tmp_path / f"scan{fmt}", like=source)
    scan = io.read_volume(path)
    np.testing.assert_array_equal(scan.array, source.array)
    _assert_geometry(scan, source)
    # the propagated mask, written as NIfTI beside any source, keeps its size and geometry
    out = io.write_volume(ventricles["prop"], tmp_path / "mask.nii.gz", like=scan)
    back = io.read_volume(out)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array.astype(bool), ventricles["prop"])
    _assert_geometry(back, scan)
    assert back.same_geometry(scan)


def test_predict_volume_from_a_file_path(tmp_path, case, model, ventricles, vp):
    """A path in, a mask out that overlays on the file (the cache is shared to avoid re-encoding)."""
    path = io.write_volume(case[0].array, tmp_path / "scan.nrrd", like=_rotated(case[0]))
    from_file = VolumePredictor(path, model)
    assert from_file.axis == 0 and from_file.volume.path == str(path)
    np.testing.assert_array_equal(from_file.image, vp.image)  # same intensity normalization
    from_file.embeddings.update(vp.embeddings)
    mask = predict_volume(from_file, ventricles["box3d"], progress=False)
    np.testing.assert_array_equal(mask, ventricles["prop"])
    back = io.read_volume(io.write_volume(mask, tmp_path / "mask.nii.gz", like=from_file.volume))
    _assert_geometry(back, _rotated(case[0]))


# -- the criterion ----------------------------------------------------------------------

KIDNEY_LEFT = 3  # ct_abdomen label: slices 0–22 of the stacked 30-slice scan


def test_one_box_reaches_85_percent_of_a_box_on_every_slice(model, ct_scan):
    """The left kidney of the real CT from one tight box on its middle slice, no z-limit: one box
    must do ≥ 85 % as well as a box on every slice, and the propagation must stop where the kidney
    ends (slice 22 of 30) instead of running on through the abdomen. The pretrained decoder segments
    this organ (Dice ≈ 0.86 per slice from tight boxes), so no fine-tuning is needed to make the
    ratio meaningful. Measured (1 thread): per-slice boxes 0.859, one box 0.867, ratio 1.01, z 0–22
    of truth 0–22. (The right kidney and the gallbladder of this scan are not used: the pretrained
    propagation runs past their ends to the last slice.)
    """
    scan, labels = ct_scan
    truth = labels == KIDNEY_LEFT
    key = _middle(truth)
    vp = VolumePredictor(scan, model, modality="CT")
    prop = vp.predict(ml.box_from_mask(truth[key]), slice_index=key, progress=False)
    gt = _per_slice_gt_boxes(vp, truth)
    d_prop, d_gt = ml.dice(prop, truth), ml.dice(gt, truth)
    assert d_gt >= 0.5, d_gt  # the decoder works on this organ
    assert d_prop / d_gt >= 0.85, (d_prop, d_gt)
    # it stopped where the kidney ends instead of running through the abdomen
    zs, tz = np.flatnonzero(prop.any(axis=(1, 2))), np.flatnonzero(truth.any(axis=(1, 2)))
    assert tz.max() + 2 < scan.array.shape[0] - 1  # the kidney's upper end is inside the scan
    assert tz.min() - 2 <= zs.min() and zs.max() <= tz.max() + 2, (zs, tz)
    assert np.array_equal(zs, np.arange(zs.min(), zs.max() + 1))  # one run of slices, no gaps
    assert vp.encoder_calls == len(vp.embeddings) < scan.array.shape[0]  # each slice once, not the whole scan


@pytest.mark.parametrize("shape, axis, match", [
    ((40, 1, 1), None, r"no axis whose slices are at least 2×2 pixels \(slices across axis=0: 1×1, axis=1: 40×1"),
    ((1, 40, 1), None, "no axis whose slices"),
    ((40, 1, 30), 0, r"slices across axis=0 of the volume \(40, 1, 30\) are 1×30 pixels.*Pass axis=1"),
    ((40, 30, 1), 1, r"Pass axis=2"),
])
def test_a_volume_without_2d_slices_along_the_axis_names_axis(shape, axis, match):
    """(40, 1, 1) took a 1-voxel axis automatically and failed later without naming axis=."""
    with pytest.raises(ml.InputError, match=match):
        ml.VolumePredictor(np.zeros(shape, np.float32), model="never loaded", axis=axis)


# ---- shared by the tests below (from test_faults2.py)
def brain(case: str):
    d = samples.brain_mri_dir()
    return d / f"{case}.nii.gz", d / f"{case}_label.nii.gz"


def test_a_one_slice_volume_with_thin_z_is_sliced_along_z(model):
    scan, lab = (io.read_volume(p) for p in brain("sub-01"))
    z = scan.array.shape[0] // 2
    one = io.Volume(scan.array[z:z + 1], (1.0, 1.0, 0.5), scan.origin, scan.direction)  # z thinner than x, y
    truth = lab.array[z] == 1
    mask = ml.predict_volume(one, ml.box_from_mask(truth), slice_index=0, model=model)
    assert mask.shape == one.array.shape and ml.dice(mask[0], truth) > 0.3

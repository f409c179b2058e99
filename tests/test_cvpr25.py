"""The CVPR 2025 interactive 3D format and loop (issue 32; issue 29 broken #6 and the "Challenge:" bullet).

Real data: a 3-slice crop of the bundled CT ``case-03`` (two organs), windowed to uint8, written as the
CVPR25 harness writes its inputs (``np.savez_compressed`` of lists of dicts holding numpy ints).
"""

from __future__ import annotations

import io as bytes_io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import InputError, io, samples
from medsam_lite.io.challenge import load_npz, read_case
from medsam_lite.io.challenge25 import write_case25

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "cvpr25"))
import loop  # noqa: E402  (bench/cvpr25/loop.py: the harness's protocol)


@pytest.fixture(scope="module")
def ct25():
    """CT case-03 slices 3–5 (3×101×122) W400/L40 uint8; liver (5) → class 1, stomach (6) → class 2."""
    folder = samples.ct_abdomen_dir()
    img = io.read_volume(folder / "case-03.nii.gz").array[3:6]
    lab = io.read_label(folder / "case-03_label.nii.gz").array[3:6]
    gts = np.zeros(lab.shape, np.uint8)
    gts[lab == 5], gts[lab == 6] = 1, 2
    assert all((gts == k).sum() > 100 for k in (1, 2))
    return ml.normalize_intensity(img, "CT", (-160, 240)), gts


def harness_box(gt: np.ndarray) -> dict:
    """get_boxes.py's dict (numpy ints, as the harness stores them), no random shift."""
    z = np.unique(np.where(gt)[0])
    mid = z[len(z) // 2]
    ys, xs = np.where(gt[mid])
    return dict(z_min=z.min(), z_max=z.max(), z_mid=mid, z_mid_x_min=xs.min(), z_mid_y_min=ys.min(),
                z_mid_x_max=xs.max(), z_mid_y_max=ys.max())


@pytest.fixture(scope="module")
def embed_cache(tmp_path_factory):
    """One embedding folder for the module: the CT crop's 3 slices are encoded once."""
    folder = tmp_path_factory.mktemp("cvpr25") / "embeddings"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDSAM_LITE_EMBEDDING_CACHE", str(folder))
        yield folder


def test_cvpr25_click_step_file_reads_with_zyx_clicks(tmp_path):
    """A click-step input as the harness writes it (object arrays: np.load(allow_pickle=False) refused it)."""
    imgs = np.random.default_rng(0).integers(0, 255, (4, 20, 30), dtype=np.uint8)
    box = dict(z_min=np.int64(0), z_max=np.int64(3), z_mid=np.int64(2), z_mid_x_min=np.int64(5),
               z_mid_y_min=np.int64(4), z_mid_x_max=np.int64(25), z_mid_y_max=np.int64(15))
    clicks = [{"fg": [[np.int64(3), np.int64(18), np.int64(29)]], "bg": []}, {"fg": [], "bg": [[np.int64(1), np.int64(2), np.int64(7)]]}]
    prev = np.zeros(imgs.shape, np.uint8)
    write_case25(tmp_path / "CT_x.npz", imgs, (2.0, 0.8, 0.8), boxes=[box, None], clicks=clicks,
                 clicks_order=[["fg"], ["bg"]], prev_pred=prev)
    case = read_case(tmp_path / "CT_x.npz")
    assert case.cvpr25 and case.is_3d and case.n_classes == 2
    assert case.boxes25[0]["z_mid_x_max"] == 25 and case.boxes25[1] is None
    assert case.clicks[0]["fg"] == [(3, 18, 29)] and case.clicks[1]["bg"] == [(1, 2, 7)]  # (z, y, x) of D×H×W
    assert case.clicks_order == [["fg"], ["bg"]] and case.prev_pred.shape == imgs.shape
    with pytest.raises(InputError, match="outside the image"):  # x = 30 is beyond W = 30: the order is (z, y, x)
        write_case25(tmp_path / "bad.npz", imgs, (1, 1, 1), boxes=[box],
                     clicks=[{"fg": [[3, 18, 30]], "bg": []}], clicks_order=[["fg"]])
        read_case(tmp_path / "bad.npz")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("key", ["boxes", "clicks", "clicks_order", "prev_pred", "imgs"])
def test_a_pickled_payload_that_would_run_code_is_refused_in_any_key(tmp_path, key):
    marker = tmp_path / "ran"
    arrays = dict(imgs=np.full((2, 8, 8), 7, np.uint8), spacing=np.ones(3),
                  boxes=np.array([dict(z_min=0, z_max=1, z_mid=0, z_mid_x_min=1, z_mid_y_min=1, z_mid_x_max=5,
                                       z_mid_y_max=5)], object),
                  clicks=np.array([{"fg": [], "bg": []}], object), clicks_order=np.array([[None]], object))
    payload = np.empty(1, object)
    payload[0] = [_RunsCode(marker)]
    arrays[key] = payload
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(InputError, match="refused"):
        load_npz(tmp_path / "evil.npz")
    with pytest.raises(InputError):
        read_case(tmp_path / "evil.npz")
    assert not marker.exists()  # nothing ran


@pytest.mark.parametrize("content", ["npy", "junk", "truncated"])
def test_a_non_zip_file_named_npz_is_an_input_error(tmp_path, content):
    """Issue 29 broken #6: a .npy named case.npz raised a raw TypeError in io/challenge._load."""
    path = tmp_path / "case.npz"
    if content == "npy":
        np.save(bytes_io.BytesIO(), np.zeros(3))
        with open(path, "wb") as f:
            np.save(f, np.zeros((4, 4, 3), np.uint8))
    elif content == "junk":
        path.write_bytes(b"not an archive at all")
    else:
        buffer = bytes_io.BytesIO()
        np.savez_compressed(buffer, imgs=np.zeros((4, 4, 3), np.uint8), boxes=np.zeros((1, 4)))
        path.write_bytes(buffer.getvalue()[:-30])
    with pytest.raises(InputError, match="npz|zip"):
        read_case(path)
    assert not zipfile.is_zipfile(path) or content == "truncated"


def test_every_case_is_checked_before_the_first_runs(tmp_path, model):
    """Issue 29 weak "Challenge:": a constant image after a good case was refused only after the good
    case and efficiency.csv were written; a 1×1×3 constant image passed the up-front check."""
    rng = np.random.default_rng(1)
    io.challenge.write_case(tmp_path / "in" / "a_good.npz" if (tmp_path / "in").mkdir() is None else None,
                            rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), [[4, 4, 20, 20]])
    io.challenge.write_case(tmp_path / "in" / "b_black.npz", np.zeros((32, 32, 3), np.uint8), [[4, 4, 20, 20]])
    with pytest.raises(InputError, match="b_black.npz: the image is constant"):
        ml.run_challenge(tmp_path / "in", tmp_path / "out", model=model, progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    (tmp_path / "in" / "b_black.npz").unlink()
    io.challenge.write_case(tmp_path / "in" / "c_tiny.npz", np.full((1, 1, 3), 9, np.uint8), [[0, 0, 0, 0]])
    with pytest.raises(InputError, match="c_tiny.npz: the image is constant"):
        ml.run_challenge(tmp_path / "in", tmp_path / "out", model=model, progress=False)
    assert not (tmp_path / "out" / "efficiency.csv").exists()


def test_harness_loop_box_and_two_click_steps_on_real_ct(tmp_path, model, ct25, embed_cache):
    """One real case through the CVPR25 protocol (box step + 2 simulated clicks per class): every step
    writes segs; each click's voxel is corrected in the next step's output; the click steps read
    the slice embeddings the box step left on disk (the decoder only) and equal fresh encodings."""
    imgs, gts = ct25
    path = write_case25(tmp_path / "CT_crop.npz", imgs, (3.0, 3.0, 3.0),
                        boxes=[harness_box(gts == 1), harness_box(gts == 2)], gts=gts)
    seen = []

    def command(inputs, outputs):
        ml.run_challenge(inputs, outputs, model=model, progress=False)
        seen.append(np.load(outputs / path.name)["segs"])

    result = loop.run_case(path, gts, tmp_path / "work", command, n_clicks=2)
    assert len(seen) == 3 and all(s.dtype == np.uint8 and s.shape == gts.shape for s in seen)
    assert result["dsc"][0] > 0.6  # the box step segments both organs
    for step, clicks in enumerate(result["clicks"][1:], start=1):
        for k, click in enumerate(clicks, start=1):
            if click is None:
                continue
            kind, (z, y, x) = click
            assert (seen[step][z, y, x] == k) == (kind == "fg"), (step, k, click)  # the clicked voxel is corrected
    assert len(list(embed_cache.glob("*/*.npy"))) == 3  # one per slice, written by the box step (or before)
    vp = ml.VolumePredictor(imgs, model=model, axis=0, disk_cache=embed_cache)
    stored = vp.embed(1).tensor
    assert vp.disk.hits == 1
    fresh = ml.VolumePredictor(imgs, model=model, axis=0).embed(1).tensor
    assert np.array_equal(stored.numpy(), fresh.numpy())


def test_refine_fg_click_beyond_the_mask_extends_it_and_bg_click_removes(model, ct25, embed_cache):
    """VolumePredictor.refine: a foreground click on a slice the mask does not reach segments the target
    there (the other slices stay as they were); a background click removes the clicked voxel's leak."""
    imgs, gts = ct25
    vp = ml.VolumePredictor(imgs, model=model, axis=0, disk_cache=True)
    liver = gts == 1
    mask = liver.copy()
    mask[2] = False  # the walk "stopped" before slice 2
    z, y, x = 2, *[int(v) for v in np.median(np.argwhere(liver[2]), 0)]
    assert liver[z, y, x]
    out = vp.refine(mask, [((z, y, x), True)])
    assert out[z, y, x] and ml.dice(out[2], liver[2]) > 0.7
    assert np.array_equal(out[0], mask[0])  # not reached by the click: unchanged
    leak = liver.copy()
    leak[1, :20, :20] = True  # a blob the truth does not hold
    out = vp.refine(leak, [((1, 10, 10), False)])
    assert not out[1, 10, 10] and out[1][liver[1]].mean() > 0.8
    with pytest.raises(InputError, match="outside the volume"):
        vp.refine(mask, [((3, 0, 0), True)])



@pytest.fixture(scope="module")
def brain3():
    """Three middle slices of the synthetic brain sub-08 (a domain the click decoder never saw), MR-normalized
    uint8, and their labels (1 white matter, 2 grey matter, 3 lateral ventricles)."""
    d = samples.brain_mri_dir()
    lab = io.read_volume(d / "sub-08_label.nii.gz").array
    z = np.nonzero(lab.any((1, 2)))[0]
    mid = (z.min() + z.max()) // 2
    img = io.read_volume(d / "sub-08.nii.gz").array[mid - 1:mid + 2]
    return ml.normalize_intensity(img, "MR"), lab[mid - 1:mid + 2].astype(np.uint8)


def test_a_click_does_not_change_voxels_outside_its_reach_on_the_unseen_brain(tmp_path, model, brain3, embed_cache):
    """Issue 32: on the unseen brain later clicks undid the first one's gain. (1) A click step with one
    foreground click for the ventricles (their rim missed on the middle slice) and none for the other
    classes: before, every class mask was repainted (smaller wins), so the ventricles' decoded growth
    overwrote a grey-matter voxel no click was about (in the bench, thousands); now the other classes
    keep every voxel.
    (2) A background click on grey matter that leaked over the whole brain: before, the decoder's
    removal took thousands of true grey-matter voxels with it; now the removal stays in the click's
    region (voxels around it that look like the clicked tissue) and removes no true grey matter."""
    from scipy import ndimage

    from medsam_lite.app.challenge import segment_case25

    imgs, gts = brain3
    prev = gts.copy()
    ventricles = gts == 3
    rim = ventricles[1] & ~ndimage.binary_erosion(ventricles[1], iterations=2)
    prev[1][rim] = 0  # the ventricles' rim missed on slice 1
    depth = ndimage.distance_transform_edt(rim)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    path = write_case25(tmp_path / "MR_brain.npz", imgs, (4.0, 1.0, 1.0),
                        boxes=[harness_box(gts == k) for k in (1, 2, 3)],
                        clicks=[{"fg": [], "bg": []}, {"fg": [], "bg": []}, {"fg": [[1, int(y), int(x)]], "bg": []}],
                        clicks_order=[[None], [None], ["fg"]], prev_pred=prev)
    segs = segment_case25(read_case(path), model)
    assert segs[1, y, x] == 3  # the click is answered
    for k in (1, 2):  # no click for them: each of their voxels keeps its label
        assert (segs[prev == k] == k).all(), k
    vp = ml.VolumePredictor(imgs, model=model, axis=0, disk_cache=True)
    gm = gts == 2
    leaked = gts > 0  # grey matter over the whole brain (what a box step gives it)
    depth = ndimage.distance_transform_edt(leaked[1] & ~gm[1])
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    out = vp.refine(leaked, [((1, int(y), int(x)), False)])
    assert not out[1, y, x]  # the clicked voxel is removed
    assert (out | ~gm).all()  # and no true grey matter with it (the removal stays in the click's region)


"""model/geometry.py and model/intensity.py: intensity presets and the mapping between original and
model pixels."""

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite.model.intensity import CT_WINDOWS, normalize_intensity, to_rgb_uint8
from medsam_lite.model.geometry import Geometry, check_boxes


def test_ct_window_default_is_the_papers():
    hu = np.array([[-2000, -500, 250, 1000, 3000]], dtype=np.int16)
    out = normalize_intensity(hu, modality="CT")
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 128, 255, 255]]  # 250 HU is the middle of [-500, 1000]


def test_ct_named_windows_and_pairs():
    hu = np.array([[-160.0, 40.0, 240.0]])
    assert normalize_intensity(hu, "CT", "soft_tissue").tolist() == [[0, 128, 255]]
    assert normalize_intensity(hu, "CT", (-160, 240)).tolist() == [[0, 128, 255]]
    assert CT_WINDOWS["medsam"] == (-500.0, 1000.0)
    with pytest.raises(ml.InputError, match="unknown CT window"):
        normalize_intensity(hu, "CT", "nope")


def test_mr_percentiles_over_the_volume_foreground(rng):
    vol = np.zeros((4, 32, 32), np.float32)
    vol[:, 8:24, 8:24] = rng.normal(500, 50, (4, 16, 16))
    vol[0, 10, 10] = 1e6  # one hot outlier is clipped away by the 99.5th percentile
    out = normalize_intensity(vol, "MR")
    fg = vol[vol > 0]
    lo, hi = np.percentile(fg, [0.5, 99.5])
    assert out[0, 10, 10] == 255 and out[0, 0, 0] == 0
    inside = out[vol > 0].astype(float)
    expected = np.rint((np.clip(fg, lo, hi) - lo) / (hi - lo) * 255)
    assert np.array_equal(inside, expected)
    # an empty slice of the volume is fine because percentiles come from the whole volume
    vol[1] = 0
    assert normalize_intensity(vol, "MR")[1].max() == 0


def test_constant_or_empty_images_are_refused():
    with pytest.raises(ml.InputError, match="no voxels > 0"):
        normalize_intensity(np.zeros((8, 8)), "MR")
    with pytest.raises(ml.InputError, match="constant"):
        normalize_intensity(np.full((8, 8), 7.0), "MR")
    with pytest.raises(ml.InputError, match="NaN"):
        normalize_intensity(np.array([[np.nan, 1.0]]), "MR")


@pytest.mark.parametrize("hw", [(200, 150), (150, 200), (512, 512), (37, 311)])
@pytest.mark.parametrize("recipe,size", [("pad", 256), ("stretch", 1024), ("sam", 1024)])
def test_box_round_trip(hw, recipe, size):
    g = Geometry(hw, size, recipe)
    box = np.array([[3.0, 5.0, hw[1] - 4.0, hw[0] - 2.0]], np.float32)
    there = g.box_to_model(box)
    assert (there >= 0).all() and (there[:, [0, 2]] <= g.resized_hw[1]).all() and (there[:, [1, 3]] <= g.resized_hw[0]).all()
    np.testing.assert_allclose(g.box_to_original(there), box, rtol=1e-5, atol=1e-3)


def test_pad_recipe_keeps_aspect_and_pads_bottom_right():
    g = Geometry((200, 100), 256, "pad")
    assert g.resized_hw == (256, 128)
    x = g.image_to_model(np.full((200, 100, 3), 200, np.uint8) + np.arange(100, dtype=np.uint8)[None, :, None])
    assert x.shape == (1, 3, 256, 256)
    assert float(x[..., 128:].abs().max()) == 0.0  # padding on the right
    assert 0.0 <= float(x.min()) and float(x.max()) == pytest.approx(1.0)


def test_mask_maps_onto_the_model_grid_and_back():
    g = Geometry((120, 80), 256, "pad")
    mask = np.zeros((120, 80), bool)
    mask[30:90, 20:60] = True
    model_mask = g.mask_to_model(mask)
    ys, xs = np.nonzero(model_mask)
    box = g.box_to_original(np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], np.float32))[0]
    np.testing.assert_allclose(box, ml.box_from_mask(mask), atol=1.5)


def test_rgb_conversion():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert to_rgb_uint8(gray).shape == (8, 8, 3)
    ct = np.linspace(-1000, 2000, 64).reshape(8, 8)
    assert to_rgb_uint8(ct, modality="CT")[..., 0].max() == 255
    with pytest.raises(ml.InputError, match="3D volume"):
        to_rgb_uint8(np.zeros((3, 8, 8)))
    with pytest.raises(ml.InputError, match="uint8"):
        to_rgb_uint8(np.zeros((8, 8, 3), np.float32))


@pytest.mark.parametrize("bad,match", [
    ([10, 10, 5, 20], "inverted"),
    ([10, 10, 10, 20], "zero area"),
    ([np.nan, 0, 5, 5], "NaN"),
    ([1, 2, 3], "N×4"),
    ([500, 500, 600, 600], "outside"),
])
def test_bad_boxes(bad, match):
    with pytest.raises(ml.InputError, match=match):
        check_boxes(bad, (64, 64))


def test_xywh_conversions():
    np.testing.assert_array_equal(ml.xywh_to_xyxy([10, 20, 30, 40]), [10, 20, 40, 60])
    np.testing.assert_array_equal(ml.xyxy_to_xywh([10, 20, 40, 60]), [10, 20, 30, 40])

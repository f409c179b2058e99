"""Property-based tests (hypothesis): coordinate mapping, intensity presets and metrics hold for any input.

Runs are derandomized (the same examples every time, no example database written to the checkout)
so CI is reproducible; widen ``max_examples`` locally to search harder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.model.intensity import CT_WINDOWS
from medsam_lite.model.geometry import RECIPES, Geometry, check_boxes

SETTINGS = settings(max_examples=100, deadline=None, database=None, derandomize=True)
FEW = settings(max_examples=40, deadline=None, database=None, derandomize=True)

sides = st.integers(min_value=2, max_value=3000)
recipes = st.sampled_from(RECIPES)
model_sizes = st.sampled_from([256, 1024])


@st.composite
def image_and_box(draw, max_side=3000):
    """``(H, W, box)``: an image size and an XYXY box with positive area inside it."""
    h, w = draw(st.integers(2, max_side)), draw(st.integers(2, max_side))
    x0 = draw(st.floats(0, w - 1, allow_nan=False))
    x1 = draw(st.floats(0, w - 1, allow_nan=False))
    y0 = draw(st.floats(0, h - 1, allow_nan=False))
    y1 = draw(st.floats(0, h - 1, allow_nan=False))
    assume(abs(x1 - x0) >= 1e-3 and abs(y1 - y0) >= 1e-3)
    return h, w, np.array([[min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]], np.float32)


# ------------------------------------------------------------------------------------ boxes
@SETTINGS
@given(image_and_box(), recipes, model_sizes)
def test_box_mapping_round_trips_and_stays_inside_the_model_input(hwb, recipe, size):
    h, w, box = hwb
    g = Geometry((h, w), size, recipe)
    there = g.box_to_model(box)
    rh, rw = g.resized_hw
    assert there.dtype == np.float32 and there.shape == (1, 4)
    assert (there >= 0).all()
    # the box lands on the image content (up to the half pixel of resized_hw's rounding), never on padding
    assert (there[:, [0, 2]] <= rw + 0.5).all() and (there[:, [1, 3]] <= rh + 0.5).all()
    assert rw <= size and rh <= size
    assert there[0, 2] > there[0, 0] and there[0, 3] > there[0, 1]  # still XYXY, still positive area
    back = g.box_to_original(there)
    np.testing.assert_allclose(back, box, rtol=0, atol=2e-6 * max(h, w) + 1e-4)


@SETTINGS
@given(st.integers(2, 600), st.integers(2, 600), st.lists(st.floats(-2000, 2000, allow_nan=False), min_size=4,
                                                          max_size=4))
def test_accepted_boxes_are_clipped_into_the_image(h, w, coords):
    x0, y0, x1, y1 = coords
    box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
    clipped = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
    # a box is accepted when it keeps a positive area inside the image (one lying on the border, with
    # zero area once clipped, is refused: issue 15 — it used to be segmented anyway)
    overlaps = box[2] > box[0] and box[3] > box[1] and box[2] >= 0 and box[3] >= 0 and box[0] <= w - 1 \
        and box[1] <= h - 1 and clipped[2] > clipped[0] and clipped[3] > clipped[1]
    if not overlaps:
        with pytest.raises(ml.InputError):
            check_boxes(box, (h, w))
        return
    out = check_boxes(box, (h, w))[0]
    assert 0 <= out[0] <= out[2] <= w - 1 and 0 <= out[1] <= out[3] <= h - 1
    expected = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])  # the box's part inside the image
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-3)


@SETTINGS
@given(hnp.arrays(bool, st.tuples(st.integers(2, 40), st.integers(2, 40))))
def test_box_from_mask_is_the_tightest_box(mask):
    assume(mask.any())
    x0, y0, x1, y1 = (int(v) for v in ml.box_from_mask(mask))
    ys, xs = np.nonzero(mask)
    assert (xs >= x0).all() and (xs <= x1).all() and (ys >= y0).all() and (ys <= y1).all()
    assert mask[:, x0].any() and mask[:, x1].any() and mask[y0].any() and mask[y1].any()
    assert np.array_equal(ml.box_from_mask(mask.astype(np.uint8)), ml.box_from_mask(mask))  # 0/1 works too


@SETTINGS
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=2),
       st.lists(st.floats(0, 1e4, allow_nan=False), min_size=2, max_size=2))
def test_xywh_and_xyxy_convert_both_ways(xy, wh):
    xywh = np.array(xy + wh, np.float32)
    xyxy = ml.xywh_to_xyxy(xywh)
    assert xyxy[2] >= xyxy[0] and xyxy[3] >= xyxy[1]
    np.testing.assert_allclose(ml.xyxy_to_xywh(xyxy), xywh, rtol=1e-6, atol=2e-3)


# ------------------------------------------------------------------------------------ images
@st.composite
def small_images(draw):
    h, w = draw(st.integers(2, 300)), draw(st.integers(2, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[0, 0] = 0
    image[-1, -1] = 255  # never constant
    return image


@FEW
@given(small_images(), recipes, st.sampled_from([64, 256]))
def test_image_mapping_fills_the_content_area_and_pads_with_zeros(image, recipe, size):
    g = Geometry(image.shape[:2], size, recipe)
    x = g.image_to_model(image)
    rh, rw = g.resized_hw
    assert x.shape == (1, 3, size, size) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    padding = torch.ones(size, size, dtype=torch.bool)
    padding[:rh, :rw] = False
    assert int((x[0, :, padding] != 0).sum()) == 0  # bottom/right padding is exactly zero
    content = x[..., :rh, :rw]
    if recipe in ("pad", "stretch"):  # min-max to [0, 1] over the content
        assert float(content.min()) == pytest.approx(0.0, abs=1e-6)
        assert float(content.max()) == pytest.approx(1.0, abs=1e-6)
    if recipe == "stretch":
        assert (rh, rw) == (size, size)
    else:  # aspect ratio kept within the rounding of one pixel
        h, w = image.shape[:2]
        assert max(rh, rw) == size
        assert abs(rh / rw - h / w) <= (h / w) * (1 / min(rh, rw) + 1 / max(rh, rw)) + 1e-9


@FEW
@given(st.integers(8, 400), st.integers(8, 400), recipes, st.sampled_from([64, 256]), st.data())
def test_mask_round_trip_through_the_model_grid(h, w, recipe, size, data):
    """A rectangle mapped to the model grid and its logits mapped back covers the same pixels."""
    g = Geometry((h, w), size, recipe)
    sx, sy = g.scale_xy
    # sides of at least 4 model pixels (and 4 original pixels), so the rectangle survives resizing
    mw, mh = int(np.ceil(max(4, 4 / sx))), int(np.ceil(max(4, 4 / sy)))
    assume(mw < w and mh < h)
    x0 = data.draw(st.integers(0, w - mw))
    y0 = data.draw(st.integers(0, h - mh))
    x1 = data.draw(st.integers(x0 + mw - 1, w - 1))
    y1 = data.draw(st.integers(y0 + mh - 1, h - 1))
    mask = np.zeros((h, w), bool)
    mask[y0:y1 + 1, x0:x1 + 1] = True
    on_grid = g.mask_to_model(mask)
    assert on_grid.shape == (size, size)
    rh, rw = g.resized_hw
    assert not on_grid[rh:].any() and not on_grid[:, rw:].any()
    logits = torch.from_numpy(np.where(on_grid, 10.0, -10.0).astype(np.float32))[None, None]
    back = g.logits_to_original(logits)[0].numpy() > 0
    assert back.shape == (h, w)
    tol = 1.5 / min(sx, sy) + 1  # one model pixel, in original pixels, plus rounding
    bx = ml.box_from_mask(back)
    np.testing.assert_allclose(bx, [x0, y0, x1, y1], atol=tol)
    assert ml.dice(back, mask) >= 0.6


# ------------------------------------------------------------------------------------ intensities
@SETTINGS
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(2, 20)),
                  elements=st.floats(-3000, 3000, width=32)), st.sampled_from(sorted(CT_WINDOWS)))
def test_ct_normalization_is_monotone_and_clipped(hu, window):
    out = ml.normalize_intensity(hu, modality="CT", window=window)
    low, high = CT_WINDOWS[window]
    assert out.dtype == np.uint8 and out.shape == hu.shape
    order = np.argsort(hu, axis=None, kind="stable")
    assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()  # a brighter voxel never gets darker
    assert (out[hu <= low] == 0).all() and (out[hu >= high] == 255).all()


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.uint8, np.int16, np.float32, np.float64]))
def test_mr_normalization_of_a_real_slice_in_any_dtype(seed, dtype):
    """The sample slice scaled and shifted arbitrarily (in any dtype) normalizes to the same image
    up to rounding: the MR preset depends only on the percentiles of the foreground."""
    image = ml.io.read_volume(samples.sample_path("brain_slice.png")).array.astype(np.float64)
    rng = np.random.default_rng(seed)
    gain = rng.uniform(0.5, 50) if dtype is not np.uint8 else 1.0
    scaled = (image * gain).astype(dtype)
    out = ml.normalize_intensity(scaled, modality="MR")
    ref = ml.normalize_intensity(image, modality="MR")
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 2
    assert (out[image == 0] == 0).all()


# ------------------------------------------------------------------------------------ metrics
masks2d = hnp.arrays(bool, st.tuples(st.integers(1, 24), st.integers(1, 24)))


@st.composite
def mask_pairs(draw, ndim=2):
    shape = draw(st.tuples(*[st.integers(2, 16 if ndim == 3 else 24)] * ndim))
    return draw(hnp.arrays(bool, shape)), draw(hnp.arrays(bool, shape))


@SETTINGS
@given(mask_pairs())
def test_dice_is_symmetric_bounded_and_matches_its_formula(pair):
    a, b = pair
    d = ml.dice(a, b)
    assert 0.0 <= d <= 1.0
    assert d == ml.dice(b, a)
    assert ml.dice(a, a) == 1.0
    if a.any() or b.any():
        assert d == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    if a.any():
        assert ml.dice(a, ~a) == 0.0
    assert ml.dice(a.astype(np.uint8), b.astype(np.float32)) == d  # 0/1 masks in any real dtype


@SETTINGS
@given(st.one_of(mask_pairs(2), mask_pairs(3)), st.floats(0.1, 5.0), st.floats(0.0, 3.0), st.data())
def test_nsd_of_a_mask_with_itself_is_one_and_nsd_is_symmetric(pair, s, tol, data):
    a, b = pair
    spacing = tuple(data.draw(st.floats(0.1, 5.0)) for _ in range(a.ndim))
    assert ml.nsd(a, a, spacing=spacing, tolerance_mm=tol) == 1.0
    n = ml.nsd(a, b, spacing=spacing, tolerance_mm=tol)
    assert 0.0 <= n <= 1.0
    assert n == pytest.approx(ml.nsd(b, a, spacing=spacing, tolerance_mm=tol), abs=1e-12)
    if a.any() != b.any():
        assert n == 0.0


def test_nsd_with_itself_on_real_label_maps():
    """The same property on the real sample labels (3D, anisotropic 1×1×4 mm)."""
    lab = io.read_volume(samples.brain_mri_dir() / "sub-03_label.nii.gz")
    for k in (1, 2, 3):
        m = lab.array == k
        assert ml.nsd(m, m, spacing=lab.spacing_zyx, tolerance_mm=1.0) == 1.0
        assert ml.dice(m, m) == 1.0

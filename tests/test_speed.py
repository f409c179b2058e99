"""Issue 22: speed without changing results — masks mapped back only where they can be (bitwise equal
to the published full-size path), the per-part backend choice and its cache, the int8 guard."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.model.fullsize import masks_at
from medsam_lite.model.geometry import Geometry
from medsam_lite.model.intensity import to_rgb_uint8
from medsam_lite.model.inference import decode, decode_logits, encode


@pytest.fixture(scope="module")
def ct():
    """Real CT slices (int16 HU, 101×122) of ``ct_abdomen`` case-02 and their label maps."""
    d = samples.ct_abdomen_dir()
    return io.read_volume(d / "case-02.nii.gz").array, io.read_volume(d / "case-02_label.nii.gz").array


def _boxes(label: np.ndarray) -> np.ndarray:
    """A tight box per organ, plus boxes at every border and the whole image (XYXY, original pixels)."""
    h, w = label.shape
    organs = [ml.box_from_mask(label == v) for v in np.unique(label) if v > 0 and (label == v).sum() > 30]
    border = [[0, 0, w - 1, h - 1], [0, 0, w / 3, h / 3], [w * 0.6, h * 0.55, w - 1, h - 1],
              [0, h * 0.4, w * 0.3, h - 1], [w * 0.7, 0, w - 1, h * 0.25]]
    return np.array(organs + border, np.float32)


def _resized(image, label, hw):
    if hw is None:
        return image.astype(np.float32), label
    return (cv2.resize(image.astype(np.float32), hw[::-1], interpolation=cv2.INTER_LINEAR),
            cv2.resize(label.astype(np.uint8), hw[::-1], interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("hw", [None, (512, 512), (333, 517), (600, 241)])
def test_masks_at_equals_full_size_path_bitwise(model, ct, hw):
    """Real CT slices at their own size (101×122, a downsizing way back), 512², and non-square sizes."""
    image, label = _resized(ct[0][6], ct[1][6], hw)
    emb = encode(model, image, ml.IntensityPreset.resolve("CT"))
    boxes = _boxes(label)
    with torch.no_grad():
        low, _ = decode_logits(model, emb.tensor, torch.from_numpy(emb.geometry.box_prompt(boxes)))
    ref = emb.geometry.logits_to_original(low).numpy() > 0
    assert sum(m.sum() > 100 for m in ref) >= 5  # real masks, not empty ones
    fast = masks_at(emb.geometry, low, emb.geometry.original_hw)
    assert fast.dtype == bool and fast.shape == ref.shape
    assert np.array_equal(fast, ref)


def test_decode_and_predict_masks_unchanged(model, ct):
    image, label = _resized(ct[0][3], ct[1][3], (512, 512))
    predictor = ml.Predictor(model)
    predictor.set_image(image, modality="CT")
    boxes = _boxes(label)
    masks, scores = predictor.predict(boxes)
    full_masks, full_scores, logits = predictor.predict(boxes, return_logits=True)
    assert np.array_equal(masks, full_masks) and np.array_equal(masks, logits > 0)
    assert np.array_equal(scores, full_scores)
    m, s, none = decode(model, predictor.embedding, boxes, logits=False)
    assert none is None and np.array_equal(m, masks)


def test_stored_slice_space_and_other_recipes(model, ct):
    """``space="image"`` (a stored 256-px slice), MedSAM's one-stage ``stretch`` and SAM's two-stage
    1024 path: the same equality on the real decoder's logits."""
    image, label = ct[0][5].astype(np.float32), ct[1][5]
    emb = encode(model, image, ml.IntensityPreset.resolve("CT"))
    boxes = _boxes(label)
    with torch.no_grad():
        low, _ = decode_logits(model, emb.tensor, torch.from_numpy(emb.geometry.box_prompt(boxes)))
    for geometry, hw in [(Geometry((480, 391), 256, "pad", stored_hw=(256, 208)), (256, 208)),
                         (Geometry((480, 391), 1024, "stretch"), (480, 391)),
                         (Geometry((300, 700), 1024, "sam"), (300, 700))]:
        ref = geometry.logits_to(low, hw).numpy() > 0
        assert ref.any()
        assert np.array_equal(masks_at(geometry, low, hw), ref)


def test_logits_near_zero_take_the_full_path(monkeypatch):
    """A pixel whose sign float32 rounding could decide is computed by torch's own path: logits that
    cancel exactly (-1 and 3 under the 3/4 and 1/4 weights of a 2× resize) and tiny values still give
    the published masks bit for bit, and the full path was taken for that mask only."""
    from medsam_lite.model import fullsize

    calls = []
    full = fullsize._full
    monkeypatch.setattr(fullsize, "_full", lambda low, *a: calls.append(low.shape[0]) or full(low, *a))
    yy, xx = np.mgrid[0:256, 0:256]
    disk = (40.0 - np.hypot(yy - 120.0, xx - 90.0)).astype(np.float32)
    cancel = disk.copy()
    cancel[100:140, 150] = -1.0  # output column 2·150+1 draws 3/4 on column 150 and 1/4 on 151
    cancel[100:140, 151] = 3.0
    tiny = disk.copy()
    tiny[np.abs(tiny) < 1] = np.float32(1e-30)
    low = torch.from_numpy(np.stack([disk, cancel, tiny, np.full_like(disk, -3.0)]))[:, None]
    geometry = Geometry((512, 512), 256)
    masks_at(geometry, low[:1], (512, 512))  # builds and checks the plan for this size once
    calls.clear()
    ref = geometry.logits_to(low, (512, 512)).numpy() > 0
    fast = masks_at(geometry, low, (512, 512))
    assert ref[0].sum() > 10_000 and ref[1, 210:270, 302].all() and not ref[1, 210:270, 301].any() and not ref[3].any()
    assert np.array_equal(fast, ref)
    assert calls == [1]  # only the cancelling mask fell back to the full-size resize


# ---------------------------------------------------------------------------------------------
# auto per part: the choice logic with injected timings (no test depends on real timing)
# ---------------------------------------------------------------------------------------------
from medsam_lite.errors import InputError  # noqa: E402
from medsam_lite.model import backend_choice as bc  # noqa: E402

TIMINGS = {"onnxruntime": {"encoder": 0.386, "decoder": 0.0208},
           "openvino": {"encoder": 0.286, "decoder": 0.0296},
           "torch": {"encoder": 1.368, "decoder": 0.0462}}


def test_pick_takes_the_fastest_backend_per_part():
    choice = bc.pick(TIMINGS)
    assert (choice["encoder"], choice["decoder"]) == ("openvino", "onnxruntime")
    assert choice["reason"].startswith("encoder: openvino 286 ms, onnxruntime 386 ms, torch 1368 ms; decoder: onnxruntime")
    tie = bc.pick({"torch": {"encoder": 1.0, "decoder": 0.02}, "openvino": {"encoder": 1.0, "decoder": 0.02},
                   "onnxruntime": {"encoder": 1.0, "decoder": 0.03}})
    assert (tie["encoder"], tie["decoder"]) == ("onnxruntime", "openvino")  # ties go to the documented order
    only = bc.pick({"torch": {"encoder": 2.0, "decoder": 0.05}})
    assert (only["encoder"], only["decoder"]) == ("torch", "torch")


def test_choice_is_measured_once_per_machine_key_and_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(bc, "available_backends", lambda: ["onnxruntime", "openvino", "torch"])
    calls = []

    def measure():
        calls.append(1)
        return TIMINGS

    key = bc.machine_key(1, "lite")
    first = bc.choose(tmp_path, key, measure)
    assert (first["name"], first["cached"]) == ("openvino+onnxruntime", False) and calls == [1]
    assert "openvino+onnxruntime" in first["report"] and "measured now" in first["report"]
    again = bc.choose(tmp_path, key, measure)
    assert again["cached"] and again["name"] == first["name"] and calls == [1]
    assert "cached measurement" in again["report"]
    # another thread count is another machine key: measured again, both entries kept
    two = bc.choose(tmp_path, bc.machine_key(2, "lite"), lambda: {"onnxruntime": {"encoder": 1, "decoder": 1}})
    assert two["name"] == "onnxruntime" and not two["cached"]
    assert bc.choose(tmp_path, key, measure)["cached"] and calls == [1]
    # a corrupt cache file is measured again, never trusted
    (tmp_path / "exports" / bc.CHOICE_FILE).write_text("{not json", encoding="utf-8")
    assert not bc.choose(tmp_path, key, measure)["cached"] and calls == [1, 1]
    # a cached backend that is no longer installed is measured again
    monkeypatch.setattr(bc, "available_backends", lambda: ["onnxruntime", "torch"])
    assert bc.read_choice(tmp_path, key) is None


def test_time_parts_interleaves_and_drops_slow_parts():
    order, clock = [], iter(range(1000))

    def fn(name, part, cost):
        def call():
            order.append((name, part))
            for _ in range(cost - 1):
                next(clock)
        return call

    ticks = lambda: next(clock)  # noqa: E731 - one tick per clock read, plus `cost - 1` inside a call
    calls = {"a": {"encoder": fn("a", "encoder", 2), "decoder": fn("a", "decoder", 5)},
             "b": {"encoder": fn("b", "encoder", 9), "decoder": fn("b", "decoder", 2)}}
    out = bc.time_parts(calls, rounds=3, slack=2.0, clock=ticks)
    assert out["a"]["encoder"] < out["b"]["encoder"] and out["b"]["decoder"] < out["a"]["decoder"]
    timed = order[4:]  # after the warm-up calls
    assert timed[:4] == [("a", "encoder"), ("b", "encoder"), ("a", "decoder"), ("b", "decoder")]
    assert timed.count(("b", "encoder")) == 1 and timed.count(("a", "encoder")) == 3  # b: > 2× slower


def test_pairs_are_names_and_errors_name_the_fix():
    assert bc.split_backend("openvino+onnxruntime") == ("openvino", "onnxruntime")
    assert bc.split_backend("torch") == ("torch", "torch")
    assert bc.resolve_backend("torch+torch", "cpu") == "torch+torch"
    with pytest.raises(InputError, match="encoder\\+decoder"):
        bc.resolve_backend("openvino+tensorrt", "cpu")
    with pytest.raises(InputError, match="encoder\\+decoder"):
        bc.resolve_backend("torch+torch+torch", "cpu")


def test_auto_uses_the_cached_pair_and_gives_torch_masks(model, tmp_path, monkeypatch):
    """A cached choice is used without measuring: each part runs in its own backend."""
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    from medsam_lite.model import backends

    enc, pe, md = model.image_encoder, model.prompt_encoder, model.mask_decoder
    arch = f"{sum(p.numel() for p in enc.parameters())}-{sum(p.numel() for p in md.parameters())}-256"
    key = bc.machine_key(1, arch)
    bc.write_choice(tmp_path, key, {**bc.pick(TIMINGS), "measured": "test"})
    monkeypatch.setattr(bc, "time_parts", lambda *a, **k: pytest.fail("measured despite a cached choice"))
    rt = backends.build_runtime(enc, pe, md, backend="auto", threads=1, cache_dir=tmp_path, progress=False)
    assert (rt.name, rt.encoder_backend, rt.decoder_backend) == ("openvino+onnxruntime", "openvino", "onnxruntime")
    assert "cached measurement of test" in rt.report
    assert rt._encoder.backend == "openvino" and rt._decoder.backend == "onnxruntime"
    image = io.read_volume(samples.sample_path("brain_slice.png")).array
    geometry = model.geometry(image.shape)
    x = geometry.image_to_model(to_rgb_uint8(image))
    box = torch.tensor([[60.0, 50.0, 200.0, 210.0]])
    ours = rt.encode(x)
    with torch.no_grad():
        ref = model.image_encoder(x)
        ref_logits, _ = model.decode(ref, box)
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4
    logits, _ = rt.decode(ours, box)
    assert np.array_equal(geometry.logits_to_original(logits).numpy() > 0,
                          geometry.logits_to_original(ref_logits).numpy() > 0)
    # an explicit pair is the same runtime, without any cache entry
    forced = backends.build_runtime(enc, pe, md, backend="openvino+onnxruntime", threads=1, cache_dir=tmp_path,
                                    progress=False)
    assert (forced.encoder_backend, forced.decoder_backend) == ("openvino", "onnxruntime")


def test_a_plan_that_disagrees_with_torch_is_not_used(monkeypatch):
    """The one-off check per size: weights that are not torch's (here: shifted by one pixel) are
    refused, and the masks still come from the published path."""
    from medsam_lite.model import fullsize

    probe = fullsize._probe
    monkeypatch.setattr(fullsize, "_probe", lambda n_in, n_out, axis: np.roll(probe(n_in, n_out, axis), 1, axis=1))
    fullsize._taps.cache_clear()
    fullsize._checked_plan.cache_clear()
    try:
        geometry = Geometry((300, 451), 256)
        yy, xx = np.mgrid[0:256, 0:256]
        low = torch.from_numpy((30.0 - np.hypot(yy - 100.0, xx - 140.0)).astype(np.float32))[None, None]
        assert fullsize._plan(geometry, (256, 256), (300, 451)) is None
        ref = geometry.logits_to_original(low).numpy() > 0
        assert ref.sum() > 1000 and np.array_equal(masks_at(geometry, low, (300, 451)), ref)
    finally:
        fullsize._taps.cache_clear()
        fullsize._checked_plan.cache_clear()

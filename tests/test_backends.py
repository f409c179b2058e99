"""The compiled CPU backends give torch's numbers on the real LiteMedSAM and the bundled slice."""

from __future__ import annotations

import copy
import errno
import json
import os
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import medsam_lite as ml
from medsam_lite import io
from medsam_lite import samples
from medsam_lite.errors import InputError
from medsam_lite.model import backends
from medsam_lite.model.geometry import box_from_mask
from medsam_lite.model.intensity import to_rgb_uint8

COMPILED = ["onnxruntime", "openvino"]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def sample(model, brain_slice):
    """Model input of the bundled slice, torch's embedding and the label's boxes (model pixels)."""
    image, label = brain_slice
    rgb = to_rgb_uint8(image)
    geometry = model.geometry(rgb.shape[:2])
    x = geometry.image_to_model(rgb)
    boxes = np.stack([box_from_mask(label == v) for v in np.unique(label) if v > 0])
    model_boxes = torch.from_numpy(geometry.box_to_model(boxes))
    assert len(model_boxes) >= 3
    return {"x": x, "embedding": model.encode(x).cpu(), "boxes": model_boxes, "geometry": geometry}


@pytest.fixture(scope="module")
def torch_decoded(model, sample):
    n = len(sample["boxes"])
    with torch.no_grad():
        logits, iou = model.decode(sample["embedding"].expand(n, -1, -1, -1), sample["boxes"])
    return logits.cpu(), iou.cpu()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("export_cache")


@pytest.fixture(scope="module", params=COMPILED)
def runtime(request, model, cache):
    pytest.importorskip(request.param)
    return backends.build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                                  backend=request.param, threads=1, cache_dir=cache, progress=False)


def _masks(geometry, logits):
    return geometry.logits_to_original(logits).numpy() > 0


def test_fp32_embedding_equals_torch(runtime, sample):
    emb = runtime.encode(sample["x"])
    assert emb.dtype == torch.float32 and emb.shape == sample["embedding"].shape
    assert _rel(emb, sample["embedding"]) < 1e-4


def test_decoder_export_masks_equal_torch(runtime, sample, torch_decoded):
    logits, iou = runtime.decode(sample["embedding"], sample["boxes"])
    ref_logits, ref_iou = torch_decoded
    assert logits.shape == ref_logits.shape and iou.shape == ref_iou.shape == (len(sample["boxes"]), 1)
    ours, ref = _masks(sample["geometry"], logits), _masks(sample["geometry"], ref_logits)
    for k in range(len(ref)):
        assert ref[k].sum() > 50  # a real target, not an empty mask
        assert _dice(ours[k], ref[k]) >= 0.999
    assert torch.allclose(iou, ref_iou, atol=1e-4)


def test_backend_embedding_gives_the_same_masks(runtime, sample, torch_decoded):
    """The whole compiled path (its own embedding, its own decoder) against torch end to end."""
    logits, _ = runtime.decode(runtime.encode(sample["x"]), sample["boxes"])
    ours, ref = _masks(sample["geometry"], logits), _masks(sample["geometry"], torch_decoded[0])
    assert min(_dice(a, b) for a, b in zip(ours, ref)) >= 0.999


def test_several_boxes_in_one_call_equal_per_box_calls(runtime, sample):
    logits, iou = runtime.decode(sample["embedding"], sample["boxes"])
    for k, box in enumerate(sample["boxes"]):
        one_logits, one_iou = runtime.decode(sample["embedding"], box[None])
        assert one_logits.shape == (1, 1, 256, 256)
        assert torch.allclose(one_logits[0], logits[k], atol=1e-3)
        assert torch.allclose(one_iou[0], iou[k], atol=1e-5)


def test_batch_of_images_is_encoded_image_by_image(runtime, sample):
    x2 = torch.cat([sample["x"], sample["x"].flip(-1)])
    emb = runtime.encode(x2)
    assert emb.shape == (2, 256, 64, 64)
    assert torch.equal(emb[0], runtime.encode(sample["x"])[0])
    assert _rel(emb[1], emb[0]) > 0.05  # the flipped image has its own embedding


def test_threads_and_fp32_precision_reach_the_backend(runtime):
    session = runtime._encoder
    if runtime.name == "openvino":
        compiled = session._compiled
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    else:
        options = session._ort.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


def test_sam_mask_decoder_export_equals_eager(model, sample, tmp_path):
    """segment_anything's MaskDecoder repeats one embedding per box itself; the export must agree.

    LiteMedSAM's decoder weights load strictly into SAM ViT-B's prompt encoder + mask decoder (input
    1024, so boxes ×4 land on the same normalized coordinates).
    """
    pytest.importorskip("onnxruntime")
    from segment_anything import sam_model_registry

    sam = sam_model_registry["vit_b"](checkpoint=None)
    sam.prompt_encoder.load_state_dict(model.prompt_encoder.state_dict(), strict=True)
    sam.mask_decoder.load_state_dict(model.mask_decoder.state_dict(), strict=True)
    sam.eval()
    rt = backends.build_runtime(None, sam.prompt_encoder, sam.mask_decoder, backend="onnxruntime",
                                threads=1, cache_dir=tmp_path, progress=False)
    boxes = sample["boxes"] * 4
    logits, iou = rt.decode(sample["embedding"], boxes)
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes[:, None, :], masks=None)
        ref_logits, ref_iou = sam.mask_decoder(image_embeddings=sample["embedding"],
                                               image_pe=sam.prompt_encoder.get_dense_pe(),
                                               sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                               multimask_output=False)
    assert logits.shape == ref_logits.shape == (len(boxes), 1, 256, 256)
    assert float((logits - ref_logits).abs().max()) < 1e-3
    assert torch.allclose(iou, ref_iou, atol=1e-4)
    with pytest.raises(InputError, match="without an image encoder"):
        rt.encode(sample["x"])


def test_fine_tuned_decoder_gets_its_own_export(runtime, model, sample, torch_decoded):
    tuned_decoder = copy.deepcopy(model.mask_decoder)
    with torch.no_grad():
        tuned_decoder.output_hypernetworks_mlps[0].layers[-1].bias.add_(0.05)
    tuned = runtime.with_decoder(model.prompt_encoder, tuned_decoder)
    assert tuned.decoder_path != runtime.decoder_path and tuned.encoder_path == runtime.encoder_path
    assert tuned._encoder is runtime._encoder  # the encoder is not exported or compiled again
    n = len(sample["boxes"])
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=None, boxes=sample["boxes"][:, None, :], masks=None)
        ref, _ = tuned_decoder(image_embeddings=sample["embedding"].expand(n, -1, -1, -1),
                               image_pe=model.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
                               dense_prompt_embeddings=dense, multimask_output=False)
    logits, _ = tuned.decode(sample["embedding"], sample["boxes"])
    assert float((logits - ref).abs().max()) < 1e-3
    assert float((logits - torch_decoded[0]).abs().max()) > 0.01  # really the tuned weights


def test_corrupt_or_stale_export_is_detected_and_rebuilt(model, sample, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("MEDSAM_LITE_CACHE", str(tmp_path))
    parts = (model.image_encoder, model.prompt_encoder, model.mask_decoder)
    first = backends.build_runtime(*parts, backend="onnxruntime", threads=1)
    assert first.encoder_path.parent.parent == tmp_path / "exports"
    assert "exporting the encoder" in capsys.readouterr().err
    emb = first.encode(sample["x"])
    logits, _ = first.decode(sample["embedding"], sample["boxes"])

    again = backends.build_runtime(*parts, backend="onnxruntime", threads=1)  # sound cache: reused
    assert capsys.readouterr().err == ""
    assert again.encoder_path == first.encoder_path

    enc_file, dec_meta = first.encoder_path, first.decoder_path.parent / "meta.json"
    enc_file.write_bytes(enc_file.read_bytes()[: enc_file.stat().st_size // 2])  # truncated
    meta = json.loads(dec_meta.read_text())
    meta["medsam_lite"] = "0.0.0-old"
    dec_meta.write_text(json.dumps(meta))  # another package version wrote it
    rebuilt = backends.build_runtime(*parts, backend="onnxruntime", threads=1)
    err = capsys.readouterr().err
    assert "encoder export" in err and "corrupt" in err and "stale" in err
    assert torch.equal(rebuilt.encode(sample["x"]), emb)
    assert torch.equal(rebuilt.decode(sample["embedding"], sample["boxes"])[0], logits)
    recorded = json.loads((enc_file.parent / "meta.json").read_text())["files"]["encoder.onnx"]
    assert recorded == backends.file_sha256(enc_file)

    dec_meta.write_text("{not json")
    backends.build_runtime(*parts, backend="onnxruntime", threads=1)
    assert "unreadable" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "exports").iterdir() if p.name.startswith(".tmp")]


def test_without_backend_packages_auto_falls_back_to_torch(model, sample, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert backends.available_backends() == ["torch"]
    assert backends.resolve_backend("auto", "cpu") == "torch"
    for name in COMPILED:
        with pytest.raises(InputError, match="pip install"):
            backends.resolve_backend(name, "cpu")
    rt = backends.build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                                backend="auto", threads=1)
    assert rt.name == "torch" and rt.encoder_path is None
    logits, iou = rt.decode(sample["embedding"], sample["boxes"])
    n = len(sample["boxes"])
    with torch.no_grad():
        ref_logits, ref_iou = model.decode(sample["embedding"].expand(n, -1, -1, -1), sample["boxes"])
    assert torch.equal(logits, ref_logits.cpu()) and torch.equal(iou, ref_iou.cpu())


def test_auto_order_and_gpu_devices():
    installed = backends.available_backends()
    assert installed[-1] == "torch" and set(installed) <= set(backends.BACKENDS)
    assert backends.resolve_backend("auto", "cpu") == installed[0]
    assert backends.resolve_backend("auto", torch.device("cuda")) == "torch"
    assert backends.resolve_backend("auto", "mps") == "torch"
    with pytest.raises(InputError, match="runs on the CPU"):
        backends.resolve_backend("onnxruntime", "cuda")
    with pytest.raises(InputError, match="unknown backend"):
        backends.resolve_backend("tensorrt", "cpu")


def test_bad_arguments_are_refused_before_anything_is_written(model, sample, tmp_path):
    parts = (model.image_encoder, model.prompt_encoder, model.mask_decoder)
    with pytest.raises(InputError, match="backend='openvino'"):
        backends.build_runtime(*parts, backend="onnxruntime", precision="bf16", cache_dir=tmp_path)
    with pytest.raises(InputError, match="backend='openvino'"):
        backends.build_runtime(*parts, backend="torch", precision="bf16", cache_dir=tmp_path)
    with pytest.raises(InputError, match="unknown precision"):
        backends.build_runtime(*parts, backend="torch", precision="fp16", cache_dir=tmp_path)
    with pytest.raises(InputError, match="threads"):
        backends.build_runtime(*parts, backend="torch", threads=0, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    rt = backends.build_runtime(*parts, backend="torch")
    with pytest.raises(InputError, match="ONE image"):
        rt.decode(sample["embedding"].expand(2, -1, -1, -1), sample["boxes"][:2])
    with pytest.raises(InputError, match="N×4"):
        rt.decode(sample["embedding"], torch.zeros(2, 3))


def test_bf16_on_a_cpu_without_it_is_refused_before_any_export(model, tmp_path, monkeypatch):
    # OpenVINO runs a bf16 hint in f32 on such a CPU (AVX2 only) while the user believes it is bf16
    pytest.importorskip("openvino")
    monkeypatch.setattr(backends, "openvino_cpu_has_bf16", lambda: False)
    with pytest.raises(InputError, match="native bf16.*precision='fp32'"):
        backends.build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                               backend="openvino", precision="bf16", cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_openvino_reports_bf16_only_where_the_cpu_has_it():
    pytest.importorskip("openvino")
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else None
    if flags is None:
        pytest.skip("no /proc/cpuinfo to check OpenVINO's answer against")
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    if not native and "avx_ne_convert" in flags:
        pytest.skip("AVX-NE-CONVERT CPU: OpenVINO may run bf16 on it without AVX-512")
    assert backends.openvino_cpu_has_bf16() == native


def test_openvino_bf16_is_opt_in_and_close(model, sample, cache, torch_decoded):
    pytest.importorskip("openvino")
    if not backends.openvino_cpu_has_bf16():
        pytest.skip("this CPU has no native bf16 (AVX-512 BF16 / AMX); build_runtime refuses it (tested above)")
    rt = backends.build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                                backend="openvino", precision="bf16", threads=1, cache_dir=cache, progress=False)
    assert rt._encoder._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    emb = rt.encode(sample["x"])
    assert _rel(emb, sample["embedding"]) < 0.2
    logits, _ = rt.decode(emb, sample["boxes"])
    ours, ref = _masks(sample["geometry"], logits), _masks(sample["geometry"], torch_decoded[0])
    assert min(_dice(a, b) for a, b in zip(ours, ref)) >= 0.9


# ---- shared by the tests below (from test_faults2.py)
def _cache_file(tmp_path, monkeypatch) -> Path:
    blocker = tmp_path / "cache_is_a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MEDSAM_LITE_CACHE", str(blocker))
    return blocker


def _raise(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


SLICE, SLICE_LABEL = samples.sample_path("brain_slice.png"), samples.sample_path("brain_slice_label.png")


@pytest.fixture(scope="module")
def slice_and_label():
    return io.read_volume(SLICE).array, io.read_volume(SLICE_LABEL).array


@pytest.mark.parametrize("fault", ["a file", "read-only", "full disk"])
def test_an_unusable_export_cache_falls_back_to_torch_with_one_warning(tmp_path, monkeypatch, slice_and_label,
                                                                       fault):
    if fault == "a file":
        _cache_file(tmp_path, monkeypatch)
    else:  # tests may run as root, where chmod does not stop writes: the OS calls fail instead
        monkeypatch.setenv("MEDSAM_LITE_CACHE", str(tmp_path / "cache"))
        if fault == "read-only":
            from medsam_lite import fileutil  # every file or folder the cache writes starts as a temporary

            monkeypatch.setattr(fileutil, "_new_temp", _raise(errno.EROFS))
        else:
            monkeypatch.setattr(backends, "_export", _raise(errno.ENOSPC))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = ml.load_model(backend="onnxruntime")
    cache_warnings = [w for w in seen if "MEDSAM_LITE_CACHE" in str(w.message)]
    assert len(cache_warnings) == 1 and "torch" in str(cache_warnings[0].message)
    assert model.runtime is not None and model.runtime.name == "torch"
    image, label = slice_and_label
    mask = ml.predict(image, ml.box_from_mask(label > 0), model=model)[0]
    assert ml.dice(mask, label > 0) > 0.3


def test_two_exports_into_an_empty_cache_take_turns(tmp_path, monkeypatch):
    calls = []

    def slow_export(part, module, path, input_size):
        calls.append(part)
        threading.Event().wait(0.3)  # long enough for the other thread to arrive meanwhile
        Path(path).write_bytes(b"onnx")

    monkeypatch.setattr(backends, "_export", slow_export)
    paths, errors = [], []

    def run():
        try:
            paths.append(backends.export_cached("decoder", lambda: None, "ab" * 32, "onnxruntime", tmp_path,
                                                 256, progress=False))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and calls == ["decoder"] and len(set(paths)) == 1 and paths[0].is_file()


def test_medsam_lite_backend_that_is_unknown_is_named(monkeypatch):
    monkeypatch.setenv("MEDSAM_LITE_BACKEND", "onnx")
    with pytest.raises(InputError, match="MEDSAM_LITE_BACKEND"):
        ml.load_model()

"""Inference without torch (issue 30): the exported model gives today's masks bit for bit, and the
inference path of a fresh process imports neither torch nor timm.

The session ``model`` (torch, the default backend) has exported both parts and written the manifest
(model/exported.py) the torch-free loader finds them by; ``exported_model`` is that loader, called here
directly because this test process has torch imported (``load_model`` then takes the torch path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.model.exported import ExportedModel
from medsam_lite.model.models import exported_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(model):
    if model.runtime is None or "torch" in model.runtime.name.split("+"):
        pytest.skip("the default backend here is torch (no compiled backend installed): nothing is exported")
    out = exported_model(threads=model.runtime.threads)
    assert isinstance(out, ExportedModel), "the torch load wrote no usable manifest for its exports"
    assert out.runtime.name == model.runtime.name
    return out


def _ct_slice():
    """A real abdominal CT slice (HU) and three organ boxes from its labels (liver, spleen, a small one)."""
    vol = io.read_volume(samples.sample_path("ct_abdomen/case-01.nii.gz")).array
    lab = io.read_volume(samples.sample_path("ct_abdomen/case-01_label.nii.gz")).array
    z = int(np.argmax([(s > 0).sum() for s in lab]))
    boxes = []
    values, counts = np.unique(lab[z][lab[z] > 0], return_counts=True)
    for v in [values[np.argmax(counts)], values[np.argmin(counts)], values[len(values) // 2]]:
        boxes.append(ml.box_from_mask(lab[z] == v) + np.array([-2, -2, 2, 2], np.float32))
    return vol[z], np.array(boxes)


def test_exported_masks_are_todays_bit_for_bit(model, exported, brain_slice):
    ct, ct_boxes = _ct_slice()
    cases = [(brain_slice[0], None, np.array([[40, 50, 120, 150], [60.5, 62.2, 100.7, 99.1], [10, 20, 150, 180]])),
             (ct, "CT", ct_boxes)]
    for image, modality, boxes in cases:
        ref, new = ml.Predictor(model), ml.Predictor(exported)
        ref.set_image(image, modality=modality)
        new.set_image(image, modality=modality)
        assert isinstance(new.embedding.tensor, np.ndarray)
        np.testing.assert_array_equal(new.embedding.tensor, ref.embedding.tensor.cpu().numpy())
        m0, s0, l0 = ref.predict(boxes, return_logits=True)
        m1, s1, l1 = new.predict(boxes, return_logits=True)
        assert m0.sum() > 100 and m0.shape == (len(boxes), *image.shape[:2])
        np.testing.assert_array_equal(m1, m0)
        np.testing.assert_array_equal(s1, s0)
        np.testing.assert_array_equal(l1.view(np.int32), l0.view(np.int32))
        np.testing.assert_array_equal(new.predict(boxes)[0], m0)  # the mask-only way back (no full logits)
        np.testing.assert_array_equal(ml.predict(image, boxes, model=exported, modality=modality),
                                      ml.predict(image, boxes, model=model, modality=modality))
        # a click refining the first box's mask: the click decoder's graph, the mask input
        x0, y0, x1, y1 = boxes[0]
        click = dict(points=[[(x0 + x1) / 2, (y0 + y1) / 2]], point_labels=[1], mask_input=l0[0])
        c0 = ref.predict(boxes[0], **click)
        c1 = new.predict(boxes[0], **click)
        np.testing.assert_array_equal(c1[0], c0[0])
        np.testing.assert_array_equal(c1[1], c0[1])


def test_exported_model_hands_torch_work_to_the_torch_model(exported, model):
    assert ml.Predictor(exported).model is exported  # accepted as a model, stays torch-free
    from medsam_lite.model.models import check_model

    twin = check_model(exported)  # what training, stores and volumes get: the torch model
    assert type(twin).__name__ == "SamModel" and twin.weights_sha256 == model.weights_sha256
    assert exported.image_encoder is twin.image_encoder  # any torch attribute comes from it


_SCRIPT = r"""
import json, sys
import numpy as np
import medsam_lite as ml
after_import = sorted(m for m in ("torch", "timm", "torchvision", "SimpleITK") if m in sys.modules)
from medsam_lite.app import cli
from medsam_lite.io import scans
model = ml.load_model()
image = scans.read_volume(sys.argv[1]).array
p = ml.Predictor(model)
p.set_image(image)
masks, scores = p.predict([40, 50, 120, 150])
masks2 = ml.predict(image, [[40, 50, 120, 150], [60, 60, 100, 100]], model=model)
rc = cli.main(["predict", sys.argv[1], "--box", "40", "50", "120", "150", "--out", sys.argv[2]])
print(json.dumps({"type": type(model).__name__, "after_import": after_import, "rc": rc,
                  "pixels": int(masks.sum()), "same": bool((masks2[0] == masks[0]).all()),
                  "heavy": sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)}))
"""


def test_inference_path_imports_no_torch(model, exported, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS=str(model.runtime.threads), PYTHONPATH=str(ROOT))
    env.pop("MKL_NUM_THREADS", None)
    out = tmp_path / "m.png"
    run = subprocess.run([sys.executable, "-c", _SCRIPT, str(samples.sample_path("brain_slice.png")), str(out)],
                         env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["type"] == "ExportedModel"
    assert result["after_import"] == []  # import medsam_lite: no torch, no SimpleITK
    assert result["heavy"] == [], f"the inference path imported {result['heavy']}"
    assert result["rc"] == 0 and result["pixels"] > 100 and result["same"]
    written = io.read_volume(out).array > 0
    expected = ml.predict(io.read_volume(samples.sample_path("brain_slice.png")).array, [40, 50, 120, 150],
                          model=model)[0]
    np.testing.assert_array_equal(written, expected)


def test_help_imports_no_torch():
    code = ("import sys, contextlib, io\nfrom medsam_lite.app import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        cli.main(['--help'])\n    except SystemExit:\n        pass\n"
            "    try:\n        cli.main(['predict', '--help'])\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_compiled_model_cache_gives_the_same_numbers(model, backend, tmp_path):
    """The second session of an export loads the compiled model cached beside it (ONNX Runtime's optimised
    graph, OpenVINO's blob) and answers bit for bit as the first, which compiled it."""
    pytest.importorskip(backend)
    import shutil

    from medsam_lite.model.exportcache import verify_export
    from medsam_lite.model.sessions import GraphSession

    from medsam_lite.model.exportcache import default_cache_dir

    source = default_cache_dir() / "exports"
    # the backend's own decoder export, else any verified decoder export's ONNX (the compiled-model cache works
    # on whatever ONNX graph the session opens; which exports the cache holds depends on the tests run before)
    folders = [f for b in (backend, "*") for f in sorted(source.glob(f"decoder-*-{b}"))
               if verify_export(f, "decoder", json.loads((f / "meta.json").read_text())["weights_sha256"],
                                f.name.rsplit("-", 1)[1]) is None]
    if not folders:
        pytest.skip("no decoder export in the cache")
    shutil.copytree(folders[0], tmp_path / "exports" / folders[0].name)
    path = tmp_path / "exports" / folders[0].name / "decoder.onnx"
    rng = np.random.default_rng(0)
    emb = (0.1 * rng.standard_normal((1, 256, 64, 64))).astype(np.float32)
    boxes = np.array([[30, 40, 150, 170], [10, 10, 200, 100]], np.float32)
    first = GraphSession(backend, path, "fp32", 1).run(emb, boxes)
    cached = sorted(p.name for p in (tmp_path / "exports" / "compiled" / folders[0].name / backend).iterdir())
    assert cached and (backend == "openvino" or "decoder.optimized.onnx" in cached), cached
    second = GraphSession(backend, path, "fp32", 1).run(emb, boxes)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))


_SCRIPT_3D = r"""
import json, sys
import numpy as np
import medsam_lite as ml
from medsam_lite.app.challenge import run_challenge
from medsam_lite.io.challenge25 import write_case25
data = np.load(sys.argv[1], allow_pickle=False)
imgs, gts, box, click = data["imgs"], data["gts"], data["box"], data["click"]
model = ml.load_model()
vp = ml.VolumePredictor(imgs, model=model, disk_cache=True)
mask = vp.predict(box, progress=False)
fg = vp.refine(mask, [((int(click[0]), int(click[1]), int(click[2])), True)])
after_3d = sorted(m for m in ("torch", "timm") if m in sys.modules)
step_model = ml.load_model()  # as a harness step's fresh process: its slices' embeddings are on disk
run_challenge(sys.argv[2], sys.argv[3], model=step_model, progress=False)  # a CVPR25 click step
np.savez(sys.argv[4], mask=mask, fg=fg, segs=np.load(sys.argv[3] + "/CT_c.npz")["segs"])
print(json.dumps({"type": type(model).__name__, "after_3d": after_3d, "encoded": vp.encoder_calls,
                  "step_encoder_loaded": step_model.runtime._encoder_session is not None,
                  "heavy": sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)}))
"""


def test_volume_and_challenge_steps_import_no_torch_and_give_the_torch_masks(model, exported, tmp_path):
    """Issue 30 (3D): a 3D box, a 3D click and a CVPR25 click step run on the exported model without
    importing torch, and give the torch path's masks bit for bit (3 real CT slices; the slices are encoded
    once, by the torch-free process, and read back from the disk cache by the torch path here)."""
    from medsam_lite.app.challenge import run_challenge
    from medsam_lite.io.challenge25 import write_case25

    folder = samples.ct_abdomen_dir()
    imgs = ml.normalize_intensity(io.read_volume(folder / "case-03.nii.gz").array[3:6], "CT")
    lab = io.read_label(folder / "case-03_label.nii.gz").array[3:6]
    gts = np.zeros(lab.shape, np.uint8)
    gts[lab == 5], gts[lab == 6] = 1, 2
    z, y, x = np.nonzero(gts == 1)
    box = np.array([x.min(), y.min(), z.min(), x.max(), y.max(), z.max()], np.float32)
    boxes25, prev, clicks = [], np.zeros(gts.shape, np.uint8), []
    for k in (1, 2):  # a CVPR25 click step: prev_pred (a rough slab of each class) and one new click per class
        z, y, x = np.nonzero(gts == k)
        mid = int(np.median(z))
        boxes25.append(dict(z_min=z.min(), z_max=z.max(), z_mid=mid, z_mid_x_min=x[z == mid].min(),
                            z_mid_y_min=y[z == mid].min(), z_mid_x_max=x[z == mid].max(), z_mid_y_max=y[z == mid].max()))
        prev[(gts == k) & (np.arange(gts.shape[1])[None, :, None] < np.median(y))] = k
        miss = np.argwhere((gts == k) & (prev != k))
        clicks.append({"fg": [list(miss[len(miss) // 2])], "bg": []})
    (tmp_path / "in").mkdir()
    write_case25(tmp_path / "in" / "CT_c.npz", imgs, (3.0, 3.0, 3.0), boxes=boxes25, clicks=clicks,
                 clicks_order=[["fg"], ["fg"]], prev_pred=prev)
    click = np.argwhere((gts == 1) & (np.arange(gts.shape[2])[None, None, :] > x.max() - 3))[0]  # an edge voxel
    np.savez(tmp_path / "case.npz", imgs=imgs, gts=gts, box=box, click=click)
    env = dict(os.environ, OMP_NUM_THREADS=str(model.runtime.threads), PYTHONPATH=str(ROOT),
               MEDSAM_LITE_EMBEDDING_CACHE=str(tmp_path / "embeddings"))
    env.pop("MKL_NUM_THREADS", None)
    run = subprocess.run([sys.executable, "-c", _SCRIPT_3D, str(tmp_path / "case.npz"), str(tmp_path / "in"),
                          str(tmp_path / "out"), str(tmp_path / "free.npz")],
                         env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["type"] == "ExportedModel" and result["encoded"] == 3
    assert result["after_3d"] == [], f"the 3D path imported {result['after_3d']}"
    assert result["heavy"] == [], f"the challenge step imported {result['heavy']}"
    assert not result["step_encoder_loaded"], "the click step loaded the encoder although every slice was on disk"
    free = np.load(tmp_path / "free.npz")
    with pytest.MonkeyPatch.context() as mp:  # the torch path, on the embeddings the torch-free process stored
        mp.setenv("MEDSAM_LITE_EMBEDDING_CACHE", str(tmp_path / "embeddings"))
        vp = ml.VolumePredictor(imgs, model=model, disk_cache=True)
        mask = vp.predict(box, progress=False)
        fg = vp.refine(mask, [(tuple(int(v) for v in click), True)])
        assert vp.disk.hits == 3, "the torch path re-encoded: the disk cache keys differ between the paths"
        run_challenge(tmp_path / "in", tmp_path / "out_torch", model=model, progress=False)
    assert mask.sum() > 500 and (fg != mask).any(), "the click changed nothing: the test would not see a difference"
    np.testing.assert_array_equal(free["mask"], mask)
    np.testing.assert_array_equal(free["fg"], fg)
    segs = np.load(tmp_path / "out_torch" / "CT_c.npz")["segs"]
    assert set(np.unique(segs)) == {0, 1, 2} and (segs != prev).any()
    np.testing.assert_array_equal(free["segs"], segs)


def test_mask_input_resize_in_numpy_is_torchs(model):
    """The antialiased downsizing of a previous call's logits to the decoder's mask input (the click
    path's one torch-only step) gives torch's bits on the sizes the manifest check covers and others."""
    import torch

    from medsam_lite.model.fullsize import antialias_matches_torch
    from medsam_lite.model.inference import mask_input_to_model

    assert antialias_matches_torch()
    rng = np.random.default_rng(3)
    for hw in ((512, 512), (101, 122), (333, 517), (64, 48)):
        geometry = model.geometry(hw)
        logits = (rng.standard_normal((2, *hw)) * 6).astype(np.float32)
        ref = mask_input_to_model(geometry, logits, 2, 256, hw)
        got = mask_input_to_model(geometry, logits, 2, 256, hw, in_numpy=True)
        assert torch.is_tensor(ref) and isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got.view(np.int32), ref.numpy().view(np.int32))


def test_command_line_predict_box3d_ends_at_once_with_the_same_mask(model, exported, tmp_path):
    """``medsam-lite predict CT --box3d`` from a process's own command line (``main()``: the console
    script) ends the process itself once the NIfTI is written (no interpreter teardown) and, with the
    encoder compiled in the background while it loads, writes the torch path's mask: the file reads back
    voxel for voxel, with the scan's geometry, and the process printed its line before it ended."""
    scan = samples.ct_abdomen_dir() / "case-03.nii.gz"
    lab = io.read_label(samples.ct_abdomen_dir() / "case-03_label.nii.gz").array
    top = min(int(np.argmax((lab == 5).sum((1, 2)))), lab.shape[0] - 2)
    _, y, x = np.nonzero(lab[top:top + 2] == 5)  # two slices: two encodes on each side
    box3d = [int(x.min()), int(y.min()), top, int(x.max()), int(y.max()), top + 1]
    out = tmp_path / "m.nii.gz"
    env = dict(os.environ, OMP_NUM_THREADS=str(model.runtime.threads), PYTHONPATH=str(ROOT))
    env.pop("MKL_NUM_THREADS", None)
    code = "import sys; from medsam_lite.app.cli import main; sys.exit(main())"
    run = subprocess.run([sys.executable, "-c", code, "predict", str(scan), "--box3d", *map(str, box3d),
                          "--out", str(out)], env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    written = io.read_volume(out)
    expected = ml.predict_volume(io.read_volume(scan), box3d, model=model, progress=False)
    assert expected.sum() > 100
    assert f"mask with {int(expected.sum())} voxels" in run.stdout  # flushed before the process ended
    np.testing.assert_array_equal(written.array, expected.astype(np.uint8))
    assert written.spacing == io.read_volume(scan).spacing


def test_known_sha256_remembers_only_unchanged_files(tmp_path, monkeypatch):
    """The digests remembered across processes (``<cache>/exports/digests.json``): a remembered file is
    not read again; a file whose size or times changed is hashed again (a damaged export is still found);
    a file changed less than 2 s ago is not remembered."""
    from medsam_lite.fileutil import file_sha256
    from medsam_lite.model import exportcache

    exports = tmp_path / "exports"
    exports.mkdir()
    path = exports / "part.onnx"
    path.write_bytes(b"weights" * 1000)
    exportcache._DIGEST_MEMO.clear()
    assert exportcache.known_sha256(path, exports) == file_sha256(path)
    assert not (exports / exportcache.DIGESTS_FILE).exists()  # just written: not settled, not remembered
    monkeypatch.setattr(exportcache, "_SETTLED_NS", 0)
    assert exportcache.known_sha256(path, exports) == file_sha256(path)
    assert str(path.resolve()) in json.loads((exports / exportcache.DIGESTS_FILE).read_text())
    exportcache._DIGEST_MEMO.clear()  # as a new process: read from the file, the file itself not read

    def no_reading(p):
        raise AssertionError(f"{p} was hashed again")

    monkeypatch.setattr(exportcache, "file_sha256", no_reading)
    assert exportcache.known_sha256(path, exports) == file_sha256(path)
    monkeypatch.setattr(exportcache, "file_sha256", file_sha256)
    path.write_bytes(b"weights" * 999)  # another size
    assert exportcache.known_sha256(path, exports) == file_sha256(path)
    before, st = file_sha256(path), path.stat()
    with open(path, "r+b") as handle:  # the same size, a damaged byte, the modification time moved
        handle.write(b"X")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert exportcache.known_sha256(path, exports) == file_sha256(path) != before


def test_integer_scans_normalise_to_the_same_bytes():
    """A ≤ 16-bit integer scan is normalised through a lookup table of every value (one float32 pass over
    65,536 values instead of the volume): the same uint8 bytes as the float32 arithmetic, for CT windows
    and MR percentiles, signed and unsigned, and a big-endian array (which takes the arithmetic)."""
    from medsam_lite.model.intensity import IntensityPreset

    ct = io.read_volume(samples.ct_abdomen_dir() / "case-01.nii.gz").array
    assert ct.dtype == np.int16 and ct.size > 2 ** 16
    rng = np.random.default_rng(0)
    scans = {"ct": ct, "uint16": rng.integers(0, 4000, (2, 200, 200)).astype(np.uint16),
             "big-endian": ct.astype(">i2"), "int8": rng.integers(-100, 100, (2, 300, 300)).astype(np.int8)}
    for name, scan in scans.items():
        for preset in (IntensityPreset.resolve("CT"), IntensityPreset.resolve("CT", "lung"),
                       IntensityPreset.resolve("MR"), IntensityPreset.resolve("MR", (10.5, 700.25))):
            got = preset.apply(scan)
            assert got.dtype == np.uint8 and got.shape == scan.shape and len(np.unique(got)) > 2, name
            np.testing.assert_array_equal(got, preset.apply(scan.astype(np.float32)), err_msg=f"{name} {preset}")

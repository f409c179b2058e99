"""Every public function answers bad input with the documented error, and leaves the disk alone.

One table of (call, error type, message fragment). Each call runs on the real sample data (the
brain slice, subject sub-01, a prepared copy of three subjects) with one thing spoiled; it must
raise ``InputError`` (or its subclass ``CheckpointError``) whose message names the problem, and
the working folder must hold exactly the same files, sizes, mtimes and contents afterwards.

Bad inputs already covered elsewhere are not repeated here: ``load_model`` with a missing file,
another architecture, a truncated file or a code-running pickle (test_models.py); inverted,
zero-area, NaN, short and far-away boxes in ``check_boxes`` (test_transforms.py); ``preprocess``
with a 3D geometry mismatch, a float label map, a missing or orphan label, a file cut inside its
header (test_preprocess.py); ``BoxPrompter`` labels/boxes/4-D/bool images (test_widgets.py).
The problems this suite found and how they were fixed are recorded in bench/HARDENING_FINDINGS.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.data.dataset import open_dataset
from medsam_lite.interactive.predict import Predictor
from medsam_lite.interactive.volume import VolumePredictor, predict_volume
from medsam_lite.interactive.prompts import box_from_recist
from medsam_lite.interactive.widgets import BoxPrompter


# ------------------------------------------------------------------------------ the working folder
@dataclass
class Ctx:
    """What the bad calls work on; everything that may be written lies under ``work``."""

    work: Path
    model: ml.SamModel
    image: np.ndarray          # the real 2D sample slice, uint8 191×164
    label: np.ndarray          # its label map
    volume: io.Volume          # sub-01
    dataset: Path              # a prepared copy of sub-01/sub-02/sub-07 (no embedding store)
    files: dict


def snapshot(root: Path) -> dict:
    """Every entry under ``root``: files by (size, mtime_ns, sha256), folders and links by kind."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                st = p.stat()
                digest = hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < (8 << 20) else ""
                out[rel] = ("file", st.st_size, st.st_mtime_ns, digest)
    return out


def _nifti_cut_after_header(src: Path, dst: Path, keep: float = 0.6) -> Path:
    """``src`` (.nii.gz) re-compressed and cut: a valid header, then the data stop early."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, model, brain_slice, brain_volume, small_dataset) -> Ctx:
    work = tmp_path_factory.mktemp("bad_inputs")
    image, label = brain_slice
    volume, label_vol = brain_volume
    d = samples.brain_mri_dir()
    f = {}
    # files: truncated / corrupt scans, a constant scan, a CT scan outside its window
    f["cut_gz"] = _nifti_cut_after_header(d / "sub-01.nii.gz", work / "cut.nii.gz")
    io.write_volume(volume.array, work / "full.nii", like=volume)
    raw = (work / "full.nii").read_bytes()
    (work / "full.nii").unlink()
    f["cut_nii"] = work / "cut.nii"
    f["cut_nii"].write_bytes(raw[: len(raw) - 5000])
    png = samples.sample_path("brain_slice.png").read_bytes()
    f["cut_png"] = work / "cut.png"
    f["cut_png"].write_bytes(png[: len(png) // 2])
    f["random_gz"] = work / "random.nii.gz"
    f["random_gz"].write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (work / "empty_dir").mkdir()
    f["label"] = d / "sub-01_label.nii.gz"
    f["constant"] = io.write_volume(np.full(volume.array.shape, 300, np.int16), work / "constant.nii.gz", like=volume)
    f["ct_far"] = io.write_volume(volume.array.astype(np.int16) - 3000, work / "ct_far.nii.gz", like=volume)
    # a 2D image + label of another size (geometry mismatch in 2D)
    src2d = work / "src2d"
    src2d.mkdir()
    shutil.copy(samples.sample_path("brain_slice.png"), src2d / "slice.png")
    io.write_volume(((label[:-10, :] > 0) * 255).astype(np.uint8), src2d / "slice_mask.png")
    f["src2d"] = src2d
    # checkpoints
    f["text_ckpt"] = work / "notes.pth"
    f["text_ckpt"].write_text("hello, these are my notes")
    f["empty_ckpt"] = work / "empty.pth"
    f["empty_ckpt"].write_bytes(b"")
    decoder = {k: v for k, v in model.state_dict().items() if k.startswith("mask_decoder.")}
    f["unknown_model_ckpt"] = work / "ft_unknown.pt"
    torch.save({"model": decoder, "model_name": "medsam_2_hiera"}, f["unknown_model_ckpt"])
    f["numpy_ckpt"] = work / "numpy.pth"
    torch.save({"weights": np.zeros(3, np.float32)}, f["numpy_ckpt"])
    (work / "ckpt_dir").mkdir()
    # the prepared dataset (a copy without any embedding store) and damaged variants
    shared = small_dataset.root
    ds = work / "dataset"
    shutil.copytree(shared, ds, ignore=shutil.ignore_patterns("embeddings"))
    for name, spoil in {
        "ds_bad_json": lambda p: (p / "dataset.json").write_text('{"format": "medsam_lite.dataset/1",'),
        "ds_list_json": lambda p: (p / "dataset.json").write_text("[1, 2, 3]"),
        "ds_binary_manifest": lambda p: (p / "manifest.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 50),
        "ds_nan_box": lambda p: _edit_manifest(p, "x1", np.nan),
        "ds_text_box": lambda p: _edit_manifest(p, "y0", "left"),
        "ds_box_outside": lambda p: _edit_manifest(p, "x1", 10_000),
        "ds_no_image": lambda p: _edit_manifest(p, "image", np.nan),
    }.items():
        p = work / name
        p.mkdir()
        shutil.copy(ds / "dataset.json", p)
        shutil.copy(ds / "manifest.csv", p)
        spoil(p)
    return Ctx(work, model, image, label, volume, ds, f)


def _edit_manifest(root: Path, column: str, value) -> None:
    m = pd.read_csv(root / "manifest.csv", dtype={"case": str})
    m[column] = m[column].astype(object)
    m.loc[3, column] = value
    m.to_csv(root / "manifest.csv", index=False)


def _predictor(c: Ctx) -> Predictor:
    return Predictor(c.model)


def _with_embedding(c: Ctx) -> Predictor:
    p = Predictor(c.model)
    p.set_embedding(torch.zeros(256, 64, 64), c.image.shape)
    return p


def _nan_slice(c: Ctx):
    x = c.image.astype(np.float32)
    x[50, 60] = np.nan
    return x


def _volume_predict(c: Ctx, array, box, **kw):
    return predict_volume(array, box, model=c.model, progress=False, **kw)


def _tiny(**kw):
    """Settings that keep a dataset call to one slice of one case."""
    return dict(cases=["sub-01"], max_slices_per_case=1, progress=False, **kw)


H, W = 191, 164  # the sample slice
GOOD_BOX = [40, 50, 120, 150]

# (id, call, error type, message fragment); ``c`` is the Ctx.
CASES = [
    # ---- images into Predictor.set_image / predict / normalize_intensity
    ("image NaN", lambda c: _predictor(c).set_image(_nan_slice(c)), ml.InputError, "NaN"),
    ("image +Inf", lambda c: _predictor(c).set_image(np.where(c.image > 100, np.inf, c.image.astype(float))),
     ml.InputError, "NaN or Inf"),
    ("image constant float", lambda c: _predictor(c).set_image(np.full(c.image.shape, 7.5)), ml.InputError, "constant"),
    ("image constant uint8", lambda c: _predictor(c).set_image(np.full(c.image.shape, 90, np.uint8)),
     ml.InputError, "constant"),
    ("image constant RGB", lambda c: ml.predict(np.zeros((H, W, 3), np.uint8), GOOD_BOX, model=c.model),
     ml.InputError, "constant"),
    ("CT slice outside the window", lambda c: ml.predict(c.image.astype(np.int16) - 3000, GOOD_BOX, model=c.model,
                                                         modality="CT"), ml.InputError, "window"),
    ("image 1-D", lambda c: _predictor(c).set_image(c.image.ravel()), ml.InputError, "2D slice"),
    ("image 4-D", lambda c: _predictor(c).set_image(c.image[None, :, :, None].repeat(2, 0)), ml.InputError, "2D slice"),
    ("image 3D volume", lambda c: _predictor(c).set_image(c.volume.array), ml.InputError, "predict_volume"),
    ("image empty", lambda c: _predictor(c).set_image(c.image[:0]), ml.InputError, "empty"),
    ("image one row", lambda c: _predictor(c).set_image(c.image[:1]), ml.InputError, "too small"),
    ("image bool", lambda c: _predictor(c).set_image(c.label > 0), ml.InputError, "dtype bool"),
    ("image complex", lambda c: _predictor(c).set_image(c.image * (1 + 1j)), ml.InputError, "complex"),
    ("image object", lambda c: _predictor(c).set_image(c.image.astype(object)), ml.InputError, "dtype object"),
    ("image strings", lambda c: ml.predict("brain_slice.png", GOOD_BOX, model=c.model), ml.InputError, "dtype <U"),
    ("image two channels", lambda c: _predictor(c).set_image(np.stack([c.image, c.image], -1)), ml.InputError,
     "2D slice"),
    ("normalize modality None", lambda c: ml.normalize_intensity(c.image.astype(float), modality=None),
     ml.InputError, "modality"),
    ("normalize window inverted", lambda c: ml.normalize_intensity(c.image, "MR", window=(200, 10)),
     ml.InputError, "high > low"),
    ("normalize window words", lambda c: ml.normalize_intensity(c.image, "MR", window=("low", "high")),
     ml.InputError, "window"),
    # ---- boxes
    ("box 3-D array", lambda c: ml.predict(c.image, np.zeros((2, 2, 4)), model=c.model), ml.InputError, "N×4"),
    ("box words", lambda c: ml.predict(c.image, ["left", "top", "right", "bottom"], model=c.model), ml.InputError,
     "numbers"),
    ("box None", lambda c: ml.predict(c.image, None, model=c.model), ml.InputError, "N×4"),
    ("box empty list", lambda c: ml.predict(c.image, [], model=c.model), ml.InputError, "N×4"),
    ("box Inf", lambda c: _with_embedding(c).predict([0, 0, np.inf, 50]), ml.InputError, "NaN or Inf"),
    ("box left of the image", lambda c: _with_embedding(c).predict([-80, 10, -5, 40]), ml.InputError, "outside"),
    ("second box inverted", lambda c: _with_embedding(c).predict([GOOD_BOX, [90, 90, 30, 120]]), ml.InputError,
     "box 1"),
    ("xywh three numbers", lambda c: ml.xywh_to_xyxy([10, 20, 30]), ml.InputError, "4 finite numbers"),
    ("xywh negative width", lambda c: ml.xywh_to_xyxy([10, 20, -30, 40]), ml.InputError, "negative"),
    ("xywh NaN", lambda c: ml.xywh_to_xyxy([10, np.nan, 30, 40]), ml.InputError, "finite"),
    ("xywh widget dict", lambda c: ml.xywh_to_xyxy({"x": 1, "y": 2, "width": 3, "height": 4}), ml.InputError,
     "4 finite numbers"),
    ("xyxy inverted", lambda c: ml.xyxy_to_xywh([50, 50, 10, 80]), ml.InputError, "inverted"),
    ("3D box z inverted", lambda c: _volume_predict(c, c.volume, [40, 50, 30, 120, 150, 20]), ml.InputError,
     "inverted"),
    ("2D box on a volume without slice", lambda c: _volume_predict(c, c.volume, GOOD_BOX), ml.InputError,
     "slice_index"),
    ("3D box NaN", lambda c: _volume_predict(c, c.volume, [40, 50, np.nan, 120, 150, 20]), ml.InputError, "NaN"),
    ("RECIST points coincide", lambda c: box_from_recist((40, 50), (40, 50)), ml.InputError, "same point"),
    ("RECIST point NaN", lambda c: box_from_recist((40, np.nan), (60, 70)), ml.InputError, "finite"),
    pytest.param("RECIST image_shape too short", lambda c: box_from_recist((40, 50), (60, 70),
                                                                                   image_shape=(191,)),
                 ml.InputError, "image_shape"),
    pytest.param("RECIST box outside the image", lambda c: box_from_recist((300, 300), (350, 320),
                                                                                    image_shape=(H, W)),
                 ml.InputError, "outside"),
    # ---- masks and metrics
    ("mask empty", lambda c: ml.box_from_mask(c.label == 9), ml.InputError, "empty"),
    ("mask is a label map", lambda c: ml.box_from_mask(c.label), ml.InputError, "not binary"),
    ("mask NaN", lambda c: ml.box_from_mask(np.where(c.label > 0, np.nan, 0.0)), ml.InputError, "not binary"),
    ("mask 3D", lambda c: ml.box_from_mask(c.volume.array > 0), ml.InputError, "2D"),
    ("dice label map", lambda c: ml.dice(c.label, c.label > 0), ml.InputError, "binary"),
    ("dice other geometry", lambda c: ml.dice(c.label > 0, c.label[:-1] > 0), ml.InputError, "shape"),
    ("nsd 1-D", lambda c: ml.nsd(c.label[0] > 0, c.label[0] > 0), ml.InputError, "2D"),
    ("dice complex", lambda c: ml.dice((c.label > 0) * (1 + 0j), c.label > 0), ml.InputError, "binary"),
    ("nsd zero-size masks", lambda c: ml.nsd(np.zeros((0, 4), bool), np.zeros((0, 4), bool)), ml.InputError,
     "empty"),
    ("nsd spacing words", lambda c: ml.nsd(c.label > 0, c.label > 0, spacing="1mm"), ml.InputError, "spacing"),
    ("nsd tolerance text", lambda c: ml.nsd(c.label > 0, c.label > 0, tolerance_mm="1"), ml.InputError,
     "tolerance"),
    # ---- stored embeddings
    ("embedding 3 channels", lambda c: _predictor(c).set_embedding(np.zeros((3, 64, 64)), (H, W)), ml.InputError,
     "embedding must be"),
    ("embedding of another model", lambda c: _predictor(c).set_embedding(np.zeros((256, 32, 32)), (H, W)),
     ml.InputError, "another model"),
    ("embedding NaN", lambda c: _predictor(c).set_embedding(np.full((256, 64, 64), np.nan, np.float32), (H, W)),
     ml.InputError, "NaN"),
    ("embedding objects", lambda c: _predictor(c).set_embedding(np.array([object()]), (H, W)), ml.InputError,
     "numeric"),
    ("embedding size zero", lambda c: _predictor(c).set_embedding(np.zeros((256, 64, 64)), (0, W)), ml.InputError,
     "original_hw"),
    ("embedding size words", lambda c: _predictor(c).set_embedding(np.zeros((256, 64, 64)), "HW"), ml.InputError,
     "original_hw"),
    ("predict before set_image", lambda c: _predictor(c).predict(GOOD_BOX), ml.InputError, "set_image"),
    ("Predictor of a model name", lambda c: Predictor("lite_medsam"), ml.InputError, "load_model"),
    # ---- files: reading
    ("read missing file", lambda c: io.read_volume(c.work / "sub-09.nii.gz"), ml.InputError, "does not exist"),
    ("read .nii.gz cut after header", lambda c: io.read_volume(c.files["cut_gz"]), ml.InputError, "truncated"),
    ("read .nii cut short", lambda c: io.read_volume(c.files["cut_nii"]), ml.InputError, "truncated"),
    ("read PNG cut short", lambda c: io.read_volume(c.files["cut_png"]), ml.InputError, "could not be read"),
    ("read random bytes", lambda c: io.read_volume(c.files["random_gz"]), ml.InputError, "could not be read"),
    ("read empty folder", lambda c: io.read_volume(c.work / "empty_dir"), ml.InputError, "DICOM series"),
    ("volume from a cut file", lambda c: _volume_predict(c, c.files["cut_gz"], GOOD_BOX, slice_index=20),
     ml.InputError, "truncated"),
    ("BoxPrompter of a cut file", lambda c: BoxPrompter(c.files["cut_gz"], c.model), ml.InputError,
     "truncated"),
    # ---- files: writing
    ("write 1-D", lambda c: io.write_volume(c.image.ravel(), c.work / "out.nii.gz"), ml.InputError, "shape"),
    ("write 4-D", lambda c: io.write_volume(np.zeros((2, 3, 4, 5), np.uint8), c.work / "out.nii.gz"), ml.InputError,
     "shape"),
    ("write empty", lambda c: io.write_volume(c.image[:0], c.work / "out.nii.gz"), ml.InputError, "shape"),
    ("write objects", lambda c: io.write_volume(c.image.astype(object), c.work / "out.nii.gz"), ml.InputError,
     "dtype object"),
    ("write complex", lambda c: io.write_volume(c.image * 1j, c.work / "out.nii.gz"), ml.InputError, "complex"),
    ("write unknown suffix", lambda c: io.write_volume(c.label, c.work / "out.xyz"), ml.InputError, "suffix"),
    ("write volume as PNG", lambda c: io.write_volume(c.volume.array, c.work / "out.png"), ml.InputError, "2D uint8"),
    ("write float PNG", lambda c: io.write_volume(c.image / 255.0, c.work / "out.png"), ml.InputError, "2D uint8"),
    ("write with other geometry", lambda c: io.write_volume(c.volume.array[:, :-1], c.work / "out.nii.gz",
                                                            like=c.volume), ml.InputError, "does not match"),
    ("write like a path", lambda c: io.write_volume(c.volume.array, c.work / "out.nii.gz", like=str(c.files["label"])),
     ml.InputError, "Volume"),
    # ---- preprocess
    ("preprocess 2D label of another size", lambda c: ml.preprocess(c.files["src2d"], c.work / "out_ds",
                                                                    progress=False),
     ml.InputError, "differ in geometry"),
    ("preprocess .nii.gz cut after header", lambda c: ml.preprocess([(c.files["cut_gz"], c.files["label"])],
                                                                    c.work / "out_ds", progress=False),
     ml.InputError, "truncated"),
    ("preprocess constant scan", lambda c: ml.preprocess([(c.files["constant"], c.files["label"])], c.work / "out_ds",
                                                         progress=False), ml.InputError, "constant"),
    ("preprocess CT outside the window", lambda c: ml.preprocess([(c.files["ct_far"], c.files["label"])],
                                                                 c.work / "out_ds", modality="CT", progress=False),
     ml.InputError, "outside the window"),
    ("preprocess modality None", lambda c: ml.preprocess(samples.brain_mri_dir(), c.work / "out_ds", modality=None,
                                                         progress=False), ml.InputError, "modality"),
    ("preprocess missing folder", lambda c: ml.preprocess(c.work / "nowhere", c.work / "out_ds", progress=False),
     ml.InputError, "not a folder"),
    # ---- checkpoints and models
    ("checkpoint is a text file", lambda c: ml.load_model(checkpoint=c.files["text_ckpt"]), ml.CheckpointError,
     "not a readable PyTorch checkpoint"),
    ("checkpoint is empty", lambda c: ml.load_model(checkpoint=c.files["empty_ckpt"]), ml.CheckpointError,
     "not a readable"),
    ("checkpoint is a folder", lambda c: ml.load_model(checkpoint=c.work / "ckpt_dir"), ml.CheckpointError, "folder"),
    ("checkpoint names an unknown model", lambda c: ml.load_model(checkpoint=c.files["unknown_model_ckpt"]),
     ml.CheckpointError, "does not know"),
    ("checkpoint holds numpy objects", lambda c: ml.load_model(checkpoint=c.files["numpy_ckpt"]), ml.CheckpointError,
     "refused"),
    ("model name a list", lambda c: ml.load_model(["lite_medsam"]), ml.InputError, "unknown model"),
    ("device misspelled", lambda c: ml.load_model(device="gpu"), ml.InputError, "device"),
    ("device absent", lambda c: ml.load_model(device=f"cuda:{torch.cuda.device_count() + 3}"), ml.InputError,
     "not available"),
    # ---- prepared datasets
    ("dataset folder missing", lambda c: open_dataset(c.work / "nowhere"), ml.InputError, "not a prepared dataset"),
    ("dataset.json cut short", lambda c: open_dataset(c.work / "ds_bad_json"), ml.InputError, "not valid JSON"),
    ("dataset.json a list", lambda c: open_dataset(c.work / "ds_list_json"), ml.InputError, "format"),
    ("manifest binary", lambda c: open_dataset(c.work / "ds_binary_manifest"), ml.InputError, "manifest.csv"),
    ("manifest box NaN", lambda c: open_dataset(c.work / "ds_nan_box"), ml.InputError, "x1"),
    ("manifest box text", lambda c: open_dataset(c.work / "ds_text_box"), ml.InputError, "y0"),
    ("manifest box outside its slice", lambda c: open_dataset(c.work / "ds_box_outside"), ml.InputError, "outside"),
    ("manifest image missing", lambda c: ml.embed(c.work / "ds_no_image", c.model, **_tiny()), ml.InputError,
     "invalid values"),
    # ---- embed / finetune / evaluate settings (must be refused before any work is done)
    ("embed unknown split", lambda c: ml.embed(c.dataset, c.model, split="val", progress=False), ml.InputError,
     "split"),
    ("embed unknown case", lambda c: ml.embed(c.dataset, c.model, cases=["sub-99"], progress=False), ml.InputError,
     "sub-99"),
    ("embed zero slices", lambda c: ml.embed(c.dataset, c.model, max_slices_per_case=0, progress=False),
     ml.InputError, "max_slices_per_case"),
    ("embed batch_size text", lambda c: ml.embed(c.dataset, c.model, batch_size="eight", **_tiny()),
     ml.InputError, "batch_size"),
    ("embed cases an int", lambda c: ml.embed(c.dataset, c.model, cases=1, max_slices_per_case=1, progress=False),
     ml.InputError, "cases"),
    ("embed model name", lambda c: ml.embed(c.dataset, "lite_medsam", **_tiny()), ml.InputError, "model"),
    ("embed dataset None", lambda c: ml.embed(None, c.model, **_tiny()), ml.InputError, "dataset"),
    ("finetune zero epochs", lambda c: ml.finetune(c.dataset, c.work / "ft", c.model, epochs=0, **_tiny()),
     ml.InputError, "epochs"),
    ("finetune lr NaN", lambda c: ml.finetune(c.dataset, c.work / "ft", c.model, lr=float("nan"), **_tiny()),
     ml.InputError, "lr"),
    ("finetune epochs text", lambda c: ml.finetune(c.dataset, c.work / "ft", c.model, epochs="five", **_tiny()),
     ml.InputError, "epochs"),
    ("finetune lr text", lambda c: ml.finetune(c.dataset, c.work / "ft", c.model, lr="1e-4", **_tiny()),
     ml.InputError, "lr"),
    ("finetune labels a name", lambda c: ml.finetune(c.dataset, c.work / "ft", c.model, labels="white_matter",
                                                     **_tiny()), ml.InputError, "labels"),
    ("finetune model name", lambda c: ml.finetune(c.dataset, c.work / "ft", "lite_medsam", **_tiny()),
     ml.InputError, "model"),
    ("finetune negative jitter", lambda c: ml.finetune(c.dataset, c.work / "ft", c.model, box_jitter=-3, epochs=1,
                                                       **_tiny()), ml.InputError, "box_jitter"),
    ("finetune out_dir is a file", lambda c: ml.finetune(c.dataset, c.files["text_ckpt"], c.model, epochs=1,
                                                         **_tiny()), ml.InputError, "out_dir"),
    ("evaluate unknown split", lambda c: ml.evaluate(c.model, c.dataset, split="validation", progress=False),
     ml.InputError, "split"),
    ("evaluate model name", lambda c: ml.evaluate("lite_medsam", c.dataset, split=None, **_tiny()),
     ml.InputError, "model"),
    ("predict_case unknown case", lambda c: ml.predict_case(c.model, c.dataset, "sub-99"), ml.InputError, "sub-99"),
    # ---- volumes and the widget
    ("volume 2D", lambda c: _volume_predict(c, c.image, GOOD_BOX, slice_index=0), ml.InputError, "3D"),
    ("volume 4-D", lambda c: _volume_predict(c, c.volume.array[None], GOOD_BOX, slice_index=0), ml.InputError, "3D"),
    ("volume complex", lambda c: _volume_predict(c, c.volume.array * 1j, GOOD_BOX, slice_index=20), ml.InputError,
     "complex"),
    ("volume bool", lambda c: _volume_predict(c, c.volume.array > 0, GOOD_BOX, slice_index=20), ml.InputError,
     "dtype bool"),
    ("volume NaN", lambda c: _volume_predict(c, np.where(c.volume.array > 500, np.nan, c.volume.array),
                                             GOOD_BOX, slice_index=20), ml.InputError, "NaN"),
    ("volume constant", lambda c: _volume_predict(c, np.full(c.volume.array.shape, 40.0), GOOD_BOX, slice_index=20),
     ml.InputError, "constant"),
    ("volume slice index past the end", lambda c: _volume_predict(c, c.volume, GOOD_BOX, slice_index=43),
     ml.InputError, "outside the volume"),
    ("volume axis 3", lambda c: _volume_predict(c, c.volume, GOOD_BOX, slice_index=20, axis=3), ml.InputError,
     "axis"),
    ("volume margin text", lambda c: _volume_predict(c, c.volume, GOOD_BOX, slice_index=20, margin="3px"),
     ml.InputError, "margin"),
    ("volume min_pixels text", lambda c: _volume_predict(c, c.volume, GOOD_BOX, slice_index=20, min_pixels="ten"),
     ml.InputError, "min_pixels"),
    ("BoxPrompter complex", lambda c: BoxPrompter(c.image * 1j, c.model), ml.InputError, "complex"),
    ("BoxPrompter 1-D", lambda c: BoxPrompter(c.image.ravel(), c.model), ml.InputError, "2D image"),
    ("BoxPrompter model name", lambda c: BoxPrompter(c.image, "lite_medsam"), ml.InputError, "load_model"),
    pytest.param("BoxPrompter alpha text", lambda c: BoxPrompter(c.image, c.model, alpha="half"),
                 ml.InputError, "alpha"),
    pytest.param("BoxPrompter labels an int", lambda c: BoxPrompter(c.image, c.model, labels=3),
                 ml.InputError, "labels"),
    pytest.param("BoxPrompter cache size text", lambda c: BoxPrompter(c.image, c.model,
                                                                                max_cached_embeddings="8"),
                 ml.InputError, "max_cached_embeddings"),
    # ---- samples
    ("sample name leaves data_samples", lambda c: samples.sample_path("../pyproject.toml"), ml.InputError, "outside"),
]


def _fields(case) -> tuple:
    """``(name, call, error, fragment)`` of a table row (a plain tuple or a ``pytest.param``)."""
    return tuple(case.values) if hasattr(case, "marks") else case


def _param(case):
    return pytest.param(*_fields(case), marks=getattr(case, "marks", ()), id=_fields(case)[0])


def test_the_table_is_large_and_covers_the_public_api():
    assert len(CASES) >= 30
    import inspect

    sources = "\n".join(inspect.getsource(_fields(c)[1]) for c in CASES)
    for name in ("load_model", "set_image", "set_embedding", ".predict(", "ml.predict(", "normalize_intensity",
                 "box_from_mask", "xywh_to_xyxy", "read_volume", "write_volume", "preprocess", "open_dataset",
                 "ml.embed", "ml.finetune", "ml.evaluate", "ml.dice", "ml.nsd", "predict_volume",
                 "box_from_recist", "BoxPrompter", "predict_case"):
        assert name in sources or name == "predict_volume" and "_volume_predict" in sources, name


@pytest.mark.parametrize("name, call, error, fragment", [_param(c) for c in CASES])
def test_bad_input_gets_the_documented_error_and_changes_nothing(ctx, name, call, error, fragment):
    before = snapshot(ctx.work)
    try:
        with pytest.raises(error) as info:
            call(ctx)
        assert isinstance(info.value, ValueError)  # InputError is a ValueError: `except ValueError` works too
        assert fragment in str(info.value), str(info.value)
        assert len(str(info.value)) >= 30  # a sentence that says what to do, not a bare value
    finally:
        after = snapshot(ctx.work)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        for rel in changed:  # put the folder back for the next row, whatever happened
            p = ctx.work / rel
            if rel not in before and p.exists() and not p.is_symlink():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    assert not changed, f"{name} changed files on disk: {changed[:5]}"


def test_legit_nifti_variants_still_load(tmp_path, brain_volume):
    """The truncation check has no false alarms: multi-member gzip, trailing bytes, .nii misnamed .nii.gz."""
    import gzip

    volume, _ = brain_volume
    io.write_volume(volume.array, tmp_path / "plain.nii", like=volume)
    raw = (tmp_path / "plain.nii").read_bytes()
    half = len(raw) // 2
    (tmp_path / "multi.nii.gz").write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    (tmp_path / "trailing.nii").write_bytes(raw + b"\0" * 100)
    (tmp_path / "trailing.nii.gz").write_bytes(gzip.compress(raw + b"\0" * 100))
    (tmp_path / "misnamed.nii.gz").write_bytes(raw)
    for name in ("plain.nii", "multi.nii.gz", "trailing.nii", "trailing.nii.gz", "misnamed.nii.gz"):
        back = io.read_volume(tmp_path / name)
        np.testing.assert_array_equal(back.array, volume.array, err_msg=name)
    # and one byte short of the data is already refused, compressed or not
    (tmp_path / "short.nii").write_bytes(raw[:-1])
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[:-1]))
    for name in ("short.nii", "short.nii.gz"):
        with pytest.raises(ml.InputError, match="truncated"):
            io.read_volume(tmp_path / name)


def test_cli_reports_a_truncated_scan_with_exit_code_2(tmp_path, ctx):
    """The CLI maps InputError to exit code 2 with the message, and writes no mask."""
    from medsam_lite.app.cli import main

    out = tmp_path / "mask.nii.gz"
    assert main(["predict", str(ctx.files["cut_gz"]), "--box", "40", "50", "120", "150", "--slice", "20",
                 "--out", str(out)]) == 2
    assert not out.exists()


def test_propagation_stops_at_a_blank_slice(model, brain_volume):
    """Slice 0 of sub-01 is blank (all zero): propagation from slice 1 must stop there with an empty
    mask instead of refusing the whole volume (the model sees nothing to segment on it)."""
    volume, _ = brain_volume
    assert volume.array[0].max() == volume.array[0].min() and volume.array[1].max() > 0
    box = ml.box_from_mask(volume.array[1] > 0)
    vp = VolumePredictor(volume, model)
    mask = vp.predict([box[0], box[1], 0, box[2], box[3], 1], slice_index=1, progress=False, min_pixels=1)
    assert mask[1].any() and not mask[0].any()

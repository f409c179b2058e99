"""fileutil and the plumbing that uses it: one atomic write that keeps the umask, one lock, the
weights version of the compiled runtime, Geometry's rule for thin images, and work done once per call."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import medsam_lite as ml
from medsam_lite import fileutil, io, samples
from medsam_lite.data import store as store_module
from medsam_lite.data.dataset import open_dataset
from medsam_lite.errors import InputError
from medsam_lite.model import backends
from medsam_lite.model.geometry import Geometry
from medsam_lite.train import finetune as finetune_module


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    """``{relative path: permission bits}`` of every file under ``root``."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in sorted(root.rglob("*")) if p.is_file()}


def _two_png_cases(folder: Path) -> Path:
    """Two 2D cases (the bundled brain slice and its mirror image) in a flat folder."""
    folder.mkdir(parents=True)
    image = io.read_volume(samples.sample_path("brain_slice.png")).array
    label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
    for name, flip in (("a", False), ("b", True)):
        io.write_volume(image[:, ::-1].copy() if flip else image, folder / f"{name}.png")
        io.write_volume(label[:, ::-1].copy() if flip else label, folder / f"{name}_mask.png")
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A two-case 2D dataset prepared under umask 022 (one train case, one test case)."""
    base = tmp_path_factory.mktemp("house")
    old = os.umask(0o022)
    try:
        ml.preprocess(_two_png_cases(base / "src"), base / "ds", labels=[1], test_cases=["b"], progress=False)
    finally:
        os.umask(old)
    return open_dataset(base / "ds")


# ------------------------------------------------------------------------------ the umask's mode
def test_atomic_writes_keep_the_umask(tmp_path):
    old = os.umask(0o027)  # another umask than the usual one: the mode follows it, it is not fixed
    try:
        fileutil.atomic_write_text(tmp_path / "a.txt", "x")
        with fileutil.atomic_path(tmp_path / "b.nii.gz", suffix=".nii.gz") as tmp:
            assert tmp.name.startswith(fileutil.TMP_PREFIX) and tmp.name.endswith(".nii.gz")
            tmp.write_bytes(b"y")
        with fileutil.atomic_folder(tmp_path / "c") as tmp:
            (tmp / "f").write_text("z")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.nii.gz").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.nii.gz", "c"]  # no temporary left


def test_preprocess_and_embed_write_0644_under_umask_022(tiny, model, umask022):
    modes = _modes(tiny.root)
    assert {"dataset.json", "manifest.csv"} <= set(modes) and any(k.endswith(".png") for k in modes)
    assert set(modes.values()) == {0o644}, modes
    ml.embed(tiny, model, progress=False)
    store = _modes(tiny.root / "embeddings" / model.name)
    assert set(store) == {"embeddings.npy", "done.npy", "rows.csv", "signature.json"}
    assert set(store.values()) == {0o644}, store


def test_finetune_writes_0644_under_umask_022(tiny, model, tmp_path, umask022):
    result = ml.finetune(tiny, tmp_path / "ft", model, epochs=1, val_fraction=0, batch_size=2, progress=False)
    modes = _modes(result.last.parent)
    assert set(modes) == {"best.pt", "last.pt", "history.csv"} and set(modes.values()) == {0o644}, modes


def test_cli_writes_0644_under_umask_022(tmp_path, umask022, capsys):
    from medsam_lite.app.cli import main

    image, label = (io.read_volume(samples.sample_path(n)).array for n in ("brain_slice.png", "brain_slice_label.png"))
    box = [float(v) for v in ml.box_from_mask(label == 1)]
    out = tmp_path / "mask.png"
    code = main(["predict", str(samples.sample_path("brain_slice.png")), "--box", *map(str, box), "--out", str(out),
                 "--backend", "torch"])
    assert code == 0, capsys.readouterr().err
    assert _modes(tmp_path) == {"mask.png": 0o644}


# ------------------------------------------------------------------------------ one lock
def test_the_lock_waits_or_fails_as_its_caller_chose(tmp_path):
    holder = ("import time; from medsam_lite.fileutil import FolderLock\n"
              f"with FolderLock({str(tmp_path)!r}, 'preprocess'):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, encoding="utf-8",
                            env={**os.environ, "PYTHONPATH": str(Path(ml.__file__).parents[1])})
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(ml.InputError, match=rf"another preprocess run \(pid {proc.pid}"):
            fileutil.FolderLock(tmp_path, "embed").acquire()  # fail at once (default)
        with pytest.raises(ml.InputError, match=rf"pid {proc.pid}"):
            fileutil.FolderLock(tmp_path, "embed", wait=0.5).acquire()  # wait a little, then the same
    finally:
        proc.kill()  # SIGKILL: no clean-up runs, the lock files stay behind
        proc.wait()
    assert (tmp_path / ".lock").exists()
    with fileutil.FolderLock(tmp_path, "embed", wait=None):  # not blocked by the killed holder
        assert json.loads((tmp_path / ".lock.owner").read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ weights version
def test_runtime_follows_weights_changed_and_builds_no_state_dict_per_call(count_state_dicts):
    if "onnxruntime" not in backends.available_backends():
        pytest.skip("onnxruntime is not installed")
    m = ml.load_model(backend="onnxruntime")
    emb = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    box = torch.tensor([[40.0, 50.0, 150.0, 170.0]])
    calls = count_state_dicts()
    with torch.no_grad():
        before = [m.decode(emb, box)[0] for _ in range(5)]
    assert calls == []  # nothing hashed or rebuilt per call
    runtime = m.runtime
    with torch.no_grad():
        m.mask_decoder.iou_token.weight.mul_(-1.5)  # an in-place edit the runtime cannot see ...
        m.mask_decoder.mask_tokens.weight.mul_(-1.5)
        stale = m.decode(emb, box)[0]
    assert torch.equal(stale, before[0]) and m.runtime is runtime  # ... until it is told
    m.weights_changed()
    try:
        with torch.no_grad():
            after = m.decode(emb, box)[0]
            eager = m._decode(emb, box)[0]
    finally:  # the export of these edited weights is of no use to anyone: out of the cache
        if m.runtime is not runtime and m.runtime.decoder_path is not None:
            shutil.rmtree(m.runtime.decoder_path.parent, ignore_errors=True)
    assert m.runtime is not runtime and m.runtime.name == "onnxruntime"
    assert not torch.allclose(after, before[0], atol=1e-3)
    torch.testing.assert_close(after, eager, atol=2e-3, rtol=1e-3)  # the new weights, compiled
    m.load_state_dict(m.state_dict())
    assert m.weights_version == 2  # load_state_dict bumps it too


# ------------------------------------------------------------------------------ thin images
THIN = [(3, 2000), (2000, 3)]


def _thin(hw):
    return np.tile(np.linspace(0, 255, max(hw)).astype(np.uint8), (min(hw), 1)).reshape(hw) \
        if hw[0] < hw[1] else np.tile(np.linspace(0, 255, max(hw)).astype(np.uint8)[:, None], (1, min(hw)))


def _whole(hw):
    return [0, 0, hw[1] - 1, hw[0] - 1]


@pytest.mark.parametrize("hw", THIN)
def test_thin_image_through_predictor_and_predict(hw, model, monkeypatch):
    image = _thin(hw)
    assert image.shape == hw and image.min() != image.max()
    calls = []
    monkeypatch.setattr(model, "encode", lambda x: calls.append(x) or pytest.fail("the encoder ran"))
    size = rf"{hw[0]}×{hw[1]} pixels .* short side becomes 0 px"
    with pytest.raises(ml.InputError, match=size):
        ml.Predictor(model).set_image(image)
    with pytest.raises(ml.InputError, match=size):
        ml.predict(image, _whole(hw), model=model)
    predictor = ml.Predictor(model)
    predictor.set_embedding(torch.zeros(256, 64, 64), original_hw=hw)  # a stored embedding of a thin image
    with pytest.raises(ml.InputError, match=size):
        predictor.predict(_whole(hw))
    assert calls == []


@pytest.mark.parametrize("hw", THIN)
def test_thin_image_through_the_cli(hw, tmp_path, capsys):
    from medsam_lite.app.cli import main

    io.write_volume(_thin(hw), tmp_path / "thin.png")
    out = tmp_path / "mask.png"
    code = main(["predict", str(tmp_path / "thin.png"), "--box", *map(str, _whole(hw)), "--out", str(out),
                 "--backend", "torch"])
    err = capsys.readouterr().err
    assert code == 2 and f"{hw[0]}×{hw[1]} pixels" in err and "short side becomes 0 px" in err
    assert "cv2" not in err and "Traceback" not in err and err.count("\n") == 1  # one line
    assert not out.exists()


@pytest.mark.parametrize("hw", THIN)
def test_thin_image_through_preprocess(hw, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    io.write_volume(_thin(hw), src / "strip.png")
    mask = np.zeros(hw, np.uint8)
    mask[: hw[0] // 2 + 1, : hw[1] // 2 + 1] = 255
    io.write_volume(mask, src / "strip_mask.png")
    with pytest.raises(ml.InputError, match=rf"{hw[0]}×{hw[1]} pixels .* short side becomes 0 px") as info:
        ml.preprocess(src, tmp_path / "out", progress=False)
    assert "strip.png" in str(info.value) and "at least 4 px" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_geometry_owns_the_stored_size_rule():
    for hw in [(512, 512), (300, 511), (97, 1000), (4, 2000), (1000, 97)]:
        for size in (256, 1024):
            # the rule preprocess, prepcheck and the prompts wrote by hand before
            assert Geometry.stored_size(hw, size) == Geometry(hw, size, "pad").resized_hw
            g = Geometry.stored(hw, size)
            assert g.stored_hw == g.resized_hw and g.check_size() is g
            spacing = Geometry(hw, 256, "pad", g.stored_hw).image_spacing((0.7, 0.9))
            (ih, iw) = g.stored_hw
            assert spacing == (0.7 / (ih / hw[0]), 0.9 / (iw / hw[1]))  # evaluate's numbers, unchanged
    with pytest.raises(ml.InputError, match=r"3×2000 pixels.*at least 4 px"):
        Geometry.stored_size((3, 2000), 256)
    Geometry((3, 2000), 256, "stretch").check_size()  # stretched to S×S: nothing vanishes


# ------------------------------------------------------------------------------ work done once
def test_finetune_hashes_the_encoder_once_and_reads_the_base_checkpoint_once(tiny, model, tmp_path, monkeypatch):
    fresh = ml.load_model(backend="torch")  # its encoder hash is not cached yet
    hashed, bases = [], []
    real_hash, real_base = store_module.state_sha256, finetune_module._base_checkpoint
    monkeypatch.setattr(store_module, "state_sha256", lambda *m: hashed.append(1) or real_hash(*m))
    monkeypatch.setattr(finetune_module, "_base_checkpoint", lambda m: bases.append(1) or real_base(m))
    ml.finetune(tiny, tmp_path / "ft", fresh, epochs=3, val_fraction=0, batch_size=2, progress=False)
    assert hashed == [1] and bases == [1]
    assert store_module.encoder_sha256(fresh) == store_module.encoder_sha256(model)
    with torch.no_grad():
        fresh.image_encoder.patch_embed.seq[0].c.weight.add_(1.0)
    fresh.weights_changed()
    assert store_module.encoder_sha256(fresh) != store_module.encoder_sha256(model)  # hashed again


def test_evaluate_hashes_the_slice_images_once(tmp_path, model, monkeypatch):
    d = samples.brain_mri_dir()
    ds = open_dataset(ml.preprocess({c: (d / f"{c}.nii.gz", d / f"{c}_label.nii.gz") for c in ("sub-01", "sub-02")},
                                    tmp_path / "ds", labels=[1], test_cases=["sub-02"], progress=False).pipe(
        lambda _: tmp_path / "ds"))
    counted = []
    real = store_module._rows_with_hashes
    monkeypatch.setattr(store_module, "_rows_with_hashes", lambda d: counted.append(1) or real(d))
    per_case, _ = ml.evaluate(model, ds, split=None, max_slices_per_case=1, progress=False)
    assert per_case["case"].nunique() == 2 and counted == [1]  # once for the store, not once more per case


def test_an_atomic_write_onto_a_folder_is_an_input_error(tmp_path):
    from medsam_lite.fileutil import atomic_write_text

    (tmp_path / "x.csv").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        atomic_write_text(tmp_path / "x.csv", "a,b\n")

"""embed(): the encoder runs once per slice; the store is checked, resumable and never mixed."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import medsam_lite as ml
from medsam_lite.data.embed import select_slices
from medsam_lite.data.store import open_store

from conftest import MAX_SLICES, SMALL_CASES as CASES

pytestmark = pytest.mark.usefixtures("reuse_encodings")  # a slice encoded again here is answered from memory


def count_encoder_calls(monkeypatch, model, fail_at=None):
    """Wrap ``model.encode``; return the list that records each call (optionally fail one)."""
    calls, original, failed = [], model.encode, []

    def counting(x):
        calls.append(x.shape[0])
        if fail_at is not None and len(calls) == fail_at and not failed:
            failed.append(True)
            raise KeyboardInterrupt("simulated interruption")
        return original(x)

    monkeypatch.setattr(model, "encode", counting)
    return calls


@pytest.fixture(scope="module")
def dataset(small_dataset):
    return small_dataset


@pytest.fixture(scope="module")
def store(dataset, model):
    return ml.embed(dataset, model, max_slices_per_case=MAX_SLICES, progress=False)


def test_stored_embedding_is_the_encoder_output(dataset, model, store):
    chosen = select_slices(dataset, max_slices_per_case=MAX_SLICES)
    assert len(chosen) == MAX_SLICES * len(CASES)
    assert store.done[chosen.index].all() and store.done.sum() == len(chosen)
    assert store.embeddings.dtype == np.float16 and store.embeddings.shape[1:] == (256, 64, 64)
    row = int(chosen.index[4])
    gray = dataset.image(dataset.slices.at[row, "image"])
    rgb = np.repeat(gray[..., None], 3, axis=2)
    direct = model.encode(model.geometry(gray.shape).image_to_model(rgb))[0]
    np.testing.assert_allclose(store.get(row).numpy(), direct.half().float().numpy(), atol=2e-3, rtol=0)
    assert store.signature["encoder_sha256"] != store.signature["weights_sha256"]  # hashes the encoder only
    assert store.signature["rows"] == len(dataset.slices)


def test_select_slices_keeps_consecutive_central_slices(dataset):
    chosen = select_slices(dataset, split="train", max_slices_per_case=MAX_SLICES)
    assert set(chosen["case"]) == {"sub-01", "sub-02"}
    for case, group in chosen.groupby("case"):
        all_slices = dataset.slices[dataset.slices["case"] == case]["slice"].to_numpy()
        picked = group["slice"].to_numpy()
        assert np.all(np.diff(picked) == 1)
        middle = all_slices[len(all_slices) // 2]
        assert picked.min() <= middle <= picked.max()
    with pytest.raises(ml.InputError, match="not in the dataset"):
        select_slices(dataset, cases=["sub-99"])


def test_reuse_runs_no_encoder(dataset, model, store, monkeypatch, capsys):
    calls = count_encoder_calls(monkeypatch, model)
    again = ml.embed(dataset, model, max_slices_per_case=MAX_SLICES)
    assert calls == []
    assert np.array_equal(again.done, store.done)
    out = capsys.readouterr().out
    assert "MiB on disk" in out and "0 to compute" in out


def test_fine_tuned_decoder_reuses_embeddings(dataset, model, store, tmp_path, monkeypatch):
    decoder = {k: v + 0.01 for k, v in model.state_dict().items() if k.startswith("mask_decoder.")}
    path = tmp_path / "decoder.pt"
    torch.save({"model": decoder, "model_name": "lite_medsam"}, path)
    tuned = ml.load_model(checkpoint=path)
    assert tuned.weights_sha256 != model.weights_sha256
    calls = count_encoder_calls(monkeypatch, tuned)
    ml.embed(dataset, tuned, max_slices_per_case=MAX_SLICES, progress=False)
    assert calls == []


def test_changed_encoder_is_refused_then_recomputed(dataset, model, tmp_path):
    path = tmp_path / "store"
    first = ml.embed(dataset, model, cases=["sub-01"], max_slices_per_case=1, path=path, progress=False)
    row = int(np.flatnonzero(first.done)[0])
    before = first.get(row).clone()
    changed = ml.load_model()
    with torch.no_grad():
        changed.image_encoder.patch_embed.seq[0].c.weight.mul_(1.1)  # any change to the encoder
    changed.weights_changed()  # an in-place edit is announced: the compiled runtime is rebuilt from it
    with pytest.raises(ml.StoreMismatchError, match="encoder_sha256") as info:
        ml.embed(dataset, changed, cases=["sub-01"], max_slices_per_case=1, path=path, progress=False)
    assert "recompute=True" in str(info.value)
    assert torch.equal(open_store(dataset, model, path=path).get(row), before)  # nothing touched
    redone = ml.embed(dataset, changed, cases=["sub-01"], max_slices_per_case=1, path=path,
                      recompute=True, progress=False)
    assert redone.done.sum() == 1 and redone.signature["encoder_sha256"] != first.signature["encoder_sha256"]
    assert not torch.allclose(redone.get(row), before, atol=1e-2)
    with pytest.raises(ml.StoreMismatchError, match="dtype"):
        ml.embed(dataset, changed, cases=["sub-01"], max_slices_per_case=1, path=path,
                 dtype="float32", progress=False)


def test_changed_dataset_is_refused(dataset, model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset.root, copy, ignore=shutil.ignore_patterns("embeddings"))
    ml.embed(copy, model, cases=["sub-01"], max_slices_per_case=1, progress=False)
    image = copy / dataset.slices.at[0, "image"]
    pixels = np.asarray(Image.open(image))
    Image.fromarray((255 - pixels).astype(np.uint8)).save(image)
    with pytest.raises(ml.StoreMismatchError, match="dataset_sha256"):
        ml.embed(copy, model, cases=["sub-01"], max_slices_per_case=1, progress=False)


def test_interrupted_run_resumes_without_half_entries(dataset, model, store, tmp_path, monkeypatch):
    path = tmp_path / "store"
    calls = count_encoder_calls(monkeypatch, model, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        ml.embed(dataset, model, cases=["sub-01"], max_slices_per_case=MAX_SLICES, path=path, progress=False)
    on_disk = open_store(dataset, model, path=path, create=False)
    assert on_disk.done.sum() == 1  # the entry whose encoding was interrupted is not marked done
    assert json.loads((path / "signature.json").read_text())["rows"] == len(dataset.slices)
    calls.clear()
    resumed = ml.embed(dataset, model, cases=["sub-01"], max_slices_per_case=MAX_SLICES, path=path, progress=False)
    assert len(calls) == MAX_SLICES - 1
    for row in np.flatnonzero(resumed.done):
        assert torch.equal(resumed.get(row), store.get(row))


def test_bad_inputs_are_explained(dataset, model, tmp_path):
    with pytest.raises(ml.InputError, match="dtype"):
        ml.embed(dataset, model, dtype="float64", progress=False)
    with pytest.raises(ml.InputError, match="batch_size"):
        ml.embed(dataset, model, batch_size=0, progress=False)
    with pytest.raises(ml.InputError, match="preprocess"):
        ml.embed(tmp_path, model, progress=False)
    with pytest.raises(ml.InputError, match="not computed"):
        store = open_store(dataset, model)
        store.get(int(np.flatnonzero(~store.done)[0]))

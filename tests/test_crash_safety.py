"""Crash safety with real processes: ``kill -9`` during ``embed`` and ``finetune``, then resume.

A child Python process (one thread, as every process on this 2-core machine) runs the real job on a
prepared copy of three sample subjects; the test process sleeps meanwhile and polls the files the
job writes. Once they show progress the child gets SIGKILL — no handler, no ``finally`` runs. The
rerun must find everything the child finished intact and valid, lose at most the unit in progress
(one slice's embedding, one epoch), and end with exactly what an uninterrupted run writes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import medsam_lite as ml
from medsam_lite.fileutil import TMP_PREFIX
from medsam_lite.data.dataset import open_dataset
from medsam_lite.data.embed import select_slices
from medsam_lite.data.store import open_store

K = 1  # central slices per case the jobs use (sub-01 and sub-02 train, sub-07 test)
FT = dict(max_slices_per_case=K, lr=1e-4, batch_size=4, seed=0)
TIMEOUT = 300  # seconds a child may take to show progress (it needs ~10 s)
pytestmark = pytest.mark.usefixtures("reuse_encodings")  # a slice encoded again here is answered from memory


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, small_dataset):
    """A copy of the shared small dataset without any embedding store."""
    shared = small_dataset.root
    root = tmp_path_factory.mktemp("crash") / "dataset"
    shutil.copytree(shared, root, ignore=shutil.ignore_patterns("embeddings"))
    return open_dataset(root)


def spawn(code: str) -> subprocess.Popen:
    """Run ``code`` in a fresh interpreter with one compute thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MEDSAM_LITE_THREADS="1",
               PYTHONUNBUFFERED="1")
    prelude = "import torch; torch.set_num_threads(1)\nimport medsam_lite as ml\n"
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")


def wait_for(proc: subprocess.Popen, ready, what: str):
    """Poll (sleeping, so this process leaves the cores to the child) until ``ready()`` is truthy."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the child ended (code {proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {what} within {TIMEOUT} s")


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def done_count(store_dir: Path) -> int:
    try:  # the flags file is created by a rename, so it is either absent or complete
        return int(np.load(store_dir / "done.npy", mmap_mode="r", allow_pickle=False).sum())
    except (FileNotFoundError, ValueError):
        return 0


def fresh_embedding(model, dataset, row: int) -> np.ndarray:
    gray = dataset.image(dataset.slices.at[row, "image"])
    rgb = np.repeat(gray[..., None], 3, axis=2)
    return model.encode(model.geometry(gray.shape).image_to_model(rgb))[0].half().float().numpy()


# ------------------------------------------------------------------------------------ embed
def test_kill_during_embed_then_resume(dataset, model, monkeypatch):
    store_dir = Path(dataset.root) / "embeddings" / "lite_medsam"
    wanted = select_slices(dataset, max_slices_per_case=K)  # one central slice of each of the 3 cases
    proc = spawn(f"ml.embed({str(dataset.root)!r}, max_slices_per_case={K}, progress=False)\n")
    wait_for(proc, lambda: done_count(store_dir) >= 1, "a stored embedding")
    kill9(proc)

    # what the killed child left: a complete store skeleton, some entries marked done, no temp files
    killed = open_store(dataset, model, create=False)  # signature checked: the store is reusable as is
    finished = np.flatnonzero(killed.done)
    assert 1 <= len(finished) < len(wanted), "the child should have been killed mid-run"
    assert set(finished) <= set(wanted.index)
    assert not list(store_dir.glob(f"{TMP_PREFIX}*"))
    sig = json.loads((store_dir / "signature.json").read_text())
    assert sig["rows"] == len(dataset.slices) and sig["model_name"] == "lite_medsam"
    by_child = {int(r): killed.get(int(r)).numpy().copy() for r in finished}

    # the rerun computes only what is missing and keeps the child's entries untouched
    calls, encode = [], model.encode
    monkeypatch.setattr(model, "encode", lambda x: calls.append(len(x)) or encode(x))
    store = ml.embed(dataset, model, max_slices_per_case=K, progress=False)
    monkeypatch.undo()
    assert sum(calls) == len(wanted) - len(finished)
    assert store.done[wanted.index].all() and store.done.sum() == len(wanted)
    for row, emb in by_child.items():
        assert np.array_equal(store.get(row).numpy(), emb)

    # entries marked done — one of the child's, one of the rerun's — equal a fresh encoding of their slice
    for row in (int(finished[0]), int(next(r for r in wanted.index if r not in by_child))):
        np.testing.assert_allclose(store.get(int(row)).numpy(), fresh_embedding(model, dataset, int(row)),
                                   atol=2e-3, rtol=0, err_msg=f"store row {row}")


# ------------------------------------------------------------------------------------ finetune
def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_kill_during_finetune_loses_at_most_the_epoch_in_progress(dataset, model, tmp_path):
    ml.embed(dataset, model, split="train", max_slices_per_case=K, progress=False)  # reused if stored
    out = tmp_path / "run"
    proc = spawn(f"""
        ml.finetune({str(dataset.root)!r}, {str(out)!r}, epochs=40, progress=False, **{FT!r})
    """)

    def finished_epochs():
        try:
            return _ckpt(out / "last.pt")["epoch"]
        except (FileNotFoundError, RuntimeError, EOFError, OSError):
            return 0

    seen = wait_for(proc, finished_epochs, "a first epoch checkpoint")
    time.sleep(0.5)  # into the next epoch's training steps
    kill9(proc)

    # the files the child left are complete and load safely
    last = _ckpt(out / "last.pt")
    k = int(last["epoch"])
    assert seen <= k < 40, "the child should have been killed mid-run"
    assert [h["epoch"] for h in last["history"]] == list(range(0, k + 1))  # epoch 0: the starting decoder
    tuned = ml.load_model(checkpoint=out / "last.pt")  # applies onto the base model
    assert all(torch.equal(tuned.state_dict()[n], t) for n, t in last["model"].items())
    if (out / "best.pt").exists():
        assert _ckpt(out / "best.pt")["epoch"] <= k
        ml.load_model(checkpoint=out / "best.pt")

    # resume: the finished epochs are kept as they were (not recomputed), training continues from
    # the optimizer state of epoch k, and the history has no gap
    result = ml.finetune(dataset, out, model, epochs=k + 1, resume=True, progress=False, **FT)
    history = result.history
    assert list(history["epoch"]) == list(range(0, k + 2))
    kept = pd.DataFrame(last["history"])
    pd.testing.assert_frame_equal(history.iloc[:k + 1].reset_index(drop=True), kept, check_dtype=False)
    final = _ckpt(result.last)
    assert final["epoch"] == k + 1
    steps = int(np.ceil(history["train_samples"].iloc[-1] / FT["batch_size"]))
    adam_steps = {int(s["step"]) for s in final["optimizer"]["state"].values()}
    assert adam_steps == {(k + 1) * steps}
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == list(range(0, k + 2))
    best = _ckpt(result.best)
    assert best["epoch"] == result.best_epoch


@pytest.mark.parametrize("die_at", [
    2,    # writing last.pt of epoch 0 (best.pt of epoch 0, the starting decoder, is already written)
    3,    # writing last.pt of epoch 1
])
def test_interrupted_checkpoint_writes_keep_best_and_last_consistent(dataset, model, tmp_path, monkeypatch,
                                                                    die_at):
    """An interruption at each checkpoint write (simulated: the n-th ``torch.save`` raises), then a
    resume: ``best.pt`` must still be the epoch with the best validation Dice. With a learning rate
    this small the weights cannot change, so validation Dice never improves on epoch 0 (the starting
    decoder, validated before training) and ``best.pt`` must be epoch 0's."""
    ml.embed(dataset, model, split="train", max_slices_per_case=K, progress=False)
    settings = dict(FT, lr=1e-12)
    out = tmp_path / "run"
    saves, save = [], torch.save

    def dying_save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == die_at:
            raise KeyboardInterrupt("simulated kill")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ml.finetune(dataset, out, model, epochs=2, progress=False, **settings)
    monkeypatch.undo()
    stale = out / f"{TMP_PREFIX}killed"  # what a kill -9 inside an atomic write leaves behind
    stale.write_bytes(b"partial checkpoint")
    own = out / ".tmp-notes.txt"  # a user's own file that merely looks temporary: never removed
    own.write_text("mine")
    result = ml.finetune(dataset, out, model, epochs=2, resume=True, progress=False, **settings)
    assert not stale.exists() and own.read_text() == "mine"
    assert list(result.history["epoch"]) == [0, 1, 2]
    assert result.history["val_dice"].nunique() == 1
    assert _ckpt(result.last)["epoch"] == 2
    assert _ckpt(result.best)["epoch"] == 0 and result.best_epoch == 0


# ------------------------------------------------------------------------------------ damaged files
def _spoil_store(kind: str, store_dir: Path) -> None:
    if kind == "done.npy cut":
        data = (store_dir / "done.npy").read_bytes()
        (store_dir / "done.npy").write_bytes(data[:40])
    elif kind == "embeddings.npy cut":
        data = (store_dir / "embeddings.npy").read_bytes()
        (store_dir / "embeddings.npy").write_bytes(data[:4096])
    elif kind == "rows.csv missing":
        (store_dir / "rows.csv").unlink()
    elif kind == "signature not an object":
        (store_dir / "signature.json").write_text("[]")


@pytest.fixture(scope="module")
def one_slice_store(dataset, model, tmp_path_factory):
    """A dataset of one real slice (the manifest cut down to sub-01's central slice) with its store."""
    root = tmp_path_factory.mktemp("one_slice") / "dataset"
    shutil.copytree(dataset.root, root, ignore=shutil.ignore_patterns("embeddings"))
    chosen = select_slices(dataset, cases=["sub-01"], max_slices_per_case=1)
    m = dataset.manifest
    m[(m["case"] == "sub-01") & (m["slice"] == int(chosen["slice"].iloc[0]))].to_csv(root / "manifest.csv",
                                                                                     index=False)
    ml.embed(root, model, progress=False)
    return root


@pytest.mark.parametrize("kind", ["done.npy cut", "embeddings.npy cut", "rows.csv missing",
                                  "signature not an object"])
def test_a_damaged_store_is_reported_and_rebuilt(one_slice_store, model, tmp_path, kind):
    """Files of a store damaged after the fact (disk full, a copy cut short) give the documented
    error, and recompute=True rebuilds the store."""
    copy = tmp_path / "copy"
    shutil.copytree(one_slice_store, copy)
    _spoil_store(kind, copy / "embeddings" / "lite_medsam")
    with pytest.raises(ml.InputError):
        ml.embed(copy, model, progress=False)
    store = ml.embed(copy, model, recompute=True, progress=False)
    assert store.done.sum() == 1 == len(store)


def test_resume_from_a_truncated_checkpoint_is_explained(dataset, model, tmp_path):
    """A last.pt cut short (a copy interrupted, a full disk) gives CheckpointError naming the file."""
    ml.embed(dataset, model, split="train", max_slices_per_case=K, progress=False)
    out = tmp_path / "run"
    out.mkdir()
    decoder = {k: v for k, v in model.state_dict().items() if k.startswith("mask_decoder.")}
    torch.save({"model": decoder, "model_name": "lite_medsam", "epoch": 1, "history": []}, out / "full.pt")
    data = (out / "full.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ml.CheckpointError, match="last.pt"):
        ml.finetune(dataset, out, model, epochs=2, resume=True, progress=False, **FT)


# ------------------------------------------------------------------------------------ random kill points
# The tests above kill at a chosen moment; these kill after a random delay (seeded, printed on
# failure), which lands anywhere: during the imports, the model load, the store's creation, an
# entry's write, or the output file's write. Whatever the moment, the documented recovery (run the
# same call again) must end with exactly what an uninterrupted run gives.

RANDOM_SEED = int(os.environ.get("MEDSAM_CRASH_SEED", time.time_ns() % 10_000))


def kill9_after(proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is None:
        kill9(proc)
    else:
        proc.communicate()


def test_kill_at_a_random_point_during_embed_then_rerun(dataset, model, tmp_path):
    rng = random.Random(RANDOM_SEED)
    root = tmp_path / "dataset"
    shutil.copytree(dataset.root, root, ignore=shutil.ignore_patterns("embeddings"))
    delay = rng.uniform(0.5, 12.0)
    proc = spawn(f"ml.embed({str(root)!r}, max_slices_per_case={K}, progress=False)\n")
    kill9_after(proc, delay)
    store = ml.embed(root, model, max_slices_per_case=K, progress=False)  # the documented recovery
    ds = open_dataset(root)
    wanted = select_slices(ds, max_slices_per_case=K)
    store_dir = root / "embeddings" / "lite_medsam"
    assert store.done[wanted.index].all() and store.done.sum() == len(wanted), f"seed {RANDOM_SEED}"
    assert not list(store_dir.glob(f"{TMP_PREFIX}*")), f"seed {RANDOM_SEED}, killed after {delay:.2f} s"
    for row in wanted.index:
        np.testing.assert_allclose(store.get(int(row)).numpy(), fresh_embedding(model, ds, int(row)), atol=2e-3,
                                   rtol=0, err_msg=f"row {row}; seed {RANDOM_SEED}, killed after {delay:.2f} s")


def test_kill_at_a_random_point_during_cli_predict_then_rerun(tmp_path):
    from medsam_lite import samples
    from medsam_lite.app import cli

    rng = random.Random(RANDOM_SEED + 1)
    image = samples.sample_path("brain_slice.png")
    argv = ["--threads", "1", "predict", str(image), "--box", "40", "50", "120", "150"]
    reference = tmp_path / "reference.png"
    assert cli.main(argv + ["--out", str(reference)]) == 0
    out = tmp_path / "out" / "mask.png"
    out.parent.mkdir()
    delay = rng.uniform(0.5, 10.0)
    proc = spawn(f"from medsam_lite.app.cli import main\nmain({argv + ['--out', str(out)]!r})\n")
    kill9_after(proc, delay)
    leftovers = [p.name for p in out.parent.iterdir() if p != out]
    if out.exists():  # written by a rename: complete or absent, never half a PNG
        assert out.read_bytes() == reference.read_bytes(), f"seed {RANDOM_SEED}, killed after {delay:.2f} s"
    assert cli.main(argv + ["--out", str(out)]) == 0  # the recovery: the same command again
    assert out.read_bytes() == reference.read_bytes()
    # a kill during the write may leave one temporary file (the OS removes nothing for a killed
    # process); it carries the temporary prefix, is never read as a mask, and is at most one
    assert all(name.startswith(".") for name in leftovers) and len(leftovers) <= 1, leftovers

"""Several processes: torchrun fine-tuning (DDP over gloo) matches one process; shards fill one store.

The multi-process tests start real processes with one compute thread each (two busy processes
on this 2-core machine, never more): ``torchrun --standalone --nproc_per_node 2`` for
fine-tuning, and two ``medsam-lite embed --shard i/2`` processes started together for embedding.
The processes run the real CLI through a small wrapper that records, per process, which store
rows it wrote (and into which file) and which checkpoint files it saved.

Measured on the 2-core CI machine (2 epochs, global batch 5 over 6 targets, lr 1e-4, seed 3):
2 processes vs 1 process — train/val loss differ by < 1e-7 and val Dice not at all; decoder
weights differ by ≤ 5.2e-6, except the attention key biases (``k_proj.bias``), whose true
gradient is exactly zero (softmax ignores a constant added to every key): their gradient is
float noise whose sign depends on the summation order, and Adam turns it into steps of ~lr, so
they differ by up to 1.8e-4. Tolerances: losses 1e-5, weights 5e-5 (1e-3 for the key biases,
above Adam's bound of ~2·lr per step over 4 steps).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import medsam_lite as ml
from medsam_lite import distributed
from medsam_lite.data.dataset import open_dataset
from medsam_lite.distributed import DistContext, parse_shard, rank_share
from medsam_lite.data.store import store_lock
from medsam_lite.fileutil import TMP_PREFIX
from medsam_lite.data.embed import select_slices
from medsam_lite.data.store import open_store

SLICES = 2  # central slices per case: sub-01, sub-02 (train: 6 targets each), sub-07 (test)
FT_ARGS = ["--epochs", "2", "--batch-size", "5", "--lr", "1e-4", "--seed", "3"]  # batches of 5 (3 + 2) and 1 (1 + 0)
LOSS_ATOL, WEIGHT_ATOL, KEY_BIAS_ATOL = 1e-5, 5e-5, 1e-3
pytestmark = pytest.mark.usefixtures("reuse_encodings")  # a slice encoded again here is answered from memory
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MEDSAM_LITE_THREADS="1", PYTHONUNBUFFERED="1")
for _k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_k, None)

#: Runs ``medsam_lite.app.cli.main(argv)`` and writes ``<report>.<rank>.json``: the store rows this
#: process wrote, the inode of the embeddings file it wrote into, the files it saved.
WRAPPER = textwrap.dedent('''
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import medsam_lite
    from medsam_lite.app import cli
    from medsam_lite.data.storefiles import EntryWriter

    import medsam_lite.data.embed as embed_module  # imported here: medsam_lite and the CLI import them lazily
    import medsam_lite.train.finetune as finetune_module
    report = {"rank": int(os.environ.get("RANK", 0)), "world_size": int(os.environ.get("WORLD_SIZE", 1)),
              "rows_written": [], "inodes": [], "saved": []}

    class RecordingWriter(EntryWriter):
        def __init__(self, path):
            super().__init__(path)
            report["inodes"].append(self.inode)

        def write(self, rows, values):
            super().write(rows, values)
            report["rows_written"].extend(int(r) for r in rows)

    save = finetune_module._save_atomic

    def recording_save(obj, path):
        report["saved"].append(os.path.basename(path))
        save(obj, path)

    embed_module.EntryWriter = RecordingWriter
    finetune_module._save_atomic = recording_save
    code = cli.main(sys.argv[2:])
    with open(f"{sys.argv[1]}.{report['rank']}.json", "w") as handle:
        json.dump({**report, "code": code}, handle)
    sys.exit(code)
''')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, small_dataset):
    """The shared small dataset cut down to its 2 central slices per case (6 slices), no store."""
    shared = small_dataset
    root = tmp_path_factory.mktemp("dist") / "tiny"
    shutil.copytree(shared.root, root, ignore=shutil.ignore_patterns("embeddings"))
    keep = select_slices(shared, max_slices_per_case=SLICES)
    m = shared.manifest.merge(keep[["case", "slice"]], on=["case", "slice"])
    m[shared.manifest.columns].to_csv(root / "manifest.csv", index=False)
    return open_dataset(root)


@pytest.fixture(scope="module")
def reference(tiny, model):
    """A single-process encoding of every slice of ``tiny``, as stored (float16), by store row."""
    out = {}
    for row, rel in tiny.slices["image"].items():
        gray = tiny.image(rel)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        out[int(row)] = model.encode(model.geometry(gray.shape).image_to_model(rgb))[0].half().float().numpy()
    return out


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist_script") / "run_cli.py"
    path.write_text(WRAPPER)
    return path


def fresh_copy(dataset, dest: Path) -> Path:
    shutil.copytree(dataset.root, dest, ignore=shutil.ignore_patterns("embeddings"))
    return dest


def reports(prefix: Path) -> dict[int, dict]:
    return {r["rank"]: r for r in (json.loads(p.read_text()) for p in prefix.parent.glob(prefix.name + ".*.json"))}


def run(cmd: list, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], env=ENV, capture_output=True, text=True, encoding="utf-8", timeout=900)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def assert_store_matches(dataset, model, reference, rows):
    store = open_store(dataset, model, create=False)
    for row in rows:
        assert store.done[row], f"store row {row} not done"
        np.testing.assert_allclose(store.get(row).numpy(), reference[row], atol=2e-3, rtol=0,
                                   err_msg=f"store row {row}")
    return store


# ------------------------------------------------------------------------------------ embed --shard
def test_two_shard_jobs_started_together_fill_one_store(tiny, model, reference, wrapper, tmp_path, monkeypatch):
    ds = fresh_copy(tiny, tmp_path / "ds")
    procs = [subprocess.Popen([sys.executable, str(wrapper), str(tmp_path / f"shard{i}"), "--threads", "1",
                               "embed", str(ds), "--shard", f"{i}/2"], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, encoding="utf-8") for i in range(2)]  # both race to create the store
    outputs = [p.communicate(timeout=900) for p in procs]
    for i, (p, (out, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"shard {i}/2 failed:\n{err[-4000:]}"
        assert f"shard {i}/2: 3 of them" in out
    done = [reports(tmp_path / f"shard{i}")[0] for i in range(2)]
    rows = list(range(len(tiny.slices)))
    assert [d["rows_written"] for d in done] == [rows[0::2], rows[1::2]]  # disjoint, each entry written once
    store_file = ds / "embeddings" / "lite_medsam" / "embeddings.npy"
    assert [d["inodes"] for d in done] == [[store_file.stat().st_ino]] * 2  # one store file, never replaced
    assert not list(store_file.parent.glob(f"{TMP_PREFIX}*")) and not list(store_file.parent.glob(".lock*"))

    store = assert_store_matches(open_dataset(ds), model, reference, rows)
    assert store.done.all()
    calls = []  # a later embed() without a shard finds nothing left to do
    monkeypatch.setattr(model, "encode", lambda x: calls.append(len(x)))
    ml.embed(ds, model, progress=False)
    assert calls == []


def test_an_unfinished_shard_is_completed_by_a_plain_embed(tiny, model, reference, tmp_path, monkeypatch):
    """Only shard 1/2 of sub-07's slices ran: embed() without a shard computes exactly the other one."""
    ds = fresh_copy(tiny, tmp_path / "ds")
    rows = list(select_slices(tiny, cases=["sub-07"]).index)
    store = ml.embed(ds, model, cases=["sub-07"], shard=(1, 2), progress=False)
    assert list(np.flatnonzero(store.done)) == rows[1::2]
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda x: calls.append(len(x)) or encode(x))
    ml.embed(ds, model, cases=["sub-07"], progress=False)
    assert calls == [1]
    assert_store_matches(open_dataset(ds), model, reference, rows)


# ------------------------------------------------------------------------------------ finetune under torchrun
def test_torchrun_finetune_matches_one_process(tiny, model, reference, wrapper, tmp_path, monkeypatch):
    ds = fresh_copy(tiny, tmp_path / "ds")  # no store yet: the two ranks embed the training slices
    ddp_out, one_out = tmp_path / "ddp", tmp_path / "one"
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", wrapper,
         tmp_path / "ddp_report", "--threads", "1", "finetune", ds, ddp_out, *FT_ARGS], "torchrun finetune")
    ddp = reports(tmp_path / "ddp_report")
    assert sorted(ddp) == [0, 1] and {r["world_size"] for r in ddp.values()} == {2}

    # embedding: each rank its share of the training slices, into the one store
    train_rows = sorted(select_slices(open_dataset(ds), "train").index)
    assert sorted(ddp[0]["rows_written"] + ddp[1]["rows_written"]) == train_rows
    assert not set(ddp[0]["rows_written"]) & set(ddp[1]["rows_written"]) and ddp[1]["rows_written"]
    assert_store_matches(open_dataset(ds), model, reference, train_rows)

    # checkpoints: rank 0 writes, rank 1 never does
    assert ddp[1]["saved"] == [] and ddp[0]["saved"].count("last.pt") == 3  # epochs 0 (the starting decoder), 1, 2
    assert sorted(p.name for p in ddp_out.iterdir()) == ["best.pt", "history.csv", "last.pt"]

    # the one-process run: the same CLI command in this process (a process of its own would only add
    # its start), the store writer recorded as the wrapper records it
    import medsam_lite.data.embed as embed_module
    from medsam_lite.app import cli

    written = []

    class RecordingWriter(embed_module.EntryWriter):
        def write(self, rows, values):
            super().write(rows, values)
            written.extend(int(r) for r in rows)

    monkeypatch.setattr(embed_module, "EntryWriter", RecordingWriter)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # cli.main sets it for --threads: put back after the test
    assert cli.main(["--threads", "1", "finetune", str(ds), str(one_out), *FT_ARGS]) == 0, "one-process finetune"
    assert written == []  # reused the store

    a, b = (torch.load(d / "last.pt", map_location="cpu", weights_only=True) for d in (one_out, ddp_out))
    assert set(a) == set(b) and set(a["model"]) == set(b["model"])  # the same checkpoint format
    assert all(k.startswith("mask_decoder.") for k in b["model"])  # no "module." prefix
    assert json.loads(a["config"]) == json.loads(b["config"]) and a["epoch"] == b["epoch"] == 2
    ha, hb = pd.read_csv(one_out / "history.csv"), pd.read_csv(ddp_out / "history.csv")
    assert list(hb["train_samples"]) == [0, 6, 6]  # 6 targets: the last global batch leaves rank 1 empty
    for col in ("train_loss", "val_loss", "val_dice"):
        np.testing.assert_allclose(hb[col], ha[col], rtol=0, atol=LOSS_ATOL, err_msg=col)
    np.testing.assert_array_equal([h["train_loss"] for h in b["history"]], hb["train_loss"])  # epoch 0: NaN
    for key, value in a["model"].items():
        atol = KEY_BIAS_ATOL if key.endswith("k_proj.bias") else WEIGHT_ATOL
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=atol, msg=key)
    base = model.state_dict()
    moved = torch.cat([(b["model"][k] - base[k]).abs().flatten() for k in b["model"]])
    assert (moved > WEIGHT_ATOL).float().mean() > 0.1  # the tolerance is far below what training changes

    tuned = ml.load_model(checkpoint=ddp_out / "best.pt")
    best = torch.load(ddp_out / "best.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in best["model"].items())


# ------------------------------------------------------------------------------------ one process, units
def test_one_process_is_left_alone(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    ctx = distributed.init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert not torch.distributed.is_initialized()
    idx, boxes = np.arange(5), np.zeros((5, 4))
    assert rank_share(idx, boxes)[2:] == (5, 1.0)
    assert distributed.from_main({"a": 1.5}) == {"a": 1.5} and distributed.all_sum(2.5) == 2.5
    assert distributed.default_device() is None
    distributed.barrier()


def test_rank_shares_add_up_to_the_global_batch(monkeypatch):
    """Rank r takes positions r::W; weights × DDP's mean over ranks give the global mean loss."""
    idx, boxes = np.arange(10, 15), np.arange(20).reshape(5, 4)
    shares = []
    for rank in range(2):
        monkeypatch.setattr(distributed, "dist_context", lambda r=rank: DistContext(r, 2, r, 2, initialized=True))
        shares.append(rank_share(idx, boxes))
    assert list(shares[0][0]) == [10, 12, 14] and list(shares[1][0]) == [11, 13]
    assert np.array_equal(shares[1][1], boxes[1::2])
    assert [s[2] for s in shares] == [3, 2]
    per_sample = np.random.default_rng(0).random(20)  # any per-sample losses
    ddp_mean = np.mean([w * per_sample[i].mean() for i, _, _, w in shares])  # DDP averages weight × rank mean
    assert ddp_mean == pytest.approx(per_sample[idx].mean())
    monkeypatch.setattr(distributed, "dist_context", lambda: DistContext(1, 2, 1, 2, initialized=True))
    idx_r, _, count, weight = rank_share(idx[:1], boxes[:1])  # a batch of one: rank 1 joins with weight 0
    assert len(idx_r) == 1 and (count, weight) == (0, 0.0)


@pytest.mark.parametrize("env, fragment", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "torchrun"),
])
def test_bad_launcher_settings_are_explained(monkeypatch, env, fragment):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ml.InputError, match=fragment):
        distributed.dist_context()


def test_world_size_without_a_rendezvous_is_explained(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ml.InputError, match="MASTER_ADDR.*torchrun"):
        distributed.init_distributed()


@pytest.mark.parametrize("good, expected", [("0/2", (0, 2)), ("3/4", (3, 4)), ((1, 2), (1, 2)), (None, None)])
def test_shard_accepts_i_of_n(good, expected):
    assert parse_shard(good) == expected


@pytest.mark.parametrize("bad", ["2/2", "1of4", "-1/2", "0/0", "a/b", "1/2/3", (1.0, 2), (True, 2), 3])
def test_bad_shard_is_refused_before_any_file_is_written(tiny, model, bad):
    before = sorted(p.relative_to(tiny.root) for p in Path(tiny.root).rglob("*"))
    with pytest.raises(ml.InputError, match="0 ≤ I < N"):
        ml.embed(tiny, model, shard=bad, progress=False)
    assert sorted(p.relative_to(tiny.root) for p in Path(tiny.root).rglob("*")) == before


def test_cli_refuses_a_bad_shard_with_exit_code_2(capsys):
    from medsam_lite.app.cli import main

    with pytest.raises(SystemExit) as info:
        main(["embed", "some_dataset", "--shard", "4/4"])
    assert info.value.code == 2
    assert "--shard" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the store lock
def _contend(folder: Path, hold: float = 0.3) -> list[str]:
    """Two threads take the lock at once; the log shows whether their critical sections overlap."""
    log, start = [], threading.Barrier(2)

    def worker(name):
        start.wait()
        with store_lock(folder):
            log.append(f"{name} in")
            time.sleep(hold)
            log.append(f"{name} out")

    threads = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return log


def test_store_lock_lets_one_process_at_a_time_in(tmp_path):
    log = _contend(tmp_path / "store")
    assert len(log) == 4 and log[0][0] == log[1][0] and log[2][0] == log[3][0]  # never interleaved


def test_store_lock_without_flock_uses_an_exclusive_file(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "no locks on this filesystem")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    folder = tmp_path / "store"
    log = _contend(folder)
    assert len(log) == 4 and log[0][0] == log[1][0] and log[2][0] == log[3][0]
    assert not (folder / ".lock.owner").exists()
    # the leftover of a process that died on this host does not block anyone
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / ".lock.owner").write_text(f"{socket.gethostname()} {dead.pid}")
    with store_lock(folder, poll_seconds=0.01):
        pass

"""The export cache (model/exportcache.py, model/backends.py): usable or not, decided once for every
errno and depth of its path; the backend choice file's mode; least-recently-used eviction beyond the
size cap, under the cache's lock, never of an export in use."""

from __future__ import annotations

import errno
import json
import os
import stat
import time
import warnings
from pathlib import Path

import pytest

from medsam_lite.fileutil import FolderLock
from medsam_lite.model import backend_choice, backends, exportcache


def _raise(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(args[0]) if args else None)
    return fail


@pytest.mark.parametrize("where", ["file", "file/a", "file/a/b", "file/a/b/c/d"])
def test_a_cache_under_a_file_at_any_depth_runs_in_torch_with_one_warning(tmp_path, model, where):
    (tmp_path / "file").write_text("not a folder")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runtime = backends.build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                                         backend="auto", cache_dir=tmp_path / where, progress=False)
    said = [str(w.message) for w in seen if "MEDSAM_LITE_CACHE" in str(w.message)]
    assert runtime.name == "torch" and len(said) == 1 and "Not a directory" in said[0]
    assert (tmp_path / "file").read_text() == "not a folder" and sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC, errno.ENAMETOOLONG, errno.EIO])
def test_every_errno_of_the_cache_is_one_answer_before_any_export(tmp_path, monkeypatch, model, code):
    from types import SimpleNamespace

    # the probe's temporary file fails as a read-only / full / odd file system answers (tests may run as root)
    monkeypatch.setattr(exportcache, "tempfile", SimpleNamespace(mkstemp=_raise(code)))
    monkeypatch.setattr(backends, "_export", lambda *a: pytest.fail("exported into an unusable cache"))
    assert exportcache.cache_problem(tmp_path / "c").errno == code
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runtime = backends.build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                                         backend="onnxruntime", cache_dir=tmp_path / "c", progress=False)
    assert runtime.name == "torch" and len([w for w in seen if "MEDSAM_LITE_CACHE" in str(w.message)]) == 1


def test_the_backend_choice_file_has_the_mode_of_every_other_cache_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = backend_choice.write_choice(tmp_path, {"cpu": "x"}, {"encoder": "torch", "decoder": "torch"})
        other = tmp_path / "other.txt"
        from medsam_lite.fileutil import atomic_write_text

        atomic_write_text(other, "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(other.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    assert next(iter(json.loads(path.read_text()).values()))["encoder"] == "torch"


def _fake_export(exports: Path, name: str, mb: float, used: float) -> Path:
    folder = exports / name
    folder.mkdir(parents=True)
    (folder / "part.onnx").write_bytes(b"\0" * int(mb * 1e6))
    (folder / "meta.json").write_text("{}")
    os.utime(folder, (used, used))
    return folder


def test_eviction_removes_least_recently_used_exports_beyond_the_cap(tmp_path, monkeypatch):
    now = time.time()
    exports = tmp_path / "exports"
    old = [_fake_export(exports, f"decoder-{i:016x}-0-onnxruntime", 1.0, now - 3600 * (10 - i)) for i in range(6)]
    fresh = _fake_export(exports, "decoder-in-use-by-another", 1.0, now - 5)  # another process just loaded it
    mine = old[0]  # the oldest, but this process uses it
    (exports / "backend_choice.json").write_text("{}")
    monkeypatch.setenv("MEDSAM_LITE_CACHE_MAX_MB", "3.5")
    removed = exportcache.evict(exports, keep={mine})
    assert removed == old[1:5]  # oldest first, skipping the one in use; 3 exports = 3 MB ≤ 3.5 MB remain
    assert sorted(p.name for p in exports.iterdir()) == sorted([mine.name, old[5].name, fresh.name,
                                                                 "backend_choice.json"])
    monkeypatch.setenv("MEDSAM_LITE_CACHE_MAX_MB", "0")  # no cap
    assert exportcache.evict(exports) == []
    monkeypatch.setenv("MEDSAM_LITE_CACHE_MAX_MB", "lots")
    with pytest.raises(Exception, match="MEDSAM_LITE_CACHE_MAX_MB='lots' must be a number of megabytes"):
        exportcache.evict(exports)


def test_a_new_export_evicts_under_the_lock_and_keeps_the_exports_in_use(tmp_path, monkeypatch):
    """Through the real export path: an export beyond the cap removes the oldest one, while holding the
    cache's lock (a second locker is refused meanwhile), never the export just built."""
    now = time.time()
    exports = tmp_path / "exports"
    stale = [_fake_export(exports, f"decoder-{i:016x}-0-onnxruntime", 2.0, now - 3600 * (5 - i)) for i in range(3)]
    monkeypatch.setenv("MEDSAM_LITE_CACHE_MAX_MB", "5")
    locked = []

    def export(part, module, path, input_size):
        Path(path).write_bytes(b"\1" * 2_000_000)

    real_evict = exportcache.evict

    def evict(folder, **kwargs):
        with pytest.raises(Exception, match="export"):  # the cache's lock is held while evicting
            with FolderLock(folder, "export", wait=0):
                pass
        locked.append(True)
        return real_evict(folder, **kwargs)

    monkeypatch.setattr(backends, "_export", export)
    monkeypatch.setattr(exportcache, "evict", evict)
    path = backends.export_cached("decoder", lambda: None, "ab" * 32, "onnxruntime", tmp_path, 256, False)
    assert locked and path.is_file()
    left = sorted(p.name for p in exports.iterdir() if not p.name.startswith("."))
    assert left == sorted([stale[2].name, path.parent.name])  # 4 MB ≤ 5 MB: the two oldest went
    assert path.parent.resolve() in {p.resolve() for p in backends._IN_USE}


def test_compiled_models_go_with_their_export_and_manifests_are_never_evicted(tmp_path, monkeypatch):
    """``exports/compiled/<export>/`` (OpenVINO blobs, ORT's optimised graph) counts toward its export's
    size and leaves with it; ``compiled/`` and ``models/`` (the torch-free manifests) are not exports."""
    now = time.time()
    exports = tmp_path / "exports"
    old = _fake_export(exports, "encoder-0000000000000000-0-openvino", 1.0, now - 7200)
    new = _fake_export(exports, "encoder-1111111111111111-0-openvino", 1.0, now - 3600)
    for folder in (old, new):
        (exports / "compiled" / folder.name).mkdir(parents=True)
        (exports / "compiled" / folder.name / "blob").write_bytes(b"\0" * 1_000_000)
    (exports / "models").mkdir()
    (exports / "models" / "abc.json").write_text("{}")
    os.utime(exports / "compiled", (now - 99999, now - 99999))
    os.utime(exports / "models", (now - 99999, now - 99999))
    monkeypatch.setenv("MEDSAM_LITE_CACHE_MAX_MB", "3")  # two exports with their compiled models: 4 MB
    assert exportcache.evict(exports) == [old]
    assert not (exports / "compiled" / old.name).exists()
    assert (exports / "compiled" / new.name / "blob").exists() and (exports / "models" / "abc.json").exists()

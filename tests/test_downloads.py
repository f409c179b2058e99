"""Checksummed checkpoint downloads (medsam_lite.downloads), against a local HTTP server only."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import warnings
from functools import partial

import pytest

from medsam_lite import downloads
from medsam_lite.errors import CheckpointError, InputError


@pytest.fixture
def server(tmp_path):
    """A local http.server on 127.0.0.1 serving ``tmp_path/www``; yields (base URL, hits list)."""
    www = tmp_path / "www"
    www.mkdir()
    # a real file the package ships, so the served bytes are not made up
    payload = open(downloads.__file__, "rb").read()
    (www / "weights.pth").write_bytes(payload)
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits, hashlib.sha256(payload).hexdigest(), payload
    httpd.shutdown()
    httpd.server_close()


def test_download_is_verified_and_cached(server, tmp_path):
    base, hits, sha, payload = server
    cache = tmp_path / "cache" / "checkpoints"
    path = downloads.fetch(f"{base}/weights.pth", sha, "w.pth", cache_dir=cache, progress=False)
    assert path == cache / "w.pth" and path.read_bytes() == payload
    assert hits == ["/weights.pth"]
    again = downloads.fetch(f"{base}/weights.pth", sha, "w.pth", cache_dir=cache, progress=False)
    assert again == path and hits == ["/weights.pth"]  # the second call did not download
    assert sorted(p.name for p in cache.iterdir()) == ["w.pth"]


def test_default_cache_folder_follows_the_environment(server, tmp_path, monkeypatch):
    base, _, sha, _ = server
    monkeypatch.setenv("MEDSAM_LITE_CACHE", str(tmp_path / "mycache"))
    assert downloads.checkpoint_dir() == tmp_path / "mycache" / "checkpoints"
    path = downloads.fetch(f"{base}/weights.pth", sha, "w.pth", progress=False)
    assert path == tmp_path / "mycache" / "checkpoints" / "w.pth"
    monkeypatch.delenv("MEDSAM_LITE_CACHE")
    assert downloads.checkpoint_dir() == downloads.Path.home() / ".cache" / "medsam_lite" / "checkpoints"


def test_wrong_checksum_is_refused_and_nothing_is_left(server, tmp_path):
    base, _, sha, _ = server
    cache = tmp_path / "new" / "checkpoints"
    wrong = "0" * 64
    with pytest.raises(CheckpointError, match=r"does not match its pinned SHA-256") as err:
        downloads.fetch(f"{base}/weights.pth", wrong, "w.pth", cache_dir=cache, progress=False)
    assert str(cache / "w.pth") in str(err.value) and f"{base}/weights.pth" in str(err.value)
    assert not (tmp_path / "new").exists()  # the folders it created are gone too


def test_unreachable_server_names_the_url_and_the_path(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/sam.pth"
    cache = tmp_path / "checkpoints"
    with pytest.raises(CheckpointError) as err:
        downloads.fetch(url, "a" * 64, "sam.pth", cache_dir=cache, progress=False)
    msg = str(err.value)
    assert url in msg and str(cache / "sam.pth") in msg and "by hand" in msg
    assert not cache.exists()


def test_missing_file_on_the_server_is_a_checkpoint_error(server, tmp_path):
    base, _, sha, _ = server
    with pytest.raises(CheckpointError, match="404"):
        downloads.fetch(f"{base}/nothing.pth", sha, "n.pth", cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()


def test_unknown_checksum_downloads_with_a_loud_warning(server, tmp_path):
    base, _, _, payload = server
    with pytest.warns(UserWarning, match="NOT verified"):
        path = downloads.fetch(f"{base}/weights.pth", None, "w.pth", cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == payload


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="URL"):
        downloads.fetch("ftp://x/y", None, "y", cache_dir=tmp_path)
    with pytest.raises(InputError, match="64 hexadecimal"):
        downloads.fetch("http://127.0.0.1/y", "abc", "y", cache_dir=tmp_path)
    with pytest.raises(InputError, match="plain file name"):
        downloads.fetch("http://127.0.0.1/y", None, "../y", cache_dir=tmp_path)
    with pytest.raises(InputError, match="known"):
        downloads.fetch_checkpoint("sam_vit_x", cache_dir=tmp_path)


def test_table_of_checkpoints(tmp_path):
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h"):
        d = downloads.CHECKPOINTS[name]
        assert d.url.startswith("https://dl.fbaipublicfiles.com/segment_anything/") and d.url.endswith(d.filename)
        assert len(d.sha256) == 64
    # MedSAM ViT-B: no direct URL -> the message says where to put it; found once it is there
    with pytest.raises(CheckpointError, match="Google Drive") as err:
        downloads.fetch_checkpoint("medsam_vit_b", cache_dir=tmp_path)
    assert str(tmp_path / "medsam_vit_b.pth") in str(err.value)
    (tmp_path / "medsam_vit_b.pth").write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert downloads.fetch_checkpoint("medsam_vit_b", cache_dir=tmp_path) == tmp_path / "medsam_vit_b.pth"

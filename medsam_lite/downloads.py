"""Checkpoints on demand: checksummed downloads into a cache folder (pooch), with a way out offline.

The cache folder is ``$MEDSAM_LITE_CACHE/checkpoints`` if that variable is set, else
``~/.cache/medsam_lite/checkpoints``. :func:`fetch_checkpoint` (``"sam_vit_b"`` …) returns the
cached file, downloading it first when it is missing; its SHA-256 is pinned in
:data:`CHECKPOINTS`. Offline, or when the server cannot be reached, it raises a
:class:`~medsam_lite.errors.CheckpointError` that names the URL and the exact path where to put
the file by hand. The bundled LiteMedSAM checkpoint needs no download.

MedSAM ViT-B (``medsam_vit_b.pth``) is published only in a Google Drive folder (no direct URL, no
published checksum): it is never downloaded; put it in the cache folder by hand, or pass its path.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError, InputError
from .fileutil import remove_empty_folders

__all__ = ["CHECKPOINTS", "Download", "checkpoint_dir", "fetch", "fetch_checkpoint"]


@dataclass(frozen=True)
class Download:
    """A file to download: its URL (None: no direct link), pinned SHA-256 (None: unknown), name."""

    url: str | None
    sha256: str | None
    filename: str
    page: str = ""


#: Known checkpoints. The SAM checksums are the official ones of Meta's release files
#: (the same values are pinned by micro-sam and others); MedSAM publishes neither URL nor checksum.
CHECKPOINTS: dict[str, Download] = {
    "sam_vit_b": Download("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
                          "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
                          "sam_vit_b_01ec64.pth",
                          "https://github.com/facebookresearch/segment-anything#model-checkpoints"),
    "sam_vit_l": Download("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
                          "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
                          "sam_vit_l_0b3195.pth",
                          "https://github.com/facebookresearch/segment-anything#model-checkpoints"),
    "sam_vit_h": Download("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
                          "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
                          "sam_vit_h_4b8939.pth",
                          "https://github.com/facebookresearch/segment-anything#model-checkpoints"),
    "medsam_vit_b": Download(None, None, "medsam_vit_b.pth",
                             "https://drive.google.com/drive/folders/1ETWmi4AiniJeWOt6HAsYgTjYv_fkpMSQ"),
}


def checkpoint_dir() -> Path:
    """``$MEDSAM_LITE_CACHE/checkpoints``, else ``~/.cache/medsam_lite/checkpoints`` (not created)."""
    root = os.environ.get("MEDSAM_LITE_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "medsam_lite") / "checkpoints"


def _check_sha(sha256) -> str | None:
    if sha256 is None:
        return None
    s = str(sha256).lower().removeprefix("sha256:")
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise InputError(f"sha256 must be 64 hexadecimal digits (or None), got {sha256!r}.")
    return s


def fetch(url: str, sha256: str | None, filename: str, *, cache_dir: str | Path | None = None,
          progress: bool = True) -> Path:
    """The cached copy of ``url``, downloaded (and checked against ``sha256``) when missing.

    Args:
        url: an ``http(s)://`` URL.
        sha256: the file's pinned SHA-256 (64 hex digits). ``None`` skips the check, with a warning.
        filename: the name of the file in the cache folder (no folders).
        cache_dir: the folder (default :func:`checkpoint_dir`); created when needed.
        progress: show a download progress bar (tqdm).

    Returns:
        The path of the verified file (a second call returns it without downloading).

    Raises:
        CheckpointError: the server cannot be reached (offline), answers with an error, or the file
            does not match ``sha256`` — the message gives the URL and the exact path where to put
            the file by hand. Nothing is left behind (no partial file, no new empty folder).
        InputError: a bad ``url``, ``sha256`` or ``filename``.
    """
    import pooch
    import requests

    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InputError(f"url must be an http(s):// URL, got {url!r}.")
    sha = _check_sha(sha256)
    if not isinstance(filename, str) or not filename or Path(filename).name != filename or filename in (".", ".."):
        raise InputError(f"filename must be a plain file name (no folders), got {filename!r}.")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else checkpoint_dir()
    target = folder / filename
    by_hand = (f"Download it by hand from {url} and save it as {target}"
               f"{f' (sha256 {sha})' if sha else ''}, or pass its path as checkpoint=.")
    if sha is None:
        warnings.warn(f"no pinned SHA-256 for {filename}: the file from {url} is NOT verified; check it "
                      "yourself (sha256sum) before trusting it.", stacklevel=2)
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{sha}" if sha else None, fname=filename,
                              path=folder, progressbar=progress,
                              downloader=pooch.HTTPDownloader(progressbar=progress, timeout=30))
    except ValueError as exc:  # pooch: hash mismatch (the downloaded temporary file is removed)
        remove_empty_folders(created)
        raise CheckpointError(f"the file downloaded from {url} does not match its pinned SHA-256 "
                              f"({str(exc).strip()[:200]}); it was discarded. Try again later. {by_hand}") from None
    except (requests.exceptions.RequestException, OSError) as exc:
        remove_empty_folders(created)
        raise CheckpointError(f"could not download {filename} from {url} ({type(exc).__name__}: "
                              f"{str(exc)[:160]}); are you offline? {by_hand}") from None
    return Path(path)


def fetch_checkpoint(name: str, *, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The checkpoint file of a model of the table (``"sam_vit_b"``, ``"sam_vit_l"``, ``"sam_vit_h"``,
    ``"medsam_vit_b"``), from the cache or downloaded with its pinned SHA-256.

    For ``load_model(name)`` without ``checkpoint=``. MedSAM ViT-B has no direct URL: it is returned
    if it is already in the cache folder, else the error says where to put it.

    Raises:
        CheckpointError: offline / unreachable / checksum mismatch (see :func:`fetch`), or MedSAM ViT-B
            not in the cache.
        InputError: a model name that is not in :data:`CHECKPOINTS`.
    """
    if name not in CHECKPOINTS:
        raise InputError(f"no download is known for model {name!r}; known: {sorted(CHECKPOINTS)} "
                         "(LiteMedSAM is bundled and needs none).")
    d = CHECKPOINTS[name]
    if d.url is None:
        target = (Path(cache_dir).expanduser() if cache_dir is not None else checkpoint_dir()) / d.filename
        if target.is_file():
            return target
        raise CheckpointError(
            f"{name} has no direct download URL (its authors share it in a Google Drive folder: {d.page}). "
            f"Download {d.filename} from there and save it as {target}, or pass "
            f"load_model({name!r}, checkpoint='path/to/{d.filename}').")
    return fetch(d.url, d.sha256, d.filename, cache_dir=cache_dir, progress=progress)

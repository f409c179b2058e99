"""Safe file writing shared by every writer of medsam_lite: atomic writes, a folder lock, free space.

* :func:`atomic_write` / :func:`atomic_write_text` write to a temporary name in the target's folder
  (``.medsam-tmp-*``), flush, then ``os.replace`` it onto the target: a reader (or a run killed at
  any moment) sees the old file or the new one, never half of one. On any error the temporary file
  is removed; a full disk or a read-only folder becomes an :class:`~medsam_lite.errors.InputError`.
* :class:`FolderLock` keeps two runs from writing into one folder: a lock file created with
  ``O_CREAT | O_EXCL`` holding the owner's pid and host, removed at exit; a lock left by a killed
  process (its pid no longer runs on this host) is taken over.
* :func:`check_free_space` refuses a write that would not fit, before the first byte is written.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

__all__ = ["TMP_PREFIX", "FolderLock", "atomic_write", "atomic_write_text", "check_free_space",
           "check_writable", "os_error_to_input_error"]

#: Prefix of the temporary files of :func:`atomic_write` (only these are ever cleaned up).
TMP_PREFIX = ".medsam-tmp-"
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS}
#: The longest file or folder name most file systems accept (bytes, ext4/APFS/NTFS).
NAME_MAX = 255


def os_error_to_input_error(exc: OSError, path: Path, hint: str = "") -> InputError | OSError:
    """An :class:`InputError` for a full disk or an unwritable folder (else ``exc`` unchanged)."""
    where = Path(path).parent
    if exc.errno in _NO_SPACE:
        return InputError(f"no space left on the disk of {where} while writing {Path(path).name}; free "
                          f"some space or choose another folder.{(' ' + hint) if hint else ''}")
    if exc.errno in _NO_WRITE:
        return InputError(f"cannot write into {where} ({exc.strerror}); choose a folder you can write to "
                          f"or fix its permissions.{(' ' + hint) if hint else ''}")
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        what = "a folder" if exc.errno == errno.EISDIR else "a file where a folder belongs"
        return InputError(f"cannot write {path}: it (or a part of its path) is {what}; move it away or choose "
                          "another path.")
    if exc.errno == errno.ENAMETOOLONG:
        return InputError(f"the file name {Path(path).name[:60]!r}… is too long for this file system; "
                          "use shorter case names.")
    return exc


def atomic_write(path: str | Path, writer: Callable[[BinaryIO], None], *, hint: str = "",
                 fsync: bool = False) -> None:
    """Write ``path`` atomically: ``writer(f)`` fills a binary temporary file that then replaces it.

    Args:
        path: the file to (re)write; its folder must exist.
        writer: called once with the open binary file (e.g. ``lambda f: image.save(f, "PNG")``).
        hint: appended to the message of a full-disk / permission error (e.g. how to resume).
        fsync: also flush the file to the disk before the rename (survives a power cut, slower);
            not needed against a killed process.

    Raises:
        InputError: no space left, or the folder is not writable (the temporary file is removed and
            ``path`` keeps its old content, if any).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    except OSError as exc:
        raise os_error_to_input_error(exc, path, hint) from None
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise os_error_to_input_error(exc, path, hint) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str, *, hint: str = "", fsync: bool = False) -> None:
    """:func:`atomic_write` of a UTF-8 text."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), hint=hint, fsync=fsync)


def check_free_space(folder: str | Path, needed_bytes: int, what: str) -> None:
    """Refuse (before anything is written) when ``folder``'s disk has less than ``needed_bytes`` free.

    ``folder`` may not exist yet: its nearest existing parent is measured.

    Raises:
        InputError: "no space left on …" with the sizes, naming ``what`` would be written.
    """
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise InputError(f"no space left on the disk of {probe}: {what} needs about "
                         f"{needed_bytes / 2**20:,.1f} MiB, {free / 2**20:,.1f} MiB are free. Free some "
                         "space or choose another folder.")


def check_writable(folder: str | Path, what: str) -> None:
    """Refuse (before any work) a folder this process cannot create files in.

    ``folder`` may not exist yet: its nearest existing parent must then be a writable folder (the
    caller creates the rest). The check creates and removes one empty ``.medsam-tmp-*`` file, so it
    holds for read-only mounts, ACLs and root squash, where permission bits would mislead.

    Raises:
        InputError: naming ``what`` (e.g. ``"out_dir"``), the folder and the fix.
    """
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{what} {folder} cannot be created: {probe} is a file, not a folder; choose another "
                         "folder.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=probe)
    except OSError as exc:
        raise InputError(f"{what}: cannot write into {probe} ({exc.strerror}); choose a folder you can write "
                         "to, or fix its permissions. Nothing was computed.") from None
    os.close(fd)
    os.unlink(tmp)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


class FolderLock:
    """``with FolderLock(folder, "preprocess"):`` — one writer per folder at a time.

    The lock file ``folder/.lock`` is created with ``O_CREAT | O_EXCL`` (atomic on local file
    systems) and holds ``{"pid", "host", "what"}``; it is removed on exit. A lock whose pid no longer
    runs on this host (a killed run) is stale and taken over.

    Raises:
        InputError: another live process holds the lock (the message names it and how to proceed).
    """

    def __init__(self, folder: str | Path, what: str, name: str = ".lock"):
        self.path = Path(folder) / name
        self.what = what
        self._held = False

    def _owner(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> FolderLock:
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}).encode()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                pid, host = owner.get("pid"), owner.get("host")
                mine = host == socket.gethostname()
                if isinstance(pid, int) and mine and not _pid_alive(pid):
                    self.path.unlink(missing_ok=True)  # stale: left by a killed run on this host
                    continue
                raise InputError(
                    f"{self.path.parent} is being written by another {owner.get('what', 'medsam_lite')} run "
                    f"(pid {pid} on {host}); wait until it ends, or write into another folder. If no such "
                    f"process runs any more, delete {self.path}.") from None
            except OSError as exc:
                raise os_error_to_input_error(exc, self.path) from None
            try:
                os.write(fd, body)
            finally:
                os.close(fd)
            self._held = True
            return self
        raise InputError(f"could not take the lock {self.path}; delete it if no run is writing there.")

    def release(self) -> None:
        if self._held:
            self._held = False
            if self._owner().get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

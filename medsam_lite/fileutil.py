"""Safe file writing shared by every writer of medsam_lite: atomic writes, one folder lock, free space.

* :func:`atomic_path` (and :func:`atomic_write` / :func:`atomic_write_text` / :func:`atomic_folder`
  built on it) writes under a temporary name in the target's folder (``.medsam-tmp-*``, the only
  temporary prefix of the package, the only names ever cleaned up), then ``os.replace`` s it onto
  the target: a reader (or a run killed at any moment) sees the old file or the new one, never half
  of one. The temporary file is created with mode ``0o666`` (a folder ``0o777``) minus the umask, as
  ``open`` would: under umask 022 a dataset, checkpoint or CSV is ``0644`` and can be shared with a
  group (``tempfile.mkstemp`` would make it ``0600``). On any error the temporary file is removed; a
  full disk or a read-only folder becomes an :class:`~medsam_lite.errors.InputError`.
* :class:`FolderLock` keeps two runs from writing into one folder (``preprocess``, the embedding
  store): the ``filelock`` package's lock on ``<folder>/.lock``, released by the system when its
  holder dies. Each caller chooses to fail at once or to wait (see the class).
* :func:`check_free_space` / :func:`check_writable` refuse a write that cannot succeed, before the
  first byte is written.
* :func:`file_sha256`, :func:`pid_alive`, :func:`remove_empty_folders`: the package's one helper each.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import filelock

from .errors import InputError

__all__ = ["TMP_PREFIX", "FolderLock", "atomic_folder", "atomic_path", "atomic_write", "atomic_write_text",
           "check_free_space", "check_writable", "file_sha256", "os_error_to_input_error", "pid_alive",
           "remove_empty_folders"]

#: Prefix of every temporary file or folder medsam_lite writes (only these are ever cleaned up).
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


def _new_temp(folder: Path, suffix: str = "", directory: bool = False) -> Path:
    """Create an empty ``TMP_PREFIX`` file (or folder) in ``folder`` with the umask's mode."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = Path(folder) / f"{TMP_PREFIX}{secrets.token_hex(6)}{suffix}"
        try:
            if directory:
                os.mkdir(tmp, 0o777)  # the umask applies, as for any folder
            else:
                os.close(os.open(tmp, flags, 0o666))  # the umask applies: 0644 under umask 022
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "", hint: str = "", fsync: bool = False) -> Iterator[Path]:
    """``with atomic_path(path) as tmp:`` write ``tmp`` by name; when the block ends, it replaces ``path``.

    For writers that need a file name (SimpleITK, ``numpy.save``, ``DataFrame.to_csv``). ``tmp`` is
    an empty file beside ``path`` named ``.medsam-tmp-<random><suffix>`` (the suffix lets a writer
    pick the format), with the umask's mode.

    Args:
        path: the file to (re)write; its folder must exist.
        suffix: the temporary name's ending (e.g. ``".nii.gz"``).
        hint: appended to the message of a full-disk / permission error (e.g. how to resume).
        fsync: flush the file to the disk before the rename (survives a power cut, slower); not
            needed against a killed process.

    Raises:
        InputError: no space left, or the folder is not writable (the temporary file is removed and
            ``path`` keeps its old content, if any). Any other error of the block propagates, and
            the temporary file is removed too.
    """
    path = Path(path)
    try:
        tmp = _new_temp(path.parent, suffix)
    except OSError as exc:
        raise os_error_to_input_error(exc, path, hint) from None
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))  # Windows syncs writable handles only
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise os_error_to_input_error(exc, path, hint) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, writer: Callable[[BinaryIO], None], *, hint: str = "",
                 fsync: bool = False) -> None:
    """Write ``path`` atomically: ``writer(f)`` fills a binary temporary file that then replaces it.

    Args:
        path: the file to (re)write; its folder must exist.
        writer: called once with the open binary file (e.g. ``lambda f: image.save(f, "PNG")``).
        hint, fsync: as in :func:`atomic_path`.

    Raises:
        InputError: no space left, or the folder is not writable (``path`` keeps its old content).
    """
    with atomic_path(path, hint=hint, fsync=fsync) as tmp, open(tmp, "wb") as f:
        writer(f)


def atomic_write_text(path: str | Path, text: str, *, hint: str = "", fsync: bool = False) -> None:
    """:func:`atomic_write` of a UTF-8 text."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), hint=hint, fsync=fsync)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """``with atomic_folder(path) as tmp:`` fill the new folder ``tmp``; when the block ends it takes
    ``path``'s place (an existing ``path`` is removed first).

    Raises:
        OSError: the rename failed, e.g. because another process put a folder at ``path`` meanwhile
            (the caller decides whether that one will do). The temporary folder is always removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path.parent, directory=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders a call created (listed deepest first) while they are empty; stop at the
    first that is not (it holds someone else's file, and so do its parents)."""
    for p in folders:
        try:
            Path(p).rmdir()
        except OSError:
            break


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (one owned by another user counts)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except (OverflowError, ValueError):
        return False
    return True


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
        os.unlink(_new_temp(probe))
    except OSError as exc:
        raise InputError(f"{what}: cannot write into {probe} ({exc.strerror}); choose a folder you can write "
                         "to, or fix its permissions. Nothing was computed.") from None


#: flock errors of a file system without flock (Lustre without ``-o flock``, some FUSE mounts).
_NO_FLOCK = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}
# filelock >= 4 would fall back to its own marker in the lock file itself; ours is .lock.owner (below)
_FILELOCK_OPTIONS = {"fallback_to_soft": False} if "fallback_to_soft" in \
    filelock.FileLock.__init__.__code__.co_varnames else {}


class FolderLock:
    """``with FolderLock(folder, "preprocess"):`` — one writer per folder at a time, across processes.

    The lock is the ``filelock`` package's ``FileLock`` on ``<folder>/.lock`` (``flock``: released
    by the system when its holder exits or is killed, so a killed run never blocks a rerun; shared
    across machines on NFS v4). While it is held, ``<folder>/.lock.owner`` names the holder (pid,
    host, what) for the message another run gets; both files are removed on release.

    Meeting another holder, chosen per caller with ``wait``:

    * ``wait=0`` (default; ``preprocess``): fail at once with an :class:`InputError` naming the
      holder — a long write into the same folder is a mistake to report, not to queue;
    * ``wait=None`` (the embedding store, whose creation takes seconds): wait until it is free;
      ``wait=<seconds>``: wait at most that long, then the same :class:`InputError`.

    Where the file system refuses ``flock`` (``ENOSYS``, ``ENOLCK``, ``EOPNOTSUPP``), the lock is
    the exclusive creation (``O_EXCL``) of ``.lock.owner`` itself, with the same waiting rule; a
    ``.lock.owner`` left by a process that no longer runs on this host is removed, and so is one of
    another host older than ``stale_seconds`` (default ``None``: never).

    Raises:
        InputError: another process holds the lock (after ``wait``), or the folder is not writable.
    """

    def __init__(self, folder: str | Path, what: str, name: str = ".lock", *, wait: float | None = 0.0,
                 poll_seconds: float = 0.05, stale_seconds: float | None = None):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.owner_path = self.folder / f"{name}.owner"
        self.what, self.wait = what, wait
        self.poll_seconds, self.stale_seconds = poll_seconds, stale_seconds
        self._lock: filelock.BaseFileLock | None = None
        self._marker = self._marker_mode = False

    def _owner(self) -> dict:
        """The holder named by ``.lock.owner`` (``{}`` while it is being written or unreadable)."""
        try:
            text = self.owner_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            data = json.loads(text)
        except ValueError:  # "host pid", as medsam_lite 0.1's store lock wrote it
            parts = text.split()
            return {"host": parts[0], "pid": int(parts[1])} if len(parts) == 2 and parts[1].isdigit() else {}
        return data if isinstance(data, dict) else {}

    def _busy(self) -> InputError:
        owner = self._owner()
        held = "" if self._marker_mode else " (a lock left by a run that ended is released by the system)"
        return InputError(
            f"{self.folder} is being written by another {owner.get('what', 'medsam_lite')} run (pid "
            f"{owner.get('pid', '?')} on {owner.get('host', '?')}){held}; wait until it ends, or write into "
            f"another folder." + (f" If no such process runs any more, delete {self.owner_path}."
                                  if self._marker_mode else ""))

    def _left(self, deadline: float | None) -> float:
        return -1 if deadline is None else max(0.0, deadline - time.monotonic())

    def acquire(self) -> FolderLock:
        self._marker_mode = False
        deadline = None if self.wait is None else time.monotonic() + float(self.wait)
        while True:
            lock = filelock.FileLock(str(self.path), **_FILELOCK_OPTIONS)
            try:
                lock.acquire(timeout=self._left(deadline), poll_interval=self.poll_seconds)
            except filelock.Timeout:
                raise self._busy() from None
            except NotImplementedError:  # filelock 3: flock is missing (ENOSYS)
                return self._acquire_marker(deadline)
            except OSError as exc:
                if exc.errno in _NO_FLOCK:
                    return self._acquire_marker(deadline)
                raise os_error_to_input_error(exc, self.path) from None
            if self._still_linked(lock):
                break
            lock.release()  # we locked a file its holder removed on release: lock the one now there
        self._lock = lock
        try:
            atomic_write_text(self.owner_path, json.dumps(self._me()))
        except (InputError, OSError):
            pass  # only informational (the message of a run that finds the lock taken)
        return self

    def _me(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}

    def _still_linked(self, lock) -> bool:
        fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
        if fd is None:
            return True
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False

    def _acquire_marker(self, deadline: float | None) -> FolderLock:
        """The lock without flock: ``.lock.owner`` created with ``O_EXCL`` (stale ones removed)."""
        self._marker_mode = True
        body = json.dumps(self._me())
        while True:
            try:
                fd = os.open(self.owner_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                if self._stale():
                    self.owner_path.unlink(missing_ok=True)
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._busy() from None
                time.sleep(self.poll_seconds)
                continue
            except OSError as exc:
                raise os_error_to_input_error(exc, self.owner_path) from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
            self._marker = True
            return self

    def _stale(self) -> bool:
        owner = self._owner()
        pid, host = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and host == socket.gethostname():
            return not pid_alive(pid)
        if self.stale_seconds is None:
            return False
        try:
            return time.time() - self.owner_path.stat().st_mtime > self.stale_seconds
        except OSError:
            return False

    def release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            try:  # removed while still held: a waiter that then locks the removed file tries again
                self.owner_path.unlink(missing_ok=True)
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
            lock.release()
        elif self._marker:
            self._marker = False
            self.owner_path.unlink(missing_ok=True)
            try:
                self.path.unlink(missing_ok=True)  # the unused flock file
            except OSError:
                pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

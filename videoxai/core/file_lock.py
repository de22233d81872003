"""An exclusive lock on a file, across processes: the one primitive under a folder's lock
(:class:`~.folder_lock.FolderLock`: one evaluation, training or server per folder) and the ST-ABN
edit set's (:func:`held`, waited for).

POSIX: ``flock`` on the file; Windows: ``msvcrt.locking`` of one byte at :data:`WINDOWS_BYTE`.
Both are released by the operating system when the holder exits, however it exits (``kill -9``
included), so a lock file left behind never blocks anyone. Locks belong to one open file (not
to the process): two opens in one process, two threads, exclude each other as two processes do.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from ..errors import InputError

#: errors of a lock held by someone else (flock's EWOULDBLOCK; msvcrt.locking's EACCES / EDEADLK)
BUSY = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK})
#: the byte Windows locks: its locks are mandatory (another process cannot read a locked byte),
#: so it lies far beyond what the file holds, where the holder's description (a folder lock's
#: JSON) stays readable to the process it refuses; locking past the end of a file is allowed
WINDOWS_BYTE = 1 << 30
#: seconds between two tries of :func:`held` (neither flock nor msvcrt.locking waits with a deadline)
POLL = 0.005


def open_lock_file(path: Path) -> int:
    """A descriptor of ``path`` (created if missing) to lock: read-write, binary on Windows (a
    folder lock's description is read and written through it)."""
    return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)


def try_lock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting: ``True``; ``False``: another open file holds it.

    Raises:
        OSError: the lock failed otherwise: the file system has no locks (Lustre mounted without
            ``-o flock``: ``ENOSYS``; ``ENOLCK``, ``EOPNOTSUPP``). Each caller decides whether to
            go on unlocked.
    """
    try:
        if sys.platform == "win32":
            import msvcrt

            _at_windows_byte(fd, msvcrt.LK_NBLCK)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in BUSY:
            return False
        raise
    return True


def unlock(fd: int) -> None:
    """Release the lock :func:`try_lock` took on ``fd`` (before closing it: Windows releases the
    locks of a closed file only "when resources allow")."""
    if sys.platform == "win32":
        import msvcrt

        _at_windows_byte(fd, msvcrt.LK_UNLCK)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _at_windows_byte(fd: int, mode: int) -> None:
    """``msvcrt.locking`` of :data:`WINDOWS_BYTE` (it locks from the file's position), leaving
    the position at the start, where the file's readers and writers expect it."""
    import msvcrt

    os.lseek(fd, WINDOWS_BYTE, os.SEEK_SET)
    try:
        msvcrt.locking(fd, mode, 1)
    finally:
        os.lseek(fd, 0, os.SEEK_SET)


@contextlib.contextmanager
def held(path: Path, what: str, wait: float, log: logging.Logger,
         stuck: str = "a stopped or hung process?") -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (created if missing) for the ``with`` block, waiting
    up to ``wait`` seconds for another process (or thread) that holds it. On a file system
    without locks, or where the lock file cannot be opened (a read-only folder, where no write
    can succeed anyway), the block runs unlocked, as before the lock existed, said in ``log``.

    Raises:
        InputError: still held by another after ``wait`` seconds (naming ``what``, the file and
            what may hold it: ``stuck``).
    """
    try:
        fd = open_lock_file(path)
    except OSError:
        try:  # a read-only folder that has the file already: a lock needs no write access
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            log.warning("cannot open the lock file %s (%s): %s is not locked against other processes",
                        path, e.strerror or e, what)
            yield
            return
    try:
        locked = _wait_for(fd, path, what, wait, log, stuck)
        try:
            yield
        finally:
            if locked:
                unlock(fd)
    finally:
        os.close(fd)


def _wait_for(fd: int, path: Path, what: str, wait: float, log: logging.Logger, stuck: str) -> bool:
    """Lock ``fd``, trying every :data:`POLL` seconds for ``wait`` seconds; ``False``: the file
    system has no locks (the holder goes on unlocked)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if try_lock(fd):
                return True
        except OSError as e:  # ENOSYS, ENOLCK: no locks here at all
            log.warning("cannot lock %s (%s): %s is not locked against other processes", path,
                        e.strerror or e, what)
            return False
        if time.monotonic() >= deadline:
            raise InputError(f"{what} waited {wait:g} s for another process that holds {path} ({stuck}); "
                             "try again, or end that process")
        time.sleep(POLL)


__all__ = ["held", "try_lock", "unlock", "open_lock_file", "BUSY", "WINDOWS_BYTE", "POLL"]

"""An exclusive lock on a file, waited for, across processes: what makes the editor's "is the
clip's edit still the version this save read?" and the save that follows one step, when two
editors (two terminals, two users) serve the same edit set.

POSIX: ``flock`` on the lock file; Windows: ``msvcrt.locking`` of its first byte. Both are
released by the operating system when the holder exits, however it exits (``kill -9``
included), so a lock file left behind never blocks anyone. On a file system without locks
(Lustre without ``-o flock``: ``ENOSYS``), or where the lock file cannot be opened (a read-only
edit set, where no save can succeed anyway), the holder goes on unlocked, as before the lock
existed, and says so in the log.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from ..errors import InputError

log = logging.getLogger("videoxai.stabn")

#: seconds to wait for another holder: a save holds the lock for one small write (milliseconds),
#: so a holder this slow is stuck (stopped in a debugger, a dead network disk), not busy
WAIT = 30.0
#: seconds between two tries (neither flock nor msvcrt.locking can wait with a deadline)
POLL = 0.005
#: errors of a lock held by someone else (flock's EWOULDBLOCK; msvcrt.locking's EACCES / EDEADLK)
_BUSY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK}


@contextlib.contextmanager
def held(path: Path, what: str, wait: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (created if missing) for the ``with`` block, waiting
    up to ``wait`` seconds (default :data:`WAIT`) for another process (or thread) that holds it.

    Raises:
        InputError: still held by another after ``wait`` seconds (naming ``what`` and the file).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:  # a read-only folder that has the file already: a lock needs no write access
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            log.warning("cannot open the lock file %s (%s): %s is not locked against other processes",
                        path, e.strerror or e, what)
            yield
            return
    try:
        locked = _acquire(fd, path, what, WAIT if wait is None else wait)
        try:
            yield
        finally:
            if locked:
                _release(fd)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, what: str, wait: float) -> bool:
    """Lock ``fd``, trying every :data:`POLL` seconds for ``wait`` seconds; ``False``: the file
    system has no locks (the holder goes on unlocked)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            _try_lock(fd)
            return True
        except OSError as e:
            if e.errno not in _BUSY:  # ENOSYS, ENOLCK: no locks here at all
                log.warning("cannot lock %s (%s): %s is not locked against other processes", path,
                            e.strerror or e, what)
                return False
        if time.monotonic() >= deadline:
            raise InputError(f"{what} waited {wait:g} s for another process that holds {path} (a stopped "
                             "or hung editor?); try again, or end that process")
        time.sleep(POLL)


if os.name == "nt":
    import msvcrt

    def _try_lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt.locking locks bytes from the current position
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _release(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _release(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


__all__ = ["held", "WAIT"]

"""One process at a time per folder: an evaluation's ``--out``, a server's ``--work-dir``.

Two ``evaluate`` runs on one ``--out`` would both compute everything (the database stays correct,
but the work is doubled); a second server on one ``--work-dir`` would take the first's running
jobs for ones a crash left behind, fail them and delete their uploads. :class:`FolderLock` holds
an exclusive lock on ``FOLDER/.lock`` (:mod:`.file_lock`: ``flock`` on POSIX, ``msvcrt.locking``
on Windows) for as long as its holder uses the folder and writes
who holds it (pid, host, command, start time) into the file, so the second fails at once with a
message naming the first. The operating system releases the lock when its holder exits, however
it exits (``kill -9`` included): a stale lock file is never an obstacle.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import InputError
from .file_lock import open_lock_file, try_lock, unlock

LOCK_NAME = ".lock"


class FolderLock:
    """Context manager: the exclusive lock of a folder.

    Args:
        folder: the folder (it must exist).
        user: what holds it, for the refusal ("another evaluation", "another videoxai server").
        hint: what the second one can do instead.

    Raises:
        InputError: another process holds it (the message says which).
    """

    def __init__(self, folder: str | Path, user: str = "another evaluation",
                 hint: str = "wait for it to finish or choose another --out") -> None:
        self.path = Path(folder) / LOCK_NAME
        self.user, self.hint = user, hint
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        fd = open_lock_file(self.path)
        try:
            if not try_lock(fd):
                holder = _describe(os.read(fd, 4096))
                raise InputError(f"{self.path.parent} is in use by {self.user} ({holder}); {self.hint}")
            os.ftruncate(fd, 0)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "command": " ".join(sys.argv)[:300]}
            os.write(fd, json.dumps(info).encode())
        except BaseException:
            # refused, no locks on this file system (the caller decides), a full disk: the
            # descriptor closed, and with it a lock taken, or a second lock in this process would
            # be refused as "in use by" this one, for good
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                unlock(fd)
            finally:
                os.close(fd)


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):  # TypeError: JSON, not an object
        return "a process that has not said who it is yet"

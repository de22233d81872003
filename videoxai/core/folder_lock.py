"""One process at a time per folder: an evaluation's ``--out``, a server's ``--work-dir``.

Two ``evaluate`` runs on one ``--out`` would both compute everything (the database stays correct,
but the work is doubled); a second server on one ``--work-dir`` would take the first's running
jobs for ones a crash left behind, fail them and delete their uploads. :class:`FolderLock` holds
an exclusive ``flock`` on ``FOLDER/.lock`` for as long as its holder uses the folder and writes
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
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise InputError(f"{self.path.parent} is in use by {self.user} ({holder}); {self.hint}") from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)[:300]}
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (ValueError, KeyError, UnicodeDecodeError):
        return "a process that has not said who it is yet"

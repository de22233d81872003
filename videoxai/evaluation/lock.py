"""One evaluation at a time per output folder.

Two ``evaluate`` runs on one ``--out`` would both compute everything (the database stays correct,
but the work is doubled). :class:`OutputLock` holds an exclusive ``flock`` on ``OUT/.lock`` for
the length of a run and writes who holds it (pid, host, command, start time) into the file, so
the second run fails at once with a message naming the first. The operating system releases the
lock when its holder exits, however it exits (``kill -9`` included): a stale lock file is never
an obstacle.
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


class OutputLock:
    """Context manager: the exclusive lock of an output folder.

    Raises:
        InputError: another process holds it (the message says which).
    """

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise InputError(f"{self.path.parent} is in use by another evaluation ({holder}); wait for it to "
                             "finish or choose another --out") from None
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

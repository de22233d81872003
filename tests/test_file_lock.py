"""The one file lock (videoxai.core.file_lock) under a folder's lock (one evaluation, training or
server per folder) and the ST-ABN edit set's: its POSIX branch for real, its Windows branch with
``msvcrt`` played by a stand-in that keeps Windows' rules (a lock belongs to one open file, a
second one is refused with EACCES) and records every call."""

from __future__ import annotations

import errno
import logging
import os
import sys
import types
import pytest

from videoxai.core import file_lock
from videoxai.errors import InputError


class FakeMsvcrt(types.ModuleType):
    """``msvcrt.locking`` as Windows does it: one byte from the file's position, held by one
    open file (here: one descriptor) of a file, refused to every other with EACCES."""

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = range(5)

    def __init__(self) -> None:
        super().__init__("msvcrt")
        self.calls: list[tuple[int, int, int, int]] = []   # (fd, mode, nbytes, position)
        self.holders: dict[tuple[int, int, int], int] = {}  # (device, inode, byte) → fd
        self.error: OSError | None = None

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        position = os.lseek(fd, 0, os.SEEK_CUR)
        self.calls.append((fd, mode, nbytes, position))
        if self.error is not None:
            raise self.error
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, position)
        if mode == self.LK_NBLCK:
            if self.holders.get(key, fd) != fd:
                raise PermissionError(errno.EACCES, "Permission denied")
            self.holders[key] = fd
        elif mode == self.LK_UNLCK:
            assert self.holders.pop(key) == fd, "unlocking a byte this file does not hold"
        else:
            raise AssertionError(f"mode {mode} is not one the lock uses")


@pytest.fixture
def windows(monkeypatch) -> FakeMsvcrt:
    """This process as Windows would run it: no fcntl, an msvcrt."""
    fake = FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` fails, as on Windows
    monkeypatch.setattr(sys, "platform", "win32")
    return fake


def test_an_edit_set_lock_on_windows_waits_for_its_holder_then_gives_up(windows, tmp_path, caplog):
    from videoxai.stabn.file_lock import held

    path = tmp_path / ".edits.lock"
    with held(path, "saving an edit", wait=1.0):
        first = windows.calls[0][0]
        with pytest.raises(InputError, match=rf"^saving an edit waited 0\.05 s for another process that holds "
                                             rf"{path} \(a stopped or hung editor\?\); try again"):
            with held(path, "saving an edit", wait=0.05):
                pass
        tries = [c for c in windows.calls if c[0] != first]
        assert len(tries) >= 2 and {c[1:] for c in tries} == {(windows.LK_NBLCK, 1, file_lock.WINDOWS_BYTE)}
    assert windows.calls[-1] == (first, windows.LK_UNLCK, 1, file_lock.WINDOWS_BYTE) and windows.holders == {}

    windows.error = OSError(errno.EINVAL, "Invalid argument")  # a file system without locks
    ran = False
    with caplog.at_level(logging.WARNING, logger="videoxai.stabn"):
        with held(path, "saving an edit"):
            ran = True
    assert ran and "cannot lock" in caplog.text and "Invalid argument" in caplog.text

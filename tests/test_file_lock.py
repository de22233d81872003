"""The one file lock (videoxai.core.file_lock) under a folder's lock (one evaluation, training or
server per folder) and the ST-ABN edit set's: its POSIX branch for real, its Windows branch with
``msvcrt`` played by a stand-in that keeps Windows' rules (a lock belongs to one open file, a
second one is refused with EACCES) and records every call. And the rename of an atomic write
(videoxai.stabn.atomic), on Windows, where an open file cannot be replaced."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import sys
import types
from pathlib import Path

import pytest

import videoxai
from videoxai.core import file_lock
from videoxai.core.folder_lock import FolderLock
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


def test_the_lock_modules_import_without_fcntl(windows):
    # FolderLock imported fcntl to lock: every evaluation, training run and server failed on
    # Windows with "No module named 'fcntl'"
    root = Path(videoxai.__file__).parent
    for name in ("core.file_lock", "core.folder_lock", "stabn.file_lock"):
        path = root / (name.replace(".", "/") + ".py")
        spec = importlib.util.spec_from_file_location(f"videoxai.{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # a fresh copy, not put in sys.modules


def test_a_folder_lock_on_windows_locks_a_byte_past_its_description_and_names_its_holder(windows, tmp_path):
    with FolderLock(tmp_path) as held:
        fd = held._fd
        assert windows.calls == [(fd, windows.LK_NBLCK, 1, file_lock.WINDOWS_BYTE)]
        # the description at the start of the file, where the refused one reads it (Windows'
        # locks are mandatory: a locked byte cannot be read by another process)
        assert (tmp_path / ".lock").read_bytes().startswith(b'{"pid": ')
        assert (tmp_path / ".lock").stat().st_size < 1000
        with pytest.raises(InputError, match=rf"^{tmp_path} is in use by another evaluation \(pid {os.getpid()} on "):
            with FolderLock(tmp_path):
                pass
        assert windows.calls[-1][1:] == (windows.LK_NBLCK, 1, file_lock.WINDOWS_BYTE)
    # released before the file is closed (Windows frees a closed file's locks "when resources allow")
    assert windows.calls[-1] == (fd, windows.LK_UNLCK, 1, file_lock.WINDOWS_BYTE)
    assert windows.holders == {}
    with FolderLock(tmp_path):
        pass


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


def test_a_folder_lock_that_fails_after_locking_leaves_the_folder_free(tmp_path, monkeypatch):
    # a full disk while writing who holds it: the OSError left the descriptor open, and with it
    # the lock: every later run in this process was refused "in use by another evaluation (a
    # process that has not said who it is yet)"
    def disk_full(fd, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "ftruncate", disk_full)
        with pytest.raises(OSError, match="No space left"):
            FolderLock(tmp_path).__enter__()
    with FolderLock(tmp_path):
        pass


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open files through /proc")
def test_a_folder_lock_without_locks_on_the_file_system_closes_its_file(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    def open_lock_files():
        names = []
        for n in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed since
                names.append(os.readlink(f"/proc/self/fd/{n}"))
        return [name for name in names if name == str(tmp_path / ".lock")]

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match="Function not implemented"):
        FolderLock(tmp_path).__enter__()  # the caller decides: warn and go on, or refuse
    assert open_lock_files() == []  # was one more open file per run


@pytest.mark.parametrize("content", [b"12345\n", b"null", b'["pid"]', b"\xff\xfe", b'{"pid": 7}'])
def test_a_folder_held_by_a_process_that_wrote_no_description_of_ours_is_refused_in_one_line(tmp_path, content):
    # another program that locks FOLDER/.lock and keeps its pid there as a bare number: the
    # refusal was a TypeError traceback ("'int' object is not subscriptable")
    (tmp_path / ".lock").write_bytes(content)
    fd = file_lock.open_lock_file(tmp_path / ".lock")
    try:
        assert file_lock.try_lock(fd)
        with pytest.raises(InputError, match=r"in use by another evaluation \(a process that has not said who it is "
                                             r"yet\); wait for it"):
            with FolderLock(tmp_path):
                pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("platform", ["win32", "linux"])
def test_an_atomic_write_renames_again_on_windows_while_its_file_is_open_elsewhere(tmp_path, monkeypatch, platform):
    # Windows cannot replace a file open in another thread or process (the editor reading the
    # edit a save replaces, a virus scanner): a save failed with "Access is denied"; on POSIX a
    # PermissionError is a real one, raised at once
    from videoxai.stabn.atomic import write_atomically

    path = tmp_path / "edit.json"
    path.write_text("old")
    replace, tries = Path.replace, []

    def open_twice(self, target):
        tries.append(self)
        if len(tries) <= 2:
            raise PermissionError(errno.EACCES, "Access is denied")
        return replace(self, target)

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(Path, "replace", open_twice)
    if platform == "win32":
        write_atomically(path, "new")
        assert path.read_text() == "new" and len(tries) == 3
    else:
        with pytest.raises(PermissionError, match="Access is denied"):
            write_atomically(path, "new")
        assert path.read_text() == "old" and len(tries) == 1
    assert os.listdir(tmp_path) == ["edit.json"]  # no temporary file left either way

"""Writing a file so that a reader (or a run resumed after a crash) sees the old file or the new
one, never a part of one: the model's edits, the edit set's collection, a training run's
``history.json`` and ``checkpoint.pt``."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from pathlib import Path

#: the temporary name :func:`write_atomically` writes ``name`` through: ``.name.<32 hex>.tmp``
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")
#: seconds after which a temporary file of :func:`write_atomically` is a dead writer's: a live
#: write renames its file within the time of one write and one fsync (milliseconds; seconds on a
#: slow network disk), so an older one was left by a process killed mid-write (SIGKILL, power cut)
STALE_AFTER = 600.0
#: seconds a rename on Windows is tried again: there a file open in another process or thread (a
#: reader of the old edit, a virus scanner or indexer looking at the new file) cannot be replaced
#: while it is open (PermissionError), which lasts milliseconds; pip retries its renames alike
REPLACE_WAIT = 1.0


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file of its own and a
    rename: a reader sees the old file or the new one, never a part, and two writers at once (the
    editor saves from a thread pool) each rename a complete file of their own — the last rename
    wins. A shared temporary name let one writer rename the other's file away (a 500) or rename a
    mix of both. The data reach the disk before the rename: after a power cut, a rename that
    outlived its data left an empty file under the final name (XFS, ext4 ``data=writeback``).
    A process killed before the rename leaves the temporary file (``.NAME.<hex>.tmp``, see
    :data:`TEMPORARY`): :func:`remove_stale_temporaries` removes it later."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        fd = os.open(tmp, os.O_RDWR)  # RDWR: Windows' fsync wants a writable descriptor
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _replace(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; on Windows, while ``path`` is open elsewhere, again for up to
    :data:`REPLACE_WAIT` seconds (a save failed with "Access is denied" whenever a read of the
    edit it replaced was under way)."""
    deadline = time.monotonic() + REPLACE_WAIT
    while True:
        try:
            tmp.replace(path)
            return
        except PermissionError:
            if sys.platform != "win32" or time.monotonic() >= deadline:
                raise  # POSIX: a real permission error, which no wait mends
        time.sleep(0.01)


def remove_stale_temporaries(directory: Path, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove the temporary files :func:`write_atomically` left in ``directory`` when its process
    was killed before the rename (a SIGKILL, a power cut: its ``finally`` never ran), and return
    them. Only names of :data:`TEMPORARY`'s pattern, and only those last written more than
    ``older_than`` seconds ago: a younger one may be a concurrent writer's (another thread, another
    editor on the same edit set), whose rename would fail without it. Best effort: a directory
    that is missing or read-only, or a file removed meanwhile, is left as it is."""
    removed: list[Path] = []
    deadline = time.time() - older_than
    try:
        entries = list(os.scandir(directory))
    except OSError:  # no such directory, not a directory, not readable
        return removed
    for entry in entries:
        if not TEMPORARY.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime > deadline:
                continue
            os.unlink(entry.path)
        except OSError:  # removed by another cleaner meanwhile, or a read-only edit set
            continue
        removed.append(Path(entry.path))
    return removed


__all__ = ["write_atomically", "remove_stale_temporaries", "TEMPORARY", "STALE_AFTER"]

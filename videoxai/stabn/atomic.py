"""Writing a file so that a reader (or a run resumed after a crash) sees the old file or the new
one, never a part of one: the model's edits, the edit set's collection, a training run's
``history.json`` and ``checkpoint.pt``."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file of its own and a
    rename: a reader sees the old file or the new one, never a part, and two writers at once (the
    editor saves from a thread pool) each rename a complete file of their own — the last rename
    wins. A shared temporary name let one writer rename the other's file away (a 500) or rename a
    mix of both. The data reach the disk before the rename: after a power cut, a rename that
    outlived its data left an empty file under the final name (XFS, ext4 ``data=writeback``)."""
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
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["write_atomically"]

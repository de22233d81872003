"""The edit set's lock (``.edits.lock``): what makes the editor's "is the clip's edit still the
version this save read?" and the save that follows one step, when two editors (two terminals,
two users) serve the same edit set. The lock itself is :func:`videoxai.core.file_lock.held`
(POSIX ``flock``, Windows ``msvcrt.locking``); this module sets how long a save waits for it."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from ..core import file_lock

log = logging.getLogger("videoxai.stabn")

#: seconds to wait for another holder: a save holds the lock for one small write (milliseconds),
#: so a holder this slow is stuck (stopped in a debugger, a dead network disk), not busy
WAIT = 30.0


def held(path: Path, what: str, wait: float | None = None) -> contextlib.AbstractContextManager[None]:
    """Hold the exclusive lock of ``path`` (created if missing) for the ``with`` block, waiting
    up to ``wait`` seconds (default :data:`WAIT`) for another editor that holds it; without
    locks on the file system, unlocked with a warning (:func:`videoxai.core.file_lock.held`).

    Raises:
        InputError: still held by another after ``wait`` seconds (naming ``what`` and the file).
    """
    return file_lock.held(path, what, WAIT if wait is None else wait, log, stuck="a stopped or hung editor?")


__all__ = ["held", "WAIT"]

"""Reading ``.npz`` archives safely from several threads at once.

NumPy parses each array's header with :func:`ast.literal_eval`, and CPython 3.11 keeps the AST
constructor's recursion depth in state shared by all threads: two threads parsing at the same
moment can fail with ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905). The ST-ABN editor and the service answer requests on a thread pool, and
the editor's frame requests arrive together, so every archive the package reads goes through
one lock. Reads are small (one clip or one explanation); the lock is held only while reading.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

_READ = threading.Lock()


def read_npz(path: str | Path, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``names`` (all when ``None``) of the archive at ``path``, read under the lock.

    Raises what :func:`numpy.load` raises (``OSError``, ``ValueError``) and ``KeyError`` for a
    missing name. Pickled objects are refused.
    """
    with _READ, np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in (z.files if names is None else names)}

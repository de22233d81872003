"""Reading ``.npz`` archives safely from several threads at once.

NumPy parses each array's header with :func:`ast.literal_eval`, and CPython 3.11 keeps the AST
constructor's recursion depth in state shared by all threads: two threads parsing at the same
moment can fail with ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905). The ST-ABN editor and the service answer requests on a thread pool, and
the editor's frame requests arrive together, so every archive the package reads goes through
one lock. Reads are small (one clip or one explanation); the lock is held only while reading.
"""

from __future__ import annotations

import os
import threading
import zipfile
import zlib
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


def write_npz(path: Path, arrays: dict[str, np.ndarray], what: str) -> Path:
    """Write ``arrays`` compressed to ``path`` whole, or raise one ``InputError`` naming ``what``.

    Missing parent directories are created; an existing file is replaced whole (the archive is
    written beside it and renamed over it, so a reader never sees half a file).
    """
    from .errors import InputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # named per process and thread (two threads may save the same path), short (a name
        # built on the file's own ran past the 255 bytes a file name may have), and opened
        # with open() so that the file gets the umask's permissions, as a direct write would
        temp = path.with_name(f".videoxai-{os.getpid()}-{threading.get_ident()}.npz.tmp")
        try:
            with open(temp, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as e:
        # a parent that is a file, a read-only directory, a full disk: one line naming the path
        # (mkdir's own words for a parent that is a file are "File exists")
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocking} is a file, not a directory" if blocking is not None else e.strerror or e
        raise InputError(f"cannot save the {what} to {path}: {reason}") from None
    return path


def read_archive(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, or one ``InputError`` naming ``what`` for a missing
    file, a file that is no archive, and an archive cut short or damaged."""
    from .errors import InputError

    if not path.is_file():
        raise InputError(f"no {what} file at {path}")
    try:
        return read_npz(path)
    except (OSError, ValueError) as e:
        # numpy's own words for a file that is not a zip archive suggest allow_pickle
        raise InputError(f"{path} is not a videoxai {what} file: not an .npz archive") from e
    except (EOFError, zipfile.BadZipFile, zlib.error) as e:
        # an archive cut short (an interrupted copy) or damaged: zipfile's own error, raw
        raise InputError(f"{path} is a damaged or truncated .npz archive ({e}); save the "
                         f"{what} again") from None

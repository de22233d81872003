"""A SQLite connection whose reads and writes name its file when the file turns out damaged.

SQLite finds most damage only when it reads the page that holds it: a results file with a bad
page deep inside opened fine, and the resumed run (or ``--report-only``) ended on
``DatabaseError: database disk image is malformed``, naming neither the file nor what to do.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

from ..errors import InputError


#: SQLite's word for a file that is no SQLite database at all (its header), not a damaged one
NOT_SQLITE = "file is not a database"


@contextlib.contextmanager
def named(path: Path) -> Iterator[None]:
    """Turn SQLite's report of a damaged file (a bare ``DatabaseError``: "database disk image is
    malformed") into one line naming ``path`` and the way out. Its subclasses (a locked or full
    disk, a programming error) go on as they are."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        if type(e) is not sqlite3.DatabaseError or str(e) == NOT_SQLITE:
            raise   # not SQLite at all (another program's file): ResultStore names it so
        raise InputError(f"{path} is damaged ({e}): move it aside and run again to start over "
                         f"(`sqlite3 {path} .recover` may save its rows)") from None


class Cursor(sqlite3.Cursor):
    """A cursor whose statements and fetches name the file on damage (:func:`named`)."""

    def execute(self, *args, **kwargs):
        with named(self.connection.path):
            return super().execute(*args, **kwargs)

    def executemany(self, *args, **kwargs):
        with named(self.connection.path):
            return super().executemany(*args, **kwargs)

    def fetchone(self):
        with named(self.connection.path):
            return super().fetchone()

    def fetchall(self):
        with named(self.connection.path):
            return super().fetchall()

    def __next__(self):
        with named(self.connection.path):
            return super().__next__()


class Connection(sqlite3.Connection):
    """``sqlite3.connect(path, factory=Connection)``: statements run on :class:`Cursor`."""

    path: Path

    def __init__(self, database, *args, **kwargs) -> None:
        super().__init__(database, *args, **kwargs)
        self.path = Path(database)

    def execute(self, *args, **kwargs):
        return self.cursor(Cursor).execute(*args, **kwargs)

    def executemany(self, *args, **kwargs):
        return self.cursor(Cursor).executemany(*args, **kwargs)

    def executescript(self, script: str):
        with named(self.path):
            return super().executescript(script)

"""Results of an evaluation in one SQLite file, written row by row as they are computed.

One process writes (the runner's parent; workers send it their rows), in WAL mode with every
row committed on its own, so a killed run loses at most the rows that were still being computed
and a reader (the report, a test, a second terminal) can look at the file while it grows.

Tables:

* ``results``: one row per ``(video, method, metric)`` — the primary key, so a result can never be
  stored twice — with the value (``NULL`` when undefined), a status (``ok``; ``n/a`` when the clip
  lacks the ground truth the metric needs; ``error`` with the message in ``details``), the curve
  behind the value and the metric's details as JSON, and the seconds the metric took.
* ``explanations``: one row per ``(video, method)``: target, prediction, ground-truth label, score
  and the explanation's measured cost.
* ``metrics``: each metric spec of the file with its direction and family (what the report ranks by).
* ``meta``: the run's identity (model and a hash of its weights, data, target, refinement); a
  resumed run must match it.
* ``runs``: one row per invocation, with how many results it computed.
* ``clips``: the content fingerprint each clip's rows were computed from, where the data has one
  (:mod:`videoxai.evaluation.fingerprint`): a clip whose content changed is computed again.
* ``gone``: the clips with stored rows that the data no longer has when the latest run started
  (a video deleted from a ``folder:``): their rows are kept, and the report leaves them out.

Resuming skips the keys whose status is ``ok`` or ``n/a``; ``error`` rows are computed again, and
dropped where their clip is no longer in the data (:meth:`ResultStore.forget_errors`).
Method and metric keys are canonical specs; a file written with older, non-canonical keys is
rewritten on open (:mod:`videoxai.evaluation.canonical`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..errors import InputError
from .canonical import canonicalise
from .damaged import Connection
from .fingerprint import same_data, same_folder_hint, wider_data

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    video TEXT NOT NULL, method TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL, status TEXT NOT NULL, curve TEXT, details TEXT, seconds REAL, run INTEGER,
    created REAL NOT NULL,
    PRIMARY KEY (video, method, metric)
);
CREATE TABLE IF NOT EXISTS explanations (
    video TEXT NOT NULL, method TEXT NOT NULL, status TEXT NOT NULL, target INTEGER, predicted INTEGER,
    label INTEGER, score REAL, seconds REAL, forward_passes INTEGER, backward_passes INTEGER,
    peak_memory_mb REAL, error TEXT, run INTEGER, created REAL NOT NULL,
    PRIMARY KEY (video, method)
);
CREATE TABLE IF NOT EXISTS metrics (
    spec TEXT PRIMARY KEY, name TEXT NOT NULL, family TEXT NOT NULL, higher_is_better INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clips (video TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gone (video TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL, computed INTEGER,
    config TEXT
);
"""

#: run settings that change what a result means; a resumed run must use the same
IDENTITY_KEYS = ("model", "data", "target", "refine", "seed", "model_weights")

DONE_STATUSES = ("ok", "n/a")


@dataclass
class ResultRow:
    """One metric value of one explanation."""

    video: str
    method: str
    metric: str
    value: float | None
    status: str = "ok"
    curve: list[float] | None = None
    details: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.video, self.method, self.metric)


@dataclass
class ExplanationRow:
    """What one explanation was: its target and prediction, and its measured cost."""

    video: str
    method: str
    status: str = "ok"
    target: int | None = None
    predicted: int | None = None
    label: int | None = None
    score: float | None = None
    seconds: float | None = None
    forward_passes: int | None = None
    backward_passes: int | None = None
    peak_memory_mb: float | None = None
    error: str | None = None


class ResultStore:
    """The SQLite file of one evaluation (see the module docs). Use from one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # a damaged page found later (a resumed run reading its rows) names the file: damaged.py
            self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0, factory=Connection)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a killed process in WAL mode (not against power loss)
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            # a table of another program's file under the same name ('results') is kept by
            # CREATE TABLE IF NOT EXISTS: it failed later with 'no such column: method'
            unlike = _unlike_schema(self.db)
            if unlike:
                self.db.close()
                raise sqlite3.DatabaseError(unlike)
        except sqlite3.OperationalError as e:
            # the file cannot be opened or written (a read-only folder or file, a full disk):
            # it was called 'not a videoxai results database', which sent users to the wrong file
            raise InputError(f"cannot open {self.path} for writing: {e}") from None
        except sqlite3.DatabaseError as e:
            raise InputError(f"{self.path} is not a videoxai results database: {e}") from None
        canonicalise(self.db)  # files written before specs were canonical: one key per setting
        self.run_id: int | None = None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- identity -----------------------------------------------------------------------------------
    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def bind(self, identity: dict) -> None:
        """Record the run's identity, or check that it matches the one already stored."""
        stored = self.meta()
        clash = {k: (stored[k], identity.get(k)) for k in IDENTITY_KEYS
                 if k in stored and stored[k] != identity.get(k)
                 and not (k == "data" and same_data(stored[k], identity.get(k)))}
        if clash:
            what = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in clash.items())
            hint = same_folder_hint(*clash["data"]) if "data" in clash else ""
            raise InputError(f"{self.path} holds results of a different evaluation ({what}); "
                             f"use another output directory{hint}")
        if "data" in stored and stored["data"] != identity.get("data"):
            # synthetic:N of another N (same_data): the file names the larger set of clips it may hold
            identity = {**identity, "data": wider_data(stored["data"], identity["data"])}
        with self.db:
            for k, v in identity.items():
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))

    def register_metrics(self, metrics) -> None:
        """Store each metric's spec with its direction and family."""
        with self.db:
            for m in metrics:
                self.db.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                                (m.spec, m.name, m.family, int(m.higher_is_better)))

    def metric_info(self) -> dict[str, dict]:
        return {spec: {"name": name, "family": fam, "higher_is_better": bool(hib)}
                for spec, name, fam, hib in self.db.execute("SELECT * FROM metrics")}

    # -- runs ---------------------------------------------------------------------------------------
    def start_run(self, config: dict) -> int:
        cur = self.db.execute("INSERT INTO runs (started, config) VALUES (?, ?)",
                              (time.time(), json.dumps(config)))
        self.run_id = int(cur.lastrowid)
        return self.run_id

    def model_warnings(self) -> list[str]:
        """The warnings about the model (random weights) recorded by the latest run."""
        row = self.db.execute("SELECT config FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return list(json.loads(row[0]).get("warnings", [])) if row else []

    def finish_run(self, computed: int) -> None:
        self.db.execute("UPDATE runs SET finished = ?, computed = ? WHERE id = ?",
                        (time.time(), computed, self.run_id))

    # -- rows ---------------------------------------------------------------------------------------
    def done(self) -> set[tuple[str, str, str]]:
        """Keys that a resumed run skips (status ``ok`` or ``n/a``)."""
        q = f"SELECT video, method, metric FROM results WHERE status IN ({','.join('?' * len(DONE_STATUSES))})"
        # each name once: every row's own copies of its clip, method and metric names made the set of a
        # resumed 2.9-million-result evaluation about 800 MB (270 bytes a key; interned, 100)
        i = sys.intern
        return {(i(v), i(m), i(k)) for v, m, k in self.db.execute(q, DONE_STATUSES)}

    def write(self, row: ResultRow) -> None:
        value = None if row.value is None or not math.isfinite(row.value) else float(row.value)
        self.db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.video, row.method, row.metric, value, row.status,
             json.dumps(list(row.curve)) if row.curve is not None else None,
             json.dumps(row.details, default=_json_default), float(row.seconds), self.run_id, time.time()))

    def write_explanation(self, row: ExplanationRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO explanations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.video, row.method, row.status, row.target, row.predicted, row.label, row.score,
             row.seconds, row.forward_passes, row.backward_passes, row.peak_memory_mb, row.error,
             self.run_id, time.time()))

    def rows(self, status: str | None = None) -> list[ResultRow]:
        return list(self.iter_rows(status))

    def iter_rows(self, status: str | None = None) -> Iterator[ResultRow]:
        """The result rows one at a time, in the order they were written (an evaluation of
        thousands of clips has millions: the report reads them without holding them all)."""
        q = "SELECT video, method, metric, value, status, curve, details, seconds FROM results"
        args: tuple = ()
        if status is not None:
            q, args = q + " WHERE status = ?", (status,)
        for video, method, metric, value, st, curve, details, seconds in self.db.execute(q + " ORDER BY rowid", args):
            yield ResultRow(video, method, metric, math.nan if value is None else value, st,
                            json.loads(curve) if curve else None, json.loads(details) if details else {},
                            seconds or 0.0)

    def forget_errors(self, keep: Callable[[str], bool]) -> int:
        """Delete the error rows of the clips ``keep`` says no; how many results that was.

        An error row is no result, only a note that the next run computes it again: a clip that
        is no longer in the data (a broken file deleted) is not computed again, and its errors
        stayed in every report as if it would be.
        """
        videos = [v for (v,) in self.db.execute(
            "SELECT DISTINCT video FROM results WHERE status = 'error' UNION "
            "SELECT DISTINCT video FROM explanations WHERE status = 'error'") if not keep(v)]
        gone = 0
        with self.db:
            for v in videos:
                gone += self.db.execute("DELETE FROM results WHERE video = ? AND status = 'error'", (v,)).rowcount
                self.db.execute("DELETE FROM explanations WHERE video = ? AND status = 'error'", (v,))
        return gone

    def fingerprints(self) -> dict[str, str]:
        """``video → fingerprint`` of the content its rows were computed from (where recorded)."""
        return dict(self.db.execute("SELECT video, fingerprint FROM clips"))

    def record_fingerprints(self, fingerprints: dict[str, str]) -> None:
        """Record the content each clip's rows are (to be) computed from."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO clips VALUES (?, ?)", fingerprints.items())

    def mark_gone(self, keep: Callable[[str], bool]) -> tuple[int, list[str]]:
        """Record as gone the clips with a fingerprint (their content was tracked) that ``keep``
        says are no longer in the data, replacing the previous run's record (a clip put back is
        current again); how many results they hold, and the clips."""
        videos = sorted(v for (v,) in self.db.execute("SELECT video FROM clips") if not keep(v))
        with self.db:
            self.db.execute("DELETE FROM gone")
            self.db.executemany("INSERT INTO gone VALUES (?)", ((v,) for v in videos))
        results = self.db.execute("SELECT COUNT(*) FROM results WHERE video IN (SELECT video FROM gone)").fetchone()[0]
        return int(results), videos

    def gone(self) -> set[str]:
        """The clips the latest run found no longer in the data (:meth:`mark_gone`)."""
        return {v for (v,) in self.db.execute("SELECT video FROM gone")}

    def forget_clips(self, videos) -> int:
        """Delete every row of ``videos`` (results and explanations); how many results that was."""
        gone = 0
        with self.db:
            for v in videos:
                gone += self.db.execute("DELETE FROM results WHERE video = ?", (v,)).rowcount
                self.db.execute("DELETE FROM explanations WHERE video = ?", (v,))
        return gone

    def labels(self) -> dict[tuple[str, str], int | None]:
        """``(video, method) → label`` the stored explanations were computed for (errors aside)."""
        return {(v, m): label for v, m, label in
                self.db.execute("SELECT video, method, label FROM explanations WHERE status != 'error'")}

    def died_clips(self) -> set[str]:
        """The clips with a result lost with its worker process (an error row marked
        ``worker_died``: more memory than the machine has, a crash in native code)."""
        # LIKE, not json_extract: SQLite builds without JSON functions exist (before 3.38 they were optional)
        q = "SELECT DISTINCT video FROM results WHERE status = 'error' AND details LIKE '%\"worker_died\": true%'"
        return {v for (v,) in self.db.execute(q)}

    def explained_any(self) -> bool:
        """Whether some clip was explained (status ``ok``): the model of this file works."""
        return self.db.execute("SELECT 1 FROM explanations WHERE status = 'ok' LIMIT 1").fetchone() is not None

    def explanations(self) -> list[ExplanationRow]:
        cols = [f.name for f in ExplanationRow.__dataclass_fields__.values()]
        q = f"SELECT {', '.join(cols)} FROM explanations ORDER BY rowid"
        return [ExplanationRow(*r) for r in self.db.execute(q)]

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM results WHERE status = ?", (status,)).fetchone()[0])


def _unlike_schema(db: sqlite3.Connection) -> str | None:
    """How ``db``'s tables differ from :data:`_SCHEMA` (a missing column), or ``None``."""
    want = sqlite3.connect(":memory:")
    try:
        want.executescript(_SCHEMA)
        tables = [t for (t,) in want.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                              "AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            missing = [row[1] for row in want.execute(f"PRAGMA table_info({table})") if row[1] not in have]
            if missing:
                return f"its table {table} has no column {missing[0]}"
        return None
    finally:
        want.close()


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

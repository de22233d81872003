"""Canonical method and metric specs in a results database written by older versions.

Results are keyed by the canonical spec of their method and metric (defaults dropped, equivalent
values normalised, see :mod:`videoxai.options`). Older files stored method specs as typed
(``occlusion(window=4)``, ``gradcam(per_frame_weights=false)``) and metric values as given
(``tolerance=0``), so the same setting could sit under several keys. :func:`canonicalise` rewrites
those keys in place when a file is opened; where two old keys now name one setting, the row
with the better status (``ok`` > ``n/a`` > ``error``), then the newer one, is kept. Specs that do
not parse (a plug-in not installed, the ``random`` reference) are left as they are.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from ..errors import VideoXAIError
from ..options import parse_spec

_RANK = {"ok": 2, "n/a": 1}


def method_spec(spec: str) -> str:
    """The canonical form of a method spec; ``spec`` itself if it names no registered method."""
    from ..methods.base import METHODS
    return _canonical(spec, METHODS)


def metric_spec(spec: str) -> str:
    """The canonical form of a metric spec; ``spec`` itself if it names no registered metric."""
    from ..metrics.base import METRICS
    return _canonical(spec, METRICS)


def _canonical(spec: str, registry) -> str:
    try:
        name, options = parse_spec(spec)
        if name not in registry.names():
            return spec
        options.pop("clips", None)  # part of a plan, never of a stored key
        return registry.get(name).spec_for(options)
    except VideoXAIError:
        return spec


def canonicalise(db: sqlite3.Connection) -> int:
    """Rewrite the method and metric keys of ``db`` to canonical specs; the rows changed."""
    methods = _renames(db, "SELECT DISTINCT method FROM results UNION SELECT DISTINCT method FROM explanations",
                       method_spec)
    metrics = _renames(db, "SELECT DISTINCT metric FROM results UNION SELECT DISTINCT spec FROM metrics",
                       metric_spec)
    if not methods and not metrics:
        return 0
    changed = 0
    with db:
        changed += _rekey(db, "results", ("video", "method", "metric"), {"method": methods, "metric": metrics})
        changed += _rekey(db, "explanations", ("video", "method"), {"method": methods})
        for old, new in metrics.items():
            db.execute("UPDATE OR IGNORE metrics SET spec = ? WHERE spec = ?", (new, old))
            db.execute("DELETE FROM metrics WHERE spec = ?", (old,))
    return changed


def _renames(db: sqlite3.Connection, query: str, canonical: Callable[[str], str]) -> dict[str, str]:
    out = {}
    for (spec,) in db.execute(query):
        new = canonical(spec)
        if new != spec:
            out[spec] = new
    return out


def _rekey(db: sqlite3.Connection, table: str, key: tuple[str, ...], renames: dict[str, dict[str, str]]) -> int:
    cols = ", ".join(key)
    rows = db.execute(f"SELECT rowid, {cols}, status, created FROM {table}").fetchall()
    best: dict[tuple, tuple] = {}
    moves = []
    for rowid, *k, status, created in rows:
        new = tuple(renames.get(c, {}).get(v, v) for c, v in zip(key, k))
        rank = (_RANK.get(status, 0), created)
        if new != tuple(k):
            moves.append(rowid)
        if new not in best or rank > best[new][0]:
            best[new] = (rank, rowid)
    keep = {rowid: new for new, (_, rowid) in best.items()}
    changed = 0
    for rowid, *k, _, _ in rows:
        if rowid not in keep:
            db.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
            changed += 1
    for rowid in moves:
        if rowid in keep:
            sets = ", ".join(f"{c} = ?" for c in key)
            db.execute(f"UPDATE {table} SET {sets} WHERE rowid = ?", (*keep[rowid], rowid))
            changed += 1
    return changed

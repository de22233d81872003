"""What the two explanation reports share: the clip report (:mod:`videoxai.viz.report`) and the
timeline report of a whole video (:mod:`videoxai.viz.timeline_report`) check their arguments and
the file they go to in the same words, before any video is encoded; their pages open with the
same header and show notes and a method's options in the same tables; and values are written
into both alike (escaped, numbers shortened).
"""

from __future__ import annotations

import html
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..clip import Clip
from ..errors import InputError, VideoXAIError

# ----------------------------------------------------------------------------------------------
# arguments and the file


def one_or_more(items, cls: type, who: str, what: str) -> list:
    """``items`` (one ``cls`` or several) as a non-empty list of ``cls``, or a one-line error
    (None or a dict of them failed with Python's TypeError or an AttributeError deep inside)."""
    if isinstance(items, cls):
        return [items]
    try:
        listed = [] if isinstance(items, (str, bytes, Mapping)) else list(items)
    except TypeError:
        listed = []
    if not listed:
        raise InputError(f"{who} needs at least one {what}: one {cls.__name__} or a non-empty list of them, "
                         f"got {type(items).__name__}")
    other = next((x for x in listed if not isinstance(x, cls)), None)
    if other is not None:
        raise InputError(f"{who}: every {what} must be a {cls.__name__}, got {type(other).__name__}")
    return listed


def unique_names(items) -> list[str]:
    """Each explanation's method name, numbered from its second use (``rise``, ``rise (2)``): two
    specs of one method (``rise(n_samples=500),rise(n_samples=2000)``) are told apart."""
    seen: dict[str, int] = {}
    names = []
    for e in items:
        seen[e.method] = seen.get(e.method, 0) + 1
        names.append(e.method if seen[e.method] == 1 else f"{e.method} ({seen[e.method]})")
    return names


def check_notes(notes) -> None:
    """A one-line error unless ``notes`` is ``None`` or a mapping (see :func:`notes_table`)."""
    if notes is not None and not isinstance(notes, Mapping):
        raise InputError(f"notes must be a mapping {{name: value}} (or {{column: {{name: value}}}}), "
                         f"got {type(notes).__name__}")


def writable(path: str | Path) -> Path:
    """``path``, once it is known that a report can be written there: before the videos are
    encoded, not after (a folder named like the report, or one that cannot be written, failed
    with Python's IsADirectoryError or PermissionError when everything had been drawn)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write the report to {path}: it is a folder; give a file such as "
                         f"{path / 'report.html'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".videoxai-"):
            pass
    except OSError as e:
        file = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
        why = f"{file} is a file, not a folder" if file is not None else (e.strerror or str(e))
        raise VideoXAIError(f"cannot write the report to {path}: {why}") from None
    return path


def write_page(path: Path, text: str) -> Path:
    """Write the page ``text`` to ``path`` (checked by :func:`writable`); returns ``path``."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:  # the disk filled up while the page was written
        raise VideoXAIError(f"cannot write the report to {path}: {e.strerror or e}") from None
    return path


# ----------------------------------------------------------------------------------------------
# sections


#: what an explanation's score is, when not the softmax share of its class (Explanation.meta["activation"])
SCORES = {"sigmoid": "sigmoid of each class's logit (multi-label or binary)",
          "none": "the model's own output (probabilities)"}


def header_html(title: str, chips: list[tuple[str, str]], warnings: list) -> str:
    """The page header both reports share: title, chips, each distinct warning once, play controls."""
    chip_html = "".join(f'<span class="chip">{esc(k)} <b>{esc(v)}</b></span>' for k, v in chips)
    warn_html = "".join(f'<div class="warning" role="alert">⚠ {esc(w)}</div>'
                        for w in dict.fromkeys(str(w) for w in warnings))
    return (f'<header><h1>{esc(title)}</h1><div class="chips">{chip_html}</div>{warn_html}'
            '<div class="controls"><button id="vx-play" type="button">pause</button>'
            '<button id="vx-restart" type="button">restart</button></div></header>')


def notes_table(notes: Mapping) -> str:
    """The notes section: ``{name: value}`` as a two-column table, or ``{column: {name: value}}``
    as one table with a column per key."""
    values = list(notes.values())
    if values and all(isinstance(v, Mapping) for v in values):
        cols = [str(c) for c in notes]
        rows: list[str] = []
        for v in values:
            rows += [str(r) for r in v if str(r) not in rows]
        head = "<tr><th></th>" + "".join(f'<th class="num">{esc(c)}</th>' for c in cols) + "</tr>"
        body = "".join(
            f"<tr><th>{esc(r)}</th>"
            + "".join(f'<td class="num">{esc(fmt(_lookup(notes[c], r)))}</td>' for c in notes)
            + "</tr>" for r in rows)
        table = f"<table>{head}{body}</table>"
    else:
        table = "<table>" + "".join(f'<tr><th>{esc(k)}</th><td class="num">{esc(fmt(v))}</td></tr>'
                                    for k, v in notes.items()) + "</table>"
    return f'<h2>Notes</h2><div class="card notes">{table}</div>'


def _lookup(d: Mapping, key: str):
    for k, v in d.items():
        if str(k) == key:
            return v
    return "—"


def original_caption(clip: Clip) -> str:
    """The caption of the original video's card: its file name, or its frame count."""
    return Path(clip.source).name if clip.source else f"{clip.num_frames} frames"


def options_table(options: Mapping, resolved: Mapping | None = None) -> str:
    """A method's options as a table (nothing when it has none); an option left to the method
    (``None``, ``"auto"``) shows what was run beside it, from ``resolved``
    (``Explanation.meta["resolved_options"]``): ``None → [2, 8, 8]``."""
    if not options:
        return ""
    resolved = resolved if isinstance(resolved, Mapping) else {}

    def value(k, v) -> str:
        text = f"<code>{esc(fmt(v))}</code>"
        return text if k not in resolved else f"{text} → <code>{esc(fmt(resolved[k]))}</code>"

    body = "".join(f"<tr><th>{esc(k)}</th><td>{value(k, v)}</td></tr>" for k, v in options.items())
    return f'<div class="section-label">Options</div><table>{body}</table>'


# ----------------------------------------------------------------------------------------------
# formatting


def fmt(v) -> str:
    """``v`` as the page shows it: numbers shortened, mappings as ``k=v``, long lists cut."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items()) or "{}"
    if isinstance(v, (list, tuple)):
        text = json.dumps(v, default=str)
        return text if len(text) <= 120 else text[:117] + "…"
    return str(v)


def esc(v) -> str:
    """``str(v)`` escaped for HTML text and attribute values."""
    return html.escape(str(v), quote=True)

"""The ``kinetics:`` dataset kind: Kinetics-400/600/700 clips, listed by the release's CSV.

The release lists each clip as a YouTube video and a 10-second segment of it, one row per clip
(``label,youtube_id,time_start,time_end,split``, and ``is_cc`` in Kinetics-700-2020); ``test.csv``
has no ``label``. Downloaders store a clip as ``<youtube_id>_<start:06d>_<end:06d>.mp4`` (the
ActivityNet crawler, the CVDF mirror; ``.mkv`` and ``.webm`` too), in class folders or in one
folder, as a folder of its frames by that name (MMAction2's rawframes), or keep the whole YouTube
video as ``<youtube_id>.mp4``, of which the segment is read. All of these are found below
``ROOT`` by name, wherever they lie; a clip found nowhere is left out, with a warning that counts
them (Kinetics loses a few per cent of its videos to YouTube every year, so every copy misses
some).

Labels are class names (``air drumming``), mapped onto the model's classes by name as the
``folder:`` kind maps class folders (``air_drumming`` is ``air drumming``); the Kinetics models
of Hugging Face and torchvision name their classes so. Without a model's classes, the classes
are the CSV's names, sorted.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Annotated

from ...errors import InputError
from ...options import Opt
from ..datasets import ClassNames, EvalDataset, VideoListDataset, _Entry, _label_index, register_dataset
from ..frame_folder import IMAGE_SUFFIXES
from .folder import VIDEO_SUFFIXES

#: the columns every row needs
REQUIRED = ("youtube_id", "time_start", "time_end")


@register_dataset("kinetics")
def _kinetics(argument: str, *, num_frames: int, classes=None, annotations: str | None = None,
              split: str | None = None, max_side: Annotated[int | None, Opt(ge=1)] = None) -> EvalDataset:
    """kinetics:ROOT[,annotations=FILE.csv][,split=NAME][,max_side=N] — Kinetics clips listed by the release's CSV.

    ``annotations`` defaults to the one CSV in ``ROOT`` or ``ROOT/annotations``; ``split`` keeps
    the rows of that split (``train``, ``val``, ``test``: the CSV's ``split`` column).
    """
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise InputError(f"kinetics: {root} is not a directory")
    csv_path = Path(annotations).expanduser() if annotations else _only_csv(root)
    rows = _rows(csv_path, split)
    found = _clips_below(root, {r[1] for r in rows} | {r[2] for r in rows})
    names = sorted({r[3] for r in rows if r[3]})
    own = classes is None and bool(names)
    classes = ClassNames(names, f"the Kinetics CSV {csv_path.name}") if own else classes
    entries, missing, seen = [], [], set()   # missing: (clip, its YouTube id)
    for line, clip, video, label, start, end in rows:
        if clip in seen:   # a clip listed twice is counted once
            continue
        seen.add(clip)
        where = f"{csv_path}:{line}"
        index, name = _label_index(label, classes, where) if label else (None, None)
        if clip in found:
            entries.append(_Entry(clip, found[clip], index, name))
        elif video in found:   # the whole YouTube video: its segment
            entries.append(_Entry(clip, found[video], index, name, span=(float(start), float(end))))
        else:
            missing.append((clip, video))
    if not entries:
        raise InputError(f"kinetics: none of the {len(seen)} clips {csv_path.name} lists is below {root} (looked for "
                         f"{missing[0][0]}.mp4 and the like, or {missing[0][1]}.mp4, its whole video)")
    if missing:
        warnings.warn(f"kinetics: {len(missing)} of the {len(seen)} clips {csv_path.name} lists are not below {root} "
                      f"({', '.join(c for c, _ in missing[:3])}{', …' if len(missing) > 3 else ''}); left out",
                      stacklevel=3)
    ds = VideoListDataset(entries, num_frames, max_side)
    ds.class_names = list(classes) if classes is not None else None
    return ds


def _only_csv(root: Path) -> Path:
    """The one ``.csv`` file in ``root`` or ``root/annotations``."""
    found = sorted(p for folder in (root, root / "annotations") if folder.is_dir()
                   for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"kinetics: no CSV in {root} or {root / 'annotations'}; give annotations=FILE.csv "
                         "(the release's train.csv, validate.csv or test.csv)")
    raise InputError(f"kinetics: {len(found)} CSV files in {root} ({', '.join(p.name for p in found[:4])}"
                     f"{', …' if len(found) > 4 else ''}); name one with annotations=FILE.csv")


def _rows(csv_path: Path, split: str | None) -> list[tuple[int, str, str, str, int, int]]:
    """``(line, clip name, YouTube id, label, start, end)`` of each row of ``split`` (all without one)."""
    if not csv_path.is_file():
        raise InputError(f"kinetics: no annotation file {csv_path}")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{csv_path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    absent = [c for c in REQUIRED if c not in header]
    if absent:
        raise InputError(f"{csv_path}: the header must name {', '.join(REQUIRED)} (as the Kinetics release's "
                         f"label,youtube_id,time_start,time_end,split); {', '.join(absent)} missing, got "
                         f"{','.join(header) or 'an empty file'}")
    if split is not None and "split" not in header:
        raise InputError(f"{csv_path}: split={split} asks for a 'split' column, which the header lacks")
    col = {name: header.index(name) for name in header}
    rows, splits = [], set()
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        if split is not None:
            splits.add(cells["split"])
            if cells["split"].lower() != split.lower():
                continue
        start, end = _second(cells["time_start"], csv_path, line), _second(cells["time_end"], csv_path, line)
        if end <= start:
            raise InputError(f"{csv_path}:{line}: time_end ({end}) must be after time_start ({start})")
        video = cells["youtube_id"]
        if not video or "/" in video or os.sep in video:
            raise InputError(f"{csv_path}:{line}: youtube_id must be a video's id, got {video!r}")
        rows.append((line, f"{video}_{start:06d}_{end:06d}", video, cells.get("label", ""), start, end))
    if not rows:
        if split is not None:
            raise InputError(f"{csv_path}: no row of split {split!r}; its splits are "
                             f"{', '.join(sorted(s for s in splits if s)) or 'none'}")
        raise InputError(f"{csv_path}: lists no clips")
    return rows


def _second(text: str, csv_path: Path, line: int) -> int:
    """A whole second of a row (``10``, or ``10.0`` as spreadsheets write it)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value == int(value)):
        raise InputError(f"{csv_path}:{line}: a segment's times are whole seconds >= 0, got {text!r}")
    return int(value)


def _clips_below(root: Path, names: set[str]) -> dict[str, Path]:
    """The videos below ``root`` (links followed, hidden entries not) whose name without its suffix
    is one of ``names``, and the folders of frames so named; the first in sorted order where a
    name is found twice (a clip in both train/ and val/ is the same clip)."""
    found: dict[str, Path] = {}
    visited = {os.path.realpath(root)}
    for folder, dirs, files in os.walk(root, followlinks=True):
        # followed links that lead back up (a -> ..) would be walked forever
        dirs[:] = [d for d in sorted(dirs) if not d.startswith(".") and _first_visit(Path(folder) / d, visited)]
        for d in list(dirs):
            if d in names and _holds_pictures(Path(folder) / d):
                found.setdefault(d, Path(folder) / d)
                dirs.remove(d)   # a clip's frames, not a folder of clips
        for f in sorted(files):
            stem, suffix = os.path.splitext(f)
            if suffix.lower() in VIDEO_SUFFIXES and stem in names and not f.startswith("."):
                found.setdefault(stem, Path(folder) / f)
    return found


def _first_visit(folder: Path, visited: set[str]) -> bool:
    real = os.path.realpath(folder)
    if real in visited:
        return False
    visited.add(real)
    return True


def _holds_pictures(folder: Path) -> bool:
    try:
        return any(os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES for n in os.listdir(folder))
    except OSError:
        return False

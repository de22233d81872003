"""The ``folder:`` dataset kind: a directory of videos, labelled by a CSV or by class subfolders.

A video is a file, or a folder of numbered pictures (``<class>/<video>/img_00001.jpg`` …, as
MMAction2's *rawframes* and UCF101-24's ``rgb-images`` are stored; :mod:`~videoxai.data.frame_folder`)
taken whole as one clip, or, in a CSV, a glob naming one series in a folder (``vid1/img_*.jpg``).

The spec, the CSV's columns and how class subfolders map onto the model's classes are documented
in :mod:`videoxai.data.datasets`. This module reads what users hand-make or export from
spreadsheets (headers in any case, ``;`` and tab separators, byte-order marks, Windows paths,
Unicode file names in either normal form) into a :class:`~videoxai.data.datasets.VideoListDataset`.
"""

from __future__ import annotations

import codecs
import csv
import errno
import fnmatch
import io
import os
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Annotated, Sequence

from ...errors import InputError
from ...options import Opt
from ..animated_webp import is_animated_webp
from ..datasets import (ClassNames, EvalDataset, VideoListDataset, _Entry, _index_digits, _label_index,
                        register_dataset)
from ..frame_folder import IMAGE_SUFFIXES, names_frame_series

#: what a ``folder:`` takes for a video (FFmpeg reads them all): MPEG-1/2 (``.mpg``, the
#: camcorders' ``.mts``), phones' ``.3gp``, Flash and Windows Media files were left out silently;
#: so were DVD (``.vob``), DV camcorder (``.dv``), broadcast (``.mxf``) and ``.asf`` files.
#: Not ``.ts`` (TypeScript sources as often as MPEG transport streams) nor still images; a
#: ``.webp`` where it is animated (:func:`~videoxai.data.animated_webp.is_animated_webp`).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v", ".mpg", ".mpeg", ".mts", ".m2ts",
                  ".3gp", ".flv", ".wmv", ".ogv", ".vob", ".dv", ".mxf", ".asf")


@register_dataset("folder")
def _folder(argument: str, *, num_frames: int, classes=None, labels: str | None = None,
            max_side: Annotated[int | None, Opt(ge=1)] = None,
            fps: Annotated[float | None, Opt(gt=0, help="frame rate of the folders of frames")] = None,
            split: str | None = None) -> EvalDataset:
    """folder:DIR[,labels=FILE.csv][,split=FILE][,max_side=N][,fps=F] — videos or frame folders, by a CSV or class subfolders.

    ``fps`` is the frame rate of the clips stored as folders of numbered pictures (which carry
    none): without it their clips have no ``fps`` or ``times``; video files have their own.
    ``split`` lists the clips of class subfolders to use, one per line (UCF101's
    ``testlist01.txt``, MMAction2's lists): see :func:`_split_clips`.
    """
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise InputError(f"folder: {root} is not a directory")
    explicit = labels is not None
    csv_path = Path(labels).expanduser() if explicit else root / "labels.csv"
    side = max_side
    try:
        has_csv = csv_path.is_file()
    except PermissionError as e:  # DIR (or the labels file's folder) may not be searched: say which
        raise InputError(f"folder: cannot read {csv_path if explicit else root}: {e.strerror or e}") from None
    if has_csv and split is not None:   # the CSV lists its clips itself: one of the two would be ignored
        raise InputError(f"folder: split={split} chooses among class subfolders' clips; {csv_path} lists the "
                         "clips itself (list only the split's clips in it, or drop split=)")
    if not has_csv:
        if explicit:
            # a relative labels= is read from the working directory, not from DIR
            beside = root / labels if not csv_path.is_absolute() and (root / labels).is_file() else None
            raise InputError(f"folder: no labels file {csv_path}" + (
                f" (a relative path is read from the working directory; give labels={beside})" if beside else ""))
        files, broken, unreadable = _video_files(root)
        if unreadable:
            # one folder the user may not list (a 'lost+found' at the top of a data disk, a class
            # copied with the wrong owner) stopped the whole data set; its videos cannot even be
            # named, so they are left out, as are videos that cannot be read elsewhere, with a word
            warnings.warn(f"folder: {root}: {_unreadable_text(root, unreadable)}; {'their' if len(unreadable) > 1 else 'its'} "
                          "videos are left out (give read and search permission to include them)", stacklevel=3)
        if broken:   # a video moved or deleted under its link: left out, but not without a word
            warnings.warn(f"folder: {root}: {len(broken)} video link{'s' if len(broken) > 1 else ''} "
                          f"({', '.join(repr(_text(str(b.relative_to(root)))) for b in broken[:3])}"
                          f"{', …' if len(broken) > 3 else ''}) point{'' if len(broken) > 1 else 's'} to no file; "
                          f"left out", stacklevel=3)
        if not files:
            # DIR the frames of one video: its folder (or the video's spec elsewhere) was meant
            hint = (f"; it is one video's folder of frames: give the folder above it (folder:{root.parent}), "
                    "where each video's frames are a subfolder" if _is_frame_folder(root) else "")
            raise InputError(f"folder: no video files in {root}"
                             + (f" ({_unreadable_text(root, unreadable)})" if unreadable else "") + hint)
        chosen = _split_clips(root, files, Path(split).expanduser()) if split is not None else None
        return _with_frame_rate(_class_folders(root, files, classes, num_frames, side, chosen), fps, root)
    rows = _read_labels_csv(csv_path, root)
    columns = {c for _, row in rows for c in row}
    if "label" not in columns and columns - set(CSV_COLUMNS):
        # 'video,class' or 'video,category': every clip was silently explained for the prediction
        warnings.warn(f"{csv_path} has no 'label' column (its columns: {', '.join(sorted(columns))}); every "
                      f"clip is {_without_class(classes)}", stacklevel=3)
    if classes is None:  # no model's classes to map names onto: named labels define them
        classes = _classes_from_names(rows, csv_path)
    entries, lines = [], []   # lines: each entry's line in the CSV
    # every missing file and every unknown class at once: a 100-clip CSV with five of each
    # took ten runs, each naming the next one
    missing: list[tuple[int, str]] = []
    unknown: dict[str, int] = {}
    for n, row in rows:
        where = f"{csv_path}:{n}"
        rel = (row.get("video") or "").strip()
        if not rel:
            raise InputError(f"{where}: empty video path")
        path = _existing(root, rel)
        if path is None and rel != row["video"] and _existing(root, row["video"]) is not None:
            # the spaces are the name's own ('" intro.mp4"', quoted in the CSV): stripped, a file
            # that is there was "no video file"; the stripped name still wins ('a.mp4, 0' by hand)
            rel = row["video"]
            path = _existing(root, rel)
        if path is None:
            missing.append((n, rel))
            continue
        label, name = (None, None)
        text = (row.get("label") or "").strip()
        if text in unknown:
            continue
        if text:
            try:
                label, name = _label_index(text, classes, where)
            except InputError:
                if classes is None or _index_digits(text) is not None:   # an index out of range: at once
                    raise
                unknown[text] = n
                continue
        window = None
        given = [c for c in ("start", "end") if (row.get(c) or "").strip()]
        if len(given) == 1:   # was "end must be an integer, got ''"
            has, lacks = ("a start", "end") if given[0] == "start" else ("an end", "start")
            raise InputError(f"{where}: the window has {has} but no {lacks}; give both, or neither")
        if given:
            start = _int_option(row.get("start"), "start", where)
            end = _int_option(row.get("end"), "end", where)
            if not 0 <= start < end:
                raise InputError(f"{where}: window [{start}, {end}) is empty or negative")
            window = (start, end)
        entries.append(_Entry(rel, path, label, name, window))
        lines.append(n)
    if len(missing) == 1:
        raise InputError(f"{csv_path}:{missing[0][0]}: no video file {root / missing[0][1]}")
    if missing:
        raise InputError(f"{csv_path}: {len(missing)} listed videos are not in {root}: "
                         + ", ".join(f"{rel!r} (line {n})" for n, rel in missing[:5])
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if len(unknown) == 1:
        (text, n), = unknown.items()
        _label_index(text, classes, f"{csv_path}:{n}")   # raises, naming the line and the classes
    if unknown:
        raise InputError(f"{csv_path}: {len(unknown)} classes are not among {ClassNames.of(classes).named}: "
                         + ", ".join(f"{text!r} (line {n})" for text, n in list(unknown.items())[:8])
                         + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
                         + f"; its classes: {', '.join(classes[:8])}{', …' if len(classes) > 8 else ''}")
    # by the file, not the text: 'a.mp4' and './a.mp4' are one video under two keys
    # both lines named: a CSV of thousands (two exports joined) said "listed twice", not where
    seen: dict[Path, tuple[str, int]] = {}
    for e, n in zip(entries, lines):
        path = e.path.resolve()
        if path in seen:
            key, first = seen[path]
            also = f" (also as {key!r})" if key != e.key else ""
            raise InputError(f"{csv_path}:{first} and {n}: video {e.key!r} is listed twice{also}")
        seen[path] = (e.key, n)
    ds = VideoListDataset(entries, num_frames, side)
    ds.class_names = list(classes) if classes is not None else None
    return _with_frame_rate(ds, fps, root)


def _with_frame_rate(ds: VideoListDataset, fps: float | None, root: Path) -> VideoListDataset:
    """``ds`` reading its folders of frames at ``fps``; refused where every clip is a video file
    (which has its own frame rate, and ``fps`` would silently change nothing)."""
    if fps is not None:
        if not any(names_frame_series(e.path) for e in ds.entries):
            raise InputError(f"folder: {root}: fps={fps:g} is the frame rate of folders of frames, and every clip "
                             "is a video file (which has its own); leave fps out")
        ds.fps = float(fps)
    return ds


#: the columns of a labels CSV, in the order a file without a header line gives them
CSV_COLUMNS = ("video", "label", "start", "end")


def _without_class(classes: Sequence[str] | None) -> str:
    """What becomes of a clip without a class, as warnings say it: mapped onto the model's
    ``classes``, an evaluation explains the model's prediction for it; data that defines its own
    classes, or is mapped onto another owner's (:class:`~videoxai.data.datasets.ClassNames`, e.g.
    ST-ABN's validation data onto its training data's), leaves it unlabelled."""
    if classes is not None and ClassNames.of(classes).owner == "the model":
        return "explained for the model's prediction"
    return "left unlabelled"


def _read_labels_csv(csv_path: Path, root: Path | None = None) -> list[tuple[int, dict[str, str]]]:
    """The rows of a labels CSV as ``(line number, {column: text})``.

    Column names are read without surrounding spaces or case (``Video, Label`` as saved by hand or
    a spreadsheet: ``' label'`` was no column, so every clip silently lost its label). A file
    whose first line is already a video (``clip.mp4,3``) has no header: its columns are
    :data:`CSV_COLUMNS` in order. A spreadsheet in a locale whose decimal mark is a comma saves
    with ``;`` between fields, and TSV files use tabs: a first line with neither a comma nor a
    quote but one of those is split on it. A first line whose first field names a folder of
    frames in ``root`` (``Jump/v1,0``) is a video's too.
    """
    raw = csv_path.read_bytes()
    # Excel's "Unicode Text" is UTF-16 with a byte-order mark (and tabs): unambiguous, so read;
    # spreadsheets save "CSV UTF-8" with a byte-order mark, which would otherwise become part of
    # the first column's name ('\ufeffvideo')
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    raw = raw if utf16 else raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-16" if utf16 else "utf-8")
    except UnicodeDecodeError as e:
        # a CSV saved in a Windows code page ('caf\xe9.mp4'): the line, and the byte, to look at
        line = raw[:e.start].count(b"\n") + 1
        raise InputError(f"{csv_path}:{line}: not {'UTF-16' if utf16 else 'UTF-8'} text (byte "
                         f"0x{raw[e.start]:02x}: {e.reason}); save it as UTF-8") from None
    if "\x00" in text:
        # UTF-16 without a byte-order mark decodes as UTF-8 with a NUL after every letter: its
        # header was "no 'video' column, got ['v\x00i\x00…']", and a stray NUL made a class 'cat\x00'
        line = text[:text.index("\x00")].count("\n") + 1
        raise InputError(f"{csv_path}:{line}: holds a NUL byte (UTF-16 saved without a byte-order mark, or "
                         "not a text file); save it as UTF-8")
    first = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = ","
    if "," not in first and '"' not in first:
        delimiter = next((d for d in (";", "\t") if d in first), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        lines: list[tuple[int, list[str]]] = [(reader.line_num, cells) for cells in reader
                                              if any(c.strip() for c in cells)]
    except csv.Error as e:
        # a quote left open swallows the rest of the file into one field: past the csv module's
        # 131 072 characters that was a raw _csv.Error, not a line to look at
        raise InputError(f"{csv_path}:{reader.line_num}: not a CSV line ({e}); an unclosed quote?") from None
    if not lines:
        raise InputError(f"{csv_path}: the file is empty; it needs a header line video,label and a line per video")
    header = [c.strip().lower() for c in lines[0][1]]
    twice = next((c for c in CSV_COLUMNS if header.count(c) > 1), None)
    if twice:   # 'Label' and 'label' (two exports merged): the last one silently won
        raise InputError(f"{csv_path}:{lines[0][0]}: column {twice!r} appears {header.count(twice)} times")
    if "video" in header:
        columns, body = header, lines[1:]
    elif header and (header[0].endswith(VIDEO_SUFFIXES + (".webp",))
                     or root is not None and _names_frames(root, lines[0][1][0].strip())):
        columns, body = list(CSV_COLUMNS[:len(header)]), lines   # no header line: the first is a video
    else:
        raise InputError(f"{csv_path}: the first line must be a header naming a 'video' column "
                         f"(video,label[,start,end]) or a video's own line (clip.mp4,label); got {lines[0][1]}")
    if not body:
        raise InputError(f"{csv_path}: lists no videos, only its header line")
    return [(n, {c: v for c, v in zip(columns, cells) if c}) for n, cells in body]


def _video_files(root: Path) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """The video files below ``root``, sorted, the video links that point to no file, and the
    subfolders that cannot be listed, with why (``root`` itself that cannot is an error). A
    subfolder of numbered pictures (:func:`_is_frame_folder`) is a video, not walked into.

    Linked folders are followed (``DIR/<class>`` linked to where a class's videos are, as scripts
    build evaluation subsets: ``rglob`` did not follow them, and the class was left out without a
    word), except a link back to a folder above it (a loop). Hidden files and folders are not
    clips: macOS writes '._clip.mp4' (AppleDouble metadata) beside every video copied to a
    non-Apple disk, and tools keep caches in '.name/' folders. Only names are listed: no video is
    opened, so a folder of thousands costs a directory walk.
    """
    files: list[Path] = []
    broken: list[Path] = []
    unreadable: list[tuple[Path, str]] = []

    def walk(folder: Path, above: frozenset[str]) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            if folder == root:
                raise InputError(f"folder: cannot list {folder}: {e.strerror or e}") from None
            unreadable.append((folder, str(e.strerror or e)))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            suffix = os.path.splitext(entry.name)[1].lower()
            # a WebP is a video where it is animated (read through Pillow), else a still picture
            video = suffix in VIDEO_SUFFIXES or suffix == ".webp" and is_animated_webp(path)
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()   # both follow links
            except OSError as e:
                # a link that resolves to nothing by looping ('clip.mp4 -> clip.mp4', 'a -> b -> a':
                # ELOOP) was an OSError traceback that stopped the whole data set: a dangling link
                if e.errno != errno.ELOOP:
                    # a link into a folder that may not be searched: a video is taken, and fails
                    # alone when read (as a listed one does), anything else is named unreadable
                    if video:
                        files.append(path)
                    else:
                        unreadable.append((path, str(e.strerror or e)))
                    continue
                is_dir = is_file = False
            if is_dir:
                real = os.path.realpath(path)
                if real in above:
                    continue
                if _is_frame_folder(path):   # one video's pictures: a clip, not a folder of clips
                    files.append(path)
                else:
                    walk(path, above | {real})
            elif video:
                if is_file:
                    files.append(path)
                elif entry.is_symlink() and not os.path.exists(path):   # (False, not an error, where it cannot be told)
                    broken.append(path)

    walk(root, frozenset({os.path.realpath(root)}))
    return sorted(files), sorted(broken), sorted(unreadable)


def _is_frame_folder(folder: Path) -> bool:
    """Whether ``folder`` holds one video as numbered pictures (``v1/00001.jpg``, ``v1/img_00002.png``):
    two or more, and no video file and no subfolder beside them (a class folder of clips, or of
    such folders, is walked into). Only names are listed (an animated ``.webp`` is a video, as the walk takes it); hidden entries are not
    looked at; a folder that cannot be listed is not one (walked into, it is named unreadable)."""
    pictures = 0
    try:
        for entry in list(os.scandir(folder)):
            if entry.name.startswith("."):
                continue
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix in VIDEO_SUFFIXES or entry.is_dir() or suffix == ".webp" and is_animated_webp(folder / entry.name):
                return False
            pictures += _numbered_picture(entry.name)
    except OSError:
        return False
    return pictures >= 2


def _names_frames(root: Path, rel: str) -> bool:
    """Whether ``root / rel`` is a folder of frames (:func:`_is_frame_folder`) or a glob of
    pictures in a folder (``v1/img_*.jpg``) — for a labels CSV whose first line may be a row."""
    path = _existing(root, rel) if rel else None
    return path is not None and not path.is_file() and (not path.is_dir() or _is_frame_folder(path))


def _frames_path(path: Path) -> bool:
    """Whether ``path`` is a folder, or a glob (``v1/img_*.jpg``) that matches numbered pictures in
    its folder: one that matches none is no video file, not a clip that fails when read."""
    if not names_frame_series(path):
        return False
    if os.path.isdir(path):
        return True
    try:
        names = os.listdir(path.parent)
    except OSError:
        return False
    return any(fnmatch.fnmatchcase(name, path.name) and _numbered_picture(name) for name in names)


def _numbered_picture(name: str) -> bool:
    """A picture with a number in its name (``img_00001.jpg``, ``00001_rgb.png``), which may be a
    frame (:func:`~videoxai.data.frame_folder.frame_series` tells which run of digits numbers them)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and any(c in "0123456789" for c in name)


def _unreadable_text(root: Path, unreadable: Sequence[tuple[Path, str]]) -> str:
    """``2 subfolders cannot be read ('dog': Permission denied, …)``, for warnings and errors."""
    shown = ", ".join(f"{_text(str(p.relative_to(root)))!r}: {why}" for p, why in unreadable[:3])
    n = len(unreadable)
    return (f"{n} subfolder{'s' if n > 1 else ''} cannot be read ({shown}{', …' if n > 3 else ''})")


def _existing(root: Path, rel: str) -> Path | None:
    """The file ``root / rel``, also where its name is in the other Unicode normal form (macOS
    writes 'é' in file names as 'e' and a combining accent, NFD; a spreadsheet types it as one
    character, NFC; on Linux the two are different names) or where a CSV written on Windows
    separates folders with ``\\`` (``train\\a.mp4``). A folder, or a glob in one
    (``v1/img_*.jpg``), is a video stored as pictures: taken without listing it (one that holds no
    frames is an error of its own clip when read, as an unreadable video file is)."""
    forms = [rel] + ([rel.replace("\\", "/")] if "\\" in rel and os.sep == "/" else [])
    for form in list(forms):
        forms += [unicodedata.normalize("NFC", form), unicodedata.normalize("NFD", form)]
    for text in dict.fromkeys(forms):
        try:
            if (root / text).is_file() or _frames_path(root / text):
                return root / text
        except PermissionError:
            # in a folder the user may not search: the file cannot even be looked at. Taken, so that
            # reading it fails as any unreadable video does (an error row naming it and why), not the
            # whole data set with a PermissionError from deep inside
            return root / text
    return None


def _class_folders(root: Path, files: Sequence[Path], classes: Sequence[str] | None, num_frames: int,
                   max_side: int | None, chosen: set[Path] | None = None) -> VideoListDataset:
    """The videos of a folder without a labels CSV. Where every video lies below a first-level
    subfolder (``DIR/<class>/clip.mp4``, the layout of UCF101, HMDB51 and torchvision's
    ``DatasetFolder``), the subfolder names the clip's class: mapped onto the model's
    ``classes`` when given, else defining them (sorted names, or indices for numeric names).
    A class subfolder matches a class of the model without case, ``_`` and ``-`` read as spaces
    (``air_drumming`` is ``air drumming``). Videos beside the model's class subfolders
    (``DIR/clip.mp4``) are unlabelled (the model's prediction is explained), which a warning
    says; every clip is unlabelled where there is one subfolder only and the model has no class
    of that name (``DIR/videos/…``), where a subfolder is not one of the model's classes (a
    warning), or where videos lie beside the subfolders and there are no model classes.
    ``chosen``: the clips of a split (:func:`_split_clips`; every clip where ``None``); the
    classes are named from every subfolder all the same, so that a class without a clip in the
    split does not move the others' indices."""
    parts = [p.relative_to(root).parts for p in files]
    rel = [_text("/".join(r)) for r in parts]
    folders = [_text(r[0]) if len(r) > 1 else None for r in parts]
    labels: list[tuple[int | None, str | None]] = [(None, None)] * len(files)
    names = None
    distinct = {f for f in folders if f is not None}
    stray = [r for r, f in zip(rel, folders) if f is None]
    # one subfolder alone (``DIR/videos/…``) is taken for a class only if the model has it, and
    # subfolders beside loose videos only if they are the model's classes (not a guess of classes)
    if distinct and (len(distinct) > 1 or classes is not None) and not (stray and classes is None):
        # ASCII digits: '²'.isdigit() holds, so folders '1' and '²' were taken for class indices,
        # '²' was "not among the model's classes" (there were none) and every clip lost its class
        named = classes is None and not all(f.strip().isascii() and f.strip().isdigit() for f in folders)
        if named:
            classes = sorted(distinct)
            lowered = {}
            for c in classes:
                if lowered.setdefault(c.strip().lower(), c) != c:
                    raise InputError(f"folder: {root}: subfolders {lowered[c.strip().lower()]!r} and "
                                     f"{c!r} differ only by case or surrounding spaces")
        mapped, unknown = {}, []
        for f in sorted(distinct):
            if named:   # its own name's place: folders '1', '2', 'cat' put the clips of '1' in class 1, '2'
                mapped[f] = (classes.index(f), f)
                continue
            try:
                mapped[f] = _label_index(f, classes, str(root / f))
            except InputError:
                unknown.append(f)
        if unknown and len(distinct) > 1:
            warnings.warn(f"folder: {root}: subfolder{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown[:5]))}{', …' if len(unknown) > 5 else ''} "
                          f"{'are' if len(unknown) > 1 else 'is'} not among {ClassNames.of(classes).named}; "
                          f"every clip is {_without_class(classes)} (a labels.csv labels them explicitly)", stacklevel=3)
        elif not unknown:
            labels = [mapped[f] if f is not None else (None, None) for f in folders]
            names = list(classes) if classes is not None else None
            # one stray video beside the class folders left every clip of them unlabelled, silently
            if stray:
                warnings.warn(f"folder: {root}: {len(stray)} video{'s' if len(stray) > 1 else ''} "
                              f"({', '.join(map(repr, stray[:3]))}{', …' if len(stray) > 3 else ''}) "
                              f"{'lie' if len(stray) > 1 else 'lies'} beside the class subfolders, in no "
                              f"class: {_without_class(classes)}", stacklevel=3)
    keep = _reached_once(root, files, rel, labels)
    if chosen is not None:   # a split's clips; the classes above are every subfolder's, as in the whole set
        keep = [k for k in keep if files[k] in chosen]
    entries = [_Entry(rel[k], files[k], *labels[k]) for k in keep]
    ds = VideoListDataset(entries, num_frames, max_side)
    ds.class_names = names
    return ds


def _split_clips(root: Path, files: Sequence[Path], split: Path) -> set[Path]:
    """The clips among ``files`` that the split file lists: one per line, a path relative to
    ``root`` and, after a space, anything (UCF101's ``trainlist01.txt`` gives a class number,
    1-based; MMAction2's lists a frame count and a 0-based label: the class subfolders name the
    classes, so these are not read). A listed ``a/v1.avi`` is also the folder of frames ``a/v1``
    and the other way round (UCF101's lists name ``.avi`` files, its frames are folders), and a
    name is matched without regard to case where only that finds it (UCF101's lists write
    ``HandStandPushups/`` for the folder ``HandstandPushups/``). Listed clips not below ``root``
    are left out with a warning counting them; a list that names none is an error."""
    if not split.is_file():
        raise InputError(f"folder: no split file {split}")
    try:   # a byte-order mark stuck to the first path ('\ufeffApplyEyeMakeup/…': not found)
        lines = split.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{split}: not UTF-8 text ({e.reason} at byte {e.start})") from None

    def forms(rel: str) -> tuple[str, str]:
        rel = rel.replace("\\", "/").strip("/")
        stem, suffix = os.path.splitext(rel)
        return (stem if suffix.lower() in VIDEO_SUFFIXES else rel), rel

    by_name: dict[str, Path] = {}
    for path in files:
        for form in forms("/".join(path.relative_to(root).parts)):
            by_name.setdefault(form, path)
    by_lower: dict[str, list[Path]] = {}
    for name, path in by_name.items():
        by_lower.setdefault(name.lower(), []).append(path)
    chosen, missing = set(), []
    listed = [ln.split()[0] for ln in lines if ln.strip()]
    for rel in listed:
        found = by_name.get(forms(rel)[0])
        if found is None:
            same = set(by_lower.get(forms(rel)[0].lower(), ()))
            found = same.pop() if len(same) == 1 else None
        if found is None:
            missing.append(rel)
        else:
            chosen.add(found)
    if not chosen:
        raise InputError(f"folder: {split} lists {len(listed)} clips, none of them below {root}"
                         + (f" (e.g. {missing[0]!r})" if missing else ""))
    if missing:
        warnings.warn(f"folder: {len(missing)} of the {len(listed)} clips {split.name} lists are not below {root} "
                      f"({', '.join(map(repr, missing[:3]))}{', …' if len(missing) > 3 else ''}); left out",
                      stacklevel=4)
    return chosen


def _reached_once(root: Path, files: Sequence[Path], rel: Sequence[str],
                  labels: Sequence[tuple[int | None, str | None]]) -> list[int]:
    """The positions in ``files`` (sorted) to list: each file once, where linked folders reach it
    along two paths (one folder of videos linked into two class folders, as scripts build
    evaluation subsets), with a warning naming those left out; a file so reached in two classes
    is refused, naming it and both.

    Image-folder loaders (torchvision's ``DatasetFolder``) follow links and list such a file once
    per class, silently: a clip with two labels. Here a clip is explained for one class and
    scored against it, so it was counted twice, once "wrong" whatever the model said, and which
    class is meant cannot be told from the folders: refused, as a labels CSV that lists one
    video twice is. Reached twice in one class (or in none), nothing is ambiguous, only counted
    twice: listed once, at its first path in sorted order."""
    first: dict[str, int] = {}  # real path -> position of the first path that reaches it
    keep: list[int] = []
    again: list[tuple[str, str]] = []  # (path left out, path listed)
    for k, path in enumerate(files):
        j = first.setdefault(os.path.realpath(path), k)
        if j == k:
            keep.append(k)
        elif labels[j] != labels[k]:
            raise InputError(f"folder: {root}: {_text(os.path.realpath(path))} is in two classes through linked "
                             f"folders: class {_class_text(labels[j])} as {rel[j]!r} and class {_class_text(labels[k])} as "
                             f"{rel[k]!r}; a clip has one class: link it into one class folder only, or label the "
                             "clips in a labels.csv")
        else:
            again.append((rel[k], rel[j]))
    if again:
        shown = ", ".join(f"{left!r} is {listed!r}" for left, listed in again[:3])
        n = len(again)
        warnings.warn(f"folder: {root}: {n} video{'s are' if n > 1 else ' is'} reached again through linked folders "
                      f"and listed once ({shown}{', …' if n > 3 else ''})", stacklevel=4)
    return keep


def _class_text(label: tuple[int | None, str | None]) -> str:
    """A clip's class (index, name) as messages name it: its name, else its index, else none."""
    return repr(label[1]) if label[1] is not None else "none" if label[0] is None else str(label[0])


def _text(name: str) -> str:
    """A file or folder name as text every store takes: bytes that are not UTF-8 (a Latin-1
    ``caf\xe9.mp4``, legal on Linux; Python keeps them as lone surrogates, which SQLite, JSON and
    the reports refuse) are written ``\xe9``. Clip keys are identities, not paths: the file is
    opened by its own path, and the same name gives the same key in every run."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _classes_from_names(rows: Sequence[tuple[int, dict]], csv_path: Path) -> list[str] | None:
    """The class list of a labels CSV whose labels are names: the distinct names, sorted (as
    image-folder loaders do), or ``None`` when the labels are class indices (or absent)."""
    labels = [(n, (row.get("label") or "").strip()) for n, row in rows]
    labels = [(n, text) for n, text in labels if text]
    names = [(n, text) for n, text in labels if _index_digits(text) is None]
    if not names:
        return None
    if len(names) != len(labels):
        n = next(n for n, text in labels if _index_digits(text) is not None)
        raise InputError(f"{csv_path}:{n}: label is an index, but other rows give class names; "
                         "use names (or indices) throughout")
    seen: dict[str, str] = {}
    for n, text in names:
        if seen.setdefault(text.lower(), text) != text:
            raise InputError(f"{csv_path}:{n}: labels {seen[text.lower()]!r} and {text!r} differ only by case")
    return sorted(seen.values())


def _int_option(value, name: str, where: str) -> int:
    """A frame index of a CSV cell: ASCII digits (``int()`` also took '1_0' as 10 and '٣' as 3),
    or a whole number written as a float ('4.0': pandas writes an integer column that has empty
    cells so)."""
    text = (value or "").strip()
    match = re.fullmatch(r"(-?[0-9]+)(\.0*)?", text)
    shown = repr(text) if len(text) <= 40 else f"{text[:20]!r}… ({len(text)} characters)"
    if match is None:
        raise InputError(f"{where}: {name} must be an integer, got {shown}")
    if len(match.group(1)) > 18:   # past int()'s 4300 digits it was a ValueError; past any video anyway
        raise InputError(f"{where}: {name} {shown} is past any video's frames")
    return int(match.group(1))

"""Evaluation datasets: clips with labels and, where known, where and when the evidence is.

Every dataset is a sequence of :class:`EvalSample` and is named by a spec string,
``kind:argument[,key=value…]`` (a path with a comma is read whole where it exists, or given in
double quotes: ``folder:"DIR"``):

* ``synthetic:N[,split=test][,seed=0]`` — the first ``N`` clips of the synthetic benchmark
  (:mod:`videoxai.data.synthetic`), with per-frame masks, boxes and the evidence window;
  ``1 ≤ N ≤ 10^12`` (clips are rendered when used, so ``N`` costs nothing up front).
* ``folder:DIR[,labels=FILE.csv][,max_side=N]`` — the videos in ``DIR``; the CSV (default
  ``DIR/labels.csv`` if it exists) has a header with columns ``video`` (path relative to ``DIR``)
  and ``label`` (class index or class name), and optionally ``start`` and ``end``: the evidence
  window in *source* frame indices, ``end`` excluded. Column names are read in any case; a file
  whose first line is a video's (``clip.mp4,3``) has no header and gives those columns in that
  order; fields are separated by commas (``;`` or tabs where the first line has no comma).
  Other columns are ignored, and so are videos in ``DIR`` the CSV does not list. Without a CSV
  every video file in ``DIR`` is used; where videos lie below first-level subfolders
  (``DIR/<class>/clip.mp4``, as UCF101 and HMDB51 ship) the subfolder is their class
  (``air_drumming`` matches the model's ``air drumming``), otherwise the clips are unlabelled
  (the model's prediction is explained), as are videos beside the class subfolders (a warning
  names them).
* ``ucf24:ROOT[,annotations=FILE.json][,split=FILE.txt]`` — UCF101-24-style per-frame boxes:
  ``ROOT/<key>.avi`` (or ``.mp4``) and a JSON file (default ``ROOT/annotations.json``) in the
  layout of the corrected annotations' ``pyannot.pkl`` (convert the pickle once with
  ``json.dump({k: {**v, "annotations": [{**a, "boxes": a["boxes"].tolist()} for a in
  v["annotations"]]} for k, v in pickle.load(f).items()}, out)``; videoxai never unpickles
  data): ``{key: {"label": int, "numf": int, "annotations": [{"label": int, "sf": int, "ef": int,
  "boxes": [[x1, y1, x2, y2], …]}]}}`` with 0-based start frame ``sf`` and ``ef`` excluded, one
  box per frame, in the video's pixels: a box partly outside the frame is clipped to it, one wholly
  outside makes the clip an error row; swapped corners and tubes outside ``[0, numf)`` are
  refused before the run. Class names are the key's folder (``Basketball/v_Basketball_g01_c01``). The
  optional split file lists the keys to use, one per line.
* ``ssv2:VIDEOS,annotations=FILE.json[,labels=FILE.json]`` — Something-Something-style JSON: a
  list of ``{"id": …, "template": "Putting [something] on a surface", …}`` (``VIDEOS/<id>.webm``)
  and a labels file mapping each template (brackets removed) to its class index.

Clips are sampled uniformly with the model's number of frames (``num_frames``). Datasets know
each clip's ``key`` without decoding it, so a resumed evaluation skips finished clips for free.
Class names are mapped onto the model's labels when ``labels=`` is given to
:func:`load_dataset` (a class the model does not know is an error, not a silent mismatch).
Without ``labels=``, a ``folder:`` CSV whose labels are names (or class subfolders) defines the
classes itself: the distinct names, sorted (as image-folder loaders do), in ``dataset.class_names``.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import NotImplementedType
from typing import Annotated, Callable, Sequence

import numpy as np

from ..clip import Clip
from ..errors import InputError, UnknownNameError
from ..options import Opt, declared_options, parse_assignments, parse_options
from ..registry import Registry

#: what a ``folder:`` takes for a video (FFmpeg reads them all): MPEG-1/2 (``.mpg``, the
#: camcorders' ``.mts``), phones' ``.3gp``, Flash and Windows Media files were left out silently.
#: Not ``.ts`` (TypeScript sources as often as MPEG transport streams) nor still images.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v", ".mpg", ".mpeg", ".mts", ".m2ts",
                  ".3gp", ".flv", ".wmv", ".ogv")


@dataclass
class EvalSample:
    """One clip to evaluate on, with what is known about it.

    Attributes:
        key: unique, stable name of the clip within its dataset (results are stored under it).
        clip: the frames.
        label: class index to explain (in the model's classes), or ``None`` to explain the prediction.
        masks: ``(T, H, W)`` bool, the evidence's pixels per frame, if annotated.
        boxes: ``(T, 4)`` ``[top, left, bottom, right)`` per frame, ``-1`` rows where absent, if annotated.
        window: ``(start, end)`` clip frames in which the evidence is visible, if annotated.
        label_name: the class's name, if known.
    """

    key: str
    clip: Clip
    label: int | None = None
    masks: np.ndarray | None = None
    boxes: np.ndarray | None = None
    window: tuple[int, int] | None = None
    label_name: str | None = None

    def __post_init__(self) -> None:
        t, h, w = self.clip.num_frames, self.clip.height, self.clip.width
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if self.masks.shape != (t, h, w):
                raise InputError(f"{self.key}: masks have shape {self.masks.shape}, the clip is {(t, h, w)}")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes)
            if self.boxes.shape != (t, 4):
                raise InputError(f"{self.key}: boxes must have shape ({t}, 4), got {self.boxes.shape}")
        if self.window is not None:
            start, end = int(self.window[0]), int(self.window[1])
            if not 0 <= start < end <= t:
                raise InputError(f"{self.key}: window {tuple(self.window)} is not within the clip's {t} frames")
            self.window = (start, end)

    @property
    def has_ground_truth(self) -> bool:
        """Masks or boxes are annotated (the spatial localisation metrics can run)."""
        return self.masks is not None or self.boxes is not None

    @property
    def has_window(self) -> bool:
        """A window or any per-frame annotation is known (temporal grounding can run)."""
        return self.window is not None or self.has_ground_truth


class EvalDataset(Sequence[EvalSample]):
    """Base: a sequence of samples whose keys are known without loading them."""

    spec: str = ""
    class_names: list[str] | None = None

    def key(self, i: int) -> str:
        raise NotImplementedError

    def load(self, i: int) -> EvalSample:
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        return self.load(i % len(self))

    def keys(self) -> list[str]:
        return [self.key(i) for i in range(len(self))]

    def label_of(self, i: int) -> int | None | NotImplementedType:
        """The label of clip ``i`` without decoding it, where the dataset knows it so
        (``NotImplemented`` where it does not): a resumed evaluation computes again the clips
        whose label changed since their results were stored (a corrected labels CSV)."""
        return NotImplemented

    def index_of(self, key: str) -> int | None:
        """The index of the clip stored under ``key``, or ``None`` if there is none.

        A resumed evaluation asks it for each stored clip, to count what is already done without
        walking over every clip. This default indexes the keys once (a list of clips in memory);
        datasets whose keys encode their index (``synthetic:``) answer without it.
        """
        index = self.__dict__.get("_key_index")
        if index is None:
            index = self.__dict__["_key_index"] = {self.key(i): i for i in range(len(self))}
        return index.get(key)


class SamplesDataset(EvalDataset):
    """Samples already in memory (a list), e.g. built by a script."""

    def __init__(self, samples: Sequence[EvalSample], spec: str = "samples") -> None:
        self.samples = list(samples)
        seen: set[str] = set()
        for s in self.samples:
            if s.key in seen:   # results are stored by key: the second sample's would be skipped as done
                raise InputError(f"sample keys must be unique: {s.key!r} is given twice")
            seen.add(s.key)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.samples)

    def key(self, i: int) -> str:
        return self.samples[i].key

    def load(self, i: int) -> EvalSample:
        return self.samples[i]

    def label_of(self, i: int) -> int | None:
        return self.samples[i].label


# -- registry ----------------------------------------------------------------------------------
Factory = Callable[..., EvalDataset]   # fn(argument, *, num_frames, classes, **options)
DATASETS: Registry[Factory] = Registry("dataset kind", UnknownNameError)


def register_dataset(kind: str) -> Callable[[Factory], Factory]:
    """Register ``fn(argument, *, num_frames, classes, **options) -> EvalDataset`` for ``kind:…`` specs.

    ``classes`` are the model's class names (or ``None``); options come from the spec as strings.
    """
    return DATASETS.register(name=kind)


def dataset_kinds() -> dict[str, str]:
    """Registered dataset kinds with the first line of their help."""
    return {k: (fn.__doc__ or "").strip().splitlines()[0] for k, fn in DATASETS.items().items()}


def parse_data_spec(spec: str) -> tuple[str, str, dict]:
    """``"synthetic:100,seed=1"`` → ``("synthetic", "100", {"seed": "1"})``."""
    if not isinstance(spec, str) or ":" not in spec:
        raise InputError(f"dataset spec {spec!r} must look like kind:argument[,key=value…]; "
                         f"kinds: {', '.join(DATASETS.names())}")
    kind, _, rest = spec.partition(":")
    raw = _split_outside_quotes(rest)
    # a folder whose name has a comma ('Smith, J/clips'): the pieces before the first KEY=VALUE
    # are one path when together they name one (else the comma-free path is the argument)
    k = next((i for i in range(1, len(raw)) if re.match(r"\s*[A-Za-z_]\w*\s*=", raw[i])), len(raw))
    joined = ",".join(raw[:k]).strip()
    if k > 1 and not (joined.startswith('"') and joined.endswith('"')) and Path(joined).expanduser().exists():
        raw = [joined] + raw[k:]
    parts = [p.strip() for p in raw if p.strip()]
    if not parts:
        raise InputError(f"dataset spec {spec!r} has no argument after {kind}:")
    argument = parts[0]
    if len(argument) >= 2 and argument[0] == argument[-1] == '"':   # folder:"DIR, with commas"
        argument = argument[1:-1]
    try:
        options = parse_assignments(parts[1:], where=f"dataset spec {spec!r}")
    except InputError as e:
        if "is not KEY=VALUE" not in str(e):
            raise
        raise InputError(f"{e} (a path with a comma goes in double quotes: {kind.strip()}:\"DIR\")") from None
    return kind.strip(), argument, options


def _split_outside_quotes(text: str) -> list[str]:
    """``'"a,b",k=v'`` → ``['"a,b"', 'k=v']``: commas inside double quotes do not split."""
    parts, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def load_dataset(spec: str | EvalDataset | Sequence[EvalSample], *, num_frames: int = 8,
                 labels: Sequence[str] | None = None) -> EvalDataset:
    """A dataset from its spec (see the module docs), or a list of samples as is.

    Args:
        spec: the spec string, an :class:`EvalDataset`, or a list of :class:`EvalSample`.
        num_frames: frames per clip (the model's ``num_frames``).
        labels: the model's class names; named classes are mapped onto their indices.
    """
    if isinstance(spec, EvalDataset):
        return spec
    if not isinstance(spec, str):
        return SamplesDataset(spec)
    kind, argument, options = parse_data_spec(spec)
    factory = DATASETS.get(kind)
    # the factory's keyword parameters after (argument, num_frames, classes) are its options
    declared = {k: o for k, o in declared_options(factory, skip=1).items() if k not in ("num_frames", "classes")}
    extra = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    owner = f"dataset {kind!r}"
    typed = parse_options(declared, options, owner, defaults=False, extra=extra)
    ds = factory(argument, num_frames=int(num_frames), classes=labels, **typed)
    # the canonical spec names the data: an option given at its default value, or the options in
    # another order, are the same data ('synthetic:2' and 'synthetic:2,split=test' resume each other)
    differing = sorted(k for k, v in typed.items()
                       if k not in declared or v != (None if declared[k].default is None
                                                     else declared[k].parse(declared[k].default, owner)))
    ds.spec = f"{kind.strip()}:{argument}" + "".join(f",{k}={options[k]}" for k in differing)
    return ds


def _int_option(value, name: str, spec_kind: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{spec_kind}: {name} must be an integer, got {value!r}") from None


def _label_index(value: str | int, labels: Sequence[str] | None, where: str) -> tuple[int, str | None]:
    """A label given as an index or a class name → (index into the model's classes, name)."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        i = int(text)
        if i < 0 or (labels is not None and i >= len(labels)):
            raise InputError(f"{where}: label {i} is out of range for a model with "
                             f"{len(labels) if labels is not None else '?'} classes")
        return i, (labels[i] if labels is not None else None)
    if labels is None:
        raise InputError(f"{where}: label {text!r} is a name; give the model's labels to map it")
    lookup = {name.strip().lower(): i for i, name in enumerate(labels)}
    if text.lower() in lookup:
        return lookup[text.lower()], labels[lookup[text.lower()]]
    # dataset scripts name Kinetics' class 'air drumming' 'air_drumming' (a folder name without
    # spaces): the same class once '_' and '-' read as spaces, where that names one class only
    hits = [i for i, name in enumerate(labels) if _loose(name) == _loose(text)]
    if len(hits) == 1:
        return hits[0], labels[hits[0]]
    raise InputError(f"{where}: class {text!r} is not one of the model's classes "
                     f"({', '.join(labels[:8])}{', …' if len(labels) > 8 else ''})")


def _loose(name: str) -> str:
    """A class name without case, with ``_`` and ``-`` as spaces and runs of spaces as one."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def _window_from_source(indices: np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """Source-frame window ``[start, end)`` → the clip frames it covers (first to last inside)."""
    inside = np.flatnonzero((indices >= start) & (indices < end))
    if inside.size == 0:
        return None
    return int(inside[0]), int(inside[-1]) + 1


# -- synthetic ---------------------------------------------------------------------------------
class SyntheticDataset(EvalDataset):
    def __init__(self, size: int, split: str, seed: int, num_frames: int) -> None:
        from .synthetic import SyntheticVideos

        self.videos = SyntheticVideos(size, split=split, seed=seed, num_frames=num_frames)
        self.class_names = list(self.videos.labels)
        self._prefix = f"synthetic:{split}:{seed}/"

    def __len__(self) -> int:
        return len(self.videos)

    def key(self, i: int) -> str:
        return f"{self._prefix}{i}"

    def index_of(self, key: str) -> int | None:
        # the key names the index: no table of a billion keys for synthetic:1000000000
        text = key[len(self._prefix):] if key.startswith(self._prefix) else ""
        if not (text.isascii() and text.isdigit() and len(text) <= 13) or text != str(int(text)):
            return None   # not this dataset's key, or not as key() writes it ('07')
        return int(text) if int(text) < len(self) else None

    def load(self, i: int) -> EvalSample:
        s = self.videos[i]
        return EvalSample(key=self.key(i), clip=s.clip, label=int(s.label), masks=s.masks, boxes=s.boxes,
                          window=tuple(s.window), label_name=self.class_names[s.label])


@register_dataset("synthetic")
def _synthetic(argument: str, *, num_frames: int, classes=None, split: str = "test",
               seed: Annotated[int, Opt(ge=0)] = 0) -> EvalDataset:  # numpy's seeds are ≥ 0
    """synthetic:N[,split=test][,seed=0] — the synthetic benchmark (masks, boxes, window)."""
    from .synthetic import MAX_SIZE

    # digits only: int() would also take '1_000' and '١٠', and '1e9' or '2.5' are typos to name;
    # any N up to MAX_SIZE costs nothing until a clip is drawn (the evaluation plans lazily)
    text = argument.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 13) or not 1 <= int(text) <= MAX_SIZE:
        raise InputError(f"synthetic:N: the clip count N must be an integer from 1 to {MAX_SIZE} (10^12), "
                         f"got {argument!r}")
    size = int(text)
    ds = SyntheticDataset(size, split, seed, num_frames)
    if classes is not None and list(classes) != ds.class_names:
        raise InputError(f"synthetic: the model's classes {list(classes)[:6]} are not the synthetic "
                         f"benchmark's {ds.class_names}; evaluate a model trained on it (e.g. demo)")
    return ds


# -- a folder of videos --------------------------------------------------------------------------
@dataclass
class _Entry:
    key: str
    path: Path
    label: int | None = None
    label_name: str | None = None
    source_window: tuple[int, int] | None = None


class VideoListDataset(EvalDataset):
    """Videos on disk, each with an optional label and source-frame window."""

    def __init__(self, entries: Sequence[_Entry], num_frames: int, max_side: int | None = None) -> None:
        if not entries:
            raise InputError("the dataset has no videos")
        self.entries = list(entries)
        # results are stored by clip key: a second clip under one key would be silently dropped
        seen: set[str] = set()
        for e in self.entries:
            if e.key in seen:
                raise InputError(f"the dataset lists clip {e.key!r} twice")
            seen.add(e.key)
        self.num_frames = num_frames
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.entries)

    def key(self, i: int) -> str:
        return self.entries[i].key

    def label_of(self, i: int) -> int | None:
        return self.entries[i].label

    def read(self, i: int) -> Clip:
        from .video import read_video
        return read_video(self.entries[i].path, num_frames=self.num_frames, max_side=self.max_side)

    def load(self, i: int) -> EvalSample:
        e = self.entries[i]
        clip = self.read(i)
        window = _window_from_source(clip.indices, *e.source_window) if e.source_window else None
        if e.source_window and e.source_window[0] > clip.indices[-1]:
            # past the video's end (a typo, or another video's frames): an error row that names
            # it and is retried once the CSV is fixed, not an 'n/a' that says no window was given
            raise InputError(f"{e.key}: window [{e.source_window[0]}, {e.source_window[1]}) starts after "
                             f"the video's last sampled frame ({int(clip.indices[-1])})")
        return EvalSample(key=e.key, clip=clip, label=e.label, window=window, label_name=e.label_name)


@register_dataset("folder")
def _folder(argument: str, *, num_frames: int, classes=None, labels: str | None = None,
            max_side: Annotated[int | None, Opt(ge=1)] = None) -> EvalDataset:
    """folder:DIR[,labels=FILE.csv][,max_side=N] — videos with a CSV of labels (video,label[,start,end]) or in one subfolder per class."""
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise InputError(f"folder: {root} is not a directory")
    explicit = labels is not None
    csv_path = Path(labels) if explicit else root / "labels.csv"
    side = max_side
    if not csv_path.is_file():
        if explicit:
            raise InputError(f"folder: no labels file {csv_path}")
        # hidden files and folders are not clips: macOS writes '._clip.mp4' (AppleDouble metadata)
        # beside every video copied to a non-Apple disk, and tools keep caches in '.name/' folders
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if not files:
            raise InputError(f"folder: no video files in {root}")
        return _class_folders(root, files, classes, num_frames, side)
    rows = _read_labels_csv(csv_path)
    columns = {c for _, row in rows for c in row}
    if "label" not in columns and columns - set(CSV_COLUMNS):
        # 'video,class' or 'video,category': every clip was silently explained for the prediction
        warnings.warn(f"{csv_path} has no 'label' column (its columns: {', '.join(sorted(columns))}); every "
                      "clip is explained for the model's prediction", stacklevel=3)
    if classes is None:  # no model's classes to map names onto: named labels define them
        classes = _classes_from_names(rows, csv_path)
    entries = []
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
                if classes is None or text.lstrip("-").isdigit():   # an index out of range: at once
                    raise
                unknown[text] = n
                continue
        window = None
        if (row.get("start") or "").strip() or (row.get("end") or "").strip():
            start = _int_option(row.get("start"), "start", where)
            end = _int_option(row.get("end"), "end", where)
            if not 0 <= start < end:
                raise InputError(f"{where}: window [{start}, {end}) is empty or negative")
            window = (start, end)
        entries.append(_Entry(rel, path, label, name, window))
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
        raise InputError(f"{csv_path}: {len(unknown)} classes are not the model's: "
                         + ", ".join(f"{text!r} (line {n})" for text, n in list(unknown.items())[:8])
                         + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
                         + f"; its classes: {', '.join(classes[:8])}{', …' if len(classes) > 8 else ''}")
    # by the file, not the text: 'a.mp4' and './a.mp4' are one video under two keys
    seen: dict[Path, str] = {}
    for e in entries:
        path = e.path.resolve()
        if path in seen:
            also = f" (also as {seen[path]!r})" if seen[path] != e.key else ""
            raise InputError(f"{csv_path}: video {e.key!r} is listed twice{also}")
        seen[path] = e.key
    ds = VideoListDataset(entries, num_frames, side)
    ds.class_names = list(classes) if classes is not None else None
    return ds


#: the columns of a labels CSV, in the order a file without a header line gives them
CSV_COLUMNS = ("video", "label", "start", "end")


def _read_labels_csv(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """The rows of a labels CSV as ``(line number, {column: text})``.

    Column names are read without surrounding spaces or case (``Video, Label`` as saved by hand or
    a spreadsheet: ``' label'`` was no column, so every clip silently lost its label). A file
    whose first line is already a video (``clip.mp4,3``) has no header: its columns are
    :data:`CSV_COLUMNS` in order. A spreadsheet in a locale whose decimal mark is a comma saves
    with ``;`` between fields, and TSV files use tabs: a first line with neither a comma nor a
    quote but one of those is split on it.
    """
    # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark, which would otherwise
    # become part of the first column's name ('\ufeffvideo')
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise InputError(f"{csv_path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    first = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = ","
    if "," not in first and '"' not in first:
        delimiter = next((d for d in (";", "\t") if d in first), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    lines: list[tuple[int, list[str]]] = [(reader.line_num, cells) for cells in reader
                                          if any(c.strip() for c in cells)]
    if not lines:
        raise InputError(f"{csv_path}: the file is empty; it needs a header line video,label and a line per video")
    header = [c.strip().lower() for c in lines[0][1]]
    if "video" in header:
        columns, body = header, lines[1:]
    elif header and header[0].endswith(VIDEO_SUFFIXES):
        columns, body = list(CSV_COLUMNS[:len(header)]), lines   # no header line: the first is a video
    else:
        raise InputError(f"{csv_path}: the first line must be a header naming a 'video' column "
                         f"(video,label[,start,end]) or a video's own line (clip.mp4,label); got {lines[0][1]}")
    if not body:
        raise InputError(f"{csv_path}: lists no videos, only its header line")
    return [(n, {c: v for c, v in zip(columns, cells) if c}) for n, cells in body]


def _existing(root: Path, rel: str) -> Path | None:
    """The file ``root / rel``, also where its name is in the other Unicode normal form (macOS
    writes 'é' in file names as 'e' and a combining accent, NFD; a spreadsheet types it as one
    character, NFC; on Linux the two are different names) or where a CSV written on Windows
    separates folders with ``\\`` (``train\\a.mp4``)."""
    forms = [rel] + ([rel.replace("\\", "/")] if "\\" in rel and os.sep == "/" else [])
    for form in list(forms):
        forms += [unicodedata.normalize("NFC", form), unicodedata.normalize("NFD", form)]
    for text in dict.fromkeys(forms):
        if (root / text).is_file():
            return root / text
    return None


def _class_folders(root: Path, files: Sequence[Path], classes: Sequence[str] | None, num_frames: int,
                   max_side: int | None) -> VideoListDataset:
    """The videos of a folder without a labels CSV. Where every video lies below a first-level
    subfolder (``DIR/<class>/clip.mp4``, the layout of UCF101, HMDB51 and torchvision's
    ``DatasetFolder``), the subfolder names the clip's class: mapped onto the model's
    ``classes`` when given, else defining them (sorted names, or indices for numeric names).
    A class subfolder matches a class of the model without case, ``_`` and ``-`` read as spaces
    (``air_drumming`` is ``air drumming``). Videos beside the model's class subfolders
    (``DIR/clip.mp4``) are unlabelled (the model's prediction is explained), which a warning
    says; every clip is unlabelled where there is one subfolder only and the model has no class
    of that name (``DIR/videos/…``), where a subfolder is not one of the model's classes (a
    warning), or where videos lie beside the subfolders and there are no model classes."""
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
        if classes is None and not all(f.strip().isdigit() for f in folders):
            classes = sorted(distinct)
            lowered = {}
            for c in classes:
                if lowered.setdefault(c.strip().lower(), c) != c:
                    raise InputError(f"folder: {root}: subfolders {lowered[c.strip().lower()]!r} and "
                                     f"{c!r} differ only by case")
        mapped, unknown = {}, []
        for f in sorted(distinct):
            try:
                mapped[f] = _label_index(f, classes, str(root / f))
            except InputError:
                unknown.append(f)
        if unknown and len(distinct) > 1:
            warnings.warn(f"folder: {root}: subfolder{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown[:5]))}{', …' if len(unknown) > 5 else ''} "
                          f"{'are' if len(unknown) > 1 else 'is'} not among the model's classes; every "
                          "clip is explained for the model's prediction (a labels.csv labels them "
                          "explicitly)", stacklevel=3)
        elif not unknown:
            labels = [mapped[f] if f is not None else (None, None) for f in folders]
            names = list(classes) if classes is not None else None
            # one stray video beside the class folders left every clip of them unlabelled, silently
            if stray:
                warnings.warn(f"folder: {root}: {len(stray)} video{'s' if len(stray) > 1 else ''} "
                              f"({', '.join(map(repr, stray[:3]))}{', …' if len(stray) > 3 else ''}) "
                              f"{'lie' if len(stray) > 1 else 'lies'} beside the class subfolders, in no "
                              "class: explained for the model's prediction", stacklevel=3)
    entries = [_Entry(r, p, label, name) for r, p, (label, name) in zip(rel, files, labels)]
    ds = VideoListDataset(entries, num_frames, max_side)
    ds.class_names = names
    return ds


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
    names = [(n, text) for n, text in labels if not text.lstrip("-").isdigit()]
    if not names:
        return None
    if len(names) != len(labels):
        n = next(n for n, text in labels if text.lstrip("-").isdigit())
        raise InputError(f"{csv_path}:{n}: label is an index, but other rows give class names; "
                         "use names (or indices) throughout")
    seen: dict[str, str] = {}
    for n, text in names:
        if seen.setdefault(text.lower(), text) != text:
            raise InputError(f"{csv_path}:{n}: labels {seen[text.lower()]!r} and {text!r} differ only by case")
    return sorted(seen.values())


# -- UCF101-24-style per-frame boxes -------------------------------------------------------------
class BoxesDataset(VideoListDataset):
    """Videos with per-frame boxes (UCF101-24 style), tubes in source-frame indices. A box partly
    outside the frame is clipped to it; one wholly outside makes the clip an error row."""

    def __init__(self, entries, tubes: dict[str, list[dict]], num_frames: int) -> None:
        super().__init__(entries, num_frames)
        self.tubes = tubes

    def load(self, i: int) -> EvalSample:
        e = self.entries[i]
        clip = self.read(i)
        t, h, w = clip.num_frames, clip.height, clip.width
        masks = np.zeros((t, h, w), dtype=bool)
        for tube in self.tubes[e.key]:
            sf, boxes = int(tube["sf"]), np.asarray(tube["boxes"], dtype=np.float64)
            for k, src in enumerate(clip.indices):
                j = int(src) - sf
                if 0 <= j < len(boxes):
                    x1, y1, x2, y2 = boxes[j]
                    if x2 > x1 and y2 > y1 and (x1 >= w or y1 >= h or x2 <= 0 or y2 <= 0):
                        # boxes of another resolution (annotated at 320×240, the video resized):
                        # an error row naming it, not a clip without ground truth ('n/a')
                        raise InputError(f"{e.key}: box {boxes[j].tolist()} of frame {int(src)} lies outside "
                                         f"the {w}×{h} video; boxes are [x1, y1, x2, y2] in its pixels")
                    # partly outside (an object at the edge): clipped to the frame
                    y0, x0 = max(0, int(np.floor(y1))), max(0, int(np.floor(x1)))
                    masks[k, y0:min(h, int(np.ceil(y2))), x0:min(w, int(np.ceil(x2)))] = True
        present = masks.reshape(t, -1).any(1)
        boxes = np.full((t, 4), -1, dtype=np.int64)
        for k in np.flatnonzero(present):
            ys, xs = np.nonzero(masks[k])
            boxes[k] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        window = (int(np.argmax(present)), int(t - np.argmax(present[::-1]))) if present.any() else None
        return EvalSample(key=e.key, clip=clip, label=e.label, masks=masks, boxes=boxes, window=window,
                          label_name=e.label_name)


@register_dataset("ucf24")
def _ucf24(argument: str, *, num_frames: int, classes=None, annotations: str | None = None,
           split: str | None = None) -> EvalDataset:
    """ucf24:ROOT[,annotations=FILE.json][,split=FILE.txt] — UCF101-24-style per-frame boxes."""
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise InputError(f"ucf24: {root} is not a directory")
    ann_path = Path(annotations) if annotations else root / "annotations.json"
    data = _read_json(ann_path, "ucf24")
    if not isinstance(data, dict):
        raise InputError(f"{ann_path}: expected a JSON object mapping video keys to annotations")
    keys = sorted(data)
    if split is not None:
        split_path = Path(split)
        if not split_path.is_file():
            raise InputError(f"ucf24: no split file {split_path}")
        try:   # a byte-order mark stuck to the first key ('\ufeffBasketball/…': 'no annotation')
            lines = split_path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as e:
            raise InputError(f"{split_path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        wanted = [ln.strip().rsplit(".", 1)[0] if ln.strip().endswith((".avi", ".mp4")) else ln.strip()
                  for ln in lines if ln.strip()]
        missing = [k for k in wanted if k not in data]
        if missing:
            raise InputError(f"{split_path}: {len(missing)} keys have no annotation, e.g. {missing[0]!r}")
        keys = wanted
    entries, tubes = [], {}
    for key in keys:
        rec = data[key]
        where = f"{ann_path}: {key}"
        if not isinstance(rec, dict) or "annotations" not in rec:
            raise InputError(f"{where}: expected {{'label', 'annotations': [...]}}")
        path = next((root / f"{key}{s}" for s in (".avi", ".mp4") if (root / f"{key}{s}").is_file()), None)
        if path is None:
            raise InputError(f"{where}: no video {root / key}.avi or .mp4")
        for a in rec["annotations"]:
            _check_tube(a, where, rec.get("numf"))
        # the class is the key's folder when the model knows it by that name, else the index
        name = key.split("/")[0] if "/" in key else None
        if classes is not None and name is not None and name.lower() in {n.lower() for n in classes}:
            label, name = _label_index(name, classes, where)
        elif rec.get("label") is not None:
            label, _ = _label_index(rec["label"], classes, where)
        else:
            label = None
        entries.append(_Entry(key, path, label, name))
        tubes[key] = rec["annotations"]
    return BoxesDataset(entries, tubes, num_frames)


def _check_tube(a, where: str, numf=None) -> None:
    """One annotation of a ucf24 record: checked here, since a bad one found while loading the
    clip would end the whole evaluation (only unreadable videos become error rows). A box whose
    corners are swapped (``x2 < x1``: often ``[x, y, w, h]`` taken for corners) or a tube that
    starts before the first frame or after the video's ``numf`` frames covered no pixel or frame,
    and the localisation metrics then said 'no ground truth' for a clip that has one."""
    if not isinstance(a, dict) or not {"sf", "boxes"} <= set(a):
        raise InputError(f"{where}: each annotation needs 'sf' and 'boxes'")
    sf = a["sf"]
    if isinstance(sf, bool) or not (isinstance(sf, int) or isinstance(sf, float) and sf.is_integer()):
        raise InputError(f"{where}: 'sf' must be an integer frame index, got {a['sf']!r}")
    try:
        b = np.asarray(a["boxes"], dtype=np.float64)
    except (TypeError, ValueError):
        b = np.empty((0, 0))
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise InputError(f"{where}: boxes must be a list of [x1, y1, x2, y2]")
    swapped = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    if swapped.size:
        k = int(swapped[0])
        raise InputError(f"{where}: box {b[k].tolist()} of frame {int(sf) + k} has x2 < x1 or y2 < y1; boxes are "
                         "[x1, y1, x2, y2] corners (convert [x, y, w, h] with x2 = x + w, y2 = y + h)")
    if sf < 0:
        raise InputError(f"{where}: 'sf' is {int(sf)}; frames are counted from 0")
    if isinstance(numf, int) and not isinstance(numf, bool) and sf >= numf:
        raise InputError(f"{where}: the tube starts at frame {int(sf)}, after the video's {numf} frames "
                         "('numf'; frames are counted from 0)")


# -- Something-Something-style JSON ----------------------------------------------------------------
@register_dataset("ssv2")
def _ssv2(argument: str, *, num_frames: int, classes=None, annotations: str | None = None,
          labels: str | None = None) -> EvalDataset:
    """ssv2:VIDEOS,annotations=FILE.json[,labels=FILE.json] — Something-Something-style JSON labels."""
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise InputError(f"ssv2: {root} is not a directory")
    if annotations is None:
        raise InputError("ssv2: give annotations=FILE.json (the list of {id, template} records)")
    records = _read_json(Path(annotations), "ssv2")
    if not isinstance(records, list):
        raise InputError(f"{annotations}: expected a JSON list of {{id, template}} records")
    index = None
    if labels is not None:
        mapping = _read_json(Path(labels), "ssv2")
        if not isinstance(mapping, dict):
            raise InputError("ssv2: the labels file must map template → class index")
        index = {_template(k): _class_index(v, f"{labels}: {k!r}") for k, v in mapping.items()}
    entries = []
    for n, rec in enumerate(records):
        where = f"{annotations}[{n}]"
        if not isinstance(rec, dict) or "id" not in rec:
            raise InputError(f"{where}: each record needs an 'id'")
        vid = str(rec["id"])
        path = next((root / f"{vid}{s}" for s in (".webm", ".mp4") if (root / f"{vid}{s}").is_file()), None)
        if path is None:
            raise InputError(f"{where}: no video {root / vid}.webm or .mp4")
        text = rec.get("template") or rec.get("label")
        label, name = None, None
        if text is not None:
            name = _template(text)
            if index is not None:
                if name not in index:
                    raise InputError(f"{where}: template {name!r} is not in the labels file")
                label = index[name]
                if classes is not None and label >= len(classes):
                    raise InputError(f"{where}: label {label} is out of range for a model with {len(classes)} classes")
            elif classes is not None:
                label, name = _label_index(name, classes, where)
        entries.append(_Entry(vid, path, label, name))
    return VideoListDataset(entries, num_frames)


def _class_index(value, where: str) -> int:
    """A class index of a labels file: an integer ≥ 0 (SSv2 writes them as strings, "12")."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise InputError(f"{where}: class index must be an integer ≥ 0, got {value!r}")
    return int(text)


def _template(text: str) -> str:
    """``"Putting [something] on a surface"`` → ``"Putting something on a surface"``."""
    return str(text).replace("[", "").replace("]", "").strip()


def _read_json(path: Path, kind: str):
    if not path.is_file():
        raise InputError(f"{kind}: no annotation file {path}")
    try:
        # utf-8-sig: Windows tools (Notepad, PowerShell) start UTF-8 files with a byte-order mark,
        # which json refuses ('Unexpected UTF-8 BOM')
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON: {e}") from None


__all__ = ["EvalSample", "EvalDataset", "SamplesDataset", "VideoListDataset", "BoxesDataset",
           "load_dataset", "register_dataset", "dataset_kinds", "parse_data_spec"]

"""Evaluation datasets: clips with labels and, where known, where and when the evidence is.

Every dataset is a sequence of :class:`EvalSample` and is named by a spec string,
``kind:argument[,key=value…]`` (a path with a comma is read whole where it exists, even where a
piece looks like ``key=value`` and no shorter path exists, or given in double quotes:
``folder:"DIR"``; spaces around a path or value are dropped, kept inside quotes; ``~`` in any path
is the home folder; an empty value or an unclosed quote is refused):

* ``synthetic:N[,split=test][,seed=0]`` — the first ``N`` clips of the synthetic benchmark
  (:mod:`videoxai.data.synthetic`), with per-frame masks, boxes and the evidence window (2 to 4
  frames: for models of 4 frames or more);
  ``1 ≤ N ≤ 10^12`` (clips are rendered when used, so ``N`` costs nothing up front).
* ``folder:DIR[,labels=FILE.csv][,split=FILE.txt][,max_side=N][,fps=F]`` — the videos in ``DIR``, files or folders
  of numbered pictures (``<class>/<video>/img_00001.jpg`` …, :mod:`~videoxai.data.frame_folder`;
  read at ``fps`` frames per second, else with no frame rate; ``fps`` is refused where every clip
  is a file, which has its own); the CSV (default
  ``DIR/labels.csv`` if it exists; UTF-8, or UTF-16 with a byte-order mark) has a header with
  columns ``video`` (path relative to ``DIR``; an absolute one, or one through ``..``, is read as
  it is, and the path as written is the clip's key; a folder of frames, or a glob naming one series
  in a folder, ``v1/img_*.jpg``) and ``label`` (class index, ``3.0`` read as 3,
  or class name), and
  optionally ``start`` and ``end``: the evidence window in *source* frame indices (whole numbers,
  ``4.0`` read as 4; a folder's pictures count from 0 in the order of their numbers, with or
  without ``fps``), ``end`` excluded (an empty or negative window is refused before the run,
  naming its line; one that starts after the video's end makes that clip an error row; one that
  ends after it, or lies between two sampled frames, warns). Column names are read in any case; a
  file whose first line is a video's (``clip.mp4,3``) has no header and gives those columns in
  that order; fields are separated by commas (``;`` or tabs where the first line has no comma). A
  row with an empty label is unlabelled (the model's prediction is explained). Other columns are
  ignored, and so are videos in ``DIR`` the CSV does not list. Without a CSV every video file
  below ``DIR`` is used, and every folder of two numbered pictures or more with no video file or
  subfolder beside them is one video, not walked into (linked files and folders followed, hidden
  ones not; a video reached along two paths is listed once, with a warning, and refused where they lie in two classes; a subfolder that
  cannot be listed is left out with a warning naming it, while a video in one that a CSV lists is
  an error of its own clip when read); where videos lie
  below first-level subfolders (``DIR/<class>/clip.mp4``, as UCF101 and HMDB51 ship) the subfolder
  is their class (``air_drumming`` matches the model's ``air drumming``), otherwise the clips are
  unlabelled (the model's prediction is explained), as are videos beside the class subfolders (a
  warning names them). ``split`` keeps the class subfolders' clips an official list names, one per
  line (UCF101's ``testlist01.txt``: ``.avi`` names match folders of frames too, and case is
  forgiven where only that finds a clip; what follows a path on its line, a class number or
  MMAction2's frame count and label, is not read: the subfolders name the classes, every one of
  them, so that a class without a clip in the split moves no index).
* ``ucf24:ROOT[,annotations=FILE.json][,split=FILE.txt]`` — UCF101-24-style per-frame boxes:
  ``ROOT/<key>.avi`` (or ``.mp4``, else the folder of its numbered pictures
  ``ROOT/<key>/00001.jpg`` …, as the release's ``rgb-images`` stores them: the pictures in the
  order of their numbers are frames 0, 1, … of the annotations, as a file's frames are) and a
  JSON file (default ``ROOT/annotations.json``) in the layout of the corrected annotations' ``pyannot.pkl`` (convert the pickle once with
  ``json.dump({k: {**v, "annotations": [{**a, "boxes": a["boxes"].tolist()} for a in
  v["annotations"]]} for k, v in pickle.load(f).items()}, out)``; videoxai never unpickles
  data): ``{key: {"label": int, "numf": int, "annotations": [{"label": int, "sf": int, "ef": int,
  "boxes": [[x1, y1, x2, y2], …]}]}}`` with 0-based start frame ``sf`` and ``ef`` excluded, one
  box per frame, in the video's pixels: a box partly outside the frame is clipped to it, one wholly
  outside makes the clip an error row (as does a tube starting after the video's end), one of no
  width or height covers a pixel; swapped corners, NaN and tubes outside ``[0, numf)`` are refused
  before the run, and tubes on none of the sampled frames warn. Class names are the key's folder
  (``Basketball/v_Basketball_g01_c01``). The optional split file lists the keys to use, one per
  line.
* ``ssv2:VIDEOS,annotations=FILE.json[,labels=FILE.json]`` — Something-Something-style JSON: a
  list of ``{"id": …, "template": "Putting [something] on a surface", …}`` (``VIDEOS/<id>.webm``)
  and a labels file mapping each template (brackets removed) to its class index.
* ``kinetics:ROOT[,annotations=FILE.csv][,split=NAME][,max_side=N]`` — Kinetics-400/600/700 clips
  listed by the release's CSV (``label,youtube_id,time_start,time_end,split``; default: the one
  CSV in ``ROOT`` or ``ROOT/annotations``), each found below ``ROOT`` by name wherever a
  downloader put it (``<youtube_id>_<start:06d>_<end:06d>.mp4`` in class folders or flat, a
  folder of its frames so named, or the whole video ``<youtube_id>.mp4``, whose segment is read);
  clips found nowhere are left out with a warning counting them
  (:mod:`~videoxai.data.dataset_kinds.kinetics`).

Clips are sampled uniformly with the model's number of frames (``num_frames``). Datasets know
each clip's ``key`` without decoding it, so a resumed evaluation skips finished clips for free.
Class names are mapped onto the model's labels when ``labels=`` is given to
:func:`load_dataset` (a class the model does not know is an error, not a silent mismatch).
Without ``labels=``, a ``folder:`` CSV whose labels are names (or class subfolders), and a
``kinetics:`` CSV, define the classes themselves: the distinct names, sorted (as image-folder
loaders do), in ``dataset.class_names``.

Each kind is a plug-in: a module of :mod:`videoxai.data.dataset_kinds` that registers its factory
with :func:`register_dataset` (imported on the registry's first look-up, so a new kind is a new file).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import numbers
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import NotImplementedType
from typing import Callable, Sequence

import numpy as np

from ..clip import Clip
from ..errors import InputError, UnknownNameError
from ..options import declared_options, parse_assignments, parse_options
from ..registry import Registry
from .streams import shown_path


@dataclass
class EvalSample:
    """One clip to evaluate on, with what is known about it.

    Attributes:
        key: unique, stable name of the clip within its dataset (results are stored under it).
        clip: the frames: a :class:`~videoxai.clip.Clip`, or frames as ``vx.explain`` takes them.
        label: class index to explain (in the model's classes), or ``None`` to explain the prediction;
            a class name is mapped onto the model's classes when the samples are evaluated.
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
        # results are stored under the key: an int key (a script's loop index) made every result of
        # the random reference an error ('int' object has no attribute 'encode'), and a Path key
        # stopped the run with SQLite's 'type PosixPath is not supported'
        if isinstance(self.key, os.PathLike) or isinstance(self.key, numbers.Integral) and not isinstance(self.key, bool):
            self.key = os.fspath(self.key) if isinstance(self.key, os.PathLike) else str(int(self.key))
        if not isinstance(self.key, str) or not self.key:
            raise InputError(f"a sample's key must be a non-empty name (text), got {self.key!r}")
        if self.label is not None:
            self.label = _sample_label(self.label, self.key)
        if not isinstance(self.clip, Clip):
            # frames as vx.explain takes them; an array was an AttributeError ('no attribute num_frames')
            if self.clip is None or isinstance(self.clip, (str, bytes, os.PathLike)):
                raise InputError(f"{self.key}: clip must be a videoxai Clip or frames ((T, H, W, 3) uint8, or float "
                                 f"in [0, 1]), got {self.clip!r}; read a video file with vx.read_video")
            try:
                self.clip = Clip.from_array(self.clip)
            except InputError as e:
                raise InputError(f"{self.key}: {e}") from None
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
            # two frame indices (whole numbers), as the metrics take them: (1.5, 3) was cut to (1, 3)
            # and (0, 2, 5) read as (0, 2), without a word
            given = tuple(self.window) if isinstance(self.window, (tuple, list, np.ndarray)) else (self.window,)
            if len(given) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                                          and float(v).is_integer() for v in given):
                raise InputError(f"{self.key}: window must be two frame indices (start, end), got {self.window!r}")
            start, end = int(given[0]), int(given[1])
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
    """Samples already in memory (a list), e.g. built by a script; a label given as a class name
    is mapped onto ``classes`` (the model's)."""

    def __init__(self, samples: Sequence[EvalSample], spec: str = "samples",
                 classes: Sequence[str] | None = None) -> None:
        self.samples = list(samples)
        seen: set[str] = set()
        for i, s in enumerate(self.samples):
            if s.key in seen:   # results are stored by key: the second sample's would be skipped as done
                raise InputError(f"sample keys must be unique: {s.key!r} is given twice")
            seen.add(s.key)
            if isinstance(s.label, str):
                # the name went on as the target: explained, but stored as text, so the report's
                # accuracy compared it with the predicted index and said 0 %
                label, name = _label_index(s.label, classes, f"sample {s.key!r}")
                self.samples[i] = dataclasses.replace(s, label=label, label_name=s.label_name or name)
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
# the built-in kinds register themselves in their modules, imported when the registry is first read
DATASETS: Registry[Factory] = Registry("dataset kind", UnknownNameError, package="videoxai.data.dataset_kinds")


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
        # '--data clips/' for the folder of videos it names: say the spec that reads it
        hint = f" (the folder {spec!r} is folder:{spec})" if isinstance(spec, str) and spec.strip() and \
            os.path.isdir(Path(spec).expanduser()) else ""
        raise InputError(f"dataset spec {spec!r} must look like kind:argument[,key=value…]{hint}; "
                         f"kinds: {', '.join(DATASETS.names())}")
    kind, _, rest = spec.partition(":")
    raw = _split_outside_quotes(rest)
    # a folder whose name has a comma ('Smith, J/clips'): the pieces before the first KEY=VALUE
    # are one path when together they name one (else the comma-free path is the argument); where
    # neither names anything, more pieces may ('clips,fps=25/', a name that looks like an option)
    k = next((i for i in range(1, len(raw)) if re.match(r"\s*[A-Za-z_]\w*\s*=", raw[i])), len(raw))
    # os.path.exists: False for a path the user may not search, where Path.exists() raised
    if not raw[0].strip().startswith('"') and not _exists(raw[0]):
        k = next((j for j in range(len(raw), k, -1) if _exists(",".join(raw[:j]))), k)
    joined = ",".join(raw[:k]).strip()
    if k > 1 and not (joined.startswith('"') and joined.endswith('"')) and _exists(joined):
        raw = [joined] + raw[k:]
    parts = [p.strip() for p in raw if p.strip()]
    if not parts:
        raise InputError(f"dataset spec {spec!r} has no argument after {kind}:")
    argument = parts[0]
    if len(argument) >= 2 and argument[0] == argument[-1] == '"':   # folder:"DIR, with commas"
        argument = argument[1:-1]
    elif rest.count('"') % 2 and not _exists(argument):
        # an unclosed quote took every option after it into the path ('"/data/x,max_side=64')
        raise InputError(f"dataset spec {spec!r} has an unclosed double quote")
    try:
        options = parse_assignments(parts[1:], where=f"dataset spec {spec!r}")
    except InputError as e:
        if "is not KEY=VALUE" not in str(e):
            raise
        raise InputError(f"{e} (a path with a comma goes in double quotes: {kind.strip()}:\"DIR\")") from None
    empty = [k for k, v in options.items() if not v.strip()]
    if empty:   # 'labels=' was the path '.': "no labels file ."; ucf24's 'annotations=' its default file
        raise InputError(f"dataset spec {spec!r}: option {empty[0]} has no value")
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


def _exists(text: str) -> bool:
    """Whether the path ``text`` (spaces around it dropped, ``~`` expanded) names something."""
    return os.path.exists(Path(text.strip()).expanduser())


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
        return SamplesDataset(spec, classes=labels)
    kind, argument, options = parse_data_spec(spec)
    factory = DATASETS.get(kind)
    # the factory's keyword parameters after (argument, num_frames, classes) are its options
    declared = {k: o for k, o in declared_options(factory, skip=1).items() if k not in ("num_frames", "classes")}
    extra = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    owner = f"dataset {kind!r}"
    typed = parse_options(declared, options, owner, defaults=False, extra=extra)
    try:
        ds = factory(argument, num_frames=int(num_frames), classes=labels, **typed)
    except PermissionError as e:
        # a folder on the way the user may not search ('folder:/data/private/clips', a labels file
        # there): Path.is_dir() and is_file() raise rather than say no, and the traceback came
        # from deep inside the kind; its videos that cannot be read are error rows, not this
        raise InputError(f"{kind.strip()}: cannot read {shown_path(e.filename or argument)}: {e.strerror or e}") from None
    # the canonical spec names the data: an option given at its default value, or the options in
    # another order, are the same data ('synthetic:2' and 'synthetic:2,split=test' resume each other)
    differing = sorted(k for k, v in typed.items()
                       if k not in declared or v != (None if declared[k].default is None
                                                     else declared[k].parse(declared[k].default, owner)))
    # a path with spaces at its ends was given in quotes: kept in them, it names the same folder again
    shown = f'"{argument}"' if argument != argument.strip() else argument
    ds.spec = f"{kind.strip()}:{shown}" + "".join(f",{k}={options[k]}" for k in differing)
    return ds


class ClassNames(tuple):
    """Class names (a tuple of ``str``) that know whose they are, so that messages name them
    right: the model's (any plain sequence of names is), or the ``owner`` that defined them
    before any model exists — ST-ABN training maps its validation clips onto the classes of
    ``"the training data folder:DIR"``, and "not one of the model's classes" sent users looking
    for a model they never gave."""

    owner: str = "the model"

    def __new__(cls, names: Sequence[str], owner: str = "the model") -> "ClassNames":
        self = super().__new__(cls, names)
        self.owner = owner
        return self

    @classmethod
    def of(cls, classes: Sequence[str] | None) -> "ClassNames":
        """``classes`` as :class:`ClassNames` (a plain sequence, or none known: the model's)."""
        return classes if isinstance(classes, ClassNames) else cls(classes or ())

    @property
    def named(self) -> str:
        """"the model's classes" or "the classes of OWNER"."""
        return "the model's classes" if self.owner == "the model" else f"the classes of {self.owner}"

    @property
    def counted(self) -> str:
        """"a model with N classes" or "OWNER, with N classes"."""
        n = f"{len(self)} classes"
        return f"a model with {n}" if self.owner == "the model" else f"{self.owner}, with {n}"


def _label_index(value: str | int, labels: Sequence[str] | None, where: str) -> tuple[int, str | None]:
    """A label given as an index or a class name → (index into ``labels``, name); ``labels`` are the
    model's unless they are :class:`ClassNames` of another owner."""
    text = str(value).strip()
    if _index_digits(text) is not None:
        text = _index_digits(text)
        i = int(text) if len(text) <= 18 else None
        if i is not None and i < 0:   # whatever the classes: "for a model with ? classes" said nothing
            raise InputError(f"{where}: label {i} is negative; a class index is 0 or more")
        if i is None or (labels is not None and i >= len(labels)):
            shown = i if i is not None else f"{text[:12]}… ({len(text)} digits)"
            raise InputError(f"{where}: label {shown} is out of range for "
                             f"{ClassNames.of(labels).counted if labels is not None else 'a model with ? classes'}")
        return i, (labels[i] if labels is not None else None)
    if labels is None:
        raise InputError(f"{where}: label {text!r} is a name; give the model's labels to map it")
    # in one Unicode form: a class folder made on a Mac is named 'café' with 'e' and a combining
    # accent (NFD), the model's class (and what a CSV is typed with) with one 'é' (NFC); on Linux
    # those were two names, and the folder's clips "not among the model's classes"
    lookup = {_nfc(name.strip()).lower(): i for i, name in enumerate(labels)}
    if _nfc(text).lower() in lookup:
        return lookup[_nfc(text).lower()], labels[lookup[_nfc(text).lower()]]
    # dataset scripts name Kinetics' class 'air drumming' 'air_drumming' (a folder name without
    # spaces): the same class once '_' and '-' read as spaces, where that names one class only
    hits = [i for i, name in enumerate(labels) if _loose(name) == _loose(text)]
    if len(hits) == 1:
        return hits[0], labels[hits[0]]
    raise InputError(f"{where}: class {text!r} is not one of {ClassNames.of(labels).named} "
                     f"({', '.join(labels[:8])}{', …' if len(labels) > 8 else ''})")


def _sample_label(label, key: str) -> int | str:
    """An :class:`EvalSample`'s label as an ``int`` (numpy's integers and a one-value integer array
    or tensor, as scripts hold them, included) or a class name (``str``); anything else is refused
    naming the sample. numpy's int64 was stored as bytes (the accuracy said 0 %), a tensor stopped
    the run with SQLite's 'type Tensor is not supported', and a float or a bool made every result
    of the clip an error, found after the run."""
    value = label
    if not isinstance(value, (str, numbers.Number)) and hasattr(value, "item"):
        try:
            value = value.item()    # a one-value array or tensor (numpy and torch refuse more values)
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, str) or isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return value if isinstance(value, str) else int(value)
    raise InputError(f"{key}: label must be a class index (an integer) or a class name, got {label!r} "
                     f"({type(label).__name__})")


def _index_digits(text: str) -> str | None:
    """The digits of a label that is a class index (``"3"``, ``"-1"``, or ``"3.0"`` as pandas
    writes an integer column with empty cells), else ``None`` (a class name). ASCII digits only:
    str.isdigit() also holds for '²' (int() refuses it: a ValueError) and '٣', which a class may
    be named; a number of thousands of digits is past int()'s limit, so the digits stay text."""
    match = re.fullmatch(r"(-?[0-9]+)(?:\.0*)?", text)
    return match.group(1) if match else None


def _loose(name: str) -> str:
    """A class name without case, with ``_`` and ``-`` as spaces and runs of spaces as one."""
    return " ".join(_nfc(name).lower().replace("_", " ").replace("-", " ").split())


def _nfc(text: str) -> str:
    """``text`` in Unicode's composed form (NFC), as :func:`_label_index` compares names."""
    return unicodedata.normalize("NFC", text)


def _window_from_source(indices: np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """Source-frame window ``[start, end)`` → the clip frames it covers (first to last inside)."""
    inside = np.flatnonzero((indices >= start) & (indices < end))
    if inside.size == 0:
        return None
    return int(inside[0]), int(inside[-1]) + 1


# -- videos on disk: the classes the file-based kinds build ---------------------------------------
@dataclass
class _Entry:
    key: str
    path: Path
    label: int | None = None
    label_name: str | None = None
    source_window: tuple[int, int] | None = None
    #: the stretch of the video to read, in seconds (a Kinetics clip's segment of its whole video)
    span: tuple[float, float] | None = None


class VideoListDataset(EvalDataset):
    """Videos on disk (files, or folders of numbered pictures read at ``fps``, which a file takes
    from itself), each with an optional label and source-frame window."""

    def __init__(self, entries: Sequence[_Entry], num_frames: int, max_side: int | None = None,
                 fps: float | None = None) -> None:
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
        self.fps = fps

    def __len__(self) -> int:
        return len(self.entries)

    def key(self, i: int) -> str:
        return self.entries[i].key

    def label_of(self, i: int) -> int | None:
        return self.entries[i].label

    def read(self, i: int) -> Clip:
        from .frame_folder import names_frame_series
        from .video import read_video
        path, span = self.entries[i].path, self.entries[i].span
        fps = self.fps if self.fps is not None and names_frame_series(path) else None   # a file has its own
        start, end = span if span is not None else (None, None)
        return read_video(path, num_frames=self.num_frames, max_side=self.max_side, fps=fps, start=start, end=end)

    def load(self, i: int) -> EvalSample:
        e = self.entries[i]
        clip = self.read(i)
        window = _window_from_source(clip.indices, *e.source_window) if e.source_window else None
        if e.source_window and e.source_window[0] > clip.indices[-1]:
            # past the video's end (a typo, or another video's frames): an error row that names
            # it and is retried once the CSV is fixed, not an 'n/a' that says no window was given
            raise InputError(f"{e.key}: window [{e.source_window[0]}, {e.source_window[1]}) starts after "
                             f"the video's last sampled frame ({int(clip.indices[-1])})")
        if e.source_window and window is None:
            # a short window between two sampled frames: the model sees none of it, so its window
            # metrics are n/a, which said nothing of why (as if the CSV gave no window)
            shown = ", ".join(str(int(k)) for k in clip.indices[:8]) + (", …" if len(clip.indices) > 8 else "")
            warnings.warn(f"{e.key}: window [{e.source_window[0]}, {e.source_window[1]}) holds none of the "
                          f"{len(clip.indices)} frames sampled ({shown}); its window metrics are n/a "
                          "(more frames per clip would see it)", stacklevel=2)
        elif e.source_window and e.source_window[1] > int(clip.indices[-1]) + 1:
            # the clip samples the whole video, its last frame included: an end past it was cut
            # without a word (another video's frame numbers, or 'to the end' written as 99)
            warnings.warn(f"{e.key}: window [{e.source_window[0]}, {e.source_window[1]}) ends after the "
                          f"video's last frame ({int(clip.indices[-1])}); read as ending there", stacklevel=2)
        return EvalSample(key=e.key, clip=clip, label=e.label, window=window, label_name=e.label_name)


class BoxesDataset(VideoListDataset):
    """Videos with per-frame boxes (UCF101-24 style), tubes in source-frame indices. A box partly
    outside the frame is clipped to it; one wholly outside, or a tube after the video's end, makes
    the clip an error row."""

    def __init__(self, entries, tubes: dict[str, list[dict]], num_frames: int) -> None:
        super().__init__(entries, num_frames)
        self.tubes = tubes

    def load(self, i: int) -> EvalSample:
        e = self.entries[i]
        clip = self.read(i)
        t, h, w = clip.num_frames, clip.height, clip.width
        masks = np.zeros((t, h, w), dtype=bool)
        last = int(clip.indices[-1])   # the clip samples the whole video, its last frame included
        sampled = False   # a box on a sampled frame
        for tube in self.tubes[e.key]:
            sf, boxes = int(tube["sf"]), np.asarray(tube["boxes"], dtype=np.float64)
            if sf > last:
                # another video's frame numbers (no 'numf' to check it by before the run): an
                # error row naming it, not a clip that 'has no ground truth'
                raise InputError(f"{e.key}: a tube starts at frame {sf}, after the video's last frame ({last})")
            for k, src in enumerate(clip.indices):
                j = int(src) - sf
                if 0 <= j < len(boxes):
                    sampled = True
                    x1, y1, x2, y2 = boxes[j]
                    # a box of no width or height (a point annotated) covers a pixel: the frame
                    # has its object (corners are not swapped: checked when the dataset opened)
                    x2, y2 = (x1 + 1 if x2 == x1 else x2), (y1 + 1 if y2 == y1 else y2)
                    if x1 >= w or y1 >= h or x2 <= 0 or y2 <= 0:
                        # boxes of another resolution (annotated at 320×240, the video resized):
                        # an error row naming it, not a clip without ground truth ('n/a')
                        raise InputError(f"{e.key}: box {boxes[j].tolist()} of frame {int(src)} lies outside "
                                         f"the {w}×{h} video; boxes are [x1, y1, x2, y2] in its pixels")
                    # partly outside (an object at the edge): clipped to the frame
                    y0, x0 = max(0, int(np.floor(y1))), max(0, int(np.floor(x1)))
                    masks[k, y0:min(h, int(np.ceil(y2))), x0:min(w, int(np.ceil(x2)))] = True
        present = masks.reshape(t, -1).any(1)
        if not sampled and any(len(tube["boxes"]) for tube in self.tubes[e.key]):
            # short tubes between two sampled frames: its localisation metrics are n/a, as if
            # the clip had no boxes
            shown = ", ".join(str(int(k)) for k in clip.indices[:8]) + (", …" if t > 8 else "")
            warnings.warn(f"{e.key}: its boxes lie on none of the {t} frames sampled ({shown}); its "
                          "localisation metrics are n/a (more frames per clip would see them)", stacklevel=2)
        boxes = np.full((t, 4), -1, dtype=np.int64)
        for k in np.flatnonzero(present):
            ys, xs = np.nonzero(masks[k])
            boxes[k] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        window = (int(np.argmax(present)), int(t - np.argmax(present[::-1]))) if present.any() else None
        return EvalSample(key=e.key, clip=clip, label=e.label, masks=masks, boxes=boxes, window=window,
                          label_name=e.label_name)


def _read_json(path: Path, kind: str):
    """The JSON annotation file of a ``kind:`` spec; one missing or not JSON is an :class:`InputError`."""
    if not path.is_file():
        raise InputError(f"{kind}: no annotation file {shown_path(path)}")
    try:
        # utf-8-sig: Windows tools (Notepad, PowerShell) start UTF-8 files with a byte-order mark,
        # which json refuses ('Unexpected UTF-8 BOM')
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{shown_path(path)} is not valid JSON: {e}") from None


__all__ = ["EvalSample", "EvalDataset", "SamplesDataset", "VideoListDataset", "BoxesDataset", "ClassNames",
           "load_dataset", "register_dataset", "dataset_kinds", "parse_data_spec"]

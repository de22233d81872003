"""Human knowledge through temporal attention: collect, edit, fine-tune (Noguchi et al., seed 003).

1. **Collect** (:func:`collect`): run a trained ST-ABN over *training* clips and keep, for the
   misclassified ones, the temporal attention ``M_t``, the spatial attention and the frames the
   model saw, in an **edit set** directory.
2. **Edit**: a person sets every frame of a clip to one of three levels, 1.0 (the evidence is
   here), 0.5 (partly) or 0.0 (not here) — in the browser editor (``videoxai stabn edit``,
   :mod:`videoxai.stabn.editor`) or programmatically (:class:`TemporalEdit`, :func:`fill_between`).
3. **Fine-tune** (:func:`finetune`): train on with ``L = L_att + L_per + L_temp``, where
   ``L_temp = γ_t · mean_t (M'_t − M_t)²`` on the clips that have an edit (0 on the others) —
   the paper's form, kept for a sigmoid attention; a softmax attention (the ``localising``
   design) is taught by ``γ_t · KL(M'/ΣM' ‖ softmax)`` instead, since the MSE has no gradient
   where such an attention is confidently wrong (:mod:`.losses`; ``temporal_loss=`` chooses).

An edit set is a directory::

    collection.json      what was collected: model, data spec, split, labels, and per clip its id,
                         key, label, prediction and temporal attention
    clips/<key>.npz      frames (T, H, W, 3) uint8 and spatial attention (T, h, w) float32
    edits/<key>.json     {"id": ..., "levels": [1.0, 0.5, 0.0, ...], "label": ..., "saved": ...}
    .edits.lock          locked by an editor's save or delete (two editors on one edit set)

Edit files are JSON (readable, diffable, no pickle); an edit holds one level per frame of the
clip the model saw, so it lines up with ``M_t`` exactly (the reference tool stored one value per
frame of the whole video, which must then be sliced to the sampled window).

**Freezing schedule** (documented choice; the paper's is not published): by default the feature
extractor (stem to ``layer3``) is frozen — its weights and its batch-norm statistics — for the
whole fine-tuning, and the attention branch, the attention mechanism and the perception branch
train, as the poster says ("the ST-ABN optimizes its ST attention and perception branches") and
as HK-ABN fine-tunes its branches. ``unfreeze_at=k`` lets everything train from epoch ``k`` on.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..npz import read_npz
from ..errors import InputError
from .atomic import remove_stale_temporaries, write_atomically
from .data import ClipSet, recorded_spec
from .evaluate import eval_mode, predict
from .file_lock import held
from .loop import TrainResult, check_data, fit
from .losses import temporal_loss_kind
from .model import STABNVideoModel
from .recipe import FreezeSchedule, TemporalTargets, TrainConfig
from .run_directory import check_out_dir

#: the three levels a person can give a frame (the reference editor's red / green / blue)
LEVELS: tuple[float, ...] = (1.0, 0.5, 0.0)
FORMAT = 1
COLLECTION = "collection.json"
#: the lock file of :meth:`EditSet.writing`
EDIT_LOCK = ".edits.lock"


# -- edits --------------------------------------------------------------------------------------
@dataclass
class TemporalEdit:
    """A person's temporal attention for one clip: one level of :data:`LEVELS` per frame.

    Attributes:
        id: the clip's id in its dataset (``"synthetic:train:0/17"``, a video's path in a folder).
        levels: ``T`` values, each 1.0, 0.5 or 0.0.
        label: the clip's true class, for reference.
        saved: when it was saved (ISO 8601, UTC).
    """

    id: str
    levels: list[float]
    label: int | None = None
    saved: str | None = None

    def __post_init__(self) -> None:
        self.levels = check_levels(self.levels)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.saved = self.saved or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_atomically(path, json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TemporalEdit":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        # ValueError: bad JSON, text that is not UTF-8, an integer past 4300 digits; RecursionError:
        # nested too deeply (a 500 in the editor, a traceback from finetune)
        except (OSError, ValueError, RecursionError) as e:
            raise InputError(f"cannot read edit {path}: {e}") from None
        if not isinstance(d, dict) or "id" not in d or "levels" not in d:
            raise InputError(f"{path} is not a temporal-attention edit (needs 'id' and 'levels')")
        try:
            return cls(id=str(d["id"]), levels=d["levels"], label=d.get("label"), saved=d.get("saved"))
        except InputError as e:
            raise InputError(f"{path}: {e}") from None


def check_levels(levels: Sequence[float | None], allow_unset: bool = False) -> list[float | None]:
    """Validate per-frame levels: each one of :data:`LEVELS` (or ``None`` if ``allow_unset``)."""
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__") or len(levels) == 0:
        raise InputError("levels must be a non-empty list with one value per frame")
    out: list[float | None] = []
    unset = []
    for t, v in enumerate(levels):
        if v is None:
            if not allow_unset:
                unset.append(t)
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) not in LEVELS:
            raise InputError(f"frame {t}: level {v!r} is not one of {', '.join(map(str, LEVELS))}")
        out.append(abs(float(v)))  # -0.0 is the level 0.0, and is stored as written ("-0.0") otherwise
    if unset:
        raise InputError(f"frames {', '.join(map(str, unset))} have no level; every frame needs one "
                         "(use fill between edited frames)")
    return out


def fill_between(levels: Sequence[float | None]) -> list[float | None]:
    """Give unset frames between two edited frames of the *same* level that level.

    The reference editor's "Fill Attention": ``[1, None, None, 1, None, 0]`` →
    ``[1, 1, 1, 1, None, 0]``; a gap between different levels, and frames before the first or
    after the last edited frame, stay unset.
    """
    out = list(check_levels(levels, allow_unset=True))
    edited = [t for t, v in enumerate(out) if v is not None]
    for a, b in zip(edited, edited[1:]):
        if b > a + 1 and out[a] == out[b]:
            out[a + 1:b] = [out[a]] * (b - a - 1)
    return out


# -- edit sets ----------------------------------------------------------------------------------
class UnknownClipError(InputError):
    """A clip key that is not in the edit set."""


@dataclass
class CollectedClip:
    """One collected clip, as listed in ``collection.json``."""

    key: str
    id: str
    index: int
    label: int
    predicted: int
    attention: list[float]
    attention_predicted: int | None = None


@dataclass
class EditSet:
    """A directory of collected clips and their edits (see the module docstring)."""

    directory: Path
    model: str
    data: str
    split: str
    labels: list[str]
    num_frames: int
    items: list[CollectedClip] = field(default_factory=list)
    _index: dict[str, CollectedClip] = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- opening and writing -------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | Path) -> "EditSet":
        directory = Path(directory)
        path = directory / COLLECTION
        if not path.is_file():
            raise InputError(f"{directory} is not an edit set (no {COLLECTION}); create one with "
                             "`videoxai stabn collect`")
        try:
            d = json.loads(path.read_text())
        # ValueError: bad JSON, not UTF-8, an integer past 4300 digits; RecursionError: nested too deeply
        except (ValueError, RecursionError) as e:
            raise InputError(f"{path} is not valid JSON: {e}") from None
        fmt = d.get("format", FORMAT) if isinstance(d, dict) else None
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT:
            raise InputError(f"{path} has format {fmt}; this videoxai reads ≤ {FORMAT}")
        # a hand-edited or truncated file: one line naming it, not a KeyError from deep inside
        try:
            if not isinstance(fmt, int) or isinstance(fmt, bool):
                raise TypeError("format must be an integer")
            items = [CollectedClip(**it) for it in d["items"]]
            # as collect writes them: str() and int() made None a model named "None", "abcd" four
            # classes and 4.7 frames 4, and class names that are numbers a 500 in the editor
            for name in ("model", "data", "split"):
                if not isinstance(d[name], str):
                    raise TypeError(f"{name} must be a string, got {d[name]!r}")
            if not isinstance(d["labels"], list) or not all(isinstance(n, str) for n in d["labels"]):
                raise TypeError(f"labels must be a list of class names, got {d['labels']!r}")
            if isinstance(d["num_frames"], bool) or not isinstance(d["num_frames"], int) or d["num_frames"] < 1:
                raise TypeError(f"num_frames must be a whole number ≥ 1, got {d['num_frames']!r}")
            es = cls(directory, d["model"], d["data"], d["split"], list(d["labels"]), d["num_frames"], items)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path} is not an edit-set collection ({type(e).__name__}: {e}); "
                             "collect again with `videoxai stabn collect`") from None
        # a clip whose label the collection's classes cannot name (one collected from another
        # data set before `collect` checked the classes): refused here, naming the clip, rather
        # than failing in the editor when the clip is shown
        keys: set[str] = set()
        ids: set[str] = set()
        for it in es.items:
            try:
                es.check_item(it)
            except InputError as e:
                raise InputError(f"{path}: {e}") from None
            # two entries of one clip would share one edit file, or give one clip two targets
            for seen, what, value in ((keys, "key", it.key), (ids, "id", it.id)):
                if value in seen:
                    raise InputError(f"{path}: clip {what} {value!r} is listed twice; collect again with "
                                     "`videoxai stabn collect`")
                seen.add(value)
        es.remove_stale_temporaries()
        return es

    def remove_stale_temporaries(self) -> None:
        """Remove what a process killed while writing into the edit set left (an editor's save, a
        collect's archive or collection: ``.NAME.<hex>.tmp``, :func:`~.atomic.remove_stale_temporaries`);
        hidden and never read as an edit, they piled up beside the edits, one per crash."""
        for folder in (self.directory, self.directory / "edits", self.directory / "clips"):
            remove_stale_temporaries(folder)

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """The edit set's lock, across processes (``.edits.lock``, :func:`~.file_lock.held`), for
        a change that must see no other one in between: the editor's check that a clip's edit is
        still the version a save or delete read, and that save or delete. Two editors on one edit
        set (two terminals) each checked under a lock of their own process only, so both passed
        and the second save overwrote the first one's edit without a word."""
        return held(self.directory / EDIT_LOCK, f"saving an edit in {self.directory}")

    def write_collection(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        d = {"format": FORMAT, "model": self.model, "data": self.data, "split": self.split,
             "labels": self.labels, "num_frames": self.num_frames, "items": [asdict(i) for i in self.items]}
        write_atomically(self.directory / COLLECTION, json.dumps(d, indent=1) + "\n")

    # -- items ---------------------------------------------------------------------------------
    def check_item(self, it: CollectedClip) -> None:
        """Refuse a clip whose labels are not classes of the collection, or whose temporal
        attention is not one value per frame (a damaged or foreign ``collection.json``)."""
        # the key names the clip's files (clips/<key>.npz, edits/<key>.json): a hand-edited
        # "../../x" would read and write outside the edit set
        if not isinstance(it.key, str) or not _KEY.fullmatch(it.key):
            raise InputError(f"clip key {it.key!r} is not a file name of letters, digits, '.', '_' and '-' "
                             "(not starting with '.'), as `videoxai stabn collect` makes them")
        if not isinstance(it.id, str):
            raise InputError(f"clip {it.key} has id {it.id!r}, not a string")
        n = len(self.labels)
        for what in ("label", "predicted", "attention_predicted"):
            k = getattr(it, what)
            if k is None and what == "attention_predicted":
                continue
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n:
                raise InputError(f"clip {it.key} has {what} {k!r}, not one of the collection's {n} classes "
                                 f"(0 … {n - 1}); collect again with `videoxai stabn collect` from the data "
                                 "the model was trained on")
        if not isinstance(it.attention, list) or len(it.attention) != self.num_frames:
            raise InputError(f"clip {it.key} has {len(it.attention) if isinstance(it.attention, list) else 'no'} "
                             f"temporal attention values for {self.num_frames} frames")
        # the editor sends them as JSON numbers: a string or NaN there was a 500 on every page load
        bad = [v for v in it.attention if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise InputError(f"clip {it.key} has temporal attention {bad[0]!r}, not a finite number")

    def class_name(self, it: CollectedClip, what: str = "label") -> str:
        """The name of clip ``it``'s ``label`` or ``predicted`` class (checked: :meth:`check_item`)."""
        self.check_item(it)
        return self.labels[getattr(it, what)]

    def item(self, key: str) -> CollectedClip:
        if len(self._index) != len(self.items):  # items may have been appended
            self._index = {it.key: it for it in self.items}
        try:
            return self._index[key]
        except KeyError:
            # a key as long as the URL allows came back whole in the error: keys are ≤ 200 characters
            shown = repr(key) if len(key) <= 200 else f"{key[:40]!r}… ({len(key)} characters)"
            raise UnknownClipError(f"no clip {shown} in edit set {self.directory}") from None

    def clip(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``(T, H, W, 3)`` uint8 and spatial attention ``(T, h, w)`` of clip ``key``."""
        self.item(key)
        path = self.directory / "clips" / f"{key}.npz"
        # a missing, damaged or foreign archive: one error naming it (the editor answered 500)
        try:
            z = read_npz(path, ("frames", "spatial"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(f"cannot read clip {key} from {path} ({type(e).__name__}: {e}); collect again "
                             "with `videoxai stabn collect`") from None
        frames, spatial = z["frames"], z["spatial"]
        for name, a in (("frames", frames), ("spatial", spatial)):
            if not isinstance(a, np.ndarray):  # NumPy hands out a member that is no .npy as its bytes
                raise InputError(f"cannot read clip {key} from {path} (its {name} is not a NumPy array: cut "
                                 "short?); collect again with `videoxai stabn collect`")
        t = self.num_frames
        # frames or maps of no pixels (H, W or h, w of 0) were a 500 from the PNG, the overlay's
        # resize and the preview's forward
        if (frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != t or frames.shape[3] != 3
                or 0 in frames.shape):
            raise InputError(f"{path}: frames must be ({t}, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        if spatial.ndim != 3 or spatial.shape[0] != t or not np.issubdtype(spatial.dtype, np.floating) or 0 in spatial.shape:
            raise InputError(f"{path}: spatial attention must be ({t}, h, w) floats, got {spatial.shape} {spatial.dtype}")
        if not np.isfinite(spatial).all():  # NaN was drawn as an arbitrary colour (a cast of NaN to uint8)
            raise InputError(f"{path}: spatial attention has non-finite values (NaN or inf); collect again with "
                             "`videoxai stabn collect`")
        return frames, spatial

    def edit_path(self, key: str) -> Path:
        self.item(key)
        return self.directory / "edits" / f"{key}.json"

    def edit(self, key: str) -> TemporalEdit | None:
        """Clip ``key``'s saved edit (``None``: none saved), checked against the clip: one level per
        frame and the clip's own id (the editor showed a 7-level edit of an 8-frame clip, whose
        page then failed; a copied file named another clip)."""
        path = self.edit_path(key)
        try:
            e = TemporalEdit.load(path)
        except InputError:
            # deleted between a look and the read (another client, `stabn finetune` reading while
            # the editor deletes): no edit, not "cannot read"; a file that is there but unreadable
            # (a directory, not JSON) stays an error naming it
            if not path.exists():
                return None
            raise
        it = self.item(key)
        if len(e.levels) != self.num_frames:
            raise InputError(f"{path}: {len(e.levels)} levels for the clip's {self.num_frames} frames")
        # a copied or hand-written file naming another clip would silently train that clip (or
        # replace its own edit) with these levels
        if e.id != it.id:
            raise InputError(f"{path} is the edit of clip {e.id!r}, but {key} is clip {it.id!r}")
        return e

    def save_edit(self, key: str, levels: Sequence[float | None]) -> TemporalEdit:
        """Validate and store a complete edit of clip ``key``."""
        it = self.item(key)
        if len(levels) != self.num_frames:
            raise InputError(f"clip {key} has {self.num_frames} frames, got {len(levels)} levels")
        edit = TemporalEdit(id=it.id, levels=list(levels), label=it.label)
        edit.save(self.edit_path(key))
        # an editor that runs for days: what a crashed one (or another process) left meanwhile
        remove_stale_temporaries(self.edit_path(key).parent)
        return edit

    def delete_edit(self, key: str) -> bool:
        """Remove clip ``key``'s edit; whether there was one (two deletes at once: one of them)."""
        path = self.edit_path(key)
        try:
            path.unlink()  # no is_file() first: a file deleted in between was a FileNotFoundError (a 500)
        except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: no edits/ folder, a file there
            return False
        return True

    def edits(self) -> dict[str, TemporalEdit]:
        """``{clip id: edit}`` of every saved edit."""
        out = {}
        for it in self.items:
            e = self.edit(it.key)  # checked against the clip
            if e is not None:
                out[e.id] = e
        return out


def check_collection(edits: EditSet, model: STABNVideoModel) -> None:
    """Refuse to fine-tune ``model`` with ``edits`` (or preview them with it) collected from a
    model of other clips (each edit holds one level per frame the collecting model took) or of
    other classes (the clips' labels are the collection's classes)."""
    if edits.num_frames != model.num_frames:
        raise InputError(f"the edits in {edits.directory} have {edits.num_frames} levels per clip (collected from "
                         f"{edits.model}); {model.name} takes {model.num_frames} frames: collect and edit "
                         "again with this model")
    # a preview model of other classes named its own prediction beside the collection's true class
    # ("true class cat: edited attention predicts class_7"), of another label space
    names = [str(n) for n in model.labels]
    generated = lambda ns: ns == [f"class_{i}" for i in range(len(ns))]  # noqa: E731 - no names given
    if len(edits.labels) != len(names) or (edits.labels != names and not generated(edits.labels) and not generated(names)):
        raise InputError(f"the edits in {edits.directory} are of the classes {edits.labels} (collected from "
                         f"{edits.model}); {model.name}'s are {names}: preview and fine-tune with the model the "
                         "clips were collected from")


#: mean absolute difference (uint8 levels) above which a clip is not the one that was edited:
#: the same file decoded again gives the same pixels (H.264 and VP9 decoding is exact) up to the
#: rounding of another resizer; another video differs by tens (synthetic clips of two seeds: 19–71)
OTHER_FRAMES = 8.0


def check_edited_frames(edits: EditSet, data: ClipSet, edited: Iterable[str]) -> None:
    """Refuse edits matched to clips of ``data`` whose frames are not the ones the person edited.

    Edits are matched to training clips by clip id (a file name for a folder): fine-tuning with
    ``--data`` another folder whose videos are named alike applied each edit to another video.
    Each edited clip's frames (``edited``: their ids), as collected, are compared with
    ``data``'s at that id."""
    index = data.index_of()
    edited = set(edited)
    other = []
    for item in edits.items:
        i = index.get(item.id)
        if item.id not in edited or i is None:
            continue
        frames, _ = edits.clip(item.key)
        now = data.frames[i]
        if frames.shape != now.shape or float(np.abs(frames.astype(np.float32) - now.astype(np.float32)).mean()) > OTHER_FRAMES:
            other.append(item.id)
    if other:
        shown = ", ".join(map(repr, other[:3])) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
        raise InputError(f"{data.spec}: {len(other)} edited clips have other frames than when they were edited "
                         f"({shown}): the edits in {edits.directory} were made on {edits.data}; fine-tune on that "
                         "data, or collect and edit this data's clips")


def training_data(model: STABNVideoModel) -> str | None:
    """The dataset spec ``model`` was trained on (for a fine-tuned model: fine-tuned on), as its
    ``videoxai.json`` records it (``vx.load_model`` keeps that as ``model.metadata``); ``None``
    when it records none (a model saved without training facts, or built in memory)."""
    training = (getattr(model, "metadata", None) or {}).get("training") or {}
    finetuned = training.get("finetune") if isinstance(training.get("finetune"), dict) else {}
    spec = finetuned.get("data") or training.get("data")
    return spec if isinstance(spec, str) and spec.strip() else None


#: what :func:`clip_key` makes: a file name that stays in its folder
_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def clip_key(clip_id: str, index: int) -> str:
    """A file-name-safe key for a clip: its id with other characters replaced, and its index."""
    return f"{index:06d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("_")[-80:]


# -- step 1: collect --------------------------------------------------------------------------------
def collect(model: STABNVideoModel, data: ClipSet, directory: str | Path, *, model_spec: str,
            misclassified_only: bool = True, limit: int | None = None, batch_size: int = 64) -> EditSet:
    """Run ``model`` over ``data`` and store the clips to edit (the misclassified ones by default).

    Args:
        model: a trained ST-ABN.
        data: the clips to run over (the training split, as in the paper).
        directory: the edit set to create (an existing collection there is replaced; saved edits
            of clips collected again are kept, so one whose edits are of other videos or of clips
            of another length is refused).
        model_spec: how to load ``model`` again (a directory or a bundled name), for the editor's
            preview and for fine-tuning.
        misclassified_only: keep only clips whose perception-branch prediction is wrong.
        limit: keep at most this many clips (the first ones in dataset order).
    """
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        # 0 or a negative count would write an empty edit set and say nothing
        raise InputError(f"limit must be a whole number of clips >= 1 (or None: all), got {limit!r}")
    # the classes too: a 2-class model run over a 4-class set would store labels the collection's
    # class names cannot name (and fine-tuning refuses such a set anyway)
    check_data(model, data, f"{data.spec} ({data.split})")
    check_out_dir(directory)  # before the model runs over every clip
    spec = recorded_spec(data.spec)  # absolute: edit and finetune read it from wherever they run
    _check_kept_edits(Path(directory), model.num_frames, spec)
    if not model.config.attention_branch:
        raise InputError(f"{model.name} has no attention branch: there is no temporal attention to edit")
    p = predict(model, data, batch_size, "ST-ABN collect")
    pred = p.logits.argmax(1)
    chosen = np.flatnonzero(pred != data.labels) if misclassified_only else np.arange(len(data))
    if limit is not None:
        chosen = chosen[: int(limit)]
    es = EditSet(Path(directory), model=str(model_spec), data=spec, split=data.split,
                 labels=list(model.labels), num_frames=model.num_frames)
    (es.directory / "clips").mkdir(parents=True, exist_ok=True)
    for idx in np.array_split(chosen, max(1, -(-len(chosen) // batch_size))):
        if not len(idx):
            continue
        with eval_mode(model):
            spatial = model.outputs(data.pixels(idx).to(model.device)).spatial.float().cpu().numpy()
        for j, i in enumerate(idx):
            i = int(i)
            key = clip_key(data.ids[i], i)
            # whole or not at all: collecting again into an edit set, a Ctrl-C while a clip was
            # written left the old collection naming an archive cut short
            archive = io.BytesIO()
            np.savez_compressed(archive, frames=data.frames[i], spatial=spatial[j].astype(np.float32))
            write_atomically(es.directory / "clips" / f"{key}.npz", archive.getvalue())
            es.items.append(CollectedClip(key=key, id=data.ids[i], index=i, label=int(data.labels[i]),
                                          predicted=int(pred[i]),
                                          attention=[round(float(v), 6) for v in p.temporal[i]],
                                          attention_predicted=int(p.att_logits[i].argmax())))
    es.write_collection()
    return es


def _check_kept_edits(directory: Path, num_frames: int, data: str) -> None:
    """Refuse to collect into an edit set whose saved edits are of clips of another length or of
    other data: they are kept for the clips collected again (matched by key, the clip's index and
    id), so fine-tuning failed on the first of them, or — another folder with the same file
    names — silently trained the new clips with edits made for others."""
    path = directory / COLLECTION
    if not path.is_file() or not any((directory / "edits").glob("*.json")):
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        frames, spec = int(old["num_frames"]), str(old["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # a damaged collection is replaced
    if frames != num_frames:
        raise InputError(f"{directory} holds edits of {frames} frames per clip (saved edits are kept when collecting "
                         f"again); this model takes {num_frames}: collect into another directory")
    # the videos' source, not the whole spec: other options (a labels file) keep the videos, and
    # synthetic clip ids carry their split and seed already
    if _source(recorded_spec(spec)) != _source(data) and not data.startswith("synthetic"):
        raise InputError(f"{directory} holds edits of clips of {spec} (saved edits are kept when collecting again); "
                         f"collect {data} into another directory")


def _source(spec: str) -> tuple[str, str]:
    """A dataset spec's kind and argument (``folder:/data/clips,labels=x.csv`` → the folder), as
    :func:`~videoxai.data.datasets.parse_data_spec` reads them (a folder with a comma included)."""
    from ..data.datasets import parse_data_spec

    try:
        kind, argument, _ = parse_data_spec(spec)
    except InputError:  # not kind:argument (a bare "synthetic")
        return spec.strip(), ""
    return kind.strip(), argument


# -- preview --------------------------------------------------------------------------------------
def preview(model: STABNVideoModel, frames: np.ndarray, levels: Sequence[float | None]) -> dict:
    """How replacing ``M_t`` by ``levels`` changes the prediction on one clip.

    Unset frames (``None``) keep the model's own temporal attention. Returns
    ``{"original": {...}, "edited": {...}}``, each with the predicted class, its name, its
    probability and all class probabilities.
    """
    levels = check_levels(levels, allow_unset=True)
    if len(levels) != model.num_frames:
        raise InputError(f"the model takes {model.num_frames} frames, got {len(levels)} levels")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None].float().div(255).to(model.device)
    with eval_mode(model):
        orig = model.outputs(x)
        own = orig.temporal[0]
        override = torch.tensor([own[t] if v is None else v for t, v in enumerate(levels)],
                                dtype=own.dtype, device=own.device)
        edited = model.outputs(x, temporal_override=override)

    def summary(out) -> dict:
        probs = out.logits[0].float().softmax(-1).cpu()
        k = int(probs.argmax())
        return {"predicted": k, "label": model.labels[k], "probability": float(probs[k]),
                "probs": [round(float(v), 6) for v in probs],
                "temporal": [round(float(v), 6) for v in out.temporal[0]]}

    return {"original": summary(orig), "edited": summary(edited)}


# -- step 3: fine-tune ----------------------------------------------------------------------------
def edit_targets(data: ClipSet, edits: dict[str, TemporalEdit], gamma_t: float, loss: str = "mse") -> TemporalTargets:
    """Line the edits up with the clips of ``data`` (matched by clip id)."""
    position = data.index_of()
    values = np.full((len(data), data.num_frames), np.nan, dtype=np.float32)
    has = np.zeros(len(data), dtype=bool)
    missing = [cid for cid in edits if cid not in position]
    if missing:
        raise InputError(f"{len(missing)} edited clips are not in {data.spec} ({data.split}), e.g. "
                         f"{missing[0]!r}; fine-tune on the data the edits were collected from")
    for cid, e in edits.items():
        if len(e.levels) != data.num_frames:
            raise InputError(f"edit of {cid} has {len(e.levels)} levels for {data.num_frames} frames")
        values[position[cid]] = e.levels
        has[position[cid]] = True
    return TemporalTargets(values=values, has_edit=has, gamma_t=float(gamma_t), loss=loss)


def finetune(model: STABNVideoModel, data: ClipSet, edits: EditSet | dict[str, TemporalEdit],
             out: str | Path | None = None, *, gamma_t: float = 10.0, config: TrainConfig | None = None,
             frozen: Sequence[str] = ("feature_extractor",), unfreeze_at: int | None = None,
             edited_only: bool = False, val: ClipSet | None = None, resume: bool = True,
             on_epoch=None, command: str | None = None, temporal_loss: str = "auto") -> TrainResult:
    """Fine-tune ``model`` in place with ``L_att + L_per + L_temp`` (see the module docstring).

    Args:
        model: the trained ST-ABN the edits were made for.
        data: the training clips the edits refer to (matched by clip id).
        edits: an :class:`EditSet` or ``{clip id: TemporalEdit}``.
        out: output directory (checkpoints, history, ``model/``), or ``None``.
        gamma_t: weight of ``L_temp`` (0 gives fine-tuning without human knowledge).
        config: optimisation settings (default :func:`finetune_config`).
        frozen: module groups frozen (``"feature_extractor"``, ``"attention_branch"``,
            ``"perception_branch"``); ``unfreeze_at``: epoch from which all train.
        edited_only: train on the edited clips only (default: the whole set, ``L_temp`` on the
            edited clips).
        val: validation clips.
        on_epoch: called with each epoch's record; ``command``: stored with the model.
        temporal_loss: ``L_temp``'s form: ``"mse"`` (the paper's), ``"kl"``, or ``"auto"`` (KL
            for a softmax temporal attention, MSE for a sigmoid one; :mod:`.losses`).
    """
    # a negative weight pushes the attention away from the person's edits, and NaN only shows
    # up as a diverged loss blamed on the learning rate
    if not math.isfinite(gamma_t) or gamma_t < 0:
        raise InputError(f"gamma_t must be a finite number ≥ 0, got {gamma_t}")
    if isinstance(edits, EditSet):
        check_collection(edits, model)
    edit_map = edits.edits() if isinstance(edits, EditSet) else dict(edits)
    if not edit_map:
        raise InputError("no saved edits: edit some clips first (`videoxai stabn edit`)")
    if isinstance(edits, EditSet):
        check_edited_frames(edits, data, edit_map)
    kind = temporal_loss_kind(temporal_loss, model.config.temporal_norm)
    targets = edit_targets(data, edit_map, gamma_t, kind)
    if edited_only:
        keep = np.flatnonzero(targets.has_edit)
        data = data.subset(keep)
        targets = TemporalTargets(targets.values[keep], targets.has_edit[keep], targets.gamma_t, targets.loss)
    meta = {"finetune": {"data": recorded_spec(data.spec), "edits": len(edit_map), "gamma_t": float(gamma_t), "temporal_loss": kind,
                         "frozen": list(frozen), "unfreeze_at": unfreeze_at, "edited_only": edited_only},
            "command": command}
    return fit(model, data, config or finetune_config(), val=val, out=out, resume=resume, targets=targets,
               freeze=FreezeSchedule(tuple(frozen), unfreeze_at), training_meta=meta, on_epoch=on_epoch)


def finetune_config(**overrides) -> TrainConfig:
    """Fine-tuning defaults: 5 epochs of the training recipe at its peak learning rate (2e-3), no
    warm-up, with ``γ_t = 10`` (:func:`finetune`'s default) — the best of γ_t ∈ {1, 10} × lr ∈
    {5e-4, 2e-3} × epochs ∈ {3, 5} on the **validation** split of the confound experiment
    (:mod:`videoxai.stabn.experiment`, ``scripts/stabn_experiment.py --choose``), where the
    ``"demo"`` recipe's label smoothing (0.1) was in place.
    """
    return TrainConfig.recipe("demo", **{"epochs": 5, "lr": 2e-3, "warmup": 0.0, **overrides})


__all__ = ["LEVELS", "TemporalEdit", "EditSet", "CollectedClip", "UnknownClipError", "check_levels", "fill_between",
           "collect", "preview", "edit_targets", "finetune", "finetune_config", "clip_key", "training_data",
           "check_collection"]

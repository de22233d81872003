"""Clip sets for ST-ABN training, collection and fine-tuning.

A :class:`ClipSet` holds a split in memory as uint8 frames (what a tiny model on a CPU trains on
without a decoding bottleneck), with labels, the ground-truth temporal windows where the dataset
has them, and a stable id per clip (edits are matched to clips by it).

Datasets are named by the project's spec strings (:mod:`videoxai.data.datasets`):

* ``"synthetic"`` or ``"synthetic:N[,seed=0][,val=M][,test=M]"`` — the synthetic benchmark
  (:class:`videoxai.data.synthetic.SyntheticVideos`): ``N`` training clips (default 2000) and,
  for the ``"val"`` and ``"test"`` splits, ``M`` clips (default ``N/4``) from *disjoint* random
  streams, so validation never sees a training clip;
* any other spec :func:`videoxai.data.datasets.load_dataset` reads (``folder:DIR`` — videos with
  a ``video,label[,start,end]`` CSV —, ``ssv2:…``, ``ucf24:…``): every clip is decoded once,
  sampled to ``num_frames`` frames and brought to ``frame_size`` as the model's own
  preprocessing brings a clip at explanation time (:func:`decoded_view`: to a square size the
  shorter side is scaled and the centre cropped; to another shape the whole frame is resized).
  Such a spec names one split; validation data is a second spec.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Annotated, Iterator, Sequence

import numpy as np
import torch

from ..errors import InputError, VideoReadError
from ..models.preprocess import Preprocess
from ..options import Opt, declared_options, parse_assignments, parse_options


@dataclass
class ClipSet:
    """A split of a dataset, in memory.

    Attributes:
        frames: ``(N, T, H, W, 3)`` uint8.
        labels: ``(N,)`` int64 class indices.
        windows: ``(N, 2)`` int64 ground-truth ``[start, end)`` evidence windows, or ``None``.
        ids: ``N`` stable clip ids (``"synthetic:train/17"``, a video path, …).
        label_names: class names.
        spec: the dataset spec it came from, and ``split`` its split.
        masks: ``(N, T, H, W)`` bool ground-truth evidence pixels, or ``None`` (the synthetic
            benchmark has them; they score the spatial attention).
    """

    frames: np.ndarray
    labels: np.ndarray
    windows: np.ndarray | None
    ids: list[str]
    label_names: list[str]
    spec: str
    split: str
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.frames.ndim != 5 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise InputError(f"ClipSet.frames must be (N, T, H, W, 3) uint8, got "
                             f"{self.frames.shape} {self.frames.dtype}")
        if self.frames.shape[0] != n or len(self.ids) != n:
            raise InputError(f"ClipSet has {self.frames.shape[0]} clips, {n} labels, {len(self.ids)} ids")
        if self.windows is not None and self.windows.shape != (n, 2):
            raise InputError(f"ClipSet.windows must be ({n}, 2), got {self.windows.shape}")
        if self.masks is not None and self.masks.shape != self.frames.shape[:4]:
            raise InputError(f"ClipSet.masks must be {self.frames.shape[:4]}, got {self.masks.shape}")

    def subset(self, index: np.ndarray | list[int]) -> "ClipSet":
        """The clips at ``index`` (in that order), as a new set."""
        index = np.asarray(index, dtype=np.int64)
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return ClipSet(frames=self.frames[index], labels=self.labels[index], windows=pick(self.windows),
                       ids=[self.ids[i] for i in index], label_names=self.label_names, spec=self.spec,
                       split=self.split, masks=pick(self.masks))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])

    @property
    def frame_size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def pixels(self, index: np.ndarray | list[int] | slice) -> torch.Tensor:
        """The selected clips as a pixel batch: float32 ``(B, T, 3, H, W)`` in [0, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(self.frames[index]))
        return x.permute(0, 1, 4, 2, 3).float().div_(255.0)

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Index arrays of at most ``batch_size`` clips, in ``order`` (default: dataset order)."""
        if batch_size < 1:
            raise InputError(f"batch_size must be ≥ 1, got {batch_size}")
        order = np.arange(len(self)) if order is None else np.asarray(order)
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]

    def index_of(self) -> dict[str, int]:
        """``{clip id: position}``; edits are matched to clips by it, so an id given to two clips
        (a set built in code, a list that names a video twice) is refused, naming it: the last
        of them took every edit of the id and the first trained as unedited, without a word."""
        position: dict[str, int] = {}
        for i, cid in enumerate(self.ids):
            if position.setdefault(cid, i) != i:
                raise InputError(f"{self.spec} ({self.split}): clip id {cid!r} is given to clips {position[cid]} and "
                                 f"{i}; edits are matched to clips by id, so each clip needs its own")
        return position


# -- opening datasets -----------------------------------------------------------------------------
DEFAULT_TRAIN_SIZE = 2000


def open_dataset(spec: str, split: str = "train", *, num_frames: int = 8,
                 frame_size: tuple[int, int] = (64, 64), labels: Sequence[str] | None = None,
                 labels_from: str = "the model", view: Preprocess | None = None) -> ClipSet:
    """Load split ``split`` of the dataset named by ``spec`` (see the module docstring).

    Args:
        spec: a dataset spec.
        split: for the synthetic benchmark, which stream (``"train"``, ``"val"``, ``"test"``);
            other specs name one split already and only record it.
        num_frames, frame_size: how clips are sampled (the synthetic set renders at that size).
        labels: class names, to map named labels of a CSV onto class indices.
        labels_from: where ``labels`` came from, as messages name it (``"the training data
            folder:…"`` when validation data is mapped onto the classes the training data defined).
        view: how decoded frames are brought to ``frame_size``: the preprocessing of the model
            they are for (``model.preprocess``), so that it sees a clip there as it sees the
            clip's video explained; default :func:`decoded_view` (what :func:`~.train.train`
            saves with a model trained on decoded data).
    """
    spec = str(spec).strip()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return _synthetic(spec, split, num_frames, tuple(frame_size))
    view = view if view is not None else decoded_view(tuple(frame_size))
    if tuple(view.size) != tuple(frame_size):
        raise InputError(f"a view of {tuple(view.size)} pixels cannot make frames of {tuple(frame_size)}")
    return _decoded(spec, split, num_frames, tuple(frame_size), labels, labels_from, view)


def check_dataset(spec: str, *, num_frames: int = 8, labels: Sequence[str] | None = None,
                  labels_from: str = "the model") -> list[str]:
    """Open the dataset ``spec`` names as :func:`open_dataset` would, decoding no clip, and return
    its class names (``[]`` where it names none, or for the synthetic benchmark): a spec that
    cannot be opened (a missing folder, a ``labels.csv`` naming a class not in ``labels``) is
    refused in seconds, before minutes of decoding another spec. Warnings are left to the real
    opening, which repeats them."""
    from ..data.datasets import ClassNames, load_dataset

    spec = str(spec).strip()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        _parse_synthetic(spec)  # its options only: the clips are rendered when opened
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset(spec, num_frames=num_frames,
                          labels=ClassNames(labels, owner=labels_from) if labels is not None else None)
    return list(getattr(ds, "class_names", None) or [])


def decoded_shortest_edge(frame_size: tuple[int, int]) -> int | None:
    """The ``shortest_edge`` of a model trained on decoded videos at ``frame_size``: to a square
    size the shorter side is scaled to it and the centre cropped (no distortion); to another
    shape, ``None``: the whole frame is resized (a size chosen for the videos' shape; a crop
    covering a wide size from one side cut most of a frame away)."""
    h, w = frame_size
    return int(h) if h == w else None


def decoded_view(frame_size: tuple[int, int]) -> Preprocess:
    """How decoded frames are brought to ``frame_size`` by default (:func:`decoded_shortest_edge`)."""
    return Preprocess(size=tuple(frame_size), shortest_edge=decoded_shortest_edge(frame_size))


def _synthetic_options(size: Annotated[int, Opt(ge=0, help="training clips")] = DEFAULT_TRAIN_SIZE,
                       seed: Annotated[int, Opt(ge=0, help="seeds the three disjoint streams")] = 0,
                       val: Annotated[int | None, Opt(ge=1, help="validation clips (default size/4)")] = None,
                       test: Annotated[int | None, Opt(ge=1, help="test clips (default size/4)")] = None,
                       classes: Annotated[int, Opt(ge=1, help="number of classes")] = 4) -> None:
    """The options of ``synthetic:N[,seed=0][,val=M][,test=M][,classes=K]``, declared once and
    parsed by :func:`videoxai.options.parse_options` (the one parser)."""


def _check_fits_in_memory(spec: str, split: str, clips: int, clip_bytes: int) -> None:
    """Refuse a split whose clips cannot be held in memory, before rendering any.

    A :class:`ClipSet` holds its split as one array, built from a list of the clips (so twice
    the array at the peak): ``synthetic:1000000000`` would render clips until the machine gave
    out. The bound is the memory available now, not a fixed count.
    """
    import psutil

    need = 2 * clips * clip_bytes
    free = psutil.virtual_memory().available
    if need > free:
        raise InputError(f"dataset spec {spec!r}: its {split} split of {clips:,} clips needs about "
                         f"{need / 2**30:.1f} GiB in memory (ST-ABN training holds its clips in memory), "
                         f"{free / 2**30:.1f} GiB is available; use fewer clips or a smaller frame size")


def _parse_synthetic(spec: str) -> dict:
    """The options of a ``synthetic[:N,…]`` spec (:func:`_synthetic_options`)."""
    rest = spec.partition(":")[2]
    parts = [p.strip() for p in rest.split(",") if p.strip()]
    given = {"size": parts.pop(0)} if parts and "=" not in parts[0] else {}
    given.update(parse_assignments(parts, where=f"dataset spec {spec!r}"))
    return parse_options(declared_options(_synthetic_options), given, f"dataset spec {spec!r}")


def _synthetic(spec: str, split: str, num_frames: int, frame_size: tuple[int, int]) -> ClipSet:
    from ..data.synthetic import SyntheticVideos

    opts = _parse_synthetic(spec)
    size, seed = opts["size"], opts["seed"]
    n = size if split == "train" else (opts.get(split) or max(1, size // 4))
    h, w = frame_size
    _check_fits_in_memory(spec, split, n, num_frames * h * w * 4)  # RGB frames and the mask
    ds = SyntheticVideos(n, split=split, seed=seed, num_frames=num_frames, frame_size=frame_size,
                         num_classes=opts["classes"])
    samples = [ds[i] for i in range(len(ds))]
    frames = np.stack([s.frames for s in samples]) if samples else np.zeros((0, num_frames, h, w, 3), np.uint8)
    return ClipSet(frames=frames,
                   labels=np.array([s.label for s in samples], dtype=np.int64),
                   windows=np.array([s.window for s in samples], dtype=np.int64).reshape(-1, 2),
                   # the same clip key as videoxai.data.datasets uses for this clip
                   ids=[f"synthetic:{split}:{seed}/{i}" for i in range(len(samples))],
                   label_names=list(ds.labels), spec=spec, split=split,
                   masks=np.stack([s.masks for s in samples]) if samples else None)


def _decoded(spec: str, split: str, num_frames: int, frame_size: tuple[int, int],
             labels: Sequence[str] | None, labels_from: str, view: Preprocess) -> ClipSet:
    from ..data.datasets import ClassNames, load_dataset
    from ..progress import track

    # validation data is mapped onto the classes the training data defined before any model
    # exists: messages name them so ("class 'emu' is not one of the model's classes" sent the
    # user looking for a model they never gave)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        ds = load_dataset(spec, num_frames=num_frames,
                          labels=ClassNames(labels, owner=labels_from) if labels is not None else None)
    said = [str(w.message) for w in said]
    for text in said:
        warnings.warn(text, stacklevel=3)
    h, w = frame_size
    # before decoding: a frame size of 100000 (a --size meant as a clip count) failed in the first
    # clip's resize, "can't allocate 960000000000 bytes"
    _check_fits_in_memory(spec, split, len(ds), num_frames * h * w * 4)
    frames, ys, windows, ids = [], [], [], []
    unreadable: list[str] = []
    for i in track(range(len(ds)), total=len(ds), description=f"decoding {spec}"):
        try:
            s = ds[i]
        except VideoReadError as e:
            # every bad file of the set in one error, not the first one per (long) decoding pass
            unreadable.append(str(e))
            continue
        if s.label is None:  # with the loader's warning: why (a class subfolder not among the classes)
            why = f" ({said[0]})" if said else ""
            raise InputError(f"{spec}: clip {s.key} has no label; training needs labelled clips{why}")
        if s.clip.num_frames != num_frames:
            raise InputError(f"{spec}: clip {s.key} has {s.clip.num_frames} frames, not {num_frames}")
        frames.append(_resize(s.clip.uint8(), view))
        ys.append(int(s.label))
        windows.append(s.window)
        ids.append(s.key)
    if unreadable:
        shown = "; ".join(unreadable[:5]) + (f"; and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise VideoReadError(f"{spec}: {len(unreadable)} of {len(ds)} videos cannot be read (fix or remove "
                             f"them): {shown}")
    names = list(labels) if labels is not None else list(getattr(ds, "class_names", None) or [])
    if not names:
        names = [f"class_{i}" for i in range(max(ys) + 1)] if ys else []
    known = bool(windows) and all(win is not None for win in windows)  # all or none: metrics need every one
    return ClipSet(frames=np.stack(frames) if frames else np.zeros((0, num_frames, h, w, 3), np.uint8),
                   labels=np.array(ys, dtype=np.int64),
                   windows=np.array(windows, dtype=np.int64) if known else None,
                   ids=ids, label_names=names, spec=spec, split=split)


def _resize(frames: np.ndarray, view: Preprocess) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 → ``(T, h, w, 3)``: what the model sees of them (``view.view``).

    Its own geometry (shorter side scaled, centre crop) was not the model's: a model saved with
    ``shortest_edge`` None trained on centre crops and was then explained, collected and
    evaluated by ``vx.explain`` on whole frames squeezed to its size."""
    if tuple(frames.shape[1:3]) == tuple(view.size):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)[None]
    x = view.view(x)[0]
    return x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def recorded_spec(spec: str) -> str:
    """``spec`` as a model records the data it was trained on: relative paths made absolute.

    ``videoxai stabn collect`` reads that record when no ``--data`` is given, usually from another
    directory than the one training ran in; ``folder:clips`` would then name nothing (or another
    folder). The spec is read as :func:`~videoxai.data.datasets.parse_data_spec` reads it (a path
    with a comma, quoted or not), its argument and any ``key=value`` naming an existing path are
    resolved, and an argument with a comma or spaces at its ends is written back in double quotes;
    a spec that does not parse, or a synthetic one, is kept as typed.
    """
    from pathlib import Path

    from ..data.datasets import parse_data_spec
    from ..errors import InputError

    def absolute(value: str) -> str:
        path = Path(value).expanduser()
        return str(path.resolve()) if value and not path.is_absolute() and path.exists() else value

    text = str(spec).strip()
    try:
        kind, argument, options = parse_data_spec(text)
    except InputError:
        return text
    if kind == "synthetic":
        return text
    argument = absolute(argument)
    if "," in argument or argument != argument.strip():   # read whole again only in quotes
        argument = f'"{argument}"'
    return f"{kind}:{argument}" + "".join(f",{key}={absolute(value.strip())}" for key, value in options.items())


__all__ = ["ClipSet", "decoded_shortest_edge", "decoded_view", "open_dataset", "recorded_spec"]

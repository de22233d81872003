"""`Explanation`: where and when the evidence for one prediction lies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .npz import read_archive, write_npz
from .cost import Cost
from .errors import InputError

_FORMAT_VERSION = 1


@dataclass
class Explanation:
    """The result of :func:`videoxai.explain`.

    Attributes:
        spatial: float32 ``(T, H, W)`` in [0, 1], aligned with the clip's frames at their original
            size (zero outside the region the model sees, e.g. outside a centre crop). One scale
            for the whole clip, so frames can be compared with each other.
        temporal: float32 ``(T,)``, one score per clip frame, non-negative, sums to 1.
        target: the explained class index.
        label: its name.
        score: the model's probability of ``target`` on the clean clip.
        probs: float32 ``(num_classes,)`` class probabilities of the clean clip (the softmax of its
            logits, or their sigmoid: ``meta["activation"]``).
        method: registered method name.
        options: the method's options as given (defaults filled in; sequences as lists, as
            :meth:`save` writes them): the spec that makes the explanation again, on this clip
            or another. Values the method chose from the clip
            for options given as ``None`` or ``"auto"`` are in ``meta["resolved_options"]``.
        cost: measured cost of this explanation.
        raw: float32 ``(T', h, w)`` map at the method's own resolution before upsampling and
            refinement (token grid, feature map or input pixels), for metrics and research.
        frame_indices: ``(T,)`` source-video index of each frame.
    """

    spatial: np.ndarray
    temporal: np.ndarray
    target: int
    label: str
    score: float
    probs: np.ndarray
    method: str
    options: dict = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    raw: np.ndarray | None = None
    frame_indices: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spatial = np.asarray(self.spatial, dtype=np.float32)
        self.temporal = np.asarray(self.temporal, dtype=np.float32)
        self.probs = np.asarray(self.probs, dtype=np.float32)
        if self.spatial.ndim != 3:
            raise InputError(f"Explanation.spatial must be (T, H, W), got {self.spatial.shape}")
        if self.temporal.shape != (self.spatial.shape[0],):
            raise InputError(f"Explanation.temporal must be ({self.spatial.shape[0]},), "
                             f"got {self.temporal.shape}")
        if self.frame_indices is None:
            self.frame_indices = np.arange(self.spatial.shape[0], dtype=np.int64)

    @property
    def num_frames(self) -> int:
        return int(self.spatial.shape[0])

    def __repr__(self) -> str:
        """One line, never the maps: method, class, score, shapes and the top frames."""
        top = ", ".join(f"#{int(self.frame_indices[i])}" for i in self.top_frames(3))
        return (f"Explanation(method={self.method!r}, label={self.label!r}, target={self.target}, "
                f"score={self.score:.3f}, spatial={tuple(self.spatial.shape)}, "
                f"temporal={tuple(self.temporal.shape)}, top frames {top})")

    def top_frames(self, k: int = 3) -> np.ndarray:
        """Indices of the k most important frames, most important first."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            # a negative k sliced [:k] and returned all frames but the least important ones
            raise InputError(f"top_frames: k must be an integer ≥ 0, got {k!r}")
        return np.argsort(-self.temporal, kind="stable")[:k]

    def to_dict(self, maps: bool = False) -> dict:
        """JSON-friendly summary (maps included only if ``maps``)."""
        d = {
            "method": self.method, "target": int(self.target), "label": self.label,
            "score": float(self.score), "options": _plain(self.options), "cost": self.cost.to_dict(),
            "temporal": self.temporal.tolist(), "frame_indices": self.frame_indices.tolist(),
            "shape": list(self.spatial.shape), "meta": _plain(self.meta),
        }
        if maps:
            d["spatial"] = self.spatial.tolist()
            d["probs"] = self.probs.tolist()
        return d

    def save(self, path: str | Path) -> Path:
        """Write a ``.npz`` with the arrays and a JSON metadata record (no pickle); returns its path.

        ``path`` gets the suffix ``.npz`` (another suffix is replaced); missing parent directories
        are created; an existing file is replaced whole (the archive is written beside it and
        renamed over it, so a reader never sees half a file). The metadata is JSON: tuples come
        back as lists, NumPy scalars as Python numbers and booleans, anything else (a path) as its
        text. Maps with NaN or infinite values are refused (:func:`videoxai.explain` never makes
        them; a map of NaN ranks nothing and breaks the viewer's JSON).
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays = {"spatial": self.spatial, "temporal": self.temporal, "probs": self.probs,
                  "frame_indices": self.frame_indices}
        if self.raw is not None:
            arrays["raw"] = np.asarray(self.raw, dtype=np.float32)
        _check_finite(arrays, f"cannot save the explanation to {path}")
        meta = {
            "version": _FORMAT_VERSION, "target": int(self.target), "label": self.label,
            "score": float(self.score), "method": self.method, "options": self.options,
            "cost": self.cost.to_dict(), "meta": self.meta,
        }
        arrays["metadata"] = metadata_array(meta)
        return write_npz(path, arrays, "explanation")

    @classmethod
    def load(cls, path: str | Path) -> "Explanation":
        """Read an explanation written by :meth:`save`."""
        path = Path(path)
        arrays = read_archive(path, "explanation")
        if _recorded(arrays, "kind") == "video_explanation":
            # the windows of a whole video (VideoExplanation.save): it has no one clip's maps
            raise InputError(f"{path} is a video explanation (windows over a whole video), not one clip's: "
                             "read it with vx.VideoExplanation.load")
        version = _recorded(arrays, "version")
        if isinstance(version, int) and version > _FORMAT_VERSION:
            # a later format may keep the names and change what they mean: not read as if it were ours
            raise InputError(f"{path} was written by a newer videoxai (explanation format {version}; "
                             f"this one reads format {_FORMAT_VERSION}): upgrade videoxai to read it")
        _check_finite(arrays, f"{path} is not a valid explanation")
        try:
            meta = json.loads(bytes(arrays.pop("metadata")).decode())
            # inside the try: an archive with metadata but without a map is as foreign as one without
            return cls(spatial=arrays["spatial"], temporal=arrays["temporal"], probs=arrays["probs"],
                       frame_indices=arrays.get("frame_indices"), raw=arrays.get("raw"),
                       target=meta["target"], label=meta["label"], score=meta["score"],
                       method=meta["method"], options=meta.get("options", {}),
                       cost=Cost.from_dict(meta.get("cost", {})), meta=meta.get("meta", {}))
        except KeyError as e:
            raise InputError(f"{path} is not a videoxai explanation file: it has no {e.args[0]!r}") from e
        except (ValueError, TypeError) as e:
            raise InputError(f"{path} is not a videoxai explanation file: {e}") from e


def _plain(value):
    """``value`` as :meth:`Explanation.save` writes it: a method's extras in ``meta`` are numpy
    arrays (SHAP's segment values, LIME's R², extremal areas), which ``json.dumps`` refuses."""
    return json.loads(json.dumps(value, default=_json_default))


def _recorded(arrays: dict[str, np.ndarray], key: str):
    """What an archive's metadata records under ``key`` (``"version"``, ``"kind"``), or ``None``
    (no metadata, not JSON, not given)."""
    try:
        meta = json.loads(bytes(arrays["metadata"]).decode())
    except (KeyError, ValueError, TypeError):
        return None
    return meta.get(key) if isinstance(meta, dict) else None


def metadata_array(meta: dict) -> np.ndarray:
    """``meta`` as the ``metadata`` entry of an archive: JSON bytes (numpy values as plain ones)."""
    return np.frombuffer(json.dumps(meta, default=_json_default).encode(), dtype=np.uint8)


def _check_finite(arrays: dict[str, np.ndarray], what: str, owner: str = "Explanation") -> None:
    """Refuse maps with NaN or infinite values, naming the first such array (``owner.name``)."""
    for name, a in arrays.items():
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise InputError(f"{what}: {owner}.{name} holds NaN or infinite values")


def _json_default(o):
    if isinstance(o, np.bool_):   # not an np.integer: it was written as the text "False", which is truthy
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    if isinstance(o, (set, frozenset)):
        # sorted: a set's order is its members' hashes, which for text change from process to
        # process (PYTHONHASHSEED), so the same explanation was saved as different files
        try:
            return sorted(o)
        except TypeError:   # members that do not compare (numbers and text): by their text
            return sorted(o, key=repr)
    return str(o)

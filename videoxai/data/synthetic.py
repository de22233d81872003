"""The synthetic benchmark: clips whose class evidence is known in space *and* in time.

Each clip shows a textured, slowly drifting background with a few **distractor** objects that are
visible in every frame, and one **evidence** object that is visible only during a short window
of frames (2–4 of 8 by default) at a random position, moving a little. The class is the
evidence object's *conjunction* of colour and shape (``"red square"``, ``"blue triangle"``, …);
distractors are shapes and colours that the classes use, but never a class's combination
(a red circle, a yellow square, …). So

* no single frame outside the window says anything about the class (the evidence is absent),
* no colour alone and no shape alone is enough (distractors share them),

and a model that classifies well must have looked at the evidence object in its window. The
per-frame ``masks`` of that object and its ``window`` are the ground truth that localisation
metrics (pointing game, energy inside the mask, temporal grounding) are scored against, and
:func:`chance_rates` says what a random guess would score.

Every clip is a pure function of ``(seed, split, index)``, so datasets need no storage and two
processes agree on every pixel; different split names draw from disjoint random streams.

>>> ds = SyntheticVideos(200, split="test")
>>> s = ds[0]
>>> s.frames.shape, ds.labels[s.label], s.window
((8, 64, 64, 3), 'red square', (5, 8))
"""

from __future__ import annotations

import math
import numbers
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence, overload

import numpy as np

from ..clip import Clip
from ..errors import InputError

#: the most clips a :class:`SyntheticVideos` (and a ``synthetic:N`` dataset) may have: clips are
#: rendered on demand, so the size costs nothing until a clip is drawn; the bound keeps ``len()``
#: an index-sized integer (``synthetic:1e30`` is an error, not an ``OverflowError``)
MAX_SIZE = 10**12

#: shape vocabulary, in the order classes use them (see :func:`class_grid`)
SHAPES: tuple[str, ...] = ("square", "triangle", "circle", "cross", "diamond", "ring")

#: colour vocabulary (nominal RGB), in the order classes use them
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "blue": (40, 80, 235),
    "yellow": (235, 215, 30),
    "green": (30, 185, 60),
    "magenta": (215, 50, 215),
    "cyan": (30, 210, 220),
}

_COLOUR_NAMES = tuple(COLOURS)
_RGB = np.array([COLOURS[c] for c in _COLOUR_NAMES], dtype=np.float32)  # (num_colours, 3)


def shape_masks(shape: str, cy: np.ndarray, cx: np.ndarray, size: float,
                height: int, width: int) -> np.ndarray:
    """Rasterise one shape at per-frame centres: ``(T,)`` centres → ``(T, H, W)`` bool.

    ``size`` is the side of the shape's bounding square in pixels; pixel ``(y, x)`` is inside if
    its centre ``(y + 0.5, x + 0.5)`` is.
    """
    ys = (np.arange(height, dtype=np.float32) + 0.5)[None, :, None]
    xs = (np.arange(width, dtype=np.float32) + 0.5)[None, None, :]
    half = size / 2.0
    u = (ys - np.asarray(cy, np.float32)[:, None, None]) / half   # rows, -1 top … 1 bottom
    v = (xs - np.asarray(cx, np.float32)[:, None, None]) / half   # cols
    au, av = np.abs(u), np.abs(v)
    if shape == "square":
        return (au <= 1) & (av <= 1)
    if shape == "triangle":  # apex up, base at the bottom edge
        return (u <= 1) & (av <= (u + 1) / 2)
    if shape == "circle":
        return u * u + v * v <= 1
    if shape == "cross":
        arm = 0.36
        return ((au <= 1) & (av <= arm)) | ((av <= 1) & (au <= arm))
    if shape == "diamond":
        return au + av <= 1
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= 0.3)
    raise InputError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def class_grid(num_classes: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Class and distractor ``(shape index, colour index)`` pairs for ``num_classes`` classes.

    Classes fill a ``shapes × colours`` grid (2 × 2 for 4 classes), so each class shares its
    colour with one class and its shape with another. Distractors are every other pair of the
    grid grown by one shape and one colour: they reuse the classes' shapes and colours, never
    their combinations.
    """
    n_shapes = math.ceil(math.sqrt(num_classes))
    n_colours = math.ceil(num_classes / n_shapes)
    if n_shapes + 1 > len(SHAPES) or n_colours + 1 > len(COLOURS):
        raise InputError(f"num_classes={num_classes} is too many for the synthetic vocabulary "
                         f"({len(SHAPES)} shapes × {len(COLOURS)} colours leave room for at most 25)")
    classes = [(c % n_shapes, c // n_shapes) for c in range(num_classes)]
    taken = set(classes)
    distractors = [(s, c) for c in range(n_colours + 1) for s in range(n_shapes + 1)
                   if (s, c) not in taken]
    return classes, distractors


@dataclass
class SyntheticSample:
    """One clip of the synthetic benchmark with its ground truth.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8.
        label: class index (``SyntheticVideos.labels[label]`` is its name).
        masks: ``(T, H, W)`` bool, True on the evidence object's pixels (all False outside the
            window).
        window: ``[start, end)`` frames in which the evidence object is visible.
        boxes: ``(T, 4)`` int ``[top, left, bottom, right)`` of the evidence object, ``-1`` where
            it is absent.
        source: ``"synthetic:<split>/<index>"``.
    """

    frames: np.ndarray
    label: int
    masks: np.ndarray
    window: tuple[int, int]
    boxes: np.ndarray
    source: str = "synthetic"

    @property
    def clip(self) -> Clip:
        """The frames as a :class:`~videoxai.clip.Clip` (8 fps)."""
        return Clip.from_array(self.frames, fps=8.0, source=self.source)


class SyntheticVideos(Sequence[SyntheticSample]):
    """A deterministic, storage-free dataset of synthetic clips (see the module docstring).

    Args:
        size: number of clips.
        split: name of the split (``"train"``, ``"val"``, ``"test"``, …); different names give
            disjoint random streams, so a model trained on ``"train"`` never saw a ``"test"`` clip.
        seed: base seed; clip ``i`` is a pure function of ``(seed, split, i)``.
        num_frames: frames per clip (T).
        frame_size: ``(H, W)``; keep it square so that a model's centre crop sees the whole frame.
        num_classes: number of classes (colour × shape conjunctions), at most 25.
        window: ``(min, max)`` number of frames in which the evidence object is visible.
        object_size: ``(min, max)`` side of an object's bounding square, as a fraction of the
            shorter frame side (0.12–0.16: 8–10 pixels of a 64 × 64 frame).
        distractors: ``(min, max)`` number of distractor objects (visible in every frame).
        max_speed: largest object speed, as a fraction of the shorter side per frame.
        noise: standard deviation of the per-pixel Gaussian noise, in uint8 levels.
        texture: amplitude of the background texture, in uint8 levels.
    """

    def __init__(self, size: int = 200, *, split: str = "train", seed: int = 0, num_frames: int = 8,
                 frame_size: tuple[int, int] = (64, 64), num_classes: int = 4,
                 window: tuple[int, int] = (2, 4), object_size: tuple[float, float] = (0.12, 0.16),
                 distractors: tuple[int, int] = (2, 3), max_speed: float = 0.02,
                 noise: float = 5.0, texture: float = 22.0) -> None:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 0 <= size <= MAX_SIZE:
            raise InputError(f"size must be an integer from 0 to {MAX_SIZE} (10^12), got {size!r}")
        if not isinstance(split, str) or not split:
            raise InputError(f"split must be a non-empty string, got {split!r}")
        h, w = (int(frame_size[0]), int(frame_size[1]))
        if h < 16 or w < 16:
            raise InputError(f"frame_size must be at least 16 x 16, got {frame_size}")
        lo, hi = int(window[0]), int(window[1])
        if not 1 <= lo <= hi <= num_frames:
            raise InputError(f"window must satisfy 1 <= min <= max <= num_frames={num_frames}, "
                             f"got {window}")
        if not 0 < object_size[0] <= object_size[1] <= 0.5:
            raise InputError(f"object_size must be fractions 0 < min <= max <= 0.5, got {object_size}")
        if not 0 <= distractors[0] <= distractors[1]:
            raise InputError(f"distractors must be 0 <= min <= max, got {distractors}")
        self.size = int(size)
        self.split = split
        self.seed = int(seed)
        self.num_frames = int(num_frames)
        self.frame_size = (h, w)
        self.num_classes = int(num_classes)
        self.window_range = (lo, hi)
        self.object_size = (float(object_size[0]), float(object_size[1]))
        self.distractor_range = (int(distractors[0]), int(distractors[1]))
        self.max_speed = float(max_speed)
        self.noise = float(noise)
        self.texture = float(texture)
        self._classes, self._distractors = class_grid(self.num_classes)
        self.labels: list[str] = [f"{_COLOUR_NAMES[c]} {SHAPES[s]}" for s, c in self._classes]
        self._split_key = zlib.crc32(split.encode())

    # -- Sequence ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, i: int) -> SyntheticSample: ...
    @overload
    def __getitem__(self, i: slice) -> list[SyntheticSample]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.size))]
        i = int(i)
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} out of range for {self.size} clips")
        return self._render(i)

    def arrays(self, indices: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``(B, T, H, W, 3)`` uint8 and labels ``(B,)`` int64 of the given clips."""
        samples = [self[i] for i in indices]
        if not samples:
            t, (h, w) = self.num_frames, self.frame_size
            return np.zeros((0, t, h, w, 3), np.uint8), np.zeros((0,), np.int64)
        return (np.stack([s.frames for s in samples]),
                np.array([s.label for s in samples], dtype=np.int64))

    def __repr__(self) -> str:
        return (f"SyntheticVideos(size={self.size}, split={self.split!r}, seed={self.seed}, "
                f"num_frames={self.num_frames}, frame_size={self.frame_size}, "
                f"num_classes={self.num_classes})")

    # -- rendering ---------------------------------------------------------------------------
    def _render(self, index: int) -> SyntheticSample:
        rng = np.random.default_rng([self.seed, self._split_key, index])
        t, (h, w) = self.num_frames, self.frame_size
        side = min(h, w)
        label = int(rng.integers(self.num_classes))

        frames = self._background(rng)                                           # (T, H, W, 3)

        # evidence: window and trajectory first, so distractors can be kept away from it
        length = int(rng.integers(self.window_range[0], self.window_range[1] + 1))
        start = int(rng.integers(0, t - length + 1))
        size = float(rng.uniform(*self.object_size)) * side
        ey, ex = self._trajectory(rng, size, length)
        cy, cx = np.full(t, np.nan, np.float32), np.full(t, np.nan, np.float32)
        cy[start:start + length], cx[start:start + length] = ey, ex

        # distractors: persistent, drawn first (underneath), kept clear of the evidence's path
        n_dis = int(rng.integers(self.distractor_range[0], self.distractor_range[1] + 1))
        for _ in range(n_dis):
            s_idx, c_idx = self._distractors[int(rng.integers(len(self._distractors)))]
            d_size = float(rng.uniform(*self.object_size)) * side
            for _attempt in range(20):
                dy, dx = self._trajectory(rng, d_size, t)
                gap = np.hypot(dy[start:start + length] - ey, dx[start:start + length] - ex)
                if gap.min() > (size + d_size) / math.sqrt(2) + 1:
                    break
            m = shape_masks(SHAPES[s_idx], dy, dx, d_size, h, w)
            self._paint(frames, m, self._jitter(rng, c_idx))

        s_idx, c_idx = self._classes[label]
        win = shape_masks(SHAPES[s_idx], ey, ex, size, h, w)                   # (L, H, W)
        masks = np.zeros((t, h, w), dtype=bool)
        masks[start:start + length] = win
        self._paint(frames, masks, self._jitter(rng, c_idx))

        frames += rng.standard_normal(frames.shape, dtype=np.float32) * self.noise
        frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
        return SyntheticSample(frames=frames, label=label, masks=masks, window=(start, start + length),
                               boxes=_boxes(masks), source=f"synthetic:{self.split}/{index}")

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A low-saturation base colour plus three drifting colour gratings: ``(T, H, W, 3)`` float32."""
        t, (h, w) = self.num_frames, self.frame_size
        base = rng.uniform(80, 160) + rng.uniform(-15, 15, size=3)
        ys = np.arange(h, dtype=np.float32)[None, :, None]
        xs = np.arange(w, dtype=np.float32)[None, None, :]
        ts = np.arange(t, dtype=np.float32)[:, None, None]
        theta = rng.uniform(0, np.pi, size=(3, 1, 1, 1))
        freq = rng.uniform(1.0, 4.0, size=(3, 1, 1, 1)) * 2 * np.pi / min(h, w)  # 1-4 periods
        speed = rng.uniform(-0.3, 0.3, size=(3, 1, 1, 1))                          # rad / frame
        phase = rng.uniform(0, 2 * np.pi, size=(3, 1, 1, 1))
        waves = np.sin((freq * np.cos(theta)).astype(np.float32) * ys
                       + (freq * np.sin(theta)).astype(np.float32) * xs
                       + speed.astype(np.float32) * ts + phase.astype(np.float32))  # (3, T, H, W)
        tint = rng.uniform(0.4, 1.0, size=(3, 3)).astype(np.float32) * (self.texture / 3)
        out = waves.reshape(3, -1).T @ tint + base.astype(np.float32)              # (T·H·W, 3)
        return out.reshape(t, h, w, 3)

    def _trajectory(self, rng: np.random.Generator, size: float, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Centres ``(length,)`` of a straight, slow path that keeps the object inside the frame."""
        h, w = self.frame_size
        step = self.max_speed * min(h, w) * (length - 1)
        lo, hi_y, hi_x = size / 2 + 1, h - size / 2 - 1, w - size / 2 - 1
        y0, x0 = rng.uniform(lo, hi_y), rng.uniform(lo, hi_x)
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0, step)
        y1 = np.clip(y0 + dist * np.sin(angle), lo, hi_y)
        x1 = np.clip(x0 + dist * np.cos(angle), lo, hi_x)
        f = np.linspace(0.0, 1.0, length, dtype=np.float32)
        return (y0 + (y1 - y0) * f).astype(np.float32), (x0 + (x1 - x0) * f).astype(np.float32)

    @staticmethod
    def _jitter(rng: np.random.Generator, colour: int) -> np.ndarray:
        """An object's colour: the nominal one, each channel moved by at most 10 levels."""
        return np.clip(_RGB[colour] + rng.uniform(-10, 10, size=3).astype(np.float32), 0, 255)

    @staticmethod
    def _paint(frames: np.ndarray, mask: np.ndarray, rgb: np.ndarray) -> None:
        frames[mask] = rgb


def _boxes(masks: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` bool → ``(T, 4)`` int ``[top, left, bottom, right)``, ``-1`` for empty frames."""
    t = masks.shape[0]
    rows, cols = masks.any(2), masks.any(1)                                  # (T, H), (T, W)
    present = rows.any(1)
    h, w = masks.shape[1:]
    top = rows.argmax(1)
    bottom = h - rows[:, ::-1].argmax(1)
    left = cols.argmax(1)
    right = w - cols[:, ::-1].argmax(1)
    boxes = np.stack([top, left, bottom, right], axis=1).astype(np.int64)
    boxes[~present] = -1
    return boxes.reshape(t, 4)


def evidence_options(object_size: str | None = None, window: str | None = None) -> dict:
    """``SyntheticVideos`` options from command-line text ``"MIN,MAX"`` (the scripts' ``--object-size``
    and ``--window``): ``{"object_size": (0.3, 0.45), "window": (4, 8)}`` for those given;
    :class:`InputError` naming the flag for text that is not two numbers."""
    options: dict = {}
    for flag, key, text, kind in (("--object-size", "object_size", object_size, float),
                                  ("--window", "window", window, int)):
        if text is not None:
            try:
                low, high = (kind(v) for v in text.split(","))
            except ValueError:
                raise InputError(f"{flag} {text!r}: expected MIN,MAX") from None
            options[key] = (low, high)
    return options


def chance_rates(ds: SyntheticVideos, limit: int | None = None) -> dict[str, float]:
    """What a uniformly random guess scores on ``ds`` (the first ``limit`` clips, default all).

    Returns:
        ``{"temporal": …, "spatial": …, "clips": n}``: ``temporal`` is the expected rate at which a
        random frame falls inside the evidence window (mean ``window length / T``); ``spatial``
        the expected rate at which a random pixel of a frame in the window falls on the evidence
        object (mean mask area / frame area over the window's frames).
    """
    n = len(ds) if limit is None else min(int(limit), len(ds))
    if n == 0:
        raise InputError("chance_rates needs a non-empty dataset")
    temporal, spatial = [], []
    for i in range(n):
        s = ds[i]
        a, b = s.window
        temporal.append((b - a) / s.frames.shape[0])
        spatial.append(float(s.masks[a:b].mean()))
    return {"temporal": float(np.mean(temporal)), "spatial": float(np.mean(spatial)), "clips": n}


__all__ = ["SyntheticVideos", "SyntheticSample", "chance_rates", "class_grid", "shape_masks",
           "SHAPES", "COLOURS", "MAX_SIZE"]

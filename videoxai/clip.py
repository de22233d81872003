"""`Clip`: the frames of a video, as the user's code and every method sees them."""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import InputError


@dataclass
class Clip:
    """A sequence of RGB frames at their original size.

    Attributes:
        frames: ``(T, H, W, 3)`` ``uint8`` in [0, 255] or ``float32`` in [0, 1].
        fps: frames per second of the *sampled* frames' source, if known.
        indices: ``(T,)`` index of each frame in the source video (``arange(T)`` for arrays).
        source: where the frames came from (a path), for reports.
        times: ``(T,)`` float64, when each frame is shown, in seconds from the source stream's
            first frame (its presentation time, as :func:`~videoxai.data.video.frame_times`
            gives it), or ``None`` where not known (arrays). At a variable frame rate (phones,
            screen recordings, GIFs) ``indices / fps`` is not when a frame is shown; this is.
    """

    frames: np.ndarray
    fps: float | None = None
    indices: np.ndarray | None = None
    source: str | None = None
    meta: dict = field(default_factory=dict)
    # not compared: an array in ``==`` is ambiguous, and two reads of one file agree on it anyway
    times: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.frames = _validate_frames(self.frames)
        t = self.frames.shape[0]
        if self.indices is None:
            self.indices = np.arange(t, dtype=np.int64)
        self.indices = np.asarray(self.indices, dtype=np.int64)
        if self.indices.shape != (t,):
            raise InputError(f"Clip.indices must have shape ({t},), got {self.indices.shape}")
        if self.times is not None:
            try:
                self.times = np.asarray(self.times, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(f"Clip.times must be seconds, one per frame, got {type(self.times).__name__}") from None
            if self.times.shape != (t,):
                raise InputError(f"Clip.times must have shape ({t},), got {self.times.shape}")
            if not np.isfinite(self.times).all():
                raise InputError("Clip.times must be finite seconds")
        if self.fps is not None:
            if isinstance(self.fps, bool) or not isinstance(self.fps, numbers.Real):
                raise InputError(f"Clip.fps must be a number of frames per second, got {self.fps!r}")
            # containers report 0 or NaN for an unknown rate: that is "unknown", not a time base
            # that divides by zero or prints "nan fps"
            self.fps = float(self.fps) if math.isfinite(self.fps) and self.fps > 0 else None

    @classmethod
    def from_array(cls, frames, fps: float | None = None, **kwargs) -> "Clip":
        """Build a clip from ``(T, H, W, 3)`` frames (uint8, or float in [0, 1]; numpy or torch).

        Channels-first ``(T, 3, H, W)`` frames and a one-clip pixel batch ``(1, T, 3, H, W)`` (what
        :meth:`to_tensor` returns and every model takes) are accepted too.
        """
        frames = _as_numpy(frames)
        try:
            frames = np.asarray(frames)
        except ValueError:  # a list of frames of different sizes: numpy's words name no frame
            sizes = sorted({tuple(np.shape(f)) for f in frames})
            raise InputError(f"frames must all have one shape, got {len(sizes)} different ones: "
                             f"{', '.join(map(str, sizes[:4]))}") from None
        if frames.ndim == 5:
            if frames.shape[0] != 1:
                raise InputError(f"a clip is one video; got a batch of {frames.shape[0]} clips "
                                 f"{tuple(frames.shape)}: explain them one by one, or pass the batch to "
                                 "a method's attribute()")
            frames = frames[0]
            if frames.shape[1] == 3:  # the pixel batch is channels-first, even for a frame 3 px wide
                return cls(frames.transpose(0, 2, 3, 1), fps=fps, **kwargs)
        if frames.ndim == 4 and frames.shape[-1] != 3 and frames.shape[1] == 3:
            frames = frames.transpose(0, 2, 3, 1)   # (T, 3, H, W) -> (T, H, W, 3)
        return cls(frames, fps=fps, **kwargs)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        """One line, never the pixels: ``Clip(8 frames of 180×320 uint8, 25 fps, #0–#131 of a.mp4)``."""
        idx = self.indices
        frames = "1 frame" if self.num_frames == 1 else f"{self.num_frames} frames"
        parts = [f"{frames} of {self.height}×{self.width} {self.frames.dtype}"]
        if self.fps:
            parts.append(f"{self.fps:g} fps")
        span = f"#{idx.min()}–#{idx.max()}" if len(idx) > 1 else f"#{idx[0]}"
        parts.append(f"{span} of {self.source}" if self.source else span)
        return f"Clip({', '.join(parts)})"

    def to_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The clip as a pixel-space batch: float32 ``(1, T, 3, H, W)`` in [0, 1]."""
        frames = np.ascontiguousarray(self.frames)
        with warnings.catch_warnings():
            # read-only uint8 frames (np.load(..., mmap_mode="r"), np.broadcast_to): torch warned
            # that writing to the tensor is undefined, but float() below copies them (float frames
            # are the clip's own copy, always writable)
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x = torch.from_numpy(frames).to(device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()  # in place: 4K is 800 MB a copy
        return x.permute(0, 3, 1, 2).unsqueeze(0)

    def uint8(self) -> np.ndarray:
        """The frames as ``(T, H, W, 3)`` uint8 (for rendering and encoding)."""
        if self.frames.dtype == np.uint8:
            return self.frames
        return np.clip(np.rint(self.frames * 255.0), 0, 255).astype(np.uint8)

    def subclip(self, index: np.ndarray | list[int] | slice) -> "Clip":
        """A clip of the selected frames (fps and source kept, indices and times carried over)."""
        index = np.arange(self.num_frames)[index]
        return Clip(self.frames[index], fps=self.fps, indices=self.indices[index], source=self.source,
                    meta=dict(self.meta), times=None if self.times is None else self.times[index])


def _as_numpy(frames):
    """A tensor as numpy (detached, on the CPU; bfloat16, which numpy lacks, as float32: it was
    torch's "Got unsupported ScalarType BFloat16"); anything else as it is."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        return (frames.float() if frames.dtype == torch.bfloat16 else frames).numpy()
    return frames


def _shape_hint(shape: tuple[int, ...]) -> str:
    """What to do with frames of a near-miss ``shape`` (one picture, grey or RGBA frames: a PNG
    sequence, a screen grab), as the end of an error message; ``""`` for any other shape."""
    if len(shape) == 3:
        if shape[-1] == 3:
            return "; one picture? make it a one-frame clip: frames[None]"
        return "; grey frames? repeat them to RGB: np.repeat(frames[..., None], 3, axis=-1)"
    if len(shape) == 4 and shape[-1] == 1:
        return "; one channel? repeat it to RGB: np.repeat(frames, 3, axis=-1)"
    if len(shape) == 4 and shape[-1] == 4:
        return "; RGBA? drop the alpha channel: frames[..., :3]"
    return ""


def _validate_frames(frames) -> np.ndarray:
    # Clip(tensor) as Clip.from_array(tensor): it said "must be a numpy array or tensor, got Tensor"
    frames = _as_numpy(frames)
    if not isinstance(frames, np.ndarray):
        raise InputError(f"frames must be a numpy array or tensor, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must have shape (T, H, W, 3) (or (T, 3, H, W)), got {tuple(frames.shape)}"
                         f"{_shape_hint(frames.shape)}")
    t, h, w, _ = frames.shape
    if t < 1 or h < 1 or w < 1:
        raise InputError(f"frames must be non-empty, got shape {tuple(frames.shape)}")
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise InputError(f"frames must be uint8 or float in [0, 1], got dtype {frames.dtype}")
    frames = frames.astype(np.float32, copy=False)
    if not np.isfinite(frames).all():
        raise InputError("frames contain NaN or infinite values")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(f"float frames must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                         "divide uint8 frames by 255 or pass them as uint8")
    return np.clip(frames, 0.0, 1.0)

"""Heat-map overlays on the original frames, and overlay videos with a caption.

:func:`overlay_frames` is the video analogue of pytorch-grad-cam's ``show_cam_on_image``, on a
whole clip at once. By default the heat colour is blended in *through the map*: a pixel with map
value ``m`` becomes ``(1 - alpha·m)·frame + alpha·m·colour(m)``, so frames keep their look where
there is no evidence (``m = 0``, e.g. outside the model's crop box) and the colour is strongest
where the evidence is. ``image_weight`` switches to pytorch-grad-cam's uniform blend instead.

:func:`render` writes the overlay as a video (``.mp4``, ``.gif``, ``.webm``, ... by suffix) with a
caption band under each frame: the predicted label and score, the frame's position, and a
strip of the temporal scores of all frames with the current one highlighted.
"""

from __future__ import annotations

import numbers
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..clip import Clip
from ..core.resize import resize_frames, resize_maps
from ..errors import InputError
from ..explanation import Explanation
from .fonts import CaptionFont

__all__ = ["overlay_frames", "render", "render_frames", "colormap_lut", "caption_bands",
           "playback_fps", "match_clip", "check_scores", "resize_frames", "resize_maps", "outline_crop_box"]

# Frames blended per step: bounds the float32 temporaries to ~200 MB whatever the video length.
_CHUNK_PIXELS = 1 << 24


@lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """The 256-entry lookup table of a matplotlib colormap: float32 ``(256, 3)`` in [0, 255]."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise InputError(f"unknown colormap {name!r}; use a matplotlib name such as 'jet', "
                         "'inferno', 'turbo' or 'viridis'") from None
    lut = cmap.resampled(256)(np.arange(256))[:, :3] * 255.0
    lut = lut.astype(np.float32)
    lut.flags.writeable = False  # shared through the cache
    return lut


def _lut(cmap: str | np.ndarray) -> np.ndarray:
    if isinstance(cmap, str):
        return colormap_lut(cmap)
    lut = np.asarray(cmap)
    if lut.shape != (256, 3):
        raise InputError(f"cmap must be a matplotlib colormap name or a (256, 3) RGB lookup table, "
                         f"got an array of shape {lut.shape}")
    # float tables are matplotlib-style [0, 1], integer ones are 0-255 (e.g. OpenCV's); values
    # outside them were clipped to white or black and NaN drawn as black, without a word
    top = 1.0 if np.issubdtype(lut.dtype, np.floating) else 255
    if not np.issubdtype(lut.dtype, np.number) or np.iscomplexobj(lut):
        raise InputError(f"cmap lookup table must hold numbers, got dtype {lut.dtype}")
    if not (np.isfinite(lut).all() and lut.min() >= 0 and lut.max() <= top):
        raise InputError(f"cmap lookup table of {lut.dtype} must lie in [0, {top:g}] (float tables in [0, 1], "
                         f"integer ones in [0, 255]), got values in [{lut.min():.3g}, {lut.max():.3g}]")
    return lut.astype(np.float32) * (255.0 / top)


def _as_frames(frames) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 from a Clip, uint8 frames or float frames in [0, 1]."""
    if isinstance(frames, Clip):
        return frames.uint8()
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    return Clip(np.asarray(frames)).uint8()


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be in [0, 1], got {value}")
    return value


def overlay_frames(frames, spatial, *, alpha: float = 0.5, cmap: str | np.ndarray = "jet",
                   image_weight: float | None = None) -> np.ndarray:
    """Blend a heat map into every frame of a clip.

    Args:
        frames: ``(T, H, W, 3)`` uint8 (or float in [0, 1], or a :class:`~videoxai.Clip`).
        spatial: ``(T, H, W)`` maps in [0, 1] (``Explanation.spatial``).
        alpha: opacity of the heat colour where the map is 1; it falls linearly to 0 with the
            map, so zero-evidence pixels are returned unchanged. ``alpha=0`` returns the frames.
        cmap: a matplotlib colormap name (its 256-entry table is built once and cached) or a
            ``(256, 3)`` RGB lookup table (uint8 0-255, or float in [0, 1]).
        image_weight: if given, pytorch-grad-cam's look instead: every pixel becomes
            ``image_weight·frame + (1 - image_weight)·colour(map)`` and the result is divided by
            its maximum, as ``show_cam_on_image`` does, but over the whole clip rather than per
            frame so that brightness does not flicker; ``alpha`` is then not used.

    Returns:
        uint8 ``(T, H, W, 3)``.
    """
    frames = _as_frames(frames)
    spatial = np.asarray(spatial.detach().cpu() if isinstance(spatial, torch.Tensor) else spatial)
    if spatial.shape != frames.shape[:3]:
        raise InputError(f"map shape {tuple(spatial.shape)} does not match the frames "
                         f"(T, H, W) = {frames.shape[:3]}")
    if not np.isfinite(spatial).all():
        raise InputError("the map contains NaN or infinite values")
    if spatial.size and (spatial.min() < -1e-6 or spatial.max() > 1 + 1e-6):
        raise InputError(f"the map must lie in [0, 1], got values in "
                         f"[{spatial.min():.3g}, {spatial.max():.3g}]")
    alpha = _check_unit("alpha", alpha)
    if image_weight is not None:
        image_weight = _check_unit("image_weight", image_weight)
    lut = _lut(cmap)
    t, h, w, _ = frames.shape
    step = max(1, _CHUNK_PIXELS // (h * w))

    def blend(s: slice) -> np.ndarray:
        f = frames[s].astype(np.float32)
        m = np.clip(spatial[s], 0.0, 1.0).astype(np.float32)
        heat = lut[np.rint(m * 255.0).astype(np.intp)]  # (t, H, W, 3)
        if image_weight is None:
            a = (alpha * m)[..., None]
            return f + a * (heat - f)
        return image_weight * f + (1.0 - image_weight) * heat

    chunks = [slice(i, min(i + step, t)) for i in range(0, t, step)]
    scale = 1.0
    if image_weight is not None:
        peak = max(float(blend(s).max()) for s in chunks)
        scale = 255.0 / peak if peak > 0 else 1.0
    out = np.empty_like(frames)
    for s in chunks:
        out[s] = np.clip(np.rint(blend(s) * scale), 0, 255).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------
# caption


_BAND_BG = (24, 26, 31)
_TEXT = (236, 238, 242)
_MUTED = (150, 156, 168)
_BAR = (92, 99, 112)
_BAR_NOW = (255, 170, 40)
_BOX = (255, 255, 255)  # the crop box's dashes: white reads on any frame next to any heat colour


def _fit(draw, text: str, font: CaptionFont, width: float) -> str:
    """``text`` on one line (line breaks and tabs as spaces: a class name with a newline was drawn
    as two lines, the second over the strip), cut with an ellipsis to fit ``width`` pixels.

    The longest prefix that fits is found by bisection: cutting one character at a time measured
    the text once per character cut, so a 3 000-character class name took 0.5 s a frame."""
    text = _CONTROL.sub(" ", text)
    if font.length(draw, text) <= width:
        return text
    lo, hi = 0, len(text)   # text[:lo] + "…" fits (or lo is 0), text[:hi] + "…" does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if font.length(draw, text[:mid] + "…") <= width:
            lo = mid
        else:
            hi = mid
    return text[:lo] + "…" if lo else ""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def caption_bands(width: int, heading: str, indices: np.ndarray,
                  temporal: np.ndarray | None = None, *, text_size: int | None = None,
                  positions: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``(T, band, width, 3)``: one caption band per frame, to stack under the frames.

    Each band shows ``heading`` (e.g. label and score), the frame's position (``k/T`` and its
    source index ``#i``) and a strip with one bar per frame, the current one highlighted: the
    bars' heights are ``temporal`` (the frame's temporal score) or all equal when it is
    ``None`` (a plain position indicator, for the original clip). ``text_size`` (pixels)
    defaults to about 1/34 of the width. ``positions`` (frame positions ``0 … T-1``) draws the
    bands of those frames only, ``(len(positions), band, width, 3)``.
    """
    from PIL import Image, ImageDraw

    t = len(indices)
    size = int(np.clip(round(width / 34), 9, 22)) if text_size is None else max(6, int(text_size))
    font, small = CaptionFont(size), CaptionFont(max(8, round(size * 0.8))).font
    pad = max(2, size // 3)
    strip_h = max(6, round(size * 1.1))
    band = pad + size + pad + strip_h + pad
    band += band % 2  # even, so H.264 needs no padding row for the band itself
    scores = np.ones(t) if temporal is None else np.asarray(temporal, dtype=np.float64)
    peak = scores.max() if scores.max() > 0 else 1.0
    slot = (width - 2 * pad) / t
    gap = 1 if slot >= 3 else 0
    base = band - pad

    def bar(d, j: int, fill) -> None:
        x0 = pad + j * slot
        bh = max(1.0, strip_h * scores[j] / peak)
        d.rectangle([x0, base - bh, max(x0, x0 + slot - gap - 1), base], fill=fill)

    # The strip of all bars is drawn once and each band redraws only its own bar, last: drawing
    # every bar for every band cost T² rectangles (minutes for the thousands of frames of a
    # timeline), and where bars are narrower than a pixel the bars drawn after the current one
    # covered it, so most frames of a long clip showed no highlighted bar at all.
    strip = Image.new("RGB", (width, band), _BAND_BG)
    d = ImageDraw.Draw(strip)
    for j in range(t):
        bar(d, j, _BAR)
    positions = range(t) if positions is None else [int(k) for k in positions]
    out = np.empty((len(positions), band, width, 3), dtype=np.uint8)
    for row, k in enumerate(positions):
        img = strip.copy()
        d = ImageDraw.Draw(img)
        right = f"frame {k + 1}/{t} · #{int(indices[k])}"
        right_w = d.textlength(right, font=small)
        if right_w > width * 0.45:
            right = f"{k + 1}/{t}"
            right_w = d.textlength(right, font=small)
        d.text((width - pad - right_w, pad + (size - small.size)), right, fill=_MUTED, font=small)
        font.draw(d, (pad, pad), _fit(d, heading, font, width - 3 * pad - right_w), fill=_TEXT)
        bar(d, k, _BAR_NOW)
        out[row] = np.asarray(img)
    return out


def outline_crop_box(frames: np.ndarray, exp: Explanation, frame_size: tuple[int, int]) -> np.ndarray:
    """Draw the model's crop box (``exp.meta["crop_box"]``) on ``frames`` as a dashed outline.

    The map is zero outside the crop because the model never sees those pixels; without the
    outline an overlay seems to stop for no reason at the crop's edge. ``frame_size`` is the
    ``(H, W)`` the box was measured in (the clip's); ``frames`` ``(T, h, w, 3)`` may be resized.
    Nothing is drawn when the box is unknown or covers the whole frame.

    Returns:
        a copy of ``frames`` with the outline, or ``frames`` itself when nothing is drawn.
    """
    box = exp.meta.get("crop_box") if exp.meta else None
    fh, fw = frame_size
    if box is None or tuple(int(v) for v in box) == (0, 0, fh, fw):
        return frames
    t, h, w, _ = frames.shape
    top, left, bh, bw = (float(v) for v in box)
    y0, y1 = round(top * h / fh), round((top + bh) * h / fh) - 1
    x0, x1 = round(left * w / fw), round((left + bw) * w / fw) - 1
    y0, x0, y1, x1 = max(0, y0), max(0, x0), min(h - 1, y1), min(w - 1, x1)
    width = max(1, round(min(h, w) / 240))                   # a hair line at any frame size
    dash = max(4, round(min(h, w) / 40))
    out = frames.copy()
    ys, xs = np.arange(y0, y1 + 1), np.arange(x0, x1 + 1)
    on_y, on_x = ys[(ys - y0) // dash % 2 == 0], xs[(xs - x0) // dash % 2 == 0]
    for d in range(width):                                  # inside the box, so it stays in frame
        out[:, np.clip(y0 + d, 0, h - 1), on_x] = _BOX
        out[:, np.clip(y1 - d, 0, h - 1), on_x] = _BOX
        out[:, on_y, np.clip(x0 + d, 0, w - 1)] = _BOX
        out[:, on_y, np.clip(x1 - d, 0, w - 1)] = _BOX
    return out


# ----------------------------------------------------------------------------------------------
# rendering


def match_clip(exp: Explanation, clip) -> Clip:
    """``clip`` as a :class:`~videoxai.Clip`, after checking that ``exp`` explains these frames
    and that its maps and scores can be drawn (:func:`check_scores`)."""
    if not isinstance(exp, Explanation):
        raise InputError(f"expected an Explanation, got {type(exp).__name__}")
    clip = clip if isinstance(clip, Clip) else Clip.from_array(clip)
    if exp.spatial.shape != (clip.num_frames, clip.height, clip.width):
        raise InputError(f"the explanation's maps have shape (T, H, W) = {exp.spatial.shape} but the "
                         f"clip has {clip.num_frames} frames of {clip.height}x{clip.width}; render "
                         "the clip that was explained")
    check_scores(exp, maps=True)
    return clip


def check_scores(exp: Explanation, *, maps: bool = False) -> None:
    """Refuse an explanation whose temporal scores (and, with ``maps``, spatial maps) break the
    :class:`~videoxai.Explanation` contract, in one line, before anything is drawn.

    ``vx.explain`` never makes one, but a hand-made or edited explanation (a signed map, NaN from
    a broken model saved and loaded again) did: the report resized its maps with a clamp to
    [0, 1], so a map of -1 showed no evidence and one of 1e30 showed every pixel as evidence,
    where :func:`render` refused the same map; NaN scores failed deep in matplotlib ("Axis
    limits cannot be NaN or Inf") after the videos had been encoded, and negative ones were drawn
    below the curve's axis, out of sight.
    """
    temporal = np.asarray(exp.temporal, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(temporal) | (temporal < -1e-6))
    if bad.size:
        raise InputError(f"the explanation's temporal scores must be finite and non-negative; frame "
                         f"{int(bad[0])}'s is {temporal[bad[0]]:.3g}")
    if not maps:
        return
    spatial = exp.spatial
    if not np.isfinite(spatial).all():
        raise InputError("the explanation's maps contain NaN or infinite values")
    if spatial.size and (spatial.min() < -1e-6 or spatial.max() > 1 + 1e-6):
        raise InputError(f"the explanation's maps must lie in [0, 1], got values in "
                         f"[{spatial.min():.3g}, {spatial.max():.3g}]")


def playback_fps(clip: Clip) -> float:
    """Frame rate that plays a sampled clip over its source duration (at least 1 frame/s).

    A clip of 8 frames sampled from 5 s of a 25 fps video plays at ~1.5 fps, so its overlay lasts
    as long as the scene did; 8 fps when the source rate is unknown.
    """
    if not clip.fps:
        return 8.0
    steps = np.diff(clip.indices)
    step = float(np.median(steps[steps > 0])) if (steps > 0).any() else 1.0
    return max(1.0, float(clip.fps) / step)


def render_frames(exp: Explanation, clip, *, alpha: float = 0.5, cmap: str | np.ndarray = "jet",
                  label: bool = True, size: tuple[int, int] | None = None,
                  positions: np.ndarray | None = None) -> np.ndarray:
    """The frames of :func:`render`: uint8 ``(T, H [+ caption], W, 3)``.

    Args:
        size: optional ``(h, w)`` to draw at (frames and maps are resized first, so the caption
            is drawn at the output resolution and stays sharp).
        positions: draw only these frames (positions ``0 … T-1`` in the clip), e.g. the frames a
            sliding window adds to the video: ``(len(positions), H [+ caption], W, 3)``, each
            equal to that frame of the whole rendering.
    """
    clip = match_clip(exp, clip)
    t = clip.num_frames
    positions = np.arange(t) if positions is None else np.asarray(positions, dtype=np.int64).reshape(-1)
    if positions.size and not (0 <= positions.min() and positions.max() < t):
        raise InputError(f"positions must lie in 0 … {t - 1} (the clip's frames), got {positions.tolist()}")
    frames, maps = clip.uint8(), exp.spatial
    h, w = (clip.height, clip.width) if size is None else (int(size[0]), int(size[1]))
    bands = (caption_bands(w, f"{exp.label}  {exp.score:.0%}", clip.indices, exp.temporal, positions=positions)
             if label else None)
    out = np.empty((len(positions), h + (0 if bands is None else bands.shape[1]), w, 3), dtype=np.uint8)
    # A few frames at a time into the one output array: the resized frames, the overlay, its copy
    # with the crop box and the output joined by np.concatenate each held the whole clip again
    # (the traced peak was twice the output; resizing added a float copy of the whole clip).
    step = max(1, _CHUNK_PIXELS // max(h * w, clip.height * clip.width))
    for a in range(0, len(positions), step):
        s = slice(a, min(a + step, len(positions)))
        f, m = frames[positions[s]], maps[positions[s]]
        if size is not None:
            f, m = resize_frames(f, (h, w)), resize_maps(m, (h, w))
        out[s, :h] = outline_crop_box(overlay_frames(f, m, alpha=alpha, cmap=cmap), exp, (clip.height, clip.width))
    if bands is not None:
        out[:, h:] = bands
    return out


def render(exp: Explanation, clip, path: str | Path, *, alpha: float = 0.5,
           cmap: str | np.ndarray = "jet", label: bool = True, fps: float | None = None) -> Path:
    """Write the explanation as an overlay video; the format follows the suffix.

    Args:
        exp: the explanation (``exp.spatial`` is ``(T, H, W)`` at the clip's size).
        clip: the explained clip (a :class:`~videoxai.Clip` or frames, uint8 or float).
        path: ``.mp4`` (H.264), ``.gif``, ``.webm`` (VP9), ``.webp``, ``.mkv``, ``.mov``, ``.avi``.
        alpha, cmap: see :func:`overlay_frames`.
        label: draw a caption band under each frame (label, score, temporal-score strip).
            The model's crop box is outlined (dashed) when it is not the whole frame.
        fps: output frame rate; default :func:`playback_fps` of the clip.

    Returns:
        The written path.
    """
    from ..data.video import write_video
    from ..data.video_writer import WRITERS

    clip = match_clip(exp, clip)
    # the writer's own checks, before drawing: a long clip was drawn in full and then refused
    # for an unknown suffix or fps=0
    suffix = Path(path).suffix.lower()
    if suffix not in WRITERS:
        raise InputError(f"cannot write {path}: unknown video suffix {suffix!r}; use one of "
                         f"{', '.join(sorted(WRITERS))}")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, numbers.Real)
                            or not 0 < float(fps) < float("inf")):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    if Path(path).is_dir():
        raise InputError(f"cannot write {path}: it is a folder; give a file such as {Path(path) / 'overlay.mp4'}")
    frames = render_frames(exp, clip, alpha=alpha, cmap=cmap, label=label)
    return write_video(frames, path, fps=playback_fps(clip) if fps is None else fps)

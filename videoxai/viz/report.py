"""One self-contained HTML page that shows a clip's explanations side by side.

Everything the page shows is embedded as a ``data:`` URI (videos, figures, key frames), so the
file can be mailed, attached to an issue or opened offline, and the page makes no network
request. Videos are embedded twice, as VP9 WebM and as H.264 MP4 ``<source>`` elements: the
browser plays the first it can (WebM in Chromium and Firefox builds without H.264, MP4 in
Safari); both were checked to play in Debian's headless Chromium (``tests/test_viz.py`` checks
it again where a ``chromium`` binary is installed). An FFmpeg build with neither encoder gets
an animated GIF instead.
"""

from __future__ import annotations

import html
import json
import math
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..clip import Clip
from ..errors import InputError, VideoXAIError
from ..explanation import Explanation
from .curve import PALETTE, check_count, check_window, temporal_curve
from .overlay import (
    caption_bands,
    check_scores,
    outline_crop_box,
    match_clip,
    overlay_frames,
    playback_fps,
    resize_frames,
    resize_maps,
)
from .page import data_uri, figure_png, jpeg, page, plain

__all__ = ["write_report", "write_timeline_report"]

_VIDEO_FORMATS = ((".webm", "video/webm"), (".mp4", "video/mp4"))


def write_report(path: str | Path, clip, explanations: Explanation | Sequence[Explanation], *,
                 title: str | None = None, notes: Mapping | None = None,
                 window: tuple[float, float] | None = None, labels: Sequence[str] | None = None,
                 top_k: int = 3, max_side: int = 640, min_side: int = 320) -> Path:
    """Write one HTML file showing ``clip`` and each explanation of it, side by side.

    The page shows the original clip and one overlay video per explanation (playing in step),
    the temporal importance of every method on one plot (ground-truth window shaded), and for
    each method a strip of its ``top_k`` frames with the overlay, the model's top classes with
    probabilities, the measured cost (seconds, forward/backward passes, peak memory) and the
    method's options. ``notes`` become a table at the top.

    Args:
        path: the ``.html`` file to write.
        clip: the explained clip (a :class:`~videoxai.Clip` or frames).
        explanations: one :class:`~videoxai.Explanation` or several (e.g. one per method), all
            of this clip.
        title: page title (default: the clip's file name).
        notes: ``{name: value}`` shown as a table (e.g. ``{"temporal localisation rate": "0.93"}``),
            or ``{column: {name: value}}`` shown as one table with a column per key (e.g. a
            metric per method).
        window: ground-truth ``(start, end)`` in source frame indices (end excluded), shaded on
            the temporal plot.
        labels: class names for the top-classes lists (default: ``exp.meta["labels"]`` if
            present; the explained class always shows ``exp.label``).
        top_k: key frames per method.
        max_side, min_side: the embedded videos are drawn with their longer side within
            these bounds (huge frames shrunk to keep the file small, tiny ones enlarged with
            nearest-neighbour so that pixels stay crisp and captions legible; ``max_side`` wins).

    Returns:
        The written path.
    """
    exps = _listed(explanations, Explanation, "write_report", "explanation")
    _check_notes(notes)
    if isinstance(labels, (str, bytes)):   # its characters were taken for class names
        raise InputError(f"labels must be a list of class names, got the string {labels!r}")
    clip = clip if isinstance(clip, Clip) else Clip.from_array(clip)
    for e in exps:
        match_clip(e, clip)
    check_window(window)
    check_count("top_k", top_k, 1)
    # 0 or a negative side drew every video at 1x1 pixel without a word
    check_count("min_side", min_side, 1)
    check_count("max_side", max_side, 1)
    path = _writable(path)

    size = _display_size(clip.height, clip.width, max_side, min_side)
    frames = resize_frames(clip.uint8(), size)
    fps = _page_fps(clip)
    names = _unique_names(exps)
    source = Path(clip.source).name if clip.source else None
    title = title or (f"videoxai — {source}" if source else "videoxai report")

    parts = [_header(title, clip, exps, size)]
    if notes:
        parts.append(_notes(notes))
    videos = [_video_card("original", _original_caption(clip), frames, clip, fps, None)]
    overlays = []
    for i, (e, name) in enumerate(zip(exps, names)):
        over = outline_crop_box(overlay_frames(frames, resize_maps(e.spatial, size)), e, (clip.height, clip.width))
        overlays.append(over)
        videos.append(_video_card(name, f"{e.label} · {e.score:.1%}", over, clip, fps, e,
                                  color=PALETTE[i % len(PALETTE)]))
    parts.append('<h2>Where — the clip and its explanations</h2>'
                 '<div class="grid">' + "".join(videos) + "</div>")
    parts.append(_curve_section(exps, names, window))
    cards = [_method_card(e, name, over, clip, labels, top_k, PALETTE[i % len(PALETTE)])
             for i, (e, name, over) in enumerate(zip(exps, names, overlays))]
    parts.append('<h2>Per method</h2><div class="grid methods">' + "".join(cards) + "</div>")

    return _write(path, page(title, "\n".join(parts)))


def _listed(items, cls: type, who: str, what: str) -> list:
    """``items`` (one ``cls`` or several) as a non-empty list of ``cls``, or a one-line error
    (None or a dict of them failed with Python's TypeError or an AttributeError deep inside)."""
    if isinstance(items, cls):
        return [items]
    try:
        listed = [] if isinstance(items, (str, bytes, Mapping)) else list(items)
    except TypeError:
        listed = []
    if not listed:
        raise InputError(f"{who} needs at least one {what}: one {cls.__name__} or a non-empty list of them, "
                         f"got {type(items).__name__}")
    other = next((x for x in listed if not isinstance(x, cls)), None)
    if other is not None:
        raise InputError(f"{who}: every {what} must be a {cls.__name__}, got {type(other).__name__}")
    return listed


def _check_notes(notes) -> None:
    if notes is not None and not isinstance(notes, Mapping):
        raise InputError(f"notes must be a mapping {{name: value}} (or {{column: {{name: value}}}}), "
                         f"got {type(notes).__name__}")


def _writable(path: str | Path) -> Path:
    """``path``, once it is known that a report can be written there: before the videos are
    encoded, not after (a folder named like the report, or one that cannot be written, failed
    with Python's IsADirectoryError or PermissionError when everything had been drawn)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write the report to {path}: it is a folder; give a file such as "
                         f"{path / 'report.html'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".videoxai-"):
            pass
    except OSError as e:
        file = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
        why = f"{file} is a file, not a folder" if file is not None else (e.strerror or str(e))
        raise VideoXAIError(f"cannot write the report to {path}: {why}") from None
    return path


def _write(path: Path, text: str) -> Path:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:  # the disk filled up while the page was written
        raise VideoXAIError(f"cannot write the report to {path}: {e.strerror or e}") from None
    return path


# ----------------------------------------------------------------------------------------------
# sections


def _header(title: str, clip: Clip, exps: list[Explanation], size: tuple[int, int]) -> str:
    models = sorted({str(e.meta.get("model")) for e in exps if e.meta.get("model")})
    idx = clip.indices
    chips = []
    if clip.source:
        chips.append(("source", Path(clip.source).name))
    if models:
        chips.append(("model", ", ".join(models)))
    chips += [("frames", f"{clip.num_frames} × {clip.width}×{clip.height}"),
              ("source frames", f"#{idx.min()}–#{idx.max()}" if len(idx) > 1 else f"#{idx[0]}")]
    if clip.fps:
        chips.append(("fps", f"{clip.fps:g}"))
    targets = sorted({e.label for e in exps})
    chips.append(("explained class", ", ".join(targets)))
    weights = sorted({str(e.meta["weights"]) for e in exps if e.meta.get("weights")})
    if weights:
        chips.append(("weights", ", ".join(weights)))
    activation = {e.meta.get("activation") for e in exps} - {None}
    if activation:  # the percentages are not shares of one softmax: say what they are
        chips.append(("scores", ", ".join(_SCORES[a] for a in sorted(activation))))
    return _header_html(title, chips, [w for e in exps for w in e.meta.get("warnings", [])])


#: what an explanation's score is, when not the softmax share of its class (Explanation.meta["activation"])
_SCORES = {"sigmoid": "sigmoid of each class's logit (multi-label or binary)",
           "none": "the model's own output (probabilities)"}


def _header_html(title: str, chips: list[tuple[str, str]], warnings: list) -> str:
    """The page header both reports share: title, chips, each distinct warning once, play controls."""
    chip_html = "".join(f'<span class="chip">{_esc(k)} <b>{_esc(v)}</b></span>' for k, v in chips)
    warn_html = "".join(f'<div class="warning" role="alert">⚠ {_esc(w)}</div>'
                        for w in dict.fromkeys(str(w) for w in warnings))
    return (f'<header><h1>{_esc(title)}</h1><div class="chips">{chip_html}</div>{warn_html}'
            '<div class="controls"><button id="vx-play" type="button">pause</button>'
            '<button id="vx-restart" type="button">restart</button></div></header>')


def _notes(notes: Mapping) -> str:
    values = list(notes.values())
    if values and all(isinstance(v, Mapping) for v in values):
        cols = [str(c) for c in notes]
        rows: list[str] = []
        for v in values:
            rows += [str(r) for r in v if str(r) not in rows]
        head = "<tr><th></th>" + "".join(f'<th class="num">{_esc(c)}</th>' for c in cols) + "</tr>"
        body = "".join(
            f"<tr><th>{_esc(r)}</th>"
            + "".join(f'<td class="num">{_esc(_fmt(_lookup(notes[c], r)))}</td>' for c in notes)
            + "</tr>" for r in rows)
        table = f"<table>{head}{body}</table>"
    else:
        table = "<table>" + "".join(f'<tr><th>{_esc(k)}</th><td class="num">{_esc(_fmt(v))}</td></tr>'
                                    for k, v in notes.items()) + "</table>"
    return f'<h2>Notes</h2><div class="card notes">{table}</div>'


def _lookup(d: Mapping, key: str):
    for k, v in d.items():
        if str(k) == key:
            return v
    return "—"


def _original_caption(clip: Clip) -> str:
    return Path(clip.source).name if clip.source else f"{clip.num_frames} frames"


def _video_card(name: str, sub: str, frames: np.ndarray, clip: Clip, fps: float,
                exp: Explanation | None, color: str | None = None) -> str:
    heading = f"{exp.label}  {exp.score:.0%}" if exp is not None else "original"
    # cards show the video at ~300 px wide: a larger text keeps the caption readable there
    bands = caption_bands(frames.shape[2], heading, clip.indices,
                          None if exp is None else exp.temporal,
                          text_size=max(12, round(frames.shape[2] / 20)))
    media = _video_html(np.concatenate([frames, bands], axis=1), fps)
    style = f' style="--c:{color}"' if color else ' style="--c:#c9ced8"'
    swatch = '<span class="swatch"></span>' if color else ""
    cls = "card method"
    return (f'<div class="{cls}"{style}><div class="head"><h3>{swatch}{_esc(name)}</h3>'
            f'<span class="sub">{_esc(sub)}</span></div>'
            f'<div class="media">{media}</div></div>')


def _curve_section(exps: list[Explanation], names: list[str], window) -> str:
    fig = temporal_curve(exps if len(exps) > 1 else exps[0], window=window, names=names)
    if len(exps) > 1:
        fig.set_size_inches(9.0, 3.2)
    png = data_uri(figure_png(fig), "image/png")
    legend = ""
    if window is not None:
        legend = (f'<p class="sub">Shaded: ground-truth window, source frames #{_fmt(window[0])} '
                  f'to #{_fmt(window[1])} (end excluded).</p>')
    return ('<h2>When — temporal importance</h2><div class="card curve">'
            f'<img alt="temporal importance per frame" src="{png}">{legend}</div>')


def _method_card(e: Explanation, name: str, over: np.ndarray, clip: Clip,
                 labels: Sequence[str] | None, top_k: int, color: str) -> str:
    return (f'<div class="card method" style="--c:{color}"><div class="head">'
            f'<h3><span class="swatch"></span>{_esc(name)}</h3>'
            f'<span class="sub">{_esc(str(e.meta.get("model", "")))}</span></div>'
            + _keyframes(e, over, clip, top_k) + _top_classes(e, labels) + _cost(e)
            + _options(e) + "</div>")


def top_source_frames(e: Explanation, k: int) -> list[tuple[int, float]]:
    """The ``k`` most important frames of the video, as ``(position in the clip, share)``.

    A video shorter than the model's clip is sampled with repeats (one frame fills all 8 places):
    a frame's share is the sum over its places, and it is listed once, at its most important
    place (the "top 3" of a one-frame video were frame #0 three times, 12.5 % each).
    """
    shares: dict[int, float] = {}
    best: dict[int, int] = {}
    for pos in e.top_frames(e.num_frames):
        src = int(e.frame_indices[pos])
        shares[src] = shares.get(src, 0.0) + float(e.temporal[pos])
        best.setdefault(src, int(pos))
    ranked = sorted(shares, key=lambda s: -shares[s])   # stable: ties keep the per-place order
    return [(best[s], shares[s]) for s in ranked[:max(1, k)]]


def _keyframes(e: Explanation, over: np.ndarray, clip: Clip, top_k: int) -> str:
    figs = []
    for rank, (k, share) in enumerate(top_source_frames(e, top_k), 1):
        # one frame number, the source video's index "#i" as in the header and the videos'
        # captions (not also the 1-based place in the clip), after the rank
        name = f"frame #{int(clip.indices[k])}"
        src = data_uri(jpeg(_thumb(over[k], 320)), "image/jpeg")
        figs.append(f'<figure><img alt="{name}" src="{src}"><figcaption><b>top {rank}</b> · {name}<br>'
                    f"{share:.1%} of the clip's importance</figcaption></figure>")
    return ('<div class="section-label">Key frames (highest temporal importance; #: frame index in the '
            'video)</div>'
            f'<div class="keyframes">{"".join(figs)}</div>')


def _top_classes(e: Explanation, labels: Sequence[str] | None, k: int = 5) -> str:
    probs = np.asarray(e.probs, dtype=np.float64)
    if probs.size == 0:
        return ""
    names = labels if labels is not None else e.meta.get("labels")
    order = list(np.argsort(-probs, kind="stable")[:k])
    if e.target not in order and 0 <= e.target < probs.size:
        order[-1] = e.target  # the explained class is always listed
    rows = []
    for c in order:
        c = int(c)
        name = e.label if c == e.target else (
            str(names[c]) if names is not None and c < len(names) else f"class {c}")
        cls = "name target" if c == e.target else "name"
        rows.append(f'<div class="{cls}" title="{_esc(name)}">{_esc(name)}</div>'
                    f'<div class="bar"><span style="width:{100 * probs[c]:.1f}%"></span></div>'
                    f'<div class="p">{probs[c]:.1%}</div>')
    return ('<div class="section-label">Top classes (explained class in bold)</div>'
            f'<div class="probs">{"".join(rows)}</div>')


def _cost(e: Explanation) -> str:
    c = e.cost
    rows = [("time", _seconds(c.seconds)), ("forward passes", f"{c.forward_passes:,}"),
            ("backward passes", f"{c.backward_passes:,}"),
            ("peak memory", _memory(c)), ("device", c.device)]
    body = "".join(f'<tr><th>{k}</th><td class="num">{_esc(v)}</td></tr>' for k, v in rows)
    return f'<div class="section-label">Cost</div><table>{body}</table>'


def _memory(c) -> str:
    """The call's peak memory beyond the process's at its start, and the process's peak."""
    text = f"{c.peak_memory_mb:,.1f} MiB"
    if getattr(c, "process_peak_mb", 0):
        text += f" (process peak {c.process_peak_mb:,.0f} MiB)"
    return text


def _options(e: Explanation) -> str:
    spec = (e.meta or {}).get("spec")
    # the one line that makes this explanation again: vx.explain(model, clip, spec), evaluate --methods
    again = (f'<div class="section-label">Spec</div><p><code>{_esc(spec)}</code></p>' if spec else "")
    return again + _options_table(e.options)


# ----------------------------------------------------------------------------------------------
# embedding


#: seconds an embedded video lasts at least: Chromium never showed a frame of one of a few
#: hundredths of a second (2 frames at 120 fps, 8 at 240: readyState stayed HAVE_METADATA)
_LEAST_SECONDS = 0.25


def _page_fps(clip: Clip) -> float:
    """:func:`playback_fps`, slowed where the clip would play in under :data:`_LEAST_SECONDS`."""
    return min(playback_fps(clip), clip.num_frames / _LEAST_SECONDS)


def _video_html(frames: np.ndarray, fps: float) -> str:
    """A looping ``<video>`` with a WebM and an MP4 source; an animated GIF if this FFmpeg build
    has neither encoder."""
    from ..data.video import write_video
    from ..errors import VideoXAIError

    if len(frames) == 1:
        # a one-frame video never shows its frame in Chromium (readyState stays HAVE_METADATA):
        # the report of a one-frame clip had empty boxes where its overlays were
        return f'<img alt="frame" src="{data_uri(jpeg(frames[0], quality=92), "image/jpeg")}">'
    sources = []
    with tempfile.TemporaryDirectory(prefix="videoxai-report-") as tmp:
        for suffix, mime in _VIDEO_FORMATS:
            try:
                f = write_video(frames, Path(tmp) / f"v{suffix}", fps=fps, quality=20)
            except VideoXAIError:  # no such encoder in this FFmpeg build
                continue
            sources.append(f'<source type="{mime}" src="{data_uri(f.read_bytes(), mime)}">')
        if sources:
            return ('<video autoplay muted loop playsinline preload="auto">' + "".join(sources)
                    + "</video>")
        gif = write_video(frames, Path(tmp) / "v.gif", fps=fps)
        return f'<img alt="animation" src="{data_uri(gif.read_bytes(), "image/gif")}">'






def _thumb(rgb: np.ndarray, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w <= width:
        return rgb
    return resize_frames(rgb[None], (max(1, round(h * width / w)), width))[0]




# ----------------------------------------------------------------------------------------------
# formatting


def _display_size(h: int, w: int, max_side: int, min_side: int) -> tuple[int, int]:
    """Size to draw the embedded videos at: longer side within ``[min_side, max_side]``."""
    longest = max(h, w)
    if longest > max_side:
        s = max_side / longest
        return max(1, round(h * s)), max(1, round(w * s))
    if longest < min_side:
        # whole factor: each pixel becomes a k×k block; never past max_side (a min_side above a
        # small max_side enlarged a 64-pixel clip to 320 under max_side=200)
        k = max(1, min(math.ceil(min_side / longest), max_side // longest))
        return h * k, w * k
    return h, w


def _unique_names(exps: list[Explanation]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for e in exps:
        seen[e.method] = seen.get(e.method, 0) + 1
        names.append(e.method if seen[e.method] == 1 else f"{e.method} ({seen[e.method]})")
    return names


def _seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items()) or "{}"
    if isinstance(v, (list, tuple)):
        text = json.dumps(v, default=str)
        return text if len(text) <= 120 else text[:117] + "…"
    return str(v)


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


# ----------------------------------------------------------------------------------------------
# sliding windows over a whole video


def write_timeline_report(path: str | Path, videos, *, title: str | None = None,
                          notes: Mapping | None = None) -> Path:
    """Write one HTML page for sliding-window explanations of a whole video.

    The page plays the whole explained stretch of the video and one overlay per method (the
    windows' maps averaged per frame), plots a **timeline** on the video's own time axis (per
    window: the predicted class and its probability; per frame: the temporal importance relative
    to its window), and lists every window. The videos show at most 600 frames, spread evenly
    over the stretch and played over its duration (a header chip says so): every frame of a
    10-minute video made a page of hundreds of MB that took many minutes to encode.

    Args:
        path: the ``.html`` file to write.
        videos: one :class:`~videoxai.timeline.VideoExplanation` or several (one per method) of the
            same frames.
        title: page title (default: the file name).
        notes: ``{name: value}`` shown as a table.
    """
    from ..timeline import VideoExplanation

    vids = _listed(videos, VideoExplanation, "write_timeline_report", "video explanation")
    _check_notes(notes)
    for v in vids:   # as write_report: the resized maps were clamped, NaN failed in matplotlib
        check_scores(v, maps=True)
    for v in vids[1:]:
        if not np.array_equal(v.frame_indices, vids[0].frame_indices):
            raise InputError("every video explanation in one report must cover the same frames")
    path = _writable(path)
    v0 = vids[0]
    shown = _spread(len(v0.frame_indices), _MAX_SHOWN)
    clip = v0.clip
    if len(shown) < clip.num_frames:
        clip = Clip(clip.frames[shown], fps=clip.fps, indices=clip.indices[shown], source=clip.source)
    size = _display_size(clip.height, clip.width, 640, 320)
    frames = resize_frames(clip.uint8(), size)
    fps = _page_fps(clip)
    source = Path(v0.source).name if v0.source else None
    title = title or (f"videoxai — {source}" if source else "videoxai report")

    parts = [_timeline_header(title, vids, len(shown))]
    if notes:
        parts.append(_notes(notes))
    cards = [_timeline_video_card("original", _original_caption(v0.clip), frames, clip, fps, None, None)]
    for i, v in enumerate(vids):
        over = overlay_frames(frames, resize_maps(v.spatial[shown], size))
        cards.append(_timeline_video_card(v.method, f"{len(v.windows)} windows", over, clip, fps,
                                          v.temporal[shown], PALETTE[i % len(PALETTE)]))
    parts.append('<h2>Where — the whole video and its explanations</h2>'
                 '<div class="grid">' + "".join(cards) + "</div>")
    fig = _timeline_figure(vids)
    parts.append('<h2>When — timeline</h2><div class="card curve timeline">'
                 f'<img alt="timeline: prediction per window and temporal importance" '
                 f'src="{data_uri(figure_png(fig), "image/png")}"></div>')
    parts.append('<h2>Windows</h2>' + "".join(_window_table(v, PALETTE[i % len(PALETTE)])
                                             for i, v in enumerate(vids)))

    return _write(path, page(title, "\n".join(parts)))


#: frames of the timeline report's videos at most (a 10-minute video at 25 fps: every 25th frame)
_MAX_SHOWN = 600


def _spread(count: int, most: int) -> np.ndarray:
    """Positions of at most ``most`` of ``count`` frames, evenly spread, first and last included."""
    if count <= most:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, most)).astype(np.int64))


def _timeline_header(title: str, vids, shown: int) -> str:
    v = vids[0]
    idx = v.frame_indices
    chips = []
    if v.source:
        chips.append(("source", Path(v.source).name))
    chips.append(("model", v.model))
    span = f"#{idx.min()}–#{idx.max()}"
    if v.fps:
        span += f" ({v.times[0]:.2f}–{v.times[-1]:.2f} s)"
    chips += [("frames", f"{len(idx)} · {span}"), ("windows", str(len(v.windows))),
              ("window", f"{v.meta.get('num_frames')} frames, stride {v.meta.get('window_stride')}, "
                         f"step {v.meta.get('frame_step')}")]
    if v.fps:
        chips.append(("fps", f"{v.fps:g}"))
    if shown < len(idx):
        chips.append(("videos show", f"{shown} of the {len(idx)} frames, evenly spread"))
    if v.meta.get("weights"):
        chips.append(("weights", str(v.meta["weights"])))
    activation = {x.meta.get("activation") for x in vids} - {None}
    if activation:  # as the clip report says it: the window's p is not a softmax share
        chips.append(("scores", ", ".join(_SCORES[a] for a in sorted(activation))))
    return _header_html(title, chips, [w for x in vids for w in x.meta.get("warnings", [])])


def _timeline_video_card(name: str, sub: str, frames: np.ndarray, clip: Clip, fps: float,
                         temporal: np.ndarray | None, color: str | None) -> str:
    """A video card; ``temporal``: the shown frames' importance (``None``: the original video)."""
    heading = name if temporal is None else f"{name} · window prediction"
    if temporal is not None:
        total = float(temporal.sum())
        temporal = temporal / total if total > 0 else None
    bands = caption_bands(frames.shape[2], heading, clip.indices, temporal,
                          text_size=max(12, round(frames.shape[2] / 20)))
    media = _video_html(np.concatenate([frames, bands], axis=1), fps)
    style = f' style="--c:{color}"' if color else ' style="--c:#c9ced8"'
    swatch = '<span class="swatch"></span>' if color else ""
    return (f'<div class="card method"{style}><div class="head"><h3>{swatch}{_esc(name)}</h3>'
            f'<span class="sub">{_esc(sub)}</span></div><div class="media">{media}</div></div>')


_OTHER = "#B0B6C3"   # the timeline's classes beyond the palette


def _timeline_figure(vids):
    # on the Agg canvas, never through pyplot, as temporal_curve: matplotlib.use("Agg") switched a
    # notebook's backend (its plots no longer showed) and pyplot's figures are global state
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    v0 = vids[0]
    unit = "s" if v0.fps else "frame"
    fig = Figure(figsize=(9.0, 4.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.2]})
    top, bottom = axes
    # the prediction does not depend on the method: plotted once, from the first video
    counts = Counter(w.predicted_label for w in v0.windows)
    labels = sorted(counts)
    if len(labels) > len(PALETTE):
        # a long video predicts dozens of classes: the palette's colours went round (the first and
        # the ninth class looked the same) and their keys ran off the figure. The most frequent
        # classes keep a colour, the others are grey under one key.
        kept = sorted(sorted(labels, key=lambda lb: -counts[lb])[:len(PALETTE) - 1])
        other = f"{len(labels) - len(kept)} other classes"
        labels = [*kept, other]
    colours = {lb: PALETTE[i] for i, lb in enumerate(labels)}
    if len(counts) > len(PALETTE):
        colours[other] = _OTHER

    def when(w):
        if v0.fps:
            return w.start_s, w.end_s + 1.0 / v0.fps
        return float(w.frame_indices[0]), float(w.frame_indices[-1] + 1)

    spans: dict[str, list] = {}
    for w in v0.windows:
        spans.setdefault(w.predicted_label if w.predicted_label in colours else other, []).append(
            (w.predicted_score, *when(w)))
    for lb, rows in spans.items():   # one collection a class, not one a window
        y, a, b = np.asarray(rows, dtype=np.float64).T
        top.hlines(y, a, b, colors=colours[lb], linewidth=4)
    # class and method names are drawn as written: no mathtext from a "$" (plain), and handles and
    # labels given, not collected, so that a class whose name starts with "_" keeps its entry
    keys = [top.plot([], [], color=colours[lb], linewidth=4)[0] for lb in labels]
    top.set_ylim(0, 1.05)
    top.set_ylabel("top-1 probability")
    top.set_title("prediction per window", fontsize=10, loc="left")
    top.legend(keys, [plain(lb, 40) for lb in labels], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
               frameon=False)
    lines = []
    for i, v in enumerate(vids):
        x = v.times if v.fps else v.frame_indices
        cycle = i // len(PALETTE)   # past eight methods, dashes tell the lines apart
        # a line through one point is not drawn: a one-frame video (a still, a GIF) showed no curve
        lines += bottom.plot(x, v.temporal, color=PALETTE[i % len(PALETTE)], linewidth=1.5,
                             linestyle=("-", "--", ":", "-.")[cycle % 4], marker="o" if len(x) == 1 else None)
    bottom.axhline(1.0, color="#999999", linewidth=0.8, linestyle="--")
    bottom.set_ylabel("importance\n(1 = window mean)")
    bottom.set_xlabel(f"video time ({unit})")
    bottom.set_title("temporal importance per frame", fontsize=10, loc="left")
    bottom.legend(lines, [plain(v.method, 40) for v in vids], loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _window_table(v, color: str) -> str:
    head = ("<tr><th>window</th><th>time</th><th>source frames</th><th>prediction</th>"
            '<th class="num">p</th><th>explained</th><th class="num">p</th><th>top frame</th>'
            '<th class="num">seconds</th></tr>')
    rows = []
    for w in v.windows:
        when = f"{w.start_s:.2f}–{w.end_s:.2f} s" if w.start_s is not None else "—"
        # by the share of all its places, as the timeline and the key frames count a frame that
        # fills several places of a window (a video shorter than one)
        sources, place_of = np.unique(w.frame_indices, return_inverse=True)
        top = int(sources[int(np.argmax(np.bincount(place_of, weights=w.temporal)))])
        rows.append(f"<tr><td>{w.index}</td><td>{when}</td><td>#{w.frame_indices[0]}–#{w.frame_indices[-1]}</td>"
                    f"<td>{_esc(w.predicted_label)}</td><td class=\"num\">{w.predicted_score:.1%}</td>"
                    f"<td>{_esc(w.label)}</td><td class=\"num\">{w.score:.1%}</td><td>#{top}</td>"
                    f"<td class=\"num\">{w.cost.seconds:.2f}</td></tr>")
    return (f'<div class="card method windows" style="--c:{color}"><div class="head"><h3>'
            f'<span class="swatch"></span>{_esc(v.method)}</h3></div>'
            f'<table class="window-list">{head}{"".join(rows)}</table>{_options_table(v.options)}</div>')


def _options_table(options: Mapping) -> str:
    if not options:
        return ""
    body = "".join(f"<tr><th>{_esc(k)}</th><td><code>{_esc(_fmt(v))}</code></td></tr>" for k, v in options.items())
    return f'<div class="section-label">Options</div><table>{body}</table>'

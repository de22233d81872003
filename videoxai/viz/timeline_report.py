"""One self-contained HTML page for sliding-window explanations of a whole video.

Where the clip report (:mod:`videoxai.viz.report`) explains one clip the model sees at once,
this page follows a whole video window by window: the explained stretch of the video with one
overlay per method, a timeline of each window's prediction and of each frame's temporal
importance on the video's own time axis, and a table of the windows. It shares the clip
report's header, tables and video embedding (:mod:`videoxai.viz.report_sections`,
:mod:`videoxai.viz.page`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..clip import Clip
from ..errors import InputError
from .curve import PALETTE
from .fonts import figure_families
from .overlay import caption_bands, check_scores, overlay_frames, resize_frames, resize_maps
from .page import data_uri, display_size, figure_png, page, page_fps, plain, video_html
from .report_sections import (
    SCORES,
    check_notes,
    esc,
    header_html,
    notes_table,
    one_or_more,
    options_table,
    original_caption,
    unique_names,
    writable,
    write_page,
)

__all__ = ["write_timeline_report"]


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

    vids = one_or_more(videos, VideoExplanation, "write_timeline_report", "video explanation")
    check_notes(notes)
    for v in vids:   # as write_report: the resized maps were clamped, NaN failed in matplotlib
        check_scores(v, maps=True)
    for v in vids[1:]:
        if not np.array_equal(v.frame_indices, vids[0].frame_indices):
            raise InputError("every video explanation in one report must cover the same frames")
        # the header's window count and stride and the prediction timeline are the first one's:
        # stride 4 and stride 6 of one video were both said to be 4 windows, stride 4
        if len(v.windows) != len(vids[0].windows) or any(
                not np.array_equal(a.frame_indices, b.frame_indices) for a, b in zip(v.windows, vids[0].windows)):
            raise InputError("every video explanation in one report must have the same windows: explain "
                             "them with the same window_stride and frame_step")
    path = writable(path)
    v0 = vids[0]
    shown = _spread(len(v0.frame_indices), _MAX_SHOWN)
    clip = v0.clip
    if len(shown) < clip.num_frames:
        clip = Clip(clip.frames[shown], fps=clip.fps, indices=clip.indices[shown], source=clip.source)
    size = display_size(clip.height, clip.width, 640, 320)
    frames = resize_frames(clip.uint8(), size)
    fps = page_fps(clip)
    source = Path(v0.source).name if v0.source else None
    title = title or (f"videoxai — {source}" if source else "videoxai report")

    parts = [_timeline_header(title, vids, len(shown))]
    if notes:
        parts.append(notes_table(notes))
    # two specs of one method (`saliency(channel_reduce=l2),saliency(channel_reduce=abs)`) were
    # two cards, lines and tables all named "saliency"
    names = unique_names(vids)
    cards = [_timeline_video_card("original", original_caption(v0.clip), frames, clip, fps, None, None)]
    for i, (v, name) in enumerate(zip(vids, names)):
        over = overlay_frames(frames, resize_maps(v.spatial[shown], size))
        cards.append(_timeline_video_card(name, f"{len(v.windows)} windows", over, clip, fps,
                                          v.temporal[shown], PALETTE[i % len(PALETTE)]))
    parts.append('<h2>Where — the whole video and its explanations</h2>'
                 '<div class="grid">' + "".join(cards) + "</div>")
    fig = _timeline_figure(vids, names)
    parts.append('<h2>When — timeline</h2><div class="card curve timeline">'
                 f'<img alt="timeline: prediction per window and temporal importance" '
                 f'src="{data_uri(figure_png(fig), "image/png")}"></div>')
    parts.append('<h2>Windows</h2>' + "".join(_window_table(v, PALETTE[i % len(PALETTE)], name)
                                             for i, (v, name) in enumerate(zip(vids, names))))

    return write_page(path, page(title, "\n".join(parts)))


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
    chips.append(("explained class", _explained(vids)))
    if shown < len(idx):
        chips.append(("videos show", f"{shown} of the {len(idx)} frames, evenly spread"))
    if v.meta.get("weights"):
        chips.append(("weights", str(v.meta["weights"])))
    activation = {x.meta.get("activation") for x in vids} - {None}
    if activation:  # as the clip report says it: the window's p is not a softmax share
        chips.append(("scores", ", ".join(SCORES[a] for a in sorted(activation))))
    return header_html(title, chips, [w for x in vids for w in x.meta.get("warnings", [])])


def _explained(vids) -> str:
    """The class the windows explain, as the clip report's header names it: a ``--target`` the
    page did not name before (only each row of the window tables did)."""
    windows = [w for v in vids for w in v.windows]
    labels = sorted({w.label for w in windows})
    if len(labels) == 1:
        return labels[0]
    if all(w.target == w.predicted for w in windows):
        return "each window's prediction"
    return ", ".join(labels)


def _timeline_video_card(name: str, sub: str, frames: np.ndarray, clip: Clip, fps: float,
                         temporal: np.ndarray | None, color: str | None) -> str:
    """A video card; ``temporal``: the shown frames' importance (``None``: the original video)."""
    heading = name if temporal is None else f"{name} · window prediction"
    if temporal is not None:
        total = float(temporal.sum())
        temporal = temporal / total if total > 0 else None
    bands = caption_bands(frames.shape[2], heading, clip.indices, temporal,
                          text_size=max(12, round(frames.shape[2] / 20)))
    media = video_html(np.concatenate([frames, bands], axis=1), fps)
    style = f' style="--c:{color}"' if color else ' style="--c:#c9ced8"'
    swatch = '<span class="swatch"></span>' if color else ""
    return (f'<div class="card method"{style}><div class="head"><h3>{swatch}{esc(name)}</h3>'
            f'<span class="sub">{esc(sub)}</span></div><div class="media">{media}</div></div>')


_OTHER = "#B0B6C3"   # the timeline's classes beyond the palette


def _timeline_figure(vids, names: list[str] | None = None):
    # on the Agg canvas, never through pyplot, as temporal_curve: matplotlib.use("Agg") switched a
    # notebook's backend (its plots no longer showed) and pyplot's figures are global state
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    v0 = vids[0]
    names = names or unique_names(vids)
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
    top.legend(keys, [plain(lb, 40) for lb in labels], loc="upper left", bbox_to_anchor=(1.01, 1.0),
               prop={"size": 8, "family": figure_families(*labels)}, frameon=False)
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
    bottom.legend(lines, [plain(name, 40) for name in names], loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  prop={"size": 8, "family": figure_families(*names)}, frameon=False)
    fig.tight_layout()
    return fig


def _window_table(v, color: str, name: str | None = None) -> str:
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
                    f"<td>{esc(w.predicted_label)}</td><td class=\"num\">{w.predicted_score:.1%}</td>"
                    f"<td>{esc(w.label)}</td><td class=\"num\">{w.score:.1%}</td><td>#{top}</td>"
                    f"<td class=\"num\">{w.cost.seconds:.2f}</td></tr>")
    # what the method chose for options left to it: the value all windows share, else a note
    chosen = {k: "varies by window" for w in v.windows for k in w.resolved_options}
    chosen.update((v.meta or {}).get("resolved_options") or {})
    options = options_table(v.options, chosen)
    return (f'<div class="card method windows" style="--c:{color}"><div class="head"><h3>'
            f'<span class="swatch"></span>{esc(name or v.method)}</h3></div>'
            f'<table class="window-list">{head}{"".join(rows)}</table>{options}</div>')

"""One self-contained HTML page that shows a clip's explanations side by side.

Everything the page shows is embedded as a ``data:`` URI (videos, figures, key frames), so the
file can be mailed, attached to an issue or opened offline, and the page makes no network
request; :mod:`videoxai.viz.page` says how the videos are embedded. The page of sliding-window
explanations of a whole video is :mod:`videoxai.viz.timeline_report` (its
:func:`write_timeline_report` is imported here too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..clip import Clip
from ..errors import InputError
from ..explanation import Explanation
from .curve import PALETTE, check_count, check_window, temporal_curve
from .overlay import (
    caption_bands,
    outline_crop_box,
    match_clip,
    overlay_frames,
    resize_frames,
    resize_maps,
)
from .page import data_uri, display_size, figure_png, jpeg, page, page_fps, video_html
from .report_sections import (
    SCORES,
    check_notes,
    esc,
    fmt,
    header_html,
    notes_table,
    one_or_more,
    options_table,
    unique_names,
    original_caption,
    writable,
    write_page,
)
from .timeline_report import write_timeline_report

__all__ = ["write_report", "write_timeline_report"]


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
    exps = one_or_more(explanations, Explanation, "write_report", "explanation")
    check_notes(notes)
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
    path = writable(path)

    size = display_size(clip.height, clip.width, max_side, min_side)
    frames = resize_frames(clip.uint8(), size)
    fps = page_fps(clip)
    names = unique_names(exps)
    source = Path(clip.source).name if clip.source else None
    title = title or (f"videoxai — {source}" if source else "videoxai report")

    parts = [_header(title, clip, exps, size)]
    if notes:
        parts.append(notes_table(notes))
    videos = [_video_card("original", original_caption(clip), frames, clip, fps, None)]
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

    return write_page(path, page(title, "\n".join(parts)))


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
    if clip.times is not None:
        # when the frames are shown, as the file's timestamps say: index / fps is not that at a
        # variable frame rate (a phone's, a screen recording's, a GIF's)
        lo, hi = float(clip.times.min()), float(clip.times.max())
        chips.append(("time", f"{_at(lo)}–{_at(hi)}" if hi > lo else _at(lo)))
    if clip.fps:
        chips.append(("fps", f"{clip.fps:g}"))
    targets = sorted({e.label for e in exps})
    chips.append(("explained class", ", ".join(targets)))
    weights = sorted({str(e.meta["weights"]) for e in exps if e.meta.get("weights")})
    if weights:
        chips.append(("weights", ", ".join(weights)))
    activation = {e.meta.get("activation") for e in exps} - {None}
    if activation:  # the percentages are not shares of one softmax: say what they are
        chips.append(("scores", ", ".join(SCORES[a] for a in sorted(activation))))
    return header_html(title, chips, [w for e in exps for w in e.meta.get("warnings", [])])


def _video_card(name: str, sub: str, frames: np.ndarray, clip: Clip, fps: float,
                exp: Explanation | None, color: str | None = None) -> str:
    heading = f"{exp.label}  {exp.score:.0%}" if exp is not None else "original"
    # cards show the video at ~300 px wide: a larger text keeps the caption readable there
    bands = caption_bands(frames.shape[2], heading, clip.indices,
                          None if exp is None else exp.temporal,
                          text_size=max(12, round(frames.shape[2] / 20)))
    media = video_html(np.concatenate([frames, bands], axis=1), fps)
    style = f' style="--c:{color}"' if color else ' style="--c:#c9ced8"'
    swatch = '<span class="swatch"></span>' if color else ""
    cls = "card method"
    return (f'<div class="{cls}"{style}><div class="head"><h3>{swatch}{esc(name)}</h3>'
            f'<span class="sub">{esc(sub)}</span></div>'
            f'<div class="media">{media}</div></div>')


def _curve_section(exps: list[Explanation], names: list[str], window) -> str:
    fig = temporal_curve(exps if len(exps) > 1 else exps[0], window=window, names=names)
    if len(exps) > 1:
        fig.set_size_inches(9.0, 3.2)
    png = data_uri(figure_png(fig), "image/png")
    legend = ""
    if window is not None:
        legend = (f'<p class="sub">Shaded: ground-truth window, source frames #{fmt(window[0])} '
                  f'to #{fmt(window[1])} (end excluded).</p>')
    return ('<h2>When — temporal importance</h2><div class="card curve">'
            f'<img alt="temporal importance per frame" src="{png}">{legend}</div>')


def _method_card(e: Explanation, name: str, over: np.ndarray, clip: Clip,
                 labels: Sequence[str] | None, top_k: int, color: str) -> str:
    return (f'<div class="card method" style="--c:{color}"><div class="head">'
            f'<h3><span class="swatch"></span>{esc(name)}</h3>'
            f'<span class="sub">{esc(str(e.meta.get("model", "")))}</span></div>'
            + _keyframes(e, over, clip, top_k) + _top_classes(e, labels) + _cost(e)
            + _options(e) + "</div>")


def top_source_frames(e: Explanation, k: int) -> list[tuple[int, float]]:
    """The ``k`` most important frames of the video, as ``(position in the clip, share)``.

    A video shorter than the model's clip is sampled with repeats (two frames fill 8 places four
    times each; a single image repeated into a clip, all 8): a frame's share is the
    sum over its places, and it is listed once, at its most important place (the "top 3" of a
    one-frame clip were frame #0 three times, 12.5 % each).
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
        # and when it is shown (clip.times, from the file's timestamps), where known
        when = "" if clip.times is None else f" · {_at(float(clip.times[k]))}"
        src = data_uri(jpeg(_thumb(over[k], 320)), "image/jpeg")
        figs.append(f'<figure><img alt="{name}" src="{src}"><figcaption><b>top {rank}</b> · {name}{when}<br>'
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
        rows.append(f'<div class="{cls}" title="{esc(name)}">{esc(name)}</div>'
                    f'<div class="bar"><span style="width:{100 * probs[c]:.1f}%"></span></div>'
                    f'<div class="p">{probs[c]:.1%}</div>')
    return ('<div class="section-label">Top classes (explained class in bold)</div>'
            f'<div class="probs">{"".join(rows)}</div>')


def _cost(e: Explanation) -> str:
    c = e.cost
    rows = [("time", _seconds(c.seconds)), ("forward passes", f"{c.forward_passes:,}"),
            ("backward passes", f"{c.backward_passes:,}"),
            ("peak memory", _memory(c)), ("device", c.device)]
    body = "".join(f'<tr><th>{k}</th><td class="num">{esc(v)}</td></tr>' for k, v in rows)
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
    again = (f'<div class="section-label">Spec</div><p><code>{esc(spec)}</code></p>' if spec else "")
    return again + options_table(e.options, (e.meta or {}).get("resolved_options"))


# ----------------------------------------------------------------------------------------------
# formatting


def _thumb(rgb: np.ndarray, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w <= width:
        return rgb
    return resize_frames(rgb[None], (max(1, round(h * width / w)), width))[0]


def _at(t: float) -> str:
    """A frame's time in the video: ``"5.00 s"``."""
    return f"{t:.2f} s"


def _seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"

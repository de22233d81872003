"""End-to-end jobs behind the CLI: explain a video file, and the demo on the synthetic benchmark."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .clip import Clip
from .errors import InputError
from .explain import explain
from .explanation import Explanation
from .models import load_model
from .models.base import VideoModel

log = logging.getLogger(__name__)


@dataclass
class ExplainResult:
    """Files written by :func:`explain_video`."""

    report: Path
    explanations: list[Explanation]
    files: dict[str, list[Path]] = field(default_factory=dict)
    #: sliding-window explanations over the whole video, one per method (``window_stride`` given)
    videos: list = field(default_factory=list)


def explain_video(video: str | Path | Clip, model: str | VideoModel, methods: Sequence[str], out_dir: str | Path,
                  *, target: int | str | None = None, refine=None, options: dict | None = None,
                  working_size: str = "model",
                  notes: dict | None = None, window: tuple[int, int] | None = None,
                  start: float | str | None = None, end: float | str | None = None,
                  window_stride: int | None = None, frame_step: int = 1, fps: float | None = None,
                  on_method: Callable[[str], None] | None = None,
                  on_window: Callable[[str, int], None] | None = None) -> ExplainResult:
    """Explain one video with one or more methods and write a report.

    Without ``window_stride``: ``model.num_frames`` frames sampled uniformly over the video (or
    over ``[start, end)``) are explained; writes, per method, ``<method>.npz`` (the explanation),
    ``<method>.mp4`` (overlay video) and ``<method>_curve.png`` (temporal curve), and one
    self-contained ``report.html``.

    ``methods`` are names or specs (``"rise(n_samples=500)"``); ``options`` maps each to more
    options. A method's files are named after it (after the spec where two share a method).

    With ``window_stride``: sliding windows over the whole video (or ``[start, end)``), see
    :func:`videoxai.timeline.explain_video`; writes, per method, ``<method>.npz`` (the windows,
    per-frame maps and times: :meth:`VideoExplanation.load <videoxai.timeline.VideoExplanation.load>`)
    and ``<method>.mp4`` (the overlay of the whole video), and ``report.html`` with the timeline.

    ``video`` may be a folder of frames (or a glob naming one series in it), read as
    :func:`vx.read_video` reads it, at the frame rate ``fps`` (pictures have none: without it
    ``start``/``end`` are frame numbers and the report counts frames).

    ``on_method(spec)`` is called before each method, and with ``window_stride``
    ``on_window(spec, window)`` before each of its windows (progress).
    """
    from .data.container import probe
    from .data.frame_folder import names_frame_series
    from .data.video import read_video
    from .timeline import parse_time
    from .viz.curve import temporal_curve
    from .viz.overlay import render
    from .viz.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(model) if isinstance(model, str) else model
    _check_methods_apply(model, methods, options or {})
    if window_stride is not None:
        return _explain_windows(video, model, methods, out, target=target, refine=refine, options=options,
                                working_size=working_size, notes=notes, start=start, end=end, fps=fps,
                                window_stride=window_stride, frame_step=frame_step, on_method=on_method,
                                on_window=on_window)
    if isinstance(video, Clip):
        if fps is not None:
            raise InputError("fps applies to a folder of frames; a Clip has its own (Clip.fps)")
        clip = video
    elif names_frame_series(video):  # a folder of pictures: its frame numbers and rate as given
        clip = read_video(video, num_frames=model.num_frames, start=start, end=end, fps=fps)
    else:
        if fps is not None:
            raise InputError(f"fps applies to a folder of frames; {video} has its own frame rate")
        fps = probe(video)["fps"] if start is not None or end is not None else None
        clip = read_video(video, num_frames=model.num_frames, start=parse_time(start, fps, "start"),
                          end=parse_time(end, fps, "end"))
    exps, files = [], {"npz": [], "overlay": [], "curve": []}
    stems = _file_stems(methods)
    for name in methods:
        if on_method:
            on_method(name)
        exp = explain(model, clip, name, target=target, refine=refine, working_size=working_size,
                      **(options or {}).get(name, {}))
        exps.append(exp)
        files["npz"].append(exp.save(out / f"{stems[name]}.npz"))
        files["overlay"].append(render(exp, clip, out / f"{stems[name]}.mp4"))
        files["curve"].append(temporal_curve(exp, out / f"{stems[name]}_curve.png", window=window))
    report = write_report(out / "report.html", clip, exps, title=f"{model.name}: {Path(str(clip.source)).name}",
                          notes=notes, window=window, labels=model.labels)
    return ExplainResult(report=report, explanations=exps, files=files)


def _explain_windows(video, model: VideoModel, methods: Sequence[str], out: Path, *, target, refine, options,
                     working_size, notes, start, end, window_stride, frame_step, on_method, fps,
                     on_window=None) -> ExplainResult:
    from .data.video import write_video
    from .timeline import explain_video as explain_windows
    from .viz.overlay import overlay_frames, playback_fps
    from .viz.timeline_report import write_timeline_report

    videos, files = [], {"npz": [], "overlay": []}
    stems = _file_stems(methods)
    for name in methods:
        if on_method:
            on_method(name)
        # the windows of a long video take minutes: the CLI's status said only the method
        each = None if on_window is None else (lambda k, name=name: on_window(name, k))
        v = explain_windows(model, video, name, window_stride=window_stride, frame_step=frame_step, start=start, fps=fps,
                            end=end, target=target, refine=refine, working_size=working_size, on_window=each,
                            **(options or {}).get(name, {}))
        videos.append(v)
        # as the single-clip mode saves its explanation: the library's caller gets it too
        files["npz"].append(v.save(out / f"{stems[name]}.npz"))
        # at the rate that plays the frames kept over the video's own time (--frame-step 2 kept
        # every other frame: at the source rate a 3 s video played in 1.5 s)
        files["overlay"].append(write_video(overlay_frames(v.frames, v.spatial), out / f"{stems[name]}.mp4",
                                            fps=playback_fps(v.clip)))
    source = Path(str(videos[0].source)).name
    report = write_timeline_report(out / "report.html", videos, title=f"{model.name}: {source}", notes=notes)
    return ExplainResult(report=report, explanations=[], files=files, videos=videos)


def _check_methods_apply(model: VideoModel, methods: Sequence[str], options: dict[str, dict]) -> None:
    """Construct each method on ``model`` with its options, so that one the model cannot serve
    (staa on a CNN) fails before the others have spent their time and written files without a
    report. Constructing is cheap: it checks the model and the options, it explains nothing."""
    from .explain import EXPLAIN_OPTIONS, _split_spec
    from .methods import get as get_method

    for spec in methods:
        name, in_spec, _, _ = _split_spec(spec)
        cls = get_method(name)
        extra = {k: v for k, v in options.get(spec, {}).items() if k not in EXPLAIN_OPTIONS}
        cls(model, **{**in_spec, **cls.parse_options(extra)})


def _file_stems(methods: Sequence[str]) -> dict[str, str]:
    """The name each method's files get: the method's name (``rise(n_samples=20)`` → ``rise``),
    or, where two specs share a method, the spec with every character a file name may not hold
    replaced (``rise_n_samples=20_``)."""
    from .options import parse_spec

    names = {m: parse_spec(m)[0] for m in methods}
    shared = {n for n in names.values() if list(names.values()).count(n) > 1}
    return {m: re.sub(r"[^A-Za-z0-9_.=-]+", "_", m) if n in shared else n for m, n in names.items()}


@dataclass
class LocalisationRates:
    """How often an explanation points at the ground truth of the synthetic benchmark."""

    temporal: float      # share of clips whose most important frame lies inside the evidence window
    spatial: float       # share of (clip, annotated frame) pairs whose per-frame peak is on the object
    temporal_chance: float
    spatial_chance: float
    clips: int
    accuracy: float      # the model's accuracy on the same clips
    seconds_per_clip: float


def localisation_rates(model: VideoModel, samples, method: str = "staa", *, refine=None, seed: int = 0,
                       progress: Callable | None = None, **options) -> LocalisationRates:
    """Temporal and spatial hit rates of ``method`` on synthetic samples (see
    :mod:`videoxai.data.synthetic`), next to what a random guess would score.

    The rates are the metrics' own: :class:`~videoxai.metrics.localisation.TemporalGrounding`
    (``k=1``) per clip, and :class:`~videoxai.metrics.localisation.PointingGame` with no tolerance
    (the peak itself must be on the object), pooled over the annotated frames of all clips. Ties
    between equal maxima are broken by ``seed``, as in the evaluations, not by taking the first.
    """
    from .metrics.localisation import PointingGame, TemporalGrounding

    temporal_metric, pointing = TemporalGrounding(k=1, seed=seed), PointingGame(tolerance=0.0, seed=seed)
    t_hits, s_hits, s_total, correct, seconds = 0.0, 0, 0, 0, 0.0
    t_chance, s_chance = [], []
    items = progress(samples) if progress else samples
    for sample in items:
        exp = explain(model, sample.clip, method, target=sample.label, refine=refine, **options)
        start, end = sample.window
        seconds += exp.cost.seconds
        correct += int(np.argmax(exp.probs) == sample.label)
        t_hits += temporal_metric(model, sample.clip, exp, sample=sample).value
        t_chance.append((end - start) / exp.num_frames)
        point = pointing(model, sample.clip, exp, sample=sample)
        s_hits += point.details.get("hits", 0)
        s_total += point.details.get("frames", 0)
        s_chance.extend(m.mean() for m in sample.masks if m.any())
    n = len(samples)
    return LocalisationRates(temporal=t_hits / n, spatial=s_hits / max(1, s_total),
                             temporal_chance=float(np.mean(t_chance)), spatial_chance=float(np.mean(s_chance)),
                             clips=n, accuracy=correct / n, seconds_per_clip=seconds / n)


def run_demo(out_dir: str | Path, *, clips: int = 100, methods: Sequence[str] = ("staa",), seed: int = 0,
             progress: Callable | None = None, on_method: Callable[[str], None] | None = None) -> tuple[ExplainResult, LocalisationRates]:
    """The demo: the bundled model on held-out synthetic clips.

    Scores STAA's localisation on ``clips`` held-out clips, then writes one held-out clip to an
    mp4, reads it back like any user video and explains it, with the rates in the report.
    """
    from .data.synthetic import SyntheticVideos
    from .data.video import write_video

    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise InputError(f"clips must be an integer ≥ 1, got {clips!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model("demo")
    test = SyntheticVideos(clips, split="test", seed=seed)
    rates = localisation_rates(model, test, "staa", progress=progress)
    sample = test[0]
    video = write_video(sample.frames, out / "sample.mp4", fps=sample.clip.fps or 8.0)
    notes = {
        "model": f"{model.name} ({model.family}, {model.num_frames} frames, {model.input_size[0]}px)",
        "held-out clips scored": str(rates.clips),
        "model accuracy on them": f"{rates.accuracy:.1%}",
        "STAA top frame inside the evidence window": f"{rates.temporal:.1%} (chance {rates.temporal_chance:.1%})",
        "STAA per-frame peak on the object": f"{rates.spatial:.1%} (chance {rates.spatial_chance:.1%})",
        "STAA seconds per clip": f"{rates.seconds_per_clip * 1000:.1f} ms",
        "this clip": f"class '{test.labels[sample.label]}', evidence in frames {sample.window[0]}–{sample.window[1] - 1}",
    }
    result = explain_video(video, model, methods, out, notes=notes, window=sample.window, on_method=on_method)
    return result, rates

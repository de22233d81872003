"""Whole videos: the shared window planner, ranges, sliding-window explanations and their timeline report."""

from __future__ import annotations

import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import videoxai as vx
from videoxai.data.synthetic import SyntheticVideos
from videoxai.data.video import sliding_windows, write_video
from videoxai.data.windows import WindowPlanner, window_spans
from videoxai.errors import InputError, VideoReadError
from videoxai.timeline import parse_time

FPS = 8.0


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """24 frames (three synthetic clips one after the other), 64x64 at 8 fps."""
    frames = np.concatenate([s.frames for s in SyntheticVideos(3, split="test", seed=0)])
    return write_video(frames, tmp_path_factory.mktemp("video") / "three.mp4", fps=FPS, quality=0)


@pytest.fixture(scope="module")
def model():
    return vx.load_model("demo-cnn")


# -- the planner -------------------------------------------------------------------------------------
def spans(total, size, stride, tail):
    return [(s.start, s.stop, s.padding) for s in window_spans(total, size, stride, tail)]


def test_planner_windows_and_tails():
    assert spans(12, 8, 4, "shift") == [(0, 8, 0), (4, 12, 0)]                   # ends on a window: no tail
    assert spans(13, 8, 4, "shift") == [(0, 8, 0), (4, 12, 0), (5, 13, 0)]       # last 8 frames
    assert spans(13, 8, 4, "pad") == [(0, 8, 0), (4, 12, 0), (8, 13, 3)]         # on schedule, padded
    assert spans(5, 8, 4, "shift") == spans(5, 8, 4, "pad") == [(0, 5, 3)]       # shorter than a window
    assert spans(20, 4, 6, "pad") == [(0, 4, 0), (6, 10, 0), (12, 16, 0), (18, 20, 2)]  # gaps
    assert spans(16, 4, 6, "pad") == [(0, 4, 0), (6, 10, 0), (12, 16, 0)]       # 16..: nothing left
    assert spans(0, 4, 2, "shift") == []
    planner = WindowPlanner(4, 6, tail="pad")
    keep = [planner.push()[0] for _ in range(12)]
    assert keep == [True] * 4 + [False] * 2 + [True] * 4 + [False] * 2  # gap frames are never decoded
    assert planner.finish() is None
    with pytest.raises(InputError, match="stride must be an integer >= 1, got 0"):
        WindowPlanner(4, 0)
    # numpy's integers (a size from an array or a config) were refused: "got np.int64(4)"
    assert [(w.start, w.stop) for w in window_spans(10, np.int64(4), np.int32(3))] == [(0, 4), (3, 7), (6, 10)]
    for bad in (2.0, True):
        with pytest.raises(InputError, match="window size must be an integer"):
            WindowPlanner(bad)


def test_sliding_windows_on_a_clip_follow_the_planner():
    clip = vx.Clip(np.arange(13, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3))
    for tail in ("pad", "shift"):
        wins = list(sliding_windows(clip, 8, 4, tail=tail))
        expected = window_spans(13, 8, 4, tail)
        assert [(w.meta["start"], w.meta["padding"]) for w in wins] == [(s.start, s.padding) for s in expected]
        last, span = wins[-1], expected[-1]
        assert list(last.indices) == list(range(span.start, span.stop)) + [span.stop - 1] * span.padding
        assert list(last.frames[:, 0, 0, 0]) == list(last.indices)


def test_sliding_windows_of_a_file_range(video):
    wins = list(sliding_windows(video, 8, 4, start=parse_time("4", FPS), end=parse_time("2.5s", FPS),
                                tail="shift"))
    # frames 4..19 (2.5 s = frame 20, excluded): windows 4-11, 8-15, 12-19
    assert [list(w.indices) for w in wins] == [list(range(a, a + 8)) for a in (4, 8, 12)]
    # 24 frames at 8 fps: the error says how long the video is
    with pytest.raises(VideoReadError, match=r"no frame in the time range \[9, 10\) s; the video is 3.00 s long"):
        list(sliding_windows(video, 8, start=9.0, end=10.0))


def test_parse_time():
    assert parse_time("2.5s", 8.0) == 2.5 and parse_time(1.5, None) == 1.5 and parse_time(None, 8.0) is None
    assert parse_time("60", 30.0) == pytest.approx(59.5 / 30) and parse_time("60f", 30.0) == parse_time("60", 30.0)
    # a clock time as players show it ("1:30" was refused), never a frame number
    assert parse_time("1:30", 8.0) == 90.0 and type(parse_time("1:30", 8.0)) is float
    assert parse_time("0:01:30.5", None) == parse_time("1:01:30", 8.0) - 3600 + 0.5 == 90.5
    for bad, match in (("abc", "seconds like '2.5s' or '1:30', or a frame number like '60', got 'abc'"),
                       ("-3", "got '-3'"), ("2.5", "a frame number must be whole"), (True, "got True"),
                       ("1:75", "got '1:75'"), ("1:2:3:4", "got '1:2:3:4'")):
        with pytest.raises(InputError, match=match):
            parse_time(bad, 8.0, "start")
    with pytest.raises(InputError, match="no frame rate"):
        parse_time("10", None)


# -- sliding-window explanations ---------------------------------------------------------------------
def test_explain_video_puts_each_window_back_on_the_video(video, model):
    v = vx.explain_video(model, video, "gradcam", window_stride=4, start="4", end="2.5s")
    assert [list(w.frame_indices) for w in v.windows] == [list(range(a, a + 8)) for a in (4, 8, 12)]
    assert list(v.frame_indices) == list(range(4, 20)) and v.frames.shape == (16, 64, 64, 3)
    np.testing.assert_allclose(v.times, np.arange(4, 20) / FPS)
    assert v.spatial.shape == (16, 64, 64) and v.spatial.max() == pytest.approx(1.0)

    # each window is exactly vx.explain on those frames
    frames = vx.read_video(video).frames
    for w in v.windows:
        exp = vx.explain(model, vx.Clip(frames[w.frame_indices]), "gradcam")
        assert (w.label, w.target) == (exp.label, exp.target) and w.score == pytest.approx(exp.score, rel=1e-5)
        np.testing.assert_allclose(w.temporal, exp.temporal, rtol=1e-5)
    # a frame in one window only: its importance relative to the window is T · temporal
    w0 = v.windows[0]
    assert v.temporal[0] == pytest.approx(8 * w0.temporal[0], rel=1e-5)
    # a frame in two windows: the mean of both
    both = (8 * v.windows[0].temporal[4] + 8 * v.windows[1].temporal[0]) / 2  # frame 8
    assert v.temporal[4] == pytest.approx(both, rel=1e-5)

    named = vx.explain_video(model, video, "gradcam", target="Red Square", end="16")
    assert {w.label for w in named.windows} == {"red square"} and len(named.windows) == 2
    with pytest.raises(InputError, match="start and end apply to video files"):
        vx.explain_video(model, vx.read_video(video), "gradcam", start=1.0)


def test_explain_video_places_windows_at_the_times_frames_are_shown(tmp_path, model):
    # a GIF with varying delays (as a phone's variable-rate clip): window times were index / fps,
    # the average rate's, not when those frames are shown
    from PIL import Image

    delays = [100, 200, 50, 300, 100, 100, 400, 100, 100, 100, 100, 250]  # ms
    frames = np.concatenate([s.frames for s in SyntheticVideos(2, split="test", seed=0)])[:12]
    path = tmp_path / "vfr.gif"
    Image.fromarray(frames[0]).save(path, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]],
                                    duration=delays, loop=0)
    shown = np.concatenate([[0], np.cumsum(delays)[:-1]]) / 1000
    v = vx.explain_video(model, path, "gradcam", start="3", end="12", window_stride=4)
    first = v.windows[0]
    assert list(first.frame_indices) == list(range(3, 11))
    assert (first.start_s, first.end_s) == pytest.approx((shown[3], shown[10]))   # 0.35 s, not 0.45
    np.testing.assert_allclose(v.times, shown[v.frame_indices])


def test_a_clip_read_from_a_variable_rate_file_is_explained_at_its_own_times(tmp_path, model):
    """The clip carries when each frame is shown (``clip.times``), but its windows were placed at
    index / fps: a second window shown from 5.0 s said 3.0 s, as if the 4 s pause were spread
    over the video; the file's windows said 5.0 s."""
    frames = np.concatenate([s.frames for s in SyntheticVideos(2, split="test", seed=0)])
    path = tmp_path / "pause.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt, s.time_base = 64, 64, "yuv420p", Fraction(1, 8)
        for k, rgb in enumerate(frames):   # 8 frames, a 4-second pause, 8 frames
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = k + (32 if k >= 8 else 0), Fraction(1, 8)
            out.mux(s.encode(frame))
        out.mux(s.encode())
    clip = vx.read_video(path)
    for video in (path, clip):
        v = vx.explain_video(model, video, "saliency")
        assert [(w.start_s, w.end_s) for w in v.windows] == [(0.0, 0.875), (5.0, 5.875)]
        np.testing.assert_allclose(v.times, clip.times)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videoxai", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={"VIDEOXAI_PROGRESS": "0", "COLUMNS": "200", "PATH": "/usr/bin:/bin",
                                        "PYTHONPATH": str(Path(vx.__file__).parent.parent)})


def test_cli_windows_report_has_a_timeline_and_plays_the_whole_video(video, tmp_path):
    r = _run("explain", str(video), "--model", "demo-cnn", "--method", "gradcam", "--window-stride", "6",
             "--start", "0.25s", "--end", "22", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "gradcam: 3 windows" in r.stdout  # frames 2..21: windows 2-9, 8-15, 14-21
    out = tmp_path / "out"
    overlay = vx.read_video(out / "gradcam.mp4")
    assert overlay.num_frames == 20

    from conftest import headless_chrome
    from selenium.webdriver.support.ui import WebDriverWait

    browser = headless_chrome()
    try:
        browser.get((out / "report.html").as_uri())
        rows = browser.find_elements("css selector", "table.window-list tr")
        assert len(rows) == 1 + 3 and "#14–#21" in rows[-1].text
        timeline = browser.find_element("css selector", ".timeline img")
        assert timeline.is_displayed() and browser.execute_script("return arguments[0].naturalWidth", timeline) > 500
        js = "return Array.from(document.querySelectorAll('video')).map(v => [v.readyState, v.duration]);"
        WebDriverWait(browser, 90, poll_frequency=0.2).until(
            lambda b: all(s[0] >= 1 for s in b.execute_script(js)))
        states = browser.execute_script(js)
    finally:
        browser.quit()
    assert len(states) == 2  # the original and the overlay, each over all 20 frames at 8 fps
    assert all(d == pytest.approx(20 / FPS, abs=0.2) for _, d in states), states
    r = _run("explain", str(video), "--model", "demo-cnn", "--method", "gradcam", "--start", "soon", "--out", "o", cwd=tmp_path)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "start must be seconds like '2.5s'" in lines[0], r.stderr


def test_explain_video_takes_frames_in_memory_as_vx_explain_does(video, model):
    # an array was passed to pathlib ("expected str, bytes or os.PathLike object, not ndarray")
    frames = vx.read_video(video).frames[:16]
    from_array = vx.explain_video(model, frames, "gradcam")
    from_clip = vx.explain_video(model, vx.Clip(frames), "gradcam")
    assert len(from_array.windows) == 2
    np.testing.assert_allclose(from_array.temporal, from_clip.temporal)
    with pytest.raises(InputError, match="explain_video needs a video file's path, a Clip, or frames as an "
                                         "array or tensor; got list"):
        vx.explain_video(model, list(frames), "gradcam")
    with pytest.raises(InputError, match=r"target must be a class index \(an integer\) or a class name, got 1.5"):
        vx.explain_video(model, frames, "gradcam", target=1.5)


def test_a_video_shorter_than_a_window_counts_each_frame_once_with_all_its_places(video, model, tmp_path):
    """3 frames fill a window of 8 as #0, #1, #2 ×6 (say): the timeline took each frame's first
    place × 8, so the only frame of a one-frame video was 1.24 times its window's average, and
    the window list's "top frame" was the frame of the largest single place."""
    from videoxai.viz.report import write_timeline_report

    frames = vx.read_video(video).frames
    for n in (1, 3):
        v = vx.explain_video(model, vx.Clip(frames[9:9 + n]), "gradcam")
        (w,) = v.windows
        assert len(w.frame_indices) == 8 and list(v.frame_indices) == list(range(n))
        shares = np.bincount(w.frame_indices, weights=w.temporal, minlength=n)   # each frame's places together
        np.testing.assert_allclose(v.temporal, n * shares, rtol=1e-5)
        assert v.temporal.mean() == pytest.approx(1.0, rel=1e-5)   # 1 is the window's average frame
    # a window whose largest single place is not its most important frame
    w.temporal = np.array([0.3, 0.2] + [0.5 / 6] * 6, np.float32)
    w.frame_indices = np.array([0, 1, 2, 2, 2, 2, 2, 2])
    html = write_timeline_report(tmp_path / "t.html", v).read_text()
    assert re.search(r"<td>#0–#2</td>.*?<td>#(\d+)</td><td class=\"num\">", html).group(1) == "2"


def test_a_long_video_is_held_at_a_smaller_size_within_the_memory_budget(video, model, monkeypatch):
    """Frames and maps of every explained frame were held at the display size whatever the
    length: 24 GB for 10 minutes at 25 fps and 640x360. Past the budget the held frames and maps
    are halved, and the result is what a smaller display_side gives from the start."""
    import videoxai.timeline as timeline

    direct = vx.explain_video(model, video, "gradcam", window_stride=4, display_side=32)
    monkeypatch.setattr(timeline, "_HELD_BYTES", 10 * 64 * 64 * 7)   # ten 64x64 frames with their maps
    monkeypatch.setattr(timeline, "_LEAST_SIDE", 8)
    held = vx.explain_video(model, video, "gradcam", window_stride=4)   # 64x64 frames: no display resize
    assert held.frames.shape == direct.frames.shape == (24, 32, 32, 3)
    assert held.frames.nbytes + held.spatial.nbytes <= timeline._HELD_BYTES
    np.testing.assert_array_equal(held.frames, direct.frames)
    np.testing.assert_allclose(held.spatial, direct.spatial, atol=1e-5)
    np.testing.assert_allclose(held.temporal, direct.temporal, rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(display_side=0), "display_side must be a whole number of pixels, at least 1, got 0"),   # 1x1 frames
    (dict(display_side=1.5), "got 1.5"),
    (dict(on_window=5), "on_window must be a function of the window's number, got int"),
    # a VideoReadError about the file, naming "stride" (not the argument given)
    (dict(window_stride=2.5), r"^window_stride must be a whole number of frames, at least 1, got 2\.5$"),
    (dict(window_stride=0), "window_stride must be .* got 0"),
    (dict(frame_step=True), "frame_step must be .* got True"),
])
def test_explain_video_checks_its_display_options_before_explaining(model, kwargs, match, monkeypatch):
    import videoxai.timeline as timeline

    def explained(*args, **kw):
        raise AssertionError("a window was explained before the options were checked")

    monkeypatch.setattr(timeline, "explain", explained)
    with pytest.raises(InputError, match=match):
        vx.explain_video(model, np.zeros((8, 16, 16, 3), np.uint8), "gradcam", **kwargs)


def test_the_timeline_reports_window_table_shows_the_options_the_method_chose(video, model, tmp_path):
    # an option left to the method (occlusion's window) showed as "None" under the windows'
    # table, as if nothing had been run; the single-clip report shows "None → [...]"
    from videoxai.viz.report import write_timeline_report

    v = vx.explain_video(model, video, "occlusion", window_stride=8, strides=(4, 32, 32))
    chosen = v.meta["resolved_options"]["window"]
    html = write_timeline_report(tmp_path / "t.html", v).read_text()
    assert f"<th>window</th><td><code>None</code> → <code>[{', '.join(map(str, chosen))}]</code>" in html


def test_options_the_method_chose_differently_per_window_are_not_reported_as_the_first_windows():
    # LIME's "auto" smoothing depends on the frames: the first window's choice was the video's
    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.timeline_report import _window_table
    from videoxai.cost import Cost

    def window(i, sigma):
        return WindowResult(index=i, frame_indices=np.arange(8) + 8 * i, start_s=None, end_s=None, target=0,
                            label="a", score=0.5, predicted=0, predicted_label="a", predicted_score=0.5,
                            temporal=np.full(8, 1 / 8), cost=Cost(seconds=0.1),
                            resolved_options={"n_segments": 48, "smoothing": sigma})
    v = VideoExplanation(method="lime", model="m", windows=[window(0, 0.0), window(1, 1.0)],
                         frames=np.zeros((16, 4, 4, 3), np.uint8), frame_indices=np.arange(16),
                         times=np.arange(16) / 8, spatial=np.zeros((16, 4, 4), np.float32),
                         temporal=np.ones(16, np.float32), fps=8.0, source="v.mp4",
                         options={"n_segments": None, "smoothing": "auto"},
                         meta={"resolved_options": {"n_segments": 48}})
    html = _window_table(v, "#000")
    assert "<th>n_segments</th><td><code>None</code> → <code>48</code>" in html
    assert "<th>smoothing</th><td><code>auto</code> → <code>varies by window</code>" in html


# -- saving and loading a video explanation ---------------------------------------------------------
def _assert_same_video_explanation(a, b):
    """Every field equal, numbers exactly, arrays with their dtypes."""
    def same(x, y, where):
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, where
            assert np.array_equal(x, y), where
        else:
            assert type(x) is type(y) and x == y, (where, x, y)

    assert [f for f in a.__dataclass_fields__] == [f for f in b.__dataclass_fields__]
    for name in a.__dataclass_fields__:
        if name != "windows":
            same(getattr(a, name), getattr(b, name), name)
    assert len(a.windows) == len(b.windows)
    for k, (wa, wb) in enumerate(zip(a.windows, b.windows)):
        for name in wa.__dataclass_fields__:
            same(getattr(wa, name), getattr(wb, name), f"windows[{k}].{name}")


def _hand_made_video_explanation():
    """Windows of different lengths, no times, no fps, no source, options the method chose."""
    from videoxai.cost import Cost
    from videoxai.timeline import VideoExplanation, WindowResult

    rng = np.random.default_rng(0)
    windows = [WindowResult(index=i, frame_indices=np.arange(i, i + n, dtype=np.int64), start_s=None, end_s=None,
                            target=i, label=f"class {i}", score=float(rng.random()), predicted=1 - i,
                            predicted_label="other", predicted_score=1 / 3,
                            temporal=rng.random(n).astype(np.float32),
                            cost=Cost(seconds=0.1 + i, forward_passes=3, backward_passes=i, peak_memory_mb=1.5,
                                      device="cpu", process_peak_mb=200.25),
                            resolved_options={"n_segments": 48 + i, "smoothing": 0.5 * i})
               for i, n in ((0, 4), (1, 3))]
    return VideoExplanation(
        method="lime", model="mine", windows=windows, frames=rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8),
        frame_indices=np.arange(5, dtype=np.int64), times=np.arange(5) / 3.0,
        spatial=rng.random((5, 6, 7)).astype(np.float32), temporal=rng.random(5).astype(np.float32),
        fps=None, source=None, options={"n_samples": 16, "smoothing": "auto", "seed": 0},
        meta={"resolved_options": {"n_segments": 48}, "warnings": ["a constant map"], "window_stride": 3})


def test_a_saved_video_explanation_loads_back_the_same_in_every_field(video, model, tmp_path):
    v = vx.explain_video(model, video, "gradcam", window_stride=6, start="0.25s", end="22")
    path = v.save(tmp_path / "sub" / "gradcam.explanation")   # the suffix becomes .npz, parents are made
    assert path == tmp_path / "sub" / "gradcam.npz" and path.is_file()
    again = vx.VideoExplanation.load(path)
    _assert_same_video_explanation(v, again)
    assert [list(w.frame_indices) for w in again.windows] == [list(range(a, a + 8)) for a in (2, 8, 14)]
    assert again.windows[0].start_s == 0.25 and again.fps == FPS

    hand = _hand_made_video_explanation()
    again = vx.VideoExplanation.load(hand.save(tmp_path / "hand.npz"))
    _assert_same_video_explanation(hand, again)
    assert again.windows[1].start_s is None and again.source is None
    # the arrays are plain npz: numpy alone reads them, without pickle
    with np.load(tmp_path / "hand.npz", allow_pickle=False) as z:
        assert list(z["window_lengths"]) == [4, 3] and z["frames"].dtype == np.uint8


def test_loading_a_video_explanation_names_what_is_wrong_with_the_file(video, model, tmp_path):
    hand = _hand_made_video_explanation()
    whole = hand.save(tmp_path / "v.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut\.npz is a damaged or truncated \.npz archive \(.+\); save the "
                                         r"video explanation again"):
        vx.VideoExplanation.load(tmp_path / "cut.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    with pytest.raises(InputError, match=r"junk\.npz is not a videoxai video explanation file: not an \.npz archive$"):
        vx.VideoExplanation.load(tmp_path / "junk.npz")
    with pytest.raises(InputError, match="no video explanation file at"):
        vx.VideoExplanation.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "foreign.npz", spatial=np.zeros((2, 3, 3)))
    with pytest.raises(InputError, match=r"foreign\.npz is not a videoxai video explanation file: it has no 'metadata'"):
        vx.VideoExplanation.load(tmp_path / "foreign.npz")

    # one clip's explanation and a whole video's are told apart both ways
    exp = vx.explain(model, vx.read_video(video, num_frames=8), "gradcam").save(tmp_path / "clip.npz")
    with pytest.raises(InputError, match=r"clip\.npz is one clip's explanation, not a video explanation: "
                                         r"read it with vx\.Explanation\.load$"):
        vx.VideoExplanation.load(exp)
    with pytest.raises(InputError, match=r"v\.npz is a video explanation \(windows over a whole video\), not one "
                                         r"clip's: read it with vx\.VideoExplanation\.load$"):
        vx.Explanation.load(tmp_path / "v.npz")

    # windows whose arrays and records disagree, and a newer format
    from videoxai.npz import read_npz
    import json

    arrays = read_npz(tmp_path / "v.npz")
    np.savez(tmp_path / "short.npz", **{**arrays, "window_temporal": arrays["window_temporal"][:-1]})
    with pytest.raises(InputError, match=r"short\.npz is not a videoxai video explanation file: its windows' "
                                         "arrays and records do not match"):
        vx.VideoExplanation.load(tmp_path / "short.npz")
    meta = json.loads(bytes(arrays["metadata"]).decode())
    newer = np.frombuffer(json.dumps({**meta, "version": 2}).encode(), np.uint8)
    np.savez(tmp_path / "v2.npz", **{**arrays, "metadata": newer})
    with pytest.raises(InputError, match=r"v2\.npz was written by a newer videoxai \(video explanation format 2; "):
        vx.VideoExplanation.load(tmp_path / "v2.npz")
    # what could not be read back is refused when saving
    hand.spatial[0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"cannot save the video explanation to .*nan\.npz: VideoExplanation\.spatial "
                                         "holds NaN or infinite values"):
        hand.save(tmp_path / "nan.npz")
    assert not (tmp_path / "nan.npz").exists()


def test_cli_windows_write_each_methods_video_explanation_beside_the_report(video, tmp_path):
    # only report.html and the overlays were written: nothing to read the windows back from
    methods = "gradcam,gradcam(per_frame_weights=true)"
    r = _run("explain", str(video), "--model", "demo-cnn", "--method", methods, "--window-stride", "4",
             "--end", "12", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.npz")) == ["gradcam.npz", "gradcam_per_frame_weights=true_.npz"]
    model = vx.load_model("demo-cnn")
    for stem, options in (("gradcam", {}), ("gradcam_per_frame_weights=true_", {"per_frame_weights": True})):
        saved = vx.VideoExplanation.load(out / f"{stem}.npz")
        assert saved.options["per_frame_weights"] is bool(options)
        assert [list(w.frame_indices) for w in saved.windows] == [list(range(0, 8)), list(range(4, 12))]
        again = vx.explain_video(model, video, "gradcam", window_stride=4, end="12", **options)
        np.testing.assert_allclose(saved.spatial, again.spatial, atol=1e-5)
        assert [w.label for w in saved.windows] == [w.label for w in again.windows]


def test_the_library_workflow_saves_each_methods_windows_too(video, model, tmp_path):
    # only the CLI wrote the npz: workflows.explain_video(window_stride=...) listed no "npz" file
    from videoxai.workflows import explain_video as explain_to_folder

    result = explain_to_folder(video, model, ["saliency"], tmp_path, window_stride=8, end="16")
    assert result.files["npz"] == [tmp_path / "saliency.npz"]
    saved = vx.VideoExplanation.load(result.files["npz"][0])
    assert [list(w.frame_indices) for w in saved.windows] == [list(range(8)), list(range(8, 16))]
    np.testing.assert_array_equal(saved.spatial, result.videos[0].spatial)


def test_a_frame_step_that_keeps_one_frame_is_refused_as_a_one_frame_range_is(video, model):
    """frame_step=30 on a 24-frame video explained frame #0 repeated as "the video" (1 frame, 1
    window), where a file or a range of one frame is refused; two frames kept are explained."""
    with pytest.raises(InputError, match="frame_step 30 keeps 1 of the 24 frames of the video; a video classifier needs"):
        vx.explain_video(model, video, "saliency", frame_step=30)
    with pytest.raises(InputError, match="frame_step 12 keeps 1 of the 11 frames of the video range"):
        vx.explain_video(model, video, "saliency", frame_step=12, start="13")
    assert list(vx.explain_video(model, video, "saliency", frame_step=12).frame_indices) == [0, 12]


def test_sliding_windows_refuse_a_frame_step_that_keeps_one_frame_as_explain_video_does(tmp_path, model):
    """A 2-frame file with frame_step=3 gave one window of frame #0 four times (a still picture as a
    video) where explain_video refused; explain_video explained that window before refusing it. Now
    the windows refuse it, of a file or a clip, before any window: explain_video calls no method."""
    two = write_video(np.stack([np.full((16, 16, 3), v, np.uint8) for v in (0, 200)]), tmp_path / "two.mp4", fps=8)
    message = "frame_step 3 keeps 1 of the 2 frames of the video; a video classifier needs a moving clip"
    with pytest.raises(InputError, match=message):
        next(sliding_windows(two, 4, frame_step=3))
    with pytest.raises(InputError, match=message):
        next(sliding_windows(vx.read_video(two), 4, frame_step=3))
    explained = []
    with pytest.raises(InputError, match=message):
        vx.explain_video(model, two, "saliency", frame_step=3, on_window=explained.append)
    assert explained == []
    with pytest.raises(InputError, match=message):
        vx.explain_video(model, vx.read_video(two), "saliency", frame_step=3)
    # frames the step keeps, or a window of one frame (a stream's reading), are windows as before
    assert [w.indices.tolist() for w in sliding_windows(two, 4, frame_step=1)] == [[0, 1, 1, 1]]
    assert [w.indices.tolist() for w in sliding_windows(two, 1, frame_step=3)] == [[0]]

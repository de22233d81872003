"""Interlaced video (DV, broadcast MPEG-2, 1080i H.264) is read deinterlaced, as players show it.

The clips are made of fields whose content is known: a bright square moving 3 pixels per field,
the two fields of frame k sampled at field times 2k and 2k + 1, woven in the order the frames
declare (top or bottom field first). A reader that deinterlaces gives frame k close to the
scene at its first field's time; one that weaves gives both positions, combed a line apart.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import av
import av.filter
import numpy as np
import pytest

from test_hdr import mux_x265
from videoxai.data import decoder
from videoxai.data import video as vio
from videoxai.data.deinterlace import progressive
from videoxai.data.keyframes import index_packets
from videoxai.data.video import read_video, sliding_windows

W, H, N = 96, 64, 150


def scene(t: int) -> np.ndarray:
    """``(H, W, 3)`` the scene at field time ``t``: a 16 × 24 square moving 3 pixels a field."""
    img = np.full((H, W, 3), 30, np.uint8)
    x = 4 + (3 * t) % 72
    img[20:44, x:x + 16] = 220
    return img


def woven(k: int, top_first: bool) -> np.ndarray:
    """Frame ``k`` as an interlaced camera stores it: the first field at time 2k, the second at 2k + 1."""
    first, second = scene(2 * k), scene(2 * k + 1)
    img = first.copy()
    img[int(top_first)::2] = second[int(top_first)::2]  # the second field's lines (odd ones after the top)
    return img


def write_interlaced(path: Path, codec: str, order: str, frames: int = N, size: tuple[int, int] = (W, H)) -> Path:
    """Encode woven frames as interlaced ``codec``; ``setfield`` flags each frame interlaced in
    ``order`` ("tff"/"bff"), which the encoder signals in the stream."""
    w, h = size
    graph = av.filter.Graph()
    source = graph.add("buffer", video_size=f"{w}x{h}", pix_fmt="yuv420p", time_base="1/25", pixel_aspect="1/1")
    setfield, sink = graph.add("setfield", order), graph.add("buffersink")
    source.link_to(setfield)
    setfield.link_to(sink)
    graph.configure()
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":  # MBAFF, a keyframe every 12 frames, B-frames (decode order differs)
            s.options = {"x264-params": "interlaced=1", "crf": "8", "g": "12", "keyint_min": "12",
                         "sc_threshold": "0", "bf": "2"}
        else:  # interlaced DCT and motion estimation
            s.options = {"flags": "+ildct+ilme", "g": "12"}
            s.bit_rate = 4_000_000
        for k in range(frames):
            img = woven(k, order == "tff")
            if (w, h) != (W, H):
                img = np.resize(img, (h, w, 3))
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = k
            graph.vpush(frame)
            frame = graph.vpull()
            frame.pts = k
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("interlaced")
    return {"h264-tff": write_interlaced(d / "tff.mp4", "libx264", "tff"),
            "h264-bff": write_interlaced(d / "bff.mp4", "libx264", "bff"),
            "mpeg2-tff": write_interlaced(d / "tff.mpg", "mpeg2video", "tff", frames=40),
            "mpeg2-bff": write_interlaced(d / "bff.ts", "mpeg2video", "bff", frames=40)}


def stored(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """The frames as the decoder gives them (woven) and their timestamps."""
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
        assert all(f.interlaced_frame for f in frames)
        return [f.to_ndarray(format="rgb24") for f in frames], [f.pts for f in frames]


def combing(img: np.ndarray) -> float:
    """Mean distance of each line from the average of its neighbours (the stripes of weaving)."""
    g = img.astype(np.float32).mean(-1)
    return float(np.abs(g[1:-1] - (g[:-2] + g[2:]) / 2).mean())


def clear_of_the_wrap(k: int) -> bool:
    """Whether the square stays on the same pass across frame ``k``'s two fields."""
    return 4 + (6 * k) % 72 < 60 and (3 * (2 * k + 1)) % 72 > 3


@pytest.mark.parametrize("kind", ["h264-tff", "h264-bff", "mpeg2-tff", "mpeg2-bff"])
def test_interlaced_frames_are_read_as_their_first_field_shows_the_scene(interlaced, kind):
    path = interlaced[kind]
    raw, _ = stored(path)
    clip = read_video(path)
    assert clip.num_frames == len(raw)  # a frame out per frame in
    np.testing.assert_allclose(clip.times, np.arange(len(raw)) / 25, atol=1e-9)
    ks = [k for k in range(len(raw)) if clear_of_the_wrap(k)]
    woven_error = np.mean([np.abs(raw[k].astype(float) - scene(2 * k)).mean() for k in ks])
    error = np.mean([np.abs(clip.frames[k].astype(float) - scene(2 * k)).mean() for k in ks])
    # woven: the second field's lines show the square 3 pixels on (2.2-2.4 levels a pixel);
    # deinterlaced: within the codec's loss of the scene at the first field's time (0.4-0.5)
    assert error < woven_error / 3, (error, woven_error)
    assert np.mean([combing(f) for f in clip.frames]) < np.mean([combing(f) for f in raw]) / 4


def test_the_order_the_frames_declare_decides_which_field_is_kept(interlaced):
    """Both files' frames hold the square at field times 2k and 2k + 1; read in the wrong order,
    frame k would show the scene at 2k + 1."""
    for kind in ("h264-tff", "h264-bff"):
        clip = read_video(interlaced[kind])
        ks = [k for k in range(clip.num_frames) if clear_of_the_wrap(k)]
        first = np.mean([np.abs(clip.frames[k].astype(float) - scene(2 * k)).mean() for k in ks])
        second = np.mean([np.abs(clip.frames[k].astype(float) - scene(2 * k + 1)).mean() for k in ks])
        assert first < second / 3, (kind, first, second)


def test_progressive_frames_pass_through_untouched(tmp_path):
    path = tmp_path / "p.mp4"
    vio.write_video(np.stack([scene(2 * k) for k in range(10)]), path, fps=25)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        assert not any(f.interlaced_frame for f in frames)
        out = list(progressive(iter(frames), s))
    assert len(out) == len(frames) and all(a is b for a, b in zip(out, frames))  # no filter, no copy


def test_a_stream_that_turns_interlaced_or_changes_size_keeps_every_frame_in_order(interlaced, tmp_path):
    """Progressive frames, then interlaced ones, then interlaced ones of another size: each
    frame comes out once, in order, with its own timestamp and in the stream's time base."""
    path = tmp_path / "p.mp4"
    vio.write_video(np.stack([scene(2 * k) for k in range(6)]), path, fps=25)
    small = write_interlaced(tmp_path / "small.mp4", "libx264", "tff", frames=8, size=(64, 32))
    with contextlib.ExitStack() as opened:
        streams = [opened.enter_context(av.open(str(p))).streams.video[0] for p in (path, interlaced["h264-tff"], small)]
        assert len({s.time_base for s in streams}) == 1
        frames = [f for s in streams for f in list(s.container.decode(s))[:20]]
        keys = [(f.width, f.height, f.pts, f.duration) for f in frames]
        out = list(progressive(iter(frames), streams[0]))
        assert [(f.width, f.height, f.pts, f.duration) for f in out] == keys
        assert all(a is b for a, b in zip(out[:6], frames[:6]))  # the progressive start: untouched
        assert not any(f.interlaced_frame for f in out)
        assert all(f.time_base == streams[0].time_base for f in out[6:])


@pytest.mark.parametrize("kwargs", [{"num_frames": 8}, {"num_frames": 6, "start": 0.96}, {"num_frames": 5, "start": 2.4}])
def test_seeking_reads_the_frames_reading_in_order_reads(interlaced, monkeypatch, kwargs):
    """Deinterlacing a frame looks at the one before: seeking decodes from the keyframe before
    that one, so a frame that is itself a keyframe (24 at 0.96 s, 60 at 2.4 s) is the same."""
    path = interlaced["h264-tff"]
    with av.open(str(path)) as c:
        index = index_packets(c, c.streams.video[0])
    assert index.lead == 1 and index.key[24] and index.key[60]
    used = []
    seeking = vio._read_seeking
    monkeypatch.setattr(vio, "_read_seeking", lambda *a, **k: used.append(seeking(*a, **k)) or used[-1])
    clip = read_video(path, **kwargs)
    assert used[0] is not None
    windows = [(w.indices.copy(), w.frames.copy()) for w in sliding_windows(path, 4, 4, start=kwargs.get("start"))]
    monkeypatch.setattr(vio, "_read_seeking", lambda *a, **k: None)
    monkeypatch.setattr(decoder, "start_at", lambda *a, **k: None)  # from the first frame, in order
    in_order = read_video(path, **kwargs)
    np.testing.assert_array_equal(clip.indices, in_order.indices)
    np.testing.assert_array_equal(clip.frames, in_order.frames)
    for (i, f), w in zip(windows, sliding_windows(path, 4, 4, start=kwargs.get("start"))):
        np.testing.assert_array_equal(i, w.indices)
        np.testing.assert_array_equal(f, w.frames)
    assert not any(combing(f) > 1.5 for f in clip.frames)  # deinterlaced (woven: about 5.4)


@pytest.mark.parametrize("suffix, field_order", [(".mp4", 1), (".webm", 0)])
def test_a_stream_that_cannot_be_interlaced_seeks_as_before(tmp_path, suffix, field_order):
    """H.264 that its header says is progressive, and VP9 (no interlaced coding; its field order
    is unknown, 0): no frame decoded before a wanted one."""
    path = tmp_path / f"p{suffix}"
    vio.write_video(np.stack([scene(2 * k) for k in range(10)]), path, fps=25)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.field_order == field_order
        assert index_packets(c, s).lead == 0


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="FFmpeg without libx265")
def test_hevc_fields_are_not_deinterlaced_again(tmp_path):
    """FFmpeg decodes field-coded HEVC into one frame per field, flagged interlaced: no two
    fields are woven in it, so bwdif would only blur it (and its seeking needs no lead)."""
    path = tmp_path / "fields.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx265", rate=25, options={"x265-params": "log-level=error:interlace=tff:bframes=0"})
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for k in range(6):
            frame = av.VideoFrame.from_ndarray(woven(k, True), format="rgb24").reformat(format="yuv420p")
            frame.pts = k
            mux_x265(out, s.encode(frame))
        mux_x265(out, s.encode())
    raw, _ = stored(path)  # every frame flagged interlaced
    np.testing.assert_array_equal(read_video(path).frames, np.stack(raw))
    with av.open(str(path)) as c:
        assert index_packets(c, c.streams.video[0]).lead == 0


def test_frames_too_small_to_deinterlace_are_read_as_stored(tmp_path):
    """bwdif takes no plane under 3 lines (16 x 4 in 4:2:0: chroma 8 x 2); configuring it failed
    with EINVAL, which the reader took for a frame over the pixel limit."""
    path = write_interlaced(tmp_path / "tiny.mp4", "libx264", "tff", frames=5, size=(16, 4))
    raw, _ = stored(path)
    clip = read_video(path)
    np.testing.assert_array_equal(clip.frames, np.stack(raw))


def test_dv_and_stream_urls_are_deinterlaced(interlaced, tmp_path):
    """DV (every frame interlaced, the field order unknown to the container) and a stream read
    through its URL (the stream client's path) come out deinterlaced too."""
    from videoxai.serve.client import video_frames

    path = tmp_path / "clip.dv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("dvvideo", rate=25)
        s.width, s.height, s.pix_fmt = 720, 576, "yuv420p"
        for k in range(4):
            img = np.resize(woven(k, False), (576, 720, 3))
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.field_order == 0
    raw, _ = stored(path)
    clip = read_video(path)
    assert clip.num_frames == 4
    assert np.mean([combing(f) for f in clip.frames]) < np.mean([combing(f) for f in raw]) / 3
    src = interlaced["mpeg2-bff"]
    streamed = np.stack(list(video_frames(f"async:file:{src}")))
    np.testing.assert_array_equal(streamed, read_video(src).frames)

"""Video files as an independent tester makes them: long streams, odd timestamps, odd pixels and
odd names, read through ``vx.read_video``, ``sliding_windows``, ``explain_video`` and ``folder:``."""

from __future__ import annotations

import os
import re
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from videoxai.data.video import probe, read_video, sliding_windows
from videoxai.errors import VideoReadError


def _encode(path: Path, count: int, *, fmt: str | None = None, size: int = 16, rate: int = 25) -> Path:
    """``count`` grey frames, frame ``k`` of level ``k % 256``, H.264 in ``fmt`` (by suffix if None)."""
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream("libx264", rate=rate)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        rgb = np.zeros((size, size, 3), np.uint8)
        for k in range(count):
            rgb[...] = k % 256
            out.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(s.encode())
    return path


def _peak_bytes(path: Path, num_frames: int) -> int:
    """The peak of Python allocations while every window of ``path`` is read and let go."""
    tracemalloc.start()
    try:
        for _ in sliding_windows(path, num_frames):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_windows_of_a_stream_without_timestamps_hold_no_more_for_a_longer_video(tmp_path):
    """A raw .h264 stream has no timestamps: its windows kept a time for every frame read (about 90
    bytes a frame, 0.7 MiB for 8 000 frames, growing with the video), where a timed file's windows
    drop them as they go."""
    short = _encode(tmp_path / "short.h264", 400, fmt="h264")
    long = _encode(tmp_path / "long.h264", 2000, fmt="h264")
    _peak_bytes(short, 8)   # imports and caches, once
    grown = _peak_bytes(long, 8) - _peak_bytes(short, 8)
    assert grown < 32 * 1024, f"reading 1600 more frames held {grown} bytes more"


def test_a_picture_whose_name_holds_a_percent_pattern_is_that_file_not_its_numbered_neighbours(tmp_path):
    """FFmpeg's image demuxer takes 'shot%d.png' for a numbered sequence: beside shot0.png …
    shot2.png it was read as those three pictures, a 3-frame video of other files, and explained."""
    from PIL import Image

    for k in range(3):
        Image.fromarray(np.full((16, 16, 3), 50 * k, np.uint8)).save(tmp_path / f"shot{k}.png")
    given = tmp_path / "shot%d.png"
    Image.fromarray(np.full((16, 16, 3), 250, np.uint8)).save(given)
    assert probe(given)["frames"] == 1
    with pytest.raises(VideoReadError, match=r"shot%d\.png: the file decodes to 1 frame \(a still picture\)"):
        read_video(given)
    with pytest.raises(VideoReadError, match=r"the file decodes to 1 frame"):
        next(sliding_windows(given, 4))
    assert sliding_windows(given, 1).__next__().frames[0, 0, 0].tolist() == [250, 250, 250]


def test_a_gif_without_delays_plays_at_the_rate_its_frames_are_shown(tmp_path):
    """A GIF saved with delays of 0 (frame by frame tools, Pillow's duration=0) is shown 0.1 s a
    frame, and FFmpeg times its frames so; its rate was FFmpeg's length without the last frame's
    delay, 5 frames over 0.4 s, 12.5 fps: overlays and the report played it 25 % fast."""
    from PIL import Image

    pictures = [Image.fromarray(np.full((16, 16, 3), 40 * k, np.uint8)) for k in range(5)]
    path = tmp_path / "no_delays.gif"
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=0, loop=0)
    clip = read_video(path)
    np.testing.assert_allclose(clip.times, [0, 0.1, 0.2, 0.3, 0.4], atol=1e-9)
    assert clip.fps == pytest.approx(10) and probe(path)["fps"] == pytest.approx(10)
    assert probe(path)["duration"] == pytest.approx(0.5)


@pytest.mark.parametrize("pix_fmt", ["gbrp16le", "gray16le"])
def test_sixteen_bit_rgb_and_grey_keep_every_level(tmp_path, pix_fmt):
    """FFV1 (archives), 16-bit PNG and TIFF store each level v as v * 257; FFmpeg's step down to
    8 bits divides by 256, so every level from 128 up was read one brighter (200 as 201)."""
    levels = np.arange(256, dtype=np.uint16).reshape(16, 16)   # every level once, stored as v * 257
    stored = np.repeat((levels * 257)[:, :, None], 3, axis=2).astype("<u2") if pix_fmt == "gbrp16le" \
        else (levels * 257).astype("<u2")
    path = tmp_path / f"{pix_fmt}.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=8)
        s.width = s.height = 16
        s.pix_fmt = pix_fmt
        for k in range(3):
            frame = av.VideoFrame.from_ndarray(stored, format="rgb48le" if stored.ndim == 3 else "gray16le")
            out.mux(s.encode(frame))
        out.mux(s.encode())
    clip = read_video(path)
    np.testing.assert_array_equal(clip.frames[:, :, :, 0], np.broadcast_to(levels, (3, 16, 16)))
    np.testing.assert_array_equal(clip.frames[..., 1], clip.frames[..., 0])
    assert read_video(path, max_side=8).frames.shape == (3, 8, 8, 3)


@pytest.mark.parametrize("pix_fmt, bits, chroma", [("yuv444p16le", 16, (16, 16)), ("yuv420p10le", 10, (8, 8)),
                                                   ("yuv422p12le", 12, (16, 8))])
def test_full_range_deep_yuv_keeps_every_level(tmp_path, pix_fmt, bits, chroma):
    """Full-range (JPEG range) YUV of more than 8 bits stores level v as v * (2**bits - 1) / 255:
    FFmpeg's step to 8-bit RGB scales by 2**(bits - 8), so every level from 128 up was read one
    brighter (a 16-bit grey 200, stored as 51400, as 201). Limited range is the test above's."""
    levels = np.arange(256).reshape(16, 16)
    planes = np.round(levels * ((1 << bits) - 1) / 255), np.full(chroma, 1 << (bits - 1))
    path = tmp_path / f"full_{pix_fmt}.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=8)
        s.width = s.height = 16
        s.pix_fmt = pix_fmt
        s.codec_context.color_range = 2
        for _ in range(2):
            frame = av.VideoFrame(16, 16, pix_fmt)
            frame.color_range = 2
            for plane, values in zip(frame.planes, (planes[0], planes[1], planes[1])):
                rows = np.zeros((values.shape[0], plane.line_size // 2), "<u2")
                rows[:, :values.shape[1]] = values
                plane.update(rows.tobytes())
            out.mux(s.encode(frame))
        out.mux(s.encode())
    clip = read_video(path)
    for channel in range(3):
        np.testing.assert_array_equal(clip.frames[:, :, :, channel], np.broadcast_to(levels, (2, 16, 16)))
    small = read_video(path, max_side=8).frames[0, :, :, 0].astype(int)  # shrunk: the levels averaged
    assert np.abs(small - levels.reshape(8, 2, 8, 2).mean((1, 3))).max() <= 1


def test_a_camcorder_dv_file_plays_at_its_frame_rate_not_its_clock(tmp_path):
    """FFmpeg's DV demuxer gives 60000 as the average rate (its 1/60000 s clock): a 29.97 fps DV
    file said fps 60000, and its overlays were written at 60000 fps; its frames are 1001/30000 s
    apart."""
    try:
        av.codec.Codec("dvvideo", "w")
    except (av.FFmpegError, ValueError):
        pytest.skip("this FFmpeg build has no DV encoder")
    path = tmp_path / "camcorder.dv"
    with av.open(str(path), "w", format="dv") as out:
        s = out.add_stream("dvvideo", rate=Fraction(30000, 1001))
        s.width, s.height, s.pix_fmt = 720, 480, "yuv411p"
        for k in range(6):
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((480, 720, 3), 40 * k, np.uint8), format="rgb24")))
        out.mux(s.encode())
    clip = read_video(path)
    assert clip.fps == pytest.approx(30000 / 1001) and probe(path)["fps"] == pytest.approx(30000 / 1001)
    np.testing.assert_allclose(clip.times, np.arange(6) * 1001 / 30000, atol=1e-6)
    np.testing.assert_allclose(clip.frames.reshape(6, -1).mean(1), 40 * np.arange(6), atol=3)


def test_a_video_track_without_a_frame_is_named_empty_not_undecodable(tmp_path):
    """An mkv whose video track holds no frame (a recording stopped before its first, sound only)
    was "the video has no decodable frame", as if its frames were corrupt."""
    path = tmp_path / "stopped.mkv"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=8000)
        for k in range(5):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 8000, k * 1024
            out.mux(sound.encode(samples))
        out.mux(sound.encode())
    said = r"stopped\.mkv: its video stream holds no frame \(a recording that stopped before its first frame\?\)"
    for read in (lambda: read_video(path), lambda: read_video(path, 8), lambda: next(sliding_windows(path, 4))):
        with pytest.raises(VideoReadError, match=said):
            read()


def test_a_device_or_a_named_pipe_is_named_so_by_the_readers(tmp_path):
    # read_video('/dev/zero') and a named pipe (a size of 0) said "the file is empty"
    import os

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        for read in (read_video, probe, lambda p: next(sliding_windows(p, 4))):
            with pytest.raises(VideoReadError, match="is not a regular file \\(a device, a pipe or a socket\\)"):
                read(path)


def test_positions_and_method_options_written_with_other_digits_are_refused_as_the_cli_refuses_them(tmp_path):
    """Python reads '٣' as 3 and '２.5' as 2.5: ``read_video(start="٣")`` started at frame 3 and a
    method option given as text (JSON from the service, a spec) took '٣٠' for 30, while the
    command line refused both. One check (videoxai.options.digits) words every refusal."""
    from videoxai.options import OptionError, parse_options
    from videoxai.options.declaration import Option

    path = _encode(tmp_path / "v.mp4", 8)
    reason = "holds the digit '٣' (arabic-indic digit three); write numbers with the digits 0-9"
    for kwargs in ({"start": "٣"}, {"end": "0:0٣"}, {"start": "1", "end": "٣s"}):
        with pytest.raises(VideoReadError, match=re.escape(f"{path}: ")) as e:
            read_video(path, 4, **kwargs)
        assert str(e.value).endswith(reason), e.value
        with pytest.raises(VideoReadError, match=re.escape(reason)):
            next(iter(sliding_windows(path, 4, **kwargs)))
    assert read_video(path, 2, start="3").indices.tolist() == [3, 7]  # 0-9 as before
    declared = {"n_samples": Option("n_samples", int | None, None), "p_keep": Option("p_keep", float, 0.5),
                "layers": Option("layers", list[int], [1])}
    for name, value in [("n_samples", "٣٠"), ("p_keep", "0.٣"), ("layers", "[1, ٣]")]:
        with pytest.raises(OptionError, match=re.escape(f"method 'rise': option {name} must be ")) as e:
            parse_options(declared, {name: value}, "method 'rise'", defaults=False)
        assert str(e.value).endswith(f"got {value!r}, which {reason}"), e.value
    assert parse_options(declared, {"n_samples": "30", "p_keep": "0.3", "layers": "[1, 3]"}, "rise") == \
        {"n_samples": 30, "p_keep": 0.3, "layers": [1, 3]}


@pytest.mark.parametrize("name, body", [
    ("stream.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n"),
    ("list.m3u", "\ufeff#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n"),
])
def test_an_hls_playlist_is_refused_before_ffmpeg_follows_it(tmp_path, name, body):
    """FFmpeg reads a .m3u8 (or .m3u) HLS playlist as the video its segments make, other files it
    opens; a live one (no #EXT-X-ENDLIST, as a live stream's playlist is saved) it reloads for new
    segments forever: read_video never returned. Refused as the concat playlist is."""
    segment = _encode(tmp_path / "seg.ts", 8, fmt="mpegts")
    playlist = tmp_path / name
    playlist.write_text(body.format(segment=segment), encoding="utf-8")
    message = re.escape(f"{playlist}: an HLS playlist, not a video (it lists segments, other files or URLs); read a "
                        "segment, or give the stream's URL to `videoxai stream`")
    for read in (read_video, probe, lambda p: next(iter(sliding_windows(p, 4)))):
        with pytest.raises(VideoReadError, match=f"^{message}$"):
            read(playlist)


def test_pixels_stored_far_wider_than_tall_are_held_to_max_pixels_at_their_shown_size(tmp_path):
    """Frames come out at their display size; max_pixels was checked on the stored size only. A
    2 KB file of 256x256 frames whose pixels claim to be 100 times as wide as tall read as 78 MB
    of 25600x256 frames under max_pixels=1 000 000 (an 8192x8192 one: 20 GB a frame)."""
    from conftest import wide_pixels_video

    path = wide_pixels_video(tmp_path / "wide_pixels.mp4")
    assert path.stat().st_size < 4096 and (probe(path)["width"], probe(path)["height"]) == (25600, 256)
    message = re.escape(f"{path}: its frames are shown at 25600x256 (stored 256x256, pixels 100 as wide as tall), "
                        "over the limit of 1000000 pixels per frame; give max_side to read them smaller")
    for read in (lambda: read_video(path, max_pixels=1_000_000), lambda: read_video(path, 2, max_pixels=1_000_000),
                 lambda: next(iter(sliding_windows(path, 2, max_pixels=1_000_000)))):
        with pytest.raises(VideoReadError, match=f"^{message}$"):
            read()
    assert read_video(path, max_pixels=1_000_000, max_side=512).frames.shape == (3, 5, 512, 3)
    assert read_video(path).frames.shape == (3, 256, 25600, 3)  # within the default limit


def test_a_file_name_holding_a_newline_or_an_escape_is_named_on_one_line(tmp_path):
    """The errors naming a file printed its name as it was: a newline in it made a two-line error,
    an ESC [2J in it cleared the terminal; they escape what is unprintable, as repr does."""
    shown = f"{tmp_path}/a\\nb\\x1b[2J"
    missing, empty, text, video = (tmp_path / f"a\nb\x1b[2J{s}" for s in (".mp4", "_empty.mp4", "_text.mp4", "_ok.mp4"))
    empty.write_bytes(b"")
    text.write_bytes(b"\x00\x01 not a video at all " * 64)
    _encode(video, 4)
    for read, says in ((lambda: read_video(missing), f"{shown}.mp4: no such file"),
                       (lambda: read_video(empty), f"{shown}_empty.mp4: the file is empty"),
                       (lambda: read_video(text), f"{shown}_text.mp4: not a readable video file ("),
                       (lambda: read_video(video, num_frames=0), f"{shown}_ok.mp4: num_frames must be >= 1, got 0"),
                       (lambda: read_video(video, max_pixels=1), f"{shown}_ok.mp4: frame 0 ")):
        with pytest.raises(VideoReadError) as info:
            read()
        assert str(info.value).startswith(says) and "\n" not in str(info.value) and "\x1b" not in str(info.value)
    latin1 = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.mp4")  # a legal Linux name, not UTF-8
    with pytest.raises(VideoReadError, match=f"^{re.escape(str(tmp_path))}/caf\\\\xe9.mp4: no such file$"):
        read_video(latin1)


@pytest.mark.parametrize("name, codec, options", [
    ("cut.nut", "mpeg4", {"qscale": "2"}),
    ("cut.h264", "libx264", {"x264-params": "bframes=0"}),
])
def test_probe_counts_the_frames_read_of_a_file_cut_inside_its_last_frame(tmp_path, name, codec, options):
    """A NUT or raw H.264 file cut inside its last frame is read without it (1f360dc: the decoder
    marks it damaged), but probe counted it from the packets: 10 frames for the 9 read_video
    returns; the demux pass now leaves it out by the same rule (packets.decode)."""
    from videoxai.data.video import frame_times

    whole = tmp_path / f"whole{Path(name).suffix}"
    with av.open(str(whole), "w") as out:
        s = out.add_stream(codec, rate=25, options=options)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for rgb in np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8):
            out.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(s.encode())
    with av.open(str(whole)) as c:
        last = [p for p in c.demux(video=0) if p.size][-1]
    path = tmp_path / name
    path.write_bytes(whole.read_bytes()[:last.pos + last.size // 2])
    assert probe(whole)["frames"] == 10
    assert probe(path)["frames"] == len(read_video(path)) == 9
    times = frame_times(path)  # raw H.264 times no frame
    assert (times is None) if name.endswith(".h264") else np.allclose(times, np.arange(9) / 25)
    assert probe(path)["duration"] == pytest.approx(9 / 25)
    assert read_video(path, 3).indices.tolist() == [0, 4, 8]

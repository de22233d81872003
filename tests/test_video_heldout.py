"""Video files as they arrive from elsewhere: cut short by a download or a recorder, with headers
other tools left wrong, with streams and timestamps of unusual shapes."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest

from videoxai.data.video import frame_times, probe, read_video, sliding_windows
from videoxai.errors import VideoReadError


def _encode(path: Path, frames: np.ndarray, *, codec: str = "libx264", fmt: str | None = None, rate: int = 25,
            options: dict | None = None, container_options: dict | None = None) -> Path:
    """``frames`` (RGB) written with PyAV, frame ``k`` at ``k / rate`` s."""
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        s = out.add_stream(codec, rate=rate, options=options or {})
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for rgb in frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        out.mux(s.encode())
    return path


def _noise(t: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``t`` frames of noise: each is large enough to span many packets of any container."""
    return np.random.default_rng(seed).integers(0, 256, (t, size, size, 3), dtype=np.uint8)


#: H.264 with two B-frames between references, always: decoding order differs from display order
B_FRAMES = {"x264-params": "keyint=12:min-keyint=12:bframes=2:b-adapt=0:scenecut=0"}


def test_an_mkv_with_b_frames_cut_anywhere_is_whole_or_named_truncated(tmp_path):
    """An H.264 mkv download stopped partway decodes without an error to where it stops, and with
    B-frames that is a point in decoding order: cut inside its last Cluster it lost frame 46 of
    48 but kept 47, whose end is the end its header declares, and was read as 47 frames with
    ``indices`` and ``num_frames`` one off from frame 46 on (or a frame or two short, within the
    duration check's margin). Every cut now reads as the whole video's first frames, or fails
    saying the file is truncated and how many frames could be read."""
    frames = np.repeat((np.arange(48) * 5).astype(np.uint8), 32 * 32 * 3).reshape(48, 32, 32, 3)
    src = _encode(tmp_path / "whole.mkv", frames, options=B_FRAMES, container_options={"cluster_time_limit": "500"})
    whole = read_video(src)
    assert len(whole) == 48
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    seen, inside = {"whole": 0, "inside": 0, "duration": 0}, None
    for keep in range(len(data) // 2, len(data), 5):
        cut.write_bytes(data[:keep])
        try:
            clip = read_video(cut)
        except VideoReadError as e:
            m = re.search(r"truncated video: (the file ends inside its frames|its header says the video lasts).*; "
                          r"(\d+) frames could be read$", str(e))
            assert m, str(e)
            seen["inside" if "inside" in m.group(1) else "duration"] += 1
            assert 0 < int(m.group(2)) < 48
            inside = keep if "inside" in m.group(1) else inside
            continue
        assert clip.indices.tolist() == list(range(len(clip))), keep
        np.testing.assert_array_equal(clip.frames, whole.frames[:len(clip)])
        np.testing.assert_allclose(clip.times, np.arange(len(clip)) * 0.04)
        assert len(clip) == 48, f"cut at {keep} of {len(data)}: {len(clip)} frames read as a whole video"
        seen["whole"] += 1  # cut in the index after the frames: every frame is there
    assert all(seen.values()), seen
    cut.write_bytes(data[:inside])  # sampled or windowed, the same error
    for call in (lambda: read_video(cut, 8), lambda: list(sliding_windows(cut, 4)), lambda: probe(cut)):
        with pytest.raises(VideoReadError, match="cut.mkv: truncated video: the file ends inside its frames"):
            call()


def test_an_mpeg_ts_cut_on_a_packet_boundary_gives_only_whole_frames(tmp_path):
    """A recorder that stops (a DVB capture, a stream dump) writes whole TS packets, so its file
    ends on a 188-byte boundary, most often partway through a frame. FFmpeg decodes that frame
    from its first part (concealed: a mean error of 10-55 levels on noise) and it was read as the
    last frame, since only a cut inside a TS packet was known to be one. With audio between the
    video's packets, and Blu-ray's 192-byte packets, alike."""
    for name, audio, options, size in (("plain.ts", False, {}, 188), ("audio.m2ts", True, {"mpegts_m2ts_mode": "1"}, 192)):
        src = tmp_path / name
        frames = _noise(10)
        with av.open(str(src), "w", format="mpegts", options=options) as out:
            s = out.add_stream("libx264", rate=25, options={"crf": "10", "g": "5"})
            s.width = s.height = 32
            s.pix_fmt = "yuv420p"
            if audio:
                a = out.add_stream("aac", rate=8000, layout="mono")
            for k, rgb in enumerate(frames):
                out.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
                if audio:
                    sound = av.AudioFrame.from_ndarray(np.zeros((1, 320), np.float32), format="fltp", layout="mono")
                    sound.sample_rate, sound.pts = 8000, 320 * k
                    out.mux(a.encode(sound))
            out.mux(s.encode())
            if audio:
                out.mux(a.encode())
        whole = read_video(src)
        assert len(whole) == 10
        data = src.read_bytes()
        assert len(data) % size == 0
        cut, shorter = tmp_path / f"cut_{name}", set()
        for keep in range(len(data) - size, len(data) // 3, -size):
            cut.write_bytes(data[:keep])
            clip = read_video(cut)
            on_time = np.rint(clip.times / 0.04).astype(int)
            np.testing.assert_array_equal(clip.frames, whole.frames[on_time], err_msg=f"{name} cut at {keep}")
            assert on_time.tolist() == list(range(len(clip)))
            assert probe(cut)["frames"] == len(frame_times(cut)) == len(clip)
            shorter.add(len(clip))
        assert len(shorter) >= 4, shorter


def _with_header_count(src: Path, dst: Path, frames: int) -> Path:
    """``src`` (an AVI) with its video stream header's frame count (``strh``'s ``dwLength``, which
    FFmpeg reads) set to ``frames``, as a tool that rewrote the file without updating it leaves it."""
    data = bytearray(src.read_bytes())
    at = data.index(b"strh")  # its id, its size, then the stream's type
    assert data[at + 8:at + 12] == b"vids"
    data[at + 8 + 32:at + 8 + 36] = frames.to_bytes(4, "little")
    dst.write_bytes(bytes(data))
    return dst


def test_an_avi_whose_header_and_index_disagree_is_read_by_what_it_holds(tmp_path):
    """A whole AVI whose header says 60 frames (or 20) for the 30 its index lists and that
    decode: it failed as "truncated video: the container lists 60 frames but only 30 could be
    decoded" (the header was trusted), and ``probe`` said 20 for 20. It is read as its 30 frames,
    with a warning saying the header and the index disagree and which count was used; a file cut
    short is still named truncated."""
    from videoxai.data.video import uniform_indices

    src = _encode(tmp_path / "whole.avi", _noise(30), codec="mpeg4", rate=10)
    whole = read_video(src)
    assert len(whole) == 30
    for header in (60, 20):
        path = _with_header_count(src, tmp_path / f"header{header}.avi", header)
        with av.open(str(path)) as c:
            assert c.streams.video[0].frames == header  # FFmpeg reads the count we wrote
        said = rf"header{header}.avi: its AVI header says {header} frames but the file is whole and holds 30 " \
               r"\(its header and its index disagree.*read as the 30 frames it holds"
        with pytest.warns(UserWarning, match=said):
            every = read_video(path)
        np.testing.assert_array_equal(every.frames, whole.frames)
        with pytest.warns(UserWarning, match=said):
            clip = read_video(path, 8)
        np.testing.assert_array_equal(clip.indices, uniform_indices(30, 8))
        np.testing.assert_array_equal(clip.frames, whole.frames[clip.indices])
        with pytest.warns(UserWarning, match=said):
            assert [w.indices.tolist()[0] for w in sliding_windows(path, 10)] == [0, 10, 20]
        assert probe(path)["frames"] == 30
    # the frames after byte 2/3 are gone (and the index with them): truncated, as before
    cut = tmp_path / "cut.avi"
    cut.write_bytes((tmp_path / "header60.avi").read_bytes()[:src.stat().st_size * 2 // 3])
    for call in (read_video, probe):  # probe said 60 frames, as the header does
        with pytest.raises(VideoReadError, match=r"cut.avi: truncated video: the container lists 60 frames but only"):
            call(cut)


def _without_timestamps(src: Path, dst: Path, first: int, pid: int = 256) -> Path:
    """The MPEG-TS ``src`` with its first ``first`` video frames' PES headers saying they carry no
    timestamp (a capture started mid-stream, a broadcast remux): FFmpeg gives their packets none."""
    data = bytearray(src.read_bytes())
    for at in range(0, len(data), 188):
        if first == 0:
            break
        if ((data[at + 1] & 0x1F) << 8 | data[at + 2]) == pid and data[at + 1] & 0x40:
            start = at + (5 + data[at + 4] if data[at + 3] & 0x20 else 4)
            assert data[start:start + 3] == b"\0\0\1"
            data[start + 7] &= 0x3F  # PTS_DTS_flags: none
            first -= 1
    dst.write_bytes(bytes(data))
    return dst


def test_a_stream_whose_first_frames_have_no_timestamp_is_timed_from_its_first_frame(tmp_path):
    """An MPEG-TS whose first packets carry no timestamp: the first frame with one was taken as
    time 0, so every frame was timed one frame early (three, for three untimed frames) and a
    range picked the wrong frames: ``start=0.2, end=0.6`` at 25 fps gave frames 6-15, not 5-14,
    and ``start="5"`` began at frame 6."""
    frames = np.repeat((np.arange(20) * 10).astype(np.uint8), 32 * 32 * 3).reshape(20, 32, 32, 3)
    src = _encode(tmp_path / "whole.ts", frames, fmt="mpegts", options={"x264-params": "bframes=2:b-adapt=0"})
    for untimed in (1, 3):
        path = _without_timestamps(src, tmp_path / f"untimed{untimed}.ts", untimed)
        with av.open(str(path)) as c:
            assert [p.pts for p in c.demux(video=0)][:untimed + 1] == [None] * untimed + [3600 * (untimed + 2)]
        every = read_video(path)
        assert np.rint(every.frames.reshape(20, -1).mean(1) / 10).astype(int).tolist() == list(range(20))
        np.testing.assert_allclose(every.times, np.arange(20) * 0.04, atol=1e-9)
        ranged = read_video(path, 4, start=0.2, end=0.6)
        assert ranged.indices.tolist() == [5, 8, 11, 14]
        np.testing.assert_allclose(ranged.times, [0.2, 0.32, 0.44, 0.56], atol=1e-9)
        np.testing.assert_array_equal(ranged.frames, every.frames[ranged.indices])
        assert read_video(path, 2, start="5", end="7").indices.tolist() == [5, 6]
        assert [w.indices.tolist() for w in sliding_windows(path, 4, stride=4, start=0.2, end=0.36)] == [[5, 6, 7, 8]]


def test_an_animation_with_its_own_delay_per_frame_keeps_its_times_and_average_rate(tmp_path):
    """A GIF and an APNG (Pillow's, as browsers and chat apps make them) whose frames are shown
    0.02, 0.02 and 1 s: every frame's time is when it is shown, and the clip's rate is the
    animation's average, 3 frames in 1.04 s. The APNG's rate was FFmpeg's guess from its first
    delays, 1 fps: report and overlay videos played it for 3 s."""
    from PIL import Image

    frames = np.repeat(np.array([40, 120, 200], np.uint8), 32 * 32 * 3).reshape(3, 32, 32, 3)
    pictures = [Image.fromarray(f) for f in frames]
    for name in ("delays.gif", "delays.png"):
        path = tmp_path / name
        pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=[20, 20, 1000], loop=0)
        clip = read_video(path)
        np.testing.assert_allclose(clip.frames.reshape(3, -1).mean(1), [40, 120, 200], atol=2)
        np.testing.assert_allclose(clip.times, [0, 0.02, 0.04], atol=1e-9)
        assert clip.fps == pytest.approx(3 / 1.04), name
        info = probe(path)
        assert (info["frames"], info["duration"], info["fps"]) == (3, pytest.approx(1.04), pytest.approx(3 / 1.04))
        np.testing.assert_allclose(read_video(path, 6, start=0.01).times, [0.02] * 3 + [0.04] * 3, atol=1e-9)


def _every_reader_refuses(path, said: str) -> None:
    """``read_video`` whole and sampled, and ``sliding_windows``, each raise ``said``."""
    for call in (lambda: read_video(path), lambda: read_video(path, 8), lambda: list(sliding_windows(path, 4))):
        with pytest.raises(VideoReadError, match=said):
            call()


def test_an_mp4_with_b_frames_cut_a_frame_short_is_named_truncated(tmp_path):
    """An mp4 with its index first (``+faststart``, as web video is written) cut between two
    frames' data decodes without an error to where it stops, and with B-frames that loses frames
    in decoding order: one frame short, it was read as 47 frames missing frame 46 (``indices``
    one off from there, within the 2-frame margin of the count check); two short, as 46. The
    index says where each frame's data lies: a frame past the file's end means it was cut. A
    fragmented mp4 alike, where it was read as 47 frames (no count to check it by)."""
    frames = np.repeat((np.arange(48) * 5).astype(np.uint8), 32 * 32 * 3).reshape(48, 32, 32, 3)
    src = _encode(tmp_path / "whole.mp4", frames, options=B_FRAMES, container_options={"movflags": "+faststart"})
    assert len(read_video(src)) == 48
    with av.open(str(src)) as c:
        starts = sorted(p.pos for p in c.demux(video=0) if p.size)
    assert starts[0] > src.read_bytes().index(b"moov")
    cut = tmp_path / "cut.mp4"
    for lost in (1, 2):
        cut.write_bytes(src.read_bytes()[:starts[-lost]])
        said = rf"cut.mp4: truncated video: the container lists 48 frames but only {48 - lost} could be decoded " \
               rf"\(the file ends before the data of {lost} of them\)"
        _every_reader_refuses(cut, said)
    # fragmented (a live recording, DASH): no count but in each fragment's index, which says the same
    src = _encode(tmp_path / "fragments.mp4", frames, options=B_FRAMES,
                  container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
    assert len(read_video(src)) == 48
    with av.open(str(src)) as c:
        assert c.streams.video[0].frames == 0
        starts = sorted(p.pos for p in c.demux(video=0) if p.size)
    for lost in (1, 2):
        cut.write_bytes(src.read_bytes()[:starts[-lost]])
        said = rf"cut.mp4: truncated video: the file ends before the data of {lost} of the frames its index lists; " \
               rf"{48 - lost} could be decoded"
        _every_reader_refuses(cut, said)


def test_a_stream_without_timestamps_gives_no_times_whichever_reader(tmp_path):
    """A raw H.264 stream (``.h264``, a camera's or an encoder's elementary stream) has no
    timestamps: ``read_video`` gives ``times=None``, but its sliding windows said ``index / fps``
    as if the frames were shown then (a rate FFmpeg only guesses)."""
    frames = np.repeat((np.arange(10) * 20).astype(np.uint8), 32 * 32 * 3).reshape(10, 32, 32, 3)
    path = _encode(tmp_path / "camera.h264", frames, fmt="h264", options=B_FRAMES)
    with av.open(str(path)) as c:
        assert {p.pts for p in c.demux(video=0)} == {None}
    clip = read_video(path)
    assert clip.times is None and frame_times(path) is None
    assert np.rint(clip.frames.reshape(10, -1).mean(1) / 20).astype(int).tolist() == list(range(10))
    windows = list(sliding_windows(path, 4))
    assert [w.indices.tolist() for w in windows] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9]]
    assert [w.times for w in windows] == [None] * 3


def test_an_mpeg_ts_with_b_frames_cut_anywhere_is_read_as_the_frames_before_the_cut(tmp_path):
    """Broadcast H.264 has B-frames: stored in decoding order, a frame a B-frame refers forward
    to is stored before it and shown after it. A TS download cut inside frame 46 of 48 kept
    frame 47 and was read as 47 frames, the last shown a frame late and ``indices`` naming the
    frame after each from 46 on (``num_frames=8`` took frame 47 for 46); cut between two TS
    packets after a whole frame, alike. The frames shown after one the cut took are left out by
    every reader, and a whole file keeps every frame."""
    frames = np.repeat((np.arange(48) * 5).astype(np.uint8), 32 * 32 * 3).reshape(48, 32, 32, 3)
    src = _encode(tmp_path / "whole.ts", frames, fmt="mpegts", options=B_FRAMES)
    whole = read_video(src)
    assert len(whole) == 48
    data, cut, counts = src.read_bytes(), tmp_path / "cut.ts", set()
    # anywhere, and between two TS packets (as a recorder stops), where the last frame may be whole
    for keep in [*range(len(data) // 2, len(data), 401), *range(len(data) - 188 * 12, len(data) + 1, 188)]:
        cut.write_bytes(data[:keep])
        clip = read_video(cut)
        assert np.rint(clip.times / 0.04).astype(int).tolist() == list(range(len(clip))), keep
        np.testing.assert_array_equal(clip.frames, whole.frames[:len(clip)])
        assert probe(cut)["frames"] == len(frame_times(cut)) == len(clip)
        sampled = read_video(cut, 8)
        np.testing.assert_array_equal(sampled.frames, whole.frames[sampled.indices])
        np.testing.assert_allclose(sampled.times, sampled.indices * 0.04, atol=1e-9)
        counts.add(len(clip))
    assert len(counts) > 10 and 48 in counts


def test_a_file_url_of_a_cut_video_is_read_as_the_file_is(tmp_path):
    """``videoxai stream file:///…/cut.mp4`` (and ``video_frames``, which it reads with) opened a
    ``file:`` URL as a stream, which is decoded without the checks a file's reading makes: an mp4
    cut a frame short streamed as 47 frames without a word, where ``read_video`` says it is
    truncated. A ``file:`` URL names a file, and is read as one."""
    from videoxai.serve.client import source_fps, video_frames

    frames = np.repeat((np.arange(48) * 5).astype(np.uint8), 32 * 32 * 3).reshape(48, 32, 32, 3)
    src = _encode(tmp_path / "whole.mp4", frames, options=B_FRAMES, container_options={"movflags": "+faststart"})
    with av.open(str(src)) as c:
        last = max(p.pos for p in c.demux(video=0) if p.size)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[:last])
    said = "cut.mp4: truncated video: the container lists 48 frames but only 47 could be decoded"
    for url in (f"file:{cut}", f"file://{cut}"):  # file:/tmp/… and file:///tmp/…, as FFmpeg reads both
        with pytest.raises(VideoReadError, match=said):
            list(video_frames(url))
        assert source_fps(url) == pytest.approx(25.0)
    streamed = np.stack(list(video_frames(f"file://{src}")))  # a whole file streams whole
    np.testing.assert_array_equal(streamed, read_video(src).frames)


def test_an_mpeg_program_stream_with_b_frames_cut_anywhere_is_read_as_the_frames_before_the_cut(tmp_path):
    """A program stream packs small frames several to a PES packet, and only the first frame a
    packet begins carries a time (FFmpeg guesses the others' from the frames that follow). Cut
    with B-frames, frames were read in the place of others: an H.264 .mpg cut inside a packet
    showed the P-frame decoded before two lost B-frames as the first of them (two cuts in three
    read wrong), an MPEG-2 one cut between two packs (a DVD title's 1 GiB pieces, a recorder
    stopped there) or inside a pack header decoded the frame that goes on in the next pack
    concealed, or timed its P-frame in a lost B-frame's place. Every cut now reads as the whole
    file's first frames, whichever reader."""
    for codec, options, step in (("mpeg2video", {"bf": "2", "g": "12", "qscale": "4"}, 457),
                                 ("libx264", B_FRAMES, 613)):
        src = _encode(tmp_path / f"{codec}.mpg", _noise(48), codec=codec, fmt="mpeg", options=options)
        whole = read_video(src)
        assert len(whole) == 48
        data, cut = src.read_bytes(), tmp_path / "cut.mpg"
        packs = range(2048, len(data), 4096)  # between two packs, in a pack header, just after
        for keep in sorted({*range(len(data) // 3, len(data), step), *packs, *[k + 6 for k in packs],
                            *[k + 13 for k in packs], *[k + 40 for k in packs]}):
            cut.write_bytes(data[:keep])
            try:
                clip = read_video(cut)
            except VideoReadError as e:  # cut in its first frames: one left
                assert "decodes to 1 frame" in str(e) and keep < 3000, (codec, keep)
                continue
            assert clip.indices.tolist() == list(range(len(clip))) and len(clip) < 48, (codec, keep)
            np.testing.assert_array_equal(clip.frames, whole.frames[:len(clip)], err_msg=f"{codec} cut at {keep}")
            np.testing.assert_allclose(clip.times, whole.times[:len(clip)])
            assert probe(cut)["frames"] == len(clip)
            sampled = read_video(cut, 8)
            np.testing.assert_array_equal(sampled.frames, whole.frames[sampled.indices])


def _clusters(path: Path) -> list[int]:
    """Where each Cluster of a Matroska file begins, and where the last one ends."""
    from videoxai.data.matroska import CLUSTER, _element

    with open(path, "rb") as f:
        _, data, length = _element(f, 0)
        _, pos, length = _element(f, data + length)  # the Segment's data
        starts, end = [], None
        while (element := _element(f, pos)) is not None and element[2] is not None:
            starts += [pos] if element[0] == CLUSTER else []
            pos = element[1] + element[2]
            end = pos if element[0] == CLUSTER else end
    return starts + [end]


def test_an_mkv_cut_between_two_clusters_is_named_truncated(tmp_path):
    """A download of an mkv that stops between two Clusters ends between two elements, and its
    header's duration was the only check: losing a last Cluster of 2 frames (or of 2 % of a
    longer video) passed its margin, and the file read as a whole video 2 frames shorter. The
    SeekHead places the index (Cues) after the Clusters: a file ending before it lost frames."""
    frames = np.repeat((np.arange(50) * 5).astype(np.uint8), 32 * 32 * 3).reshape(50, 32, 32, 3)
    src = _encode(tmp_path / "whole.mkv", frames, options=B_FRAMES, container_options={"cluster_time_limit": "400"})
    assert len(read_video(src)) == 50
    *starts, end = _clusters(src)
    assert len(starts) > 3
    cut = tmp_path / "cut.mkv"
    for keep in starts[1:]:
        cut.write_bytes(src.read_bytes()[:keep])
        _every_reader_refuses(cut, rf"cut.mkv: truncated video: the file ends inside its frames, at byte {keep} of "
                                   rf"the {src.stat().st_size} its header declares; \d+ frames could be read")
    # cut after the last Cluster (before the index, in it, or in the tags after it): every frame is there
    for keep in (end, end + 10, len(src.read_bytes()) - 10):
        cut.write_bytes(src.read_bytes()[:keep])
        np.testing.assert_array_equal(read_video(cut).frames, read_video(src).frames)


def _shown_late(path: Path, count: int) -> Path:
    """An MPEG-TS of ``count`` frames with B-frames, frame ``k`` at ``k / 25`` s but the last, shown
    5 frame lengths late."""
    from fractions import Fraction

    with av.open(str(path), "w", format="mpegts") as out:
        s = out.add_stream("libx264", rate=25, options=B_FRAMES)
        s.width, s.height, s.pix_fmt, s.time_base = 32, 32, "yuv420p", Fraction(1, 25)
        for k in range(count):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 5 * k, np.uint8), format="rgb24")
            frame.pts, frame.time_base = (k if k < count - 1 else k + 5), Fraction(1, 25)
            out.mux(s.encode(frame))
        out.mux(s.encode())
    return path


def test_a_whole_mpeg_ts_whose_last_frame_is_shown_late_keeps_it_or_says_why_not(tmp_path):
    """An MPEG-TS has no end to tell a whole file from one cut between two frames, so every one
    passes the check for frames shown after a gap (B-frames a cut took). A whole file whose last
    frame is shown late (a variable rate, a pause) was read without it, without a word. A cut
    takes only B-frames decoded after a frame it keeps: where as many came after the last frame
    as the stream puts after any, it stays, at its time; where fewer did, the file may be cut
    (the two look the same) and a warning says which frame was left out and why. Cut between two
    TS packets, never a hole."""
    for count, kept in ((46, 46), (48, 47)):  # its last frame's B-frames: as many as the stream's, fewer
        src = _shown_late(tmp_path / f"late{count}.ts", count)
        with av.open(str(src)) as c:  # PyAV's own decoding: every frame, the last 5 frame lengths late
            shown = [f.time for f in c.decode(video=0)]
        expected = np.asarray(shown) - shown[0]
        assert len(shown) == count and expected[-1] == pytest.approx((count + 4) / 25)
        if kept == count:
            clip = read_video(src)
        else:
            with pytest.warns(UserWarning, match=rf"late{count}.ts: its last frame left out: shown 5 frame lengths "
                                                 "later than the frame before it would end, after B-frames"):
                clip = read_video(src)
        assert len(clip) == kept and probe(src)["frames"] == kept and len(frame_times(src)) == kept
        np.testing.assert_allclose(clip.times, expected[:kept], atol=1e-9)
        assert np.rint(clip.frames[:, 0, 0, 0] / 5).astype(int).tolist() == list(range(kept))
    data, cut = src.read_bytes(), tmp_path / "cut.ts"
    for keep in range(len(data) - 188 * 12, len(data), 188):
        cut.write_bytes(data[:keep])
        part = read_video(cut)
        np.testing.assert_array_equal(part.frames, clip.frames[:len(part)], err_msg=f"cut at {keep}")
        np.testing.assert_allclose(part.times, expected[:len(part)], atol=1e-9)


def test_an_h264_program_stream_whose_start_code_straddles_two_pes_packets_keeps_its_times(tmp_path):
    """A PES packet's time belongs to the first frame that begins in it. Where a frame's start
    code is split between two PES packets, FFmpeg's parser gave the time to that frame too, and
    an H.264 .mpg read a P-frame at the time of the B-frame before it: times going back, a
    ``start=`` range and ``num_frames`` off by frames. Muxed with a filler of each length after
    the second frame, some layouts split a start code; every one reads as the whole video."""
    from fractions import Fraction

    encoded = []
    with av.open(str(tmp_path / "raw.h264"), "w", format="h264") as raw:
        s = raw.add_stream("libx264", rate=25, options={**B_FRAMES, "threads": "1"})
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for rgb in [*_noise(24), None]:
            packets = s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24") if rgb is not None else None)
            encoded += [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in packets]
    split, path = [], tmp_path / "filled.mpg"
    for filler in range(240):
        with av.open(str(path), "w", format="mpeg") as out:
            st = out.add_stream("h264", rate=25)
            st.width = st.height = 32
            for k, (data, pts, dts, key) in enumerate(encoded):
                packet = av.Packet(data + b"\0\0\1\x0c" + b"\xff" * filler + b"\x80" if k == 1 else data)
                packet.pts, packet.dts, packet.stream, packet.time_base = pts, dts, st, Fraction(1, 25)
                packet.is_keyframe = key
                out.mux(packet)
        with av.open(str(path)) as c:
            timed = [(p.pos, p.pts, p.dts) for p in c.demux(video=0) if p.size and p.pts is not None]
        if any(a == b for a, b in zip(timed, timed[1:])):  # FFmpeg gives one PES packet's time twice
            split.append(path.read_bytes())
    assert split
    for data in split[:3]:
        path.write_bytes(data)
        clip = read_video(path)
        np.testing.assert_allclose(clip.times, np.arange(24) * 0.04, atol=1e-9)
        best = [int(np.argmin(np.abs(_noise(24).astype(int) - f.astype(int)).mean((1, 2, 3)))) for f in clip.frames]
        assert best == list(range(24))
        assert read_video(path, 4, start=0.5).indices.tolist() == [13, 16, 20, 23]


def test_a_dvd_program_stream_is_whole_where_its_last_packet_is_stuffed_and_cut_where_not(tmp_path):
    """A DVD's packs are all 2048 bytes: its muxer fills the last one with stuffing in the last
    video packet's header, not a padding packet. Taken for a file cut after a full pack, a whole
    10-frame .vob was read as 7 frames. A pack ending with a video packet stuffed no more than
    the others is cut (a 1 GiB piece of a title), and read as the frames before the cut."""
    for codec, options in (("libx264", B_FRAMES), ("mpeg2video", {"bf": "2", "g": "12", "qscale": "4"})):
        src = _encode(tmp_path / f"{codec}.vob", _noise(10, 48), codec=codec, fmt="dvd", options=options)
        whole = read_video(src)
        assert len(whole) == 10 and probe(src)["frames"] == 10
        data, cut, read = src.read_bytes(), tmp_path / "cut.vob", 0
        for keep in range(4096, len(data), 2048):
            cut.write_bytes(data[:keep])
            try:
                clip = read_video(cut)
            except VideoReadError as e:  # cut in its first frames: one left, or none
                assert re.search("decodes to 1 frame|has no decodable frame", str(e)) and keep <= 8192, (codec, keep)
                continue
            assert len(clip) < 10
            np.testing.assert_array_equal(clip.frames, whole.frames[:len(clip)], err_msg=f"{codec} cut at {keep}")
            np.testing.assert_allclose(clip.times, whole.times[:len(clip)])
            read += 1
        assert read >= 3


@pytest.mark.parametrize("name, codec, options", [
    ("cut.flv", "flv1", {"qscale": "2"}),          # the demuxer flags the packet it read short
    ("cut.avi", "mpeg4", {"qscale": "2"}),         # (an AVI's index, at its end, is gone too)
    ("cut.nut", "mpeg4", {"qscale": "2"}),         # the decoder flags the frame it concealed
    ("cut.h264", "libx264", {"x264-params": "bframes=0"}),
])
def test_a_file_without_an_index_cut_inside_its_last_frame_is_read_without_that_frame(tmp_path, name, codec, options):
    """FLV, AVI, NUT and raw H.264 cut inside a frame (a download stopped partway) decode without
    an error, the frame the cut falls in with its missing part concealed: read as the whole
    frames before the cut and that damaged one, which ``num_frames`` always takes (noise frames:
    a mean error of 20-60 levels). It is left out, by every reader, as in an MPEG-TS or a GIF."""
    frames = _noise(10)
    whole = _encode(tmp_path / f"whole{Path(name).suffix}", frames, codec=codec, options=options)
    with av.open(str(whole)) as c:
        last = [p for p in c.demux(video=0) if p.size][-1]
    path = tmp_path / name
    path.write_bytes(whole.read_bytes()[:last.pos + last.size // 2])
    expected = read_video(whole).frames[:9]
    for clip in (read_video(path), read_video(path, 9)):
        assert clip.indices.tolist() == list(range(9))
        np.testing.assert_array_equal(clip.frames, expected)
    assert read_video(path, 2).indices.tolist() == [0, 8]
    np.testing.assert_array_equal(np.concatenate([w.frames for w in sliding_windows(path, 3)]), expected)
    # what is read, probe counts (an AVI's header count, 10, was taken as it is)
    assert probe(path)["frames"] == 9
    times = frame_times(path)
    assert (times is None) if name.endswith((".h264", ".hevc")) else (len(times) == 9)


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="FFmpeg without libx265")
def test_a_raw_hevc_cut_inside_its_last_frame_keeps_it_and_probe_counts_it(tmp_path):
    """Raw H.264 cut inside its last frame is read without it (the decoder flags the frame it
    concealed); FFmpeg's HEVC decoder flags nothing (packets._damaged says why this cannot be
    told reliably), so a raw HEVC stream keeps that frame, damaged. The readers and probe agree
    on it, and the frames before it are the whole file's. Should FFmpeg come to flag the frame,
    this fails on its flag: the readers then leave it out, and the README's note goes."""
    size = 64  # one row of coding units: no wavefront entry point to show the cut either
    frames = _noise(10, size=size)
    whole = _encode(tmp_path / "whole.hevc", frames, codec="libx265",
                    options={"x265-params": "bframes=0:log-level=error"})
    with av.open(str(whole)) as c:
        last = [p for p in c.demux(video=0) if p.size][-1]
    path = tmp_path / "cut.hevc"
    path.write_bytes(whole.read_bytes()[:last.pos + last.size // 2])
    with av.open(str(path)) as c:
        assert not any(f.is_corrupt for f in c.decode(video=0))  # no sign of the cut
    expected, clip = read_video(whole), read_video(path)
    assert probe(path)["frames"] == len(clip) == len(list(sliding_windows(path, 1))) == 10
    np.testing.assert_array_equal(clip.frames[:9], expected.frames[:9])
    assert np.abs(clip.frames[9].astype(int) - expected.frames[9]).mean() > 5  # damaged


@pytest.mark.skipif("libsvtav1" not in av.codecs_available or "libdav1d" not in av.codecs_available,
                    reason="FFmpeg without an AV1 encoder and decoder")
@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mkv"])
def test_av1_in_every_container_browsers_and_phones_use_is_read_whole_in_order(tmp_path, suffix):
    """AV1 (what YouTube, Netflix and newer phones and screen recorders write; PyAV's wheels
    decode it with dav1d since they dropped libaom): every frame, in order, at the encoder's
    quality, timed as written; sampling and sliding windows read it as other codecs."""
    frames = np.zeros((12, 64, 96, 3), np.uint8)
    for k in range(12):                                   # a bright square moving 6 px a frame
        frames[k] = 30 + 10 * k
        frames[k, 20:40, 6 * k:6 * k + 20] = 240
    path = _encode(tmp_path / f"av1{suffix}", frames, codec="libsvtav1", rate=12, options={"crf": "20", "preset": "8"})
    info = probe(path)
    assert (info["frames"], info["width"], info["height"], info["codec"]) == (12, 96, 64, "av1")   # the format, not the decoder
    assert info["fps"] == pytest.approx(12)
    clip = read_video(path)
    assert clip.frames.shape == frames.shape and np.abs(clip.frames.astype(int) - frames).mean() < 3
    centre = clip.frames[:, 30, :, 0].astype(int)
    assert [int(np.argmax(np.convolve(r, np.ones(20), "valid"))) for r in centre] == [6 * k for k in range(12)]
    assert frame_times(path) == pytest.approx(np.arange(12) / 12, abs=1e-3)
    assert list(read_video(path, 4).indices) == [0, 4, 7, 11]
    assert [list(w.indices) for w in sliding_windows(path, 6)] == [list(range(6)), list(range(6, 12))]

"""Video I/O on PyAV: round trips, uniform sampling, sliding windows, a real H.264 file, bad files."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest

import videoxai as vx
from videoxai.data import decoder
from videoxai.data import video as vio
from videoxai.data.keyframes import index_packets
from videoxai.data.video import probe, read_video, sliding_windows, uniform_indices, write_video
from videoxai.errors import InputError, VideoReadError

BUNNY = Path(__file__).parent / "data" / "bigbuckbunny.mp4"


def make_frames(t: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame k: flat grey level 20·k with a white square at x = 4·k (order and motion visible)."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    for k in range(t):
        frames[k] = 20 * k
        frames[k, 10:20, 4 * k:4 * k + 10] = 255
    return frames


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return make_frames()


@pytest.fixture(scope="module")
def videos(tmp_path_factory, frames) -> dict[str, Path]:
    """The same 12 frames at 10 fps in every writable format."""
    d = tmp_path_factory.mktemp("videos")
    exts = (".mp4", ".mkv", ".webm", ".avi", ".gif")
    return {ext: write_video(frames, d / f"clip{ext}", fps=10) for ext in exts}


# ----------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("ext,tol", [(".mp4", 2.0), (".mkv", 2.0), (".webm", 3.0), (".avi", 3.0),
                                     (".gif", 1.0)])
def test_round_trip(videos, frames, ext, tol):
    clip = read_video(videos[ext])
    assert clip.frames.shape == frames.shape and clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.indices, np.arange(12))
    assert clip.source == str(videos[ext])
    # GIF stores delays in 1/100 s: 100 ms per frame is exact
    assert clip.fps == pytest.approx(10.0, rel=1e-3)
    diff = np.abs(clip.frames.astype(np.int16) - frames)
    assert diff.mean() < tol
    # frame order survived: each frame's brightness matches its source frame, not a neighbour's
    np.testing.assert_allclose(clip.frames.mean(axis=(1, 2, 3)), frames.mean(axis=(1, 2, 3)), atol=3)


def test_writing_the_same_frames_gives_the_same_file_in_every_process(tmp_path):
    """Determinism: noisy 64-px clips (the kind the benchmark scripts write) encoded in fresh
    processes give byte-identical files. Before the RGB → YUV conversion moved out of PyAV's
    encode path, three runs of this gave two or three different files."""
    import hashlib
    import subprocess
    import sys

    code = ("import hashlib, sys, numpy as np\n"
            "from videoxai.data.video import write_video\n"
            "rng = np.random.default_rng(1); h = hashlib.md5()\n"
            "for i in range(40):\n"
            "    frames = np.clip(rng.normal(rng.uniform(90, 150), 12, (8, 64, 64, 3)), 0, 255).astype(np.uint8)\n"
            "    frames[2:5, 20:31, 20:31] = (230, 60, 60)\n"
            "    h.update(open(write_video(frames, sys.argv[1], fps=8), 'rb').read())\n"
            "print(h.hexdigest())\n")
    # each process fills fresh heap memory with its own byte (glibc's MALLOC_PERTURB_): an encoder
    # that reads memory it never wrote (x264's lookahead on narrow frames did) then gives other
    # bytes every time, not once in ~20 processes
    digests = {subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{run}.mp4")], capture_output=True,
                              text=True, check=True, timeout=120,
                              env={**os.environ, "MALLOC_PERTURB_": str(perturb)}).stdout.strip()
               for run, perturb in enumerate((0, 85, 170))}
    assert len(digests) == 1, digests
    assert hashlib.md5(b"").hexdigest() not in digests


def test_writing_the_same_frames_to_webm_twice_gives_the_same_file(tmp_path, frames):
    # the Matroska muxer drew a random track UID per file: a report's WebM overlays, and so its
    # report.html, differed between two identical runs
    first = write_video(frames, tmp_path / "a.webm", fps=10).read_bytes()
    assert write_video(frames, tmp_path / "b.webm", fps=10).read_bytes() == first


def test_probe(videos):
    for ext, p in videos.items():
        info = probe(p)
        assert (info["frames"], info["width"], info["height"]) == (12, 64, 48), ext
        assert info["fps"] == pytest.approx(10.0, rel=1e-3)
        assert info["duration"] == pytest.approx(1.2, abs=0.11)
    assert probe(videos[".mp4"])["codec"] == "h264"
    assert probe(videos[".webm"])["codec"] in ("vp9", "vp8")


def test_odd_size_is_padded_to_even_for_h264(tmp_path, frames):
    odd = frames[:, :33, :45]
    clip = read_video(write_video(odd, tmp_path / "odd.mp4", fps=10))
    assert clip.frames.shape == (12, 34, 46, 3)
    assert np.abs(clip.frames[:, :33, :45].astype(int) - odd).mean() < 2.5
    # padding repeats the last row and column (no black border)
    assert np.abs(clip.frames[:, 33].astype(int) - clip.frames[:, 32]).mean() < 2.5
    # VP9 takes odd sizes as they are
    assert read_video(write_video(odd, tmp_path / "odd.webm", fps=10)).frames.shape == (12, 33, 45, 3)


def test_write_accepts_float_frames_and_clips(tmp_path, frames):
    a = read_video(write_video(frames.astype(np.float32) / 255, tmp_path / "f.mp4", fps=10))
    b = read_video(write_video(vx.Clip(frames), tmp_path / "c.mp4", fps=10))
    np.testing.assert_array_equal(a.frames, b.frames)


# ----------------------------------------------------------------------------------------------
# sampling


def test_uniform_indices():
    np.testing.assert_array_equal(uniform_indices(12, 4), [0, 4, 7, 11])
    np.testing.assert_array_equal(uniform_indices(132, 8), [0, 19, 37, 56, 75, 94, 112, 131])
    np.testing.assert_array_equal(uniform_indices(1, 8), np.zeros(8))
    np.testing.assert_array_equal(uniform_indices(3, 6), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(uniform_indices(5, 5), np.arange(5))


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm", ".gif"])
def test_sampled_frames_are_the_frames_at_their_indices(videos, ext):
    # mkv/webm/gif report no frame count: the count comes from the demux pass
    full = read_video(videos[ext])
    clip = read_video(videos[ext], 4)
    np.testing.assert_array_equal(clip.indices, [0, 4, 7, 11])
    np.testing.assert_array_equal(clip.frames, full.frames[[0, 4, 7, 11]])
    assert clip.fps == full.fps


@pytest.mark.parametrize("count", [1, 5, 50])
def test_wrong_container_count_is_corrected(videos, monkeypatch, count):
    """If the demuxer's count is wrong, sampling is redone on the decoded count."""
    truth = read_video(videos[".mkv"])
    monkeypatch.setattr(vio, "packet_times", lambda path: [0.1 * k for k in range(count)])
    clip = read_video(videos[".mkv"], 4)
    np.testing.assert_array_equal(clip.indices, [0, 4, 7, 11])
    np.testing.assert_array_equal(clip.frames, truth.frames[[0, 4, 7, 11]])
    # reading every frame sizes its buffer from the count too: it must grow or shrink to fit
    every = read_video(videos[".mkv"])
    np.testing.assert_array_equal(every.frames, truth.frames)
    np.testing.assert_array_equal(every.indices, np.arange(12))


def test_time_range(videos):
    p = videos[".mp4"]
    clip = read_video(p, start=0.3, end=0.8)  # 10 fps: frames 3..7
    np.testing.assert_array_equal(clip.indices, [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(read_video(p, 3, start=0.3, end=0.8).indices, [3, 5, 7])
    np.testing.assert_array_equal(read_video(videos[".webm"], 3, start=0.3, end=0.8).indices, [3, 5, 7])
    np.testing.assert_array_equal(read_video(p, start=0.95).indices, [10, 11])


def test_time_range_as_text_reads_frames_and_seconds_as_explain_video_does(videos):
    # "3" is frame 3, as in vx.explain_video and `videoxai explain --start`; it was read as 3 s
    p = videos[".mp4"]
    np.testing.assert_array_equal(read_video(p, start="3", end="8").indices, [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(read_video(p, start="0.3s", end=0.8).indices, [3, 4, 5, 6, 7])
    windows = list(sliding_windows(p, 2, start="4", end="8"))
    assert [list(w.indices) for w in windows] == [[4, 5], [6, 7]]
    for start, match in (("1.5", "a frame number must be whole"), ("abc", "got 'abc'"), (True, "got True")):
        with pytest.raises(VideoReadError, match=match):
            read_video(p, start=start)
    # frame numbers are named as frames: "[4.95, inf) s" and "start (0.3 s) must be before end (0.2 s)" answered
    # --start 50 and --start 3 --end 2 on a 12-frame video
    for call, match in ((lambda: read_video(p, start="50"), "start frame 50 is past the video's last frame, 11"),
                        (lambda: list(sliding_windows(p, 2, start="50")), "start frame 50 is past"),
                        (lambda: read_video(p, start="3", end="2"), r"start \(frame 3, 0.3 s\) must be before end \(frame 2, 0.2 s\)"),
                        (lambda: read_video(p, start="3", end=0.1), r"start \(frame 3, 0.3 s\) must be before end \(0.1 s\)")):
        with pytest.raises(VideoReadError, match=match):
            call()


def test_max_side_keeps_aspect(videos):
    clip = read_video(videos[".mp4"], 3, max_side=32)
    assert clip.frames.shape == (3, 24, 32, 3)
    # a frame already small enough is left alone
    assert read_video(videos[".mp4"], 3, max_side=100).frames.shape == (3, 48, 64, 3)


def test_two_frame_video_is_sampled_with_repetition(tmp_path, frames):
    # a one-frame file is refused (test_a_file_of_one_frame_is_refused_with_what_to_do)
    p = write_video(frames[5:7], tmp_path / "two.mp4", fps=10)
    clip = read_video(p, 8)
    assert clip.frames.shape == (8, 48, 64, 3)
    np.testing.assert_array_equal(clip.indices, [0, 0, 0, 0, 1, 1, 1, 1])
    assert (clip.frames[:4] == clip.frames[0]).all() and (clip.frames[4:] == clip.frames[4]).all()
    assert not (clip.frames[0] == clip.frames[4]).all()


def test_real_h264_sample():
    info = probe(BUNNY)
    assert (info["frames"], info["width"], info["height"], info["codec"]) == (132, 1280, 720, "h264")
    assert info["fps"] == pytest.approx(25.0)
    clip = vx.read_video(BUNNY, num_frames=8)
    assert clip.frames.shape == (8, 720, 1280, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.indices, [0, 19, 37, 56, 75, 94, 112, 131])
    assert clip.fps == pytest.approx(25.0)
    assert clip.frames.std() > 20  # real picture content, not a blank decode


# ----------------------------------------------------------------------------------------------
# seeking to keyframes (a long video: a few frames without decoding all of them)


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory) -> Path:
    """300 frames of H.264 with a keyframe every 12 and up to 3 B-frames (decode order differs
    from presentation order); frame k has grey level k % 250 (its index, to the codec's loss)."""
    import av

    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"g": "12", "keyint_min": "12", "sc_threshold": "0", "bf": "3", "crf": "10"}
        for k in range(300):
            f = np.full((48, 64, 3), k % 250, np.uint8)
            f[10:20, k % 54:k % 54 + 10] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.mark.parametrize("kwargs", [{"num_frames": 8}, {"num_frames": 5, "start": 2.0},
                                    {"num_frames": 6, "start": 1.0, "end": 9.0}, {"num_frames": 3, "max_side": 32}])
def test_seeking_reads_the_frames_decoding_in_order_reads(gop_video, monkeypatch, kwargs):
    from videoxai.data.keyframes import seek_plan

    used = []
    seeking = vio._read_seeking
    monkeypatch.setattr(vio, "_read_seeking", lambda *a, **k: used.append(seeking(*a, **k)) or used[-1])
    clip = read_video(gop_video, **kwargs)
    assert used[0] is not None  # a keyframe every 12 frames: seeking decodes far less
    monkeypatch.setattr(vio, "_read_seeking", lambda *a, **k: None)
    monkeypatch.setattr(decoder, "start_at", lambda *a, **k: None)  # from the first frame, in order
    in_order = read_video(gop_video, **kwargs)
    np.testing.assert_array_equal(clip.indices, in_order.indices)
    np.testing.assert_array_equal(clip.frames, in_order.frames)
    assert clip.fps == in_order.fps
    grey = clip.frames[:, -clip.height // 3:, :, 0].astype(float).mean((1, 2))  # below the moving square
    np.testing.assert_allclose(grey, clip.indices % 250, atol=3)  # the frames *at* those indices
    if kwargs == {"num_frames": 8}:
        np.testing.assert_array_equal(clip.indices, uniform_indices(300, 8))
        import av

        with av.open(str(gop_video)) as c:
            index = index_packets(c, c.streams.video[0])
        assert seek_plan(index, clip.indices.tolist())[1] <= 8 * 12  # at most a GOP a frame, not 300


@pytest.mark.parametrize("start, end", [(8.0, None), (4.0, 6.5), (9.96, None)])
def test_a_late_range_starts_decoding_at_its_keyframe(gop_video, monkeypatch, start, end):
    seeks = []
    frames = decoder.Decoder.frames
    monkeypatch.setattr(decoder.Decoder, "frames", lambda self, s=None: seeks.append(s) or frames(self, s))

    def read() -> tuple[list, vx.Clip]:
        windows = [(w.indices.copy(), w.frames.copy()) for w in sliding_windows(gop_video, 8, 5, frame_step=2,
                                                                                 start=start, end=end)]
        return windows, read_video(gop_video, start=start, end=end)

    windows, every = read()
    assert seeks and all(s is not None and s.first == round(start * 25) for s in seeks)
    assert every.indices[0] == round(start * 25) and windows[0][0][0] == every.indices[0]
    monkeypatch.setattr(decoder, "start_at", lambda *a: None)  # decode from the first frame instead
    seeks.clear()
    windows_in_order, every_in_order = read()
    assert seeks == [None, None]
    np.testing.assert_array_equal(every.indices, every_in_order.indices)
    np.testing.assert_array_equal(every.frames, every_in_order.frames)
    assert len(windows) == len(windows_in_order)
    for (i, f), (j, g) in zip(windows, windows_in_order):
        np.testing.assert_array_equal(i, j)
        np.testing.assert_array_equal(f, g)


def test_seek_plan_decodes_on_when_the_keyframe_is_behind():
    from fractions import Fraction

    from videoxai.data.keyframes import PacketIndex, seek_plan

    key = np.zeros(30, bool)
    key[[0, 10, 20]] = True
    index = PacketIndex(np.arange(30) * 512, key, Fraction(1, 12800))
    # 5: seek to 0, decode 0..5; 7: decode on (6, 7); 25: seek to 20, decode 20..25
    assert seek_plan(index, [5, 7, 25]) == ([0, None, 20], 6 + 2 + 6)
    assert seek_plan(index, [12, 29]) == ([10, 20], 3 + 10)


# ----------------------------------------------------------------------------------------------
# sliding windows


def _windows(src, *args, **kwargs):
    return [(w.indices.tolist(), w.meta["padding"]) for w in sliding_windows(src, *args, **kwargs)]


def test_sliding_windows_counts_strides_and_padding(videos):
    p = videos[".mp4"]  # 12 frames
    assert _windows(p, 4) == [([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0), ([8, 9, 10, 11], 0)]
    assert _windows(p, 5) == [([0, 1, 2, 3, 4], 0), ([5, 6, 7, 8, 9], 0), ([10, 11, 11, 11, 11], 3)]
    # overlapping windows stop once the end has been reached
    assert _windows(p, 8, 3) == [(list(range(8)), 0), ([3, 4, 5, 6, 7, 8, 9, 10], 0),
                                 ([6, 7, 8, 9, 10, 11, 11, 11], 2)]
    assert _windows(p, 4, 8) == [([0, 1, 2, 3], 0), ([8, 9, 10, 11], 0)]  # gaps
    assert _windows(p, 3, frame_step=4) == [([0, 4, 8], 0)]
    assert _windows(p, 2, 1, frame_step=5) == [([0, 5], 0), ([5, 10], 0)]
    assert _windows(p, 20) == [(list(range(12)) + [11] * 8, 8)]  # shorter than one window


def test_sliding_windows_frames_and_clip_source(videos):
    p = videos[".mp4"]
    full = read_video(p)
    wins = list(sliding_windows(p, 5, 4))
    for k, w in enumerate(wins):
        assert w.frames.shape == (5, 48, 64, 3) and w.fps == pytest.approx(10.0)
        assert w.meta["window"] == k
        np.testing.assert_array_equal(w.frames, full.frames[w.indices])
    # the same windows from a clip in memory
    from_clip = list(vx.sliding_windows(full, 5, 4))
    assert [w.indices.tolist() for w in from_clip] == [w.indices.tolist() for w in wins]
    for a, b in zip(from_clip, wins):
        np.testing.assert_array_equal(a.frames, b.frames)


def test_sliding_windows_is_lazy(videos, monkeypatch):
    """Windows come out while the file is still being decoded."""
    decoded = []
    original = decoder.Decoder.frames

    def spy(self):
        for item in original(self):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(decoder.Decoder, "frames", spy)
    first = next(iter(sliding_windows(videos[".mp4"], 3)))
    assert first.indices.tolist() == [0, 1, 2]
    assert len(decoded) == 3


def test_sliding_windows_bad_arguments(videos):
    with pytest.raises(VideoReadError, match="clip.mp4"):
        sliding_windows(videos[".mp4"], 0)
    with pytest.raises(InputError, match="stride"):
        sliding_windows(vx.Clip(make_frames()), 4, stride=0)
    # a clip's windows kept its full size when max_side was given: silently ignored
    with pytest.raises(InputError, match="max_side applies to video files"):
        sliding_windows(vx.Clip(make_frames()), 4, max_side=16)


# ----------------------------------------------------------------------------------------------
# bad inputs


def _truncated(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * keep)])
    return dst


def _header_only(src: Path, dst: Path) -> Path:
    """An mp4 whose index (moov, written first) survives but whose frame data (mdat) is gone."""
    data = src.read_bytes()
    dst.write_bytes(data[:data.index(b"mdat") + 4])
    return dst


def _audio_only(dst: Path) -> Path:
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    return dst


@pytest.mark.parametrize("case,match", [
    ("missing", "no such file"),
    ("directory", "directory"),
    ("text", "not a readable video"),
    ("empty", "empty"),
    ("truncated", "truncated"),
    ("cut_early", "truncated"),
    ("no_frames", "no decodable frame"),
    ("audio", "no video stream"),
    # an mkv or webm cut short decodes without an error where it stops: it was read as a shorter
    # video; the sizes in its header (written first) tell (test_an_mkv_with_b_frames_cut_anywhere_*)
    ("mkv_cut", r"truncated video: the file ends inside its frames, at byte \d+ of the \d+ its header declares; "
                r"\d+ frames could be read"),
    ("webm_cut", r"truncated video: the file ends inside its frames, at byte \d+ of the \d+ its header declares"),
    # an animated WebP cut short: libwebp's animation decoder reads none of its frames
    ("webp_cut", r"truncated video: the file ends at byte \d+ of the \d+ its RIFF header declares"),
    # FFmpeg's tty demuxer draws a .txt file's characters: it was read as a 640x400 video
    ("notes_txt", "a text file, not a video"),
])
def test_bad_files(tmp_path, videos, case, match):
    path = {
        "missing": lambda: tmp_path / "missing.mp4",
        "directory": lambda: (tmp_path / "dir.mp4").mkdir() or tmp_path / "dir.mp4",
        "text": lambda: (tmp_path / "notes.mp4").write_text("not a video\n" * 20) and tmp_path / "notes.mp4",
        "empty": lambda: (tmp_path / "empty.mp4").write_bytes(b"") or tmp_path / "empty.mp4",
        "truncated": lambda: _truncated(videos[".mp4"], tmp_path / "cut.mp4", 0.9),
        "cut_early": lambda: _truncated(videos[".mp4"], tmp_path / "cut_early.mp4", 0.5),
        "no_frames": lambda: _header_only(videos[".mp4"], tmp_path / "header.mp4"),
        "audio": lambda: _audio_only(tmp_path / "sound.wav"),
        "mkv_cut": lambda: _truncated(videos[".mkv"], tmp_path / "cut.mkv", 0.8),
        "webm_cut": lambda: _truncated(videos[".webm"], tmp_path / "cut.webm", 0.8),
        "webp_cut": lambda: _truncated(_written(make_frames(), tmp_path / "whole.webp"), tmp_path / "cut.webp", 0.8),
        "notes_txt": lambda: (tmp_path / "notes.txt").write_text("not a video\n" * 60) and tmp_path / "notes.txt",
    }[case]()
    calls = (lambda: read_video(path), lambda: read_video(path, 4), lambda: list(sliding_windows(path, 4)))
    for call in calls:
        with pytest.raises(VideoReadError, match=match) as info:
            call()
        assert path.name in str(info.value)
        assert "Traceback" not in str(info.value)
        assert info.value.__cause__ is None  # no chained av exception


def _written(frames: np.ndarray, path: Path) -> Path:
    write_video(frames, path, fps=10)
    return path


def test_an_animated_webp_is_read_as_pillow_composites_it_timed_as_browsers_show_it(tmp_path):
    """FFmpeg decodes still WebP only (an animated one failed as invalid data, and was refused):
    it is read through Pillow, every reader alike — each frame as Pillow composites it, bit for
    bit; its frames timed by their delays, a delay of 10 ms or less shown 100 ms as browsers
    show it; its rate its frames over their whole length, as a GIF's."""
    from PIL import Image

    from videoxai.data.container import probe
    from videoxai.data.video import frame_times

    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)
    stored[3, :8] = stored[2, :8]                  # a frame half unchanged: libwebp stores the change
    path = tmp_path / "sticker.webp"
    pictures = [Image.fromarray(f) for f in stored]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=[100, 40, 250, 0, 100],
                     loop=0, lossless=True)
    with Image.open(path) as im:                                    # what Pillow decodes, composited
        decoded = []
        for k in range(im.n_frames):
            im.seek(k)
            decoded.append(np.asarray(im.convert("RGB")))
    clip = read_video(path)
    assert clip.frames.shape == (5, 16, 24, 3) and np.array_equal(clip.frames, np.stack(decoded))
    assert np.array_equal(clip.frames, stored)                      # lossless, as written
    assert frame_times(path) == pytest.approx([0, 0.1, 0.14, 0.39, 0.49])   # the 0 delay: 100 ms
    assert clip.fps == pytest.approx(5 / 0.59)
    info = probe(path)
    assert (info["frames"], info["codec"], info["container"], info["width"], info["height"]) == (5, "webp", "webp",
                                                                                                24, 16)
    assert info["duration"] == pytest.approx(0.59)
    assert list(read_video(path, 3).indices) == [0, 2, 4]
    assert list(read_video(path, start=0.12, end=0.45).indices) == [2, 3]   # by the frames' own times
    windows = list(sliding_windows(path, 2))
    assert [list(w.indices) for w in windows][:2] == [[0, 1], [2, 3]]
    assert np.array_equal(windows[1].frames, stored[2:4])
    with pytest.raises(vio.FrameTooLargeError, match=r"sticker.webp: its frames are 24x16, over the limit of 100 "):
        read_video(path, max_pixels=100)
    import videoxai.data.animated_webp as animated_webp

    animated_webp._converted.cache_clear()                          # decoded once for all its readers
    read_video(path), probe(path), list(sliding_windows(path, 2)), read_video(path, 3, max_pixels=None)
    assert animated_webp._converted.cache_info().misses == 1
    animated_webp._converted.cache_clear()
    with pytest.MonkeyPatch.context() as patch:                      # held in memory: bounded
        patch.setattr(animated_webp, "MAX_DECODED_BYTES", 5 * 16 * 24 * 3 - 1)
        with pytest.raises(VideoReadError, match=r"sticker.webp: an animated WebP of 5 frames of 24x16, more than"):
            read_video(path)


def test_write_video_s_animated_webp_reads_back(tmp_path):
    """``write_video`` writes animated WebP (lossy, for viewing); ``read_video`` reads it back."""
    frames = make_frames()
    clip = read_video(_written(frames, tmp_path / "overlay.webp"))
    assert clip.frames.shape == frames.shape and clip.fps == pytest.approx(10)
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3      # lossy, but the same pictures
    row = clip.frames[:, 15, :, 0].astype(int)                     # the square's row: its brightest
    brightest = [int(np.argmax(np.convolve(r, np.ones(10), "valid"))) for r in row]   # 10 columns
    assert brightest == [4 * k for k in range(12)]                  # move as written, in order


def test_a_video_in_a_folder_that_cannot_be_searched_is_one_clear_error(tmp_path, videos, monkeypatch):
    """A folder on the way the user may not enter: Path.exists() raised the PermissionError
    itself, a traceback from read_video, probe and sliding_windows. The operating system's answer
    is put in place of stat (mode 000 does not stop root, who runs the tests in CI)."""
    stat = Path.stat

    def refused(self, **kwargs):
        if self.parent == tmp_path / "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", refused)
    path = tmp_path / "locked" / "clip.mp4"
    for call in (lambda: read_video(path, 4), lambda: probe(path), lambda: next(sliding_windows(path, 4))):
        with pytest.raises(VideoReadError, match=r"clip\.mp4: cannot be read \(Permission denied\)$"):
            call()


def test_a_video_stream_in_a_codec_ffmpeg_does_not_know(tmp_path, frames):
    """An AVI whose FourCC FFmpeg does not know (a proprietary codec, a damaged header): PyAV gives
    its stream no decoder, and every reader failed with ``AttributeError: 'NoneType' object has
    no attribute 'name'``. Where another video stream can be decoded, that one is the video."""
    avi = write_video(frames, tmp_path / "clip.avi", fps=10).read_bytes()
    assert avi.count(b"FMP4") == 2  # the stream header's and the picture format's codec tag
    unknown = tmp_path / "unknown.avi"
    unknown.write_bytes(avi.replace(b"FMP4", b"ZZZZ"))
    for call in (lambda: read_video(unknown), lambda: read_video(unknown, 4), lambda: probe(unknown),
                 lambda: list(sliding_windows(unknown, 4))):
        with pytest.raises(VideoReadError, match="unknown.avi: its video stream is in a format FFmpeg cannot decode"):
            call()
    two = tmp_path / "two.mkv"
    import av

    with av.open(str(two), "w") as out:  # an undecodable track first, then the video
        tracks = []
        for size in (16, 24):
            s = out.add_stream("libx264", rate=10)
            s.width = s.height = size
            s.pix_fmt = "yuv420p"
            tracks.append(s)
        for k, rgb in enumerate(_numbered(6, 24, 24)):
            for s in tracks:
                out.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:s.height, :s.width]),
                                                            format="rgb24")))
        for s in tracks:
            out.mux(s.encode())
    data = two.read_bytes()
    two.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_UNKNOWN/X/ABC", 1))  # the first track's codec id
    clip = read_video(two)
    assert clip.frames.shape == (6, 24, 24, 3) and _numbers(clip) == list(range(6))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_frames": 0}, "num_frames must be >= 1"),
    ({"num_frames": -3}, "num_frames must be >= 1"),
    ({"num_frames": 2.5}, "num_frames must be a positive integer"),
    ({"start": 0.8, "end": 0.3}, "before end"),
    ({"start": 0.5, "end": 0.5}, "before end"),
    ({"start": -1.0}, "start must be"),
    ({"start": 5.0}, "no frame in the time range"),
    ({"max_side": 0}, "max_side"),
])
def test_bad_arguments(videos, kwargs, match):
    with pytest.raises(VideoReadError, match=match) as info:
        read_video(videos[".mp4"], **kwargs)
    assert "clip.mp4" in str(info.value)


def test_rates_a_format_cannot_time_are_refused_in_one_line(tmp_path, frames):
    """Matroska counts milliseconds (a .webm at 1e6 fps was written as 30 000 fps with every frame
    at time 0), FFmpeg's AVI muxer refused rates above 1 000 as 'Invalid argument', a GIF at
    0.001 fps failed with Pillow's OverflowError (its delays stop at 655.35 s) and a WebP at
    5e-5 fps with a RuntimeError; the limits are where each format's clock ends."""
    for suffix, fps, said in ((".webm", 1e6, r"a \.webm file times frames at most 1000 a second, got fps=1e\+06"),
                              (".mkv", 1001, r"a \.mkv file times frames at most 1000 a second"),
                              (".avi", 2000, r"a \.avi file times frames at most 1000 a second"),
                              (".gif", 0.001, r"a \.gif frame lasts 655\.35 s at most, got fps=0\.001"),
                              (".webp", 5e-5, r"a \.webp frame lasts 16777\.2 s at most")):
        with pytest.raises(InputError, match=f"cannot write .*x{suffix}: {said}"):
            write_video(frames, tmp_path / f"x{suffix}", fps=fps)
        assert not (tmp_path / f"x{suffix}").exists()
    # the fastest and slowest rates each format can time are written, and read back as written
    for suffix, fps in ((".webm", 1000), (".mkv", 1000), (".avi", 1000), (".mp4", 1e6)):
        info = probe(write_video(frames[:4], tmp_path / f"fast{suffix}", fps=fps))
        assert info["fps"] == pytest.approx(fps) and info["frames"] == 4, suffix
    assert probe(write_video(frames[:2], tmp_path / "slow.gif", fps=1 / 655))["duration"] == pytest.approx(1310)

def test_write_errors(tmp_path, frames):
    with pytest.raises(InputError, match="unknown video suffix"):
        write_video(frames, tmp_path / "x.flv")
    with pytest.raises(InputError, match=r"\(T, H, W, 3\)"):
        write_video(frames[..., 0], tmp_path / "x.mp4")
    with pytest.raises(InputError, match="fps"):
        write_video(frames, tmp_path / "x.mp4", fps=0)
    for quality in ("best", 18.9, True, 52):  # "best" was int()'s ValueError, 18.9 quality 18, True 1
        with pytest.raises(InputError, match=f"quality must be a whole number in \\[0, 51\\].*got {quality!r}"):
            write_video(frames, tmp_path / "x.mp4", quality=quality)
    assert write_video(frames, tmp_path / "q.mp4", quality=np.int64(20)).stat().st_size > 0
    # a file where a folder should be: mkdir's own words were "File exists: '…/notes'"
    (tmp_path / "notes").write_text("")
    for suffix in (".mp4", ".gif"):
        with pytest.raises(vx.VideoXAIError, match=r"cannot write .*notes/a/x\.\w+: .*notes is a file, not a folder"):
            write_video(frames, tmp_path / "notes" / "a" / f"x{suffix}")


def test_missing_encoder_is_a_clear_error(tmp_path, frames, monkeypatch):
    from videoxai.data import video_writer

    monkeypatch.setattr(video_writer, "_has_encoder", lambda name: name != "libx264")
    with pytest.raises(vx.VideoXAIError, match="no libx264 encoder"):
        write_video(frames, tmp_path / "x.mp4")


# ----------------------------------------------------------------------------------------------
# display rotation (phones' portrait clips)


def _stored_turned(upright: np.ndarray, path: Path, rotation: int) -> Path:
    """Store ``upright`` frames as a phone does: turned, with a display matrix of ``rotation``
    degrees that shows them upright again. FFmpeg shows a clip whose matrix says -90 (the usual
    portrait phone clip) turned a quarter *clockwise*, so the stored pictures are the upright
    ones turned a quarter counter-clockwise (``np.rot90(…, 1)``)."""
    import av

    stored = np.ascontiguousarray(np.rot90(upright, -rotation // 90, axes=(1, 2)))
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = stored.shape[2], stored.shape[1], "yuv420p"
        s.set_display_rotation(rotation)
        for f in stored:
            out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(s.encode())
    return path


@pytest.mark.parametrize("rotation", [-90, 90, 180, 0])
def test_a_clip_with_a_display_rotation_is_read_upright(tmp_path, rotation):
    upright = make_frames(t=6, h=64, w=48)                 # portrait, white square near the top
    path = _stored_turned(upright, tmp_path / f"phone{rotation}.mp4", rotation)
    clip = read_video(path)
    assert clip.frames.shape == upright.shape
    assert np.abs(clip.frames.astype(float) - upright).mean() < 3
    info = probe(path)
    assert (info["width"], info["height"]) == (48, 64)
    # every reader shares the turn: sampled, ranged, shrunk, and sliding windows
    ranged = read_video(path, 3, start="2")
    assert np.abs(ranged.frames.astype(float) - upright[ranged.indices]).mean() < 3
    assert read_video(path, max_side=32).frames.shape == (6, 32, 24, 3)
    windows = list(sliding_windows(path, num_frames=3, stride=3))
    assert np.abs(np.concatenate([w.frames for w in windows]).astype(float) - upright).mean() < 3


def test_a_display_matrix_that_mirrors_the_picture_is_read_as_players_show_it(tmp_path):
    """A display matrix may mirror the picture as well as turn it (a front camera's, an editor's
    flip): its angle alone is another picture's (a left-right mirror reads as a half turn), and
    the clip was read upside down. FFmpeg flips the picture after turning it
    (``av_display_matrix_flip``): the frames must be the turned ones, mirrored."""
    import math

    import av

    stored = np.repeat(np.repeat(np.random.default_rng(0).integers(0, 256, (3, 2, 3, 3), dtype=np.uint8), 8, 1),
                       8, 2)                                         # 16 x 24, no symmetry
    for clockwise in (0, 90, 180, 270):
        for hflip, vflip in ((True, False), (False, True)):
            # av_display_rotation_set(clockwise), then av_display_matrix_flip(hflip, vflip)
            c, s = math.cos(math.radians(-clockwise)), math.sin(math.radians(-clockwise))
            m = [round(c * 65536), round(-s * 65536), 0, round(s * 65536), round(c * 65536), 0, 0, 0, 1 << 30]
            m = [-v if (hflip and i % 3 == 0) or (vflip and i % 3 == 1) else v for i, v in enumerate(m)]
            path = tmp_path / f"m{clockwise}{hflip:d}{vflip:d}.mp4"
            with av.open(str(path), "w") as out:
                st = out.add_stream("libx264", rate=10, options={"crf": "0"})
                st.width, st.height, st.pix_fmt = 24, 16, "yuv444p"
                st.set_display_matrix(m)
                for f in stored:
                    out.mux(st.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv444p")))
                out.mux(st.encode())
            shown = np.rot90(stored, -clockwise // 90, axes=(1, 2))      # turned, as players turn it
            shown = shown[:, :, ::-1] if hflip else shown[:, ::-1]      # then mirrored
            clip = read_video(path)
            assert clip.frames.shape == shown.shape, (clockwise, hflip)
            assert np.abs(clip.frames.astype(int) - shown).mean() < 2, (clockwise, hflip)
            assert (probe(path)["height"], probe(path)["width"]) == shown.shape[1:3]


def test_the_display_matrix_is_found_in_either_pyav_side_data_layout():
    """PyAV 18 made ``frame.side_data`` a mapping from type to data; earlier releases iterate
    the data. Read only one way, a mirrored clip lost its mirroring on the other (it was read
    upside down with PyAV 18, where iterating gives the types)."""
    from types import SimpleNamespace

    from videoxai.data.streams import orientation

    class Data(bytes):
        type = "Type.DISPLAYMATRIX"

    class Other(bytes):
        type = "Type.SEI_UNREGISTERED"

    mirror = Data(np.array([-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30], "<i4").tobytes())
    noise = Other(b"x" * 7)
    as_list = SimpleNamespace(rotation=180.0, side_data=[noise, mirror])                 # PyAV < 18
    as_mapping = SimpleNamespace(rotation=180.0, side_data={"SEI": noise, "DISPLAYMATRIX": mirror})
    assert orientation(as_list) == orientation(as_mapping) == (0, True)   # a left-right mirror
    assert orientation(SimpleNamespace(rotation=180.0, side_data={})) == (2, False)  # a half turn


def test_a_stream_url_with_a_display_rotation_is_read_upright(tmp_path):
    from videoxai.serve.client import video_frames

    upright = make_frames(t=3, h=64, w=48)
    path = _stored_turned(upright, tmp_path / "phone.mp4", -90)
    # a URL (FFmpeg's async: protocol over a file; a file: URL is read as the file) goes the way
    # rtsp:// and http:// sources go, not the file reader
    got = np.stack(list(video_frames(f"async:file:{path}")))
    assert got.shape == upright.shape and np.abs(got.astype(float) - upright).mean() < 3


# ----------------------------------------------------------------------------------------------
# real-world files: timestamps, streams, pixel formats, pixel shapes


def _numbered(t: int, h: int = 16, w: int = 16) -> np.ndarray:
    """``t`` flat frames, frame ``k`` at grey level ``8 (k % 32)``: :func:`_numbers` reads ``k % 32`` back."""
    return np.repeat((np.arange(t) % 32 * 8).astype(np.uint8), h * w * 3).reshape(t, h, w, 3)


def _numbers(clip) -> list[int]:
    """Which :func:`_numbered` frame (modulo 32) each frame of ``clip`` is, from its grey level."""
    return (np.rint(clip.frames.reshape(len(clip.frames), -1).mean(1) / 8).astype(int) % 32).tolist()


def _encode(path: Path, frames: np.ndarray, pts=None, time_base=None, *, codec: str = "libx264",
            pix_fmt: str = "yuv420p", rate=10, fmt: str | None = None, options: dict | None = None,
            container_options: dict | None = None, sar=None) -> Path:
    """Write ``frames`` (RGB) with PyAV as other tools do: any codec and pixel format, frame ``k`` at
    ``pts[k]`` ticks of ``time_base`` (default: ``k / rate`` s), an optional sample aspect ratio."""
    import av
    from fractions import Fraction

    time_base = time_base or Fraction(1, rate)
    pts = np.arange(len(frames)) * int(round(1 / (rate * time_base))) if pts is None else pts
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        s = out.add_stream(codec, rate=rate, options=options or {})
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        s.time_base = s.codec_context.time_base = time_base
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        for k, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format=pix_fmt)
            f.pts, f.time_base = int(pts[k]), time_base
            out.mux(s.encode(f))
        out.mux(s.encode())
    return path


def test_times_count_from_the_first_frame_without_rounding_error(tmp_path):
    """A recording cut from a longer one: 25 fps, first frame at 5 s (mkv, 1/1000 s ticks). Times
    are counted from the first frame; subtracting two rounded times put frame 13 at
    0.51999999999999957 s, so ``start=0.52`` (frame 13's time) began at frame 14."""
    from fractions import Fraction

    path = _encode(tmp_path / "cut.mkv", _numbered(30), np.arange(30) * 40 + 5000, Fraction(1, 1000), rate=25)
    clip = read_video(path, start=0.52, end=0.8)
    assert clip.indices.tolist() == _numbers(clip) == list(range(13, 20))
    np.testing.assert_array_equal(read_video(path, 3, start=0.52, end=0.8).indices, [13, 16, 19])
    assert next(iter(sliding_windows(path, 2, start=0.52))).indices.tolist() == [13, 14]
    import av

    with av.open(str(path)) as c:  # the packet index (seeking) agrees with the decoder's times
        times = index_packets(c, c.streams.video[0]).times
    assert times[13] == 0.52 and times[0] == 0.0


@pytest.mark.parametrize("second_at", [10.0, 4.0, 200.0])
def test_recordings_joined_end_to_end_are_read_on_one_timeline(tmp_path, monkeypatch, second_at):
    """Two MPEG-TS recordings joined end to end (``cat a.ts b.ts``), the second on its own clock:
    starting where the first did (10 s), before it (4 s) or minutes later (200 s). Players and
    ``ffmpeg`` show them one after the other; read by the raw timestamps, ``start=1.5`` of the
    joined file took frames of both recordings (5-9 and 15-19 of 0-19 for 10 s), and frame 10 was
    placed at 0.5 s. Keyframes every 5 frames: a read that seeks by the raw timestamps would land
    in the wrong recording."""
    from fractions import Fraction

    parts = [_encode(tmp_path / f"{k}.ts", _numbered(30)[15 * k:15 * k + 15], int(at * 90000) + np.arange(15) * 9000,
                     Fraction(1, 90000), fmt="mpegts", options={"g": "5", "bf": "2"})
             for k, at in enumerate((10.0, second_at))]
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    np.testing.assert_allclose(vio.frame_times(joined), np.arange(30) * 0.1, atol=1e-9)
    assert probe(joined)["duration"] == pytest.approx(3.0)
    clip = read_video(joined, start=1.0, end=2.0)
    assert clip.indices.tolist() == _numbers(clip) == list(range(10, 20))
    every = read_video(joined)
    assert every.indices.tolist() == _numbers(every) == list(range(30))
    for seeking in (True, False):
        if not seeking:
            monkeypatch.setattr(vio, "_read_seeking", lambda *a, **k: None)
        sampled = read_video(joined, 4, start=1.5)
        assert sampled.indices.tolist() == _numbers(sampled) == [15, 20, 24, 29]
    assert [w.indices.tolist() for w in sliding_windows(joined, 4, start=2.0)] == \
        [[20, 21, 22, 23], [24, 25, 26, 27], [28, 29, 29, 29]]
    assert read_video(joined, start="12", end="17").indices.tolist() == list(range(12, 17))


def test_an_hevc_stream_cut_between_keyframes_lists_the_frames_the_decoder_shows(tmp_path):
    """An HEVC broadcast recording starting between keyframes: FFmpeg shows nothing before the
    next keyframe, here 70 frames (7 s) in. The packet lists gave up looking for the first shown
    frame after 64 packets and kept all 90: probe said 90 frames for 20, and ``frame_times``
    put every frame 7 s early."""
    import av

    try:
        av.codec.Codec("libx265", "w")
    except (av.FFmpegError, ValueError):
        pytest.skip("this FFmpeg build has no libx265 encoder")
    src = _encode(tmp_path / "src.ts", _numbered(100), codec="libx265", fmt="mpegts",
                  options={"x265-params": "keyint=80:min-keyint=80:bframes=0:scenecut=0:log-level=error"})
    cut = tmp_path / "cut.ts"
    with av.open(str(src)) as i, av.open(str(cut), "w", format="mpegts") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for packet in [p for p in i.demux(video=0) if p.size][10:]:
            packet.stream = out
            o.mux(packet)
    every = read_video(cut)
    assert _numbers(every) == [k % 32 for k in range(80, 100)]
    assert probe(cut)["frames"] == len(vio.frame_times(cut)) == 20
    np.testing.assert_allclose(vio.frame_times(cut), np.arange(20) * 0.1, atol=1e-9)


def test_a_stream_cut_at_an_open_gop_keyframe_lists_the_frames_the_decoder_shows(tmp_path, monkeypatch):
    """A recording cut without re-encoding at an open-GOP keyframe (``ffmpeg -ss … -c copy`` to
    mkv, a broadcast stream): the frame stored after the keyframe but shown before it refers to
    a frame that is not in the file, and FFmpeg drops it, as players do. The packets still list
    it, so probe counted one frame more than any reader returned, frame times were counted from
    it, and ``start=3.0`` read by seeking returned the frame before the one decoding in order did."""
    import av

    src = _encode(tmp_path / "src.mkv", _numbered(60),
                  options={"x264-params": "keyint=10:min-keyint=10:open-gop=1:bframes=3:scenecut=0"})
    with av.open(str(src)) as c:
        keys = [k for k, p in enumerate(p for p in c.demux(video=0) if p.size) if p.is_keyframe]
    cut = tmp_path / "cut.mkv"
    with av.open(str(src)) as i, av.open(str(cut), "w") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for packet in [p for p in i.demux(video=0) if p.size][keys[1]:]:  # from the second keyframe on
            packet.stream = out
            o.mux(packet)
    every = read_video(cut)
    first = _numbers(every)[0]
    shown = len(every)
    assert _numbers(every) == [(first + k) % 32 for k in range(shown)]  # in order, none missing
    assert probe(cut)["frames"] == len(vio.frame_times(cut)) == shown
    np.testing.assert_allclose(vio.frame_times(cut), np.arange(shown) * 0.1, atol=1e-9)
    assert probe(cut)["duration"] == pytest.approx(shown * 0.1)
    seeking = read_video(cut, start=3.0, end=3.3)
    assert seeking.indices.tolist() == [30, 31, 32]
    np.testing.assert_array_equal(seeking.frames, every.frames[30:33])
    assert next(iter(sliding_windows(cut, 2, start=3.0))).indices.tolist() == [30, 31]
    monkeypatch.setattr(decoder, "packet_index", lambda path: None)  # decoding in order agrees
    np.testing.assert_array_equal(read_video(cut, start=3.0, end=3.3).frames, seeking.frames)


def test_two_fields_with_one_decoding_time_are_not_a_new_recording():
    """An interlaced broadcast stream may carry a frame's two fields as two packets with one
    decoding time: taken for a restart of the clock, each second field pushed the rest of the
    stream a frame later. Only a step back of more than 0.1 s (FFmpeg's rule) is a restart."""
    from fractions import Fraction
    from types import SimpleNamespace

    from videoxai.data.clock import TS_DISCONT, Continuous

    container = SimpleNamespace(format=SimpleNamespace(flags=TS_DISCONT))
    clock = Continuous(container, SimpleNamespace(time_base=Fraction(1, 90000)))
    fields = [3600 * (k // 2) for k in range(8)]           # 25 fps, two packets per frame
    restart = [3600 * k for k in range(3)]                  # then a recording starting at 0 again
    packets = [SimpleNamespace(dts=t, pts=t, duration=0) for t in fields + restart]
    assert [clock(p).pts for p in packets] == fields + [3 * 3600 + 3600 * (k + 1) for k in range(3)]
    assert clock.jumps == 1


@pytest.mark.parametrize("name", ["cut.ts", "cut.gif"])
def test_a_file_cut_inside_its_last_frame_is_read_without_that_frame(tmp_path, name):
    """A download of an MPEG-TS or a GIF stopped partway: neither says up front how long it is,
    so it is read as the shorter video it has become. FFmpeg decoded the frame the cut falls in
    from its first part without an error (concealed, or the rows missing left from the frame
    before) and every reader used it: it was the last frame, which ``num_frames`` always takes."""
    import av

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)  # noise: each frame spans many TS packets
    if name.endswith(".ts"):
        whole = _encode(tmp_path / "whole.ts", frames, fmt="mpegts", options={"crf": "0"})
    else:
        whole = write_video(frames, tmp_path / "whole.gif", fps=10)
    with av.open(str(whole)) as c:
        last = [p for p in c.demux(video=0) if p.size][-1]
        cut_at = last.pos + last.size // 2  # halfway through the last frame's data
    cut = tmp_path / name
    cut.write_bytes(whole.read_bytes()[:cut_at])
    assert cut_at % 188  # not a whole number of TS packets, as a cut almost never is
    before = read_video(whole).frames[:5]
    clip = read_video(cut)
    assert clip.indices.tolist() == list(range(5))
    np.testing.assert_array_equal(clip.frames, before)
    sampled = read_video(cut, 3)
    assert sampled.indices.tolist() == [0, 2, 4]
    np.testing.assert_array_equal(sampled.frames, before[[0, 2, 4]])
    windows = list(sliding_windows(cut, 4))
    assert [w.indices.tolist() for w in windows] == [[0, 1, 2, 3], [4, 4, 4, 4]]
    np.testing.assert_array_equal(windows[-1].frames[0], before[4])
    assert probe(cut)["frames"] == len(vio.frame_times(cut)) == 5
    assert len(read_video(whole)) == 6  # a whole file keeps its last frame
    if name.endswith(".gif"):  # bytes after a GIF's end (its ';') are no part of its last frame
        tailed = tmp_path / "tailed.gif"
        tailed.write_bytes(whole.read_bytes() + b"\0appended\n")
        assert len(read_video(tailed)) == 6
    # cut inside the first piece of the last frame (a TS packet that starts it): the frame before is whole
    early = tmp_path / f"early_{name}"
    early.write_bytes(whole.read_bytes()[:last.pos + 100])
    np.testing.assert_array_equal(read_video(early).frames, before)
    # the stream client's reading of a URL (`videoxai stream file:…`): the same whole frames
    from videoxai.serve.client import video_frames
    np.testing.assert_array_equal(np.stack(list(video_frames(f"file:{cut}"))), before)


def test_an_mpeg_program_stream_cut_anywhere_gives_only_whole_frames(tmp_path):
    """An .mpg/.vob download stopped partway: FFmpeg decodes the frame the cut falls in from its
    first part (a mean error of 25-58 levels on noise). Every packet of a program stream says how
    long it is, so a file that ends inside one is known to be cut; what is read is whole frames
    (or a clear error, where one frame is left)."""
    frames = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    src = _encode(tmp_path / "whole.mpg", frames, codec="mpeg2video", fmt="mpeg", rate=25, options={"qscale": "1"})
    whole = read_video(src).frames
    data = src.read_bytes()
    cut, shorter = tmp_path / "cut.mpg", 0
    for keep in range(len(data) // 3, len(data), 97):
        cut.write_bytes(data[:keep])
        try:
            clip = read_video(cut)
        except VideoReadError as e:
            assert "decodes to 1 frame" in str(e)
            continue
        np.testing.assert_array_equal(clip.frames, whole[clip.indices], err_msg=f"cut at {keep} of {len(data)}")
        shorter += len(clip) < len(whole)
    assert shorter > 10
    assert len(read_video(src)) == 6


@pytest.mark.parametrize("total", [20, 300])
def test_an_mp4_cut_between_keyframes_is_read_as_players_show_it(tmp_path, monkeypatch, total):
    """``ffmpeg -ss … -c copy`` keeps the frames back to the keyframe before the cut, which the
    decoder needs, and an edit list hides them: here the first 3 of ``total`` frames (negative
    times). FFmpeg drops them as players do, but the container counts them, so ``read_video(p, 8)``
    failed with "truncated video: the container lists 20 frames but only 17 could be decoded"."""
    path = _encode(tmp_path / "cut.mp4", _numbered(total), np.arange(total) - 3,
                   options={"bf": "2", "g": "12", "crf": "10"})
    shown = total - 3
    assert probe(path)["frames"] == shown
    every = read_video(path)
    assert every.indices.tolist() == list(range(shown))
    assert _numbers(every) == [(k + 3) % 32 for k in range(shown)]
    clip = read_video(path, 8)
    np.testing.assert_array_equal(clip.indices, uniform_indices(shown, 8))
    np.testing.assert_array_equal(clip.frames, every.frames[clip.indices])
    if total == 300:  # keyframes every 12 frames: it seeks, with the same result
        used = []
        seeking = vio._read_seeking
        monkeypatch.setattr(vio, "_read_seeking", lambda *a, **k: used.append(seeking(*a, **k)) or used[-1])
        np.testing.assert_array_equal(read_video(path, 8).frames, clip.frames)
        assert used[0] is not None


def _with_cover(path: Path, *, video: bool, cover_track: bool = False, audio: str = "aac") -> Path:
    """An audio file with cover art (``video=False``) or a video with sound and a cover, the cover
    before everything else. ``cover_track``: the cover as a one-picture mjpeg track (as some
    taggers write it to mkv); else as the container marks cover art (an attached picture: mp3,
    m4a; an mkv image attachment)."""
    import io

    import av
    from PIL import Image

    picture = np.full((40, 40, 3), (255, 0, 0), np.uint8)
    with av.open(str(path), "w", format="mp4" if path.suffix == ".m4a" else None) as out:
        cover = None
        if path.suffix in (".mkv", ".mka") and not cover_track:
            jpeg = io.BytesIO()
            Image.fromarray(picture).save(jpeg, "JPEG")
            out.add_attachment("cover.jpg", "image/jpeg", jpeg.getvalue())
        else:
            cover = out.add_stream("mjpeg")
            cover.width, cover.height, cover.pix_fmt = 40, 40, "yuvj420p"
            if not cover_track:
                cover.disposition = av.stream.Disposition.attached_pic
        sound = out.add_stream(audio, rate=16000)
        sound.layout = "mono"
        if video:
            s = out.add_stream("libx264", rate=10)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        if cover is not None:
            f = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuvj420p")
            f.pts = 0
            out.mux(list(cover.encode(f)) + list(cover.encode()))
        for k, rgb in enumerate(make_frames()):
            if video:
                out.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            a = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.float32), format="fltp", layout="mono")
            a.sample_rate, a.pts = 16000, k * 1152
            out.mux(sound.encode(a))
        out.mux(sound.encode())
        if video:
            out.mux(s.encode())
    return path


@pytest.mark.parametrize("name, kwargs", [("cover.mp4", {}), ("cover.mkv", {"cover_track": True})])
def test_the_video_is_read_not_the_cover_or_the_sound_before_it(tmp_path, name, kwargs):
    """A video whose cover art (a still picture) and sound come before it: the cover (40x40, one
    frame) was read as the video."""
    path = _with_cover(tmp_path / name, video=True, **kwargs)
    clip = read_video(path)
    assert clip.frames.shape == (12, 48, 64, 3)
    assert np.abs(clip.frames.astype(int) - make_frames()).mean() < 2
    assert (probe(path)["frames"], probe(path)["width"]) == (12, 64)
    assert read_video(path, 4).indices.tolist() == [0, 4, 7, 11]
    assert len(list(sliding_windows(path, 4))) == 3
    # the stream client (`videoxai stream`): the rate of the video it sends, not the cover's
    from videoxai.serve.client import source_fps
    assert source_fps(path) == pytest.approx(10.0) and source_fps(f"file:{path}") == pytest.approx(10.0)


@pytest.mark.parametrize("name, audio", [("song.mp3", "libmp3lame"), ("song.m4a", "aac"), ("song.mka", "aac")])
def test_an_audio_file_with_cover_art_is_not_a_video(tmp_path, name, audio):
    """It was read as a one-frame video of its cover (at 90000 fps, for the mp3 and m4a)."""
    path = _with_cover(tmp_path / name, video=False, audio=audio)
    for call in (lambda: read_video(path, 8), lambda: probe(path), lambda: list(sliding_windows(path, 4))):
        with pytest.raises(VideoReadError, match="no video stream .only a cover picture"):
            call()


def test_probe_counts_duration_and_rate_from_the_frames_where_the_container_cannot(tmp_path):
    """An mkv cut from 5 s on: its container duration counts from 0 (probe said 6.2 s for 1.2 s
    of frames); an MPEG program stream's duration estimate was one frame. A variable-rate
    MPEG-TS stream has no average rate, and FFmpeg's guess is its 90 kHz clock: probe and clips
    said 90000 fps."""
    from fractions import Fraction

    cut = _encode(tmp_path / "cut.mkv", _numbered(12), np.arange(12) * 100 + 5000, Fraction(1, 1000))
    assert probe(cut)["duration"] == pytest.approx(1.2)
    assert (probe(cut)["frames"], probe(cut)["fps"]) == (12, 10.0)
    mpeg = _encode(tmp_path / "dvd.mpg", _numbered(30), codec="mpeg2video", fmt="mpeg", rate=25)
    assert (probe(mpeg)["frames"], probe(mpeg)["duration"]) == (30, pytest.approx(1.2))  # it said 0.04 s

    gaps = np.random.default_rng(0).integers(20, 80, 20) * 90  # 20-80 ms in 90 kHz ticks
    gaps[0] = 0
    vfr = _encode(tmp_path / "vfr.ts", _numbered(20), 126000 + np.cumsum(gaps), Fraction(1, 90000), fmt="mpegts")
    span = gaps.sum() / 90000
    info = probe(vfr)
    assert info["frames"] == 20
    assert info["fps"] == pytest.approx(19 / span)
    assert read_video(vfr).fps == read_video(vfr, 4).fps == info["fps"]
    assert next(iter(sliding_windows(vfr, 4))).fps == info["fps"]


def test_frame_numbers_select_those_frames_at_a_variable_frame_rate(tmp_path):
    """``start="3"`` is frame 3: it was read as ``2.5 / fps`` seconds, so a GIF whose frames last
    from 50 to 400 ms, or a phone's variable-rate mkv, started and ended at other frames."""
    from fractions import Fraction
    from PIL import Image

    from videoxai.data.times import parse_time

    gif = tmp_path / "varying.gif"
    durations = [100, 200, 50, 300, 100, 100, 400, 100, 100, 100, 100, 250]  # ms
    images = [Image.fromarray(f) for f in make_frames()]
    images[0].save(gif, save_all=True, append_images=images[1:], duration=durations, loop=0)
    phone = _encode(tmp_path / "phone.mkv", _numbered(20), np.cumsum([0] + [33, 34, 33, 100, 20] * 3 + [33] * 4),
                    Fraction(1, 1000), rate=30)
    for path in (gif, phone):
        assert read_video(path, start="3", end="8").indices.tolist() == [3, 4, 5, 6, 7]
        assert read_video(path, 2, start="3", end="8").indices.tolist() == [3, 7]
        assert read_video(path, start="0.2s", end="8").indices.tolist()[-1] == 7  # seconds and a frame
        assert [w.indices.tolist() for w in sliding_windows(path, 2, start="4", end="8")] == [[4, 5], [6, 7]]
        # explain_video and the CLI read the numbers with parse_time first, then pass them on
        fps = probe(path)["fps"]
        lo, hi = parse_time("4", fps, "start"), parse_time("8", fps, "end")
        assert [w.indices.tolist() for w in sliding_windows(path, 2, start=lo, end=hi)] == [[4, 5], [6, 7]]
        assert read_video(path, start="10", end="99").indices.tolist()[:2] == [10, 11]  # one frame alone is refused
        with pytest.raises(VideoReadError, match="no frame in the time range"):
            read_video(path, start="40")
    clip = read_video(phone, start="3", end="8")
    assert _numbers(clip) == [3, 4, 5, 6, 7]
    # when each frame is shown, for reports that place frames in time (index / fps is not it)
    np.testing.assert_allclose(vio.frame_times(gif), np.cumsum([0] + durations[:-1]) / 1000)
    assert vio.frame_times(gif)[read_video(gif, start="3").indices[0]] == pytest.approx(0.35)


def test_a_variable_rate_mkv_reports_its_average_rate_as_an_mp4_does(tmp_path):
    """Matroska's rate is the frame duration its muxer declared: a variable-rate recording
    declared at 30 fps whose 20 frames span 1.66 s said 30 fps (clips, reports and overlay videos
    took it), while the same frames in an mp4 said their average. A constant 29.97 fps, whose
    millisecond timestamps go 33, 34, 33 ms, keeps its declared rate."""
    from fractions import Fraction

    gaps = [33, 33, 200, 33, 500, 33, 33, 33, 100, 100, 33, 33, 33, 300, 33, 33, 33, 33, 33]
    vfr = _encode(tmp_path / "screen.mkv", _numbered(20), np.cumsum([0] + gaps), Fraction(1, 1000), rate=30)
    average = 19 / (sum(gaps) / 1000)   # 11.4 fps
    assert probe(vfr)["fps"] == pytest.approx(average)
    assert read_video(vfr).fps == read_video(vfr, 4).fps == next(iter(sliding_windows(vfr, 4))).fps == \
        pytest.approx(average)
    ntsc = _encode(tmp_path / "ntsc.mkv", _numbered(30), np.round(np.arange(30) * 1001 / 30), Fraction(1, 1000),
                   rate=Fraction(30000, 1001))
    assert probe(ntsc)["fps"] == read_video(ntsc, 4).fps == 30000 / 1001


@pytest.mark.parametrize("name, sar, shown", [("dvd_wide.mp4", (32, 27), (48, 85)), ("dv.mkv", (8, 9), (54, 72)),
                                              ("dv_wide.avi", (32, 27), (48, 85)), ("square.mp4", (1, 1), (48, 72))])
def test_non_square_pixels_are_read_as_players_show_them(tmp_path, name, sar, shown):
    """A DVD/DV picture (here 72 x 48, a tenth of 720 x 480) whose pixels are 32:27 (16:9 NTSC) or
    8:9 (4:3) as wide as tall: it was read as stored, squeezed. Players stretch it to its display
    aspect ratio, in square pixels, as models saw their training frames: 85 x 48 for 32:27 (wider),
    72 x 54 for 8:9 (taller: no stored pixel is lost). Square pixels are read untouched."""
    from fractions import Fraction

    import av

    stored = np.zeros((4, 48, 72, 3), np.uint8)
    stored[:, :, 27:45] = 255  # a white bar over columns 27-44 (centre 36 of 72)
    stored[:, 12:24] = 128     # a grey band over rows 12-23 (centre 18 of 48)
    codec = {".avi": "mpeg4"}.get(Path(name).suffix, "libx264")
    path = _encode(tmp_path / name, stored, codec=codec, sar=Fraction(*sar),
                   options={"qscale": "2"} if codec == "mpeg4" else {"crf": "10"})
    clip = read_video(path)
    h, w = shown
    assert clip.frames.shape == (4, h, w, 3)
    assert (probe(path)["width"], probe(path)["height"]) == (w, h)
    # the bar and the band keep their place in the picture (centres at the same fraction of it;
    # pixel k's centre is at k + 0.5)
    columns = clip.frames[0, 30:, :, 0].astype(float).mean(0)
    assert (columns * np.arange(w)).sum() / columns.sum() == pytest.approx(36 / 72 * w - 0.5, abs=0.3)
    rows = clip.frames[0, :, 0, 0].astype(float)
    assert (rows * np.arange(h)).sum() / rows.sum() == pytest.approx(18 / 48 * h - 0.5, abs=0.3)
    scale = 36 / max(h, w)
    assert read_video(path, 2, max_side=36).frames.shape[1:3] == (round(h * scale), round(w * scale))
    assert next(iter(sliding_windows(path, 2))).frames.shape == (2, h, w, 3)
    if sar == (1, 1):  # exactly what the decoder gives
        with av.open(str(path)) as c:
            decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        np.testing.assert_array_equal(clip.frames, decoded)


@pytest.mark.parametrize("name, codec, pix_fmt, options, tol", [
    ("yuv444p.mp4", "libx264", "yuv444p", {"crf": "0"}, 1.0),
    ("full_range.mp4", "libx264", "yuvj420p", {"crf": "0"}, 2.0),   # full-range (JPEG) levels
    ("hevc_10bit.mp4", "libx265", "yuv420p10le", {"x265-params": "lossless=1:log-level=error"}, 2.0),
    ("h264_10bit.mkv", "libx264", "yuv420p10le", {"crf": "0"}, 2.0),
    ("prores.mov", "prores_ks", "yuv422p10le", {}, 1.0),
    ("mjpeg.avi", "mjpeg", "yuvj420p", {}, 5.0),                     # lossy JPEG at its default quality
    ("raw_bgr24.avi", "rawvideo", "bgr24", {}, 0.0),                # AVI's raw RGB is stored BGR
    ("raw_bgr0.nut", "rawvideo", "bgr0", {}, 0.0),
    ("gray.mkv", "ffv1", "gray", {}, None),
    ("alpha.webm", "libvpx-vp9", "yuva420p", {"lossless": "1"}, 2.0),  # alpha is dropped
])
def test_pixel_formats_are_read_in_their_colours(tmp_path, name, codec, pix_fmt, options, tol):
    """Each of these files is read in the right colours and levels: known frames, one saturated
    red patch to catch swapped channels, a wrong matrix or range. 10-bit YUV came out about 1.4
    levels darker (grey 220 read as 218: FFmpeg's default conversion to 8-bit RGB)."""
    import av

    try:
        av.codec.Codec(codec, "w")
    except (av.FFmpegError, ValueError):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    frames = make_frames()
    frames[:, 28:44, 40:56] = (255, 0, 0)
    path = _encode(tmp_path / name, frames, codec=codec, pix_fmt=pix_fmt, options=options)
    clip = read_video(path)
    assert clip.frames.shape == frames.shape and clip.indices.tolist() == list(range(12))
    red = clip.frames[:, 32:40, 44:52].reshape(-1, 3).mean(0)
    if pix_fmt == "gray":  # the red patch's luma (BT.601: 0.299 * 255), in every channel
        np.testing.assert_allclose(red, 76, atol=2)
        grey = frames.copy()
        grey[:, 28:44, 40:56] = 76
        assert np.abs(clip.frames.astype(int) - grey).mean() < 1
    else:
        np.testing.assert_allclose(red, (255, 0, 0), atol=max(4, 3 * tol))  # JPEG's loss: 248
        assert np.abs(clip.frames.astype(int) - frames).mean() <= tol
    np.testing.assert_array_equal(read_video(path, 4).frames, clip.frames[[0, 4, 7, 11]])


def test_a_stream_url_is_read_as_files_are(tmp_path):
    """``videoxai stream rtsp://…`` decodes with its own loop: it took the first video stream (an
    audio file's cover picture), kept non-square pixels squeezed and 10-bit YUV darker; it now
    converts frames as :func:`read_video` does."""
    from fractions import Fraction

    from videoxai.serve.client import video_frames

    rng = np.random.default_rng(0)
    dvd = _encode(tmp_path / "dvd.mkv", rng.integers(0, 256, (3, 48, 72, 3), dtype=np.uint8), sar=Fraction(32, 27))
    for path in (dvd, _with_cover(tmp_path / "film.mkv", video=True)):
        got = np.stack(list(video_frames(f"async:file:{path}")))  # a URL that is not file: (read as a file)
        np.testing.assert_array_equal(got, read_video(path).frames)
    assert got.shape[0] > 1                                     # the film, not its one-picture cover
    with pytest.raises(InputError, match="no video stream"):
        list(video_frames(f"async:file:{_with_cover(tmp_path / 'song.mka', video=False)}"))


def test_a_file_of_one_frame_is_refused_with_what_to_do(tmp_path, capsys):
    """A PNG, a JPEG or a one-frame video given as the video was read as 8 copies of its frame and
    explained; a frame given as an array is a one-frame clip (repeated, as the message says, it is
    explained on any model), and a stream still reads a still frame by frame."""
    from PIL import Image

    from videoxai.cli import main

    frames = np.random.default_rng(0).integers(0, 256, (30, 48, 64, 3), dtype=np.uint8)
    Image.fromarray(frames[0]).save(tmp_path / "still.png")
    Image.fromarray(frames[0]).save(tmp_path / "still.jpg")
    stills = [tmp_path / "still.png", tmp_path / "still.jpg", write_video(frames[:1], tmp_path / "one.mp4", fps=5),
              write_video(frames[:1], tmp_path / "one.gif", fps=5)]
    for path in stills:
        said = rf"{path}: the file decodes to 1 frame \(a still picture\); a video classifier needs a moving clip " \
               r"of 2 frames or more\. To explain a single image anyway, repeat its frame into a clip: " \
               r"vx\.explain\(model, np\.repeat\(frame\[None\], model\.num_frames, axis=0\)\)"
        for num_frames in (8, None):
            with pytest.raises(VideoReadError, match=said):
                read_video(path, num_frames)
        with pytest.raises(VideoReadError, match=said):
            list(sliding_windows(path, 8))
        assert len(list(sliding_windows(path, 1))) == 1   # the stream client's reading: frame by frame
    model = vx.load_model("demo-cnn")
    with pytest.raises(VideoReadError, match="decodes to 1 frame"):
        vx.explain(model, str(stills[0]), "saliency")
    exp = vx.explain(model, frames[0][None], "saliency")  # a one-frame array: a clip of one frame
    assert exp.spatial.shape == (1, 48, 64) and exp.temporal.tolist() == [1.0]
    for name in ("demo-cnn", "demo"):       # the message's call, also on a model of exactly 8 frames
        model = vx.load_model(name)
        exp = vx.explain(model, np.repeat(frames[0][None], model.num_frames, axis=0), "saliency")
        assert exp.spatial.shape == (8, 48, 64) and np.isfinite(exp.spatial).all()
    with pytest.raises(SystemExit) as end:
        main(["explain", str(stills[0]), "--model", "demo-cnn", "--method", "saliency", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert end.value.code == 2 and err.startswith("error: ") and "decodes to 1 frame" in err and "\n" not in err
    # a range holding one frame, and two frames (they move: read, with repeats)
    ten = write_video(frames, tmp_path / "ten.mp4", fps=10)
    with pytest.raises(VideoReadError, match=r"only 1 frame in the time range from frame 3 \(0\.3 s\) to frame 4 "
                                             r"\(0\.4 s\) \(end excluded\); .* widen the range"):
        read_video(ten, 8, start="3", end="4")
    with pytest.raises(VideoReadError, match=r"only 1 frame in the time range \[1, 1\.1\) s; .* widen the range"):
        list(sliding_windows(ten, 8, start=1.0, end=1.1))
    assert read_video(ten, 8, start="3", end="5").indices.tolist() == [3, 3, 3, 3, 4, 4, 4, 4]
    two = write_video(frames[:2], tmp_path / "two.mp4", fps=5)
    assert read_video(two, 8).indices.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_range_without_frames_to_explain_names_its_boundaries_as_they_were_given(tmp_path, capsys):
    """``start="19"`` on a 20-frame 10-fps video is frame 19: the one-frame error said "[1.9, inf) s",
    naming no frame the user gave. Frame numbers are named as frames (with their times), seconds
    as seconds, in the one-frame and the no-frame message, and so does ``videoxai explain``."""
    from videoxai.cli import main

    twenty = write_video(np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                         tmp_path / "twenty.mp4", fps=10)
    one = r"only 1 frame in the time range from frame 19 \(1\.9 s\) to the end; .* widen the range"
    with pytest.raises(VideoReadError, match=one):
        read_video(twenty, 8, start="19")
    with pytest.raises(VideoReadError, match=r"only 1 frame in the time range from the start to frame 1 \(0\.1 s\) "
                                             r"\(end excluded\);"):
        read_video(twenty, end="1")
    with pytest.raises(VideoReadError, match=r"no frame in the time range from 0\.55 s to frame 6 \(0\.6 s\) "
                                             r"\(end excluded\); the video is 2\.00 s long"):
        read_video(twenty, 8, start="0.55s", end="6")
    with pytest.raises(VideoReadError, match=r"no frame in the time range \[1\.95, inf\) s"):
        read_video(twenty, 8, start="1.95s")   # seconds stay seconds
    with pytest.raises(SystemExit):
        main(["explain", str(twenty), "--start", "19", "--model", "demo-cnn", "--method", "saliency",
              "--out", str(tmp_path / "o")])
    assert "from frame 19 (1.9 s) to the end" in capsys.readouterr().err
    with pytest.raises(VideoReadError, match=one):   # the sliding windows (--window-stride) say it alike
        list(sliding_windows(twenty, 8, start="19"))
    with pytest.raises(VideoReadError, match=r"no frame in the time range from frame 25 \(2\.5 s\)|start frame 25 is past"):
        list(sliding_windows(twenty, 8, start="25"))


def test_clips_carry_when_each_frame_is_shown_at_a_variable_frame_rate(tmp_path, monkeypatch):
    """``clip.times``: each sampled frame's presentation time (s from the stream's first frame), as
    :func:`frame_times` gives it, in every way of reading (all frames, ``num_frames`` in order, a
    range, seeking to keyframes); ``indices / fps`` is not it at a variable rate. Arrays have none;
    :meth:`Clip.subclip` keeps them."""
    from fractions import Fraction

    phone = _encode(tmp_path / "phone.mkv", _numbered(20), np.cumsum([0] + [33, 34, 33, 100, 20] * 3 + [33] * 4),
                    Fraction(1, 1000), rate=30)
    ms = np.cumsum([0] + [40, 60] * 100)[:150]          # 150 frames at 25 and 16.7 fps in turn
    long = _encode(tmp_path / "long.mp4", _numbered(150, 16, 16), ms, Fraction(1, 1000), rate=20, options={"g": "10"})
    seeks = []
    seeking = vio._read_seeking
    monkeypatch.setattr(vio, "_read_seeking", lambda *a: seeks.append(seeking(*a)) or seeks[-1])
    for path, kwargs in [(phone, {}), (phone, {"num_frames": 5}), (phone, {"num_frames": 4, "start": "3", "end": "12"}),
                         (phone, {"start": "0.2s"}), (long, {"num_frames": 4, "start": 5.0})]:
        clip = read_video(path, **kwargs)
        np.testing.assert_allclose(clip.times, vio.frame_times(path)[clip.indices], atol=1e-9)
    assert seeks[-1] is not None, "the last read seeks to its keyframes"
    clip = read_video(phone, 5)
    np.testing.assert_allclose(clip.times, [0, 0.22, 0.44, 0.64, 0.792], atol=1e-9)   # known answer
    assert not np.allclose(clip.times, clip.indices / clip.fps, atol=0.01)
    np.testing.assert_allclose(clip.subclip([1, 3]).times, [0.22, 0.64], atol=1e-9)
    assert vx.Clip(clip.frames).times is None and vx.Clip(clip.frames).subclip([0]).times is None
    with pytest.raises(InputError, match=r"Clip.times must have shape \(5,\), got \(2,\)"):
        vx.Clip(clip.frames, times=[0.0, 1.0])
    # the sliding windows carry them too, from a file (padded and shifted tails, a range, a step)
    # and from a clip in memory
    for path, kwargs in [(phone, {}), (phone, {"tail": "shift", "stride": 3}), (phone, {"start": "3", "frame_step": 2}),
                         (long, {"stride": 16, "start": 5.0})]:
        windows = list(sliding_windows(path, 4, **kwargs))
        assert len(windows) > 1
        for w in windows:
            np.testing.assert_allclose(w.times, vio.frame_times(path)[w.indices], atol=1e-9)
    whole = read_video(phone)
    for w in sliding_windows(whole, 6, 5):
        np.testing.assert_allclose(w.times, vio.frame_times(phone)[w.indices], atol=1e-9)
    assert all(w.times is None for w in sliding_windows(vx.Clip(whole.frames), 6, 5))

"""Videos and frames as users bring them: files from other tools, arrays that are not a decoder's plain uint8."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import videoxai as vx
from videoxai.data.video import probe, write_video
from videoxai.errors import VideoReadError


def test_read_only_frames_become_a_tensor_without_a_warning(tmp_path):
    """Frames memory-mapped read-only (``np.load(..., mmap_mode="r")``, how datasets of decoded
    clips are read) or broadcast from one picture: ``to_tensor`` (every explanation calls it)
    raised PyTorch's warning that writing to the tensor is undefined, though it is a copy."""
    frames = np.random.default_rng(0).integers(0, 256, (4, 8, 10, 3), dtype=np.uint8)
    np.save(tmp_path / "clip.npy", frames)
    for held in (np.load(tmp_path / "clip.npy", mmap_mode="r"), np.broadcast_to(frames[:1], frames.shape)):
        clip = vx.Clip.from_array(held)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            x = clip.to_tensor()
        assert x.shape == (1, 4, 3, 8, 10)
        np.testing.assert_allclose(x[0].permute(0, 2, 3, 1).numpy() * 255, np.asarray(held), atol=1e-4)
        x.mul_(0)  # the tensor is the caller's: the frames stay as they were
        assert np.asarray(clip.frames).any()


def test_a_file_whose_name_has_a_colon_is_that_file(tmp_path, monkeypatch):
    """FFmpeg takes what comes before a colon for a protocol: ``cam1:take2.mp4`` in the current
    folder failed with "Protocol not found", ``http:clip.mp4`` was a network request and writing
    ``pipe:1.mp4`` wrote the video to standard output."""
    from videoxai.data.video import probe, sliding_windows, write_video

    monkeypatch.chdir(tmp_path)
    frames = np.repeat(np.arange(6, dtype=np.uint8) * 40, 16 * 16 * 3).reshape(6, 16, 16, 3)  # frame k: grey 40 k
    for name in ("cam1:take2.mp4", "http:clip.mp4", "pipe:1.mp4"):
        write_video(frames, name, fps=5)
        assert (tmp_path / name).stat().st_size > 0
        clip = vx.read_video(name)
        assert clip.frames.shape == (6, 16, 16, 3) and clip.source == name
        assert np.abs(clip.frames.astype(int) - frames).max() <= 2
        assert probe(name)["frames"] == 6
        assert [w.indices.tolist() for w in sliding_windows(name, 3)] == [[0, 1, 2], [3, 4, 5]]


def _with_dropped_frames(path, frames: np.ndarray, dropped: set[int]):
    """An AVI capture that missed the frames ``dropped``: each is an empty chunk at its time, as
    VirtualDub, DirectShow and security-camera recorders store them (the header counts them)."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("mjpeg", rate=10)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuvj420p"
        for k, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
            f.pts = k
            for packet in s.encode(f):
                if k in dropped:
                    packet = av.Packet(0)
                    packet.pts = packet.dts = k
                    packet.time_base, packet.stream = s.time_base, s
                out.mux(packet)
        out.mux(s.encode())
    return path


def test_an_avi_with_dropped_frames_is_read_as_players_show_it(tmp_path):
    """A capture's dropped frames (empty chunks) are counted by the AVI header but decoded by no
    one: ``read_video(p, 8)`` failed with "truncated video: the container lists 40 frames but only
    37 could be decoded"; the index, which skips them, reaches the end of the stream."""
    from videoxai.data.video import frame_times, probe, uniform_indices

    frames = np.repeat((np.arange(40) % 32 * 8).astype(np.uint8), 16 * 16 * 3).reshape(40, 16, 16, 3)
    path = _with_dropped_frames(tmp_path / "capture.avi", frames, {5, 6, 20})
    shown = [k for k in range(40) if k not in (5, 6, 20)]
    every = vx.read_video(path)
    assert np.rint(every.frames.reshape(37, -1).mean(1) / 8).astype(int).tolist() == [k % 32 for k in shown]
    assert probe(path)["frames"] == 37
    clip = vx.read_video(path, 8)
    np.testing.assert_array_equal(clip.indices, uniform_indices(37, 8))
    np.testing.assert_array_equal(clip.frames, every.frames[clip.indices])
    np.testing.assert_allclose(frame_times(path), np.array(shown) / 10)


def test_a_gif_keeps_the_frame_rate_it_was_written_at(tmp_path):
    """GIF counts time in 1/100 s. Every frame lasted ``round(1000 / fps)`` ms, truncated to
    hundredths by Pillow: 30 fps played at 33.3 (a 10 s clip in 9 s), the default 8 fps at 8.3;
    and FFmpeg's average rate for a GIF is its first frame's delay, so a clip read back said
    33.3 fps even where the frames were on time."""
    from videoxai.data.video import frame_times, probe, write_video

    frames = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    for fps in (8, 24, 30):
        path = write_video(frames, tmp_path / f"at{fps}.gif", fps=fps)
        # each frame starts at k / fps to the nearest hundredth of a second
        np.testing.assert_allclose(frame_times(path), np.arange(12) / fps, atol=0.005 + 1e-9)
        assert vx.read_video(path).fps == probe(path)["fps"] == pytest.approx(fps)
    # as fast as browsers play a GIF: frames of 1/100 s are shown for 1/10 s
    np.testing.assert_allclose(np.diff(frame_times(write_video(frames, tmp_path / "fast.gif", fps=60))), 0.02)


def test_write_video_takes_a_frame_rate_as_pyav_gives_it(tmp_path):
    """PyAV gives a stream's rate as a Fraction (30000/1001 for NTSC): write_video refused it
    ("fps must be a positive number"); and ``fps=True`` was written as 1 fps."""
    from fractions import Fraction

    from videoxai.data.video import write_video

    frames = np.zeros((3, 16, 16, 3), np.uint8)
    path = write_video(frames, tmp_path / "ntsc.mp4", fps=Fraction(30000, 1001))
    assert vx.read_video(path).fps == pytest.approx(30000 / 1001)
    with pytest.raises(vx.InputError, match="fps must be a positive number, got True"):
        write_video(frames, tmp_path / "flag.mp4", fps=True)


def test_frames_as_tensors_of_any_float_type(tmp_path):
    """bfloat16 (how half-precision pipelines hold frames) failed in Clip.from_array with torch's
    "Got unsupported ScalarType BFloat16"; ``vx.Clip(tensor)`` said "frames must be a numpy array
    or tensor, got Tensor"."""
    import torch

    frames = torch.linspace(0, 1, 2 * 4 * 5 * 3).reshape(2, 4, 5, 3)
    for x in (frames.to(torch.bfloat16), frames.to(torch.float16), frames.double()):
        for clip in (vx.Clip.from_array(x), vx.Clip(x)):
            assert clip.frames.dtype == np.float32 and clip.frames.shape == (2, 4, 5, 3)
            np.testing.assert_allclose(clip.frames, frames.numpy(), atol=4e-3)  # bfloat16 keeps 8 bits
    np.testing.assert_array_equal(vx.Clip((frames * 255).to(torch.uint8)).frames, (frames * 255).to(torch.uint8).numpy())


def test_a_header_that_counts_billions_of_frames_costs_no_memory(tmp_path, monkeypatch):
    """An AVI whose header says 2**31 - 1 frames (damaged or forged) but holds 12: reading every
    frame sized its buffer from the header, 2**31 frames (a MemoryError, "Unable to allocate
    6.00 TiB"); a frame takes a byte of the file at least."""
    import struct

    import av

    from videoxai.data import video as vio

    frames = np.repeat((np.arange(12) * 20).astype(np.uint8), 32 * 32 * 3).reshape(12, 32, 32, 3)
    data = bytearray(vio.write_video(frames, tmp_path / "real.avi", fps=10).read_bytes())
    for chunk, offset in ((b"avih", 24), (b"strh", 40)):  # the file's and the stream's frame counts
        at = data.index(chunk) + offset
        assert struct.unpack("<I", data[at:at + 4]) == (12,)
        data[at:at + 4] = struct.pack("<I", 2**31 - 1)
    path = tmp_path / "forged.avi"
    path.write_bytes(data)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 2**31 - 1  # what FFmpeg reads
    assert vio.probe(path)["frames"] == 12  # the file is whole: what it holds (test_an_avi_whose_header_and_*)
    sizes = []
    made = vio._FrameBuffer.__init__
    monkeypatch.setattr(vio._FrameBuffer, "__init__", lambda self, expected: made(self, expected) or sizes.append(expected))
    with pytest.warns(UserWarning, match="its AVI header says 2147483647 frames but the file is whole and holds 12"):
        clip = vx.read_video(path)
    assert np.abs(clip.frames.astype(int) - frames).max() <= 3
    # cut inside its index (after every frame): the header's count is all there is
    cut = tmp_path / "forged_cut.avi"
    cut.write_bytes(bytes(data[:-8]))
    clip = vx.read_video(cut)
    assert np.abs(clip.frames.astype(int) - frames).max() <= 3
    assert vio.probe(cut)["frames"] == 12  # what is read (a cut AVI's packets; the header's count was taken)
    assert sizes[-1] <= cut.stat().st_size


def test_grey_and_rgba_frames_are_told_what_to_do():
    """Grey (T, H, W) and RGBA (T, H, W, 4) frames, one picture (H, W, 3): the error named the
    shape it wanted only."""
    frames = np.zeros((2, 4, 5, 3), np.uint8)
    for bad, fix in ((frames[..., 0], np.repeat(frames[..., 0][..., None], 3, axis=-1)),
                     (frames[0], frames[0][None]),
                     (frames[..., :1], np.repeat(frames[..., :1], 3, axis=-1)),
                     (np.concatenate([frames, frames[..., :1]], -1), frames)):
        with pytest.raises(vx.InputError, match=r"must have shape \(T, H, W, 3\).*; (grey|one channel|RGBA|one picture)"):
            vx.Clip.from_array(bad)
        assert vx.Clip.from_array(fix).frames.shape[1:] == (4, 5, 3)  # what the message says to do works


def test_an_ffmpeg_playlist_is_refused_before_ffmpeg_opens_it(tmp_path):
    # FFmpeg's concat demuxer knows "ffconcat version 1.0" whatever the file's name and opens the
    # files it lists while probing: one naming itself was opened until no file descriptor was left
    playlist = tmp_path / "clip.mp4"
    playlist.write_bytes(b"ffconcat version 1.0\nfile clip.mp4\nfile clip.mp4\n")
    for read in (vx.read_video, probe):
        with pytest.raises(VideoReadError, match="clip.mp4: an FFmpeg concat playlist, not a video"):
            read(playlist)


@pytest.mark.parametrize("kept_packets", [1, 6, 9])
def test_an_mp4_cut_between_two_frames_is_truncated_not_short(tmp_path, kept_packets):
    """An mp4 written index-first (+faststart) and cut off between two frames' data: the index
    lists 12 frames, demuxing and decoding stop without an error where the bytes end, and every
    reader returned the frames left as a shorter video. Cut inside a frame it failed, by luck."""
    import av

    frames = np.zeros((12, 48, 64, 3), np.uint8)
    for k in range(12):
        frames[k] = 20 * k
        frames[k, 10:20, 4 * k:4 * k + 10] = 255
    whole = write_video(frames, tmp_path / "whole.mp4", fps=10)
    with av.open(str(whole)) as container:
        starts = sorted(p.pos for p in container.demux(video=0) if p.size)
    assert len(starts) == 12 and starts[0] > whole.read_bytes().index(b"moov")  # the index comes first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:starts[kept_packets]])  # ends exactly where a frame's data begins
    for read in (lambda: vx.read_video(cut), lambda: vx.read_video(cut, 4),
                 lambda: list(vx.sliding_windows(cut, 4))):
        with pytest.raises(VideoReadError, match=r"truncated video: the container lists 12 frames but only \d+"):
            read()
    assert len(vx.read_video(whole)) == 12  # the whole file reads as before

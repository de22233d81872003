"""Folders of numbered pictures read as videos (:mod:`videoxai.data.frame_folder`): the frames a
video file of the same pictures gives, in the order of their numbers, decoded only where kept."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import videoxai as vx
from videoxai.data.container import probe
from videoxai.data.synthetic import SyntheticVideos
from videoxai.data.video import FrameTooLargeError, uniform_indices
from videoxai.errors import InputError, VideoReadError
from test_cli import _explain_here


def scene(count: int, height: int = 24, width: int = 32) -> np.ndarray:
    """``count`` frames, each told apart by its red level and a square moving a pixel a frame."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t, ..., 0] = 7 * t
        frames[t, 4:12, t % (width - 8):t % (width - 8) + 8, 1] = 255
    return frames


def write_series(folder: Path, frames: np.ndarray, name: str = "img_{:05d}.png", first: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / name.format(t + first))
    return folder


def write_lossless(frames: np.ndarray, path: Path, fps: int = 10) -> Path:
    """The same frames as an FFV1 (lossless RGB) video file."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="bgr0")))
        out.mux(stream.encode())
    return path


def test_a_folder_reads_as_the_video_file_of_its_pictures(tmp_path):
    frames = scene(30)
    folder = write_series(tmp_path / "frames", frames)
    video = write_lossless(frames, tmp_path / "same.mkv")
    for num in (None, 8, 45):
        a, b = vx.read_video(folder, num_frames=num), vx.read_video(video, num_frames=num)
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.indices, b.indices)
    whole = vx.read_video(folder)
    np.testing.assert_array_equal(whole.frames, frames)
    assert whole.fps is None and whole.times is None and whole.source == str(folder)


def test_pictures_are_in_the_order_of_their_numbers_not_of_their_names(tmp_path):
    frames = scene(12)
    folder = write_series(tmp_path / "f", frames, name="frame{}.png", first=0)  # frame10 sorts before frame2
    np.testing.assert_array_equal(vx.read_video(folder).frames, frames)
    # numbering from any first number, with gaps: the indices are the pictures' positions
    gaps = write_series(tmp_path / "g", frames[:3], name="{:04d}.png", first=0)
    (gaps / "0002.png").rename(gaps / "0007.png")
    clip = vx.read_video(gaps)
    assert clip.indices.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(clip.frames, frames[:3])


def test_only_the_kept_pictures_are_decoded(tmp_path):
    folder = write_series(tmp_path / "f", scene(10))
    kept = set(uniform_indices(10, 4).tolist())
    broken = next(p for p in range(10) if p not in kept)
    (folder / f"img_{broken + 1:05d}.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    assert vx.read_video(folder, num_frames=4).indices.tolist() == sorted(kept)
    with pytest.raises(VideoReadError, match=f"img_{broken + 1:05d}.png"):
        vx.read_video(folder)


def test_rgb_frames_are_chosen_beside_optical_flow_and_a_glob_names_another_series(tmp_path):
    frames = scene(6)
    folder = write_series(tmp_path / "v", frames)
    write_series(folder, 255 - frames, name="flow_x_{:05d}.png")
    write_series(folder, frames // 2, name="flow_y_{:05d}.png")
    (folder / "labels.csv").write_text("a,b\n")
    (folder / "cover.png").write_bytes(b"no number: not a frame")
    (folder / "._img_00001.png").write_bytes(b"macOS metadata")
    (folder / "img_00009.png").symlink_to("img_00009.png")   # a link that loops is no picture
    np.testing.assert_array_equal(vx.read_video(folder).frames, frames)
    np.testing.assert_array_equal(vx.read_video(folder / "flow_x_*.png").frames, 255 - frames)
    only_flow = tmp_path / "flow"
    write_series(only_flow, frames, name="flow_x_{:05d}.png")
    write_series(only_flow, frames, name="flow_y_{:05d}.png")
    with pytest.raises(VideoReadError, match=r"2 series .*flow_x_#\.png \(6\).*flow_y_#\.png \(6\).*glob"):
        vx.read_video(only_flow)


@pytest.mark.parametrize("name", ["{:05d}_rgb.png", "v_Basketball_g01_c01_{:05d}.png", "frame_{:04d}_v2.png"])
def test_the_frame_number_is_the_run_of_digits_that_varies(tmp_path, name):
    frames = scene(11)
    folder = write_series(tmp_path / "f", frames, name=name)
    np.testing.assert_array_equal(vx.read_video(folder).frames, frames)


def test_a_folder_of_many_series_lists_the_largest_few(tmp_path):
    for camera in range(7):
        write_series(tmp_path / "f", scene(3 + (camera == 4)), name=f"cam{camera}_{{:03d}}.png")
    # 7 cameras' series, and 3 of each frame across the cameras: listed by their last number first
    with pytest.raises(VideoReadError, match=r"holds 10 series of numbered pictures \(cam4_#\.png \(4\), "
                                             r"cam0_#\.png \(3\), .* and 6 more\); name one with a glob, e\.g\. "
                                             r"'.*/f/cam4_\*\.png'$"):
        vx.read_video(tmp_path / "f")
    np.testing.assert_array_equal(vx.read_video(tmp_path / "f" / "cam4_*.png").frames, scene(4))


def test_what_is_no_path_is_named_as_before(tmp_path):
    with pytest.raises(VideoReadError, match="a video path must be a str, bytes or os.PathLike, got int"):
        vx.read_video(3)
    with pytest.raises(VideoReadError, match=r"a\\x00b.mp4: no such file \(a file name cannot hold a NUL byte\)"):
        vx.read_video(str(tmp_path / "a\x00b.mp4"))
    with pytest.raises(VideoReadError, match="a video path must be a str, bytes or os.PathLike, got NoneType"):
        list(vx.sliding_windows(None, 4))


def test_a_file_whose_name_looks_like_a_glob_is_read_as_the_file(tmp_path):
    frames = scene(6)
    write_series(tmp_path, frames[::-1], name="take1{}.png")   # what the names would match as globs
    picture = tmp_path / "take[1]*.png"   # as a glob it would match the six pictures
    Image.fromarray(frames[0]).save(picture)
    with pytest.raises(VideoReadError, match=r"take\[1\]\*\.png: the file decodes to 1 frame"):
        vx.read_video(picture)   # the one picture, read as a file
    with pytest.raises(VideoReadError, match=r"take\[1\]\.mp4: no such file"):   # a video's name: no glob
        vx.read_video(tmp_path / "take[1].mp4")
    np.testing.assert_array_equal(vx.read_video(tmp_path / "take1*").frames, frames[::-1])   # a glob of pictures


def test_a_frame_rate_gives_times_and_ranges_in_seconds(tmp_path):
    folder = write_series(tmp_path / "f", scene(20))
    clip = vx.read_video(folder, num_frames=4, fps=10, start=0.5, end="1.5s")
    assert clip.indices.tolist() == [5, 8, 11, 14]
    np.testing.assert_allclose(clip.times, clip.indices / 10)
    assert clip.fps == 10
    assert vx.read_video(folder, start="3", end="6").indices.tolist() == [3, 4, 5]  # frame numbers, no rate
    with pytest.raises(VideoReadError, match="in seconds, but a folder of frames has no frame rate; give fps="):
        vx.read_video(folder, start=0.5)
    for bad in (0, -5, float("nan"), True, "25"):
        with pytest.raises(VideoReadError, match="fps must be a number of frames per second"):
            vx.read_video(folder, fps=bad)
    with pytest.raises(VideoReadError, match="fps applies to a folder of frames"):
        vx.read_video(write_lossless(scene(4), tmp_path / "v.mkv"), fps=10)


@pytest.mark.parametrize("make, message", [
    (lambda d: write_series(d, scene(1)), "holds 1 picture; a video classifier needs a moving clip"),
    (lambda d: d.mkdir(), "is a directory without numbered pictures"),
    (lambda d: (write_series(d, scene(3)), Image.fromarray(scene(1, 20)[0]).save(d / "img_00004.png")),
     r"img_00004.png: frame 3 is 32x20, but img_00001.png is 32x24"),
    (lambda d: (write_series(d, scene(3), name="x{}.png"), Image.fromarray(scene(1)[0]).save(d / "x01.png")),
     r"two pictures are frame 1 \(x01.png and x1.png\)"),
])
def test_bad_folders_are_named_in_one_line(tmp_path, make, message):
    make(tmp_path / "f")
    with pytest.raises(VideoReadError, match=message):
        vx.read_video(tmp_path / "f", num_frames=8)
    with pytest.raises(VideoReadError, match=message):
        list(vx.sliding_windows(tmp_path / "f", 2))


def test_a_range_of_one_frame_and_a_range_past_the_end_are_refused(tmp_path):
    folder = write_series(tmp_path / "f", scene(5))
    with pytest.raises(VideoReadError, match=r"the range holds 1 frame \(frame 4\)"):
        vx.read_video(folder, start="4")
    with pytest.raises(VideoReadError, match="start frame 9 is past the series' last frame, 4"):
        vx.read_video(folder, start="9")
    with pytest.raises(VideoReadError, match=r"start \(frame 3\) must be before end \(frame 2\)"):
        vx.read_video(folder, start="3", end="2")


def test_jpeg_pictures_decode_as_pillow_decodes_them(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.clip(scene(3, 64, 64).astype(int) + rng.integers(0, 60, (3, 64, 64, 3)), 0, 255).astype(np.uint8)
    folder = write_series(tmp_path / "f", frames, name="{:03d}.jpg")
    ours = vx.read_video(folder).frames.astype(int)
    pillow = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]).astype(int)
    assert np.abs(ours - pillow).mean() < 2.0   # two JPEG decoders: chroma upsampling differs by a level or two


def test_max_side_and_max_pixels_apply_to_pictures(tmp_path):
    folder = write_series(tmp_path / "f", scene(4, 40, 80))
    assert vx.read_video(folder, max_side=20).frames.shape == (4, 10, 20, 3)
    with pytest.raises(FrameTooLargeError, match="over the limit of 1000 pixels"):
        vx.read_video(folder, max_pixels=1000)


def test_probe_describes_a_folder(tmp_path):
    folder = write_series(tmp_path / "f", scene(7, 24, 40))
    assert probe(folder) == {"frames": 7, "fps": None, "width": 40, "height": 24, "duration": None,
                             "codec": "png", "container": "frames"}


def test_sliding_windows_over_a_folder_equal_those_over_its_frames_in_memory(tmp_path):
    frames = scene(21)
    folder = write_series(tmp_path / "f", frames)
    (folder / "img_00002.png").write_bytes(b"broken, and skipped by frame_step=2")
    for stride, step, tail in ((8, 2, "pad"), (5, 2, "shift")):
        ours = list(vx.sliding_windows(folder, 4, stride, frame_step=step, tail=tail, fps=7))
        theirs = list(vx.sliding_windows(vx.Clip(frames, fps=7), 4, stride, frame_step=step, tail=tail))
        assert [w.indices.tolist() for w in ours] == [w.indices.tolist() for w in theirs]
        assert [w.meta for w in ours] == [w.meta for w in theirs]
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a.frames, b.frames)
            np.testing.assert_allclose(a.times, a.indices / 7)
    with pytest.raises(VideoReadError, match="img_00002.png"):
        list(vx.sliding_windows(folder, 4))


def test_explain_video_over_a_folder_counts_seconds_by_the_rate_given(tmp_path):
    model = vx.load_model("demo")
    sample = SyntheticVideos(1, split="test", seed=0)[0]
    folder = write_series(tmp_path / "f", np.concatenate([sample.frames, sample.frames]))   # 16 frames
    v = vx.explain_video(model, folder, "saliency", window_stride=4, fps=4)
    assert v.source == str(folder)
    assert [(w.start_s, w.end_s) for w in v.windows] == [(0.0, 1.75), (1.0, 2.75), (2.0, 3.75)]
    by_number = vx.explain_video(model, folder, "saliency", window_stride=4, start="4")
    assert [w.frame_indices[0] for w in by_number.windows] == [4, 8] and by_number.windows[0].start_s is None
    with pytest.raises(InputError, match="fps applies to a folder of frames"):
        vx.explain_video(model, vx.Clip(sample.frames, fps=8), "saliency", fps=4)


def test_the_cli_explains_a_folder_as_the_same_frames_in_memory(tmp_path, capsys):
    sample = SyntheticVideos(1, split="test", seed=0)[0]
    folder = write_series(tmp_path / "frames", sample.frames)
    out = tmp_path / "out"
    assert _explain_here(str(folder / "img_*.png"), "--model", "demo", "--method", "gradcam", "-o", str(out)) == 0
    ours = vx.Explanation.load(out / "gradcam.npz")
    theirs = vx.explain(vx.load_model("demo"), vx.Clip(sample.frames), "gradcam")
    np.testing.assert_allclose(ours.spatial, theirs.spatial, atol=1e-6)
    assert ours.target == theirs.target and ours.score == pytest.approx(theirs.score, abs=1e-6)
    capsys.readouterr()
    assert _explain_here(str(folder), "--fps", "0", "-o", str(tmp_path / "o2")) == 2
    assert "--fps must be a number of frames per second > 0" in capsys.readouterr().err
    assert _explain_here(str(tmp_path), "-o", str(tmp_path / "o3")) == 2
    assert "is a directory without numbered pictures" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_the_stream_client_reads_a_folder_and_a_glob_frame_by_frame(tmp_path):
    from videoxai.serve.client import source_fps, video_frames

    frames = scene(5)
    folder = write_series(tmp_path / "f", frames)
    for source in (folder, str(folder / "img_*.png")):
        np.testing.assert_array_equal(np.stack(list(video_frames(source))), frames)
        assert source_fps(source) is None   # pictures carry no rate: the stream's own pace

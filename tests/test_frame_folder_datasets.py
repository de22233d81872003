"""Datasets whose videos are folders of numbered pictures (MMAction2's rawframes, UCF101-24's
``rgb-images``): a ``folder:`` with class subfolders of such folders, a labels CSV naming them (or a
glob of one series), the ``fps=`` they are read at, and ``ucf24:`` keys stored as frames, whose
boxes land on the pictures the clip kept."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_frame_folder import write_series

from videoxai.data.datasets import load_dataset
from videoxai.errors import InputError, VideoReadError

T, SIDE = 12, 32


def pictures(seed: int = 0) -> np.ndarray:
    """``(T, 32, 32, 3)`` uint8: noise of its own per video, and an 8×8 white square moving right by 2 px a frame."""
    frames = np.random.default_rng(seed).integers(0, 200, size=(T, SIDE, SIDE, 3), dtype=np.uint8)
    for t in range(T):
        frames[t, 4:12, 2 * t:2 * t + 8] = 255
    return frames


@pytest.fixture
def rawframes(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """``data/<class>/<video>/img_00001.png`` …: two classes of two videos, each 12 frames."""
    data, stored = tmp_path / "data", {}
    for k, key in enumerate(["cat/v1", "cat/v2", "dog/v1", "dog/v3"]):
        stored[key] = pictures(k)
        write_series(data / key, stored[key])
    return data, stored


def test_class_subfolders_of_frame_folders_are_videos(rawframes):
    data, stored = rawframes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(f"folder:{data}", num_frames=4)
    assert ds.class_names == ["cat", "dog"]
    assert [(s.key, s.label, s.label_name) for s in ds] == [
        ("cat/v1", 0, "cat"), ("cat/v2", 0, "cat"), ("dog/v1", 1, "dog"), ("dog/v3", 1, "dog")]
    for s in ds:
        clip = s.clip
        assert len(clip.indices) == 4 and clip.indices[0] == 0 and clip.indices[-1] == T - 1
        np.testing.assert_array_equal(clip.frames, stored[s.key][clip.indices])   # PNG: pixel-exact
        assert clip.fps is None and clip.times is None                           # pictures have no clock
    # mapped onto a model's classes as clip files are
    ds = load_dataset(f"folder:{data}", num_frames=4, labels=["bird", "dog", "cat"])
    assert [s.label for s in ds] == [2, 2, 1, 1]


def test_frame_folders_beside_video_files_and_mixed_series(rawframes):
    """A class folder of frame folders and a clip file; a rawframes folder with flow beside RGB."""
    from videoxai.data.video import write_video

    data, stored = rawframes
    write_video(pictures(9), data / "cat" / "clip.mp4", fps=10)
    write_series(data / "dog" / "v3", pictures(5)[:, :, :, :1].repeat(3, -1), name="flow_x_{:05d}.png")
    ds = load_dataset(f"folder:{data}", num_frames=4)
    assert ds.keys() == ["cat/clip.mp4", "cat/v1", "cat/v2", "dog/v1", "dog/v3"]
    s = ds[4]
    np.testing.assert_array_equal(s.clip.frames, stored["dog/v3"][s.clip.indices])   # the RGB series, not the flow
    assert ds[0].clip.fps == 10   # a file keeps its own rate


def test_a_folder_without_pictures_is_still_a_class_folder(tmp_path):
    """Folders holding one picture, pictures without numbers, or subfolders are walked into, not taken for videos."""
    data = tmp_path / "data"
    write_series(data / "cat" / "v1", pictures(0))
    Image.fromarray(pictures(1)[0]).save((data / "cat" / "cover.png"))      # beside the video: no number
    (data / "dog").mkdir()
    write_series(data / "dog" / "v2", pictures(2))
    Image.fromarray(pictures(3)[0]).save(data / "dog" / "poster_1.png")   # one numbered picture only
    ds = load_dataset(f"folder:{data}", num_frames=4)
    assert [(s.key, s.label_name) for s in ds] == [("cat/v1", "cat"), ("dog/v2", "dog")]
    # a class folder holding numbered pictures beside a video folder is walked into
    write_series(data / "dog", pictures(4)[:2], name="still_{}.png")
    assert load_dataset(f"folder:{data}", num_frames=4).keys() == ["cat/v1", "dog/v2"]


def test_one_videos_frames_given_as_the_data_folder_is_named(tmp_path):
    write_series(tmp_path / "v1", pictures(0))
    with pytest.raises(InputError, match=r"^folder: no video files in .*v1; it is one video's folder of frames: "
                                         r"give the folder above it \(folder:"):
        load_dataset(f"folder:{tmp_path / 'v1'}", num_frames=4)


def test_a_labels_csv_names_frame_folders_and_their_window_in_picture_positions(rawframes, tmp_path):
    data, stored = rawframes
    # the window is in the series' positions (0 for img_00001): frames 3 to 6 of cat/v2
    (data / "labels.csv").write_text("video,label,start,end\ncat/v2,cat,3,7\ndog/v1/img_*.png,dog,,\n")
    ds = load_dataset(f"folder:{data}", num_frames=12)
    assert [(s.key, s.label_name) for s in ds] == [("cat/v2", "cat"), ("dog/v1/img_*.png", "dog")]
    s = ds[0]
    assert s.clip.indices.tolist() == list(range(T)) and s.window == (3, 7)
    np.testing.assert_array_equal(s.clip.frames[3:7], stored["cat/v2"][3:7])
    np.testing.assert_array_equal(ds[1].clip.frames, stored["dog/v1"])
    # fewer frames sampled: the window covers the clip frames whose pictures lie in it
    s = load_dataset(f"folder:{data}", num_frames=4)[0]
    inside = [k for k, i in enumerate(s.clip.indices) if 3 <= i < 7]
    assert inside and s.window == (inside[0], inside[-1] + 1)
    # a first line that is a folder of frames is a row, not a header
    (data / "labels.csv").write_text("cat/v1,0\ndog/v3,1\n")
    assert [(s.key, s.label) for s in load_dataset(f"folder:{data}", num_frames=4, labels=["cat", "dog"])] == [
        ("cat/v1", 0), ("dog/v3", 1)]


def test_a_labels_csv_naming_no_frames(rawframes):
    data, _ = rawframes
    # a glob matching no picture is no video (not a clip that fails when read)
    (data / "labels.csv").write_text("video,label\ncat/v1/flow_*.png,cat\n")
    with pytest.raises(InputError, match=r"labels.csv:2: no video file .*cat/v1/flow_\*\.png$"):
        load_dataset(f"folder:{data}", num_frames=4)
    # a folder of no pictures is taken, and is an error of its own clip when read
    (data / "empty").mkdir()
    (data / "labels.csv").write_text("video,label\ncat/v1,cat\nempty,dog\n")
    ds = load_dataset(f"folder:{data}", num_frames=4)
    with pytest.raises(VideoReadError, match=r"data/empty: .*numbered pictures"):
        ds[1]
    # a window past the pictures is that clip's error row, in positions
    (data / "labels.csv").write_text("video,label,start,end\ncat/v1,cat,20,30\n")
    with pytest.raises(InputError, match=r"cat/v1: window \[20, 30\) starts after the video's last sampled frame \(11\)"):
        load_dataset(f"folder:{data}", num_frames=4)[0]


def test_fps_option_times_frame_folders_only(rawframes):
    from videoxai.data.video import write_video

    data, stored = rawframes
    write_video(pictures(9), data / "cat" / "clip.mp4", fps=10)
    ds = load_dataset(f"folder:{data},fps=25", num_frames=4)
    assert ds.spec.endswith(",fps=25")
    s = ds[1]
    assert s.key == "cat/v1" and s.clip.fps == 25
    np.testing.assert_allclose(s.clip.times, s.clip.indices / 25)
    np.testing.assert_array_equal(s.clip.frames, stored["cat/v1"][s.clip.indices])
    assert ds[0].clip.fps == 10   # the file keeps its own rate
    # in a CSV too; its window stays in frames
    (data / "labels.csv").write_text("video,label,start,end\ncat/v2,cat,3,7\n")
    s = load_dataset(f"folder:{data},fps=12.5", num_frames=12)[0]
    assert s.clip.fps == 12.5 and s.window == (3, 7) and s.clip.times[3] == pytest.approx(3 / 12.5)


@pytest.mark.parametrize("value", ["0", "-25", "nan", "fast"])
def test_a_frame_rate_that_is_no_rate_is_refused(rawframes, value):
    data, _ = rawframes
    with pytest.raises(InputError, match=rf"dataset 'folder': option fps must be a number > 0 .*got '{value}'"):
        load_dataset(f"folder:{data},fps={value}", num_frames=4)


def test_fps_for_video_files_only_is_refused(tmp_path):
    from videoxai.data.video import write_video

    write_video(pictures(0), tmp_path / "a" / "clip.mp4", fps=10)
    write_video(pictures(1), tmp_path / "b" / "clip.mp4", fps=10)
    with pytest.raises(InputError, match=r"fps=25 is the frame rate of folders of frames, and every clip is a video "
                                         r"file \(which has its own\); leave fps out"):
        load_dataset(f"folder:{tmp_path},fps=25", num_frames=4)


def ucf24_frames(root: Path, annotations: list[dict], key: str = "Jump/v_Jump_g01_c01") -> str:
    """``ROOT/<key>/00001.png`` … (UCF101-24's rgb-images, numbered from 1) and their annotations."""
    write_series(root / key, pictures(0), name="{:05d}.png")
    (root / "annotations.json").write_text(json.dumps(
        {key: {"label": 0, "numf": T, "annotations": [{"label": 0, **a} for a in annotations]}}))
    return f"ucf24:{root}"


def test_ucf24_keys_stored_as_frames_and_their_boxes(tmp_path):
    # the square's box on each frame t: x from 2t to 2t + 8, y from 4 to 12; the tube covers frames 2 to 9
    boxes = [[2 * t, 4, 2 * t + 8, 12] for t in range(2, 10)]
    spec = ucf24_frames(tmp_path, [{"sf": 2, "ef": 10, "boxes": boxes}])
    s = load_dataset(spec, num_frames=12, labels=["Jump"])[0]
    assert s.key == "Jump/v_Jump_g01_c01" and s.label == 0 and s.label_name == "Jump"
    np.testing.assert_array_equal(s.clip.frames, pictures(0))   # 00001.png is frame 0
    assert s.window == (2, 10)
    for t in range(T):
        if 2 <= t < 10:   # the box lies on the white square of the very picture
            assert s.boxes[t].tolist() == [4, 2 * t, 12, 2 * t + 8]
            assert (s.clip.frames[t][s.masks[t]] == 255).all() and s.masks[t].sum() == 64
        else:
            assert s.boxes[t].tolist() == [-1] * 4 and not s.masks[t].any()
    # fewer frames: the boxes of the pictures kept
    s = load_dataset(spec, num_frames=4)[0]
    for k, t in enumerate(s.clip.indices):
        assert s.masks[k].any() == (2 <= t < 10)
        if s.masks[k].any():
            assert s.boxes[k].tolist() == [4, 2 * t, 12, 2 * t + 8]


def test_ucf24_frames_agree_with_the_same_video_as_a_file(tmp_path):
    """Picture k (0-based, in number order) is the file's frame k: the same boxes land on the same frames."""
    from videoxai.data.video import write_video

    boxes = [[2 * t, 4, 2 * t + 8, 12] for t in range(3, 11)]
    frames_spec = ucf24_frames(tmp_path / "frames", [{"sf": 3, "boxes": boxes}])
    write_video(pictures(0), tmp_path / "file" / "Jump" / "v_Jump_g01_c01.avi", fps=25)
    (tmp_path / "file" / "annotations.json").write_text((tmp_path / "frames" / "annotations.json").read_text())
    a = load_dataset(frames_spec, num_frames=6)[0]
    b = load_dataset(f"ucf24:{tmp_path / 'file'}", num_frames=6)[0]
    assert a.clip.indices.tolist() == b.clip.indices.tolist()
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert a.window == b.window


def test_ucf24_a_file_is_preferred_and_a_key_with_neither_is_named(tmp_path):
    from videoxai.data.video import write_video

    spec = ucf24_frames(tmp_path, [{"sf": 0, "boxes": [[0, 0, 4, 4]]}])
    write_video(pictures(1)[:6], tmp_path / "Jump" / "v_Jump_g01_c01.mp4", fps=10)
    assert load_dataset(spec, num_frames=4)[0].clip.fps == 10   # the .mp4, not the folder
    (tmp_path / "annotations.json").write_text(json.dumps({"Jump/missing": {"label": 0, "annotations": []}}))
    with pytest.raises(InputError, match=r"Jump/missing: no video .*Jump/missing\.avi or \.mp4, nor a folder of its "
                                         r"frames .*Jump/missing/$"):
        load_dataset(spec, num_frames=4)

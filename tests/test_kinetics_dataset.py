"""The ``kinetics:`` dataset kind: the release's CSV, clips found by name wherever a downloader put
them, segments of whole videos read at their times, missing clips counted and left out."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videoxai.data.datasets import load_dataset
from videoxai.data.video import write_video
from videoxai.errors import InputError

CLASSES = ["abseiling", "air drumming", "zumba"]
HEADER = "label,youtube_id,time_start,time_end,split\n"


def video(path: Path, seconds: int, fps: int = 8) -> Path:
    """A video whose frame ``t`` has red level ``4 t``: a read frame tells its time."""
    frames = np.zeros((seconds * fps, 16, 16, 3), np.uint8)
    frames[..., 0] = (4 * np.arange(seconds * fps))[:, None, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(frames, path, fps=fps)


@pytest.fixture
def release(tmp_path) -> Path:
    """A Kinetics copy as downloaders leave it: class folders, a flat folder, a whole video, a
    clip as frames, and one clip gone from YouTube."""
    root = tmp_path / "k400"
    video(root / "val" / "abseiling" / "aaa_000004_000006.mp4", 2)
    video(root / "val" / "air_drumming" / "bbb_000010_000012.mkv", 2)
    video(root / "whole" / "ccc.mp4", 4)                      # the segment [1, 3) of its whole video
    frames = root / "rawframes" / "ddd_000000_000002"
    frames.mkdir(parents=True)
    for t in range(6):
        Image.fromarray(np.full((16, 16, 3), 10 * t, np.uint8)).save(frames / f"img_{t + 1:05d}.jpg")
    (root / "annotations").mkdir()
    (root / "annotations" / "validate.csv").write_text(
        HEADER + "abseiling,aaa,4,6,val\nair drumming,bbb,10,12,val\nzumba,ccc,1,3,val\n"
        "zumba,ddd,0,2,val\nabseiling,gone,0,10,val\nzumba,eee,0,10,train\n")
    return root


def test_clips_are_found_wherever_downloaders_put_them_and_missing_ones_counted(release):
    with pytest.warns(UserWarning, match=r"1 of the 5 clips validate.csv lists are not below .* \(gone_000000_000010\)"):
        ds = load_dataset(f"kinetics:{release},split=val", num_frames=4, labels=CLASSES)
    assert ds.keys() == ["aaa_000004_000006", "bbb_000010_000012", "ccc_000001_000003", "ddd_000000_000002"]
    assert [ds.label_of(i) for i in range(4)] == [0, 1, 2, 2]
    assert ds.class_names == CLASSES
    first = ds.load(0)
    assert first.label == 0 and first.label_name == "abseiling" and first.clip.frames.shape == (4, 16, 16, 3)
    assert ds.load(3).clip.indices.tolist() == [0, 2, 3, 5]   # the folder of 6 frames


def test_a_whole_videos_segment_is_read_at_its_times(release):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset(f"kinetics:{release},split=val", num_frames=8, labels=CLASSES)
    clip = ds.load(ds.keys().index("ccc_000001_000003")).clip
    assert clip.indices.min() >= 8 and clip.indices.max() <= 23   # seconds [1, 3) at 8 fps
    assert clip.times.min() >= 1.0 and clip.times.max() < 3.0
    np.testing.assert_allclose(clip.frames[:, 0, 0, 0], 4 * clip.indices, atol=3)   # the frames of those times


def test_without_a_models_classes_the_csvs_names_are_the_classes(release):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset(f"kinetics:{release},annotations={release / 'annotations' / 'validate.csv'}", num_frames=4)
    assert ds.class_names == ["abseiling", "air drumming", "zumba"]   # the train row's class too
    assert len(ds) == 4   # every split: eee is missing as gone is


def test_the_test_split_has_no_labels(tmp_path):
    video(tmp_path / "aaa_000000_000002.mp4", 2)
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\naaa,0,2,test\n")
    ds = load_dataset(f"kinetics:{tmp_path}", num_frames=4, labels=CLASSES)
    assert ds.label_of(0) is None and ds.load(0).label is None


@pytest.mark.parametrize("csv_text, spec, message", [
    ("label,youtube_id,start\nx,aaa,0\n", "", r"the header must name youtube_id, time_start, time_end .* "
                                               r"time_start, time_end missing"),
    (HEADER + "abseiling,aaa,4,6,val\n", ",split=train", r"no row of split 'train'; its splits are val"),
    (HEADER + "abseiling,aaa,6,4,val\n", "", r":2: time_end \(4\) must be after time_start \(6\)"),
    (HEADER + "abseiling,aaa,4.5,6,val\n", "", r":2: a segment's times are whole seconds >= 0, got '4.5'"),
    (HEADER + "ballet,aaa,0,2,val\n", "", r":2: class 'ballet' is not one of the model's classes"),
    (HEADER + "abseiling,zzz,0,2,val\n", "", r"none of the 1 clips test.csv lists is below .* zzz_000000_000002.mp4"),
    ("youtube_id,time_start,time_end\naaa,0,2\n", ",split=val", r"split=val asks for a 'split' column"),
])
def test_bad_annotations_are_named_with_their_line(tmp_path, csv_text, spec, message):
    video(tmp_path / "aaa_000000_000002.mp4", 2)
    (tmp_path / "test.csv").write_text(csv_text)
    with pytest.raises(InputError, match=message):
        load_dataset(f"kinetics:{tmp_path}{spec}", num_frames=4, labels=CLASSES)


def test_the_csv_is_found_or_asked_for(tmp_path):
    video(tmp_path / "aaa_000000_000002.mp4", 2)
    with pytest.raises(InputError, match="no CSV in .*; give annotations=FILE.csv"):
        load_dataset(f"kinetics:{tmp_path}", num_frames=4)
    for name in ("train.csv", "validate.csv"):
        (tmp_path / name).write_text(HEADER + "abseiling,aaa,0,2,val\n")
    with pytest.raises(InputError, match=r"2 CSV files in .* \(train.csv, validate.csv\); name one"):
        load_dataset(f"kinetics:{tmp_path}", num_frames=4)
    assert len(load_dataset(f"kinetics:{tmp_path},annotations={tmp_path / 'train.csv'}", num_frames=4)) == 1


def test_a_link_back_up_the_tree_is_walked_once(tmp_path):
    video(tmp_path / "a" / "aaa_000000_000002.mp4", 2)
    (tmp_path / "a" / "up").symlink_to(tmp_path)
    (tmp_path / "v.csv").write_text(HEADER + "abseiling,aaa,0,2,val\n")
    ds = load_dataset(f"kinetics:{tmp_path}", num_frames=4, labels=CLASSES)
    assert ds.keys() == ["aaa_000000_000002"]

"""``folder:DIR,split=FILE``: the clips of an official split list (UCF101's ``testlist01.txt``,
MMAction2's lists) among class subfolders, classes named from every subfolder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from videoxai.data.datasets import load_dataset
from videoxai.data.video import write_video
from videoxai.errors import InputError


@pytest.fixture
def ucf(tmp_path):
    """UCF101 as shipped (class folders of .avi), one class stored as folders of frames."""
    root = tmp_path / "UCF-101"
    frames = np.zeros((6, 16, 16, 3), np.uint8)
    for cls, n in (("ApplyEyeMakeup", 3), ("HandstandPushups", 2)):
        for g in range(1, n + 1):
            (root / cls).mkdir(parents=True, exist_ok=True)
            write_video(frames + 10 * g, root / cls / f"v_{cls}_g0{g}_c01.avi", fps=8)
    for g in (1, 2):
        folder = root / "Zoom" / f"v_Zoom_g0{g}_c01"
        folder.mkdir(parents=True)
        for t in range(6):
            Image.fromarray(frames[t]).save(folder / f"img_{t + 1:05d}.jpg")
    return root


def test_a_split_list_chooses_the_clips_and_the_folders_name_the_classes(ucf, tmp_path):
    split = tmp_path / "testlist01.txt"
    # as UCF101's lists write them: .avi names (here of a folder of frames too), and the folder
    # HandstandPushups as 'HandStandPushups'; one clip not in this copy
    split.write_text("\ufeffApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi\r\n"
                     "HandStandPushups/v_HandStandPushups_g01_c01.avi\r\nZoom/v_Zoom_g02_c01.avi\r\n"
                     "Zoom/v_Zoom_g09_c01.avi\r\n\r\n")
    with pytest.warns(UserWarning, match=r"1 of the 4 clips testlist01.txt lists are not below .* "
                                         r"\('Zoom/v_Zoom_g09_c01.avi'\); left out"):
        ds = load_dataset(f"folder:{ucf},split={split}", num_frames=4)
    assert ds.keys() == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi", "HandstandPushups/v_HandstandPushups_g01_c01.avi",
                         "Zoom/v_Zoom_g02_c01"]
    assert ds.class_names == ["ApplyEyeMakeup", "HandstandPushups", "Zoom"]
    assert [ds.label_of(i) for i in range(3)] == [0, 1, 2]
    assert int(ds.load(0).clip.frames[0, 0, 0, 0]) == pytest.approx(20, abs=3)   # g02's frames


def test_the_lists_own_labels_are_not_read_and_a_missing_class_moves_no_index(ucf, tmp_path):
    split = tmp_path / "trainlist01.txt"   # class numbers 1-based, as UCF101's: not the folders' indices
    split.write_text("Zoom/v_Zoom_g01_c01.avi 3\nZoom/v_Zoom_g02_c01 6 2\n")   # MMAction2's: frames, label
    ds = load_dataset(f"folder:{ucf},split={split}", num_frames=4)
    assert len(ds) == 2 and ds.class_names == ["ApplyEyeMakeup", "HandstandPushups", "Zoom"]
    assert [ds.label_of(i) for i in range(2)] == [2, 2]


def test_bad_splits_are_named(ucf, tmp_path):
    with pytest.raises(InputError, match="folder: no split file"):
        load_dataset(f"folder:{ucf},split={tmp_path / 'nope.txt'}", num_frames=4)
    (tmp_path / "other.txt").write_text("Other/v_1.avi\n")
    with pytest.raises(InputError, match=r"lists 1 clips, none of them below .* \(e.g. 'Other/v_1.avi'\)"):
        load_dataset(f"folder:{ucf},split={tmp_path / 'other.txt'}", num_frames=4)
    (ucf / "labels.csv").write_text("video,label\nZoom/v_Zoom_g01_c01,0\n")
    with pytest.raises(InputError, match="split=.* chooses among class subfolders' clips; .*labels.csv lists the clips"):
        load_dataset(f"folder:{ucf},split={tmp_path / 'other.txt'}", num_frames=4)

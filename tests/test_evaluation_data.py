"""Evaluation datasets as a researcher's own files come: labels CSVs as spreadsheets and scripts
write them, and annotations with mistakes that must be named, not scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videoxai.data.datasets import load_dataset
from videoxai.errors import InputError

CLASSES = ["red square", "blue square", "red triangle"]


def video(path: Path, t=8, h=24, w=32) -> Path:
    from videoxai.data.video import write_video

    write_video(np.random.default_rng(0).integers(0, 255, (t, h, w, 3), dtype=np.uint8), path, fps=8)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clips")
    video(d / "a.mp4")
    video(d / "b.mp4")
    return d


@pytest.mark.parametrize("content", [
    "Video,Label\na.mp4,blue square\nb.mp4,2\n",                  # capitalised, as typed by hand
    "video, label\na.mp4, blue square\nb.mp4, 2\n",               # a space after each comma
    " VIDEO ,label,notes\na.mp4,blue square,ok\nb.mp4,2,\n",      # and a column of notes
    "a.mp4,blue square\nb.mp4,2\n",                               # no header line at all
    "video;label\na.mp4;blue square\nb.mp4;2\n",                  # a spreadsheet of a comma-decimal locale
    "video\tlabel\r\na.mp4\tblue square\r\nb.mp4\t2\r\n",          # TSV with Windows line ends
    "\ufeffvideo,label\r\n\r\na.mp4,\"blue square\"\r\nb.mp4,2\r\n",  # Excel "CSV UTF-8", a blank line
])
def test_labels_csv_as_spreadsheets_and_scripts_write_it(clips, tmp_path, content):
    """Every variant gives each clip its label: 'video, label' named a column ' label', which
    matched nothing, so every clip silently lost its label (explained for the prediction); a
    file without a header line or with ';' was refused."""
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(content, encoding="utf-8", newline="")
    ds = load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)
    assert ds.keys() == ["a.mp4", "b.mp4"]
    assert [(s.label, s.label_name) for s in ds] == [(1, "blue square"), (2, "red triangle")]


@pytest.mark.parametrize("content, message", [
    ("file,label\na.mp4,0\n", r"first line must be a header naming a 'video' column .* got \['file', 'label'\]"),
    ("video,label\n", "lists no videos, only its header line"),
    ("\n\n", "the file is empty"),
    ("video,label\na.mp4,0\n\nmissing.mp4,1\n", r"labels.csv:4: no video file"),   # the file's own line
])
def test_labels_csv_errors_name_the_file_and_line(clips, tmp_path, content, message):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)

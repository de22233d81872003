"""``folder:`` data with parts the user may not read: a subfolder that cannot be listed is left
out with a warning naming it (as a broken video link is), a listed video in a folder that cannot
be searched is kept and fails when read (an error row of the evaluation, as any unreadable
video), and only a data folder that cannot be read at all is an error."""

from __future__ import annotations

import os
import pathlib
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from videoxai.data.datasets import load_dataset
from videoxai.data.video import read_video, write_video
from videoxai.errors import InputError, VideoReadError

CLASSES = ["bird", "cat", "dog"]

not_as_root = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                             reason="root reads a folder of mode 000 all the same")


@pytest.fixture
def data(tmp_path) -> Path:
    """``data/<class>/a.mp4`` for three classes, and a labels CSV naming them."""
    rng = np.random.default_rng(0)
    for c in CLASSES:
        write_video(rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8), tmp_path / "data" / c / "a.mp4", fps=10)
    (tmp_path / "listed.csv").write_text("video,label\n" + "".join(f"{c}/a.mp4,{c}\n" for c in CLASSES))
    return tmp_path / "data"


@pytest.fixture
def locked(data):
    """``data/dog`` with mode 000 (given back after the test, so that it can be removed)."""
    (data / "dog").chmod(0)
    yield data / "dog"
    (data / "dog").chmod(0o755)


def check_left_out(data: Path) -> None:
    with pytest.warns(UserWarning, match=r"^folder: .*data: 1 subfolder cannot be read \('dog': Permission denied\); "
                                         r"its videos are left out"):
        ds = load_dataset(f"folder:{data}", num_frames=4, labels=CLASSES)
    assert [(s.key, s.label) for s in ds] == [("bird/a.mp4", 0), ("cat/a.mp4", 1)]   # still the model's classes


def check_listed_video_fails_alone(data: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(f"folder:{data},labels={data.parent / 'listed.csv'}", num_frames=4, labels=CLASSES)
    assert ds.keys() == ["bird/a.mp4", "cat/a.mp4", "dog/a.mp4"]
    assert ds[1].label == 1
    # the evaluation's error row for this clip: one line naming the file (not a PermissionError traceback)
    with pytest.raises(VideoReadError, match=r"dog/a\.mp4: cannot be read \(Permission denied\)$"):
        ds[2]


@not_as_root
def test_a_subfolder_of_mode_000_is_left_out_with_a_warning_naming_it(data, locked):
    # it stopped the whole data set: "folder: cannot list …/dog: Permission denied"
    check_left_out(data)


@not_as_root
def test_a_listed_video_in_a_folder_of_mode_000_fails_alone_when_read(data, locked):
    # a PermissionError from deep inside load_dataset (Path.is_file raises for a folder that
    # cannot be searched), for the whole data set
    check_listed_video_fails_alone(data)


@not_as_root
def test_a_data_folder_that_cannot_be_read_at_all_is_an_error_naming_it(data, locked):
    with pytest.raises(InputError, match=r"^folder: cannot read \S*/data/dog: Permission denied$"):
        load_dataset(f"folder:{locked}", num_frames=4)
    with pytest.raises(InputError, match=r"^folder: cannot read .*dog/a\.mp4: Permission denied"):
        load_dataset(f"folder:{locked}/a.mp4", num_frames=4)   # a path through it: was a PermissionError


def test_unreadable_subfolders_where_root_would_read_them(data, monkeypatch):
    """The same where the tests run as root (mode 000 does not stop root): the operating system's
    answers for folders that cannot be listed or searched, put in their place."""
    refused = [str(data / "dog")]
    scandir, is_file, stat = os.scandir, pathlib.Path.is_file, pathlib.Path.stat

    def refuse(path, named=None) -> None:
        # the error names the path asked about (a file in the folder, as stat(2) answers for it)
        if any(os.fspath(path) == f or os.fspath(path).startswith(f + os.sep) for f in refused):
            raise PermissionError(13, "Permission denied", os.fspath(path if named is None else named))

    def no_listing(path="."):
        refuse(path)
        return scandir(path)

    def no_search(self):
        refuse(self.parent, self)  # as Path.is_file() of a file in a folder that cannot be searched
        return is_file(self)

    monkeypatch.setattr(os, "scandir", no_listing)
    monkeypatch.setattr(pathlib.Path, "is_file", no_search)
    check_left_out(data)
    monkeypatch.setattr(pathlib.Path, "stat", lambda self, **kw: refuse(self.parent, self) or stat(self, **kw))
    check_listed_video_fails_alone(data)
    # the data folder itself, or a path through it, cannot be read: one error naming it
    with pytest.raises(InputError, match=r"^folder: cannot read \S*/data/dog: Permission denied$"):
        load_dataset(f"folder:{data / 'dog'}", num_frames=4)
    with pytest.raises(InputError, match=r"^folder: cannot read .*dog/a\.mp4: Permission denied"):
        load_dataset(f"folder:{data / 'dog'}/a.mp4", num_frames=4)
    refused[:] = [str(data / c) for c in CLASSES]
    with pytest.raises(InputError, match=r"^folder: no video files in .*data \(3 subfolders cannot be read "
                                         r"\('bird': Permission denied, 'cat': Permission denied, 'dog': "), \
            pytest.warns(UserWarning, match="3 subfolders cannot be read"):
        load_dataset(f"folder:{data}", num_frames=4, labels=CLASSES)


def test_a_csv_names_a_video_whose_name_starts_with_a_space_and_both_lines_of_a_repeated_one(tmp_path):
    """A video named ' intro.mp4' (quoted in the CSV, spaces and all) was "no video file intro.mp4":
    the cell was stripped, as 'a.mp4, 0' typed by hand needs; the name as written is tried next.
    A video listed twice (two exports joined) said so without saying where: both lines now."""
    rng = np.random.default_rng(0)
    for name in (" intro.mp4", "b.mp4"):
        write_video(rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8), tmp_path / name, fps=10)
    (tmp_path / "labels.csv").write_text('video,label\n" intro.mp4",cat\nb.mp4, dog\n')
    ds = load_dataset(f"folder:{tmp_path}", num_frames=4, labels=CLASSES)
    assert [(s.key, s.label) for s in ds] == [(" intro.mp4", 1), ("b.mp4", 2)]
    assert ds[0].clip.frames.shape == (4, 16, 16, 3)
    (tmp_path / "labels.csv").write_text("video,label\nb.mp4,dog\n\" intro.mp4\",cat\nb.mp4,dog\n")
    with pytest.raises(InputError, match=r"labels\.csv:2 and 4: video 'b\.mp4' is listed twice$"):
        load_dataset(f"folder:{tmp_path}", num_frames=4, labels=CLASSES)


@pytest.mark.parametrize("content, message", [
    # UTF-16 without a byte-order mark decodes as UTF-8 with a NUL after each letter: the header
    # was "no 'video' column, got ['v\x00i\x00d\x00…']"; a stray NUL made a class 'cat\x00'
    ("video,label\na.mp4,cat\n".encode("utf-16-le"), r"labels\.csv:1: holds a NUL byte \(UTF-16 saved without"),
    (b"video,label\na.mp4,cat\x00\n", r"labels\.csv:2: holds a NUL byte"),
    # a quote left open took the rest of the file into one field: past 131 072 characters a raw _csv.Error
    (b'video,label\na.mp4,cat\n"b.mp4,cat\n' + b"x" * 200_000 + b"\n", r"labels\.csv:4: not a CSV line \(field larger"),
])
def test_a_labels_csv_that_is_not_text_or_not_csv_is_named_with_its_line(tmp_path, content, message):
    write_video(np.zeros((6, 16, 16, 3), np.uint8), tmp_path / "a.mp4", fps=10)
    (tmp_path / "labels.csv").write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_dataset(f"folder:{tmp_path}", num_frames=4, labels=CLASSES)


def test_class_folders_of_digits_beside_named_ones_are_names_and_non_ascii_digits_are_no_index(tmp_path):
    """Folders '1', '2' and 'cat' are three named classes (sorted: '1', '2', 'cat'), but each
    folder of digits was mapped as an index into them: the clips of '1' went to class 1, '2', and
    those of '2' to 'cat'. '²'.isdigit() holds: folders '1' and '²' were read as indices, '²' was
    "not among the model's classes" (there were none) and every clip left unlabelled; an SSv2
    labels file mapping a template to '²' was a raw ValueError from int()."""
    import json

    for c in ("1", "2", "cat"):
        write_video(np.zeros((6, 16, 16, 3), np.uint8), tmp_path / "mixed" / c / "a.mp4", fps=10)
    ds = load_dataset(f"folder:{tmp_path / 'mixed'}", num_frames=4)
    assert [(s.key, s.label, s.label_name) for s in ds] == [("1/a.mp4", 0, "1"), ("2/a.mp4", 1, "2"),
                                                            ("cat/a.mp4", 2, "cat")]
    assert ds.class_names == ["1", "2", "cat"]
    for c in ("1", "²"):
        write_video(np.zeros((6, 16, 16, 3), np.uint8), tmp_path / "f" / c / "a.mp4", fps=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(f"folder:{tmp_path / 'f'}", num_frames=4)
    assert [(s.key, s.label, s.label_name) for s in ds] == [("1/a.mp4", 0, "1"), ("²/a.mp4", 1, "²")]
    write_video(np.zeros((6, 16, 16, 3), np.uint8), tmp_path / "s" / "7.webm", fps=10)
    (tmp_path / "val.json").write_text(json.dumps([{"id": 7, "template": "Putting [something]"}]))
    (tmp_path / "labels.json").write_text(json.dumps({"Putting something": "²"}))
    with pytest.raises(InputError, match=r"labels.json: 'Putting something': class index must be an integer ≥ 0, got '²'"):
        load_dataset(f"ssv2:{tmp_path / 's'},annotations={tmp_path / 'val.json'},labels={tmp_path / 'labels.json'}",
                     num_frames=4)


def test_a_folder_takes_dvd_dv_and_broadcast_files(tmp_path):
    """A DVD's .vob, a DV camcorder's .dv, a broadcast .mxf and an .asf (all of which the readers
    read) were left out of a folder without a word (empty files stand for the videos: the listing
    does not decode)."""
    names = ["a.VOB", "b.dv", "c.mxf", "d.asf", "e.mp4"]
    for name in names + ["notes.txt", "player.ts"]:
        (tmp_path / name).write_bytes(b"")
    assert load_dataset(f"folder:{tmp_path}", num_frames=4).keys() == names


def test_a_link_that_loops_is_a_link_to_no_file_not_the_end_of_the_listing(data):
    """A link that resolves to itself ('clip.mp4 -> clip.mp4', or a folder 'a -> b -> a') fails
    with ELOOP when followed: the folder listing stopped with an OSError traceback. A video link
    that loops is named as a link to no file, another is passed over; reading one named in a CSV
    is one line."""
    (data / "cat" / "loop.mp4").symlink_to("loop.mp4")
    (data / "dog" / "a_dir").symlink_to("b_dir")
    (data / "dog" / "b_dir").symlink_to("a_dir")
    with pytest.warns(UserWarning, match=r"data: 1 video link \('cat/loop.mp4'\) points to no file; left out$"):
        ds = load_dataset(f"folder:{data}", num_frames=4, labels=CLASSES)
    assert [(s.key, s.label) for s in ds] == [("bird/a.mp4", 0), ("cat/a.mp4", 1), ("dog/a.mp4", 2)]
    (data.parent / "loop.csv").write_text("video,label\ncat/loop.mp4,cat\n")
    with pytest.raises(InputError, match=r"loop\.csv:2: no video file .*cat/loop\.mp4$"):
        load_dataset(f"folder:{data},labels={data.parent / 'loop.csv'}", num_frames=4, labels=CLASSES)
    with pytest.raises(VideoReadError, match=r"cat/loop\.mp4: cannot be read \(Too many levels of symbolic links\)$"):
        read_video(data / "cat" / "loop.mp4")


def test_a_class_named_in_the_other_unicode_form_is_that_class(tmp_path):
    """A class folder made on a Mac is named 'café' with an 'e' and a combining accent (NFD); the
    model's class, and a CSV typed elsewhere, have one 'é' (NFC). On Linux these were two names:
    the folder's clips were "not among the model's classes" (a warning showing the same 'café')
    and every clip lost its class."""
    import unicodedata

    classes = ["café", "crème brûlée", "dog"]
    frames = np.random.default_rng(0).integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    for folder in (unicodedata.normalize("NFD", "café"), "crème_brûlée", "dog"):
        write_video(frames, tmp_path / "data" / folder / "a.mp4", fps=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(f"folder:{tmp_path / 'data'}", num_frames=4, labels=classes)
    assert sorted(ds.label_of(i) for i in range(len(ds))) == [0, 1, 2]
    (tmp_path / "l.csv").write_text(f"video,label\ndog/a.mp4,{unicodedata.normalize('NFD', 'Crème Brûlée')}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(f"folder:{tmp_path / 'data'},labels={tmp_path / 'l.csv'}", num_frames=4, labels=classes)
    assert ds.label_of(0) == 1 and ds[0].label_name == "crème brûlée"


def test_a_link_into_a_folder_that_cannot_be_searched_is_named_not_a_traceback(data, monkeypatch):
    """Following a link into a folder the user may not search fails with EACCES (as root, put in
    its place): a linked video is taken, and fails alone when read (as a listed video in such a
    folder does); a linked folder is named among the subfolders that cannot be read."""
    # (to a video outside the data: one reached in two classes is refused, as the test below says)
    (data / "cat" / "linked.mp4").symlink_to(data.parent / "private" / "a.mp4")
    (data / "dog" / "linked_dir").symlink_to(data / "bird")
    scandir = os.scandir

    class Refused:
        def __init__(self, entry):
            self._entry, self.name = entry, entry.name

        def is_dir(self):
            raise PermissionError(13, "Permission denied", self._entry.path)

        is_file = is_dir

        def is_symlink(self):
            return True

    def listing(path="."):
        return [Refused(e) if e.name.startswith("linked") else e for e in scandir(path)]

    monkeypatch.setattr(os, "scandir", listing)
    with pytest.warns(UserWarning, match=r"data: 1 subfolder cannot be read \('dog/linked_dir': Permission denied\)"):
        ds = load_dataset(f"folder:{data}", num_frames=4, labels=CLASSES)
    assert ds.keys() == ["bird/a.mp4", "cat/a.mp4", "cat/linked.mp4", "dog/a.mp4"]


def test_a_video_linked_into_two_class_folders_is_refused_and_into_one_twice_listed_once(data):
    """One folder of videos linked into two class folders (as scripts build evaluation subsets)
    listed each of its videos once per class, under two keys: a clip explained for two classes
    and scored against both, one of them "wrong" whatever the model said. Which class is meant
    cannot be told: refused, naming the file and both classes (classes from the model, or from
    the folders). Linked twice into one class, it is listed once, with a warning."""
    pool = data.parent / "pool"
    write_video(np.zeros((6, 16, 16, 3), np.uint8), pool / "x.mp4", fps=10)
    (data / "cat" / "shared").symlink_to(pool)
    (data / "dog" / "shared").symlink_to(pool, target_is_directory=True)
    said = (rf"^folder: {re.escape(str(data))}: {re.escape(os.path.realpath(pool / 'x.mp4'))} is in two classes through linked "
            r"folders: class 'cat' as 'cat/shared/x\.mp4' and class 'dog' as 'dog/shared/x\.mp4'; a clip has one "
            r"class: link it into one class folder only, or label the clips in a labels\.csv$")
    for labels in (CLASSES, None):
        with pytest.raises(InputError, match=said):
            load_dataset(f"folder:{data}", num_frames=4, labels=labels)
    (data / "dog" / "shared").unlink()
    (data / "cat" / "again").symlink_to(pool)
    with pytest.warns(UserWarning, match=r"data: 1 video is reached again through linked folders and listed once "
                                         r"\('cat/shared/x\.mp4' is 'cat/again/x\.mp4'\)$"):
        ds = load_dataset(f"folder:{data}", num_frames=4, labels=CLASSES)
    assert [(s.key, s.label) for s in ds] == [("bird/a.mp4", 0), ("cat/a.mp4", 1), ("cat/again/x.mp4", 1),
                                              ("dog/a.mp4", 2)]

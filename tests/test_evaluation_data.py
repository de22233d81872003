"""Evaluation datasets as a researcher's own files come: labels CSVs as spreadsheets and scripts
write them, and annotations with mistakes that must be named, not scored."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

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
    b"\xff\xfe" + "video\tlabel\r\na.mp4\tblue square\r\nb.mp4\t2\r\n".encode("utf-16-le"),  # "Unicode Text"
    "video,label,start,end\na.mp4,blue square,,\nb.mp4,2,2.0,4.0\n",  # pandas: an int column with gaps
    "video,label\na.mp4,1.0\nb.mp4,2.0\n",                             # and a label column with gaps
])
def test_labels_csv_as_spreadsheets_and_scripts_write_it(clips, tmp_path, content):
    """Every variant gives each clip its label: 'video, label' named a column ' label', which
    matched nothing, so every clip silently lost its label (explained for the prediction); a
    file without a header line or with ';' was refused, and so was Excel's UTF-16 text."""
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes(content if isinstance(content, bytes) else content.encode())
    ds = load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)
    assert ds.keys() == ["a.mp4", "b.mp4"]
    assert [(s.label, s.label_name) for s in ds] == [(1, "blue square"), (2, "red triangle")]


@pytest.mark.parametrize("content, message", [
    ("file,label\na.mp4,0\n", r"first line must be a header naming a 'video' column .* got \['file', 'label'\]"),
    ("video,label\n", "lists no videos, only its header line"),
    ("\n\n", "the file is empty"),
    ("video,label\na.mp4,0\n\nmissing.mp4,1\n", r"labels.csv:4: no video file"),   # the file's own line
    # a Windows code page: was 'not UTF-8 text (… at byte 22)', no line
    (b"video,label\na.mp4,0\ncaf\xe9.mp4,1\n", r"labels.csv:3: not UTF-8 text \(byte 0xe9: invalid continuation byte\)"),
    ("Video,Label,label\na.mp4,0,1\n", r"labels.csv:1: column 'label' appears 2 times"),   # the last one won
    # int() read these as 10 and 3, and quoted 5000 digits whole
    ("video,label,start,end\na.mp4,0,1_0,20\n", r"labels.csv:2: start must be an integer, got '1_0'$"),
    ("video,label,start,end\na.mp4,0,\u0663,5\n", r"labels.csv:2: start must be an integer, got '\u0663'$"),
    ("video,label,start,end\na.mp4,0,0," + "9" * 5000 + "\n", r"labels.csv:2: end '9{20}'… \(5000 characters\) is past"),
    ("video,label,start,end\na.mp4,0,,4\n", r"labels.csv:2: the window has an end but no start; give both, or neither$"),
])
def test_labels_csv_errors_name_the_file_and_line(clips, tmp_path, content, message):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=message):
        load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)


def ucf24(tmp_path: Path, annotation: dict) -> str:
    video(tmp_path / "Jump" / "v1.mp4", t=16)             # 32×24
    (tmp_path / "annotations.json").write_text(json.dumps(
        {"Jump/v1": {"label": 0, "numf": 16, "annotations": [{"label": 0, **annotation}]}}))
    return f"ucf24:{tmp_path}"


@pytest.mark.parametrize("annotation, message", [
    # [x, y, w, h] read as corners: every box was empty, and the clip 'had no ground truth'
    ({"sf": 0, "boxes": [[12, 10, 4, 2]] * 16}, r"box \[12.0, 10.0, 4.0, 2.0\] of frame 0 has x2 < x1 or y2 < y1"),
    ({"sf": -3, "boxes": [[4, 2, 12, 10]] * 8}, "'sf' is -3; frames are counted from 0"),
    ({"sf": 100, "boxes": [[4, 2, 12, 10]] * 8}, "the tube starts at frame 100, after the video's 16 frames"),
    # JSON's NaN: was "boxes must be a list of [x1, y1, x2, y2]", which they were
    ({"sf": 2, "boxes": [[4, 2, 12, 10], [float("nan"), 2, 12, 10]]}, r"box \[nan, 2.0, 12.0, 10.0\] of frame 3 is not finite"),
    ({"sf": 1e300, "boxes": [[4, 2, 12, 10]]}, r"'sf' is 1e\+300, past any video's frames$"),   # 301 digits
])
def test_ucf24_impossible_tubes_are_refused_before_the_run(tmp_path, annotation, message):
    with pytest.raises(InputError, match=message):
        load_dataset(ucf24(tmp_path, annotation), num_frames=8)


def test_ucf24_boxes_are_clipped_to_the_frame_and_a_box_outside_it_is_an_error_row(tmp_path):
    spec = ucf24(tmp_path, {"sf": 0, "boxes": [[-10, 20, 5, 100]] * 16})   # the bottom-left corner
    s = load_dataset(spec, num_frames=8)[0]
    assert s.boxes.tolist() == [[20, 0, 24, 5]] * 8 and s.masks.sum() == 8 * 4 * 5
    # annotated at another resolution: wholly outside the 32×24 video
    spec = ucf24(tmp_path, {"sf": 0, "boxes": [[200, 100, 300, 300]] * 16})
    ds = load_dataset(spec, num_frames=8)                  # the run starts; this clip is an error row
    with pytest.raises(InputError, match=r"Jump/v1: box \[200.0, 100.0, 300.0, 300.0\] of frame 0 lies outside "
                                         r"the 32×24 video"):
        ds[0]


def test_ucf24_tubes_the_clip_does_not_see_are_named_and_a_point_box_covers_a_pixel(tmp_path):
    """Each of these was a clip that silently 'had no ground truth' (its localisation metrics n/a):
    a tube after the video's end (no 'numf' to check it by before the run) is an error row; a
    tube between two sampled frames warns; a box of no width (a point) covers its pixel."""
    spec = ucf24(tmp_path, {"sf": 30, "boxes": [[4, 2, 12, 10]] * 8})
    (tmp_path / "annotations.json").write_text((tmp_path / "annotations.json").read_text().replace('"numf": 16, ', ""))
    with pytest.raises(InputError, match=r"Jump/v1: a tube starts at frame 30, after the video's last frame \(15\)"):
        load_dataset(spec, num_frames=8)[0]
    spec = ucf24(tmp_path, {"sf": 1, "boxes": [[4, 2, 12, 10]]})       # frames 0, 2, 4, … are sampled
    with pytest.warns(UserWarning, match=r"Jump/v1: its boxes lie on none of the 8 frames sampled \(0, 2, 4, 6, 9,"):
        assert load_dataset(spec, num_frames=8)[0].window is None
    s = load_dataset(ucf24(tmp_path, {"sf": 0, "boxes": [[5, 3, 5, 3]] * 16}), num_frames=8)[0]
    assert s.boxes.tolist() == [[3, 5, 4, 6]] * 8 and s.masks.sum() == 8 and s.window == (0, 8)
    (tmp_path / "annotations.json").write_text('{"Jump/v1": {"label": 0, "annotations": null}}')
    with pytest.raises(InputError, match="Jump/v1: expected {'label', 'annotations'"):      # was a TypeError
        load_dataset(f"ucf24:{tmp_path}", num_frames=8)


def test_class_folders_named_as_dataset_scripts_write_them(tmp_path):
    """Kinetics download scripts write 'air_drumming/' for the class 'air drumming': every
    subfolder was 'not among the model's classes' and every clip lost its label; a label in a CSV
    is matched the same way. Where '_' would name two classes, it matches none."""
    video(tmp_path / "red_square" / "a.mp4")
    video(tmp_path / "Red-Triangle" / "b.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(f"folder:{tmp_path}", num_frames=4, labels=CLASSES)
    assert [(s.key, s.label, s.label_name) for s in ds] == [
        ("Red-Triangle/b.mp4", 2, "red triangle"), ("red_square/a.mp4", 0, "red square")]
    (tmp_path / "labels.csv").write_text("video,label\nred_square/a.mp4,blue_square\n")
    assert load_dataset(f"folder:{tmp_path}", num_frames=4, labels=CLASSES)[0].label == 1
    (tmp_path / "labels.csv").write_text("video,label\nred_square/a.mp4,a_b\n")
    with pytest.raises(InputError, match="class 'a_b' is not one of the model's classes"):
        load_dataset(f"folder:{tmp_path}", num_frames=4, labels=["a b", "a-b"])


def test_a_folder_whose_name_has_a_comma(tmp_path):
    """'folder:/data/Smith, J' was split at the comma: "' J' is not KEY=VALUE", and no spelling
    of the spec reached the folder. It is read as it is where the joined path exists, or quoted."""
    d = tmp_path / "Smith, J (2024)"
    video(d / "a.mp4")
    (tmp_path / "x, y.csv").write_text("video,label\na.mp4,red square\n")
    for spec in (f"folder:{d}", f'folder:"{d}"', f"folder:{d},max_side=16",
                 f'folder:"{d}",labels="{tmp_path / "x, y.csv"}"'):
        ds = load_dataset(spec, num_frames=4, labels=CLASSES)
        assert ds.keys() == ["a.mp4"] and ds.entries[0].path == d / "a.mp4", spec
    assert ds[0].label == 0
    assert load_dataset(f"folder:{d},max_side=16", num_frames=4).max_side == 16
    with pytest.raises(InputError, match=r"'J \(2025\)' is not KEY=VALUE \(a path with a comma goes in double "
                                         r"quotes: folder:\"DIR\"\)"):
        load_dataset(f"folder:{tmp_path}/Smith, J (2025)", num_frames=4)


def test_a_clip_whose_content_changed_is_computed_again_on_resume(tmp_path):
    """Results are stored by clip key: a list of in-memory samples run again after one clip was
    edited (same key, other pixels), or a video re-encoded under its old name, kept the results
    of the old content. Each clip's content is fingerprinted; a changed one is computed again."""
    import videoxai as vx
    from videoxai.data.datasets import EvalSample
    from videoxai.data.synthetic import SyntheticVideos
    from videoxai.data.video import write_video
    from videoxai.evaluation import ResultStore, evaluate

    model = vx.load_model("demo")
    synth = SyntheticVideos(4, split="test", num_frames=model.num_frames)
    first_two = [synth[i] for i in range(4) if synth[i].label != synth[0].label][:1] + [synth[0]]
    other, same = first_two   # two clips of different classes
    run = dict(methods="random", metrics="sparseness", out=tmp_path / "out", backend="inline",
               progress=False, report=False)

    def predicted():
        with ResultStore(tmp_path / "out" / "results.sqlite") as store:
            return {e.video: e.predicted for e in store.explanations()}

    def truth(clip):  # the model's prediction on the pixels, computed independently
        return int(model.predict(clip.to_tensor(model.device)).argmax())

    samples = [EvalSample("a", same.clip), EvalSample("b", same.clip)]
    assert evaluate(model, samples, **run).computed == 2
    edited = [EvalSample("a", same.clip), EvalSample("b", other.clip)]   # b's pixels replaced
    assert truth(other.clip) != truth(same.clip)
    with pytest.warns(UserWarning, match=r"1 clip \(e.g. 'b'\) has other content or annotations than when its stored results"):
        again = evaluate(model, edited, **run)
    assert (again.computed, again.skipped) == (1, 1)
    assert predicted() == {"a": truth(same.clip), "b": truth(other.clip)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate(model, edited, **run).computed == 0          # nothing changed since

    # a video file overwritten under its old name, then a window corrected in labels.csv
    folder = tmp_path / "videos"
    write_video(same.clip.uint8(), folder / "a.mp4", fps=8)
    write_video(same.clip.uint8(), folder / "b.mp4", fps=8)
    (folder / "labels.csv").write_text("video,label,start,end\na.mp4,0,0,2\nb.mp4,1,0,2\n")
    files = dict(run, metrics="temporal_grounding", out=tmp_path / "files")
    assert evaluate(model, f"folder:{folder}", **files).computed == 2
    write_video(other.clip.uint8(), folder / "b.mp4", fps=8)
    with pytest.warns(UserWarning, match=r"1 clip \(e.g. 'b.mp4'\) has other content"):
        assert evaluate(model, f"folder:{folder}", **files).computed == 1
    (folder / "labels.csv").write_text("video,label,start,end\na.mp4,0,0,2\nb.mp4,1,6,8\n")
    with pytest.warns(UserWarning, match=r"1 clip \(e.g. 'b.mp4'\) has other content or annotations"):
        assert evaluate(model, f"folder:{folder}", **files).computed == 1
    with ResultStore(tmp_path / "files" / "results.sqlite") as store:
        rows = {r.video: r for r in store.rows()}
    top = {video: row.details["top_frames"][0] for video, row in rows.items()}   # each map's top frame
    assert rows["b.mp4"].value == float(6 <= top["b.mp4"] < 8)   # scored against the new window [6, 8)
    assert rows["a.mp4"].value == float(0 <= top["a.mp4"] < 2)


def test_a_model_directory_whose_weights_changed_is_not_resumed_with_the_old_results(tmp_path):
    """A results file names its model by spec: a model directory trained again in place (stabn
    finetune run again into the same --out) was the same model to a resumed evaluation, which
    reused every result of the old weights. The weights' hash is part of the run's identity."""
    import videoxai as vx
    from videoxai.evaluation import evaluate
    from videoxai.stabn.loader import save_stabn
    from videoxai.stabn.model import build

    def save(seed):
        torch.manual_seed(seed)
        save_stabn(build(num_classes=4, num_frames=4, input_size=32, backbone="tiny",
                         labels=list(vx.load_model("demo").labels)), tmp_path / "m")

    run = dict(methods="random", metrics="sparseness", out=tmp_path / "eval", backend="inline", progress=False,
               report=False)
    save(0)
    assert evaluate(str(tmp_path / "m"), "synthetic:2", **run).computed == 2
    save(0)   # written again, the same weights: resumed
    assert evaluate(str(tmp_path / "m"), "synthetic:2", **run).computed == 0
    save(1)
    with pytest.raises(InputError, match=r"results.sqlite holds results of a different evaluation \(model_weights: "
                                         r"stored 'blake2b:[0-9a-f]{32}', now 'blake2b:[0-9a-f]{32}'\)"):
        evaluate(str(tmp_path / "m"), "synthetic:2", **run)


def test_a_corrected_label_is_computed_again_on_resume(clips, tmp_path):
    """The identity of a run names the data by its spec, not its labels: after a label was
    corrected in labels.csv, running again kept the results explained for the old class."""
    import videoxai as vx
    from videoxai.evaluation import ResultStore, evaluate

    model = vx.load_model("demo")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,label\na.mp4,red square\nb.mp4,blue square\n")
    run = dict(methods="random", metrics="sparseness", out=tmp_path / "out", backend="inline",
               progress=False, report=False)
    data = f"folder:{clips},labels={csv_path}"
    first = evaluate(model, data, **run)
    assert (first.computed, first.errors) == (2, 0)
    csv_path.write_text("video,label\na.mp4,red square\nb.mp4,red triangle\n")   # b corrected
    with pytest.warns(UserWarning, match=r"1 clip \(e.g. 'b.mp4'\) now has another label"):
        again = evaluate(model, data, **run)
    assert (again.computed, again.skipped) == (1, 1)
    with ResultStore(again.database) as store:
        assert {(e.video, e.method): (e.label, e.target) for e in store.explanations()} == {
            ("a.mp4", "random"): (0, 0), ("b.mp4", "random"): (1, 1)}     # demo: red triangle = 1
        assert store.count() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate(model, data, **run).computed == 0                  # nothing changed since
        # explaining the prediction does not depend on the label: nothing to compute again
        csv_path.write_text("video,label\na.mp4,blue square\nb.mp4,red triangle\n")
        other = dict(run, out=tmp_path / "predicted")
        evaluate(model, data, target="predicted", **other)
        csv_path.write_text("video,label\na.mp4,red square\nb.mp4,red triangle\n")
        assert evaluate(model, data, target="predicted", **other).computed == 0


def test_the_markdown_report_keeps_file_names_and_errors_as_text(tmp_path):
    """A clip named '<img src=x onerror=…>.mp4' was raw HTML in report.md (MkDocs and Jupyter
    render it); one clip is '1 clip'."""
    from videoxai.evaluation import ResultRow, ResultStore, write_report
    from videoxai.metrics import build

    db = tmp_path / "results.sqlite"
    bad = "<img src=x onerror=alert(1)>.mp4"
    with ResultStore(db) as store:
        store.bind({"model": "m", "data": "folder:<b>clips</b>", "target": "label", "refine": None, "seed": 0})
        store.register_metrics([build("sparseness")])
        store.start_run({})
        store.write(ResultRow("ok.mp4", "random", "sparseness", 0.5))
        store.write(ResultRow(bad, "random", "sparseness", None, "error",
                              details={"error": f"{bad}: not a video <script>x</script>"}))
    md = write_report(db, tmp_path)["markdown"].read_text()
    assert "<img" not in md and "<script" not in md and "<b>" not in md
    assert md.startswith("# Evaluation of m on folder:&lt;b>clips&lt;/b>\n\n2 clips;")
    assert ("\n- &lt;img src=x onerror=alert(1)>.mp4: not a video &lt;script>x&lt;/script> — "
            "&lt;img src=x onerror=alert(1)>.mp4 / random\n") in md
    with ResultStore(db) as store:
        store.db.execute("DELETE FROM results WHERE video = ?", (bad,))
    assert "\n1 clip; results: 1 ok" in write_report(db, tmp_path)["markdown"].read_text()


def test_cli_warnings_are_one_line_each(tmp_path):
    """Python's warning format added the library line that called warn() ('ds = factory(…)')."""
    from typer.testing import CliRunner

    from videoxai.cli import app

    video(tmp_path / "data [2024]" / "red square" / "a.mp4")
    video(tmp_path / "data [2024]" / "b.mp4")
    r = CliRunner().invoke(app, ["evaluate", "--model", "demo", "--data", f"folder:{tmp_path / 'data [2024]'}",
                                 "--methods", "nope", "--metrics", "sparseness", "--out", str(tmp_path / "out"),
                                 "--backend", "inline"])
    assert "unknown method 'nope'" in str(r.exception)      # found after the data is read: no run
    assert (f"warning: folder: {tmp_path / 'data [2024]'}: 1 video ('b.mp4') lies beside the class "
            "subfolders") in " ".join(r.output.split())
    assert "factory(" not in r.output and "UserWarning" not in r.output


def test_every_missing_video_and_unknown_class_of_a_csv_is_named_at_once(clips, tmp_path):
    """A 100-clip CSV with five missing files and five unknown classes took ten runs, each error
    naming the next one."""
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,label\na.mp4,purple\nx.mp4,0\nb.mp4,Green\ny.mp4,1\nb2.mp4,purple\n")
    with pytest.raises(InputError, match=r"labels.csv: 3 listed videos are not in .*clips\d*: 'x.mp4' \(line 3\), "
                                         r"'y.mp4' \(line 5\), 'b2.mp4' \(line 6\)$"):
        load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)
    csv_path.write_text("video,label\na.mp4,purple\nb.mp4,Green\n")
    with pytest.raises(InputError, match=r"labels.csv: 2 classes are not among the model's classes: 'purple' \(line 2\), "
                                         r"'Green' \(line 3\); its classes: red square, blue square, red triangle$"):
        load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)


def test_a_csv_name_finds_its_file_in_either_unicode_form_or_with_windows_separators(tmp_path):
    """A clip copied from a Mac has 'é' as 'e' + a combining accent (NFD) in its file name; the
    CSV typed in a spreadsheet has one character (NFC): 'no video file' on Linux."""
    import unicodedata

    video(tmp_path / unicodedata.normalize("NFD", "café.mp4"))
    (tmp_path / "labels.csv").write_text(f"video,label\n{unicodedata.normalize('NFC', 'café.mp4')},1\n")
    ds = load_dataset(f"folder:{tmp_path}", num_frames=4, labels=CLASSES)
    assert ds.keys() == [unicodedata.normalize("NFC", "café.mp4")] and ds[0].label == 1
    assert ds.entries[0].path.name == unicodedata.normalize("NFD", "café.mp4")
    video(tmp_path / "train" / "b.mp4")                    # a CSV written on Windows
    (tmp_path / "labels.csv").write_text("video,label\ntrain\\b.mp4,1\n")
    assert load_dataset(f"folder:{tmp_path}", num_frames=4, labels=CLASSES).entries[0].path == tmp_path / "train" / "b.mp4"


def test_a_csv_with_its_class_column_under_another_name_warns(clips, tmp_path):
    """'video,class': no 'label' column, so every clip was silently explained for the prediction."""
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,class\na.mp4,red square\n")
    with pytest.warns(UserWarning, match=r"labels.csv has no 'label' column \(its columns: class, video\); every "
                                         "clip is explained for the model's prediction"):
        ds = load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)
    assert ds.entries[0].label is None
    csv_path.write_text("video,start,end\na.mp4,1,3\n")                 # unlabelled on purpose: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)[0].window == (1, 2)


def test_a_folder_takes_every_common_video_container(tmp_path):
    """MPEG-1/2 (.mpg, a camcorder's .mts), a phone's .3gp, .flv and .wmv files were skipped
    without a word (the folder listing does not decode: empty files stand for the videos)."""
    names = ["a.MPG", "b.mpeg", "c.mts", "d.m2ts", "e.3gp", "f.flv", "g.wmv", "h.ogv", "i.mp4"]
    for name in names + ["notes.txt", "thumb.jpg", "player.ts"]:
        (tmp_path / name).write_bytes(b"")
    assert load_dataset(f"folder:{tmp_path}", num_frames=4).keys() == names


def test_samples_given_in_python_name_a_repeated_key():
    from videoxai import Clip
    from videoxai.data.datasets import EvalSample

    clip = Clip(np.zeros((4, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="sample keys must be unique: 'clip' is given twice"):
        load_dataset([EvalSample("clip", clip), EvalSample("other", clip), EvalSample("clip", clip)])


def test_sample_labels_as_scripts_hold_them_are_class_indices(tmp_path):
    # a class name, numpy's int64 and a one-value tensor were stored as given: text, bytes, or a
    # SQLite error that stopped the run; the report's accuracy compared them with the predicted
    # index (0 %). A float or a bool made every result of the clip an error, found after the run
    import videoxai as vx
    from videoxai.data.datasets import EvalSample
    from videoxai.evaluation import ResultStore, evaluate

    model = vx.load_model("demo")
    ds = load_dataset("synthetic:3", num_frames=model.num_frames, labels=model.labels)
    truth = [ds[i].label for i in range(3)]
    given = [model.labels[truth[0]].upper(), np.int64(truth[1]), torch.tensor([truth[2]])]
    samples = [EvalSample(f"s{i}", ds[i].clip, label=label) for i, label in enumerate(given)]
    r = evaluate(model, samples, "random", "sparseness", tmp_path / "out", backend="inline", progress=False)
    assert r.errors == 0
    with ResultStore(r.database) as store:
        assert [(e.label, type(e.label)) for e in store.explanations()] == [(t, int) for t in truth]
    assert "Model accuracy on these clips: 100.0%." in (tmp_path / "out" / "report.md").read_text()
    for bad, shown in ((1.0, "1.0 (float)"), (True, "True (bool)"), (torch.tensor([1, 2]), "tensor([1, 2]) (Tensor)")):
        with pytest.raises(InputError, match=re.escape(f"s0: label must be a class index (an integer) or a class "
                                                       f"name, got {shown}")):
            EvalSample("s0", ds[0].clip, label=bad)
    with pytest.raises(InputError, match="sample 's1': class 'purple' is not one of the model's classes"):
        load_dataset([samples[0], EvalSample("s1", ds[1].clip, label="purple")], labels=model.labels)


def test_sample_keys_as_scripts_hold_them_are_names(tmp_path):
    # an int key (a loop index) made every result of the random reference an error ('int' object has
    # no attribute 'encode'), on every resume; a Path key stopped the run with a SQLite error
    import videoxai as vx
    from videoxai.data.datasets import EvalSample
    from videoxai.evaluation import evaluate

    model = vx.load_model("demo")
    ds = load_dataset("synthetic:2", num_frames=model.num_frames, labels=model.labels)
    samples = [EvalSample(np.int64(0), ds[0].clip, label=ds[0].label), EvalSample(Path("v/1.mp4"), ds[1].clip)]
    assert [x.key for x in samples] == ["0", "v/1.mp4"]
    runs = [evaluate(model, samples, "random", "sparseness", tmp_path / "out", backend="inline", progress=False,
                     report=False) for _ in range(2)]
    assert [(r.computed, r.skipped, r.errors) for r in runs] == [(2, 0, 0), (0, 2, 0)]
    for bad in (None, "", 1.5):
        with pytest.raises(InputError, match=re.escape(f"a sample's key must be a non-empty name (text), got {bad!r}")):
            EvalSample(bad, ds[0].clip)


@pytest.mark.parametrize("window", [(1.5, 3), (0, 2, 5), (True, 3), 3, (0, float("inf"))])
def test_a_sample_window_that_is_not_two_frame_indices_is_refused(window):
    # (1.5, 3) was cut to (1, 3) and (0, 2, 5) read as (0, 2): temporal grounding scored another window
    from videoxai import Clip
    from videoxai.data.datasets import EvalSample

    clip = Clip(np.zeros((4, 8, 8, 3), dtype=np.uint8))
    assert EvalSample("c", clip, window=(1.0, np.int64(3))).window == (1, 3)
    with pytest.raises(InputError, match=re.escape(f"c: window must be two frame indices (start, end), got {window!r}")):
        EvalSample("c", clip, window=window)


def test_a_sample_takes_frames_as_vx_explain_does_and_names_what_is_no_clip():
    # frames as an array or tensor were an AttributeError ('no attribute num_frames'), a file name too
    from videoxai.data.datasets import EvalSample

    frames = np.random.default_rng(0).integers(0, 256, (4, 8, 10, 3), dtype=np.uint8)
    for given in (frames, torch.from_numpy(frames).permute(0, 3, 1, 2), list(frames)):
        assert np.array_equal(EvalSample("c", given).clip.frames, frames)
    with pytest.raises(InputError, match=re.escape("c: clip must be a videoxai Clip or frames ((T, H, W, 3) uint8, "
                                                   "or float in [0, 1]), got 'a.mp4'; read a video file with vx.read_video")):
        EvalSample("c", "a.mp4")
    with pytest.raises(InputError, match=re.escape("c: frames must have shape (T, H, W, 3)")):
        EvalSample("c", frames[0])


def test_an_output_path_that_is_a_file_is_named_before_the_model_loads(tmp_path):
    from videoxai.evaluation import evaluate

    (tmp_path / "eval").write_text("")
    with pytest.raises(InputError, match=r"the output directory .*eval is a file$"):      # no model 'x' is loaded
        evaluate("x", "synthetic:1", "random", "sparseness", tmp_path / "eval", backend="inline")
    with pytest.raises(InputError, match=r"cannot create the output directory .*eval/sub: Not a directory"):
        evaluate("x", "synthetic:1", "random", "sparseness", tmp_path / "eval" / "sub", backend="inline")



def test_an_output_folder_that_cannot_be_written_or_holds_another_programs_results_file_is_named(tmp_path, monkeypatch):
    """A read-only --out was a warning that the folder has no locks and then 'is not a videoxai
    results database: unable to open database file'; another program's results.sqlite was
    'OperationalError: no such column: method'."""
    import errno
    import sqlite3

    import videoxai as vx
    from videoxai.evaluation import ResultStore, evaluate, runner, write_report

    model = vx.load_model("demo")

    class ReadOnly:  # the lock file's open(O_CREAT) in a read-only folder
        def __init__(self, folder):
            self.folder = folder

        def __enter__(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self.folder / ".lock"))

        def __exit__(self, *exc):
            return None

    with monkeypatch.context() as m:
        m.setattr(runner, "FolderLock", ReadOnly)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(InputError, match=r"^cannot write in the output directory .*ro \(Permission denied\)"):
                evaluate(model, "synthetic:1", "random", "sparseness", tmp_path / "ro", backend="inline",
                         progress=False, report=False)
    (tmp_path / "dir.sqlite").mkdir()   # sqlite cannot open it: 'unable to open database file'
    with pytest.raises(InputError, match=r"^cannot open .*dir.sqlite for writing: unable to open database file$"):
        ResultStore(tmp_path / "dir.sqlite")
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / "results.sqlite") as c:
        c.execute("CREATE TABLE results (id INTEGER, score REAL)")
    said = r"other/results.sqlite is not a videoxai results database: its table results has no column video$"
    with pytest.raises(InputError, match=said):
        evaluate(model, "synthetic:1", "random", "sparseness", other, backend="inline", progress=False)
    with pytest.raises(InputError, match=said):
        write_report(other / "results.sqlite", other)   # --report-only


def test_ucf24_files_saved_with_a_byte_order_mark(tmp_path):
    """Notepad and PowerShell start UTF-8 files with a BOM: the annotations were 'not valid JSON'
    and the split file's first key was '\\ufeffJump/v1', 'no annotation'."""
    spec = ucf24(tmp_path, {"sf": 0, "boxes": [[4, 2, 12, 10]] * 16})
    ann = tmp_path / "annotations.json"
    ann.write_bytes(b"\xef\xbb\xbf" + ann.read_bytes())
    (tmp_path / "split.txt").write_bytes("\ufeffJump/v1.mp4\r\n".encode())
    ds = load_dataset(f"{spec},split={tmp_path / 'split.txt'}", num_frames=8)
    assert ds.keys() == ["Jump/v1"] and ds[0].boxes[0].tolist() == [2, 4, 10, 12]
    (tmp_path / "split.txt").write_bytes(b"Jump/v\xe9\n")
    with pytest.raises(InputError, match="split.txt: not UTF-8 text"):
        load_dataset(f"{spec},split={tmp_path / 'split.txt'}", num_frames=8)


def test_the_errors_of_a_clip_deleted_from_the_data_leave_the_report(tmp_path):
    """A broken file deleted after the first run was no longer computed, but its error rows stayed
    in every report, under 'running the same command again computes these results again'."""
    import videoxai as vx
    from videoxai.evaluation import ResultStore, evaluate

    model = vx.load_model("demo")
    data = tmp_path / "data"
    video(data / "good.mp4")
    (data / "broken.mp4").write_bytes(b"not a video")
    (data / "empty.mp4").write_bytes(b"")
    run = dict(out=tmp_path / "out", backend="inline", progress=False)
    first = evaluate(model, f"folder:{data}", "random", "sparseness", **run)
    assert (first.computed, first.errors) == (3, 2)
    (data / "broken.mp4").unlink()
    again = evaluate(model, f"folder:{data}", "random", "sparseness", **run)
    assert (again.computed, again.errors, again.skipped) == (1, 1, 1)       # empty.mp4 is still there
    md = (tmp_path / "out" / "report.md").read_text()
    assert "\n2 clips; results: 1 ok, 0 n/a, 1 errors." in md and "broken.mp4" not in md
    with ResultStore(again.database) as store:
        assert {(r.video, r.status) for r in store.rows()} == {("good.mp4", "ok"), ("empty.mp4", "error")}
        assert {(e.video, e.status) for e in store.explanations()} == {("good.mp4", "ok"), ("empty.mp4", "error")}


def test_cli_names_a_metric_without_values_and_why(tmp_path):
    """pointing_game on data without boxes: the console's tables left it out without a word."""
    from typer.testing import CliRunner

    from videoxai.cli import app

    video(tmp_path / "data" / "a.mp4")
    r = CliRunner().invoke(app, ["evaluate", "--model", "demo", "--data", f"folder:{tmp_path / 'data'}",
                                 "--methods", "random", "--metrics", "pointing_game,sparseness",
                                 "--out", str(tmp_path / "out"), "--backend", "inline"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "no value: pointing_game (no ground truth: the data has no object boxes or masks)" in r.output


def test_an_output_folder_on_a_file_system_without_locks_still_evaluates(tmp_path, monkeypatch):
    # Lustre mounted without -o flock answers flock() with ENOSYS: the folder lock stopped every run
    import errno
    import fcntl

    import videoxai as vx
    from videoxai.evaluation import evaluate

    def no_locks(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match=r"cannot lock .*eval \(Function not implemented\): a second evaluation"):
        s = evaluate(vx.load_model("demo"), "synthetic:1", methods="random", metrics="sparseness", out=tmp_path / "eval",
                     backend="inline", progress=False, report=False)
    assert (s.computed, s.errors) == (1, 0)


@pytest.mark.parametrize("label, message", [
    ("9" * 5000, r"label 999999999999… \(5000 digits\) is out of range"),   # past int()'s 4300 digits
    ("-1", r"labels.csv:2: label -1 is negative; a class index is 0 or more"),
    ("²", r"'²'"),                                                            # str.isdigit(), not int()
])
def test_a_label_of_digits_that_is_no_class_index_is_an_input_error(clips, tmp_path, label, message):
    # thousands of digits and '²' were a ValueError traceback from int(); -1 was "out of range for a
    # model with ? classes"
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(f"video,label\na.mp4,{label}\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)


def test_a_window_that_ends_after_the_video_warns_and_is_read_to_its_end(clips, tmp_path):
    # [0, 99) on an 8-frame video was cut to [0, 8) without a word
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,label,start,end\na.mp4,0,2,99\nb.mp4,1,2,8\n")
    ds = load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)
    with pytest.warns(UserWarning, match=r"a.mp4: window \[2, 99\) ends after the video's last frame \(7\); "
                                         r"read as ending there"):
        assert ds[0].window == (1, 4)             # frames 2..7 of 0, 2, 5, 7: clip frames 1 to 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # a window that ends with the video says nothing
        assert ds[1].window == (1, 4)


def test_class_folders_that_are_links_are_followed_and_a_broken_video_link_is_named(tmp_path):
    """An evaluation subset built of links ('eval/red square' → the full data's class folder) lost
    that class without a word: the folder listing did not follow linked folders. A link back up
    (a loop) is not walked again, and a video link to no file is left out with a warning."""
    video(tmp_path / "full" / "red square" / "a.mp4")
    video(tmp_path / "full" / "b.mp4")
    d = tmp_path / "eval"
    (d / "blue square").mkdir(parents=True)
    (d / "red square").symlink_to(tmp_path / "full" / "red square")
    (d / "blue square" / "b.mp4").symlink_to(tmp_path / "full" / "b.mp4")
    (d / "blue square" / "again").symlink_to(d)                     # a loop
    (d / "blue square" / "gone.mp4").symlink_to(tmp_path / "full" / "gone.mp4")
    with pytest.warns(UserWarning, match=r"eval: 1 video link \('blue square/gone.mp4'\) points to no file; left out"):
        ds = load_dataset(f"folder:{d}", num_frames=4, labels=CLASSES)
    assert [(s.key, s.label) for s in ds] == [("blue square/b.mp4", 1), ("red square/a.mp4", 0)]


def test_option_paths_of_a_spec_start_from_home_and_an_empty_or_unclosed_option_is_named(clips, tmp_path, monkeypatch):
    """'folder:~/clips,labels=~/clips/labels.csv': the folder's '~' was the home folder, the
    labels file's was not ('no labels file ~/clips/labels.csv'); 'labels=' was the path '.' ("no
    labels file ."), ucf24's 'annotations=' silently its default file, and an unclosed quote took
    every option after it into the path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "l.csv").write_text("video,label\nb.mp4,red triangle\n")
    ds = load_dataset(f"folder:{clips},labels=~/l.csv", num_frames=4, labels=CLASSES)
    assert [(s.key, s.label) for s in ds] == [("b.mp4", 2)]
    spec = ucf24(tmp_path / "ucf", {"sf": 0, "boxes": [[4, 2, 12, 10]] * 16})
    (tmp_path / "ucf" / "annotations.json").rename(tmp_path / "a.json")
    assert load_dataset(f"{spec},annotations=~/a.json", num_frames=8)[0].boxes[0].tolist() == [2, 4, 10, 12]
    with pytest.raises(InputError, match=r"option annotations has no value$"):
        load_dataset(f"{spec},annotations= ", num_frames=8)
    with pytest.raises(InputError, match=r"'folder:\"[^']*,max_side=16' has an unclosed double quote$"):
        load_dataset(f'folder:"{clips},max_side=16', num_frames=4)


def test_a_window_between_two_sampled_frames_warns(clips, tmp_path):
    # frames [1, 2) of an 8-frame video sampled at 0, 2, 5, 7: the clip has no window, and its
    # window metrics were n/a without a word, as if the CSV gave none
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,label,start,end\na.mp4,0,1,2\nb.mp4,0,1,3\n")
    ds = load_dataset(f"folder:{clips},labels={csv_path}", num_frames=4, labels=CLASSES)
    with pytest.warns(UserWarning, match=r"a.mp4: window \[1, 2\) holds none of the 4 frames sampled \(0, 2, 5, 7\)"):
        assert ds[0].window is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds[1].window == (1, 2)


def test_an_empty_annotation_file_is_named(tmp_path):
    # both said "the dataset has no videos", naming no file
    (tmp_path / "annotations.json").write_text("{}")
    with pytest.raises(InputError, match=r"annotations.json: annotates no videos \(an empty JSON object\)$"):
        load_dataset(f"ucf24:{tmp_path}", num_frames=4)
    (tmp_path / "ssv2.json").write_text("[]")
    with pytest.raises(InputError, match=r"ssv2.json: lists no videos \(an empty JSON list\)$"):
        load_dataset(f"ssv2:{tmp_path},annotations={tmp_path / 'ssv2.json'}", num_frames=4)


def test_a_labels_file_named_from_the_folder_is_told_where_relative_paths_start(clips, tmp_path, monkeypatch):
    # 'folder:DIR,labels=test.csv' with DIR/test.csv: "no labels file test.csv", and nothing said
    # that a relative path starts at the working directory
    monkeypatch.chdir(tmp_path)
    (clips / "test.csv").write_text("video,label\na.mp4,0\n")
    try:
        with pytest.raises(InputError, match=r"no labels file test.csv \(a relative path is read from the working "
                                             rf"directory; give labels={clips / 'test.csv'}\)$"):
            load_dataset(f"folder:{clips},labels=test.csv", num_frames=4)
    finally:
        (clips / "test.csv").unlink()
    with pytest.raises(InputError, match=r"no labels file nope.csv$"):
        load_dataset(f"folder:{clips},labels=nope.csv", num_frames=4)
    video(tmp_path / "d" / " cat" / "a.mp4")
    video(tmp_path / "d" / "cat" / "b.mp4")
    with pytest.raises(InputError, match=r"subfolders ' cat' and 'cat' differ only by case or surrounding spaces$"):
        load_dataset(f"folder:{tmp_path / 'd'}", num_frames=4)


def test_synthetic_data_for_a_model_of_fewer_frames_than_its_evidence_names_the_frames():
    # a 2-frame model was told "window must satisfy 1 <= min <= max <= num_frames=2, got (2, 4)",
    # a window it never gave
    with pytest.raises(InputError, match=r"synthetic: its clips need 4 frames or more \(the evidence lasts up to 4 "
                                         r"frames\); the model takes 2$"):
        load_dataset("synthetic:2", num_frames=2)
    assert load_dataset("synthetic:1", num_frames=4)[0].clip.num_frames == 4


def test_a_folder_given_without_its_kind_is_told_the_spec(clips, monkeypatch):
    monkeypatch.chdir(clips.parent)
    with pytest.raises(InputError, match=rf"dataset spec '{clips.name}' must look like kind:argument\[,key=value…\] "
                                         rf"\(the folder '{clips.name}' is folder:{clips.name}\); kinds: folder,"):
        load_dataset(clips.name)


def test_a_folder_whose_name_looks_like_an_option_or_ends_in_a_space(tmp_path):
    """'folder:DIR/clips,fps=25' for the folder 'clips,fps=25' was read as 'clips' with an option
    fps; a quoted 'clips ' was recorded as 'folder:…/clips ', which names 'clips' when read again."""
    video(tmp_path / "clips,max_side=16" / "a.mp4")
    video(tmp_path / "clips " / "a.mp4")
    ds = load_dataset(f"folder:{tmp_path}/clips,max_side=16", num_frames=4)
    assert ds.entries[0].path == tmp_path / "clips,max_side=16" / "a.mp4" and ds.max_side is None
    ds = load_dataset(f'folder:"{tmp_path}/clips "', num_frames=4)
    assert ds.spec == f'folder:"{tmp_path}/clips "'
    assert load_dataset(ds.spec, num_frames=4).entries[0].path == tmp_path / "clips " / "a.mp4"


def test_a_video_deleted_from_the_folder_leaves_the_resumed_report_and_stays_in_the_file(tmp_path):
    """The results of a video deleted from a ``folder:`` stayed in every resumed report (its
    table, clip count and accuracy) as if the data still had it. Now the report lists the data's
    current clips and says how many stored results it left out; the rows stay in results.sqlite,
    and the clip is back in the report once its video is."""
    from videoxai.evaluation import ResultStore, evaluate, summarise

    folder = tmp_path / "videos"
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        video(folder / name)
    out = tmp_path / "out"
    run = dict(methods="random", metrics="sparseness,energy", out=out, backend="inline", progress=False)

    def reported():
        with ResultStore(out / "results.sqlite") as store:
            s = summarise(store)
            return s, {r.video for r in store.rows()}

    assert evaluate("demo", f"folder:{folder}", **run).computed == 6
    kept, stat = (folder / "c.mp4").read_bytes(), (folder / "c.mp4").stat()
    (folder / "c.mp4").unlink()
    with pytest.warns(UserWarning, match=re.escape("2 stored results of 1 clip no longer in the data (e.g. 'c.mp4') "
                                                   "are left out of the report; kept in results.sqlite")):
        again = evaluate("demo", f"folder:{folder}", **run)
    assert (again.computed, again.skipped) == (0, 4)
    s, stored = reported()
    assert s.videos == 2 and s.counts == {"ok": 2, "n/a": 2, "error": 0} and s.gone == (2, 1)
    assert all(c.n == 2 for c in s.cells.values()) and stored == {"a.mp4", "b.mp4", "c.mp4"}
    md = (out / "report.md").read_text()
    assert md.startswith(f"# Evaluation of demo on folder:{folder}\n\n2 clips; results: 2 ok, 2 n/a")
    assert "2 stored results of 1 clip no longer in the data are left out (kept in the results file)." in md
    assert "2 stored results of 1 clip no longer in the data" in (out / "report.html").read_text()

    (folder / "c.mp4").write_bytes(kept)     # put back as it was: current again, nothing computed twice
    os.utime(folder / "c.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate("demo", f"folder:{folder}", **run).computed == 0
    s, _ = reported()
    assert s.videos == 3 and s.gone == (0, 0) and "no longer in the data" not in (out / "report.md").read_text()


def test_the_cli_exits_with_an_error_when_every_stored_result_is_one(tmp_path, capsys):
    # a folder of broken files (or a method failing on every clip) exited 0 after its table, as a
    # script or a scheduler reads "it worked"; a run with one good clip still exits 0
    from videoxai.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.mp4").write_bytes(b"not a video")
    (data / "empty.mp4").write_bytes(b"")
    args = ["evaluate", "--model", "demo", "--data", f"folder:{data}", "--methods", "random", "--metrics",
            "sparseness", "--backend", "inline", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.strip().splitlines()[-1] == (f"error: every result in {tmp_path / 'out' / 'results.sqlite'} is an "
                                            "error (2; see above and the report); the same command computes them "
                                            "again once the cause is fixed")
    assert (tmp_path / "out" / "report.html").is_file()  # the report is written first
    with pytest.raises(SystemExit) as e:
        main([*args[:-2], "--report-only", "--out", str(tmp_path / "out")])  # what the folder holds: the same
    assert e.value.code == 2
    video(data / "good.mp4")
    main(args)  # the good clip is computed, the broken ones are errors again: no exit

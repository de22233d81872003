"""The ST-ABN workflow as a user with their own data runs it: train → collect → edit → finetune,
with hand-written edit files, hostile collections and output directories that are not one."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from videoxai.errors import InputError
from videoxai.stabn.data import open_dataset
from videoxai.stabn.knowledge import EditSet, TemporalEdit, collect
from videoxai.stabn.model import build
from videoxai.stabn.train import TrainConfig, train


@pytest.fixture
def edit_set(tmp_path):
    torch.manual_seed(0)
    model = build(num_classes=4, num_frames=4, input_size=32).eval()
    data = open_dataset("synthetic:6", "train", num_frames=4, frame_size=(32, 32))
    return collect(model, data, tmp_path / "edits", model_spec="in-memory", misclassified_only=False, limit=3)


def test_hand_written_edit_files_are_checked_naming_the_file(edit_set):
    a, b = edit_set.items[:2]
    edits = edit_set.directory / "edits"
    edit_set.save_edit(a.key, [1.0, 0.5, 0.0, 0.0])
    assert list(edit_set.edits()) == [a.id]
    # a copy of a's edit saved as b's: it trained clip a with b's levels (or replaced a's edit)
    (edits / f"{b.key}.json").write_text(json.dumps({"id": a.id, "levels": [0.0, 0.0, 0.0, 1.0]}))
    with pytest.raises(InputError, match=rf"{b.key}.json is the edit of clip '{a.id}', but {b.key} is clip"):
        edit_set.edits()
    (edits / f"{b.key}.json").write_text(json.dumps({"id": b.id, "levels": [1.0, 1.0, 0.0]}))
    with pytest.raises(InputError, match=rf"{b.key}.json: 3 levels for the clip's 4 frames"):
        edit_set.edits()
    (edits / f"{b.key}.json").write_text(json.dumps({"id": b.id, "levels": [1.0, 0.25, 0.0, 0.0]}))
    with pytest.raises(InputError, match=rf"{b.key}.json: frame 1: level 0.25 is not one of"):
        edit_set.edits()
    # a file saved in Latin-1 by an editor: a UnicodeDecodeError traceback before
    (edits / f"{b.key}.json").write_bytes('{"id": "clé", "levels": [1, 1, 1, 1]}'.encode("latin-1"))
    with pytest.raises(InputError, match=rf"cannot read edit .*{b.key}.json: .*utf-8"):
        edit_set.edits()
    # non-ASCII ids written as UTF-8 are fine
    edit = TemporalEdit(id="vidéo 東京.mp4", levels=[1, 0, 0, 0])
    assert TemporalEdit.load(edit.save(edits / "x.json")).id == "vidéo 東京.mp4"


def test_a_collection_key_that_is_not_a_plain_file_name_is_refused(edit_set):
    # the key names clips/<key>.npz and edits/<key>.json: "../../outside" saved an edit two
    # folders above the edit set
    path = edit_set.directory / "collection.json"
    d = json.loads(path.read_text())
    for key in ("../../outside", "/etc/passwd", ".hidden", "a/b", "", 7):
        d["items"][1]["key"] = key
        path.write_text(json.dumps(d))
        with pytest.raises(InputError, match=rf"collection.json: clip key {re.escape(repr(key))} is not a file name"):
            EditSet.open(edit_set.directory)


def test_a_clip_listed_twice_in_a_collection_is_refused(edit_set):
    path = edit_set.directory / "collection.json"
    d = json.loads(path.read_text())
    d["items"][2]["id"] = d["items"][0]["id"]
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=rf"clip id {d['items'][0]['id']!r} is listed twice"):
        EditSet.open(edit_set.directory)
    d["items"][2] = d["items"][0]
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=rf"clip key {d['items'][0]['key']!r} is listed twice"):
        EditSet.open(edit_set.directory)


@pytest.mark.parametrize("below", [False, True])
def test_an_output_directory_that_is_a_file_is_refused_before_the_data_is_read(tmp_path, below):
    # mkdir failed only after every clip was decoded (and the warm start trained), as "File exists"
    (tmp_path / "run").write_text("")
    out = tmp_path / "run" / "sub" if below else tmp_path / "run"
    with pytest.raises(InputError, match=rf"{tmp_path / 'run'} is a file, not a directory"):
        train(f"folder:{tmp_path / 'no such data'}", out, config=TrainConfig(epochs=1))


@pytest.mark.parametrize("below", [False, True])
def test_an_output_directory_that_links_to_nothing_is_refused_before_the_data_is_read(tmp_path, below):
    # a link to a directory not made yet (a scratch disk not mounted): "File exists", once every clip was decoded
    (tmp_path / "run").symlink_to(tmp_path / "scratch" / "run")
    out = tmp_path / "run" / "sub" if below else tmp_path / "run"
    with pytest.raises(InputError, match=rf"^{tmp_path / 'run'} is a link to {tmp_path / 'scratch' / 'run'}, which "
                                         r"does not exist.*; create that directory or give another output directory$"):
        train(f"folder:{tmp_path / 'no such data'}", out, config=TrainConfig(epochs=1))
    (tmp_path / "scratch" / "run").mkdir(parents=True)
    with pytest.raises(InputError, match="no such data"):  # there now: the data is read
        train(f"folder:{tmp_path / 'no such data'}", out, config=TrainConfig(epochs=1))


@pytest.mark.parametrize("below", [False, True])
def test_an_output_directory_that_cannot_be_written_is_refused_before_the_data_is_read(tmp_path, below,
                                                                                       monkeypatch):
    """A read-only --out (a read-only mount, another user's directory) failed only after every
    clip was decoded, and an existing one only at the first epoch's end, when its model was
    written (the run lock's file failed first, but only as a warning)."""
    import os

    from videoxai.stabn.loop import fit

    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    if os.access(tmp_path / "ro", os.W_OK):
        # run as root, whom permission bits do not stop: the answer a read-only mount gives
        # (EROFS, to root too) put in its place
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if (
            os.fspath(path) == os.fspath(tmp_path / "ro") and mode & os.W_OK) else access(path, mode, **kw))
    try:
        out = tmp_path / "ro" / "run" if below else tmp_path / "ro"
        said = rf"^{tmp_path / 'ro'} cannot be written \(a read-only file system or no write permission\)"
        with pytest.raises(InputError, match=said):
            train(f"folder:{tmp_path / 'no such data'}", out, config=TrainConfig(epochs=1))
        data = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(32, 32))
        with pytest.raises(InputError, match=said):
            fit(build(num_classes=4, num_frames=4, input_size=32, backbone="tiny"), data,
                TrainConfig(epochs=1, batch_size=4), out=out)
    finally:
        (tmp_path / "ro").chmod(0o755)


@pytest.mark.parametrize("field", ["epochs", "batch_size", "eval_batch_size"])
def test_a_count_below_one_is_named(field):
    with pytest.raises(InputError, match=rf"^{field} must be a whole number ≥ 1, got 0$"):
        TrainConfig(**{field: 0})


def test_collect_on_a_model_that_gets_every_clip_right_says_there_is_nothing_to_edit(tmp_path):
    """`stabn collect` on data the model classifies without a mistake: exit 0 and a sentence
    saying so, not "collected 0 misclassified clips …; edit them with: videoxai stabn edit"."""
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.data.video import write_video
    from videoxai.stabn.loader import save_stabn

    torch.manual_seed(0)
    model = build(num_classes=2, num_frames=4, input_size=32, labels=["cat", "dog"]).eval()
    save_stabn(model, tmp_path / "model")
    synth = open_dataset("synthetic:3", "train", num_frames=4, frame_size=(32, 32))
    lines = ["video,label"]
    with torch.no_grad():
        predicted = model.outputs(synth.pixels(slice(None))).logits.argmax(1).tolist()
    for i, k in enumerate(predicted):  # each clip labelled with what the model says: all correct
        write_video(synth.frames[i], tmp_path / "data" / f"v{i}.mp4", fps=8)
        lines.append(f"v{i}.mp4,{model.labels[k]}")
    (tmp_path / "data" / "labels.csv").write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(app, ["stabn", "collect", "--model", str(tmp_path / "model"), "--data",
                                 f"folder:{tmp_path / 'data'}", "--out", str(tmp_path / "edits")])
    said = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "classifies all 3 clips" in said and "correctly: nothing to edit" in said and "edit them" not in said
    assert EditSet.open(tmp_path / "edits").items == []


def test_resuming_on_other_clips_or_other_edits_is_refused(tmp_path):
    """A finished run resumed "does nothing more": run again on other data (`stabn train --data B`
    on A's output directory), or `stabn finetune` run again after more edits, it printed the old
    model as the new one. The checkpoint now records its clips and edits; the same ones resume."""
    from videoxai.stabn.knowledge import finetune, finetune_config

    kw = dict(backbone="tiny", num_frames=4, input_size=32, warm_start=0, config=TrainConfig(epochs=1, batch_size=4))
    first = train("synthetic:8", tmp_path / "run", **kw)
    again = train("synthetic:8", tmp_path / "run", **kw)  # the same clips: the finished run, as before
    assert [r.loss for r in again.history] == [r.loss for r in first.history]
    with pytest.raises(InputError, match=r"checkpoint.pt continues a run with other training clips \(8 clips"):
        train("synthetic:6", tmp_path / "run", **kw)

    model, data = first.model, open_dataset("synthetic:8", "train", num_frames=4, frame_size=(32, 32))
    es = collect(model, data, tmp_path / "edits", model_spec="in-memory", misclassified_only=False)
    es.save_edit(es.items[0].key, [1.0, 0.0, 0.0, 0.0])
    config = finetune_config(epochs=1)
    finetune(model, data, es, tmp_path / "ft", config=config)
    finetune(model, data, es, tmp_path / "ft", config=config)  # unchanged: resumes, nothing to do
    es.save_edit(es.items[1].key, [0.0, 0.0, 1.0, 1.0])  # a second edit, then finetune again
    with pytest.raises(InputError, match=r"continues a run with other edits \(1 edited clips.*; now 2 edited clips"):
        finetune(model, data, es, tmp_path / "ft", config=config)
    assert len(finetune(model, data, es, tmp_path / "ft", config=config, resume=False).history) == 1


def test_a_model_directory_of_a_stopped_run_says_so_when_loaded(tmp_path):
    """Training writes model/ after every epoch: Ctrl-C in epoch 2 of 2 left a directory that
    loaded (and was collected from, fine-tuned) like the finished model, without a word."""
    import warnings

    import videoxai as vx
    from videoxai.stabn.loader import UnfinishedTrainingWarning

    kw = dict(backbone="tiny", num_frames=4, input_size=32, warm_start=0, config=TrainConfig(epochs=2, batch_size=4),
              command="videoxai stabn train --out run")

    def ctrl_c(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("synthetic:8", tmp_path / "run", on_epoch=ctrl_c, **kw)
    with pytest.warns(UnfinishedTrainingWarning, match=r"run/model holds the weights after epoch 1 of 2: its "
                      r"training stopped before the end .*run `videoxai stabn train --out run` again"):
        vx.load_model(tmp_path / "run" / "model")
    train("synthetic:8", tmp_path / "run", **kw)  # resumed to the end
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vx.load_model(tmp_path / "run" / "model").metadata["training"]["epochs_done"] == 2


def test_finetune_with_edits_of_another_model_or_none_says_so_before_reading_the_data(edit_set, tmp_path):
    """Edits collected from a 4-frame model, fine-tuned into an 8-frame one: every clip was
    decoded first, then "edit of … has 4 levels for 8 frames"; no saved edits: also only after
    decoding. Both are refused first now (the data here does not even exist)."""
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.stabn.loader import save_stabn

    torch.manual_seed(0)
    save_stabn(build(num_classes=4, num_frames=8, input_size=32), tmp_path / "m8")
    save_stabn(build(num_classes=4, num_frames=4, input_size=32), tmp_path / "m4")
    run = lambda *a: CliRunner().invoke(app, ["stabn", "finetune", str(edit_set.directory), "--out",  # noqa: E731
                                              str(tmp_path / "ft"), "--data", f"folder:{tmp_path / 'gone'}", *a])
    r = run("--model", str(tmp_path / "m4"))
    assert isinstance(r.exception, InputError) and "no saved edits in" in str(r.exception)
    edit_set.save_edit(edit_set.items[0].key, [1.0, 0.0, 0.0, 0.0])
    r = run("--model", str(tmp_path / "m8"))
    assert isinstance(r.exception, InputError)
    assert "have 4 levels per clip" in str(r.exception) and "takes 8 frames" in str(r.exception)
    r = run("--model", str(tmp_path / "m4"))  # the right model: now the data is read, and is missing
    assert isinstance(r.exception, InputError) and "gone" in str(r.exception)


def test_finetune_on_collected_data_that_moved_says_where_the_data_came_from(edit_set, tmp_path):
    # "folder: /x is not a directory" did not say that /x is what the edit set recorded, nor what to do
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.stabn.loader import save_stabn

    torch.manual_seed(0)
    save_stabn(build(num_classes=4, num_frames=4, input_size=32), tmp_path / "m4")
    edit_set.save_edit(edit_set.items[0].key, [1.0, 0.0, 0.0, 0.0])
    path = edit_set.directory / "collection.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "data": f"folder:{tmp_path / 'moved'}"}))
    command = ["stabn", "finetune", str(edit_set.directory), "--out", str(tmp_path / "ft"), "--model", str(tmp_path / "m4")]
    r = CliRunner().invoke(app, command)
    assert isinstance(r.exception, InputError) and re.fullmatch(
        rf".*{tmp_path / 'moved'}.* \(the data the clips were collected from, recorded in {path}; give --data to "
        r"read it from elsewhere\)", str(r.exception)), r.exception
    r = CliRunner().invoke(app, [*command, "--data", f"folder:{tmp_path / 'gone'}"])  # given: its own error
    assert isinstance(r.exception, InputError) and "gone" in str(r.exception) and "recorded" not in str(r.exception)


def test_a_run_started_over_and_stopped_in_its_warm_start_does_not_resume_the_old_run(tmp_path):
    """`--no-resume` on a finished run's directory, stopped during the warm start (the old
    checkpoint.pt was still there): the next `train` resumed the *old* finished run and did
    nothing, its warm start skipped. Starting over removes the old checkpoint first."""
    kw = dict(backbone="tiny", num_frames=4, input_size=32, warm_start=1, config=TrainConfig(epochs=1, batch_size=4))
    train("synthetic:8", tmp_path / "run", **kw)

    def ctrl_c(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("synthetic:8", tmp_path / "run", resume=False, on_epoch=ctrl_c, **kw)
    seen = []
    train("synthetic:8", tmp_path / "run", on_epoch=seen.append, **kw)
    assert [(r.stage, r.epoch) for r in seen] == [(None, 1)]  # the new warm start's epoch was done; then the ST-ABN's


def test_cli_edit_without_the_collections_model_and_bad_thread_counts_say_what_to_do(edit_set, tmp_path):
    from typer.testing import CliRunner

    from videoxai.cli import app

    # the collection names a model directory that moved: the editor needs it for the preview only
    path = edit_set.directory / "collection.json"
    path.write_text(path.read_text().replace('"model": "in-memory"', f'"model": "{tmp_path / "moved"}"'))
    r = CliRunner().invoke(app, ["stabn", "edit", str(edit_set.directory)])
    assert isinstance(r.exception, InputError) and "give --model, or --no-preview" in str(r.exception)
    # --threads -1 reached torch as "RuntimeError: set_num_threads expects a positive integer"
    r = CliRunner().invoke(app, ["stabn", "train", "--out", str(tmp_path / "run"), "--threads", "-1"])
    assert r.exit_code == 2 and "--threads" in r.output and "-1 is not a thread count; give 1 or more" in r.output
    # the service too
    r = CliRunner().invoke(app, ["serve", "--threads", "0"])
    assert r.exit_code == 2 and "0 is not a thread count" in r.output


def test_collecting_clips_of_another_length_into_an_edit_set_with_edits_is_refused(edit_set):
    # saved edits are kept for clips collected again: 4-level edits under an 8-frame collection,
    # and finetune failed on them after the data was decoded
    edit_set.save_edit(edit_set.items[0].key, [1.0, 0.0, 0.0, 0.0])
    torch.manual_seed(0)
    model = build(num_classes=4, num_frames=8, input_size=32).eval()
    data = open_dataset("synthetic:6", "train", num_frames=8, frame_size=(32, 32))
    with pytest.raises(InputError, match="holds edits of 4 frames per clip .*this model takes 8"):
        collect(model, data, edit_set.directory, model_spec="in-memory", misclassified_only=False)
    assert EditSet.open(edit_set.directory).num_frames == 4
    (edit_set.directory / "edits" / f"{edit_set.items[0].key}.json").unlink()  # no edits to keep: fine
    assert collect(model, data, edit_set.directory, model_spec="in-memory", misclassified_only=False).num_frames == 8


def test_a_save_that_fails_leaves_the_previous_model_whole(tmp_path):
    # the weights were renamed into place before videoxai.json was written: a metric JSON cannot
    # hold left the new weights under the old config (here: a load error, "does not match its config")
    import videoxai as vx
    from videoxai.stabn.loader import save_stabn

    torch.manual_seed(0)
    save_stabn(build(num_classes=4, num_frames=4, input_size=32), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    with pytest.raises(TypeError):
        save_stabn(build(num_classes=3, num_frames=4, input_size=32), tmp_path / "m", metrics={"x": object()})
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before  # no .tmp left either
    assert vx.load_model(tmp_path / "m").num_classes == 4


def test_a_full_disk_while_the_weights_are_written_is_said_as_such_naming_the_file(tmp_path, monkeypatch):
    # safetensors says "SafetensorError: … I/O error: No space left on device (os error 28)": the
    # CLI showed an unexpected error ("run again with --debug") naming no file
    import errno
    import os
    from pathlib import Path

    from safetensors import SafetensorError

    from videoxai.cli import describe
    from videoxai.stabn import loader

    torch.manual_seed(0)
    loader.save_stabn(build(num_classes=4, num_frames=4, input_size=32), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    def disk_full(state, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # as far as it got
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(loader, "save_file", disk_full)
    with pytest.raises(OSError) as e:
        loader.save_stabn(build(num_classes=4, num_frames=4, input_size=32), tmp_path / "m")
    assert e.value.errno == errno.ENOSPC
    assert describe(e.value) == f"{os.strerror(errno.ENOSPC)}: {tmp_path / 'm' / 'model.safetensors'}"
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before


def test_model_options_are_checked_before_the_data_is_read(tmp_path):
    # a backbone too big for the size or a misspelt pool was refused only after every clip was decoded
    missing = f"folder:{tmp_path / 'no such data'}"
    with pytest.raises(InputError, match="too small for backbone 'tiny'"):
        train(missing, None, backbone="tiny", input_size=4)
    with pytest.raises(InputError, match="pool must be"):
        train(missing, None, pool="mean")
    with pytest.raises(InputError, match="unknown ST-ABN option: .*'bogus'"):
        train(missing, None, bogus=1)


def test_a_collection_whose_attention_is_not_numbers_is_refused_not_a_500(edit_set):
    from fastapi.testclient import TestClient

    from videoxai.stabn.editor import create_app

    path = edit_set.directory / "collection.json"
    d = json.loads(path.read_text())
    for value in ("high", float("nan"), None):
        d["items"][1]["attention"][2] = value
        path.write_text(json.dumps(d))
        with pytest.raises(InputError, match=rf"clip {d['items'][1]['key']} has temporal attention {value!r}, not a finite"):
            EditSet.open(edit_set.directory)
    edit_set.items[1].attention[2] = float("nan")  # an edit set in memory: the editor answers 422, not 500
    client = TestClient(create_app(edit_set), base_url="http://localhost", raise_server_exceptions=False)
    r = client.get("/api/collection")
    assert r.status_code == 422 and "not a finite number" in r.json()["error"]


@pytest.mark.parametrize("field, value, said", [
    ("labels", [1, 2, 3, 4], "labels must be a list of class names"),   # was a 500 in the editor
    ("labels", "abcd", "labels must be a list of class names"),         # was four classes a, b, c, d
    ("model", None, "model must be a string"),                          # was a model named "None"
    ("num_frames", 4.7, "num_frames must be a whole number ≥ 1"),       # was 4
])
def test_a_collection_field_of_the_wrong_type_is_refused(edit_set, field, value, said):
    path = edit_set.directory / "collection.json"
    d = json.loads(path.read_text())
    d[field] = value
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=rf"collection.json is not an edit-set collection \(TypeError: {said}"):
        EditSet.open(edit_set.directory)


@pytest.mark.parametrize("seed", [2**64, -1, 1.5])
def test_a_seed_out_of_range_is_named(seed):
    # 2^64 reached torch.manual_seed as "ValueError: Overflow when unpacking long long"
    with pytest.raises(InputError, match=rf"^seed must be a whole number from 0 to 2\^32 - 1, got {seed!r}$"):
        TrainConfig(seed=seed)


def test_val_data_none_turns_validation_off(tmp_path):
    # the help said "none for other data"; `--val-data none` was read as a dataset spec and refused
    kw = dict(backbone="tiny", num_frames=4, input_size=32, warm_start=0, config=TrainConfig(epochs=1, batch_size=4))
    result = train("synthetic:8,val=4", tmp_path / "run", val_data="none", **kw)
    assert result.evaluation is None and result.history[0].val is None
    assert json.loads((tmp_path / "run" / "model" / "videoxai.json").read_text())["training"]["val_data"] is None


def test_collect_records_a_stabn_prefixed_model_directory_absolutely(tmp_path, monkeypatch):
    # `--model stabn:m` run in tmp_path was recorded as "stabn:m": edit and finetune, run from
    # another directory, could not load it
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.stabn.loader import save_stabn

    torch.manual_seed(0)
    save_stabn(build(num_classes=4, num_frames=4, input_size=32), tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["stabn", "collect", "--model", "stabn:m", "--data", "synthetic:4", "--all",
                                 "--out", "edits"])
    assert r.exit_code == 0, r.output
    assert EditSet.open(tmp_path / "edits").model == f"stabn:{tmp_path / 'm'}"


def test_every_unreadable_video_of_a_training_folder_is_named_at_once(tmp_path):
    # the first bad file stopped decoding: a folder with several took one long pass per file
    from videoxai.data.video import write_video
    from videoxai.errors import VideoReadError

    synth = open_dataset("synthetic:2", "train", num_frames=4, frame_size=(32, 32))
    for i in range(2):
        write_video(synth.frames[i], tmp_path / "data" / ["cat", "dog"][i] / f"good{i}.mp4", fps=8)
    (tmp_path / "data" / "cat" / "bad1.mp4").write_bytes(b"not a video")
    (tmp_path / "data" / "dog" / "bad2.mp4").write_bytes((tmp_path / "data" / "cat" / "good0.mp4").read_bytes()[:300])
    with pytest.raises(VideoReadError, match=r"2 of 4 videos cannot be read \(fix or remove them\): .*bad1.mp4.*bad2.mp4"):
        open_dataset(f"folder:{tmp_path / 'data'}", "train", num_frames=4, frame_size=(32, 32))


def test_collecting_other_videos_into_an_edit_set_with_edits_is_refused_and_data_is_recorded_absolutely(
        tmp_path, monkeypatch):
    """Saved edits are kept for the clips collected again, matched by index and id — a video's
    path in its folder. Collecting folder B (same file names as A) into A's edit set attached A's
    edits to B's videos, and fine-tuning trained B with them. And a relative folder was recorded
    as typed: finetune run elsewhere could not read it."""
    from videoxai.data.video import write_video

    synth = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(32, 32))
    for folder, first in (("a", 0), ("b", 2)):
        for i in range(2):
            write_video(synth.frames[first + i], tmp_path / folder / ["cat", "dog"][i] / f"v{i}.mp4", fps=8)
    torch.manual_seed(0)
    model = build(num_classes=2, num_frames=4, input_size=32, labels=["cat", "dog"]).eval()
    monkeypatch.chdir(tmp_path)
    a = open_dataset("folder:a", "train", num_frames=4, frame_size=(32, 32))
    es = collect(model, a, tmp_path / "edits", model_spec="in-memory", misclassified_only=False)
    assert es.data == f"folder:{tmp_path / 'a'}"
    es.save_edit(es.items[0].key, [1.0, 0.0, 0.0, 0.0])
    b = open_dataset("folder:b", "train", num_frames=4, frame_size=(32, 32))
    assert b.ids == a.ids  # the same keys: the edit would be kept for b's first video
    with pytest.raises(InputError, match=rf"holds edits of clips of folder:{tmp_path / 'a'} .*collect "
                                         rf"folder:{tmp_path / 'b'} into another directory"):
        collect(model, b, tmp_path / "edits", model_spec="in-memory", misclassified_only=False)
    again = collect(model, a, tmp_path / "edits", model_spec="in-memory", misclassified_only=False)  # the same: fine
    assert list(again.edits()) == [a.ids[0]]


def _four_synthetic_videos(folder, rows: list[str], header: str = "video,label") -> None:
    """Four synthetic 4-frame 16×16 clips as ``folder/v0.mp4 …`` with a ``labels.csv`` giving
    clip ``i`` the row ``v{i}.mp4,{rows[i]}``."""
    from videoxai.data.video import write_video

    synth = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(16, 16))
    for i in range(4):
        write_video(synth.frames[i], folder / f"v{i}.mp4", fps=8)
    (folder / "labels.csv").write_text("\n".join([header, *(f"v{i}.mp4,{row}" for i, row in enumerate(rows))]) + "\n")


def _saved_model_and_one_edit(tmp_path) -> None:
    """A 4-class ST-ABN saved in ``tmp_path/m`` and a collection of its clips in ``tmp_path/edits``
    with one clip edited."""
    import videoxai as vx
    from videoxai.stabn.loader import save_stabn

    torch.manual_seed(0)
    save_stabn(build(num_classes=4, num_frames=4, input_size=32), tmp_path / "m")
    model = vx.load_model(tmp_path / "m")
    data = open_dataset("synthetic:6", "train", num_frames=4, frame_size=(32, 32))
    es = collect(model, data, tmp_path / "edits", model_spec=str(tmp_path / "m"), misclassified_only=False)
    es.save_edit(es.items[0].key, [1.0, 0.0, 0.0, 0.0])


def test_cli_says_when_a_finished_run_is_resumed_and_nothing_trains(tmp_path):
    # `stabn finetune` run again on its finished output printed "model: …" as if it had just trained
    from typer.testing import CliRunner

    from videoxai.cli import app

    _saved_model_and_one_edit(tmp_path)
    run = lambda: CliRunner().invoke(app, ["stabn", "finetune", str(tmp_path / "edits"), "--out",  # noqa: E731
                                           str(tmp_path / "ft"), "--epochs", "1", "--data", "synthetic:6"])
    first, second = run(), run()
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "epoch 1/1" in first.output and "finished run" not in first.output
    said = " ".join(second.output.split())
    assert "epoch 1/1" not in said and "holds a finished run (1 epoch): nothing left to train" in said


def test_finetune_refuses_to_replace_a_model_no_checkpoint_continues_before_reading_its_data(tmp_path):
    # the refusal came only once every clip was decoded (here: a folder that does not exist, which
    # named the data instead of the model about to be replaced)
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.stabn.loader import save_stabn

    _saved_model_and_one_edit(tmp_path)
    save_stabn(build(num_classes=4, num_frames=4, input_size=32), tmp_path / "ft" / "model")  # no checkpoint.pt
    r = CliRunner().invoke(app, ["stabn", "finetune", str(tmp_path / "edits"), "--out", str(tmp_path / "ft"),
                                 "--epochs", "1", "--data", f"folder:{tmp_path / 'gone'}"])
    assert r.exit_code != 0 and "holds a model that no" in " ".join(str(r.exception).split()), r.output


def test_a_commands_warnings_are_one_line_without_the_library_source_line(tmp_path, capsys):
    # `videoxai stabn train` printed "…/videoxai/stabn/train.py:131: UserWarning: …" and the source
    # line after it; evaluate alone had the one-line format
    from videoxai.cli import main

    _four_synthetic_videos(tmp_path / "data", ["1", "2", "1", "2"])  # class 0 without a clip: a warning
    main(["stabn", "train", "--data", f"folder:{tmp_path / 'data'}", "--out", str(tmp_path / "run"), "--frames", "4",
          "--size", "16", "--epochs", "1", "--batch-size", "4", "--warm-start", "0"])
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "class_0" in line]
    assert said and said[0].startswith("warning: ") and "UserWarning" not in err and ".py:" not in err, err


def test_numpy_integers_are_whole_numbers_and_are_stored_as_json():
    # a sweep's np.int64 epochs reached the saved videoxai.json as "int64 is not JSON serializable"
    config = TrainConfig(epochs=np.int64(3), batch_size=np.int32(4), seed=np.int64(2))
    assert json.loads(json.dumps(config.to_dict()))["epochs"] == 3 and type(config.seed) is int


def test_a_run_killed_while_writing_its_history_keeps_a_whole_one_and_resume_completes_it(tmp_path, monkeypatch):
    """history.json was written in place: a kill mid-write left a truncated file, and since the
    checkpoint (written just before) already held that epoch, resuming trained nothing and never
    rewrote it. Now every state file is renamed into place, and resuming writes the checkpoint's
    history."""
    from pathlib import Path

    kw = dict(backbone="tiny", num_frames=4, input_size=32, warm_start=0, config=TrainConfig(epochs=2, batch_size=4))
    out = tmp_path / "run"
    write_text, write_bytes = Path.write_text, Path.write_bytes
    calls = {"history": 0}

    def killed_in_epoch_2(path, data, *a, **k):
        whole = write_text if isinstance(data, str) else write_bytes
        if "history.json" in path.name:
            calls["history"] += 1
            if calls["history"] == 2:  # epoch 2's history: half of it reaches the disk
                whole(path, data[:len(data) // 2], *a, **k)
                raise KeyboardInterrupt
        return whole(path, data, *a, **k)

    monkeypatch.setattr(Path, "write_text", killed_in_epoch_2)
    monkeypatch.setattr(Path, "write_bytes", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train("synthetic:8", out, **kw)
    monkeypatch.undo()
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    resumed = train("synthetic:8", out, **kw)  # the checkpoint holds epoch 2: nothing left to train
    assert [r.epoch for r in resumed.history] == [1, 2]
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]


def test_validation_classes_missing_from_the_training_data_are_named_as_the_training_datas(tmp_path):
    """`stabn train` maps the validation data onto the classes the training data defined, but the
    message blamed "the model's classes" — there is no model yet. A validation CSV or class
    subfolder with a class the training folder lacks now names the training data."""
    import warnings

    from videoxai.data.video import write_video

    synth = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(32, 32))
    for folder, names in (("train", ["cat", "dog"]), ("val", ["cat", "emu"])):
        for i, name in enumerate(names):
            write_video(synth.frames[i], tmp_path / folder / name / f"v{i}.mp4", fps=8)
    (tmp_path / "val" / "labels.csv").write_text("video,label\ncat/v0.mp4,cat\nemu/v1.mp4,emu\n")
    kw = dict(backbone="tiny", num_frames=4, input_size=32, warm_start=0, config=TrainConfig(epochs=1))
    train_data = re.escape(f"the training data folder:{tmp_path / 'train'}")
    with pytest.raises(InputError, match=rf"labels.csv:3: class 'emu' is not one of the classes of {train_data} "
                                         r"\(cat, dog\)$"):
        train(f"folder:{tmp_path / 'train'}", tmp_path / "a", val_data=f"folder:{tmp_path / 'val'}", **kw)
    (tmp_path / "val" / "labels.csv").write_text("video,label\ncat/v0.mp4,0\nemu/v1.mp4,5\n")
    with pytest.raises(InputError, match=rf"labels.csv:3: label 5 is out of range for {train_data}, with 2 classes$"):
        train(f"folder:{tmp_path / 'train'}", tmp_path / "a", val_data=f"folder:{tmp_path / 'val'}", **kw)
    (tmp_path / "val" / "labels.csv").unlink()  # the class subfolders label the clips
    with warnings.catch_warnings(), pytest.raises(InputError) as e:
        warnings.simplefilter("ignore")
        train(f"folder:{tmp_path / 'train'}", tmp_path / "b", val_data=f"folder:{tmp_path / 'val'}", **kw)
    assert "has no label; training needs labelled clips" in str(e.value)
    assert f"subfolder 'emu' is not among the classes of the training data folder:{tmp_path / 'train'}" in str(e.value)
    assert "model" not in str(e.value)
    # fine-tuning maps its data onto a model's classes: those are named the model's
    torch.manual_seed(0)
    model = build(num_classes=2, num_frames=4, input_size=32, labels=["cat", "dog"])
    (tmp_path / "val" / "labels.csv").write_text("video,label\ncat/v0.mp4,cat\nemu/v1.mp4,emu\n")
    with pytest.raises(InputError, match=r"class 'emu' is not one of the model's classes \(cat, dog\)$"):
        open_dataset(f"folder:{tmp_path / 'val'}", "train", num_frames=4, frame_size=(32, 32), labels=model.labels)


def test_a_second_run_on_the_same_output_directory_is_refused_while_the_first_runs(tmp_path):
    """Two runs on one --out (a second terminal, a sweep script) each resumed from and overwrote
    the other's checkpoint, history and model/ — with other settings, a model/ of one run beside
    the checkpoint of the other. The second now fails at once, naming the first; after it ends,
    the directory is free (and a finished run's model/, deleted, is written again on resume)."""
    import shutil
    import threading

    import videoxai as vx

    kw = dict(backbone="tiny", num_frames=4, input_size=32, warm_start=0, config=TrainConfig(epochs=1, batch_size=4))
    out = tmp_path / "run"
    inside, leave = threading.Event(), threading.Event()

    def hold(record):
        inside.set()
        leave.wait(60)

    first = threading.Thread(target=train, args=("synthetic:8", out), kwargs=dict(on_epoch=hold, **kw))
    first.start()
    try:
        assert inside.wait(60)
        with pytest.raises(InputError, match=r"run is in use by another ST-ABN training \(pid \d+.*choose another --out"):
            train("synthetic:8", out, **kw)
        with pytest.raises(InputError, match=r"in use by another ST-ABN training"):
            train("synthetic:8", out, resume=False, **kw)   # nor starts it over
    finally:
        leave.set()
        first.join(60)
    assert (out / "checkpoint.pt").is_file()   # the first run's, not deleted by the refused restart
    shutil.rmtree(out / "model")
    assert len(train("synthetic:8", out, **kw).history) == 1   # finished: resumed, nothing to train
    assert vx.load_model(out / "model").metadata["training"]["epochs_done"] == 1


def test_collecting_again_stopped_while_a_clip_is_written_leaves_every_clip_readable(tmp_path, monkeypatch):
    """Collecting again into an edit set rewrote its clip archives in place: a Ctrl-C during one
    (compression takes a while) left the old collection naming an archive cut short, and the
    editor could not show that clip. Each archive is now written aside and renamed."""
    torch.manual_seed(0)
    model = build(num_classes=4, num_frames=4, input_size=32).eval()
    data = open_dataset("synthetic:6", "train", num_frames=4, frame_size=(32, 32))
    es = collect(model, data, tmp_path / "edits", model_spec="in-memory", misclassified_only=False, limit=3)
    before = {it.key: es.clip(it.key) for it in es.items}

    write_array, calls = np.lib.format.write_array, {"n": 0}

    def ctrl_c_in_the_second_array(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the first clip's spatial map
            raise KeyboardInterrupt
        return write_array(*a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", ctrl_c_in_the_second_array)
    with pytest.raises(KeyboardInterrupt):
        collect(model, data, tmp_path / "edits", model_spec="in-memory", misclassified_only=False, limit=3)
    monkeypatch.undo()
    again = EditSet.open(tmp_path / "edits")
    for key, (frames, spatial) in before.items():
        got_frames, got_spatial = again.clip(key)
        np.testing.assert_array_equal(got_frames, frames)
        np.testing.assert_array_equal(got_spatial, spatial)
    assert not list((tmp_path / "edits" / "clips").glob(".*.tmp"))
    # an archive cut short by an older version (its spatial map no .npy): one error naming it, not an AttributeError
    import zipfile

    key = again.items[0].key
    with zipfile.ZipFile(tmp_path / "edits" / "clips" / f"{key}.npz", "w") as z:
        z.writestr("frames.npy", b"")
        z.writestr("spatial.npy", b"")
    with pytest.raises(InputError, match=rf"cannot read clip {re.escape(key)} from .* \(its frames is not a NumPy array"):
        again.clip(key)


def test_an_output_directory_on_a_file_system_without_locks_still_trains(tmp_path, monkeypatch, caplog):
    # Lustre mounted without -o flock answers flock() with ENOSYS: the run lock must not stop training
    import errno
    import fcntl
    import logging

    def no_locks(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    kw = dict(backbone="tiny", num_frames=4, input_size=32, warm_start=0, config=TrainConfig(epochs=1, batch_size=4))
    with caplog.at_level(logging.WARNING, logger="videoxai.stabn"):
        result = train("synthetic:4", tmp_path / "run", **kw)
    assert len(result.history) == 1 and (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert "cannot lock" in caplog.text and "Function not implemented" in caplog.text


def test_training_data_of_one_class_is_refused_naming_the_data(tmp_path):
    """A labels.csv that names one class (or a synthetic set of one) was refused as "num_classes
    must be ≥ 2, got 1", an option the user never gave; the message names the data and its class,
    and nothing is written."""
    with pytest.raises(InputError, match=r"^the training data synthetic:4,classes=1 has 1 class \('red square'\); "
                                         r"an ST-ABN is trained on clips of at least 2 classes$"):
        train("synthetic:4,classes=1", tmp_path / "run", input_size=32, num_frames=4, warm_start=0,
              config=TrainConfig(epochs=1, batch_size=4))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_checkpoint_of_another_model_or_recipe_names_only_the_fields_that_differ(tmp_path):
    """Resuming on a run directory of another model or recipe printed the whole saved config (19
    model fields) without saying which one differed; it names each differing field, saved → now."""
    from videoxai.stabn.loop import fit

    data = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(32, 32))
    config = TrainConfig(epochs=1, batch_size=4)
    fit(build(num_classes=4, num_frames=4, input_size=32, backbone="tiny"), data, config, out=tmp_path)
    other = build(num_classes=4, num_frames=4, input_size=32, backbone="tiny", dropout=0.25, temporal_norm="softmax")
    with pytest.raises(InputError) as e:
        fit(other, data, config, out=tmp_path)
    assert re.search(r"checkpoint.pt was written for a different model \(dropout 0\.0 → 0\.25, temporal_norm "
                     r"'sigmoid' → 'softmax'\); use another output directory or --no-resume$", str(e.value))
    model = build(num_classes=4, num_frames=4, input_size=32, backbone="tiny")
    with pytest.raises(InputError) as e:  # more epochs continue a run: not a difference
        fit(model, data, TrainConfig(epochs=3, batch_size=4, lr=1e-3), out=tmp_path)
    assert re.search(r"checkpoint.pt was written with other training settings \(lr 0\.002 → 0\.001\); use another "
                     r"output directory or --no-resume$", str(e.value))


def test_a_run_is_not_resumed_on_other_videos_named_and_labelled_alike(tmp_path):
    """A run's clips were recorded by id and label only, and a folder clip's id is its file name:
    `stabn train --data folder:B --out RUN` on a run over folder:A whose videos are named and
    labelled alike (a re-extraction, another camera) resumed it, training on B without a word and
    recording B as the model's data. The decoded frames are part of the run now."""
    from dataclasses import replace

    from videoxai.stabn.loop import fit

    data = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(32, 32))
    fit(build(num_classes=4, num_frames=4, input_size=32, backbone="tiny"), data, TrainConfig(epochs=1, batch_size=4),
        out=tmp_path)
    other = replace(data, frames=np.ascontiguousarray(data.frames[:, ::-1]))  # same ids and labels, frames reversed
    assert other.ids == data.ids and (other.labels == data.labels).all()
    model = build(num_classes=4, num_frames=4, input_size=32, backbone="tiny")
    with pytest.raises(InputError, match=r"checkpoint.pt continues a run with other training clips' frames \(4 clips' "
                                         r"decoded frames: sha256 \w+; now 4 clips' decoded frames: sha256 \w+\)"):
        fit(model, other, TrainConfig(epochs=2, batch_size=4), out=tmp_path)
    resumed = fit(model, data, TrainConfig(epochs=2, batch_size=4), out=tmp_path)  # its own clips: resumed
    assert [r.epoch for r in resumed.history] == [1, 2]


def test_a_run_whose_weights_diverge_in_its_last_step_is_refused_not_saved(tmp_path):
    """The loss is checked before each step, so a step that made the weights NaN was seen only at
    the next one: `stabn train --lr inf` on clips of one batch, one epoch, saved a model of NaN
    weights and printed it as trained. An infinite lr is refused, and weights that become
    non-finite stop the run before its model is written."""
    from videoxai.stabn.loop import fit

    with pytest.raises(InputError, match=r"^lr must be finite, got inf$"):
        TrainConfig(lr=float("inf"))
    data = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(32, 32))
    config = TrainConfig(epochs=1, batch_size=4, optimizer="sgd", warmup=0.0)
    config.lr = float("inf")  # past the check: what any step that overflows the weights does
    torch.manual_seed(0)
    with pytest.raises(InputError, match=r"^training diverged: the weights became non-finite at epoch 1; "
                                         r"lower the learning rate \(now inf\)$"):
        fit(build(num_classes=4, num_frames=4, input_size=32, backbone="tiny"), data, config, out=tmp_path)
    assert not (tmp_path / "model").exists() and not (tmp_path / "checkpoint.pt").exists()


def test_edits_are_not_applied_to_other_videos_that_have_the_edited_clips_ids(edit_set):
    # edits are matched to training clips by id (a folder's file names): fine-tuning on another
    # folder whose videos are named alike applied each edit to another video without a word
    from videoxai.stabn.knowledge import finetune, finetune_config

    torch.manual_seed(0)
    model = build(num_classes=4, num_frames=4, input_size=32).eval()
    a, b = edit_set.items[:2]
    edit_set.save_edit(a.key, [1.0, 1.0, 0.0, 0.0])
    edit_set.save_edit(b.key, [0.0, 1.0, 1.0, 0.0])
    data = open_dataset("synthetic:6", "train", num_frames=4, frame_size=(32, 32))
    other = open_dataset("synthetic:6,seed=7", "train", num_frames=4, frame_size=(32, 32))
    other.ids = list(data.ids)                                     # the same names, other videos
    with pytest.raises(InputError, match=r"2 edited clips have other frames than when they were edited "
                                         rf"\('{a.id}', '{b.id}'\): the edits in .* were made on synthetic"):
        finetune(model, other, edit_set, config=finetune_config(epochs=1, batch_size=3))
    # the clips that were edited: fine-tuned (an id not in the data is left to edit_targets)
    assert len(finetune(model, data, edit_set, config=finetune_config(epochs=1, batch_size=3)).history) == 1


def test_a_run_killed_mid_checkpoint_leaves_no_temporary_file_for_good(tmp_path, monkeypatch, caplog):
    """A run killed while its checkpoint was written aside (SIGKILL, the OOM killer: the write's
    `finally` never runs) left `.checkpoint.pt.<hex>.tmp`, as large as the model, for good: resume
    and a fresh run into the directory now remove such files, however young (they hold the
    directory, so no live run writes them); without a lock, only old ones (may be a live run's)."""
    import errno
    import fcntl
    import os
    import uuid

    from videoxai.stabn.loop import fit

    data = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(32, 32))
    model = build(num_classes=4, num_frames=4, input_size=32, backbone="tiny")
    config = TrainConfig(epochs=1, batch_size=4)
    fit(model, data, config, out=tmp_path)

    def killed_writes():  # what write_atomically leaves when killed before its rename, and files to keep
        left = [tmp_path / f".{name}.{uuid.uuid4().hex}.tmp" for name in ("checkpoint.pt", "history.json")]
        for path in left:
            path.write_bytes(b"\0" * 1000)
        for name in ("notes.tmp", ".checkpoint.pt.tmp"):
            (tmp_path / name).write_text("mine")
        return left

    for resume in (True, False):
        left = killed_writes()
        fit(model, data, config, out=tmp_path, resume=resume)
        assert not any(p.exists() for p in left), resume
        assert (tmp_path / "notes.tmp").read_text() == (tmp_path / ".checkpoint.pt.tmp").read_text() == "mine"
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "history.json").is_file()
    # a file system without locks: another run may be writing there, so only a temporary older
    # than a write can take is removed
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.ENOSYS, "no locks")))
    young, old = killed_writes()
    os.utime(old, (1e9, 1e9))
    fit(model, data, config, out=tmp_path)
    assert young.exists() and not old.exists()


def test_ctrl_c_during_training_says_what_is_kept_and_the_same_command_continues(tmp_path, monkeypatch):
    """Ctrl-C in `stabn train` said only "aborted": nothing told the user that the epochs done
    were kept and that running the same command again continues rather than starts over."""
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.stabn import loop

    out = tmp_path / "run"
    command = ["stabn", "train", "--out", str(out), "--data", "synthetic:4", "--val-data", "none", "--frames", "4",
               "--size", "32", "--backbone", "tiny", "--warm-start", "0", "--epochs", "2", "--batch-size", "4"]
    loss, steps = loop.stabn_loss, []

    def ctrl_c_in_epoch_2(*a, **k):
        steps.append(1)
        if len(steps) == 2:  # one step an epoch: epoch 2's
            raise KeyboardInterrupt
        return loss(*a, **k)

    monkeypatch.setattr(loop, "stabn_loss", ctrl_c_in_epoch_2)
    r = CliRunner().invoke(app, command)
    assert r.exit_code != 0 and (f"stopped: {out} keeps the run up to epoch 1/2; the same command continues it "
                                 "from there") in r.output, r.output
    r = CliRunner().invoke(app, command)
    assert r.exit_code == 0 and "resuming from" in r.output and "epoch 1/2:" not in r.output, r.output
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())] == [1, 2]

    monkeypatch.setattr(loop, "stabn_loss", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    r = CliRunner().invoke(app, [*command[:3], str(tmp_path / "new"), *command[4:]])
    assert f"stopped before an epoch ended: nothing of this run is kept in {tmp_path / 'new'}" in r.output, r.output
    r = CliRunner().invoke(app, [*command, "--no-resume"])  # starting over: the old run is not what is kept
    assert f"stopped before an epoch ended: nothing of this run is kept in {out}" in r.output, r.output


def test_a_warm_start_stopped_midway_is_not_resumed_with_another_count(tmp_path):
    """Stopped after 2 of 3 warm-start epochs and run again with --warm-start 1, the run went on
    from the 2 epochs done and recorded a warm start of 1 (here: 1 of 2, then 1 and 3) (the docs said another --warm-start is
    refused; it was, only once the ST-ABN itself had a checkpoint)."""
    kw = dict(backbone="tiny", num_frames=4, input_size=32, val_data="none", config=TrainConfig(epochs=1, batch_size=4))
    out = tmp_path / "run"

    def stop_after_1(record):
        if record.stage == "warm-start":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("synthetic:4", out, warm_start=2, on_epoch=stop_after_1, **kw)
    for other in (1, 3):
        with pytest.raises(InputError, match=rf"^{out / 'warm-start' / 'checkpoint.pt'} continues a warm-start of 2 "
                                             rf"epochs, not {other} \(--warm-start 2 continues it\); use another "
                                             "output directory or --no-resume$"):
            train("synthetic:4", out, warm_start=other, **kw)
    result = train("synthetic:4", out, warm_start=2, **kw)
    assert [(r.stage, r.epoch) for r in result.history] == [(None, 1)]
    assert [r["epoch"] for r in json.loads((out / "warm-start" / "history.json").read_text())] == [1, 2]


def test_finetune_into_the_training_runs_own_directory_says_so_not_a_recipe_difference(tmp_path):
    """`stabn finetune --out RUN` on the `stabn train` run whose model it fine-tunes was refused
    over the learning rate and warm-up and pointed at --no-resume, which replaces that run's
    model/ with the fine-tuned one; with the run's own settings it was resumed, and the trained
    model printed as the fine-tuned one. It says which kind of run is there, whatever the settings."""
    from videoxai.stabn.knowledge import finetune
    from videoxai.stabn.loop import fit

    data = open_dataset("synthetic:4", "train", num_frames=4, frame_size=(32, 32))
    config = TrainConfig(epochs=1, batch_size=4)
    model = build(num_classes=4, num_frames=4, input_size=32, backbone="tiny")
    fit(model, data, config, out=tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    edits = {data.ids[0]: TemporalEdit(data.ids[0], [1.0, 1.0, 0.0, 0.0])}
    with pytest.raises(InputError, match=rf"^{checkpoint} holds a training \(no edits: stabn train\), and this run is "
                                         r"a fine-tuning \(with edits: stabn finetune\): give another output directory"):
        # the run's own settings and freezing: resumed as if fine-tuned, its model was the fine-tuned one
        finetune(model, data, edits, tmp_path / "run", config=config, frozen=())
    assert checkpoint.read_bytes() == before
    finetune(model, data, edits, tmp_path / "ft", config=config)
    with pytest.raises(InputError, match=r"holds a fine-tuning \(with edits: stabn finetune\), and this run is a "
                                         r"training \(no edits: stabn train\)"):
        fit(model, data, config, out=tmp_path / "ft")


def test_a_model_trained_on_videos_of_another_shape_sees_them_explained_as_it_saw_them_trained(tmp_path):
    """Training cropped the centre of 16×32 videos to its 16×16 input while the model it saved
    (``shortest_edge`` None) squeezed whole frames: ``vx.explain`` on one of its own training
    videos fed it a view it never trained on. Now the saved model's view of the video is the
    training clip, and its maps still cover the whole frame."""
    import videoxai as vx
    from videoxai.data.video import write_video

    rng = np.random.default_rng(0)
    lines = ["video,label"]
    for i in range(4):
        frames = np.zeros((4, 16, 32, 3), np.uint8)
        frames[:, :, :8] = 255  # a bright left quarter: outside a centre crop, inside a squeezed frame
        frames[:, :, 8:24, i % 3] = rng.integers(100, 200, (4, 16, 16), dtype=np.uint8)
        write_video(frames, tmp_path / "data" / f"v{i}.mp4", fps=8)
        lines.append(f"v{i}.mp4,{['cat', 'dog'][i % 2]}")
    (tmp_path / "data" / "labels.csv").write_text("\n".join(lines) + "\n")
    train(f"folder:{tmp_path / 'data'}", tmp_path / "run", design="mil", num_frames=4, input_size=16,
          config=TrainConfig(epochs=1, batch_size=4), warm_start=0)
    model = vx.load_model(tmp_path / "run" / "model")
    assert model.labels == ["cat", "dog"]
    seen = open_dataset(f"folder:{tmp_path / 'data'}", num_frames=4, frame_size=(16, 16), labels=model.labels)
    clip = vx.read_video(tmp_path / "data" / "v1.mp4", num_frames=4)
    pixels = torch.from_numpy(clip.uint8()).permute(0, 3, 1, 2).float()[None] / 255
    view = model.preprocess.view(pixels)[0].permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(view - seen.frames[seen.ids.index("v1.mp4")]).mean() < 1.0  # was ~68: the white quarter
    assert seen.frames[..., :2, :].min() < 200  # the crop leaves the white quarter out
    assert model.config.shortest_edge == 16
    exp = vx.explain(model, clip, "stabn")
    assert exp.spatial.shape == (4, 16, 32) and exp.temporal.shape == (4,) and exp.label in ("cat", "dog")


def test_collect_shows_the_model_its_clips_as_vx_explain_shows_it_the_videos(tmp_path):
    """A model whose view of a video is the whole frame squeezed (``shortest_edge`` None) collected
    clips of 16×32 videos centre-cropped (the default view of decoded data), so the editor and
    fine-tuning worked on frames the model is never shown; collect (and finetune) now read the data
    through the model's own preprocessing."""
    import videoxai as vx
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.data.video import write_video

    rng = np.random.default_rng(0)
    square = ["video,label"]
    wide = ["video,label"]
    for i in range(4):
        frames = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
        write_video(frames, tmp_path / "square" / f"v{i}.mp4", fps=8)
        square.append(f"v{i}.mp4,{['cat', 'dog'][i % 2]}")
        frames = np.zeros((4, 16, 32, 3), np.uint8)
        frames[:, :, :8] = 255  # a bright left quarter: outside a centre crop, inside a squeezed frame
        write_video(frames, tmp_path / "wide" / f"w{i}.mp4", fps=8)
        wide.append(f"w{i}.mp4,{['cat', 'dog'][i % 2]}")
    (tmp_path / "square" / "labels.csv").write_text("\n".join(square) + "\n")
    (tmp_path / "wide" / "labels.csv").write_text("\n".join(wide) + "\n")
    train(f"folder:{tmp_path / 'square'}", tmp_path / "run", design="mil", num_frames=4, input_size=16,
          config=TrainConfig(epochs=1, batch_size=4), warm_start=0, shortest_edge=None)
    model = vx.load_model(tmp_path / "run" / "model")
    assert model.preprocess.shortest_edge is None
    r = CliRunner().invoke(app, ["stabn", "collect", "--model", str(tmp_path / "run" / "model"), "--data",
                                 f"folder:{tmp_path / 'wide'}", "--all", "--out", str(tmp_path / "edits")])
    assert r.exit_code == 0, r.output
    clip = vx.read_video(tmp_path / "wide" / "w1.mp4", num_frames=4)
    pixels = torch.from_numpy(clip.uint8()).permute(0, 3, 1, 2).float()[None] / 255
    seen = model.preprocess.view(pixels)[0].permute(0, 2, 3, 1).numpy() * 255
    key = next(p for p in (tmp_path / "edits" / "clips").glob("*.npz") if "w1" in p.name)
    collected = np.load(key)["frames"].astype(np.float32)
    assert np.abs(collected - seen).mean() < 2.0  # a centre crop differs by ~60 (the white quarter)


def test_windows_spanning_every_frame_leave_the_run_files_valid_json(tmp_path):
    """A labels.csv whose windows cover whole clips has no defined window correlation: it was NaN,
    written as `NaN` into history.json and the model's videoxai.json, which strict JSON readers
    refuse; now null, printed as n/a."""
    from videoxai.stabn.evaluate import temporal_agreement

    agree = temporal_agreement(np.array([[0.1, 0.9], [0.5, 0.5]]), np.array([[0, 2], [0, 2]]))
    assert agree["window_corr"] is None and agree["window_hit"] == 1.0 and agree["window_chance"] == 1.0
    _four_synthetic_videos(tmp_path / "data", ["cat,0,4", "dog,0,4"] * 2, header="video,label,start,end")
    spec = f"folder:{tmp_path / 'data'}"
    result = train(spec, tmp_path / "run", val_data=spec, num_frames=4, input_size=16,
                   config=TrainConfig(epochs=1, batch_size=4), warm_start=0)
    assert "corr n/a" in str(result.evaluation)
    for path in (tmp_path / "run" / "history.json", tmp_path / "run" / "model" / "videoxai.json"):
        json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path.name} holds {c}"))


def test_a_model_in_the_output_directory_that_no_checkpoint_continues_is_not_replaced_without_a_word(tmp_path, monkeypatch):
    """A finished run whose checkpoint.pt was removed (it holds the optimizer too), trained again
    by the same command, started over and replaced its model/ at the first epoch; now refused,
    naming it, and --no-resume replaces it. A run stopped between an epoch's writes leaves the
    checkpoint, not a model/ without one (the checkpoint is written first)."""
    from videoxai.stabn import loop
    from videoxai.stabn.loader import save_stabn

    save_stabn(build(num_classes=4, num_frames=4, input_size=16, labels=list("abcd")), tmp_path / "run" / "model")
    before = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    kwargs = dict(num_frames=4, input_size=16, config=TrainConfig(epochs=1, batch_size=4), warm_start=0)
    with pytest.raises(InputError, match=r"run/model holds a model that no .*run/checkpoint.pt continues .* "
                                         r"--no-resume to replace it"):
        train("synthetic:4", tmp_path / "run", **kwargs)
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == before
    train("synthetic:4", tmp_path / "run", resume=False, **kwargs)
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() != before

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patched:
        patched.setattr(loop, "_save_model", stopped)
        with pytest.raises(KeyboardInterrupt):
            train("synthetic:4", tmp_path / "again", **kwargs)
    assert (tmp_path / "again" / "checkpoint.pt").is_file()
    result = train("synthetic:4", tmp_path / "again", **kwargs)  # resumed: model/ made whole from it
    assert len(result.history) == 1 and (tmp_path / "again" / "model" / "videoxai.json").is_file()


@pytest.mark.parametrize("change, says", [({"format": "1"}, r"has format '1', not a whole number"),
                                          ({"config": {"num_classes": "3"}}, r"num_classes must be a whole number, got '3'"),
                                          ({"config": {"num_frames": 4.5}}, r"num_frames must be a whole number, got 4.5")])
def test_a_hand_edited_model_json_with_a_number_as_text_is_refused_in_one_line(tmp_path, change, says):
    # a TypeError from deep in the loader or the network's build before
    import videoxai as vx
    from videoxai.errors import UnknownModelError
    from videoxai.stabn.loader import save_stabn

    save_stabn(build(num_classes=np.int64(2), num_frames=4, input_size=16), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "videoxai.json").read_text())
    assert meta["config"]["num_classes"] == 2 and vx.load_model(tmp_path / "m").num_classes == 2
    meta = {**meta, **{k: ({**meta[k], **v} if isinstance(v, dict) else v) for k, v in change.items()}}
    (tmp_path / "m" / "videoxai.json").write_text(json.dumps(meta))
    with pytest.raises(UnknownModelError, match=says):
        vx.load_model(tmp_path / "m")


def test_training_data_with_a_class_without_clips_is_named(tmp_path):
    """labels.csv with class numbers 1 and 2: numeric labels are indices from 0, so class 0 was a
    class without a clip, which the model learnt never to predict, without a word."""

    _four_synthetic_videos(tmp_path / "data", ["1", "2", "1", "2"])
    with pytest.warns(UserWarning, match=r"has no clip of 1 of its 3 classes \('class_0'\): the model learns never "
                                         r"to predict them \(numeric labels are class indices counted from 0\)"):
        result = train(f"folder:{tmp_path / 'data'}", None, num_frames=4, input_size=16,
                       config=TrainConfig(epochs=1, batch_size=4), warm_start=0)
    assert result.model.num_classes == 3


def test_a_batch_of_one_single_frame_clip_is_refused_in_one_line(tmp_path):
    # 5 clips of 1 frame at 8 px, 4 a step: the last batch's one clip gave a batch-norm layer one
    # value per channel, a ValueError from inside torch
    from videoxai.data.video import write_video

    lines = ["video,label"]
    for i in range(5):
        write_video(np.full((2, 16, 16, 3), 60 * i, np.uint8), tmp_path / "data" / f"v{i}.mp4", fps=8)
        lines.append(f"v{i}.mp4,{'ab'[i % 2]}")
    (tmp_path / "data" / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"a training batch of 1 clip of 1 frame\(s\) at \(8, 8\) pixels leaves a "
                                         r"batch-norm layer one value per channel \(5 clips, batch size 4\)"):
        train(f"folder:{tmp_path / 'data'}", None, num_frames=1, input_size=8,
              config=TrainConfig(epochs=1, batch_size=4), warm_start=0)


def test_validation_data_that_cannot_be_opened_is_refused_before_the_training_clips_are_decoded(tmp_path, monkeypatch):
    # `stabn train` and `stabn finetune` opened --val-data only once every training clip was
    # decoded: a misspelt folder, or a validation CSV naming a class the training data lacks, was
    # refused after minutes of decoding. Any decoding here fails the test
    from typer.testing import CliRunner

    import videoxai.stabn.data as stabn_data
    from videoxai.cli import app

    _saved_model_and_one_edit(tmp_path)  # (decodes its synthetic clips before the patch)
    (tmp_path / "train").mkdir()
    _four_synthetic_videos(tmp_path / "train", ["cat", "dog", "cat", "dog"])
    (tmp_path / "val").mkdir()
    _four_synthetic_videos(tmp_path / "val", ["cat", "emu", "cat", "dog"])

    def decoded(*args, **kwargs):
        raise AssertionError("a clip was decoded before the validation data was checked")

    monkeypatch.setattr(stabn_data, "_decoded", decoded)
    monkeypatch.setattr(stabn_data, "_synthetic", decoded)
    kw = dict(backbone="tiny", num_frames=4, input_size=16, warm_start=0, config=TrainConfig(epochs=1))
    with pytest.raises(InputError, match="missing"):
        train(f"folder:{tmp_path / 'train'}", tmp_path / "a", val_data=f"folder:{tmp_path / 'missing'}", **kw)
    with pytest.raises(InputError, match=r"labels.csv:3: class 'emu' is not one of the classes of the training data"):
        train(f"folder:{tmp_path / 'train'}", tmp_path / "a", val_data=f"folder:{tmp_path / 'val'}", **kw)
    r = CliRunner().invoke(app, ["stabn", "finetune", str(tmp_path / "edits"), "--out", str(tmp_path / "ft"),
                                 "--epochs", "1", "--data", "synthetic:6", "--val-data", f"folder:{tmp_path / 'missing'}"])
    assert isinstance(r.exception, InputError) and "missing is not a directory" in str(r.exception), r.exception

"""The command line as a user runs it: a real subprocess, real files, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import videoxai as vx
from videoxai.data.synthetic import SyntheticVideos
from videoxai.data.video import write_video

SAMPLE = Path(__file__).parent / "data" / "bigbuckbunny.mp4"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videoxai", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={"VIDEOXAI_PROGRESS": "0", "COLUMNS": "200",
                                                     "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def held_out_video(tmp_path_factory) -> tuple[Path, object]:
    sample = SyntheticVideos(1, split="test", seed=0)[0]
    path = write_video(sample.frames, tmp_path_factory.mktemp("clip") / "clip.mp4", fps=8)
    return path, sample


def test_explain_writes_overlays_curves_explanations_and_a_report(held_out_video, tmp_path):
    path, sample = held_out_video
    out = tmp_path / "out"
    r = run("explain", str(path), "--model", "demo", "--method", "staa,gradcam", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"report: {out / 'report.html'}" in r.stdout.replace("\n", "")
    for name in ("staa", "gradcam"):
        assert (out / f"{name}.mp4").stat().st_size > 0 and (out / f"{name}_curve.png").is_file()
        exp = vx.Explanation.load(out / f"{name}.npz")
        assert exp.method == name and exp.spatial.shape == (8, 64, 64)
        assert exp.label in SyntheticVideos(1).labels and 0 <= exp.target < 4
    html = (out / "report.html").read_text()
    # the top-classes list names every class by the model's labels, not "class 2"
    for label in SyntheticVideos(1).labels:
        assert label in html
    assert "class 1" not in html


def test_explain_with_a_method_option_records_it(held_out_video, tmp_path):
    path, _ = held_out_video
    r = run("explain", str(path), "--model", "demo-cnn", "--method", "integrated_gradients",
            "-O", "n_steps=4", "-O", "baseline=blur", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    exp = vx.Explanation.load(tmp_path / "integrated_gradients.npz")
    assert exp.options["n_steps"] == 4 and exp.options["baseline"] == "blur"
    assert exp.cost.forward_passes >= 4 and exp.cost.backward_passes >= 4


def test_explain_takes_an_option_under_its_alias(held_out_video, tmp_path):
    # IG's quadrature under Captum's name `method`, as its help says it is read: it reached
    # vx.explain as a keyword and died with "explain() got multiple values for argument 'method'"
    path, _ = held_out_video
    r = run("explain", str(path), "--model", "demo-cnn", "--method", "integrated_gradients,saliency",
            "-O", "integrated_gradients.method=riemann_left", "-O", "integrated_gradients.n_steps=2",
            "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    exp = vx.Explanation.load(tmp_path / "integrated_gradients.npz")
    assert exp.options["quadrature"] == "riemann_left" and "method" not in exp.options
    r = run("explain", str(path), "--model", "demo-cnn", "--method", "integrated_gradients",
            "-O", "method=riemann_middle", "-O", "n_steps=2", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert vx.Explanation.load(tmp_path / "b" / "integrated_gradients.npz").options["quadrature"] == "riemann_middle"


def test_explain_takes_method_specs_and_options_scoped_to_one_method(held_out_video, tmp_path):
    # as evaluate --methods: specs, comma-separated; -O METHOD.KEY=VALUE gives an option to one method
    path, _ = held_out_video
    r = run("explain", str(path), "--model", "demo-cnn", "--method", "rise(n_samples=4),saliency",
            "-O", "rise.batch_size=2", "-O", "saliency.channel_reduce=max", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rise, saliency = (vx.Explanation.load(tmp_path / f"{m}.npz") for m in ("rise", "saliency"))
    assert (rise.options["n_samples"], rise.options["batch_size"]) == (4, 2)
    assert saliency.options["channel_reduce"] == "max"


def test_demo_scores_localisation_and_prints_where_the_report_is(tmp_path):
    r = run("demo", "--out", "demo_out", "--clips", "12", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = tmp_path / "demo_out" / "report.html"
    assert f"report: {report}" in r.stdout.replace("\n", "")
    html = report.read_text()
    assert "STAA top frame inside the evidence window" in html and "<video" in html


def test_models_and_methods_list_what_is_registered():
    r = run("models")
    assert r.returncode == 0 and all(n in r.stdout for n in ("demo", "demo-cnn", "demo-stabn", "hf:"))
    r = run("methods")
    assert r.returncode == 0
    for name in vx.methods.available():
        assert name in r.stdout


@pytest.mark.parametrize("make, args, message", [
    (None, ["explain", "missing.mp4"], "no such video file"),
    (lambda d: (d / "notes.mp4").write_text("not a video"), ["explain", "notes.mp4"], "notes.mp4"),
    (lambda d: (d / "cut.mp4").write_bytes(SAMPLE.read_bytes()[:2000]), ["explain", "cut.mp4"], "cut.mp4"),
    (lambda d: (d / "ok.mp4").write_bytes(SAMPLE.read_bytes()),
     ["explain", "ok.mp4", "--model", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (lambda d: (d / "ok.mp4").write_bytes(SAMPLE.read_bytes()),
     ["explain", "ok.mp4", "--method", "nosuchmethod"], "nosuchmethod"),
    (lambda d: (d / "ok.mp4").write_bytes(SAMPLE.read_bytes()),
     ["explain", "ok.mp4", "--method", "staa", "-O", "layers=99"], "last 99 layers of a 4-layer model"),
])
def test_bad_inputs_are_one_line_errors_with_exit_code_2(tmp_path, make, args, message):
    if make:
        make(tmp_path)
    r = run(*args, "--out", "out", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_gradcam_on_a_torchvision_model_needs_no_user_code(tmp_path):
    # random weights (no download here): the command must still run end to end and say so
    r = run("explain", str(SAMPLE), "--model", "torchvision:r3d_18", "--method", "gradcam",
            "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    exp = vx.Explanation.load(tmp_path / "gradcam.npz")
    assert exp.spatial.shape[0] == 16 and exp.spatial.max() == 1.0
    assert exp.cost.forward_passes == 1 and exp.cost.backward_passes == 1


def test_explain_prints_class_names_as_text_not_rich_markup(held_out_video, tmp_path):
    """A class name such as '[/x]' raised Rich's MarkupError after every map was written, and
    '[red]' vanished from the table: the names are printed as they are."""
    import json
    import shutil

    model_dir = tmp_path / "m[" / "x]"   # the spec 'm[/x]' too: 'loading m[/x]…' was markup
    shutil.copytree(Path(vx.__file__).parent / "assets" / "demo_cnn3d", model_dir)
    meta = json.loads((model_dir / "videoxai.json").read_text())
    meta["labels"] = ["[/x] a", "[red]b", "[bold]c", "[/]d"]
    (model_dir / "videoxai.json").write_text(json.dumps(meta))
    path, _ = held_out_video
    for target in ("0", "1"):
        out = tmp_path / f"out[{target}]"
        r = run("explain", str(path), "--model", str(model_dir), "--method", "gradcam",
                "--target", target, "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert meta["labels"][int(target)] in r.stdout and f"report: {out / 'report.html'}" in r.stdout.replace("\n", "")


@pytest.mark.parametrize("activation, says", [("sigmoid", "score: sigmoid of each class's logit"),
                                              ("none", "score: the model's own output"), ("softmax", None)])
def test_explain_summary_says_when_the_score_is_not_a_softmax_share(monkeypatch, activation, says):
    """The report named a sigmoid score; the printed table showed it as a softmax share."""
    import io

    import numpy as np
    import torch
    from rich.console import Console

    from videoxai.cli import explain as cli_explain

    buffer = io.StringIO()
    monkeypatch.setattr(cli_explain, "console", Console(file=buffer, width=200))
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 2, 1), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(),
                              torch.nn.Softmax(-1) if activation == "none" else torch.nn.Identity())
    model = vx.wrap(net, num_frames=2, input_size=8, layout="BCTHW", labels=["no", "yes"], activation=activation)
    clip = vx.Clip(np.zeros((2, 8, 8, 3), np.uint8), fps=2.0)
    cli_explain._summary([vx.explain(model, clip, "saliency")])
    video = vx.explain_video(model, clip, "saliency", window_stride=1)   # --window-stride's table
    cli_explain._window_summary([video])
    lines = [ln for ln in buffer.getvalue().splitlines() if ln.startswith("score:")]
    assert (lines == []) if says is None else (len(lines) == 2 and all(ln.startswith(says) for ln in lines)), lines


def test_explain_refuses_an_out_directory_it_cannot_make_before_loading_the_model(held_out_video, tmp_path):
    """'--out FILE/x' failed as 'Not a directory' only after the model was loaded and every map computed."""
    path, _ = held_out_video
    (tmp_path / "afile").write_text("")
    r = run("explain", str(path), "--model", "no-such-model", "--out", str(tmp_path / "afile" / "x"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: --out {tmp_path / 'afile' / 'x'}: cannot create the directory (Not a directory)"


def test_the_window_table_of_a_long_video_lists_its_ends(monkeypatch):
    """Every window of a 10-minute video was a line of the terminal's table (thousands)."""
    import io

    import numpy as np
    from rich.console import Console

    from videoxai.cli import explain as cli_explain
    from videoxai.timeline import VideoExplanation, WindowResult

    buffer = io.StringIO()
    monkeypatch.setattr(cli_explain, "console", Console(file=buffer, width=200))
    windows = [WindowResult(index=i, frame_indices=np.array([8 * i, 8 * i + 7]), start_s=i, end_s=i + 0.3, target=0,
                            label="a", score=0.5, predicted=0, predicted_label="a", predicted_score=0.5,
                            temporal=np.full(2, 0.5), cost=vx.Cost()) for i in range(100)]
    video = VideoExplanation(method="staa", model="m", windows=windows, frames=np.zeros((1, 2, 2, 3), np.uint8),
                             frame_indices=np.arange(1), times=np.zeros(1), spatial=np.zeros((1, 2, 2), np.float32),
                             temporal=np.ones(1, np.float32), fps=25.0, source=None)
    cli_explain._window_summary([video])
    text = buffer.getvalue()
    rows = [ln for ln in text.splitlines() if "#" in ln]
    assert "staa: 100 windows" in text and "80 more (all in the report)" in text
    assert len(rows) == 20 and "#0–#7" in rows[0] and "#792–#799" in rows[-1]


def test_a_window_overlay_lasts_as_long_as_its_video_whatever_the_frame_step(tmp_path):
    """The overlay of `explain --window-stride --frame-step 2` was written at the source rate with
    every other frame: a 3 s video played in 1.5 s."""
    import numpy as np
    import torch

    from videoxai.data.video import probe
    from videoxai.workflows import explain_video

    frames = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    video = write_video(frames, tmp_path / "three_seconds.mp4", fps=8)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 2, 1), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
    model = vx.wrap(net, num_frames=4, input_size=16, layout="BCTHW", labels=["no", "yes"])
    for step in (1, 2, 3):
        out = explain_video(video, model, ["saliency"], tmp_path / f"step{step}", window_stride=4, frame_step=step)
        info = probe(out.files["overlay"][0])
        assert info["frames"] == len(range(0, 24, step))
        assert info["duration"] == pytest.approx(3.0, abs=0.01), step


def _explain_here(*args: str) -> int:
    """``videoxai explain ARGS`` in this process (a subprocess costs seconds to import torch): its exit code."""
    from videoxai.cli import main

    try:
        main(["explain", *args])
    except SystemExit as e:
        return e.code
    return 0


def test_a_run_into_the_folder_of_an_earlier_one_leaves_none_of_its_files(held_out_video, tmp_path):
    """`--method saliency,gradcam` then `--method saliency --window-stride 4` into one --out left
    gradcam's explanation and overlay, and saliency's clip curve, beside a report of saliency's windows."""
    path, _ = held_out_video
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.npz").write_bytes(b"the user's")   # files the user put there stay
    (out / "notes.txt").write_text("mine")
    assert _explain_here(str(path), "-m", "demo-cnn", "--method", "saliency,gradcam", "-o", str(out)) == 0
    assert {"gradcam.npz", "gradcam.mp4", "gradcam_curve.png", "saliency_curve.png"} <= {p.name for p in out.iterdir()}
    assert _explain_here(str(path), "-m", "demo-cnn", "--method", "saliency", "--window-stride", "4",
                         "-o", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mine.npz", "notes.txt", "report.html", "saliency.mp4",
                                                     "saliency.npz", "videoxai_files.json"]
    assert len(vx.VideoExplanation.load(out / "saliency.npz").windows) == 1
    # a listing edited to name files outside the folder removes nothing there
    (out / "videoxai_files.json").write_text('{"files": ["../outside.txt", "notes.txt/.."]}')
    (tmp_path / "outside.txt").write_text("keep")
    assert _explain_here(str(path), "-m", "demo-cnn", "--method", "saliency", "-o", str(out)) == 0
    assert (tmp_path / "outside.txt").exists() and (out / "notes.txt").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "no such class"], "no class 'no such class'"),
    (["--start", "100"], "start frame 100 is past the video's last frame"),
    (["-O", "working_size=huge"], "working_size must be 'model' or 'full'"),
])
def test_a_run_refused_before_it_writes_leaves_no_output_folder(held_out_video, tmp_path, capsys, args, message):
    """A bad --target, --start or option value failed after --out was made: an empty folder (and
    its missing parents) stayed behind under the name the user chose."""
    path, _ = held_out_video
    assert _explain_here(str(path), "-m", "demo-cnn", "--method", "saliency", *args,
                         "-o", str(tmp_path / "new" / "out")) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_printed_tables_tell_two_specs_of_one_method_apart(monkeypatch):
    """`--method 'saliency(channel_reduce=l2),saliency(channel_reduce=abs)'` printed two rows (or
    two window tables) both named "saliency"; they are named as the report names them."""
    import io

    import numpy as np
    import torch
    from rich.console import Console

    from videoxai.cli import explain as cli_explain

    buffer = io.StringIO()
    monkeypatch.setattr(cli_explain, "console", Console(file=buffer, width=200))
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 2, 1), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
    model = vx.wrap(net, num_frames=2, input_size=8, layout="BCTHW", labels=["no", "yes"])
    clip = vx.Clip(np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8), fps=2.0)
    specs = ("saliency(channel_reduce=l2)", "saliency(channel_reduce=abs)")
    cli_explain._summary([vx.explain(model, clip, s) for s in specs])
    cli_explain._window_summary([vx.explain_video(model, clip, s, window_stride=1) for s in specs])
    rows = [ln.split("│")[1].strip() for ln in buffer.getvalue().splitlines() if ln.startswith("│ saliency")]
    assert rows == ["saliency", "saliency (2)"]
    assert "saliency: 1 windows" in buffer.getvalue() and "saliency (2): 1 windows" in buffer.getvalue()


def test_a_run_neither_overwrites_nor_removes_the_video_it_explains(held_out_video, tmp_path, capsys):
    """`explain out/saliency.mp4 --method saliency -o out` replaced the user's video with its
    overlay. A video an earlier run wrote into --out (the demo's sample.mp4, here gradcam.mp4) is
    explained there and kept, not removed as that run's file."""
    import shutil

    path, _ = held_out_video
    out = tmp_path / "out"
    out.mkdir()
    video = shutil.copy(path, out / "saliency.mp4")
    before = video.read_bytes()
    assert _explain_here(str(video), "-m", "demo-cnn", "--method", "saliency", "-o", str(out)) == 2
    assert "would write over the video it explains" in capsys.readouterr().err
    assert video.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["saliency.mp4"]
    video.unlink()
    assert _explain_here(str(path), "-m", "demo-cnn", "--method", "gradcam", "-o", str(out)) == 0
    overlay = (out / "gradcam.mp4").read_bytes()
    assert _explain_here(str(out / "gradcam.mp4"), "-m", "demo-cnn", "--method", "saliency", "-o", str(out)) == 0
    assert (out / "gradcam.mp4").read_bytes() == overlay and not (out / "gradcam.npz").exists()


@pytest.mark.parametrize("method, given, message", [
    ("rise(n_samples=4,seed=1), saliency", ["rise(n_samples=4,seed=1)", "saliency"], None),
    ("nosuch", None, "unknown method 'nosuch'"),
    (",", None, "--method ',' names no method"),
    ("saliency,saliency", None, "names 'saliency' twice"),
    ("saliency_tubes", None, "method 'saliency_tubes' explains CNNs"),
])
def test_demo_reads_its_methods_as_explain_does_before_scoring_clips(monkeypatch, tmp_path, capsys,
                                                                     method, given, message):
    """`demo --method 'rise(n_samples=4,seed=1)'` was cut at its comma ("bad spec 'rise(n_samples=4'"),
    `--method ,` failed as "write_report needs at least one explanation", and an unknown method or
    one the demo model cannot serve failed only after every held-out clip was scored."""
    from videoxai import workflows
    from videoxai.cli import main

    calls = []
    monkeypatch.setattr(workflows, "run_demo", lambda out, **kw: calls.append(kw["methods"]) or sys.exit(0))
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--clips", "1", "--method", method, "-o", str(tmp_path / "out")])
    if message is None:
        assert exit_.value.code == 0 and calls == [given]
    else:
        assert exit_.value.code == 2 and calls == [] and message in capsys.readouterr().err


def test_a_demo_into_the_folder_of_an_earlier_one_leaves_none_of_its_files(monkeypatch, tmp_path):
    """As explain's: `demo --method saliency,grad_x_input` then `demo --method saliency` into one
    --out left grad_x_input's files beside a report of saliency alone."""
    from videoxai import workflows
    from videoxai.cli import main

    def fake_demo(out, methods, **_):   # the files run_demo writes, without scoring clips (seconds)
        files = {"npz": [], "overlay": [], "curve": []}
        for m in methods:
            for kind, name in (("npz", f"{m}.npz"), ("overlay", f"{m}.mp4"), ("curve", f"{m}_curve.png")):
                (out / name).write_text(m)
                files[kind].append(out / name)
        for name in ("sample.mp4", "report.html"):
            (out / name).write_text("")
        rates = workflows.LocalisationRates(1, 1, 0.5, 0.5, 1, 1, 0.1)
        return workflows.ExplainResult(report=out / "report.html", explanations=[], files=files), rates

    monkeypatch.setattr(workflows, "run_demo", fake_demo)
    out = tmp_path / "demo_out"
    out.mkdir()
    for method in ("saliency,grad_x_input", "saliency"):
        with pytest.raises(SystemExit) as exit_:
            main(["demo", "--clips", "1", "--method", method, "-o", str(out)])
            raise SystemExit(0)
        assert exit_.value.code == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "saliency.mp4", "saliency.npz",
                                                     "saliency_curve.png", "sample.mp4", "videoxai_files.json"]


def test_demo_names_an_out_it_cannot_use(tmp_path, capsys):
    """`demo -o FILE` said "File exists: FILE", and `-o FILE/x` "Not a directory: FILE/x", as
    explain's --out does not."""
    from videoxai.cli import main

    (tmp_path / "afile").write_text("")
    for out, says in (("afile", "--out {} is a file; give a directory"),
                      ("afile/x", "--out {}: cannot create the directory (Not a directory)")):
        with pytest.raises(SystemExit) as exit_:
            main(["demo", "--clips", "1", "--method", "saliency", "-o", str(tmp_path / out)])
        assert exit_.value.code == 2 and says.format(tmp_path / out) in capsys.readouterr().err


def test_a_run_stopped_partway_leaves_the_folder_of_the_earlier_run_as_it_was(held_out_video, tmp_path,
                                                                                monkeypatch, capsys):
    """Ctrl-C during the second method wrote the first method's new files (another --target here)
    beside the earlier run's report, which showed other maps: a folder that looked complete."""
    import contextlib

    from videoxai.cli import explain as cli_explain

    path, _ = held_out_video
    out = tmp_path / "out"
    out.mkdir()
    names = ["report.html", *(f"{m}{end}" for m in ("saliency", "grad_x_input") for end in (".npz", ".mp4", "_curve.png"))]
    for name in names:  # the earlier run's files (as it listed them)
        (out / name).write_text(f"the earlier run's {name}")
    (out / cli_explain.MANIFEST).write_text(json.dumps({"written_by": "videoxai explain", "files": names}))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    class Status:
        def update(self, text):
            if "grad_x_input" in text:  # saliency's files are written by now
                raise KeyboardInterrupt

    monkeypatch.setattr(cli_explain.console, "status", lambda text: contextlib.nullcontext(Status()))
    assert _explain_here(str(path), "--method", "saliency,grad_x_input", "--target", "1", "-o", str(out)) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no partial folder left either
    capsys.readouterr()


def test_explain_windows_says_which_window_it_is_explaining(held_out_video, tmp_path, monkeypatch):
    """The windows of a long video take minutes, and the status said only "explaining with
    saliency…" all along: it names each window as it starts."""
    import contextlib

    from videoxai.cli import explain as cli_explain

    said = []

    class Status:
        def update(self, text):
            said.append(text)

    monkeypatch.setattr(cli_explain.console, "status", lambda text: contextlib.nullcontext(Status()))
    path, _ = held_out_video
    assert _explain_here(str(path), "-m", "demo-cnn", "--method", "saliency,grad_x_input", "--window-stride", "4",
                         "-o", str(tmp_path / "out")) == 0
    windows = len(vx.VideoExplanation.load(tmp_path / "out" / "saliency.npz").windows)
    assert said == [f"explaining with {m}{s}…" for m in ("saliency", "grad_x_input")
                    for s in ["", *(f": window {k + 1}" for k in range(windows))]]

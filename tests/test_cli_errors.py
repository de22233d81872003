"""Every error a user can cause on the command line is one line on stderr and exit code 2.

The cases are those a reliability probe found printing tracebacks (issue 12); ``--debug`` brings
the traceback back.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from videoxai.cli import main

VIDEO = Path(__file__).resolve().parent / "data" / "bigbuckbunny.mp4"


def run(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cases(tmp: Path) -> list[tuple[str, ...]]:
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return [
        ("explain", str(VIDEO), "--device", "banana"),
        ("explain", str(VIDEO), "--device", "cuda:7"),
        ("explain", str(VIDEO), "--target", "abc"),
        ("explain", str(tmp / "missing.mp4")),
        ("explain", str(a_file)),
        ("serve", "--port", "70000"),
        ("serve", "--max-upload-mb", "-1"),
        ("serve", "--max-streams", "0"),
        ("serve", "--work-dir", str(a_file)),
        ("stream", str(VIDEO), "--server", f"http://127.0.0.1:{closed_port()}"),
        ("evaluate", "--data", "synthetic:2", "--out", str(a_file), "--report-only"),
        ("evaluate", "--data", "synthetic:2", "--out", str(a_file), "--methods", "staa", "--metrics", "energy"),
        ("evaluate", "--data", "synthetic:2", "--methods", "rise(n_samples=abc)", "--out", str(tmp / "ev")),
        ("demo", "--out", str(a_file), "--clips", "2"),
        ("nosuchcommand",),
    ]


def test_user_errors_are_one_line_and_exit_2(capsys, tmp_path):
    for args in cases(tmp_path):
        code, err = run(capsys, *args)
        assert code == 2, (args, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (args, err)


@pytest.mark.parametrize("args", [
    ("explain", str(VIDEO), "--method", "rise", "-O", "n_samples=abc"),
    ("explain", str(VIDEO), "--method", "rise", "-O", "n_samples=NaN"),
    ("explain", str(VIDEO), "--out", "/proc/nope"),
])
def test_failures_after_loading_the_model_are_one_line_too(capsys, tmp_path, args):
    code, err = run(capsys, *args, "--out", str(tmp_path / "out")) if "--out" not in args else run(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_stream_reads_its_source_before_it_asks_the_server(capsys, tmp_path):
    # a missing file or one that is not a video was found only after the connection: behind a
    # server that is not there, the user heard about the server, not the file
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    server = f"http://127.0.0.1:{closed_port()}"
    for source, message in ((tmp_path / "missing.mp4", "no such file"), (not_a_video, "not a readable video file")):
        code, err = run(capsys, "stream", str(source), "--server", server)
        assert code == 2 and message in err and "connect" not in err, err
    code, err = run(capsys, "stream", str(VIDEO), "--server", server)
    assert code == 2 and "cannot connect" in err, err


def test_debug_shows_the_traceback(capsys):
    # --debug lets the error itself through (its traceback printed by Python), instead of the
    # one line on stderr and exit 2
    from videoxai.errors import InputError

    with pytest.raises(InputError, match=r"^--work-dir .*test_cli_errors\.py is a file, not a folder$"):
        main(["serve", "--work-dir", __file__, "--debug"])
    assert "error:" not in capsys.readouterr().err   # the one-line message, "error: --work-dir …"
    assert run(capsys, "serve", "--work-dir", __file__) == (  # which it is without --debug
        2, f"error: --work-dir {__file__} is a file, not a folder\n")


@pytest.mark.parametrize("args, message", [
    # checked before the model or the video is touched: a model that does not exist is not reached
    (("--method", ""), "--method '' names no method"),
    (("--method", "rise,saliency", "-O", "n_samples=20"),
     "-O n_samples=…: method 'saliency' has no option n_samples; give it to the methods that have it as "
     "-O METHOD.n_samples=VALUE"),
    (("--method", "rise", "-O", "gradcam.layer=x"), "-O gradcam.…: 'gradcam' is not one of the methods (rise)"),
    (("--method", "rise(n_samples=3)", "-O", "n_samples=4"),
     "method 'rise': option n_samples given both in --method 'rise(n_samples=3)' and with -O"),
    (("--method", "rise,staa", "-O", "rise.n_samples=abc"), "method 'rise': option n_samples must be an integer"),
    (("--method", "rise(n_samples=0)"), "method 'rise': option n_samples must be an integer ≥ 1, got '0'"),
    (("--method", "saliency,rise,saliency"), "--method names 'saliency' twice"),
    # explain()'s own options: the hint sent the user to -O METHOD.refine, which fails too
    (("--method", "rise,saliency", "-O", "refine=true"), "-O refine=…: refinement is set with --refine/--no-refine"),
    (("--method", "rise", "-O", "rise.refine=true"), "-O rise.refine=…: refine is not an option of the method; "
                                                     "give it in its spec, e.g. --method 'rise(refine=…)'"),
    (("--method", "rise", "-O", "rise.working_size=full"), "-O rise.working_size=…: working_size is not an option"),
])
def test_explain_methods_and_options_are_checked_before_anything_loads(capsys, tmp_path, args, message):
    code, err = run(capsys, "explain", str(tmp_path / "missing.mp4"), "--model", "nosuchmodel", *args,
                    "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("args, message", [
    # both were found only after the model had loaded: "File exists: …", or an ignored --frame-step
    (("--out", "{a_file}"), "--out {a_file} is a file; give a directory"),
    (("--frame-step", "3"), "--frame-step 3 applies to sliding windows; give --window-stride too"),
    (("--frame-step", "0"), "--frame-step 0 applies to sliding windows"),
    (("--full-resolution", "-O", "working_size=model"),
     "--full-resolution and -O working_size=model contradict each other"),  # -O won silently
    # found after the model and the video had loaded, and named the video: "clip.mp4: stride must be >= 1"
    (("--window-stride", "0"), "--window-stride must be at least 1 frame, got 0"),
    (("--window-stride", "8", "--frame-step", "-1"), "--frame-step must be at least 1 (every frame), got -1"),
])
def test_explain_out_frame_step_and_working_size_are_checked_before_the_model_loads(capsys, tmp_path, args, message):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    args = tuple(a.format(a_file=a_file) for a in args)
    out = () if "--out" in args else ("--out", str(tmp_path / "out"))
    code, err = run(capsys, "explain", str(VIDEO), "--model", "nosuchmodel", *args, *out)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message.format(a_file=a_file) in err, err


def test_a_method_the_model_cannot_serve_fails_before_the_others_run(capsys, tmp_path):
    # saliency ran and wrote its files, then staa failed on the CNN: files without a report
    code, err = run(capsys, "explain", str(VIDEO), "--model", "demo-cnn", "--method", "saliency,staa",
                    "--out", str(tmp_path / "out"))
    assert code == 2 and "method 'staa' reads the attention" in err, err
    assert not list((tmp_path / "out").glob("saliency*"))


def test_explain_names_a_directory_as_a_directory(capsys, tmp_path):
    code, err = run(capsys, "explain", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 2 and f"{tmp_path}: is a directory without numbered pictures" in err, err   # not frames either


def test_demo_needs_at_least_one_clip(capsys, tmp_path):
    code, err = run(capsys, "demo", "--clips", "0", "--out", str(tmp_path / "d"))
    assert code == 2 and "'--clips'" in err and "1" in err and "ZeroDivision" not in err, err
    from videoxai.errors import InputError
    from videoxai.workflows import run_demo
    with pytest.raises(InputError, match="clips must be an integer ≥ 1, got 0"):
        run_demo(tmp_path / "d", clips=0)


def test_ctrl_c_exits_130_not_0(capsys, monkeypatch, tmp_path):
    # Typer returns Exit(130) in non-standalone mode instead of raising it; a script running
    # `videoxai evaluate` must not read an interrupted run as a finished one
    import videoxai.evaluation as evaluation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "evaluate", interrupted)
    code, err = run(capsys, "evaluate", "--data", "synthetic:1", "--out", str(tmp_path / "e"))
    assert code == 130 and "aborted" in err, (code, err)


def test_a_dead_worker_says_that_running_again_resumes(capsys, monkeypatch, tmp_path):
    # the rows computed before are stored: the user needs to know that, not to rerun with --debug
    import videoxai.evaluation as evaluation
    from videoxai.evaluation.backends import WorkerFailed

    def killed(*args, **kwargs):
        raise WorkerFailed("worker videoxai-eval-1 exited with code -9")

    monkeypatch.setattr(evaluation, "evaluate", killed)
    code, err = run(capsys, "evaluate", "--data", "synthetic:1", "--out", str(tmp_path / "e"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "exited with code -9" in err and "run the same command again to resume" in err
    assert "--debug" not in err


def test_stabn_edit_port_out_of_range_or_in_use(capsys, tmp_path, monkeypatch):
    # port 99999 was taken modulo 2¹⁶ by the socket: the page was announced on a port nobody listened on
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("the editor started serving"))
    (tmp_path / "collection.json").write_text('{"format": 1, "model": "demo-stabn", "data": "synthetic", '
                                              '"split": "train", "labels": ["a"], "num_frames": 8, "items": []}')
    code, err = run(capsys, "stabn", "edit", str(tmp_path), "--no-preview", "--port", "99999")
    assert code == 2 and "--port" in err and "65535" in err, err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run(capsys, "stabn", "edit", str(tmp_path), "--no-preview", "--port", str(port))
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "editing" not in err, err


def test_stabn_edit_on_an_ipv6_address_prints_a_url_that_opens(capsys, tmp_path, monkeypatch):
    # 'http://::1:8001' is no URL: the address must be bracketed, as `videoxai serve` prints it
    import uvicorn

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(kwargs))
    (tmp_path / "collection.json").write_text('{"format": 1, "model": "demo-stabn", "data": "synthetic", '
                                              '"split": "train", "labels": ["a"], "num_frames": 8, "items": []}')
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("::1 cannot be bound here")
        port = probe.getsockname()[1]
    try:
        main(["stabn", "edit", str(tmp_path), "--no-preview", "--host", "::1", "--port", str(port)])
    except SystemExit as e:
        assert not e.code, capsys.readouterr()
    out = " ".join(capsys.readouterr().out.split())                 # Rich wraps at the terminal's width
    assert served and served[0]["host"] == "::1", out
    assert f"on http://[::1]:{port} " in out, out


def test_stream_and_evaluate_print_names_and_messages_as_text_not_rich_markup(capsys):
    # a class '[/x] a' raised Rich's MarkupError in the stream client (every window) and '[red]b'
    # lost its brackets; the same for error messages, skipped-method reasons and paths
    from videoxai.cli import serve as serve_cli

    serve_cli._print({"type": "ready", "model": {"name": "m[/x]"}, "method": "staa", "window": 8, "stride": 4,
                      "live": False})
    window = {"type": "window", "index": 0, "frame_indices": [0, 1], "temporal": [0.4, 0.6], "latency_ms": 5.0,
              "prediction": {"label": "[/x] a", "score": 0.5}, "smoothed": {"label": "[red]b", "score": 0.5}}
    serve_cli._print(window)
    serve_cli._print({"type": "error", "error": {"code": "bad_frame", "message": "frame [/bold] is bad"}})
    out = capsys.readouterr()
    assert "m[/x]" in out.out and "[/x] a 0.50" in out.out and "(smoothed [red]b 0.50)" in out.out
    assert "frame [/bold] is bad" in out.err


def test_the_cli_imports_service_functions_from_the_module_that_defines_them():
    # `serve --work-dir` took work_dir_lock from videoxai.serve.app, which only re-imports it from
    # videoxai.serve.server: tidying app's imports would break the command, not a test of the service
    import ast
    import importlib
    import inspect

    import videoxai.cli as cli
    through = []
    for f in sorted(Path(cli.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 2 and (node.module or "").startswith("serve.")):
                continue
            home = importlib.import_module(f"videoxai.{node.module}")
            for alias in node.names:
                obj = getattr(home, alias.name)
                if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ != home.__name__:
                    through.append(f"{f.name}: {alias.name} from {home.__name__}, defined in {obj.__module__}")
    assert not through


def test_stabn_counts_below_one_are_named_before_the_data_is_made(capsys, monkeypatch, tmp_path):
    # `stabn train --warm-start -1` and `stabn collect --limit 0` were refused only after the
    # training data had been made or decoded (seconds to minutes)
    import videoxai.cli.stabn as stabn_cli
    import videoxai.stabn.train

    monkeypatch.setattr(videoxai.stabn.train, "train", lambda *a, **k: pytest.fail("the run started"))
    monkeypatch.setattr(stabn_cli, "_load", lambda *a, **k: pytest.fail("the model was loaded"))
    assert run(capsys, "stabn", "train", "-o", str(tmp_path / "t"), "--warm-start", "-1") == (
        2, "error: --warm-start must be 0 or more epochs, got -1\n")
    assert run(capsys, "stabn", "collect", "-o", str(tmp_path / "c"), "--limit", "0") == (
        2, "error: --limit must be 1 clip or more, got 0\n")


def test_serve_names_a_work_dir_it_cannot_create(capsys, monkeypatch, tmp_path):
    import videoxai.models

    monkeypatch.setattr(videoxai.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "a_file").write_text("x")
    work_dir = tmp_path / "a_file" / "jobs"
    assert run(capsys, "serve", "--port", "0", "--work-dir", str(work_dir)) == (
        2, f"error: --work-dir {work_dir}: cannot create the folder (Not a directory)\n")


@pytest.mark.parametrize("option,value,says", [
    ("--gamma-t", "nan", "--gamma-t must be a finite number ≥ 0, got nan"),
    ("--gamma-t", "-1", "--gamma-t must be a finite number ≥ 0, got -1"),
    ("--temporal-loss", "l2", "temporal loss must be one of ('auto', 'mse', 'kl'), got 'l2'"),
    ("--freeze", "backbone", "unknown module groups ['backbone']; groups: feature_extractor, attention_branch, "
                             "perception_branch"),
    ("--unfreeze-at", "-1", "unfreeze_at must be an epoch ≥ 0, got -1"),
    ("--epochs", "0", "epochs must be a whole number ≥ 1, got 0"),
])
def test_stabn_finetune_settings_are_checked_before_the_edit_set_and_its_data(capsys, tmp_path, option, value, says):
    # each was refused only after the model was loaded and every training clip decoded (seconds
    # to minutes): the edit set here does not even exist
    assert run(capsys, "stabn", "finetune", str(tmp_path / "no edit set"), "-o", str(tmp_path / "ft"),
               option, value) == (2, f"error: {says}\n")


def test_numbers_with_digits_other_than_0_to_9_are_refused_by_every_numeric_option(capsys, tmp_path):
    # Python reads '٣' as 3: `--start ٣` started at frame 3, `--target ٣` explained class 3 and
    # `-O n_samples=٣٠` drew 30 samples, while `--end 1:٣٠` was "not a time" and `--window-stride ٣`
    # not an integer. Every numeric option now refuses such digits before anything is loaded,
    # naming the option
    out = str(tmp_path / "out")
    for args, option in [(("explain", str(VIDEO), "--start", "٣"), "--start"),
                         (("explain", str(VIDEO), "--end", "1:٣٠"), "--end"),
                         (("explain", str(VIDEO), "--start", "2.٥s"), "--start"),
                         (("explain", str(VIDEO), "--target", "٣"), "--target"),
                         (("explain", str(VIDEO), "--target", "３"), "--target"),
                         (("stream", str(VIDEO), "--target", "+٣"), "--target"),
                         (("explain", str(VIDEO), "--window-stride", "٣"), "--window-stride"),
                         (("serve", "--port", "٨٠٠٠"), "--port"),
                         (("serve", "--max-upload-mb=١٢"), "--max-upload-mb")]:
        code, err = run(capsys, *args, "--out", out) if args[0] == "explain" else run(capsys, *args)
        # one wording for the text options and the int/float ones, which said "Input should be a
        # valid integer, unable to parse string as an integer"
        value = args[-1].split("=")[-1]
        assert code == 2 and err.startswith(f"error: Invalid value for '{option}': '{value}' holds the digit ") \
            and "write numbers with the digits 0-9" in err and len(err.splitlines()) == 1, (args, err)
    # method options too: the options' types read '٣٠' as 30 (Python's int and float do)
    for args, says in [(("-O", "peak_share=٠.٥"), "-O peak_share='٠.٥' holds the digit '٠'"),
                       (("--method", "rise(n_samples=٣٠)"), "--method 'rise(n_samples=٣٠)': n_samples='٣٠' holds"),
                       (("--method", "rise,staa", "-O", "rise.n_samples=٣٠"), "-O rise.n_samples='٣٠' holds")]:
        code, err = run(capsys, "explain", str(VIDEO), *args, "--out", out)
        assert code == 2 and err.startswith(f"error: {says}") and len(err.splitlines()) == 1, (args, err)
    code, err = run(capsys, "stream", str(VIDEO), "--method", "rise", "-O", "n_samples=٣٠")
    assert code == 2 and err.startswith("error: -O n_samples='٣٠' holds the digit '٣'"), err
    assert not (tmp_path / "out").exists()  # refused before the model or the video was read
    # a class name with such a digit among its letters is a name, not an index
    from videoxai.cli import check_target

    assert check_target("x²") == "x²" and check_target("3") == "3"


def test_an_empty_path_option_is_refused_not_read_as_the_current_folder(capsys, tmp_path, monkeypatch):
    # `--out "$OUT"` with OUT unset: Path('') is '.', and explain wrote report.html, overlays and
    # maps into the current folder (serve --work-dir kept its jobs there), without a word
    monkeypatch.chdir(tmp_path)
    for args in [("explain", str(VIDEO), "--out", ""), ("demo", "-o", ""), ("serve", "--work-dir", ""),
                 ("stream", str(VIDEO), "--save", ""), ("stabn", "collect", "--out", ""),
                 ("stabn", "finetune", str(tmp_path), "--out", " ")]:
        code, err = run(capsys, *args)
        assert code == 2 and "the path is empty (a variable set to nothing?)" in err and len(err.splitlines()) == 1, \
            (args, err)
    assert list(tmp_path.iterdir()) == []


def test_explain_names_a_device_or_a_pipe_as_such(capsys, tmp_path):
    # /dev/zero or a named pipe given as the video was 'no such video file', though it is there
    os.mkfifo(tmp_path / "pipe.mp4")
    for source in ("/dev/zero", str(tmp_path / "pipe.mp4")):
        code, err = run(capsys, "explain", source, "--out", str(tmp_path / "out"))
        assert code == 2 and err.strip() == f"error: {source} is not a regular file (a device, a pipe or a socket); " \
                                            "give a video file", err


def test_a_video_whose_name_starts_with_a_dash_is_told_how_to_name_it(capsys, tmp_path, monkeypatch):
    # `videoxai explain -take2.mp4` was "No such option: -t", without a word on the file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-take2.mp4").write_bytes(b"")
    code, err = run(capsys, "explain", "-take2.mp4")
    assert code == 2
    assert "'-take2.mp4' is a file whose name starts with '-'; name it ./-take2.mp4 (or put -- before it, after the options)" in err
    assert len(err.strip().splitlines()) == 1
    code, err = run(capsys, "explain", "./-take2.mp4")  # named so, it is read (and found empty)
    assert code == 2 and "the file is empty" in err and "No such option" not in err
    code, err = run(capsys, "explain", "-nothing.mp4")  # no such file: click's own message
    assert "No such option: -n" in err and "is a file" not in err


TERMINATED_RUN = """
import os, signal, sys
from pathlib import Path
import videoxai.evaluation as evaluation
from videoxai.evaluation.store import ResultStore
from videoxai.cli import main

def terminated(model, data, methods, metrics, out, **kw):
    ResultStore(Path(out) / "results.sqlite").close()   # as a run that has started writing
    os.kill(os.getpid(), signal.SIGTERM)                # kill PID, a scheduler's stop
    raise AssertionError("SIGTERM did not stop the run")

evaluation.evaluate = terminated
main(["evaluate", "--data", "synthetic:1", "--out", sys.argv[1]])
"""


def test_sigterm_stops_a_command_as_ctrl_c_does_saying_what_is_kept(tmp_path):
    # `kill PID` on `videoxai evaluate` ended the process at once with -15, saying nothing: not
    # that the rows computed are kept, nor how to go on (Ctrl-C said both)
    import subprocess
    import sys

    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-c", TERMINATED_RUN, str(out)], capture_output=True, text=True,
                          timeout=120)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert err.endswith("terminated")
    assert (f"interrupted: the results computed so far are stored in {out / 'results.sqlite'}; "
            "run the same command again to resume") in err


def test_an_option_given_twice_or_with_its_opposite_is_refused_not_half_taken(capsys):
    # Click keeps the last value silently: --method staa --method rise explained with RISE alone
    # and --refine --no-refine did not refine, where -O given twice is refused
    from videoxai.cli import _check_options_given_once

    for args, message in [
        (("explain", str(VIDEO), "--method", "staa", "--method", "rise"),
         "error: --method given more than once ('staa', then 'rise'); give it once (several: --method staa,rise)"),
        (("explain", str(VIDEO), "-m", "demo", "--model=demo-cnn"),
         "error: --model given more than once ('demo', then 'demo-cnn'); give it once"),
        (("explain", str(VIDEO), "--refine", "--no-refine"),
         "error: --refine and --no-refine both given; give one of --refine / --no-refine once"),
        (("stabn", "collect", "--out", "a", "--out", "b"), "error: --out given more than once ('a', then 'b'); give it once"),
    ]:
        code, err = run(capsys, *args)
        assert (code, err.strip()) == (2, message), (args, err)
    # options taken many times, values that look like options, and what follows -- are not counted
    _check_options_given_once(["explain", "v.mp4", "-O", "a=1", "-O", "b=2", "--target", "--out", "--out", "x"])
    _check_options_given_once(["explain", "v.mp4", "--out", "x", "--", "--out"])


def test_an_empty_model_spec_is_refused_not_read_as_the_current_folder(capsys, tmp_path, monkeypatch):
    # `--model "$MODEL"` with MODEL unset: Path('') is '.', and the error was "'.' holds neither
    # config.json (Hugging Face) nor videoxai.json"
    monkeypatch.chdir(tmp_path)
    for spec in ("", " "):
        code, err = run(capsys, "explain", str(VIDEO), "--model", spec)
        assert code == 2 and err.startswith("error: the model spec is empty (a variable set to nothing?); give one "
                                            "of demo, ") and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "false", "False", "OFF", " no "])
def test_progress_bars_are_silenced_by_every_spelling_of_off(monkeypatch, value):
    # the evaluation's heartbeat lower-cased VIDEOXAI_PROGRESS and the bars did not: False or OFF
    # silenced one and drew the other, on a terminal too
    from videoxai.progress import enabled

    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    monkeypatch.setenv("VIDEOXAI_PROGRESS", value)
    assert enabled() is False
    monkeypatch.setenv("VIDEOXAI_PROGRESS", "1")
    assert enabled() is True


def test_a_listing_of_an_earlier_run_that_cannot_be_read_names_no_file(tmp_path):
    # read after the whole run: JSON nested too deep was "error: RecursionError: …" once every
    # method had been explained, and nothing of the run was kept
    from videoxai.cli.explain import MANIFEST, _earlier_files

    for text in ("[" * 100_000 + "]" * 100_000, "not json", '["a.mp4"]', '{"files": {"a": 1}}', "\udcff"):
        (tmp_path / MANIFEST).write_text(text, encoding="utf-8", errors="surrogateescape")
        assert _earlier_files(tmp_path) == [], text
    (tmp_path / MANIFEST).write_text('{"files": ["a.mp4", "../b.mp4", "", 3]}')
    assert _earlier_files(tmp_path) == ["a.mp4"]


def test_control_characters_from_a_server_or_an_error_reach_the_terminal_as_escapes(capsys):
    # a label or message holding ESC [2J cleared the screen (OSC sequences retitle the window or
    # write the clipboard), and a foreign server's dropped reason '[/x]' raised Rich's MarkupError
    from videoxai.cli import describe, printable
    from videoxai.cli import serve as serve_cli
    from videoxai.errors import InputError

    assert printable("a\x1b[2Jb\x07 é 🎬") == "a\\x1b[2Jb\\x07 é 🎬"
    assert describe(InputError("no class '\x1b]52;c;QUFB\x07x'")) == "no class '\\x1b]52;c;QUFB\\x07x'"
    serve_cli._print({"type": "window", "index": 0, "frame_indices": [0, 1], "temporal": [0.4, 0.6],
                      "latency_ms": 5.0, "prediction": {"label": "\x1b[2Ja", "score": 0.5},
                      "smoothed": {"label": "b\x9b", "score": 0.5}})
    serve_cli._print({"type": "dropped", "first_frame": 0, "last_frame": 7, "total": 1, "reason": "[/x] busy\x1b[K"})
    serve_cli._print({"type": "error", "error": {"code": "x\x1b", "message": "m\x1b]0;title\x07"}})
    out = capsys.readouterr()  # (Rich's own colours, where forced, are escape sequences too: not these)
    assert not any(raw in out.out + out.err for raw in ("\x1b[2J", "\x9b", "\x1b[K", "\x1b]0;", "\x07"))
    assert "\\x1b[2Ja 0.50" in out.out and "(smoothed b\\x9b 0.50)" in out.out
    assert "[/x] busy\\x1b[K" in out.err and "x\\x1b: m\\x1b]0;title\\x07" in out.err


def test_explain_prints_a_models_labels_and_names_with_their_control_characters_escaped(capsys):
    # `videoxai explain` printed a wrapped model's class labels as they were (Text(e.label)): a
    # label holding ESC [2J cleared the screen, in the table of a clip's explanation, of a video's
    # windows, and in matplotlib's warning of the glyph missing from its font
    import numpy as np
    import torch

    import videoxai as vx
    from videoxai.cli import show_warning
    from videoxai.cli.explain import _summary, _window_summary

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 16 * 16, 2))
    with torch.no_grad():
        net[1].bias.copy_(torch.tensor([5.0, 0.0]))  # the prediction is the first label
    model = vx.wrap(net, num_frames=8, input_size=16, labels=["\x1b[2Jcls", "other"])
    clip = np.random.default_rng(0).random((16, 16, 16, 3)).astype(np.float32)
    _summary([vx.explain(model, clip[:8], "saliency")])
    _window_summary([vx.explain_video(model, clip, "saliency", window_stride=8)])
    show_warning("Glyph 27 (\x1b) missing from font(s) DejaVu Sans.", UserWarning, "x", 1)
    out = capsys.readouterr()
    assert "\x1b[2J" not in out.out and "\x1b)" not in out.err
    assert out.out.count("\\x1b[2Jcls") == 1 + 2 * 2  # the clip's prediction; each window's prediction and target
    assert "Glyph 27 (\\x1b) missing" in out.err

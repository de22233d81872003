"""Every error a user can cause on the command line is one line on stderr and exit code 2.

The cases are those a reliability probe found printing tracebacks (issue 12); ``--debug`` brings
the traceback back.
"""

from __future__ import annotations

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


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception):
        main(["serve", "--work-dir", __file__, "--debug"])
